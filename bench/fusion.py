"""Tune hybrid fusion without tuning on the test: the keyword and dense rankings of every query are
fetched once through Socle's API (``POST /v1/search``, method ``bm25`` then ``dense``), then weighted
reciprocal rank fusion (:func:`socle.knowledge.retrieve.rrf`, the server's own code) is replayed
offline over a grid of dense weights and RRF constants.

The grid over all queries is printed, but choosing its best cell would tune on the test. The figure
to believe is the cross-validation: 200 times, the queries are split in two random halves, the best
setting is chosen on one half and measured on the other, as a gain over BM25 alone. Per RRF constant
(the weight chosen), and over the whole grid ("any").

    python bench/fusion.py --dataset fr-service-public [--rankings /tmp/fr.json]
    python bench/fusion.py --dataset scifact --weights 0.5,1 --ks 5,60
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line  # noqa: E402
from _kb import DATA, client, load_beir, ndcg_at, socle_server, upload_all  # noqa: E402
from retrieval import files_of  # noqa: E402

from socle.config import KnowledgeSettings  # noqa: E402
from socle.knowledge.retrieve import rrf  # noqa: E402
from socle.knowledge.stores.base import Scored  # noqa: E402

SPLITS = 200
Ranking = list[tuple[int, str, float]]  # (chunk key, document id, score), best first


def fetch(http, collection: str, query: str, method: str, depth: int, keys: dict[str, int]) -> Ranking:  # type: ignore[no-untyped-def]
    """One ranking; ``keys`` numbers chunk ids the same way across every call."""
    response = http.post(
        "/search", json={"query": query, "collections": [collection], "k": depth, "method": method}
    )
    response.raise_for_status()
    ranking = []
    for hit in response.json()["data"]:
        key = keys.setdefault(hit["chunk_id"], len(keys))
        ranking.append((key, hit["filename"].rsplit(".", 1)[0], hit["score"]))
    return ranking


def documents(ranked: list[int], doc_of: dict[int, str]) -> list[str]:
    order: list[str] = []
    for key in ranked:
        if doc_of[key] not in order:
            order.append(doc_of[key])
    return order


def ndcg(rankings, qrels, qid: str, fuse) -> float:  # type: ignore[no-untyped-def]
    """One query's nDCG@10 for a fusion of its two rankings, chunks turned into documents."""
    keyword, dense = rankings[qid]
    doc_of = {key: doc for key, doc, _ in keyword + dense}
    return ndcg_at(documents(fuse(keyword, dense), doc_of), qrels[qid], 10)


def fused(weight: float, k: int, candidates: int):  # type: ignore[no-untyped-def]
    def fuse(keyword: Ranking, dense: Ranking) -> list[int]:
        lists = [[Scored(key, 0.0) for key, _, _ in r[:candidates]] for r in (keyword, dense)]
        return [s.key for s in rrf(lists, k, [1.0, weight])]

    return fuse


def collect(name: str, dataset, candidates: int) -> dict[str, list[Ranking]]:  # type: ignore[no-untyped-def]
    """Each query's keyword and dense rankings, through a real server."""
    with tempfile.TemporaryDirectory(prefix="socle-bench-fusion-") as work:
        with socle_server(Path(work) / name) as server, client(server) as http:
            collection = http.post("/collections", json={"name": name}).json()["id"]
            files = files_of(dataset)
            seconds = upload_all(http, collection, files)
            print(f"{name}: {len(files)} documents ingested in {seconds:.0f} s")
            keys: dict[str, int] = {}
            return {
                qid: [fetch(http, collection, q, method, candidates, keys) for method in ("bm25", "dense")]
                for qid, q in dataset.queries.items()
            }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=["scifact", "fr-service-public"], default="fr-service-public")
    parser.add_argument("--weights", default="0,0.05,0.1,0.15,0.2,0.25,0.3,0.4,0.5,0.7,1")
    parser.add_argument("--ks", default="5,10,20,30,60,100")
    parser.add_argument(
        "--rankings", help="JSON file: read the rankings from it if it exists, else save them"
    )
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    defaults = KnowledgeSettings()
    candidates = defaults.candidates
    print(machine_line())
    dataset = load_beir(DATA / "retrieval" / args.dataset)
    if args.rankings and Path(args.rankings).exists():
        rankings = json.loads(Path(args.rankings).read_text())
        print(f"rankings read from {args.rankings}")
    else:
        rankings = collect(args.dataset, dataset, candidates)
        if args.rankings:
            Path(args.rankings).write_text(json.dumps(rankings))
    queries = list(dataset.queries)
    print(f"{len(queries)} queries, {candidates} candidates from each search")

    def per_query(fuse) -> dict[str, float]:  # type: ignore[no-untyped-def]
        return {q: ndcg(rankings, dataset.qrels, q, fuse) for q in queries}

    bm25 = per_query(lambda keyword, dense: [key for key, _, _ in keyword])
    dense = per_query(lambda keyword, dense: [key for key, _, _ in dense])
    grid = {(w, k): per_query(fused(w, k, candidates)) for w in weights for k in ks}

    def mean(figures: dict[str, float], qids: list[str]) -> float:
        return sum(figures[q] for q in qids) / len(qids)

    print(f"bm25 {mean(bm25, queries):.3f}   dense {mean(dense, queries):.3f}   (nDCG@10, all queries)")
    print("\nhybrid on all queries (in-sample; rows: dense weight, columns: RRF k)")
    print("weight " + " ".join(f"{k:>6}" for k in ks))
    for w in weights:
        print(f"{w:>6} " + " ".join(f"{mean(grid[(w, k)], queries):>6.3f}" for k in ks))

    print(f"\ncross-validation, {SPLITS} random halves: the best weight on one half, measured on the other")
    print(f"{'RRF k':>6} {'gain over bm25':>15} {'gain > 0':>9}  weights chosen most")
    rng = random.Random(2)
    for k in [*ks, None]:
        gains, chosen = [], Counter()
        for _ in range(SPLITS):
            order = rng.sample(queries, len(queries))
            tune, test = order[: len(order) // 2], order[len(order) // 2 :]
            options = [wk for wk in grid if k is None or wk[1] == k]
            best = max(options, key=lambda wk: round(mean(grid[wk], tune), 9))
            chosen[best] += 1
            gains.append(mean(grid[best], test) - mean(bm25, test))
        label = "any" if k is None else str(k)
        common = ", ".join(f"{w}@{kk} ({n})" for (w, kk), n in chosen.most_common(3))
        wins = sum(g > 0 for g in gains) / len(gains)
        print(f"{label:>6} {sum(gains) / len(gains):>+15.4f} {wins:>9.0%}  {common}")
    settings_k, settings_w = (
        (defaults.rrf_k, defaults.dense_weight)
        if args.dataset == "scifact"
        else (defaults.foreign_rrf_k, defaults.foreign_dense_weight)
    )
    current = per_query(fused(settings_w, settings_k, candidates))
    print(
        f"\ndefaults for this set's language (k={settings_k}, weight={settings_w}): "
        f"{mean(current, queries):.3f} on all queries"
    )


if __name__ == "__main__":
    main()
