"""Gateway overhead: what Socle adds in front of an OpenAI-compatible upstream, against LiteLLM, in one run.

Three targets answer the same non-streaming and streaming chat completions:

* **direct** -- the mock upstream itself (``python -m socle.testing.mock_upstream``, its own process), which
  answers after a fixed latency (``--latency-ms``, default 20);
* **Socle** -- ``socle serve`` (its own process) with one ``openai_compat`` engine pointing at the mock and
  one model route ``bench-model``; authentication, metrics and usage recording on (the defaults);
* **LiteLLM** -- the LiteLLM proxy (one worker, its own process), installed by this script into
  ``bench/.venv-litellm``, configured the same way: one model ``bench-model`` -> ``openai/<name>`` at the
  mock, a master key so that authentication is on, ``LITELLM_LOCAL_MODEL_COST_MAP=True``.

For each target it measures, with a closed-loop load generator in a separate process (a minimal
keep-alive HTTP/1.1 client on uvloop, much cheaper per request than any of the targets):

* latency added to the direct path (P50/P95/P99) at concurrency 1, 16 and 64, non-streaming;
* time to first SSE event of streamed answers at concurrency 1 and 16, added to the direct path;
* the highest sustained request rate, closed loop at high concurrency with the mock at 0 latency, counted
  only when no request failed.

Governance (``--governance``, or name the targets): the same measurements with governance fully on,
against the same mock, in the same run (see ``bench/_governance.py`` for the exact set-up):

* **socle-gov** -- a member's team key (not the admin key), so RBAC resolves a member's bindings;
  budgets on the organisation, the team, the user and the key, each reserved and settled on every
  request; rate limits (requests and tokens per minute) on the key and on the team, too high to
  refuse; usage records on. Compared with **socle** (the admin key, no budget, no limit);
* **socle-pg** and **socle-gov-pg** -- the same two on PostgreSQL (a ``pgserver`` started by the
  script), which multi-replica deployments use;
* **litellm-keys** -- LiteLLM with a virtual key carrying a ``max_budget``, in a team with a
  ``max_budget``, its database on the same PostgreSQL. LiteLLM reaches its database through Prisma,
  whose engines must be downloadable (or present); when LiteLLM cannot start that way the run goes on
  and the report says why.

Every process (load generator, gateway, mock) shares the machine's cores, the same way for every target,
so absolute figures are pessimistic but the ratios are fair. Usage::

    python bench/gateway_overhead.py [--latency-ms 20] [--quick] [--targets direct,socle,litellm]
    python bench/gateway_overhead.py --governance [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import free_port, machine_line, wait_http
from _governance import check_socle, prisma_url, provision_litellm, provision_socle

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
RESULTS = ROOT / "bench" / "results"
MODEL = "bench-model"
UPSTREAM_MODEL = "mock-model"
PROMPT = [{"role": "user", "content": "Hello! In one sentence, what is a gateway?"}]
LITELLM_GOAL_P50_FRACTION = 1 / 5
LITELLM_GOAL_RATE_FACTOR = 3.0
PRICE_INPUT_PER_MTOK = 0.5  # euros per million tokens: budgets in euros need a price
PRICE_OUTPUT_PER_MTOK = 1.5


# Load generator (runs in its own process: ``--loadgen SPEC``) --------------------------------------------
class _Connection:
    """One keep-alive HTTP/1.1 connection; just enough protocol for these answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def call(self, request: bytes) -> tuple[int, float, float]:
        """Send ``request``; return (status, seconds to first SSE event or body, seconds to the end)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        reader, writer = self.reader, self.writer
        assert reader is not None
        start = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        first: float | None = None
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                data = await reader.readexactly(size + 2)
                if first is None and b"data:" in data:
                    first = time.perf_counter() - start
        else:
            marker = lower.find(b"content-length:")
            if marker >= 0:
                length = int(lower[marker + 15 : lower.find(b"\r\n", marker)])
                await reader.readexactly(length)
            else:
                await reader.read()
                await self.close()
        total = time.perf_counter() - start
        if b"connection: close" in lower:
            await self.close()
        return status, first if first is not None else total, total


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "mean": sum(ordered) / len(ordered) * 1000}


async def _closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(spec["body"]).encode()
    head = (
        f"POST {spec['path']} HTTP/1.1\r\nhost: {spec['host']}:{spec['port']}\r\n"
        f"authorization: Bearer {spec['key']}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    request = head.encode() + body
    latencies: list[float] = []
    firsts: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    started = loop.time()
    measure_from = started + spec["warmup_s"]
    stop_at = measure_from + spec["duration_s"]

    async def worker() -> None:
        connection = _Connection(spec["host"], spec["port"])
        try:
            while loop.time() < stop_at:
                sent = loop.time()
                try:
                    status, first, total = await asyncio.wait_for(connection.call(request), spec["timeout_s"])
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    await connection.close()
                    continue
                except TimeoutError:
                    errors["timeout"] = errors.get("timeout", 0) + 1
                    await connection.close()
                    continue
                if sent < measure_from:
                    continue
                if status != 200:
                    errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
                    continue
                latencies.append(total)
                firsts.append(first)
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    elapsed = loop.time() - measure_from
    return {
        "ok": len(latencies),
        "errors": errors,
        "rate": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "latency": _percentiles(latencies),
        "first": _percentiles(firsts),
    }


def _loadgen_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        import uvloop

        result = uvloop.run(_closed_loop(spec))
    except ImportError:
        result = asyncio.run(_closed_loop(spec))
    print(json.dumps(result))


# Targets ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gateway:
    """A gateway target: which server, governed or not, on which database."""

    label: str
    server: str  # "socle" or "litellm"
    governed: bool = False
    postgres: bool = False
    optional: bool = False  # if it cannot start, the run goes on and the report says why


GATEWAYS = {
    "socle": Gateway("Socle", "socle"),
    "socle-gov": Gateway("Socle gov", "socle", governed=True),
    "socle-pg": Gateway("Socle PG", "socle", postgres=True),
    "socle-gov-pg": Gateway("Socle gov PG", "socle", governed=True, postgres=True),
    "litellm": Gateway("LiteLLM", "litellm"),
    "litellm-keys": Gateway("LiteLLM keys", "litellm", governed=True, postgres=True, optional=True),
}
GOVERNANCE_TARGETS = "direct,socle,socle-gov,socle-pg,socle-gov-pg,litellm,litellm-keys"
# (title, numerator, denominator) of the ratio columns, shown when both targets ran.
RATIOS = (
    ("Socle/LiteLLM", "socle", "litellm"),
    ("gov/off", "socle-gov", "socle"),
    ("gov/off PG", "socle-gov-pg", "socle-pg"),
    ("Socle gov PG/LiteLLM keys", "socle-gov-pg", "litellm-keys"),
)
# Governance on versus off, in the report's governance section.
GOVERNANCE_PAIRS = (("SQLite", "socle-gov", "socle"), ("PostgreSQL", "socle-gov-pg", "socle-pg"))


@dataclass
class Target:
    name: str
    host: str
    port: int
    key: str
    path: str = "/v1/chat/completions"
    results: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # what the governance check found after the run
    unavailable: str = ""  # why an optional target could not be measured


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[int]:
    """Run a server process, logging to ``log``; yield its pid once ``ready_url`` answers."""
    with (
        log.open("wb") as out,
        subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT) as proc,
    ):
        try:
            wait_http(ready_url, proc, log)
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def socle_command(
    tmp: Path, upstream_url: str, port: int, key: str, database_url: str | None = None
) -> tuple[list[str], dict[str, str]]:
    config = tmp / "socle.toml"
    database = f'database_url = "{database_url}"\n\n' if database_url else ""
    config.write_text(
        f"""# One upstream engine and one model route, as an operator would configure it.
{database}[[engines]]
kind = "openai_compat"
name = "mock"
zone = "on-prem"
base_url = "{upstream_url}"
upstream_model = "{UPSTREAM_MODEL}"
price_input_per_mtok = {PRICE_INPUT_PER_MTOK}
price_output_per_mtok = {PRICE_OUTPUT_PER_MTOK}
# No cap below the load generator's concurrency: LiteLLM has none either.
concurrency = 1024

