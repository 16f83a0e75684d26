"""The knowledge API over a real server: collections, uploads, ingestion, search, answers, access."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from socle.testing.server import RunningServer, run_server
from tests.knowledge.kbhelpers import Client, make_keys, server_settings

GUIDE = b"""# Travel policy

## Trains

Employees travel by train for trips under four hours. First class is not reimbursed.

## Hotels

Hotel nights are reimbursed up to 120 euros in Paris and 90 euros elsewhere.
"""
NOTE = "Les allocations familiales sont versées chaque mois par la caisse.".encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(server_settings(tmp_path_factory.mktemp("kb"))) as running:
        yield running


@pytest.fixture(scope="module")
def keys(server: RunningServer) -> dict[str, str]:
    return make_keys(
        server,
        {
            "alice": ("research", "member"),
            "bob": ("research", "member"),
            "lead": ("research", "team-admin"),
            "mallory": ("sales", "member"),
            "robot": ("research", "service"),
        },
    )


@pytest.fixture(scope="module")
def clients(server: RunningServer, keys: dict[str, str]) -> Iterator[dict[str, Client]]:
    made = {name: Client(server, key) for name, key in keys.items()}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module")
def alice(clients: dict[str, Client]) -> Client:
    return clients["alice"]


def test_upload_ingest_search_and_chunks(alice: Client) -> None:
    collection = alice.collection("policies", description="HR policies", classification="internal")
    docs = alice.upload(collection["id"], {"travel.md": GUIDE, "note.txt": NOTE})
    assert [d["status"] for d in docs] == ["queued", "queued"] and not any(d["duplicate"] for d in docs)
    ready = [alice.wait(collection["id"], d["id"]) for d in docs]
    assert [d["status"] for d in ready] == ["ready", "ready"], ready
    assert ready[0]["title"] == "Travel policy" and ready[0]["chunk_count"] >= 1

    hits = alice.search("hotel reimbursed Paris", collections=[collection["id"]], method="bm25")
    assert hits and hits[0]["document_id"] == docs[0]["id"]
    assert {"chunk_id", "score", "text", "filename", "title", "page_start", "page_end"} <= set(hits[0])
    assert "120 euros" in hits[0]["text"] and hits[0]["filename"] == "travel.md"
    fr = alice.search("allocation familiale", method="bm25")  # all readable collections
    assert [h["document_id"] for h in fr] == [docs[1]["id"]]
    for method in ("dense", "hybrid"):
        assert alice.search("trains", collections=[collection["id"]], method=method)

    chunks = alice.get(f"/v1/documents/{docs[0]['id']}/chunks").json()["data"]
    assert [c["ordinal"] for c in chunks] == list(range(len(chunks)))
    assert any(c["section_path"][-1:] == ["Hotels"] for c in chunks), chunks
    listed = alice.get(f"/v1/collections/{collection['id']}/documents").json()["data"]
    assert {d["id"] for d in listed} == {d["id"] for d in docs}
    counts = alice.get(f"/v1/collections/{collection['id']}").json()["documents"]
    assert counts == {"ready": 2}


def test_same_content_is_stored_once(alice: Client) -> None:
    collection = alice.collection("dedup")
    first = alice.upload(collection["id"], {"a.txt": b"unique content for dedup"})[0]
    again = alice.upload(collection["id"], {"copy.txt": b"unique content for dedup"})[0]
    assert again["id"] == first["id"] and again["duplicate"] is True


def test_reupload_swaps_chunks_and_delete_removes_at_once(alice: Client) -> None:
    collection = alice.collection("versions")["id"]
    doc = alice.upload(collection, {"v.txt": b"the aardvark version of the text"})[0]
    alice.wait(collection, doc["id"])
    response = alice.put(
        f"/v1/collections/{collection}/documents/{doc['id']}",
        files={"file": ("v.txt", b"the zebra version now")},
    )
    assert response.status_code == 202 and response.json()["version"] == 2
    assert alice.wait(collection, doc["id"])["status"] == "ready"
    assert alice.search("aardvark", collections=[collection], method="bm25") == []
    assert alice.search("zebra", collections=[collection], method="bm25")[0]["document_id"] == doc["id"]
    response = alice.delete(f"/v1/collections/{collection}/documents/{doc['id']}")
    assert response.status_code == 200
    for method in ("bm25", "dense", "hybrid"):
        assert alice.search("zebra", collections=[collection], method=method) == []
    assert alice.get(f"/v1/collections/{collection}/documents/{doc['id']}").status_code == 404


def test_bad_files_get_an_error_status_and_the_others_proceed(alice: Client) -> None:
    collection = alice.collection("mixed")["id"]
    docs = alice.upload(
        collection,
        {
            "fake.pdf": b"%PDF-1.7 this is not really a PDF at all",
            "good.txt": b"a perfectly good text file about llamas",
            "binary.docx": bytes(range(256)) * 10,
        },
    )
    done = {d["filename"]: alice.wait(collection, d["id"]) for d in docs}
    assert done["good.txt"]["status"] == "ready"
    for name in ("fake.pdf", "binary.docx"):
        assert done[name]["status"] not in ("queued", "processing", "ready"), done[name]
        assert done[name]["error"], done[name]
    assert alice.search("llamas", collections=[collection], method="bm25")


def test_answers_cite_only_given_chunks_and_raise_classification(alice: Client) -> None:
    collection = alice.collection("secrets", classification="secret")["id"]
    doc = alice.upload(collection, {"plan.md": b"# Plan\n\nThe launch date is the third of March."})[0]
    alice.wait(collection, doc["id"])
    response = alice.post("/v1/answer", json={"question": "When is the launch?", "collections": [collection]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "See [1] and also." and body["removed_citations"] == 1
    assert [c["marker"] for c in body["citations"]] == [1]
    cited = body["citations"][0]
    assert cited["document_id"] == doc["id"] and "third of March" in cited["passage"] and cited["chunk_id"]
    assert body["classification"] == "secret" and body["abstained"] is False

    chat = alice.post(
        "/v1/chat/completions",
        json={
            "model": "fake-chat",
            "messages": [{"role": "user", "content": "When is the launch?"}],
            "knowledge": {"collections": [collection]},
        },
    ).json()
    assert chat["choices"][0]["message"]["content"] == "See [1] and also."
    assert chat["citations"][0]["chunk_id"] == cited["chunk_id"]
    assert chat["knowledge"]["removed_citations"] == 1


def test_answers_abstain_when_nothing_is_found(alice: Client) -> None:
    collection = alice.collection("empty")["id"]
    body = alice.post(
        "/v1/answer", json={"question": "Quelle est la date ?", "collections": [collection]}
    ).json()
    assert body["abstained"] is True and body["citations"] == [] and "Je n'ai pas" in body["answer"]


def test_other_teams_get_404_on_every_route(clients: dict[str, Client], alice: Client) -> None:
    collection = alice.collection("private")["id"]
    doc = alice.upload(collection, {"p.txt": b"private research notes about quasars"})[0]
    alice.wait(collection, doc["id"])
    mallory = clients["mallory"]
    base = f"/v1/collections/{collection}"
    attempts = [
        mallory.get(base),
        mallory.patch(base, json={"description": "mine"}),
        mallory.delete(base),
        mallory.get(f"{base}/documents"),
        mallory.post(f"{base}/documents", files={"file": ("x.txt", b"x")}),
        mallory.get(f"{base}/documents/{doc['id']}"),
        mallory.put(f"{base}/documents/{doc['id']}", files={"file": ("x.txt", b"y")}),
        mallory.delete(f"{base}/documents/{doc['id']}"),
        mallory.get(f"/v1/documents/{doc['id']}/chunks"),
        mallory.post("/v1/search", json={"query": "quasars", "collections": [collection]}),
        mallory.post("/v1/answer", json={"question": "quasars?", "collections": [collection]}),
        mallory.post(
            "/v1/chat/completions",
            json={
                "model": "fake-chat",
                "messages": [{"role": "user", "content": "q"}],
                "knowledge": {"collections": [collection]},
            },
        ),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts), [r.text for r in attempts]
    assert mallory.search("quasars") == []
    assert collection not in {c["id"] for c in mallory.get("/v1/collections").json()["data"]}
    assert alice.get(f"{base}/documents/{doc['id']}").json()["status"] == "ready"  # nothing changed


def test_readers_cannot_write_and_documents_can_narrow(
    server: RunningServer, keys: dict[str, str], clients: dict[str, Client], alice: Client
) -> None:
    bob, lead, mallory = (clients[n] for n in ("bob", "lead", "mallory"))
    bob_id = _principal_id(server, keys["bob"])
    collection = alice.collection("shared", org_read=True)["id"]
    open_doc = alice.upload(collection, {"open.txt": b"open notes about comets"})[0]
    narrow = alice.upload(
        collection,
        {"narrow.txt": b"restricted notes about comets"},
        access=f'[{{"kind": "user", "id": "{bob_id}"}}]',
    )[0]
    alice.wait(collection, open_doc["id"])
    alice.wait(collection, narrow["id"])
    # Organisation-wide read: another team reads and searches, but cannot upload (403: it can see it).
    assert mallory.get(f"/v1/collections/{collection}").status_code == 200
    assert {h["document_id"] for h in mallory.search("comets", collections=[collection])} == {open_doc["id"]}
    response = mallory.post(f"/v1/collections/{collection}/documents", files={"file": ("m.txt", b"m")})
    assert response.status_code == 403, response.text
    # The narrowed document: bob (named) sees it; alice's teammates do not, in search or by id.
    assert {h["document_id"] for h in bob.search("comets", collections=[collection])} == {
        open_doc["id"],
        narrow["id"],
    }
    assert mallory.get(f"/v1/collections/{collection}/documents/{narrow['id']}").status_code == 404
    assert mallory.get(f"/v1/documents/{narrow['id']}/chunks").status_code == 404
    # Managing: the team admin may change the access list; a plain member of the team may not.
    assert bob.patch(f"/v1/collections/{collection}", json={"org_read": False}).status_code == 403
    assert lead.patch(f"/v1/collections/{collection}", json={"org_read": False}).status_code == 200
    assert mallory.get(f"/v1/collections/{collection}").status_code == 404


def test_services_read_but_cannot_write(clients: dict[str, Client]) -> None:
    robot = clients["robot"]
    assert robot.get("/v1/collections").status_code == 200
    assert robot.post("/v1/collections", json={"name": "robots"}).status_code == 403


def test_collections_list_their_document_counts_and_the_callers_permissions(
    clients: dict[str, Client], alice: Client
) -> None:
    collection = alice.collection("counted", org_read=True)["id"]
    docs = alice.upload(collection, {"ok.txt": b"counted notes about owls", "bad.pdf": b"not a pdf"})
    statuses = [alice.wait(collection, d["id"])["status"] for d in docs]
    assert statuses[0] == "ready" and statuses[1] not in ("ready", "queued", "processing")
    expected = {"ready": 1, statuses[1]: 1}
    permissions = {"alice": ["read", "write", "manage"], "lead": ["read", "write", "manage"]}
    permissions |= {"bob": ["read", "write"], "mallory": ["read"], "robot": ["read"]}
    for name, allowed in permissions.items():
        listed = {c["id"]: c for c in clients[name].get("/v1/collections").json()["data"]}
        assert listed[collection]["documents"] == expected, name
        assert listed[collection]["permissions"] == allowed, name
        one = clients[name].get(f"/v1/collections/{collection}").json()
        assert one["documents"] == expected and one["permissions"] == allowed, name
    empty = alice.collection("counted-empty")
    assert empty["permissions"] == ["read", "write", "manage"]
    listed = {c["id"]: c for c in alice.get("/v1/collections").json()["data"]}
    assert listed[empty["id"]]["documents"] == {}


def _principal_id(server: RunningServer, key: str) -> str:
    async def find() -> str:
        return (await server.services.keys.authenticate(key)).principal_id

    return server.run(find())
