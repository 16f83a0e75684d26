"""Retrieval quality of Socle's knowledge base: nDCG@10, Recall@10 and Recall@100 for BM25 only, dense
only (all-MiniLM-L6-v2) and hybrid (RRF), on BEIR SciFact and French Service-Public.

Everything goes through Socle itself: a real server, documents uploaded with the API (one Markdown file
per corpus entry: the title as heading, then the text), ingested by its worker (parsing, chunking,
embedding, indexing), then ``POST /v1/search`` for each query. Chunk hits are turned into a document
ranking by first occurrence. The peers are the published references (MTEB, nDCG@10 on SciFact):
BM25 0.687, all-MiniLM-L6-v2 0.645.

    python bench/retrieval.py                   # both sets
    python bench/retrieval.py --dataset fr-service-public
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line  # noqa: E402
from _kb import DATA, client, load_beir, ndcg_at, recall_at, socle_server, upload_all  # noqa: E402

METHODS = ("bm25", "dense", "hybrid")
REFERENCES = {"scifact": {"bm25": 0.687, "dense": 0.645}}


def evaluate(http, collection: str, dataset, methods=METHODS) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    results = {}
    for method in methods:
        sums = {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0}
        started = time.perf_counter()
        for qid, query in dataset.queries.items():
            response = http.post(
                "/search", json={"query": query, "collections": [collection], "k": 200, "method": method}
            )
            response.raise_for_status()
            ranked: list[str] = []
            for hit in response.json()["data"]:
                doc = hit["filename"].rsplit(".", 1)[0]
                if doc not in ranked:
                    ranked.append(doc)
            relevant = dataset.qrels[qid]
            sums["ndcg@10"] += ndcg_at(ranked, relevant, 10)
            sums["recall@10"] += recall_at(ranked, relevant, 10)
            sums["recall@100"] += recall_at(ranked, relevant, 100)
        n = len(dataset.queries)
        results[method] = {m: v / n for m, v in sums.items()}
        results[method]["ms/query"] = (time.perf_counter() - started) * 1000 / n
    return results


def subset(dataset, max_docs: int, seed: int = 7):  # type: ignore[no-untyped-def]
    """Every judged document plus random others, ``max_docs`` in all: a smaller, easier corpus for quick
    checks on a busy machine (figures are then not comparable with the published ones)."""
    import random

    judged = {d for rel in dataset.qrels.values() for d in rel if d in dataset.corpus}
    others = sorted(set(dataset.corpus) - judged)
    keep = judged | set(random.Random(seed).sample(others, max(0, min(len(others), max_docs - len(judged)))))
    dataset.corpus = {d: v for d, v in dataset.corpus.items() if d in keep}
    return dataset


def files_of(dataset) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """One Markdown file per corpus entry: its title as heading, then its text."""
    return {
        f"{doc_id}.md": (
            f"# {doc['title']}\n\n{doc['text']}" if doc["title"] and doc["title"] != doc_id else doc["text"]
        ).encode()
        for doc_id, doc in dataset.corpus.items()
    }


def run(name: str, work: Path, max_docs: int | None = None) -> dict[str, dict[str, float]]:
    dataset = load_beir(DATA / "retrieval" / name)
    if max_docs is not None:
        dataset = subset(dataset, max_docs)
        print(f"{name}: SUBSET of {len(dataset.corpus)} documents (all judged ones + random others)")
    files = files_of(dataset)
    with socle_server(work / name) as server, client(server) as http:
        collection = http.post("/collections", json={"name": name}).json()["id"]
        seconds = upload_all(http, collection, files)
        counts = http.get(f"/collections/{collection}").json()["documents"]
        print(f"{name}: {len(files)} documents ingested in {seconds:.0f} s ({counts})")
        results = evaluate(http, collection, dataset)
    print(f"\n{name}: {len(dataset.queries)} queries")
    print(f"{'method':<8} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'ms/query':>9}  reference nDCG@10")
    for method, r in results.items():
        ref = REFERENCES.get(name, {}).get(method)
        ratio = f"{ref:.3f} (Socle/ref {r['ndcg@10'] / ref:.2f})" if ref else "-"
        print(
            f"{method:<8} {r['ndcg@10']:>8.3f} {r['recall@10']:>7.3f} {r['recall@100']:>7.3f} "
            f"{r['ms/query']:>9.1f}  {ratio}"
        )
    best_single = max(results["bm25"]["ndcg@10"], results["dense"]["ndcg@10"])
    print(f"hybrid - best single method: {results['hybrid']['ndcg@10'] - best_single:+.3f} nDCG@10\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=["scifact", "fr-service-public"], action="append")
    parser.add_argument("--max-docs", type=int, default=None, help="Quick check on a corpus subset.")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="socle-bench-retrieval-") as work:
        for name in args.dataset or ["scifact", "fr-service-public"]:
            run(name, Path(work), args.max_docs)


if __name__ == "__main__":
    main()
