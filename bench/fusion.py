"""Tune hybrid fusion without tuning on the test: the keyword and dense rankings of every query are
fetched once through Socle's API (``POST /v1/search``, method ``bm25`` then ``dense``), then weighted
reciprocal rank fusion (:func:`socle.knowledge.retrieve.rrf`, the server's own code) is replayed
offline over a grid of dense weights and RRF constants.

The queries are split in two by a stable hash of their id: the grid is scored on the *tune* half, the
best setting is chosen there, and only then is it scored on the *held-out* half, next to BM25 alone,
dense alone and the current defaults. Figures on the held-out half are the ones to believe; the whole
set is printed too, for comparison with ``bench/retrieval.py``.

    python bench/fusion.py --dataset fr-service-public
    python bench/fusion.py --dataset scifact --weights 0.5,1 --ks 60
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line  # noqa: E402
from _kb import DATA, client, load_beir, ndcg_at, recall_at, socle_server, upload_all  # noqa: E402
from retrieval import files_of  # noqa: E402

from socle.config import KnowledgeSettings  # noqa: E402
from socle.knowledge.retrieve import rrf  # noqa: E402
from socle.knowledge.stores.base import Scored  # noqa: E402

Ranking = list[tuple[int, str, float]]  # (chunk key, document id, score), best first


def half(qid: str) -> str:
    return "tune" if hashlib.sha256(qid.encode()).digest()[0] % 2 == 0 else "held-out"


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


def score(rankings, qrels, qids, fuse) -> dict[str, float]:  # type: ignore[no-untyped-def]
    sums = {"ndcg@10": 0.0, "recall@10": 0.0}
    for qid in qids:
        keyword, dense = rankings[qid]
        doc_of = {key: doc for key, doc, _ in keyword + dense}
        ranked = documents(fuse(keyword, dense), doc_of)
        sums["ndcg@10"] += ndcg_at(ranked, qrels[qid], 10)
        sums["recall@10"] += recall_at(ranked, qrels[qid], 10)
    return {m: v / len(qids) for m, v in sums.items()}


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
    splits = {name: [q for q in dataset.queries if half(q) == name] for name in ("tune", "held-out")}
    splits["all"] = list(dataset.queries)
    print(f"queries: tune {len(splits['tune'])}, held-out {len(splits['held-out'])}, candidates {candidates}")

    def only(which: int):  # type: ignore[no-untyped-def]
        return lambda keyword, dense: [key for key, _, _ in (keyword, dense)[which]]

    print("\ngrid on the tune half (nDCG@10; rows: dense weight, columns: RRF k)")
    print("weight " + " ".join(f"{k:>6}" for k in ks))
    grid = {}
    for weight in weights:
        row = []
        for k in ks:
            grid[(weight, k)] = score(rankings, dataset.qrels, splits["tune"], fused(weight, k, candidates))[
                "ndcg@10"
            ]
            row.append(f"{grid[(weight, k)]:>6.3f}")
        print(f"{weight:>6} " + " ".join(row))
    best = max(grid, key=lambda wk: (round(grid[wk], 6), wk[1] == defaults.rrf_k, -abs(wk[0] - 0.2)))
    current_weight = defaults.dense_weight if args.dataset == "scifact" else defaults.foreign_dense_weight
    rows = {
        "bm25": only(0),
        "dense": only(1),
        f"hybrid current (w={current_weight}, k={defaults.rrf_k})": fused(
            current_weight, defaults.rrf_k, candidates
        ),
        f"hybrid tuned (w={best[0]}, k={best[1]})": fused(best[0], best[1], candidates),
    }
    print(f"\n{'':<34}" + "".join(f"{name + ' nDCG@10':>18}" for name in splits))
    for label, fuse in rows.items():
        figures = [score(rankings, dataset.qrels, splits[name], fuse)["ndcg@10"] for name in splits]
        print(f"{label:<34}" + "".join(f"{f:>18.3f}" for f in figures))


if __name__ == "__main__":
    main()