[[models]]
name = "{MODEL}"
engines = ["mock"]
""",
        encoding="utf-8",
    )
    socle = Path(sys.executable).with_name("socle")
    command = [
        str(socle),
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--data-dir",
        str(tmp / "data"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCLE_")}
    env["SOCLE_ADMIN_KEY"] = key
    return command, env


def ensure_litellm(python: str) -> Path:
    """Install the LiteLLM proxy into its own virtualenv once; later runs reuse it.

    ``prisma`` (Prisma Client Python) is what LiteLLM's database -- virtual keys, budgets -- runs on;
    LiteLLM's own images ship it, its ``proxy`` extra does not.
    """
    marker = LITELLM_VENV / ".installed"
    binary = LITELLM_VENV / "bin" / "litellm"
    pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    if marker.exists() and binary.exists():
        if not (LITELLM_VENV / "bin" / "prisma").exists():  # a virtualenv from before --governance
            subprocess.run([*pip, "prisma"], check=True)
        return binary
    print(f"Installing litellm[proxy] and prisma into {LITELLM_VENV} (once; a few minutes) ...", flush=True)
    subprocess.run([python, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run([*pip, "litellm[proxy]", "prisma"], check=True)
    marker.touch()
    return binary


def litellm_command(
    tmp: Path, upstream_url: str, port: int, key: str, database_url: str | None = None
) -> tuple[list[str], dict[str, str]]:
    config = tmp / "litellm.yaml"
    per_token = PRICE_INPUT_PER_MTOK / 1e6, PRICE_OUTPUT_PER_MTOK / 1e6
    config.write_text(
        f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{UPSTREAM_MODEL}
      api_base: {upstream_url}
      api_key: sk-mock-upstream
      input_cost_per_token: {per_token[0]!r}
      output_cost_per_token: {per_token[1]!r}
general_settings:
  master_key: {key}
""",
        encoding="utf-8",
    )
    binary = ensure_litellm(sys.executable)
    command = [
        str(binary),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "NO_DOCS": "True"})
    if database_url:  # virtual keys and budgets live there
        env["DATABASE_URL"] = prisma_url(database_url)
        env["PRISMA_HOME_DIR"] = str(LITELLM_VENV / "prisma-home")  # Prisma's caches, not in ~
    return command, env


