"""Governance set-ups for ``gateway_overhead.py``: what "governance fully on" means for each gateway.

Socle (:func:`provision_socle`), through its admin API with the admin key, as an operator would:

* a team ``bench``, a user ``bench-user`` bound to it with the ``member`` role, and a key of that user
  for that team (the key the load generator then uses: not the admin key);
* four budgets that all apply to each request -- organisation, team, user and key -- each in euros
  *and* tokens, monthly, far too large to refuse (every request still reserves in all four, in one
  transaction, and settles in all four);
* rate limits on the key and on the team, requests *and* tokens per minute, far too high to refuse
  (every request still takes from all four counters).

After the measurements, :func:`check_socle` reads the budgets back: each must have spent tokens and
euros and hold nothing reserved (every reservation settled), or the run fails, so that a figure can
never come from a set-up where governance silently did nothing.

LiteLLM (:func:`provision_litellm`): a team with a ``max_budget`` and rpm/tpm limits, a user with a
``max_budget``, and a virtual key of that user in that team with its own ``max_budget`` and limits,
through LiteLLM's management API (``/team/new``, ``/user/new``, ``/key/generate``). This needs LiteLLM's
PostgreSQL database, which LiteLLM reaches through Prisma.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "BUDGET_EUR",
    "BUDGET_TOKENS",
    "LIMIT_RPM",
    "LIMIT_TPM",
    "check_socle",
    "prisma_url",
    "provision_litellm",
    "provision_socle",
]

BUDGET_EUR = 1_000_000
BUDGET_TOKENS = 10**12
LIMIT_RPM = 10_000_000
LIMIT_TPM = 10**10
TEAM = "bench"


def _call(base_url: str, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - loopback
        base_url + path,
        data=data,
        method=method,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from exc


def provision_socle(base_url: str, admin_key: str) -> str:
    """Create the team, member, key, budgets and limits above; return the member's key."""
    _call(base_url, admin_key, "POST", "/v1/admin/teams", {"name": TEAM})
    user = _call(base_url, admin_key, "POST", "/v1/admin/principals", {"kind": "user", "name": "bench-user"})
    binding = {"principal_id": user["id"], "role": "member"}
    _call(base_url, admin_key, "POST", f"/v1/admin/teams/{TEAM}/members", binding)
    key = _call(
        base_url,
        admin_key,
        "POST",
        "/v1/admin/keys",
        {"principal_id": user["id"], "team": TEAM, "name": "bench"},
    )
    for scope, target in (("organisation", None), ("team", TEAM), ("user", user["id"]), ("key", key["id"])):
        budget = {
            "scope": scope,
            "target": target,
            "period": "monthly",
            "limit_eur": BUDGET_EUR,
            "limit_tokens": BUDGET_TOKENS,
        }
        _call(base_url, admin_key, "POST", "/v1/admin/budgets", budget)
    for scope, target in (("key", key["id"]), ("team", TEAM)):
        limit = {
            "scope": scope,
            "target": target,
            "requests_per_minute": LIMIT_RPM,
            "tokens_per_minute": LIMIT_TPM,
        }
        _call(base_url, admin_key, "POST", "/v1/admin/limits", limit)
    return str(key["key"])


def check_socle(base_url: str, admin_key: str, timeout_s: float = 10.0) -> str:
    """Check every budget was charged and holds nothing reserved any more; return a summary line."""
    deadline = time.monotonic() + timeout_s
    while True:
        budgets = _call(base_url, admin_key, "GET", "/v1/admin/budgets")["data"]
        limits = _call(base_url, admin_key, "GET", "/v1/admin/limits")["data"]
        held = [b for b in budgets if b["reserved_tokens"]]
        if not held or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # the last settlements may still be in flight
    scopes = sorted(b["budget"]["scope"] for b in budgets)
    if scopes != ["key", "organisation", "team", "user"] or len(limits) != 2:
        raise RuntimeError(f"governance set-up incomplete: budgets {scopes}, {len(limits)} limits")
    if held:
        raise RuntimeError(f"reservations still held after the run: {held}")
    unspent = [b["budget"]["scope"] for b in budgets if not b["spent_tokens"] or not Decimal(b["spent_eur"])]
    if unspent:
        raise RuntimeError(f"budgets never charged (governance not applied?): {unspent}")
    tokens = {b["spent_tokens"] for b in budgets}
    spent = ", ".join(
        f"{b['budget']['scope']} {b['spent_tokens']} tokens / EUR {b['spent_eur']}" for b in budgets
    )
    same = "the same in all four" if len(tokens) == 1 else "NOT the same in all four"
    return f"settled: {spent} ({same}); 0 reserved; {len(limits)} rate limits"


def prisma_url(postgres_url: str) -> str:
    """The same database as a URL Prisma accepts: it wants a host even for a Unix socket."""
    parts = urlsplit(postgres_url)
    query = parse_qs(parts.query)
    socket_dir = query.get("host", [""])[0]
    user = parts.username or "postgres"
    database = parts.path.lstrip("/") or "postgres"
    if socket_dir:
        return f"postgresql://{user}@localhost/{database}?host={socket_dir}"
    return postgres_url


def provision_litellm(base_url: str, master_key: str, model: str) -> str:
    """Create a budgeted team, user and virtual key in LiteLLM; return the virtual key."""
    limits = {"max_budget": float(BUDGET_EUR), "rpm_limit": LIMIT_RPM, "tpm_limit": LIMIT_TPM}
    team = _call(base_url, master_key, "POST", "/team/new", {"team_alias": TEAM, "models": [model], **limits})
    _call(
        base_url, master_key, "POST", "/user/new", {"user_id": "bench-user", "max_budget": float(BUDGET_EUR)}
    )
    body = {"team_id": team["team_id"], "user_id": "bench-user", "models": [model], **limits}
    key = _call(base_url, master_key, "POST", "/key/generate", body)
    return str(key["key"])
