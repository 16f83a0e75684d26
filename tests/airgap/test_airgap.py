"""Air-gapped by construction: a chat and an embedding with the real embedded models, in a server
whose every outbound connection and name lookup is recorded and refused unless it is loopback.

The server runs as a subprocess with ``sitecustomize.py`` (beside this file) on its PYTHONPATH, so the
guard is in place before Socle, llama.cpp, torch or transformers are imported. No offline flag is set
by the test: Socle must set its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from socle.testing.process import SocleProcess
from tests.conftest import ADMIN_KEY

HERE = Path(__file__).parent
pytestmark = [pytest.mark.llm, pytest.mark.embeddings]


def _guarded_env(log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "SOCLE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["SOCLE_TEST_NET_LOG"] = str(log)
    return env


def test_the_guard_itself_refuses_and_records(tmp_path: Path) -> None:
    log = tmp_path / "net.jsonl"
    code = (
        "import socket\n"
        "try:\n"
        "    socket.getaddrinfo('huggingface.co', 443)\n"
        "except OSError:\n"
        "    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_guarded_env(log), capture_output=True, text=True)
    assert out.stdout.strip() == "refused"
    assert json.loads(log.read_text())["target"] == "huggingface.co"


def test_chat_and_embedding_attempt_no_outbound_connection(tmp_path: Path) -> None:
    log = tmp_path / "net.jsonl"
    env = _guarded_env(log)
    env["SOCLE_ADMIN_KEY"] = ADMIN_KEY
    with SocleProcess(["serve", "--data-dir", str(tmp_path / "data")], env=env, cwd=tmp_path) as server:
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        chat = httpx.post(
            server.url + "/v1/chat/completions",
            json={
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 8,
            },
            headers=headers,
            timeout=120,
        )
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"]
        emb = httpx.post(
            server.url + "/v1/embeddings",
            json={"model": "all-minilm-l6-v2", "input": ["air-gapped"], "encoding_format": "float"},
            headers=headers,
            timeout=120,
        )
        assert emb.status_code == 200 and len(emb.json()["data"][0]["embedding"]) == 384
    attempts = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    outbound = [a for a in attempts if not a["allowed"]]
    assert outbound == [], f"outbound connections attempted: {outbound}"