# Measurement ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    latency_concurrency: tuple[int, ...]
    stream_concurrency: tuple[int, ...]
    rate_concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float


def run_load(target: Target, *, concurrency: int, stream: bool, plan: Plan) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": PROMPT, "max_tokens": 32}
    if stream:
        body["stream"] = True
    spec = {
        "host": target.host,
        "port": target.port,
        "key": target.key,
        "path": target.path,
        "body": body,
        "concurrency": concurrency,
        "duration_s": plan.duration_s,
        "warmup_s": plan.warmup_s,
        "timeout_s": 60.0,
    }
    completed = subprocess.run(
        [sys.executable, __file__, "--loadgen", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
        timeout=plan.duration_s + plan.warmup_s + 120,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def measure(target: Target, plan: Plan, mock_url: str, latency_ms: float) -> None:
    from socle.testing.mock_upstream import configure

    for c in plan.latency_concurrency:
        target.results[f"chat c={c}"] = run_load(target, concurrency=c, stream=False, plan=plan)
        print(f"  {target.name:8} chat   c={c:<3} {_brief(target.results[f'chat c={c}'])}", flush=True)
    for c in plan.stream_concurrency:
        target.results[f"stream c={c}"] = run_load(target, concurrency=c, stream=True, plan=plan)
        print(
            f"  {target.name:8} stream c={c:<3} {_brief(target.results[f'stream c={c}'], first=True)}",
            flush=True,
        )
    configure(mock_url, latency_ms=0)
    try:
        for c in plan.rate_concurrency:
            target.results[f"rate c={c}"] = run_load(target, concurrency=c, stream=False, plan=plan)
            print(f"  {target.name:8} rate   c={c:<3} {_brief(target.results[f'rate c={c}'])}", flush=True)
    finally:
        configure(mock_url, latency_ms=latency_ms)


def _brief(result: dict[str, Any], *, first: bool = False) -> str:
    nan = float("nan")
    lat = result["latency"]
    text = (
        f"{result['rate']:8.1f} req/s  p50 {lat.get('p50', nan):7.2f} ms  p99 {lat.get('p99', nan):7.2f} ms"
    )
    if first:
        text += f"  first-event p50 {result['first'].get('p50', nan):7.2f} ms"
    if result["errors"]:
        text += f"  errors {result['errors']}"
    return text


def best_rate(target: Target) -> float:
    """Highest closed-loop rate among the runs in which no request failed."""
    rates = [r["rate"] for k, r in target.results.items() if k.startswith("rate") and not r["errors"]]
    return max(rates, default=0.0)


# Report -----------------------------------------------------------------------------------------------
def load_line(before: float) -> str:
    """The machine's load around the run: other work on these cores skews every target's figures."""
    after = os.getloadavg()[0]
    line = f"Load average (1 min) before the run {before:.2f}, after {after:.2f}"
    if before > 0.5:
        line += " -- other work was running: compare only figures measured in the same run"
    return line


def versions() -> str:
    """Socle's commit and LiteLLM's version, so that a table can be traced to what it measured."""
    socle = "socle (unknown commit)"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True, check=True)
        socle = f"socle {commit.stdout.strip()}{' + uncommitted changes' if dirty.stdout.strip() else ''}"
    litellm = "litellm not installed"
    python = LITELLM_VENV / "bin" / "python"
    if python.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            code = "import importlib.metadata as m; print(m.version('litellm'))"
            out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
            litellm = f"litellm {out.stdout.strip()}"
    return f"{socle}; {litellm}"


def _added(target: Target, direct: Target, key: str, metric: str, stat: str) -> float:
    return float(target.results[key][metric][stat] - direct.results[key][metric][stat])


def report(targets: dict[str, Target], plan: Plan, latency_ms: float, load_before: float) -> list[str]:
    direct = targets.get("direct")
    lines = [f"Machine: {machine_line()}", load_line(load_before)]
    lines.append(
        "Load generator, gateway and mock upstream share these cores, the same way for every target: "
        "ratios are fair, absolute figures pessimistic."
    )
    lines.append(f"Versions: {versions()}")
    lines.append(
        f"Mock upstream latency: {latency_ms:g} ms; {plan.duration_s:g} s per measurement, closed loop; "
        "added Pxx = target's Pxx - direct Pxx."
    )
    if direct is None:
        return lines
    # The classic three columns stay whatever was run; the others appear when they ran.
    names = ["socle", "litellm"] + [n for n in GATEWAYS if n in targets and n not in ("socle", "litellm")]
    shown = [targets.get(n) for n in names]
    ratios = [(title, a, b) for title, a, b in RATIOS if a in targets and b in targets]
    ratios = [(title, a, b) for title, a, b in ratios if targets[a].results and targets[b].results]
    widths = [max(9, len(GATEWAYS[n].label)) for n in names]
    ratio_widths = [max(9, len(title) + 1) for title, _, _ in ratios]
    header = f"{'measurement':40} {'direct':>9} " + " ".join(
        f"{GATEWAYS[n].label:>{w}}" for n, w in zip(names, widths, strict=True)
    )
    header += "".join(f" {title:>{w}}" for (title, _, _), w in zip(ratios, ratio_widths, strict=True))
    lines += ["", header, "-" * len(header)]

    def row(label: str, values: dict[str, float | None]) -> None:
        cells = [_cell(values.get("direct"), 9)]
        cells += [_cell(values.get(n), w) for n, w in zip(names, widths, strict=True)]
        for (_, a, b), w in zip(ratios, ratio_widths, strict=True):
            num, den = values.get(a), values.get(b)
            # A ratio of an added latency at or below zero (within noise of direct) means nothing.
            cells.append(
                _cell(num / den if num is not None and den is not None and den > 0 else None, w, ".3f")
            )
        lines.append(f"{label:40} {' '.join(cells)}")

    for key, metric, label in _scenarios(direct):
        for stat in ("p50", "p95", "p99"):
            values: dict[str, float | None] = {"direct": direct.results[key][metric][stat]}
            for name, target in zip(names, shown, strict=True):
                if target is not None and key in target.results:
                    values[name] = _added(target, direct, key, metric, stat)
            row(f"{label} {key} {stat} (ms)", values)
    rates: dict[str, float | None] = {"direct": best_rate(direct)}
    rates.update({n: best_rate(t) if t and t.results else None for n, t in zip(names, shown, strict=True)})
    row("sustained rate, 0 errors (req/s)", rates)
    lines.append("(direct column: absolute values; gateway columns: added to direct, except the rate)")
    lines += governance_lines(targets, direct)
    socle, litellm = targets.get("socle"), targets.get("litellm")
    if socle and litellm:
        lines.append("")
        lines += goals(direct, socle, litellm)
    return lines


def _cell(value: float | None, width: int, spec: str = ".2f") -> str:
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}}"


