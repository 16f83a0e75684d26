"""A small, curated public surface: every package and module declares ``__all__``, every name in it
exists, and importing any module does no I/O (nothing heavy is loaded at import)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import socle

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(socle.__path__, "socle.")
    if ".migrations" not in m.name and m.name != "socle.__main__"
)


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_its_public_names(name: str) -> None:
    module = importlib.import_module(name)
    if name.endswith("__init__") or not hasattr(module, "__all__"):
        assert hasattr(module, "__all__") or module.__doc__, f"{name} has neither __all__ nor a docstring"
        if not hasattr(module, "__all__"):
            assert not [
                n
                for n in vars(module)
                if not n.startswith("_")
                and callable(vars(module)[n])
                and getattr(vars(module)[n], "__module__", "") == name
            ], f"{name} needs __all__"
            return
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names {exported!r}, which does not exist"


def test_top_level_exports() -> None:
    assert socle.__all__ == ["__version__"]
    from socle import errors

    assert all(issubclass(getattr(errors, n), errors.SocleError) for n in errors.__all__)


def test_importing_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, socle.gateway, socle.engines, socle.cli, socle.config\n"
        "names = ('torch', 'llama_cpp', 'sentence_transformers', 'transformers')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
