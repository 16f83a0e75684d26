"""Chat history and feedback through the real API, on SQLite and PostgreSQL: conversations are private
to their owner and sealed at rest; feedback is accepted only on one's own answers, once per answer,
counted in the metrics, audited, and listed for administrators with the answer's model and team."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from socle.governance.audit.reader import EventFilter
from socle.storage.models import ConversationMessageRow, ConversationRow, FeedbackRow
from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines
from tests.knowledge.kbhelpers import make_keys

SECRET = "Le mot de passe du coffre est 4242"


@pytest.fixture
def server(make_settings: Any, database_url: str) -> Iterator[RunningServer]:
    with run_server(make_settings(database_url=database_url, **fake_engines())) as running:
        yield running


@pytest.fixture
def keys(server: RunningServer) -> dict[str, str]:
    return make_keys(server, {"alice": ("research", "member"), "bob": ("research", "member")})


@pytest.fixture
def clients(server: RunningServer, keys: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    """API clients of alice, bob (members of one team) and the admin."""
    opened = {
        name: httpx.Client(base_url=server.api, headers={"authorization": f"Bearer {key}"}, timeout=30)
        for name, key in {**keys, "admin": server.admin_key}.items()
    }
    yield opened
    for client in opened.values():
        client.close()


def test_conversations_are_private_and_sealed(
    server: RunningServer, clients: dict[str, httpx.Client]
) -> None:
    alice, bob, admin = clients["alice"], clients["bob"], clients["admin"]
    created = alice.post("/conversations", json={"title": "  Coffre   fort ", "model": "fake-chat"})
    assert created.status_code == 201, created.text
    conversation = created.json()
    assert conversation["title"] == "Coffre fort" and conversation["message_count"] == 0
    path = f"/conversations/{conversation['id']}"
    question = alice.post(path + "/messages", json={"role": "user", "content": SECRET})
    assert question.status_code == 201, question.text
    citations = [{"marker": 1, "document_id": "d1", "title": "Coffre", "passage": "4242", "page_start": 2}]
    answer = alice.post(
        path + "/messages",
        json={"role": "assistant", "content": "C'est 4242 [1].", "model": "fake-chat", "request_id": "r1",
              "citations": citations},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text

    full = alice.get(path).json()
    assert [m["role"] for m in full["messages"]] == ["user", "assistant"]
    assert full["messages"][0]["content"] == SECRET and full["messages"][1]["citations"] == citations
    assert full["messages"][1]["request_id"] == "r1" and full["message_count"] == 2
    listed = alice.get("/conversations").json()
    assert [c["id"] for c in listed["data"]] == [conversation["id"]] and listed["has_more"] is False

    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"title": "x"}),
        ("DELETE", "", None),
        ("POST", "/messages", {"role": "user", "content": "x"}),
    ]:
        refused = bob.request(method, path + suffix, json=body)
        assert refused.status_code == 404, (method, suffix, refused.text)
        assert refused.json()["error"]["code"] == "conversation_not_found"
    assert bob.get("/conversations").json()["data"] == []
    assert bob.delete("/conversations").json()["deleted"] == 0
    assert admin.get(path).status_code == 404  # administrators do not read people's conversations

    async def stored() -> list[bytes]:
        async with server.services.db.session() as session:
            titles = (await session.scalars(select(ConversationRow.title))).all()
            sealed = (await session.scalars(select(ConversationMessageRow.sealed))).all()
        return [bytes(b) for b in [*titles, *sealed]]

    raw = server.run(stored())
    assert len(raw) == 3 and not any(b"4242" in blob or b"Coffre" in blob for blob in raw)

    renamed = alice.patch(path, json={"title": "Renamed"}).json()
    assert renamed["title"] == "Renamed" and "messages" not in renamed
    second = alice.post("/conversations", json={}).json()
    assert [c["id"] for c in alice.get("/conversations").json()["data"]] == [second["id"], conversation["id"]]
    assert alice.delete(path).json() == {
        "id": conversation["id"],
        "object": "conversation.deleted",
        "deleted": True,
    }
    assert alice.get(path).status_code == 404
    alice.post(f"/conversations/{second['id']}/messages", json={"role": "user", "content": "hi"})
    assert alice.delete("/conversations").json()["deleted"] == 1
    assert alice.get("/conversations").json()["data"] == []
    assert alice.post("/conversations", json={"title": "x", "owner": "bob"}).status_code == 400

    async def deletions() -> list[dict[str, Any]]:
        entries = await server.services.audit.reader.events(EventFilter(type="admin.change"))
        return [e.content() for e in entries if e.content()["data"]["object_type"] == "conversation"]

    logged = server.run(deletions())  # bob's refused delete and empty delete-all: nothing
    assert [(e["data"]["operation"], e["data"]["object_id"]) for e in logged] == [
        ("conversation.delete", conversation["id"]),
        ("conversation.delete_all", logged[1]["actor"]),
    ]
    assert logged[1]["data"]["after"] == {"deleted": 1} and "Renamed" not in str(logged)


def _ask(client: httpx.Client) -> str:
    response = client.post(
        "/chat/completions", json={"model": "fake-chat", "messages": [{"role": "user", "content": "Bonjour"}]}
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert response.json()["id"] == "chatcmpl-" + request_id
    return request_id


def test_feedback_on_ones_own_answers_is_counted_audited_and_listed(
    server: RunningServer, clients: dict[str, httpx.Client]
) -> None:
    alice, bob, admin = clients["alice"], clients["bob"], clients["admin"]
    request_id = _ask(alice)
    refused = bob.post("/feedback", json={"request_id": request_id, "rating": "down"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "request_not_found"
    assert alice.post("/feedback", json={"request_id": "nope", "rating": "up"}).status_code == 404
    assert alice.post("/feedback", json={"request_id": request_id, "rating": "meh"}).status_code == 400

    down = alice.post("/feedback", json={"request_id": request_id, "rating": "down", "comment": "Wrong date"})
    assert down.status_code == 200, down.text
    assert down.json() == {"object": "feedback", "request_id": request_id, "rating": "down",
                           "comment": "Wrong date", "model": "fake-chat", "updated": False}  # fmt: skip
    again = alice.post(
        "/feedback", json={"request_id": request_id, "rating": "down", "comment": "Wrong date!"}
    )
    assert again.json()["updated"] is True
    other = _ask(alice)
    assert alice.post("/feedback", json={"request_id": other, "rating": "up"}).status_code == 200

    listed = admin.get("/admin/feedback").json()
    assert listed["totals"] == {"up": 1, "down": 1} and listed["has_more"] is False
    [item] = [i for i in listed["data"] if i["request_id"] == request_id]
    assert item["rating"] == "down" and item["comment"] == "Wrong date!" and item["model"] == "fake-chat"
    assert item["team"]["name"] == "research" and item["principal"]["name"].startswith("alice")
    downs = admin.get("/admin/feedback", params={"rating": "down", "team": "research"}).json()
    assert [i["request_id"] for i in downs["data"]] == [request_id] and downs["totals"]["up"] == 0
    assert admin.get("/admin/feedback", params={"model": "other"}).json()["data"] == []
    assert admin.get("/admin/feedback", params={"team": "admin"}).json()["data"] == []
    page = admin.get("/admin/feedback", params={"limit": 1}).json()
    assert page["has_more"] is True and len(page["data"]) == 1
    rest = admin.get("/admin/feedback", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert rest["has_more"] is False and rest["data"][0]["id"] != page["data"][0]["id"]
    assert alice.get("/admin/feedback").status_code == 403

    metrics = httpx.get(server.url + "/metrics").text
    assert 'socle_feedback_total{model="fake-chat",rating="down"} 1.0' in metrics  # once, not per repost
    assert 'socle_feedback_total{model="fake-chat",rating="up"} 1.0' in metrics

    async def audited() -> list[dict[str, Any]]:
        entries = await server.services.audit.reader.events(EventFilter(type="feedback"))
        return [e.content() for e in entries]

    events = server.run(audited())
    assert len(events) == 3 and {e["data"]["answer_request_id"] for e in events} == {request_id, other}
    assert all("Wrong" not in str(e) for e in events) and events[0]["data"]["comment_hmac"].startswith("hmac")

    async def stored() -> list[bytes | None]:
        async with server.services.db.session() as session:
            return list((await session.scalars(select(FeedbackRow.comment))).all())

    comments = server.run(stored())
    assert len(comments) == 2 and not any(c and b"Wrong" in c for c in comments)