def _scenarios(direct: Target) -> list[tuple[str, str, str]]:
    scenarios = [(k, "latency", "added latency") for k in direct.results if k.startswith("chat")]
    return scenarios + [(k, "first", "added first event") for k in direct.results if k.startswith("stream")]


def governance_lines(targets: dict[str, Target], direct: Target) -> list[str]:
    """Governance on versus off: added P50/P95, sustained rate and their ratios; why a target is missing."""
    out: list[str] = []
    for title, on_name, off_name in GOVERNANCE_PAIRS:
        on, off = targets.get(on_name), targets.get(off_name)
        if on is None or off is None or not on.results or not off.results:
            continue
        out += [
            "",
            f"Governance on ({on_name}) vs off ({off_name}), {title}: added ms off -> on (difference, ratio)",
        ]
        for key in (k for k in direct.results if k.startswith("chat")):
            cells = []
            for stat in ("p50", "p95"):
                a, b = _added(off, direct, key, "latency", stat), _added(on, direct, key, "latency", stat)
                ratio = f"x{b / a:.2f}" if a > 0 else "x -"
                cells.append(f"{stat.upper()} {a:6.2f} -> {b:6.2f} ({b - a:+6.2f}, {ratio})")
            out.append(f"  {key:10} " + "   ".join(cells))
        rate_off, rate_on = best_rate(off), best_rate(on)
        ratio = f"x{rate_on / rate_off:.2f}" if rate_off else "x -"
        out.append(f"  sustained rate, 0 errors: {rate_off:.0f} -> {rate_on:.0f} req/s ({ratio})")
        if on.note:
            out.append(f"  check after the run: {on.note}")
    for name, target in targets.items():
        if target.unavailable:
            reason = _last_lines(target.unavailable.split("\n(log:")[0], 8)
            out += ["", f"{GATEWAYS[name].label} ({name}) NOT MEASURED: {reason}"]
    return out


