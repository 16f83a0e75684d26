"""``socle kb`` against a real server: create, ingest a directory with --wait, list, search, ask."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from socle.cli import cli
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY
from tests.knowledge.kbhelpers import server_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(server_settings(tmp_path_factory.mktemp("kbcli"))) as running:
        yield running


def kb(server: RunningServer, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["kb", *args, "--url", server.url, "--key", ADMIN_KEY])
    return result.exit_code, result.stdout, result.stderr


def test_kb_commands(server: RunningServer, tmp_path: Path) -> None:
    code, out, _ = kb(server, "create", "handbook", "--classification", "confidential")
    assert code == 0 and len(out.strip()) == 26
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "onboarding.md").write_text("# Onboarding\n\nNew staff receive a laptop on their first day.")
    (docs / "sub" / "leave.txt").write_text("Annual leave is twenty five days per year.")
    (docs / "sub" / "broken.pdf").write_bytes(b"%PDF-1.4 not a real pdf")
    (docs / ".hidden.txt").write_text("never uploaded")

    code, out, err = kb(server, "ingest", str(docs), "--collection", "handbook", "--wait")
    assert code == 1, (out, err)  # one document failed
    assert "2 ready" in out and "broken.pdf" in err and "Ingesting" in err
    code, out, _ = kb(server, "ingest", str(docs / "sub" / "leave.txt"), "-c", "handbook", "--json")
    assert code == 0 and orjson.loads(out)[0]["status"] == "ready"  # the same content: not stored twice

    code, out, _ = kb(server, "list")
    assert "handbook" in out and "confidential" in out
    code, out, _ = kb(server, "search", "laptop first day", "-c", "handbook", "--method", "bm25")
    assert code == 0 and out.startswith("1. Onboarding (onboarding.md)") and "laptop" in out
    code, out, _ = kb(server, "ask", "How many days of leave?", "-c", "handbook")
    assert code == 0 and out.splitlines()[0] == "See [1] and also." and out.splitlines()[1].startswith("[1] ")
    code, _, err = kb(server, "search", "x", "-c", "nope")
    assert code == 1 and "no collection 'nope'" in err
