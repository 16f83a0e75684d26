"""Secrets: API keys, tokens, private keys and passwords written in clear, in input and output.

Provider keys are recognised by their documented prefixes and lengths; a password only when a
keyword introduces it (``password=``, ``mot de passe :``); a generic high-entropy token only after a
keyword such as ``api_key`` or ``secret``. Every repeat is bounded (linear scans).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from socle.governance.guardrails.findings import Finding

__all__ = ["SECRET_PATTERNS", "scan_secrets"]

SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str], float], ...] = (
    (
        "private-key",
        re.compile(
            r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]{0,16384}?-----END [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"
        ),
        1.0,
    ),
    ("socle-key", re.compile(r"(?<![\w-])sk-socle-[A-Za-z0-9_-]{20,128}"), 1.0),
    (
        "openai-key",
        re.compile(r"(?<![\w-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,200}(?![\w-])"),
        0.95,
    ),
    ("anthropic-key", re.compile(r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,200}"), 1.0),
    ("aws-access-key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"), 1.0),
    (
        "github-token",
        re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
        1.0,
    ),
    ("gitlab-token", re.compile(r"(?<!\w)glpat-[A-Za-z0-9_-]{20,64}"), 1.0),
    ("slack-token", re.compile(r"(?<!\w)xox[abposr]-[A-Za-z0-9-]{10,200}"), 1.0),
    ("google-api-key", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])"), 1.0),
    ("stripe-key", re.compile(r"(?<!\w)(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,128}"), 1.0),
    ("huggingface-token", re.compile(r"(?<!\w)hf_[A-Za-z0-9]{30,64}(?!\w)"), 0.95),
    (
        "jwt",
        re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{8,4096}"),
        0.95,
    ),
    (
        "url-credentials",
        re.compile(r"(?<![\w])[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,128}:([^\s:/@]{3,128})@[\w.-]{1,253}"),
        0.95,
    ),
)
"""Named patterns of well-known secrets, with their score."""

_ASSIGNED = re.compile(
    r"(?i)(?<![\w])(?:password|passwd|pwd|passphrase|mot de passe|mdp|secret|client_secret|api[_-]?key|"
    r"apikey|access[_-]?token|auth[_-]?token|token|private[_-]?key)[\"']?[ \t]{0,3}(?:[:=]|=>|:=|est|"
    r"is)[ \t]{0,3}"
    r"[\"']?([^\s\"',;]{6,256})"
)
_PLACEHOLDER = re.compile(
    r"(?i)^(?:x{3,256}|\*{3,256}|\.{3,256}|<[^>]{0,60}>|\{[^}]{0,60}\}|\$\{?\w{1,60}\}?|changeme|none|null)$"
)


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


# A literal every match of a pattern contains: patterns whose hint is absent are not run.
_HINTS = {
    "private-key": ("PRIVATE KEY",), "socle-key": ("sk-socle-",), "openai-key": ("sk-",),
    "anthropic-key": ("sk-ant-",), "aws-access-key": ("AKIA", "ASIA", "ABIA", "ACCA"),
    "github-token": ("gh", "github_pat_"), "gitlab-token": ("glpat-",), "slack-token": ("xox",),
    "google-api-key": ("AIza",), "stripe-key": ("_live_", "_test_"), "huggingface-token": ("hf_",),
    "jwt": ("eyJ",), "url-credentials": ("://",),
}  # fmt: skip


def scan_secrets(text: str) -> list[Finding]:
    """Every secret in ``text``: the value only (not the keyword before it)."""
    findings: list[Finding] = []
    for name, pattern, score in SECRET_PATTERNS:
        if not any(hint in text for hint in _HINTS[name]):
            continue
        for match in pattern.finditer(text):
            span = match.span(1) if pattern.groups else match.span()
            findings.append(Finding("SECRET", span[0], span[1], f"secret:{name}", score))
    for match in _ASSIGNED.finditer(text):
        value = match.group(1)
        if _PLACEHOLDER.match(value):
            continue
        keyword = match.group().lower()
        if "pass" in keyword or "mot de passe" in keyword or "mdp" in keyword or "pwd" in keyword:
            score = 0.9
        else:  # a token or key: only a random-looking value
            score = 0.85 if len(value) >= 12 and _entropy(value) >= 3.0 else 0.0
        if score:
            findings.append(Finding("SECRET", *match.span(1), "secret:assignment", score))
    return findings
