"""E-mail: EML (RFC 822, the standard library's parser) and Outlook MSG (OLE2 properties via olefile).

The headers (from, to, cc, date, subject) become the first block, the subject the title; the body is
the plain-text part, or the HTML part parsed as HTML. Attachments are handed back to the caller, which
parses them recursively within the depth limit. S/MIME-encrypted messages are refused as encrypted.
"""

from __future__ import annotations

import email
import email.policy
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from socle.knowledge.ingest.errors import EncryptedDocumentError
from socle.knowledge.ingest.formats._common import TextBudget, clean
from socle.knowledge.ingest.formats.html import html_blocks
from socle.knowledge.ingest.formats.text import text_paragraphs
from socle.knowledge.ingest.model import Attachment, Block, DocumentInfo, ParseLimits
from socle.knowledge.ingest.source import Source

__all__ = ["parse_eml", "parse_msg"]

_HEADERS = ("from", "to", "cc", "date", "subject")


def _body_blocks(plain: str, html: str, path: tuple[str, ...]) -> list[Block]:
    if plain.strip():
        blocks = list(text_paragraphs(plain.splitlines()))
    elif html.strip():
        blocks = html_blocks(html)[0]
    else:
        return []
    return [Block(b.kind, b.text, b.level, (*path, *b.section_path), b.page) for b in blocks]


def _message(
    fields: dict[str, str], plain: str, html: str, info: DocumentInfo, limits: ParseLimits
) -> Iterator[Block]:
    """The headers block (the subject is the title and the section), then the body's blocks."""
    fields = {k: clean(v) for k, v in fields.items()}
    info.title = fields["subject"]
    info.metadata.update({k: v for k, v in fields.items() if v and k != "subject"})
    path = (info.title,) if info.title else ()
    budget = TextBudget(info, limits)
    lines = [f"{name.capitalize()}: {fields[name]}" for name in _HEADERS if fields.get(name)]
    if lines:
        yield budget(Block("paragraph", "\n".join(lines), 0, path))
    yield from map(budget, _body_blocks(plain, html, path))


def parse_eml(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    with source.open() as file:
        message = email.message_from_binary_file(file, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    content_type = message.get_content_type()
    if content_type in ("application/pkcs7-mime", "application/x-pkcs7-mime", "multipart/encrypted"):
        if "signed-data" not in str(message.get("content-type", "")):
            raise EncryptedDocumentError(
                f"{info.filename}: the message is encrypted (S/MIME or PGP)", filename=info.filename
            )
    fields = {name: str(message.get(name, "")) for name in _HEADERS}
    yield from _message(fields, *_eml_bodies(message), info, limits)
    for part in message.iter_attachments():
        attachment = _eml_attachment(part)
        if attachment is not None:
            yield attachment


def _eml_bodies(message: EmailMessage) -> tuple[str, str]:
    texts: dict[str, str] = {}
    for subtype in ("plain", "html"):
        part = message.get_body(preferencelist=(subtype,))
        if part is not None and part.get_content_subtype() == subtype:
            try:
                texts[subtype] = str(part.get_content())
            except (LookupError, UnicodeError, ValueError):
                payload = part.get_payload(decode=True)
                texts[subtype] = payload.decode("latin-1") if isinstance(payload, bytes) else ""
    return texts.get("plain", ""), texts.get("html", "")


def _eml_attachment(part: Any) -> Attachment | None:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner else inner
        data = message.as_bytes() if hasattr(message, "as_bytes") else b""
        subject = str(message.get("subject", "message")) if hasattr(message, "get") else "message"
        return Attachment(f"{subject[:80]}.eml", data) if data else None
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        return None
    return Attachment(part.get_filename() or "attachment", payload)


# MSG property ids (MS-OXPROPS) and the storages that hold attachments.
_SUBJECT, _BODY, _HTML, _CLASS = "0037", "1000", "1013", "001A"
_SENDER_NAME, _SENDER_EMAIL, _TO, _CC = "0C1A", "0C1F", "0E04", "0E03"
_ATTACH_DATA, _ATTACH_LONG_NAME, _ATTACH_NAME = "3701", "3707", "3704"
_SUBMIT_TIME = 0x0039


def parse_msg(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    import olefile

    with source.open() as file, olefile.OleFileIO(file) as ole:
        storages = sorted({e[0] for e in ole.listdir() if e[0].startswith("__attach_version1.0_")})
        names = [
            _prop(ole, s, _ATTACH_LONG_NAME) or _prop(ole, s, _ATTACH_NAME) or "attachment" for s in storages
        ]
        message_class = _prop(ole, "", _CLASS).upper()
        encrypted = "SMIME" in message_class and "MULTIPARTSIGNED" not in message_class
        if encrypted or any(n.lower().endswith((".pgp-encrypted", "smime.p7m")) for n in names):
            raise EncryptedDocumentError(
                f"{info.filename}: the message is encrypted (S/MIME or PGP)", filename=info.filename
            )
        sender = _prop(ole, "", _SENDER_NAME)
        sender_email = _prop(ole, "", _SENDER_EMAIL)
        fields = {
            "from": f"{sender} <{sender_email}>"
            if sender and sender_email and "@" in sender_email
            else sender,
            "to": _prop(ole, "", _TO),
            "cc": _prop(ole, "", _CC),
            "date": _submit_time(ole),
            "subject": _prop(ole, "", _SUBJECT),
        }
        html = _binary(ole, "", _HTML).decode("utf-8", errors="replace")
        yield from _message(fields, _prop(ole, "", _BODY), html, info, limits)
        for storage, name in zip(storages, names, strict=True):
            data = _binary(ole, storage, _ATTACH_DATA)
            if data:
                yield Attachment(name, data)


def _stream(ole: Any, storage: str, prop: str, kind: str) -> bytes | None:
    name = f"{storage}/__substg1.0_{prop}{kind}" if storage else f"__substg1.0_{prop}{kind}"
    return bytes(ole.openstream(name).read()) if ole.exists(name) else None


def _prop(ole: Any, storage: str, prop: str) -> str:
    data = _stream(ole, storage, prop, "001F")
    if data is not None:
        return data.decode("utf-16-le", errors="replace").rstrip("\x00")
    data = _stream(ole, storage, prop, "001E")
    return data.decode("cp1252", errors="replace").rstrip("\x00") if data is not None else ""


def _binary(ole: Any, storage: str, prop: str) -> bytes:
    return _stream(ole, storage, prop, "0102") or b""


def _submit_time(ole: Any) -> str:
    if not ole.exists("__properties_version1.0"):
        return ""
    data = ole.openstream("__properties_version1.0").read()
    for offset in range(32, len(data) - 15, 16):
        kind, prop = struct.unpack_from("<HH", data, offset)
        if prop == _SUBMIT_TIME and kind == 0x0040:
            (filetime,) = struct.unpack_from("<Q", data, offset + 8)
            when = datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=filetime // 10)
            return when.isoformat()
    return ""
