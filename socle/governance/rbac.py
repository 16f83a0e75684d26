"""Role-based access control, deny by default. Actions and roles are declared data.

Every route declares the one action it needs (:func:`socle.gateway.deps.require`); a principal may
perform an action if one of its roles in the team its key acts for grants it. The ``admin`` role runs
the platform: every team of every organisation. Nothing is allowed that a role does not list, and a
route without a declared action is a bug that a test catches (``tests/gateway/test_rbac.py``
enumerates every route).

Roles bundle actions:

============== ==============================================================================
role           what it is for
============== ==============================================================================
admin          runs the platform: every action, in every team
auditor        reads the audit trail and usage, changes nothing (separation of duties)
team-admin     runs one team: its keys, members, budgets and usage; uses its models
member         uses models and the team's knowledge base; reads their own usage
service        a program: uses models and reads the knowledge base
============== ==============================================================================

Separation of duties: some roles may not be held together by one principal (by default
``auditor`` and ``admin``); :func:`check_compatible` refuses such a binding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from socle.errors import BadRequestError, PermissionDeniedError

__all__ = [
    "ACTIONS",
    "DEFAULT_INCOMPATIBLE_ROLES",
    "ROLES",
    "Action",
    "Role",
    "allowed",
    "check_compatible",
    "conflicting_roles",
    "ensure_allowed",
    "role_names",
]


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str
    actions: frozenset[str]
    org_wide: bool = False


_ACTIONS: Final = (
    Action("account.read", "See one's own identity, team, roles and permissions (the console's start)."),
    Action("model.use", "Call the inference API (chat, completions, embeddings) on allowed models."),
    Action("model.list", "List the models one may use."),
    Action("chat.history", "Keep, read and delete one's own conversations (the console's chat history)."),
    Action("guardrails.check", "Scan a text with the guardrails and see what one's team policy would do."),
    Action("knowledge.read", "Search and question the knowledge collections one may read."),
    Action("knowledge.write", "Create collections and upload or delete documents."),
    Action("keys.manage", "Create, list and revoke API keys of the team."),
    Action(
        "team.manage",
        "Manage the team's members and role bindings; read its model access and guardrail policy.",
    ),
    Action("budget.manage", "Set budgets and rate limits."),
    Action("usage.read", "Read one's own usage."),
    Action("usage.read_team", "Read the usage of the whole team."),
    Action("usage.read_all", "Read the usage of every team."),
    Action("audit.read", "Read the audit trail and verify it."),
    Action(
        "admin",
        "Run the platform: organisations, teams, users, service accounts, model access, guardrail "
        "policies, alerts.",
    ),
)
ACTIONS: Final = MappingProxyType({a.name: a for a in _ACTIONS})
"""Every action a route may require, by name."""

_USE = frozenset({"account.read", "model.use", "model.list", "chat.history", "guardrails.check"})
_ROLES: Final = (
    Role("admin", "Runs the platform.", frozenset(ACTIONS), org_wide=True),
    Role(
        "auditor",
        "Reads the audit trail and usage; changes nothing.",
        frozenset({"account.read", "audit.read", "usage.read", "usage.read_all"}),
    ),
    Role(
        "team-admin",
        "Runs one team.",
        _USE
        | {"knowledge.read", "knowledge.write", "keys.manage", "team.manage", "budget.manage"}
        | {"usage.read", "usage.read_team"},
    ),
    Role(
        "member",
        "Uses models and the team's knowledge.",
        _USE | {"knowledge.read", "knowledge.write", "usage.read"},
    ),
    Role("service", "A program using models and knowledge.", _USE | {"knowledge.read"}),
)
ROLES: Final = MappingProxyType({r.name: r for r in _ROLES})
"""Every role, by name."""

DEFAULT_INCOMPATIBLE_ROLES: Final = (("auditor", "admin"),)


def role_names() -> list[str]:
    return list(ROLES)


def allowed(roles: Iterable[str], action: str) -> bool:
    """Whether any of ``roles`` grants ``action``. Unknown roles and actions grant nothing."""
    if action not in ACTIONS:
        return False
    return any(action in ROLES[r].actions for r in roles if r in ROLES)


def ensure_allowed(roles: Iterable[str], action: str) -> None:
    """Raise 403 naming the missing action unless one of ``roles`` grants it."""
    roles = list(roles)
    if not allowed(roles, action):
        held = ", ".join(sorted(roles)) or "none"
        raise PermissionDeniedError(
            f"This action needs the '{action}' permission, which your roles ({held}) do not grant.",
            code="permission_denied",
        )


def check_compatible(roles: Iterable[str], incompatible: Sequence[Sequence[str]]) -> None:
    """Refuse a set of roles one principal may not hold together, and unknown roles."""
    held = set(roles)
    unknown = sorted(held - set(ROLES))
    if unknown:
        raise BadRequestError(
            f"Unknown role(s): {', '.join(unknown)}. Roles: {', '.join(ROLES)}.", param="role"
        )
    pair = conflicting_roles(held, incompatible)
    if pair is not None:
        raise BadRequestError(
            f"Separation of duties: one principal may not hold the roles {' and '.join(pair)} together.",
            code="incompatible_roles",
            param="role",
        )


def conflicting_roles(roles: Iterable[str], incompatible: Sequence[Sequence[str]]) -> tuple[str, ...] | None:
    """The first pair of ``incompatible`` roles that ``roles`` holds together, if any."""
    held = set(roles)
    for pair in incompatible:
        if set(pair) <= held:
            return tuple(pair)
    return None
