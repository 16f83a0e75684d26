"""French and English text analysis for keyword search: the same on both stores, at index and query time.

A text becomes a list of *terms*: lower-cased, accents folded (``é`` → ``e``, so a query typed without
accents still matches), split on anything that is not a letter or a digit, stop words dropped, then
stemmed with the Snowball stemmer (PyStemmer) of the text's language (``allocations`` and
``allocation`` → ``alloc``). Folding comes before stemming on purpose: the stemmer then sees the same
input whether or not the writer typed the accents, so index and query always agree.

Which stemmer: a document's text is French or English by a count of stop words (French wins ties only
when it has hits). A query is too short to tell, so it is analysed with both stemmers and its terms are
the union: each term matches documents of its own language, and the other language's stem of the
same word rarely matches anything.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from typing import Any, Literal

__all__ = ["Language", "detect_language", "fold", "index_terms", "query_terms", "tokens"]

Language = Literal["fr", "en"]

_SPLIT = re.compile(r"[\W_]+")
_MAX_TERM = 64  # longer "words" (hashes, base64) are noise for BM25 and bloat the index

_EN_STOP = frozenset(
    """a about above after again against all am an and any are aren as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves""".split()
)
_FR_STOP = frozenset(
    """a afin ai aie aient aies ait alors as au aucun aucune aupres auquel aussi autre
    autres aux auxquelles auxquels avaient avais avait avant avec avez aviez avions avoir avons ayant
    c ca car ce ceci cela celle celles celui cependant ces cet cette ceux chaque chez ci comme comment
    d dans de des donc dont du elle elles en entre es est et etaient etais etait etant ete etes etiez
    etions etre eu eue eues eurent eus eut eux fait faut fois furent fut ici il ils j je l la laquelle le
    lequel les lesquelles lesquels leur leurs lors lui m ma mais me meme memes mes moi mon n ne ni nos
    notre nous on ont ou par parce pas peu peut plus pour pourquoi qu quand que quel quelle quelles
    quels qui s sa sans se sera seront ses si sien sienne son sont sous soit soient suis sur t ta te tes
    toi ton tous tout toute toutes tres tu un une unes uns vos votre vous y""".split()
)
_STOP = _EN_STOP | _FR_STOP
_STEMMER_NAMES: dict[Language, str] = {"fr": "french", "en": "english"}
_local = threading.local()  # PyStemmer stemmers are not thread-safe: one per thread


def fold(text: str) -> str:
    """Lower-case and strip accents (NFKD, combining marks dropped): ``Électricité`` → ``electricite``."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """Folded words and numbers of ``text``, stop words included (for language detection)."""
    return [t for t in _SPLIT.split(fold(text)) if t and len(t) <= _MAX_TERM]


def detect_language(words: list[str]) -> Language:
    """``fr`` or ``en`` by which language's stop words occur more often (English when none occur)."""
    french = english = 0
    for word in words:
        if word in _FR_STOP:
            french += 1
        if word in _EN_STOP:
            english += 1
    return "fr" if french > english else "en"


def index_terms(text: str) -> list[str]:
    """The terms a document text is indexed under (in order, repeated as they occur)."""
    words = tokens(text)
    language = detect_language(words)
    stem = _stem_function(language)
    return [stem(w) for w in words if w not in _STOP]


def query_terms(text: str) -> list[str]:
    """The distinct terms a query searches for: its words stemmed as French and as English."""
    seen: dict[str, None] = {}
    for word in tokens(text):
        if word in _STOP:
            continue
        for language in ("en", "fr"):
            seen.setdefault(_stem_function(language)(word), None)
    return list(seen)


def _stem_function(language: Language) -> Any:
    stemmers: dict[str, Any] | None = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {}
    function = stemmers.get(language)
    if function is None:
        import Stemmer  # PyStemmer: C Snowball stemmers

        stemmer = Stemmer.Stemmer(_STEMMER_NAMES[language])
        function = stemmers[language] = lru_cache(maxsize=200_000)(stemmer.stemWord)
    return function
