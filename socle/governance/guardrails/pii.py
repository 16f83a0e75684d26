"""Structured personal data: identifiers with a fixed shape, validated by their check digits.

Each recogniser is a bounded regular expression (every repeat has a maximum, so the work at each
position is bounded and a scan is linear in the text), an optional validator (checksum), and context
words that raise its score when they appear just before or after the match (``tél.``, ``SIRET``,
``né le``...). Identifiers too ambiguous on their own (a 9-character ID-card number, a date that is
a date of birth only when introduced as one) are reported only with their context.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from socle.governance.guardrails.checksums import (
    IBAN_LENGTHS,
    iban_valid,
    luhn_valid,
    nir_valid,
    siren_valid,
    siret_valid,
)
from socle.governance.guardrails.findings import Finding

__all__ = ["RECOGNISERS", "Recogniser", "scan_structured"]

_BEFORE = 48  # characters of context read before a match
_AFTER = 24  # and after


@dataclass(frozen=True, slots=True)
class Recogniser:
    type: str
    detector: str
    pattern: re.Pattern[str]
    score: float
    """Score of a valid match without context (0: reported only with context)."""
    context_score: float
    context: re.Pattern[str] | None = None
    validate: Callable[[str], bool] | None = None
    plausible: Callable[[str], bool] | None = None
    """Without context, a match must also pass this (a grouped number that could be an amount)."""
    not_after: re.Pattern[str] | None = None
    """A match right after this (``licence number is``) is another kind of number: not reported."""
    needs: str = "digit"
    """What every match contains (``digit``, ``@`` or ``:``): a text without it is not scanned."""


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", re.IGNORECASE)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


_CARD_PREFIX = re.compile(r"^(?:4|5[0-9]|2[2-7]|3[0-9]|6[0-9]|1800|2131)")


def _card(text: str) -> bool:
    digits = _digits(text)
    return 12 <= len(digits) <= 19 and luhn_valid(digits)


def _card_issuer(text: str) -> bool:
    """A known issuer prefix: required without a card word around (a Luhn-valid number is 1 in 10)."""
    return bool(_CARD_PREFIX.match(_digits(text)))


_DATE_LIKE = re.compile(r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$")
_AMOUNT_LIKE = re.compile(r"^\d{1,3}(?:[ .,\u00a0]\d{3}){1,4}$")


_SSN_LIKE = re.compile(r"^\d{3}-\d{2}-\d{4}$")


def _phone(text: str) -> bool:
    digits = _digits(text.split("x")[0].split("ext")[0])
    return (
        7 <= len(digits) <= 15
        and not _DATE_LIKE.match(text)
        and not _SSN_LIKE.match(text)  # the US social security number's shape, no phone plan's
        and len(set(digits)) > 2
    )


def _not_amount(text: str) -> bool:
    return not _AMOUNT_LIKE.match(text)


def _ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6 and text.count(":") >= 2
    except ValueError:
        return False


def _siren(text: str) -> bool:
    return siren_valid(_digits(text))


def _siret(text: str) -> bool:
    return siret_valid(_digits(text))


_PHONE_CONTEXT = _words(
    r"t[ée]l", r"t[ée]l[ée]phone", "phone", "telephone", "mobile", "portable", "cell", "fax", "desk",
    "office", "bureau", "call", "calls", "called", "calling", "appel(?:er|ez|le|lez)?", "joindre",
    r"num[ée]ro", "number", "contact", "whatsapp", "sms", "text", "messages?", "reach", "ring",
    "answering", "dial", "standard", "ligne", "line",
)  # fmt: skip
_OTHER_NUMBER = re.compile(
    r"(?:licen[cs]e|security|ssn|account|order|invoice|reference|passport|policy|tracking|serial|"
    r"membership|identity|id|permis|compte|commande|facture|r[ée]f[ée]rence|dossier|contrat|sécu)"
    r"\W{0,3}(?:number|no\.?|n°|#|num[ée]ro)?\W{0,3}(?:is|was|:|est|=)?\W{0,3}$",
    re.IGNORECASE,
)
"""What introduces a number that is not a phone number, just before a bare digit group."""
_CARD_CONTEXT = _words(
    "card", "carte", "cb", "visa", "mastercard", "amex", "american express", "credit", "cr[ée]dit",
    "debit", r"d[ée]bit", "payment", "paiement", "maestro", "jcb", "diners",
)  # fmt: skip
_NIR_CONTEXT = _words(
    r"nir",
    r"s[ée]cu(?:rit[ée] sociale)?",
    "insee",
    "social security",
    r"num[ée]ro d'assur[ée]",
    "carte vitale",
)
_COMPANY_CONTEXT = _words(
    "siren", "siret", "rcs", "soci[ée]t[ée]", "entreprise", "company", "sas", "sarl", "sa"
)
_ID_CONTEXT = _words(
    r"carte d'identit[ée]", r"carte nationale d'identit[ée]", "cni", r"pi[èe]ce d'identit[ée]",
    "identity card", "id card", "national id",
)  # fmt: skip
_PASSPORT_CONTEXT = _words("passeport", "passport")
_PLATE_CONTEXT = _words(
    "immatricul[ée]e?", "immatriculation", "plaque", r"v[ée]hicule", "voiture", "licen[cs]e plate",
    "registration", "car",
)  # fmt: skip
_DOB_CONTEXT = _words(
    r"n[ée]e?(?:\(e\))? le", r"n[ée]e?(?:\(e\))? en", "date de naissance", "naissance", "born(?: on)?",
    "date of birth", "birth date", "birthdate", "dob", r"d\.o\.b\.?", "birthday", "anniversaire",
)  # fmt: skip
_IP_CONTEXT = _words("ip", "adresse ip", "ip address", "serveur", "server", "host", "client")

_SEP = r"[ .\-\u00a0]"
_MONTHS = (
    r"(?:janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[uû]t|septembre|octobre|novembre|d[ée]cembre|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"
)

RECOGNISERS: tuple[Recogniser, ...] = (
    Recogniser(
        "EMAIL_ADDRESS",
        "email",
        re.compile(
            r"(?<![\w.+%-])[\w.%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
            r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?){0,6}\.[A-Za-z]{2,24}(?![\w-])"
        ),
        0.95,
        1.0,
        needs="@",
    ),
    Recogniser(
        "IBAN_CODE",
        "iban",
        re.compile(
            r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \u00a0]?[A-Za-z0-9]{1,4}){3,8}"  # country checked after
        ),
        1.0,
        1.0,
    ),
    Recogniser(
        "FR_NIR",
        "nir",
        re.compile(
            r"(?<![\w])[1278][ .]?\d{2}[ .]?(?:0[1-9]|1[0-2]|[2-9]\d)[ .]?(?:\d{2}|2[AaBb])[ .]?\d{3}"
            r"[ .]?\d{3}[ .]?\d{2}(?![\w])"
        ),
        0.97,
        1.0,
        _NIR_CONTEXT,
        nir_valid,
    ),
    Recogniser(
        "FR_SIRET",
        "siret",
        re.compile(r"(?<![\w.])\d{3}[ .\u00a0]?\d{3}[ .\u00a0]?\d{3}[ .\u00a0]?\d{5}(?![\w]|[.,]\d)"),
        0.6,
        0.95,
        _COMPANY_CONTEXT,
        _siret,
    ),
    Recogniser(
        "FR_SIREN",
        "siren",
        re.compile(r"(?<![\w.])\d{3}[ .\u00a0]?\d{3}[ .\u00a0]?\d{3}(?![\w]|[.,]\d|[ .\u00a0]\d)"),
        0.3,
        0.95,
        _COMPANY_CONTEXT,
        _siren,
    ),
    Recogniser(
        "CREDIT_CARD",
        "card",
        re.compile(r"(?<![\w.-])\d(?:[ \-\u00a0]?\d){11,18}(?![\w]|[.,-]\d)"),
        0.9,
        1.0,
        _CARD_CONTEXT,
        _card,
        _card_issuer,
    ),
    Recogniser(
        "PHONE_NUMBER",
        "phone-fr",
        re.compile(
            r"(?<![\w+])(?:(?:\+|00)33[ .\-\u00a0]?(?:\(0\)[ .\-\u00a0]?)?|"
            r"0)[1-9](?:[ .\-\u00a0]?\d{2}){4}(?![\w]|[.,]\d)"
        ),
        0.9,
        1.0,
        _PHONE_CONTEXT,
        _phone,
    ),
    Recogniser(
        "PHONE_NUMBER",
        "phone-intl",
        re.compile(
            r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}(?:[ .\-\u00a0]?\(0\))?(?:[ .\-\u00a0]?\(?\d{1,5}\)?){1,6}"
            r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w]|[.,]\d)"
        ),
        0.85,
        1.0,
        _PHONE_CONTEXT,
        _phone,
    ),
    Recogniser(
        "PHONE_NUMBER",
        "phone-nanp",
        re.compile(
            r"(?<![\w+.-])(?:1[ .-]|001[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
            r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w]|[.,-]\d)"
        ),
        0.7,
        1.0,
        _PHONE_CONTEXT,
        _phone,
    ),
    Recogniser(
        "PHONE_NUMBER",
        "phone-generic",
        re.compile(
            r"(?<![\w+./:-])(?<!\d,)(?:\(?\d{2,5}\)?(?:[ .\-\u00a0]\(?\d{2,8}\)?){1,5}|\d{7,12})"
            r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w/:]|[.,:-]\d)"
        ),
        0.3,
        0.8,
        _PHONE_CONTEXT,
        _phone,
        _not_amount,
        _OTHER_NUMBER,
    ),
    Recogniser(
        "IP_ADDRESS",
        "ipv4",
        re.compile(
            r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|"
            r"[1-9]?\d)(?![\w]|\.\d)"
        ),
        0.85,
        0.95,
        _IP_CONTEXT,
    ),
    Recogniser(
        "IP_ADDRESS",
        "ipv6",
        re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        0.85,
        0.95,
        _IP_CONTEXT,
        _ipv6,
        needs=":",
    ),
    Recogniser(
        "FR_ID_CARD",
        "fr-id-card",
        re.compile(r"(?<![\w])(?:[0-9]{4}[0-9A-Z]{3}[0-9]{5}|(?=[A-Z0-9]{0,8}[0-9])[A-Z0-9]{9})(?![\w])"),
        0.0,
        0.85,
        _ID_CONTEXT,
    ),
    Recogniser(
        "FR_PASSPORT",
        "fr-passport",
        re.compile(r"(?<![\w])\d{2}[A-Z]{2}\d{5}(?![\w])"),
        0.6,
        0.95,
        _PASSPORT_CONTEXT,
    ),
    Recogniser(
        "LICENCE_PLATE",
        "plate-fr",
        re.compile(r"(?<![\w-])[A-HJ-NP-TV-Z]{2}[- ]\d{3}[- ][A-HJ-NP-TV-Z]{2}(?![\w-])"),
        0.75,
        0.95,
        _PLATE_CONTEXT,
    ),
    Recogniser(
        "LICENCE_PLATE",
        "plate-fr-old",
        re.compile(r"(?<![\w-])\d{1,4} ?[A-Z]{2,3} ?(?:0[1-9]|[1-8]\d|9[0-5]|2[AB]|97[1-6])(?![\w-])"),
        0.0,
        0.85,
        _PLATE_CONTEXT,
    ),
    Recogniser(
        "DATE_OF_BIRTH",
        "date-of-birth",
        re.compile(
            r"(?<![\w/.-])(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}-\d{2}-\d{2}|"
            r"\d{1,2}(?:er|st|nd|rd|th)? "
            + _MONTHS
            + r",? \d{4}|"
            + _MONTHS
            + r" \d{1,2}(?:st|nd|rd|th)?,? \d{4})"
            r"(?![\w/-])",
            re.IGNORECASE,
        ),
        0.0,
        0.9,
        _DOB_CONTEXT,
    ),
)
"""Every structured recogniser, in the order they run."""


def _iban_span(text: str, start: int, end: int) -> int | None:
    """The end of the valid IBAN that starts at ``start`` (a match may run into the next word)."""
    length = IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return None
    count = 0
    for index in range(start, end):
        if text[index].isalnum():
            count += 1
            if count == length:
                return index + 1 if iban_valid(text[start : index + 1]) else None
    return None


def _has_context(rec: Recogniser, text: str, start: int, end: int) -> bool:
    if rec.context is None:
        return False
    window = text[max(0, start - _BEFORE) : start] + " " + text[end : end + _AFTER]
    return rec.context.search(window) is not None


_LONGEST = 64  # characters: longer than any match of a recogniser reported only with context


def _windows(rec: Recogniser, text: str) -> Iterator[tuple[int, int]]:
    """Where a match may start: everywhere, or, for a recogniser reported only with context, near
    its context words (merged windows, so the text is read once however many words there are)."""
    if rec.score > 0 or rec.context is None:
        yield 0, len(text)
        return
    low = high = -1
    for hit in rec.context.finditer(text):
        start, end = max(0, hit.start() - _AFTER - _LONGEST), hit.end() + _BEFORE
        if start > high:
            if high >= 0:
                yield low, high
            low = start
        high = max(high, end)
    if high >= 0:
        yield low, min(high, len(text))


def _matches(rec: Recogniser, text: str) -> Iterator[Finding]:
    for low, high in _windows(rec, text):
        yield from _matches_in(rec, text, low, high)


def _matches_in(rec: Recogniser, text: str, low: int, high: int) -> Iterator[Finding]:
    """Matches starting in ``text[low:high]`` (read up to ``_LONGEST`` characters further)."""
    position = low
    stop = len(text) if high >= len(text) else high + _LONGEST
    while (match := rec.pattern.search(text, position, stop)) is not None and match.start() < high:
        start, end = match.span()
        position = end
        if rec.type == "IBAN_CODE":  # the match may run into the next words: keep the valid IBAN only
            found = _iban_span(text, start, end)
            if found is None:
                position = start + 1
                continue
            end = position = found
        value = text[start:end]
        if rec.validate is not None and not rec.validate(value):
            continue
        if rec.not_after is not None and rec.not_after.search(text, max(0, start - _BEFORE), start):
            continue
        context = _has_context(rec, text, start, end)
        if not context and rec.plausible is not None and not rec.plausible(value):
            continue
        score = rec.context_score if context else rec.score
        if score > 0:
            yield Finding(rec.type, start, end, rec.detector, score)


_DIGIT = re.compile(r"\d")


def scan_structured(text: str, recognisers: tuple[Recogniser, ...] = RECOGNISERS) -> list[Finding]:
    """Every structured identifier in ``text`` (overlaps not yet resolved). Recognisers whose
    matches need a character the text lacks (most need a digit) are not run."""
    present = {"digit": _DIGIT.search(text) is not None, "@": "@" in text, ":": ":" in text}
    return [finding for rec in recognisers if present[rec.needs] for finding in _matches(rec, text)]
