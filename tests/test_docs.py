"""Docs that cannot rot: the generated references match the code, and the README's commands exist."""

from __future__ import annotations

from pathlib import Path

from socle.cli.docgen import render_cli, render_configuration, render_roles

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render_configuration().rstrip() + "\n", "run `make docs` and commit docs/"


def test_cli_reference_is_current() -> None:
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render_cli().rstrip() + "\n", "run `make docs` and commit docs/"


def test_roles_reference_is_current() -> None:
    committed = (ROOT / "docs" / "roles.md").read_text()
    assert committed == render_roles().rstrip() + "\n", "run `make docs` and commit docs/"


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n")[:8]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_docs_links_resolve() -> None:
    import re

    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
