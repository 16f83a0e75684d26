"""The console's Knowledge page in a real browser: create a collection with its classification and access
list, upload several files at once with per-file progress and ingestion statuses (a clear error for a
damaged PDF), search the collection, delete a document; and a reader without write rights sees no write
controls. Every effect is checked through the API as well."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.config import load_settings
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY, fake_engines
from tests.console.conftest import docs_screenshot, login
from tests.knowledge.kbhelpers import Client, knowledge_settings, make_keys

expect = pytest.importorskip("playwright.sync_api").expect

NOTES = b"""# Remote work policy

## Equipment

Every employee working from home receives a laptop, a headset and a monthly allowance of 30 euros
for the internet connection.

## Days

Remote work is possible up to three days a week, agreed with the manager.
"""
INGESTED_S = 30_000  # ms: upload, parse in a child process, embed, index


def damaged_pdf(size: int) -> bytes:
    """A PDF header and end marker around random bytes: the parser refuses it as damaged (``corrupt``)."""
    return b"%PDF-1.7\n" + random.Random(7).randbytes(size) + b"\n%%EOF\n"


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The console with the knowledge base on fake engines (a fake embeddings model, a fast worker)."""
    data = tmp_path_factory.mktemp("console-kb") / "data"
    settings = load_settings(
        None,
        environ={},
        data_dir=data,
        admin_key=ADMIN_KEY,
        port=0,
        knowledge=knowledge_settings(),
        **fake_engines(),
    )
    with run_server(settings) as server:
        yield server


@pytest.fixture(scope="module")
def admin(console_server: RunningServer) -> Iterator[Client]:
    client = Client(console_server, ADMIN_KEY)
    yield client
    client.close()


def collection_named(client: Client, name: str) -> dict[str, Any]:
    collections = {c["name"]: c for c in client.get("/v1/collections").json()["data"]}
    return dict(collections[name])


