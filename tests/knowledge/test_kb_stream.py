"""Streaming chat completions with knowledge, through the official ``openai`` client against a real
server: the answer streams in OpenAI chunks, its markers checked as they pass, and the final chunk
carries the same citations as the non-streamed answer. On a fake engine whose reply splits markers
across chunks, and on the real SmolLM2 model with the real MiniLM embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from socle.config import FakeEngineConfig, KnowledgeSettings, ModelRoute, load_settings
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY
from tests.knowledge.kbhelpers import Client, knowledge_settings, make_keys

# The fake streams a word (with the space before it) per chunk: "[1," and " 7]" arrive apart. The
# output guardrail holds back 96 characters, hence the text before and after the markers.
FILLER = " ".join(["According to the documents you can read, the plan says this."] * 3)
REPLY = (
    f"{FILLER} The launch is on 3 March [1, 7] as planned [7]. Confirmed twice [1] and [ 2 ] stays. {FILLER}"
)
CHECKED = f"{FILLER} The launch is on 3 March [1] as planned. Confirmed twice [1] and [ 2 ] stays. {FILLER}"
QUESTION = [{"role": "user", "content": "When is the launch?"}]


def _stream(
    client: openai.OpenAI, collection: str, model: str, messages: Any = QUESTION, **kwargs: Any
) -> tuple[str, list[Any]]:
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            extra_body={"knowledge": {"collections": [collection]}},
            **kwargs,
        )
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def _final(chunks: list[Any]) -> Any:
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    assert len(finals) == 1
    return finals[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = load_settings(
        None,
        environ={},
        data_dir=tmp_path_factory.mktemp("kb-stream"),
        admin_key=ADMIN_KEY,
        port=0,
        knowledge=knowledge_settings(),
        engines=[FakeEngineConfig(name="fake", reply=REPLY)],
        models=[ModelRoute(name="fake-chat", engines=["fake"])],
    )
    with run_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    key = make_keys(server, {"alice": ("research", "member")})["alice"]
    with openai.OpenAI(base_url=server.api, api_key=key, max_retries=0) as made:
        yield made


@pytest.fixture(scope="module")
def collection(server: RunningServer, client: openai.OpenAI) -> str:
    alice = Client(server, client.api_key)
    try:
        made = str(alice.collection("plans", classification="confidential")["id"])
        document = alice.upload(made, {"plan.md": b"# Plan\n\nThe launch date is the third of March."})[0]
        assert alice.wait(made, document["id"])["status"] == "ready"
    finally:
        alice.close()
    return made


def test_the_stream_carries_the_checked_answer_and_its_citations(
    client: openai.OpenAI, collection: str
) -> None:
    text, chunks = _stream(client, collection, "fake-chat", stream_options={"include_usage": True})
    assert text == CHECKED
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 10  # really streamed
    final = _final(chunks)
    assert final.choices[0].finish_reason == "stop" and final.object == "chat.completion.chunk"
    citations, knowledge = final.model_extra["citations"], final.model_extra["knowledge"]
    assert [c["marker"] for c in citations] == [1] and "third of March" in citations[0]["passage"]
    assert knowledge["removed_citations"] == 2 and knowledge["abstained"] is False
    assert knowledge["classification"] == "confidential" and len(knowledge["sources"]) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0  # include_usage kept
    assert not any("citations" in (c.model_extra or {}) for c in chunks if c is not final)

    whole = client.chat.completions.create(
        model="fake-chat", messages=QUESTION, extra_body={"knowledge": {"collections": [collection]}}
    )
    assert whole.choices[0].message.content == text
    assert whole.model_extra is not None
    assert whole.model_extra["citations"] == citations
    assert whole.model_extra["knowledge"]["removed_citations"] == knowledge["removed_citations"]


def test_a_streamed_abstention(server: RunningServer, client: openai.OpenAI) -> None:
    alice = Client(server, client.api_key)
    try:
        empty = str(alice.collection("empty")["id"])
    finally:
        alice.close()
    text, chunks = _stream(client, empty, "fake-chat")
    assert text.startswith("I could not find an answer")
    final = _final(chunks)
    assert final.model_extra["citations"] == [] and final.model_extra["knowledge"]["abstained"] is True


def test_the_sse_wire_format(server: RunningServer, client: openai.OpenAI, collection: str) -> None:
    """Raw events: ``data: {...}`` chunks, the extension on the finish chunk, ``[DONE]`` last."""
    with httpx.stream(
        "POST",
        f"{server.api}/chat/completions",
        headers={"authorization": f"Bearer {client.api_key}"},
        json={
            "model": "fake-chat",
            "messages": QUESTION,
            "stream": True,
            "knowledge": {"collections": [collection]},
        },
        timeout=30,
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)
    assert '"citations"' in events[-2] and '"finish_reason":"stop"' in events[-2]


@pytest.mark.llm
@pytest.mark.embeddings
def test_streaming_with_knowledge_on_the_real_models(tmp_path: Path) -> None:
    """SmolLM2 answers from a MiniLM-indexed collection; greedy, so stream and non-stream agree."""
    settings = load_settings(
        None,
        environ={},
        data_dir=tmp_path,
        admin_key=ADMIN_KEY,
        port=0,
        knowledge=KnowledgeSettings(poll_interval_s=0.1, min_similarity=-1.0),
    )
    question = [{"role": "user", "content": "What is the capital of France?"}]
    with run_server(settings) as server:
        key = make_keys(server, {"alice": ("research", "member")})["alice"]
        alice = Client(server, key)
        try:
            collection = str(alice.collection("facts")["id"])
            text = b"# Geography\n\nParis is the capital of France. Lyon is its third largest city."
            document = alice.upload(collection, {"geo.md": text})[0]
            assert alice.wait(collection, document["id"])["status"] == "ready"
        finally:
            alice.close()
        model = settings.knowledge.answer_model
        with openai.OpenAI(base_url=server.api, api_key=key, max_retries=0) as client:
            streamed, chunks = _stream(client, collection, model, question, max_tokens=32, temperature=0)
            whole = client.chat.completions.create(
                model=model,
                messages=question,  # type: ignore[arg-type]
                max_tokens=32,
                temperature=0,
                extra_body={"knowledge": {"collections": [collection]}},
            )
    assert streamed.strip() and streamed == whole.choices[0].message.content
    final = _final(chunks)
    assert whole.model_extra is not None
    assert final.model_extra["citations"] == whole.model_extra["citations"]
    sources = final.model_extra["knowledge"]["sources"]
    assert [s["document_id"] for s in sources] == [document["id"]]
