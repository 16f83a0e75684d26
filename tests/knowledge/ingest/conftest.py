"""Real documents for the ingestion tests: ``shared/data/documents`` beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[3]


def documents_dir() -> Path | None:
    for base in (_ROOT.parent, _ROOT.parent.parent):
        candidate = base / "shared" / "data" / "documents"
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def docs() -> Path:
    found = documents_dir()
    if found is None:
        pytest.skip("shared/data/documents is not beside the repository")
    return found