def goals(direct: Target, socle: Target, litellm: Target) -> list[str]:
    out = []
    for key in (k for k in direct.results if k.startswith("chat")):
        if key in socle.results and key in litellm.results:
            s = _added(socle, direct, key, "latency", "p50")
            li = _added(litellm, direct, key, "latency", "p50")
            ok = s <= li * LITELLM_GOAL_P50_FRACTION
            verdict = "met" if ok else "MISSED"
            out.append(f"goal added P50 <= 1/5 of LiteLLM's, {key}: {s:.2f} vs {li:.2f} ms -> {verdict}")
    rs, rl = best_rate(socle), best_rate(litellm)
    ok = rl > 0 and rs >= LITELLM_GOAL_RATE_FACTOR * rl
    out.append(
        f"goal sustained rate >= 3x LiteLLM's: {rs:.0f} vs {rl:.0f} req/s -> {'met' if ok else 'MISSED'}"
    )
    return out


# Main -------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=20.0, help="mock upstream latency (default 20)")
    parser.add_argument("--quick", action="store_true", help="short measurements (about a minute per target)")
    parser.add_argument(
        "--targets",
        default="direct,socle,litellm",
        help=f"comma-separated, among direct,{','.join(GATEWAYS)}",
    )
    parser.add_argument(
        "--governance", action="store_true", help=f"governance on versus off: --targets {GOVERNANCE_TARGETS}"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        _loadgen_main(args.loadgen)
        return
    names = [
        n.strip() for n in (GOVERNANCE_TARGETS if args.governance else args.targets).split(",") if n.strip()
    ]
    unknown = [n for n in names if n != "direct" and n not in GATEWAYS]
    if unknown:
        parser.error(f"unknown targets {unknown}; use direct, {', '.join(GATEWAYS)}")
    if "direct" not in names:
        names.insert(0, "direct")
    if args.quick:
        plan = Plan((1, 16, 64), (1, 16), (64,), args.duration or 3.0, 0.5)
    else:
        plan = Plan((1, 16, 64), (1, 16), (64, 128), args.duration or 10.0, 1.0)
    run(names, plan, args.latency_ms)


def run(names: list[str], plan: Plan, latency_ms: float) -> None:
    from socle.testing.mock_upstream import mock_upstream_process

    targets: dict[str, Target] = {}
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="socle-bench-") as tmp_dir,
        mock_upstream_process(latency_ms=latency_ms) as mock,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_dir)
        print(f"Mock upstream on {mock.base_url} (pid {mock.pid}), latency {latency_ms:g} ms", flush=True)
        postgres = None
        if any(GATEWAYS[n].postgres for n in names if n in GATEWAYS):
            from socle.testing.postgres import start_postgres

            postgres = stack.enter_context(start_postgres())
            print(f"PostgreSQL (pgserver) in {postgres.base_dir}", flush=True)
        for name in names:
            if name == "direct":
                target = Target("direct", "127.0.0.1", mock.port, "sk-mock-upstream")
                measure(target, plan, mock.base_url, latency_ms)
            else:
                database_url = postgres.create_database() if postgres and GATEWAYS[name].postgres else None
                target = run_gateway(name, tmp, mock.base_url, plan, latency_ms, database_url)
            targets[name] = target
    lines = report(targets, plan, latency_ms, load_before)
    print()
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "gateway_overhead.json"
    data = {"machine": machine_line(), "latency_ms": latency_ms, "plan": plan.__dict__}
    data["targets"] = {n: t.results for n, t in targets.items()}
    data["notes"] = {n: t.note for n, t in targets.items() if t.note}
    data["unavailable"] = {n: t.unavailable for n, t in targets.items() if t.unavailable}
    out.write_text(json.dumps(data, indent=2), encoding="utf-8")
    print(f"\nRaw results: {out.relative_to(ROOT)}")


