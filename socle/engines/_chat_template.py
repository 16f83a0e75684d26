"""Chat templates: the model's own Jinja template turns a message list into one prompt string.

GGUF files carry the template their authors trained with (``tokenizer.chat_template``), written for
Hugging Face's renderer. It is rendered here the same way: a sandboxed, immutable Jinja environment
with ``trim_blocks``/``lstrip_blocks``, the ``loopcontrols`` extension, ``raise_exception``,
``strftime_now`` and a ``tojson`` that keeps non-ASCII text. A template cannot reach Python objects
beyond the messages it is given. Errors a template raises on purpose (unsupported roles, a missing
user turn) become :class:`socle.errors.BadRequestError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from socle.errors import BadRequestError, ConfigError, UnsupportedError

__all__ = ["ChatTemplate", "normalize_messages"]


class _TemplateRaised(Exception):
    """``raise_exception(...)`` inside a template."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def normalize_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as templates expect them: ``content`` a string (text parts joined, None as "")."""
    result: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            texts: list[str] = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text":
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise UnsupportedError(f"this model only reads text; a message has a {kind!r} part")
                texts.append(str(part.get("text", "")))
            content = "".join(texts)
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise BadRequestError(
                "message content must be a string or a list of text parts", param="messages"
            )
        result.append({**message, "content": content})
    return result


class ChatTemplate:
    """A compiled chat template with the model's BOS/EOS texts."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        environment = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols],
        )
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = _strftime_now
        try:
            self._template = environment.from_string(source)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"the chat template does not compile: {exc}") from exc
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Iterable[dict[str, Any]]) -> str:
        """The prompt for ``messages``, ending with the assistant's turn opener."""
        normalized = normalize_messages(messages)
        if not normalized:
            raise BadRequestError("messages must not be empty", param="messages")
        try:
            return self._template.render(
                messages=normalized,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=True,
            )
        except _TemplateRaised as exc:
            raise BadRequestError(
                f"the model's chat template refused the messages: {exc}", param="messages"
            ) from exc
        except jinja2.TemplateError as exc:
            raise BadRequestError(
                f"the chat template failed on these messages: {exc}", param="messages"
            ) from exc
