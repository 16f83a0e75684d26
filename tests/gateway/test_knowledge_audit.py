"""The knowledge API is audited, on SQLite and PostgreSQL (the module runs once per backend): searches and
answers are ``knowledge.request`` entries (collections, HMAC of the query, chunks, status; never the
query), collection and document changes are ``admin.change`` entries (without document content), every
refusal of the catalog is an ``access.denied`` entry (and only that), and the API fails closed (503)
while the log cannot be written; the log verifies afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from socle.config import FakeEngineConfig, ModelRoute
from socle.governance.audit.log import HMAC_KEY_FILE
from socle.governance.audit.pseudonyms import Pseudonymizer
from socle.testing.server import RunningServer
from tests.conftest import ADMIN_KEY
from tests.gateway.audit_support import audit_table_away, audited_server, mutating_routes
from tests.knowledge.kbhelpers import Client, knowledge_engines, knowledge_settings, make_keys

SECRET_TEXT = b"The vault code of the Lyon office is 7431. Hotel nights cost 90 euros."


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kb-audit")


@pytest.fixture(scope="module")
def server(data_dir: Path, module_database_url: str) -> Iterator[RunningServer]:
    engines = knowledge_engines()  # plus a model whose only engine is in the zone "eu"
    engines["engines"].append(FakeEngineConfig(name="fake-eu", zone="eu", reply="From the EU."))
    engines["models"].append(ModelRoute(name="eu-chat", engines=["fake-eu"]))
    overrides: dict[str, Any] = {"knowledge": knowledge_settings(), **engines}
    with audited_server(data_dir, module_database_url, **overrides) as running:
        yield running


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[dict[str, Client]]:
    keys = make_keys(
        server,
        {"alice": ("research", "member"), "bob": ("research", "member"), "mallory": ("sales", "member")},
    )
    made = {name: Client(server, key) for name, key in keys.items()}
    made["admin"] = Client(server, ADMIN_KEY)
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module")
def who(server: RunningServer, clients: dict[str, Client]) -> dict[str, tuple[str, str]]:
    """Principal and team id of each client."""

    async def resolve() -> dict[str, tuple[str, str]]:
        found = {}
        for name, client in clients.items():
            key = client.http.headers["authorization"].removeprefix("Bearer ")
            principal = await server.services.keys.authenticate(key)
            found[name] = (principal.principal_id, principal.team_id)
        return found

    return server.run(resolve())


@pytest.fixture(scope="module")
def corpus(clients: dict[str, Client]) -> dict[str, str]:
    """Alice's collection with one ingested document, and an empty one."""
    alice = clients["alice"]
    collection = alice.collection("handbook")["id"]
    [document] = alice.upload(collection, {"lyon.txt": SECRET_TEXT})
    assert alice.wait(collection, document["id"])["status"] == "ready"
    return {"collection": collection, "document": document["id"], "empty": alice.collection("empty")["id"]}


def _entries(server: RunningServer, response: httpx.Response | str) -> list[dict[str, Any]]:
    """Every audit entry of one request (by the response's request id)."""
    request_id = response if isinstance(response, str) else response.headers["x-request-id"]
    page = httpx.get(
        server.url + "/v1/audit/events",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        params={"request_id": request_id, "limit": 1000},
    )
    assert page.status_code == 200, page.text
    return [e["entry"] for e in page.json()["data"]]


def _one(server: RunningServer, response: httpx.Response | str, type_: str) -> dict[str, Any]:
    entries = _entries(server, response)
    assert [e["type"] for e in entries] == [type_], entries
    return entries[0]


def test_a_search_is_a_knowledge_request(
    server: RunningServer, clients: dict[str, Client], who: dict[str, tuple[str, str]], corpus: dict[str, str]
) -> None:
    query = "hotel nights Lyon"
    response = clients["alice"].post(
        "/v1/search", json={"query": query, "collections": [corpus["collection"]], "method": "bm25"}
    )
    assert response.status_code == 200, response.text
    hits = response.json()["data"]
    assert hits
    entry = _one(server, response, "knowledge.request")
    data = entry["data"]
    assert (entry["actor"], entry["team"]) == who["alice"]
    assert data["collections"] == [corpus["collection"]] and data["method"] == "bm25"
    assert data["query_hmac"] == Pseudonymizer.from_file(
        server.services.settings.resolved_data_dir / HMAC_KEY_FILE
    ).text(query)
    assert [c["chunk_id"] for c in data["retrieved_chunks"]] == [h["chunk_id"] for h in hits]
    assert data["status"] == 200 and data["endpoint"] == "/v1/search" and data["classification"] == "internal"
    assert "Lyon" not in str(entry) and "7431" not in str(entry)  # neither the query nor the passages
    everywhere = clients["alice"].post("/v1/search", json={"query": "vault", "method": "bm25"})
    assert _one(server, everywhere, "knowledge.request")["data"]["collections"] is None


