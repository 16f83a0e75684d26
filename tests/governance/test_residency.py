"""Residency policy: settings and their validation, classification rules, routing decisions, and teams'
default classifications stored on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from socle.config import CLASSIFICATIONS, FakeEngineConfig, ModelRoute, ResidencySettings, load_settings
from socle.engines.fake import FakeEngine
from socle.engines.router import Router
from socle.errors import BadRequestError, ConfigError, ResidencyError
from socle.governance.directory import Directory
from socle.governance.residency import (
    Classified,
    Residency,
    ResidencyPolicy,
    parse_classification,
)
from socle.storage.db import Database
from socle.storage.models import OrganisationRow

A = "[residency.allowed]\n"
ZONES = {"onprem": "on-prem", "sov": "eu-sovereign", "eu": "eu", "us": "non-eu"}


def _router() -> Router:
    engines = [FakeEngine(FakeEngineConfig(name=n, zone=z)) for n, z in ZONES.items()]
    # least trusted first: without residency the router would pick "us" first
    return Router(engines, [ModelRoute(name="m", engines=["us", "eu", "sov", "onprem"])])


def test_default_zones_per_classification() -> None:
    policy = ResidencyPolicy(ResidencySettings())
    assert policy.allowed_zones("secret") == ("on-prem",)
    assert policy.allowed_zones("confidential") == ("on-prem", "eu-sovereign")
    assert policy.allowed_zones("internal") == ("on-prem", "eu-sovereign", "eu")
    assert policy.allowed_zones("public") == ("on-prem", "eu-sovereign", "eu", "non-eu")


def test_zones_as_lists_and_custom_zones() -> None:
    settings = ResidencySettings(
        zones=["lab", "dc-paris", "cloud"],
        allowed={
            "public": ["lab", "dc-paris", "cloud"],
            "internal": "dc-paris",
            "confidential": ["lab"],
            "secret": [],
        },
    )
    policy = ResidencyPolicy(settings)
    assert policy.allowed_zones("internal") == ("lab", "dc-paris")
    assert policy.allowed_zones("secret") == ()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            A + "public = 'non-eu'\ninternal = 'eu'\nconfidential = 'mars'\nsecret = 'on-prem'",
            "unknown zone(s) ['mars']",
        ),
        (
            A + "public = 'non-eu'\ninternal = 'eu'\nconfidential = 'eu'\ntop-secret = 'on-prem'",
            "residency.allowed.top-secret",
        ),
        (
            A + "public = 'non-eu'\ninternal = 'eu'\nconfidential = 'eu'",
            "missing: ['secret']",
        ),
        (
            A + "public = 'eu'\ninternal = 'eu'\nconfidential = 'non-eu'\nsecret = 'on-prem'",
            "residency.allowed.confidential allows ['non-eu']",
        ),
        ("[residency]\nzones = ['on-prem', 'on-prem']", "must be unique"),
        ("[[engines]]\nkind = 'fake'\nname = 'f'\nzone = 'moon'", "engine 'f' declares zone 'moon'"),
        ("[residency]\ndefault_classification = 'top'", "residency.default_classification"),
        ("[residency.egress]\nallow_hosts = ['a b']", "is not a host"),
    ],
)
def test_invalid_residency_configuration(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "socle.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert message in info.value.message, info.value.message


def test_classification_only_goes_up() -> None:
    classified = Classified()
    classified.raise_to("confidential", "header")
    classified.raise_to("internal", "team default")
    assert classified.level == "confidential"
    assert [(r.level, r.reason) for r in classified.reasons] == [
        ("confidential", "header"),
        ("internal", "team default"),
    ]
    assert parse_classification(" Secret ") == "secret"
    with pytest.raises(BadRequestError) as info:
        parse_classification("top-secret")
    assert info.value.code == "invalid_classification" and "public, internal" in info.value.message


def test_decision_keeps_allowed_engines_only() -> None:
    router = _router()
    policy = ResidencyPolicy(ResidencySettings())
    classified = Classified()
    classified.raise_to("confidential", "team default")
    decision = policy.decide(router.resolve("m"), "chat", classified)
    assert decision.candidates == ("sov", "onprem")
    assert [(s.engine, s.zone) for s in decision.skipped] == [("us", "non-eu"), ("eu", "eu")]
    assert decision.to_dict()["allowed_zones"] == ["on-prem", "eu-sovereign"]
    public = policy.decide(router.resolve("m"), "chat", Classified())
    assert public.candidates == ("us", "eu", "sov", "onprem") and public.skipped == []


def test_refusal_names_the_classification_and_zones() -> None:
    engines = [FakeEngine(FakeEngineConfig(name="us", zone="non-eu"))]
    router = Router(engines, [ModelRoute(name="m", engines=["us"])])
    classified = Classified()
    classified.raise_to("secret", "X-Socle-Classification header")
    decision = ResidencyPolicy(ResidencySettings()).decide(router.resolve("m"), "chat", classified)
    assert decision.candidates == ()
    error = decision.refusal("m")
    assert isinstance(error, ResidencyError) and error.status_code == 403
    assert error.code == "residency_denied"
    assert "'secret'" in error.message and "on-prem" in error.message and "header" in error.message


@pytest.mark.anyio
async def test_team_classification_is_stored_and_cached(database: Database) -> None:
    directory = Directory(database, incompatible_roles=[])
    org = await _org(database)
    team = await directory.create_team(org, "legal")
    assert team.classification == "internal"
    secret_team = await directory.create_team(org, "vault", "secret")
    residency = Residency(ResidencySettings(), database, cache_s=60)
    assert await residency.team_classification(team.id) == "internal"
    assert await residency.team_classification(secret_team.id) == "secret"
    changed = await directory.set_classification(org, "legal", "confidential")
    assert changed.classification == "confidential"
    assert (await directory.get_team(org, team.id)).classification == "confidential"
    assert await residency.team_classification(team.id) == "internal"  # cached
    residency.forget(team.id)
    assert await residency.team_classification(team.id) == "confidential"
    assert await residency.team_classification("no-such-team") == "internal"  # the configured default
    assert set(CLASSIFICATIONS) >= {t.classification for t in await directory.list_teams(org)}


async def _org(database: Database) -> str:
    async with database.session() as session:
        row = OrganisationRow(name="default")
        session.add(row)
        await session.flush()
        return row.id


def test_the_documented_examples_configure_what_the_docs_say(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "residency.md").read_text()
    blocks = text.split("```toml\n")[1:]
    assert len(blocks) == 4
    loaded = []
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block.split("```")[0])
        loaded.append(load_settings(path, environ={}))
    settings = loaded[2]  # the complete example
    example = ResidencyPolicy(settings.residency)
    assert (
        example.allowed_zones("internal")
        == example.allowed_zones("confidential")
        == ("on-prem", "eu-sovereign")
    )
    router = Router(
        [FakeEngine(FakeEngineConfig(name=e.name, zone=e.zone)) for e in settings.engines], settings.models
    )
    for level, expected in [
        ("public", ("hosted", "sov-vllm", "local-vllm")),
        ("internal", ("sov-vllm", "local-vllm")),
        ("secret", ("local-vllm",)),
    ]:
        classified = Classified()
        classified.raise_to(level, "team default")  # type: ignore[arg-type]
        assert example.decide(router.resolve("assistant"), "chat", classified).candidates == expected
