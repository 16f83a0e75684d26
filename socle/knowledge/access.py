"""Who may read, write and manage a collection or a document: access lists, as data, checked in one place.

A collection belongs to a team and has an *access list* of entries, each granting ``read`` or ``write``
(write implies read) to:

- ``user``: one principal (by id), whichever team their key acts for;
- ``team``: every principal acting for that team (by id);
- ``role``: every principal holding that role in the collection's own team.

``org_read`` grants read to everyone in the organisation. A new collection's list is its own team with
``write``. A document may carry its own list, which *narrows* the collection's: a reader must pass both.
Nobody bypasses read access, the platform ``admin`` included: admins (and the owning team's
``team-admin``) may *manage* a collection (see and change its settings and access list, delete it or
its documents), and give themselves access by changing the list, which is a visible, audited act.

Searches never read this module's answers after the fact: :func:`readable` turns them into a
:class:`~socle.knowledge.stores.base.Scope` that both searches apply inside their queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from socle.errors import BadRequestError
from socle.governance.identity import Principal
from socle.storage.models import CLASSIFICATIONS

__all__ = [
    "AccessEntry",
    "CollectionAccess",
    "Permission",
    "can_manage",
    "can_read",
    "can_write",
    "classification_rank",
    "document_allows",
    "entries_from_json",
    "entries_to_json",
    "higher_classification",
]

Permission = Literal["read", "write"]
_ORG_ROLES = frozenset({"admin"})
_TEAM_MANAGER_ROLES = frozenset({"team-admin"})


class AccessEntry(BaseModel):
    """One grant of an access list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["user", "team", "role"] = Field(
        description="What ``id`` names: a principal, a team or a role."
    )
    id: str = Field(min_length=1, max_length=200, description="Principal id, team id, or role name.")
    permission: Permission = Field(
        default="read", description="read, or write (upload and delete documents)."
    )


@dataclass(frozen=True, slots=True)
class CollectionAccess:
    """What access checks need to know about a collection."""

    id: str
    org_id: str
    team_id: str
    org_read: bool
    entries: tuple[AccessEntry, ...]
    created_by: str = ""


def entries_from_json(data: Sequence[dict[str, Any]] | None) -> tuple[AccessEntry, ...]:
    return tuple(AccessEntry.model_validate(e) for e in data or ())


def entries_to_json(entries: Iterable[AccessEntry]) -> list[dict[str, Any]]:
    return [e.model_dump() for e in entries]


def _matches(entry: AccessEntry, principal: Principal, team_id: str) -> bool:
    if entry.kind == "user":
        return entry.id == principal.principal_id
    if entry.kind == "team":
        return entry.id == principal.team_id
    return principal.team_id == team_id and entry.id in principal.roles


def can_read(collection: CollectionAccess, principal: Principal) -> bool:
    if principal.org_id != collection.org_id:
        return False
    return collection.org_read or any(_matches(e, principal, collection.team_id) for e in collection.entries)


def can_write(collection: CollectionAccess, principal: Principal) -> bool:
    """Upload and delete documents (the route also requires the ``knowledge.write`` action)."""
    if principal.org_id != collection.org_id:
        return False
    return can_manage(collection, principal) or any(
        e.permission == "write" and _matches(e, principal, collection.team_id) for e in collection.entries
    )


def can_manage(collection: CollectionAccess, principal: Principal) -> bool:
    """Change the collection's settings and access list, or delete it."""
    if principal.org_id != collection.org_id:
        return False
    if principal.roles & _ORG_ROLES:
        return True
    owner_admin = principal.team_id == collection.team_id and bool(principal.roles & _TEAM_MANAGER_ROLES)
    return owner_admin or principal.principal_id == collection.created_by


def document_allows(entries: Sequence[AccessEntry] | None, principal: Principal, team_id: str) -> bool:
    """Whether a document's own (narrowing) list lets ``principal`` read it; ``None``: no narrowing."""
    return entries is None or any(_matches(e, principal, team_id) for e in entries)


def classification_rank(level: str) -> int:
    try:
        return CLASSIFICATIONS.index(level)
    except ValueError as exc:
        raise BadRequestError(
            f"Unknown classification {level!r}; one of: {', '.join(CLASSIFICATIONS)}.", param="classification"
        ) from exc


def higher_classification(*levels: str | None) -> str:
    """The most sensitive of ``levels`` (``public`` if none)."""
    present = [level for level in levels if level]
    return max(present, key=classification_rank) if present else CLASSIFICATIONS[0]
