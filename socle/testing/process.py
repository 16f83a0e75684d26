"""Run ``socle`` as a real subprocess (for CLI, air-gap and benchmark runs) and wait until it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from socle.testing.server import free_port

__all__ = ["SocleProcess"]


class SocleProcess:
    """``with SocleProcess(["serve", ...]) as p:`` starts ``python -m socle serve --port N ...``.

    ``p.url`` is the base URL; ``p.output()`` is what the process printed (stdout and stderr).
    """

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        startup_timeout_s: float = 180.0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "socle", *args, "--port", str(self.port)]
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.startup_timeout_s = startup_timeout_s
        self._log = tempfile.NamedTemporaryFile(prefix="socle-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def __enter__(self) -> SocleProcess:
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"socle exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"socle did not start in {self.startup_timeout_s} s:\n{self.output()}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        os.unlink(self._log.name)
