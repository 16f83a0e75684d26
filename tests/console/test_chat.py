"""The chat page in a real browser against a real server with fake engines: streamed answers labelled as
AI-generated, history kept across reloads and deleted by the user, Stop that ends the generation on the
server, feedback that reaches administrators, and answers from a collection whose citations open the
cited passage. One test streams the real SmolLM2 model into the page."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from socle.config import FakeEngineConfig, ModelRoute, load_settings
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY
from tests.console.conftest import docs_screenshot, login
from tests.knowledge.kbhelpers import knowledge_settings

REPLY = (
    "Annual leave is **25 working days** per year [1].\n\n"
    "- Ask for it in the HR portal at least two weeks ahead.\n"
    "- Your manager approves it.\n\nUnused days can be carried over until 31 March."
)
MARKUP = '<img src=x onerror="window.pwned=1"> <b>not bold</b> **bold** `<i>code</i>` [1]'
LEAVE_POLICY = b"""# Leave policy

## Annual leave

Every employee is entitled to 25 working days of annual leave per year. Requests are made in the HR
portal at least two weeks ahead and approved by the manager. Unused days can be carried over until
31 March of the following year.
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Fake engines: a chat model whose answer cites [1], a slow one (400 words, 20 ms apart) to stop,
    one that answers markup, and the knowledge base embedding with the fake model."""
    settings = load_settings(
        None,
        environ={},
        data_dir=tmp_path_factory.mktemp("chat") / "data",
        admin_key=ADMIN_KEY,
        port=0,
        engines=[
            FakeEngineConfig(name="fake", reply=REPLY, token_delay_s=0.01),
            FakeEngineConfig(name="slow", reply=" ".join(["word"] * 400), token_delay_s=0.02),
            FakeEngineConfig(name="markup", reply=MARKUP),
        ],
        models=[
            ModelRoute(name="fake-chat", engines=["fake"]),
            ModelRoute(name="slow-chat", engines=["slow"]),
            ModelRoute(name="markup-chat", engines=["markup"]),
        ],
        knowledge=knowledge_settings(),
    )
    with run_server(settings) as running:
        yield running


@pytest.fixture
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.api, headers={"authorization": f"Bearer {server.admin_key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def no_history(admin: httpx.Client) -> None:
    """Each test starts with an empty history (they share the admin user)."""
    admin.delete("/conversations").raise_for_status()


def ask(page: Any, question: str, *, model: str = "fake-chat") -> Any:
    page.get_by_label("Model").select_option(model)
    box = page.get_by_label("Your message")
    box.fill(question)
    box.press("Enter")
    return page.get_by_test_id("answer").last


def wait_until_answered(page: Any) -> None:
    page.get_by_role("button", name="Send").wait_for()


def test_a_streamed_answer_is_labelled_and_kept_in_the_history(
    page: Any, server: RunningServer, admin: httpx.Client
) -> None:
    login(page, server, server.admin_key, path="chat")
    box = page.get_by_label("Your message")
    box.fill("How many days of leave?")
    box.press("Shift+Enter")
    box.type("And who approves them?")
    assert box.input_value() == "How many days of leave?\nAnd who approves them?"
    box.press("Enter")
    answer = page.get_by_test_id("answer").last
    page.get_by_role("button", name="Stop").wait_for()  # streaming: the Send button became Stop
    wait_until_answered(page)
    assert "25 working days" in answer.inner_text()
    assert answer.locator("strong").first.inner_text() == "25 working days"  # markdown built as elements
    assert answer.locator("li").count() == 2
    assert answer.get_by_test_id("ai-label").inner_text() == "AI-generated · fake-chat"
    assert answer.get_by_test_id("citation").count() == 0  # no sources given: [1] stays text

    history = page.get_by_role("complementary")
    history.get_by_role(
        "button", name="How many days of leave? And who approves them?", exact=True
    ).wait_for()
    [conversation] = admin.get("/conversations").json()["data"]
    stored = admin.get(f"/conversations/{conversation['id']}").json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["model"] == "fake-chat" and stored[1]["content"] == REPLY and stored[1]["request_id"]

    page.reload()  # the open conversation is in the address: it comes back
    page.get_by_text("Unused days can be carried over").wait_for()
    page.get_by_role("button", name="New conversation").click()
    page.get_by_text("Ask a question to start.").wait_for()
    history.get_by_role("button", name="How many days of leave? And who approves them?", exact=True).click()
    page.get_by_text("Unused days can be carried over").wait_for()
    ask(page, "Thanks!")
    wait_until_answered(page)
    docs_screenshot(page, "chat-answer")
    assert len(admin.get(f"/conversations/{conversation['id']}").json()["messages"]) == 4

    history.get_by_role("button", name=re.compile("^Delete “How many days")).click()
    page.get_by_text("No saved conversation.").wait_for()
    assert admin.get("/conversations").json()["data"] == []
    assert admin.get(f"/conversations/{conversation['id']}").status_code == 404


def test_model_output_is_text_never_markup(page: Any, server: RunningServer) -> None:
    login(page, server, server.admin_key, path="chat")
    answer = ask(page, "Say something odd.", model="markup-chat")
    wait_until_answered(page)
    body = answer.locator(".msg-body")
    assert '<img src=x onerror="window.pwned=1">' in body.inner_text()
    assert body.locator("img, b, i").count() == 0 and body.locator("strong").inner_text() == "bold"
    assert body.locator("code").inner_text() == "<i>code</i>"
    assert page.evaluate("window.pwned") is None


def test_delete_all_conversations(page: Any, server: RunningServer, admin: httpx.Client) -> None:
    for title in ("First", "Second"):
        admin.post("/conversations", json={"title": title}).raise_for_status()
    login(page, server, server.admin_key, path="chat")
    history = page.get_by_role("complementary")
    history.get_by_role("button", name="Second", exact=True).wait_for()
    history.get_by_role("button", name="Rename “Second”").click()
    page.get_by_role("dialog").get_by_label("Name").fill("Second, renamed")
    page.get_by_role("button", name="Save").click()
    history.get_by_role("button", name="Second, renamed", exact=True).wait_for()
    history.get_by_role("button", name="Delete all").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete all").click()
    page.get_by_text("No saved conversation.").wait_for()
    assert admin.get("/conversations").json()["data"] == []


def _metric(server: RunningServer, pattern: str) -> float | None:
    match = re.search(pattern + r" ([0-9.e+]+)", httpx.get(server.url + "/metrics").text)
    return float(match.group(1)) if match else None


def test_stop_ends_the_generation_on_the_server(
    page: Any, server: RunningServer, admin: httpx.Client
) -> None:
    login(page, server, server.admin_key, path="chat")
    answer = ask(page, "Write a long text.", model="slow-chat")
    page.get_by_text("word word word word word").wait_for()
    page.get_by_role("button", name="Stop").click()
    answer.get_by_text("Answer stopped.").wait_for()
    docs_screenshot(page, "chat-stopped")
    words = len(answer.locator(".msg-body p").first.inner_text().split())
    assert 0 < words < 400
    # The server saw the client go (status 499, not 200), the engine has nothing in flight, and the
    # request lasted less than the 8 s its 400 words take: the generation ended with the stream.
    deadline = time.monotonic() + 15
    route = 'endpoint="/v1/chat/completions",engine="slow",model="slow-chat"'
    while _metric(server, rf'socle_requests_total\{{{route},status="499",team="admin"\}}') != 1.0:
        assert time.monotonic() < deadline, httpx.get(server.url + "/metrics").text
        time.sleep(0.1)
    assert _metric(server, rf'socle_requests_total\{{{route},status="200",team="admin"\}}') is None
    assert _metric(server, r'socle_engine_in_flight\{engine="slow"\}') == 0.0
    seconds = _metric(server, rf'socle_request_duration_seconds_sum\{{{route},team="admin"\}}')
    assert seconds is not None and seconds < 400 * 0.02
    [conversation] = admin.get("/conversations").json()["data"]
    saved = admin.get(f"/conversations/{conversation['id']}").json()["messages"][1]
    assert saved["role"] == "assistant" and 0 < len(saved["content"].split()) < 400
    page.get_by_role("button", name="Send").wait_for()


def test_thumbs_down_with_a_comment_reaches_the_administrators(
    page: Any, server: RunningServer, admin: httpx.Client
) -> None:
    login(page, server, server.admin_key, path="chat")
    answer = ask(page, "When can I carry over my leave?")
    wait_until_answered(page)
    answer.get_by_role("button", name="Bad answer").click()
    dialog = page.get_by_role("dialog", name="Your feedback on this answer")
    dialog.get_by_label("Comment (optional)").fill("It does not say which year.")
    docs_screenshot(page, "chat-feedback")
    dialog.get_by_role("button", name="Send feedback").click()
    dialog.wait_for(state="hidden")
    assert answer.get_by_role("button", name="Bad answer").get_attribute("aria-pressed") == "true"
    conversation = admin.get("/conversations").json()["data"][0]["id"]
    messages = admin.get(f"/conversations/{conversation}").json()["messages"]
    rated = messages[1]["request_id"]
    listed = admin.get("/admin/feedback", params={"rating": "down"}).json()["data"]
    [item] = [i for i in listed if i["request_id"] == rated]
    assert item["comment"] == "It does not say which year." and item["model"] == "fake-chat"
    assert item["team"]["name"] == "admin"
    answer.get_by_role("button", name="Good answer").click()
    answer.get_by_role("button", name="Good answer", pressed=True).wait_for()
    listed = admin.get("/admin/feedback").json()["data"]
    assert [i["rating"] for i in listed if i["request_id"] == rated] == ["up"]


def test_an_answer_from_a_collection_opens_its_cited_passage(
    page: Any, server: RunningServer, admin: httpx.Client
) -> None:
    created = admin.post("/collections", json={"name": f"hr-{time.time_ns()}", "classification": "internal"})
    assert created.status_code == 201, created.text
    collection = created.json()
    uploaded = admin.post(
        f"/collections/{collection['id']}/documents", files=[("file", ("leave-policy.md", LEAVE_POLICY))]
    )
    assert uploaded.status_code == 202, uploaded.text
    document = uploaded.json()["data"][0]
    deadline = time.monotonic() + 60
    while (
        admin.get(f"/collections/{collection['id']}/documents/{document['id']}").json()["status"] != "ready"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert admin.post("/search", json={"query": "annual leave", "collections": [collection["id"]]}).json()[
        "data"
    ]

    login(page, server, server.admin_key, path="chat")
    page.get_by_text("Collections:").click()
    page.get_by_label(collection["name"]).check()
    assert page.get_by_test_id("collections-summary").inner_text() == "1 selected"
    answer = ask(page, "How many days of annual leave do I get?")
    wait_until_answered(page)
    citation = answer.get_by_test_id("citation").first
    citation.wait_for()
    assert citation.inner_text() == "1"
    docs_screenshot(page, "chat-citations")
    citation.click()
    dialog = page.get_by_role("dialog", name="Source [1]")
    assert "Leave policy" in dialog.get_by_test_id("citation-title").inner_text()
    assert "25 working days of annual leave" in dialog.get_by_test_id("citation-passage").inner_text()
    docs_screenshot(page, "chat-citation-dialog")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    [conversation] = admin.get("/conversations").json()["data"]
    saved = admin.get(f"/conversations/{conversation['id']}").json()["messages"][1]
    assert saved["citations"][0]["document_id"] == document["id"]


@pytest.mark.llm
def test_the_real_model_streams_into_the_page(page: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = load_settings(
        None, environ={}, data_dir=tmp_path_factory.mktemp("llm") / "data", admin_key=ADMIN_KEY, port=0
    )
    with run_server(settings) as server:
        login(page, server, server.admin_key, path="chat")
        answer = ask(page, "What is the capital of France?", model="smollm2-135m-instruct")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=answer] .msg-body p')]"
            ".map((p) => p.innerText).join(' ').trim().length > 20",
            timeout=180_000,
        )
        assert answer.get_by_test_id("ai-label").inner_text() == "AI-generated · smollm2-135m-instruct"
        stop = page.get_by_role("button", name="Stop")
        if stop.is_visible():  # a long answer: stop it, as a user would (it may end first)
            with contextlib.suppress(PlaywrightTimeout):
                stop.click(timeout=2_000)
        page.get_by_role("button", name="Send").wait_for(timeout=60_000)
        assert len(answer.locator(".msg-body").inner_text().strip()) > 20


def test_upload_in_the_knowledge_page_then_ask_and_open_the_citation(
    page: Any, server: RunningServer, admin: httpx.Client
) -> None:
    """The whole journey in the browser: upload a document, wait until it is searchable, ask about it in
    the chat and open the passage its answer cites."""
    from playwright.sync_api import expect

    created = admin.post(
        "/collections", json={"name": f"policies-{time.time_ns()}", "classification": "internal"}
    )
    assert created.status_code == 201, created.text
    collection = created.json()
    login(page, server, server.admin_key, path=f"knowledge?collection={collection['id']}")
    page.get_by_role("heading", name=collection["name"]).wait_for()
    page.get_by_label("Choose files").set_input_files(
        [{"name": "leave-policy.md", "mimeType": "text/markdown", "buffer": LEAVE_POLICY}]
    )
    upload = (
        page.get_by_role("list", name="Uploads").get_by_role("listitem").filter(has_text="leave-policy.md")
    )
    expect(upload).to_contain_text("Ready", timeout=60_000)
    page.get_by_label("Search in this collection").fill("annual leave")
    page.keyboard.press("Enter")
    expect(page.get_by_text("25 working days").first).to_be_visible()

    page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Chat").click()
    page.get_by_text("Collections:").click()
    page.get_by_label(collection["name"]).check()
    answer = ask(page, "How many days of annual leave do I get?")
    wait_until_answered(page)
    citation = answer.get_by_test_id("citation").first
    citation.click()
    dialog = page.get_by_role("dialog", name="Source [1]")
    expect(dialog.get_by_test_id("citation-title")).to_contain_text("Leave policy")
    expect(dialog).to_contain_text("25 working days of annual leave")
