"""Response classes: JSON rendered with orjson (the hot path answers many small bodies)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

__all__ = ["JSONBytes", "listing"]


class JSONBytes(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def listing(items: list[Any]) -> JSONBytes:
    """An OpenAI-style list object."""
    return JSONBytes({"object": "list", "data": items})