def run_gateway(
    name: str, tmp: Path, mock_url: str, plan: Plan, latency_ms: float, database_url: str | None = None
) -> Target:
    gateway = GATEWAYS[name]
    port = free_port()
    work = tmp / name
    work.mkdir()
    base_url = f"http://127.0.0.1:{port}"
    if gateway.server == "socle":
        key = "sk-socle-" + secrets.token_urlsafe(32)
        command, env = socle_command(work, mock_url, port, key, database_url)
        ready = f"{base_url}/healthz"
    else:
        key = "sk-litellm-bench-" + secrets.token_urlsafe(16)
        command, env = litellm_command(work, mock_url, port, key, database_url)
        ready = f"{base_url}/health/liveliness"
    log = work / "server.log"
    print(f"Starting {name}: {Path(command[0]).name} {' '.join(command[1:])}", flush=True)
    target = Target(name, "127.0.0.1", port, key)
    try:
        with started(command, env, ready, log) as pid:
            print(f"  {name} ready (pid {pid}); log {log}", flush=True)
            if gateway.governed:
                provision = provision_socle if gateway.server == "socle" else _provision_litellm
                target.key = provision(base_url, key)
                print(f"  {name}: governed key {target.key[:12]}...", flush=True)
            measure(target, plan, mock_url, latency_ms)
            if gateway.governed and gateway.server == "socle":
                target.note = check_socle(base_url, key)
                print(f"  {name}: {target.note}", flush=True)
    except RuntimeError as exc:
        if not gateway.optional:
            raise
        target.unavailable = f"{exc}\n(log: {log.read_text(errors='replace')[-4000:]})"
        print(f"  {name} NOT MEASURED: {_last_lines(str(exc), 6)}", flush=True)
    return target


def _provision_litellm(base_url: str, master_key: str) -> str:
    return provision_litellm(base_url, master_key, MODEL)


def _last_lines(text: str, count: int) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # terminal colours
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-count:])


if __name__ == "__main__":
    main()
