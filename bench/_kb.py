"""Helpers shared by the knowledge benchmarks: a Socle server with the real MiniLM embeddings, BEIR data
uploaded through the API, and polling until everything is ingested."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from socle.config import EmbeddingsEngineConfig, KnowledgeSettings, load_settings  # noqa: E402
from socle.testing.server import RunningServer, run_server  # noqa: E402

__all__ = ["DATA", "KEY", "Dataset", "load_beir", "ndcg_at", "recall_at", "socle_server", "upload_all"]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
KEY = "sk-socle-bench-" + "k" * 40


class Dataset:
    def __init__(
        self,
        name: str,
        corpus: dict[str, dict[str, str]],
        queries: dict[str, str],
        qrels: dict[str, dict[str, int]],
    ):
        self.name, self.corpus, self.queries, self.qrels = name, corpus, queries, qrels


def load_beir(folder: Path, split: str = "test") -> Dataset:
    corpus = {}
    with (folder / "corpus.jsonl").open() as lines:
        for line in lines:
            doc = json.loads(line)
            corpus[doc["_id"]] = {"title": doc.get("title") or "", "text": doc["text"]}
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open() as lines:
        next(lines)
        for line in lines:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    queries = {}
    with (folder / "queries.jsonl").open() as lines:
        for line in lines:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries[q["_id"]] = q["text"]
    return Dataset(folder.name, corpus, queries, qrels)


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


@contextmanager
def socle_server(data_dir: Path, *, chat: bool = False, **knowledge: Any) -> Iterator[RunningServer]:
    """A server with the MiniLM embeddings engine (the embedded default, sha256-checked), and with
    ``chat`` the default SmolLM2 chat model too."""
    defaults = load_settings(None, environ={})
    engines = [e for e in defaults.engines if chat or isinstance(e, EmbeddingsEngineConfig)]
    if not chat:
        knowledge.setdefault("answer_model", "all-minilm-l6-v2")
    settings = load_settings(
        None,
        environ={},
        data_dir=data_dir,
        admin_key=KEY,
        port=0,
        engines=engines,
        models=[],
        knowledge=KnowledgeSettings(**knowledge),
    )
    with run_server(settings, startup_timeout_s=300) as server:
        yield server


def client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.api, headers={"authorization": f"Bearer {KEY}"}, timeout=600)


def upload_all(http: httpx.Client, collection: str, files: dict[str, bytes], batch: int = 64) -> float:
    """Upload every file (``batch`` per request), wait until none is pending; returns the seconds taken."""
    started = time.perf_counter()
    names = list(files)
    for start in range(0, len(names), batch):
        part = [("file", (n, files[n])) for n in names[start : start + batch]]
        response = http.post(f"/collections/{collection}/documents", files=part)
        response.raise_for_status()
    while True:
        counts = http.get(f"/collections/{collection}").json()["documents"]
        pending = counts.get("queued", 0) + counts.get("processing", 0)
        print(f"\r  ingesting: {counts}", end="", file=sys.stderr, flush=True)
        if not pending:
            print(file=sys.stderr)
            return time.perf_counter() - started
        time.sleep(2)