def throttle_uploads(page: Any, bytes_per_s: int) -> None:
    """Slow the browser's uploads (DevTools network emulation) so that upload progress can be seen."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_s},
    )


def test_create_a_collection_with_classification_and_access(
    page: Any, console_server: RunningServer, admin: Client
) -> None:
    team = admin.get("/v1/me").json()["team"]
    login(page, console_server, path="knowledge")
    page.get_by_role("heading", name="Knowledge").wait_for()
    page.get_by_role("button", name="New collection").click()
    dialog = page.get_by_role("dialog", name="New collection")
    dialog.get_by_label("Name").fill("hr-policies")
    dialog.get_by_label("Description").fill("Leave, remote work and travel rules")
    dialog.get_by_label("Classification").select_option("confidential")
    # The default entry is the caller's team with write; add read for every service account of the team.
    expect(dialog.get_by_label("Entry 1: who")).to_have_value(team["id"])
    expect(dialog.locator(".kb-who").first).to_contain_text(team["name"])  # the id, named
    dialog.get_by_role("button", name="Add an entry").click()
    dialog.get_by_label("Entry 2: kind").select_option("role")
    dialog.get_by_label("Entry 2: who").fill("service")
    dialog.get_by_label("Entry 2: permission").select_option("read")
    docs_screenshot(page, "knowledge-new-collection")
    dialog.get_by_role("button", name="Create").click()
    page.get_by_role("heading", name="hr-policies").wait_for()
    assert "collection=" in page.url
    page.get_by_text("Drop files here").wait_for()

    created = collection_named(admin, "hr-policies")
    assert created["classification"] == "confidential" and created["org_read"] is False
    assert created["description"] == "Leave, remote work and travel rules"
    assert created["access"] == [
        {"kind": "team", "id": team["id"], "permission": "write"},
        {"kind": "role", "id": "service", "permission": "read"},
    ]
    assert created["permissions"] == ["read", "write", "manage"] and created["documents"] == {}

    # Edit: organisation-wide read, then back to the list where the access summary says so.
    page.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit hr-policies")
    edit.get_by_label("Everyone in the organisation may read it").check()
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Whole organisation (read)")).to_be_visible()
    assert collection_named(admin, "hr-policies")["org_read"] is True


def test_upload_many_files_with_progress_statuses_search_and_delete(
    page: Any, console_server: RunningServer, admin: Client
) -> None:
    collection = admin.collection("handbook", description="Employee handbook", classification="internal")
    login(page, console_server, path=f"knowledge?collection={collection['id']}")
    page.get_by_role("heading", name="handbook").wait_for()
    throttle_uploads(page, 400_000)
    broken = damaged_pdf(1_200_000)
    page.get_by_label("Choose files").set_input_files(
        [
            {"name": "remote-work.md", "mimeType": "text/markdown", "buffer": NOTES},
            {"name": "scan.pdf", "mimeType": "application/pdf", "buffer": broken},
        ]
    )
    uploads = page.get_by_role("list", name="Uploads")
    big = uploads.get_by_role("progressbar", name="Upload of scan.pdf")
    # Real progress from the browser's upload events: part-way, then complete.
    page.wait_for_function(
        "el => { const v = Number(el.getAttribute('aria-valuenow')); return v > 0 && v < 100; }",
        arg=big.element_handle(),
        timeout=INGESTED_S,
    )
    expect(uploads.get_by_role("listitem").filter(has_text="scan.pdf")).to_contain_text("Uploading")
    docs_screenshot(page, "knowledge-uploading")
    expect(big).to_have_attribute("aria-valuenow", "100", timeout=INGESTED_S)
    expect(uploads.get_by_role("progressbar", name="Upload of remote-work.md")).to_have_attribute(
        "aria-valuenow", "100"
    )
    good = uploads.get_by_role("listitem").filter(has_text="remote-work.md")
    bad = uploads.get_by_role("listitem").filter(has_text="scan.pdf")
    expect(good).to_contain_text("Ready", timeout=INGESTED_S)
    expect(bad).to_contain_text("Damaged file", timeout=INGESTED_S)
    expect(bad).to_contain_text("save a fresh copy")

    table = page.get_by_role("table", name="Documents of handbook")
    good_row = table.get_by_role("row").filter(has_text="remote-work.md")
    bad_row = table.get_by_role("row").filter(has_text="scan.pdf")
    expect(good_row).to_contain_text("Remote work policy")  # the title found in the document
    expect(good_row).to_contain_text("Ready")
    expect(bad_row).to_contain_text("Damaged file")
    expect(bad_row).to_contain_text("the PDF is damaged and cannot be read")  # the API's own message
    docs_screenshot(page, "knowledge-upload")

    documents = {
        d["filename"]: d for d in admin.get(f"/v1/collections/{collection['id']}/documents").json()["data"]
    }
    assert (
        documents["remote-work.md"]["status"] == "ready" and documents["remote-work.md"]["chunk_count"] >= 1
    )
    assert documents["scan.pdf"]["status"] == "corrupt" and documents["scan.pdf"]["size_bytes"] == len(broken)

    # Search the collection: the uploaded text is found.
    page.get_by_label("Search in this collection").fill("internet allowance")
    page.get_by_role("button", name="Search", exact=True).click()
    hits = page.get_by_role("list", name="Passages found")
    expect(hits).to_contain_text("monthly allowance of 30 euros")
    expect(hits).to_contain_text("Remote work policy")
    page.get_by_role("heading", name="Try a search").evaluate("el => el.scrollIntoView({block: 'start'})")
    docs_screenshot(page, "knowledge-search")
    found = admin.search("internet allowance", collections=[collection["id"]])
    assert found and {h["document_id"] for h in found} == {documents["remote-work.md"]["id"]}

    # Delete the document, confirming first: gone from the page, from the API and from search.
    page.get_by_role("button", name="Delete remote-work.md").click()
    confirm = page.get_by_role("dialog", name="Delete document")
    expect(confirm).to_contain_text("remote-work.md")
    confirm.get_by_role("button", name="Delete").click()
    expect(good_row).to_have_count(0)
    expect(bad_row).to_have_count(1)
    gone = admin.get(f"/v1/collections/{collection['id']}/documents/{documents['remote-work.md']['id']}")
    assert gone.status_code == 404
    for method in ("bm25", "dense", "hybrid"):
        assert admin.search("internet allowance", collections=[collection["id"]], method=method) == []
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("Nothing found for “internet allowance”.")).to_be_visible()

    # Re-upload the damaged file as a readable one: a new version of the same document, then ready.
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Re-upload scan.pdf").click()
    chooser.value.set_files(
        {"name": "scan.txt", "mimeType": "text/plain", "buffer": b"Bicycles are parked in the yard."}
    )
    fixed_row = table.get_by_role("row").filter(has_text="scan.txt")
    expect(fixed_row).to_contain_text("version 2", timeout=INGESTED_S)
    expect(fixed_row).to_contain_text("Ready", timeout=INGESTED_S)
    fixed = admin.get(f"/v1/collections/{collection['id']}/documents/{documents['scan.pdf']['id']}").json()
    assert fixed["status"] == "ready" and fixed["version"] == 2 and fixed["filename"] == "scan.txt"


def test_collections_list_and_delete_a_collection(
    page: Any, console_server: RunningServer, admin: Client
) -> None:
    doomed = admin.collection("old-archive", classification="public", org_read=True)
    legal = admin.collection("legal", description="Contracts and NDAs", classification="secret")
    admin.upload(
        legal["id"], {"nda.txt": b"The recipient keeps the information confidential for five years."}
    )
    admin.wait(legal["id"], admin.get(f"/v1/collections/{legal['id']}/documents").json()["data"][0]["id"])
    sealed = admin.collection("sealed", access=[])  # managed by its creator, read by nobody
    assert sealed["permissions"] == ["write", "manage"]
    login(page, console_server, path="knowledge")
    table = page.get_by_role("table", name="Collections")
    sealed_row = table.get_by_role("row").filter(has_text="sealed")
    expect(sealed_row).to_contain_text("Only its managers")
    expect(sealed_row.get_by_role("button", name="Edit sealed")).to_be_visible()
    expect(sealed_row.get_by_role("button", name="Open sealed")).to_have_count(0)
    expect(sealed_row.get_by_role("link")).to_have_count(0)
    legal_row = table.get_by_role("row").filter(has_text="legal")
    expect(legal_row).to_contain_text("Secret")
    expect(legal_row).to_contain_text("Contracts and NDAs")
    expect(legal_row.get_by_role("cell").nth(3)).to_have_text("1")
    expect(table.get_by_role("row").filter(has_text="old-archive")).to_contain_text(
        "Whole organisation (read)"
    )
    docs_screenshot(page, "knowledge-collections")

    page.get_by_role("button", name="Delete old-archive").click()
    confirm = page.get_by_role("dialog", name="Delete collection")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert admin.get(f"/v1/collections/{doomed['id']}").status_code == 200
    page.get_by_role("button", name="Delete old-archive").click()
    confirm.get_by_role("button", name="Delete").click()
    expect(table.get_by_role("row").filter(has_text="old-archive")).to_have_count(0)
    assert admin.get(f"/v1/collections/{doomed['id']}").status_code == 404


def test_a_reader_without_write_rights_sees_no_write_controls(
    page: Any, console_server: RunningServer, admin: Client
) -> None:
    team = admin.get("/v1/me").json()["team"]
    robot_key = make_keys(console_server, {"robot": (team["name"], "service")})["robot"]
    shared = admin.collection(
        "shared-faq",
        access=[{"kind": "team", "id": team["id"], "permission": "write"}, {"kind": "role", "id": "service"}],
    )
    admin.upload(shared["id"], {"faq.md": b"# FAQ\n\nThe canteen opens at noon."})
    with httpx.Client(base_url=console_server.url, headers={"authorization": f"Bearer {robot_key}"}) as robot:
        listed = {c["name"]: c for c in robot.get("/v1/collections").json()["data"]}
        assert listed["shared-faq"]["permissions"] == ["read"]
        refused = robot.post(f"/v1/collections/{shared['id']}/documents", files={"file": ("x.txt", b"x")})
        assert refused.status_code == 403
    login(page, console_server, robot_key, path="knowledge")
    row = page.get_by_role("table", name="Collections").get_by_role("row").filter(has_text="shared-faq")
    expect(row.get_by_role("button", name="Open shared-faq")).to_be_visible()
    expect(page.get_by_role("button", name="New collection")).to_have_count(0)
    expect(row.get_by_role("button", name="Delete shared-faq")).to_have_count(0)
    row.get_by_role("button", name="Open shared-faq").click()
    page.get_by_role("heading", name="shared-faq").wait_for()
    expect(page.get_by_text("You may read this collection but not add or delete documents.")).to_be_visible()
    expect(page.get_by_label("Choose files")).to_have_count(0)
    expect(page.get_by_role("row").filter(has_text="faq.md")).to_be_visible()
    expect(page.get_by_role("button", name="Delete faq.md")).to_have_count(0)
    expect(page.get_by_role("button", name="Edit")).to_have_count(0)


def test_every_string_exists_in_both_languages(page: Any, console_server: RunningServer) -> None:
    page.goto(console_server.url + "/")
    missing = page.evaluate(
        r"""async () => {
            const { messages } = await import('/console/static/pages/knowledge.js');
            const fr = Object.keys(messages.fr), en = Object.keys(messages.en);
            const source = await (await fetch('/console/static/pages/knowledge.js')).text();
            const used = [...source.matchAll(/t\('(knowledge\.[\w.]+)'/g)].map((m) => m[1]);
            return [
                ...fr.filter((k) => !en.includes(k)),
                ...en.filter((k) => !fr.includes(k)),
                ...used.filter((k) => !en.includes(k)),
            ];
        }"""
    )
    assert missing == []