def test_answers_are_knowledge_requests_with_their_sources(
    server: RunningServer, clients: dict[str, Client], corpus: dict[str, str]
) -> None:
    answer = clients["alice"].post(
        "/v1/answer",
        json={"question": "What does a hotel night cost?", "collections": [corpus["collection"]]},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    entry = _one(server, answer, "knowledge.request")
    data = entry["data"]
    assert data["collections"] == [corpus["collection"]] and data["method"] is None
    assert data["model"] == "fake-chat" and data["engine"] == "fake" and data["response_hmac"]
    assert [c["chunk_id"] for c in data["retrieved_chunks"]] == [s["chunk_id"] for s in body["sources"]]
    assert data["abstained"] is False and data["status"] == 200
    trace = httpx.get(
        server.url + f"/v1/audit/requests/{answer.headers['x-request-id']}",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    ).json()["trace"]
    assert trace["type"] == "knowledge.request" and trace["collections"] == [corpus["collection"]]

    client = openai.OpenAI(base_url=server.api, api_key=clients["alice"].http.headers["authorization"][7:])
    raw = client.chat.completions.with_raw_response.create(
        model="fake-chat",
        messages=[{"role": "user", "content": "Hotel nights?"}],
        extra_body={"knowledge": {"collections": [corpus["collection"]]}},
    )
    chat = _one(server, raw.headers["x-request-id"], "knowledge.request")
    assert chat["data"]["endpoint"] == "/v1/chat/completions" and chat["data"]["retrieved_chunks"]

    nothing = clients["alice"].post(
        "/v1/answer", json={"question": "Anything?", "collections": [corpus["empty"]]}
    )
    assert nothing.status_code == 200 and nothing.json()["abstained"]
    data = _one(server, nothing, "knowledge.request")["data"]
    assert data["abstained"] is True and data["retrieved_chunks"] == [] and data["model"] == ""


def test_a_streamed_answer_is_one_knowledge_request_written_when_it_ends(
    server: RunningServer, clients: dict[str, Client], corpus: dict[str, str]
) -> None:
    client = openai.OpenAI(base_url=server.api, api_key=clients["alice"].http.headers["authorization"][7:])
    with client.chat.completions.with_streaming_response.create(
        model="fake-chat",
        messages=[{"role": "user", "content": "What does a hotel night cost?"}],
        stream=True,
        extra_body={"knowledge": {"collections": [corpus["collection"]]}},
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert any(getattr(c, "citations", None) is not None for c in chunks)
    data = _one(server, request_id, "knowledge.request")["data"]
    assert data["status"] == 200 and data["retrieved_chunks"] and data["response_hmac"]
    assert data["completion_tokens"] > 0  # written at the stream's end, with what was generated
    empty = client.chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": "Anything?"}],
        stream=True,
        extra_body={"knowledge": {"collections": [corpus["empty"]]}},
    )
    request = list(empty)[0].id.removeprefix("chatcmpl-")
    assert _one(server, request, "knowledge.request")["data"]["abstained"] is True


def test_a_residency_denial_of_an_answer_is_recorded_once(
    server: RunningServer, clients: dict[str, Client]
) -> None:
    """Confidential passages may not go to a zone-"eu" engine: 403, one access.denied (residency)."""
    alice = clients["alice"]
    collection = alice.collection("confidential", classification="confidential")["id"]
    [document] = alice.upload(collection, {"c.txt": b"Confidential hotel nights cost 200 euros."})
    alice.wait(collection, document["id"])
    refused = alice.post(
        "/v1/answer", json={"question": "hotel nights?", "collections": [collection], "model": "eu-chat"}
    )
    assert refused.status_code == 403, refused.text
    data = _one(server, refused, "access.denied")["data"]
    assert data["reason"] == "residency" and data["classification"] == "confidential"
    assert "eu" not in data["allowed_zones"]


def test_collection_and_document_changes_are_audited(
    server: RunningServer, clients: dict[str, Client], who: dict[str, tuple[str, str]]
) -> None:
    alice = clients["alice"]
    created = alice.post("/v1/collections", json={"name": "changes", "classification": "internal"})
    collection = created.json()
    entry = _one(server, created, "admin.change")
    assert (entry["actor"], entry["team"]) == who["alice"]
    assert (
        entry["data"]["operation"] == "collection.create" and entry["data"]["object_id"] == collection["id"]
    )
    assert entry["data"]["before"] is None and entry["data"]["after"]["name"] == "changes"

    patched = alice.patch(f"/v1/collections/{collection['id']}", json={"classification": "confidential"})
    data = _one(server, patched, "admin.change")["data"]
    assert data["operation"] == "collection.update"
    assert (data["before"]["classification"], data["after"]["classification"]) == ("internal", "confidential")

    uploaded = alice.post(
        f"/v1/collections/{collection['id']}/documents", files=[("file", ("lyon.txt", SECRET_TEXT))]
    )
    document = uploaded.json()["data"][0]
    data = _one(server, uploaded, "admin.change")["data"]
    assert data["operation"] == "document.upload" and data["object_id"] == document["id"]
    assert data["after"]["sha256"] == document["sha256"] and data["after"]["filename"] == "lyon.txt"
    again = alice.post(
        f"/v1/collections/{collection['id']}/documents", files=[("file", ("copy.txt", SECRET_TEXT))]
    )
    assert again.json()["data"][0]["duplicate"] and _entries(server, again) == []  # nothing changed
    ready = alice.wait(collection["id"], document["id"])
    assert ready["title"]

    replaced = alice.put(
        f"/v1/collections/{collection['id']}/documents/{document['id']}",
        files={"file": ("lyon.txt", b"The vault code changed.")},
    )
    data = _one(server, replaced, "admin.change")["data"]
    assert data["operation"] == "document.reupload"
    assert (data["before"]["version"], data["after"]["version"]) == (1, 2)
    alice.wait(collection["id"], document["id"])
    deleted = alice.delete(f"/v1/collections/{collection['id']}/documents/{document['id']}")
    data = _one(server, deleted, "admin.change")["data"]
    assert data["operation"] == "document.delete" and data["after"] is None and data["before"]["version"] == 2
    gone = alice.delete(f"/v1/collections/{collection['id']}")
    data = _one(server, gone, "admin.change")["data"]
    assert data["operation"] == "collection.delete" and data["before"]["id"] == collection["id"]
    for response in (uploaded, replaced, deleted):
        text = str(_entries(server, response))
        assert "7431" not in text and "vault" not in text.lower() and "metadata" not in text


def test_refusals_are_access_denied_and_nothing_else(
    server: RunningServer, clients: dict[str, Client], who: dict[str, tuple[str, str]], corpus: dict[str, str]
) -> None:
    mallory, bob = clients["mallory"], clients["bob"]
    collection = corpus["collection"]
    refused = [
        (mallory.get(f"/v1/collections/{collection}"), 404, "collection", collection, "collection.read"),
        (
            mallory.post("/v1/search", json={"query": "vault", "collections": [collection]}),
            404,
            "collection",
            collection,
            "collection.read",
        ),
        (
            mallory.post("/v1/answer", json={"question": "code?", "collections": [collection]}),
            404,
            "collection",
            collection,
            "collection.read",
        ),
        (
            mallory.get(f"/v1/documents/{corpus['document']}/chunks"),
            404,
            "document",
            corpus["document"],
            "document.read",
        ),
        (
            bob.patch(f"/v1/collections/{collection}", json={"org_read": True}),
            403,
            "collection",
            collection,
            "collection.manage",
        ),
        (
            mallory.post("/v1/collections", json={"name": "theirs", "team_id": who["alice"][1]}),
            403,
            "team",
            who["alice"][1],
            "team.write",
        ),
    ]
    for response, status, object_type, object_id, action in refused:
        assert response.status_code == status, response.text
        entry = _one(server, response, "access.denied")  # the refusal only: no knowledge.request besides
        data = entry["data"]
        assert data["reason"] == "knowledge_access" and data["status"] == status
        assert (data["object_type"], data["object_id"], data["action"]) == (object_type, object_id, action)
        assert data["endpoint"] == response.request.url.path and entry["actor"] in (
            who["mallory"][0],
            who["bob"][0],
        )
    assert bob.get(f"/v1/collections/{collection}").status_code == 200  # allowed reads record nothing


def test_the_knowledge_api_fails_closed(
    server: RunningServer, clients: dict[str, Client], corpus: dict[str, str]
) -> None:
    alice, mallory = clients["alice"], clients["mallory"]
    with audit_table_away(server):
        searched = alice.post("/v1/search", json={"query": "hotel", "collections": [corpus["collection"]]})
        assert searched.status_code == 503 and searched.json()["error"]["code"] == "audit_unavailable"
        refused = mallory.get(f"/v1/collections/{corpus['collection']}")
        assert refused.status_code == 503  # a refusal that cannot be recorded is not served either
        created = alice.post("/v1/collections", json={"name": "unaudited"})
        assert created.status_code == 503
    names = {c["name"] for c in alice.get("/v1/collections").json()["data"]}
    assert "unaudited" not in names
    deadline = time.monotonic() + 10
    while (again := alice.post("/v1/search", json={"query": "hotel"})).status_code != 200:
        assert again.status_code == 503 and time.monotonic() < deadline, again.text
        time.sleep(0.1)
    _one(server, again, "knowledge.request")


def test_the_log_still_verifies(server: RunningServer, corpus: dict[str, str]) -> None:
    report = httpx.post(server.url + "/v1/audit/verify", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert report.json()["ok"], report.json()


def test_every_mutating_knowledge_route_records_its_change() -> None:
    routes = mutating_routes("/v1/collections")
    assert [route for route, records in routes.items() if not records] == []
    assert len(routes) == 6
