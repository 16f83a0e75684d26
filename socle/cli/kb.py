"""``socle kb``: the knowledge base from the command line (create, list, ingest, search, ask).

Collections are named by id or by name. ``socle kb ingest`` uploads files and directories (recursively,
hidden files skipped) one file per request, then with ``--wait`` follows ingestion with a progress bar
until every document is searchable or has failed, and exits with status 1 if any failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from socle.cli.client import api_client, check_response, server_options
from socle.cli.options import json_option

__all__ = ["kb"]

_PENDING = ("queued", "processing")


def _dump(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the server: {exc}") from exc
    check_response(response)
    return response.json()


def _collection_id(client: httpx.Client, name_or_id: str) -> str:
    for collection in _call(client, "GET", "/collections")["data"]:
        if name_or_id in (collection["id"], collection["name"]):
            return str(collection["id"])
    raise click.ClickException(f"no collection {name_or_id!r} (or you may not see it)")


@click.group()
def kb() -> None:
    """Knowledge base: collections, document ingestion, search and answers with citations."""


@kb.command("create")
@click.argument("name")
@click.option("--description", default=None)
@click.option(
    "--classification",
    type=click.Choice(["public", "internal", "confidential", "secret"]),
    default="internal",
    show_default=True,
)
@click.option("--org-read", is_flag=True, help="Everyone in the organisation may read it.")
@json_option
@server_options
def create(
    name: str,
    description: str | None,
    classification: str,
    org_read: bool,
    as_json: bool,
    url: str,
    key: str | None,
    data_dir: Path,
) -> None:
    """Create a collection owned by your team."""
    body = {"name": name, "description": description, "classification": classification, "org_read": org_read}
    with api_client(url, key, data_dir) as client:
        collection = _call(client, "POST", "/collections", json=body)
    _dump(collection) if as_json else click.echo(collection["id"])


@kb.command("list")
@json_option
@server_options
def list_(as_json: bool, url: str, key: str | None, data_dir: Path) -> None:
    """List the collections you may read or manage."""
    with api_client(url, key, data_dir) as client:
        data = _call(client, "GET", "/collections")["data"]
    if as_json:
        _dump(data)
        return
    for c in data:
        click.echo(
            f"{c['id']}  {c['name']:<30} {c['classification']:<12} {'org-read' if c['org_read'] else ''}"
        )


def _files(paths: tuple[Path, ...]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(p.startswith(".") for p in child.relative_to(path).parts):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise click.ClickException(f"no such file or directory: {path}")


@kb.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", required=True, help="Collection id or name.")
@click.option("--wait", is_flag=True, help="Wait until every document is searchable or failed.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Longest wait, seconds.")
@json_option
@server_options
def ingest(
    paths: tuple[Path, ...],
    collection: str,
    wait: bool,
    timeout: float,
    as_json: bool,
    url: str,
    key: str | None,
    data_dir: Path,
) -> None:
    """Upload files and directories to a collection (ingested in the background)."""
    files = list(_files(paths))
    with api_client(url, key, data_dir) as client:
        collection_id = _collection_id(client, collection)
        documents: dict[str, dict[str, Any]] = {}
        with click.progressbar(files, label="Uploading", file=sys.stderr) as bar:
            for path in bar:
                with path.open("rb") as handle:
                    uploaded = _call(
                        client,
                        "POST",
                        f"/collections/{collection_id}/documents",
                        files={"file": (path.name, handle)},
                    )["data"]
                for document in uploaded:
                    documents[document["id"]] = document
        if wait:
            _wait(client, collection_id, documents, timeout)
    _report(list(documents.values()), as_json)
    if wait and any(d["status"] not in ("ready", *_PENDING) for d in documents.values()):
        raise SystemExit(1)


def _wait(
    client: httpx.Client, collection_id: str, documents: dict[str, dict[str, Any]], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    total = len(documents)
    done = sum(d["status"] not in _PENDING for d in documents.values())
    progress: Any = click.progressbar(length=total, label="Ingesting", file=sys.stderr)
    with progress as bar:
        bar.update(done)
        while done < total:
            if time.monotonic() > deadline:
                raise click.ClickException(f"timed out: {total - done} documents still being ingested")
            time.sleep(0.5)
            after = None
            while True:  # page through the collection, updating the documents uploaded here
                params: dict[str, Any] = {"limit": 1000, **({"after": after} if after else {})}
                page = _call(client, "GET", f"/collections/{collection_id}/documents", params=params)["data"]
                for document in page:
                    if document["id"] in documents:
                        documents[document["id"]] = document
                if len(page) < 1000:
                    break
                after = page[-1]["id"]
            now_done = sum(d["status"] not in _PENDING for d in documents.values())
            bar.update(now_done - done)
            done = now_done


def _report(documents: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _dump(documents)
        return
    counts: dict[str, int] = {}
    for document in documents:
        counts[document["status"]] = counts.get(document["status"], 0) + 1
        if document["status"] not in ("ready", *_PENDING):
            click.echo(
                f"{document['filename']}: {document['status']}: {document.get('error') or ''}", err=True
            )
    click.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing uploaded")


@kb.command("search")
@click.argument("query")
@click.option("--collection", "-c", "collections", multiple=True, help="Collection id or name (repeatable).")
@click.option("-k", type=int, default=5, show_default=True, help="Results.")
@click.option("--method", type=click.Choice(["hybrid", "bm25", "dense"]), default="hybrid", show_default=True)
@json_option
@server_options
def search(
    query: str,
    collections: tuple[str, ...],
    k: int,
    method: str,
    as_json: bool,
    url: str,
    key: str | None,
    data_dir: Path,
) -> None:
    """Search the collections you may read."""
    with api_client(url, key, data_dir) as client:
        body: dict[str, Any] = {"query": query, "k": k, "method": method}
        if collections:
            body["collections"] = [_collection_id(client, c) for c in collections]
        hits = _call(client, "POST", "/search", json=body)["data"]
    if as_json:
        _dump(hits)
        return
    for rank, hit in enumerate(hits, start=1):
        pages = f" p.{hit['page_start']}" if hit["page_start"] else ""
        click.echo(
            f"{rank}. {hit['title'] or hit['filename']} ({hit['filename']}{pages}) score={hit['score']:.4f}"
        )
        click.echo("   " + " ".join(hit["text"].split())[:300])


@kb.command("ask")
@click.argument("question")
@click.option(
    "--collection", "-c", "collections", multiple=True, required=True, help="Collection id or name."
)
@click.option("--model", "-m", default=None, help="Chat model; default: the server's knowledge.answer_model.")
@click.option("--max-tokens", type=int, default=256, show_default=True)
@json_option
@server_options
def ask(
    question: str,
    collections: tuple[str, ...],
    model: str | None,
    max_tokens: int,
    as_json: bool,
    url: str,
    key: str | None,
    data_dir: Path,
) -> None:
    """Answer a question from collections, with numbered citations."""
    with api_client(url, key, data_dir) as client:
        body = {
            "question": question,
            "collections": [_collection_id(client, c) for c in collections],
            "max_tokens": max_tokens,
            **({"model": model} if model else {}),
        }
        answer = _call(client, "POST", "/answer", json=body)
    if as_json:
        _dump(answer)
        return
    click.echo(answer["answer"])
    for citation in answer["citations"]:
        pages = f", p. {citation['page_start']}" if citation["page_start"] else ""
        title = citation["title"] or citation["filename"]
        click.echo(f"[{citation['marker']}] {title} ({citation['filename']}{pages})")
