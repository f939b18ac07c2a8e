"""Text units shared by the policy, the metrics and the captions.

A *unit* is what latency is counted in and what a policy reads or writes. How a language
splits into units is its ``unit`` in :mod:`streamst.languages`:

* ``char``: languages written without spaces whose characters carry a syllable or a word
  (zh, yue, ja): every CJK character (and CJK punctuation) is one unit;
* ``seg``: languages written without spaces between words in scripts of letters (Thai, Lao,
  Khmer, Burmese): words found by a kept segmenter (pythainlp's ``newmm`` for Thai, laonlp
  for Lao, khmer-nltk for Khmer, burmesenlp's dictionary longest-match for Burmese);
* ``word``: whitespace-separated words (everything else, Korean included).

Units join back without spaces for ``char`` and ``seg`` languages (a space is kept between two
Latin runs), with spaces otherwise. :func:`output_units` is the text normalisation of every
target output: full-width punctuation for the languages whose table row asks for it (zh, yue,
ja).
"""

from __future__ import annotations

import re
from functools import lru_cache

from streamst.languages import base, lookup, unit_kind

CHAR_LANGS = frozenset({"zh", "ja", "yue"})

# CJK ideographs, kana, CJK punctuation and full-width forms: one unit each.
_CJK = (
    "\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff00-\uffef"
)
_CHAR_UNIT = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
# Runs of one no-space script (handed to its segmenter) and everything else between spaces.
_SCRIPT_RUNS = {
    "th": "\u0e00-\u0e7f", "lo": "\u0e80-\u0eff", "km": "\u1780-\u17ff\u19e0-\u19ff",
    "my": "\u1000-\u109f\uaa60-\uaa7f",
}


def is_char_lang(lang: str) -> bool:
    """True when units of ``lang`` are characters rather than words."""
    return unit_kind(lang) == "char"


def joins_without_spaces(lang: str) -> bool:
    """True when ``lang`` is written without spaces between units (zh, ja, yue, th, lo, km, my)."""
    return unit_kind(lang) in ("char", "seg")


def split_units(text: str, lang: str) -> list[str]:
    """Split ``text`` into units of ``lang``.

    For character languages each CJK character is a unit and any embedded run of
    Latin letters/digits (``"AI"``, ``"2025"``) is one unit, so mixed text stays sensible.
    For segmented languages each run of the script goes through the language's segmenter;
    other runs (Latin words, digits) split on whitespace.
    """
    kind = unit_kind(lang)
    if kind == "char":
        return _CHAR_UNIT.findall(text)
    if kind == "seg":
        code = base(lang)
        out: list[str] = []
        for run in re.findall(rf"[{_SCRIPT_RUNS[code]}]+|[^\s{_SCRIPT_RUNS[code]}]+", text):
            out += _segment(code, run) if run[0] in _script_chars(code) else [run]
        return out
    return text.split()


def join_units(units: list[str] | tuple[str, ...], lang: str) -> str:
    """Inverse of :func:`split_units` (up to whitespace normalisation)."""
    if not joins_without_spaces(lang):
        return " ".join(units)
    out: list[str] = []
    for u in units:
        # keep a space between two Latin runs ("AI model"), none around CJK characters
        if out and _is_latin(out[-1][-1]) and _is_latin(u[0]):
            out.append(" ")
        out.append(u)
    return "".join(out)


_ASCII_MARKS = ",.?!:;()"  # the order of a table row's ``fullwidth_punctuation``


def output_units(units: list[str] | tuple[str, ...], lang: str) -> list[str]:
    """Target units in the form streamst writes them: the one text-normalisation step of every
    target output (simul, e2e and cascade text, so captions, events, subtitles and results).

    For a language whose table row has ``fullwidth_punctuation`` (zh, yue, ja), ASCII
    punctuation becomes full-width ("你好," -> "你好，"; Japanese commas "、"), except a mark
    between two Latin letters or digits of the same unit ("3.5", "v1.2", "10:30"). Each unit is
    normalised on its own, never looking past it, so committed text never changes once written;
    a unit that gains a full-width mark is split again ("AI." -> "AI", "。"). Idempotent.
    Other languages' units are returned as they are."""
    lang_row = lookup(lang)
    marks = lang_row.fullwidth_punctuation if lang_row else ""
    if not marks:
        return list(units)
    table = dict(zip(_ASCII_MARKS, marks))
    out: list[str] = []
    for u in units:
        if not any(ch in table for ch in u):
            out.append(u)
            continue
        inner = [0 < i < len(u) - 1 and _is_latin(u[i - 1]) and _is_latin(u[i + 1]) for i in range(len(u))]
        out += split_units("".join(ch if keep else table.get(ch, ch) for ch, keep in zip(u, inner)), lang)
    return out


def fullwidth_punctuation(text: str, lang: str) -> str:
    """A whole target text through :func:`output_units` ("你好, 世界." -> "你好，世界。"), its
    units joined as outputs join them (no spaces around CJK characters); other languages'
    text is returned unchanged."""
    lang_row = lookup(lang)
    if not (lang_row and lang_row.fullwidth_punctuation):
        return text
    return join_units(output_units(split_units(text, lang), lang), lang)


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


@lru_cache(maxsize=None)
def _script_chars(code: str) -> frozenset[str]:
    ranges = re.findall(r"(.)-(.)", _SCRIPT_RUNS[code])
    return frozenset(chr(c) for a, b in ranges for c in range(ord(a), ord(b) + 1))


@lru_cache(maxsize=4096)
def _segment(code: str, run: str) -> tuple[str, ...]:
    """Words of one run of a no-space script (cached: captions re-split growing text)."""
    if code == "th":
        from pythainlp.tokenize import word_tokenize

        words = word_tokenize(run, engine="newmm", keep_whitespace=False)
    elif code == "lo":
        from laonlp.tokenize import word_tokenize as lao_words

        words = lao_words(run)
    elif code == "km":
        words = _khmer_words(run)
    else:
        words = _burmese_words(run)
    return tuple(w for w in (w.strip() for w in words) if w)


def _khmer_words(run: str) -> list[str]:
    import logging

    logging.getLogger("khmer-nltk").setLevel(logging.WARNING)  # it logs each model load at INFO
    from khmernltk import word_tokenize

    return word_tokenize(run)


@lru_cache(maxsize=1)
def _burmese_lexicon():
    """burmesenlp's bundled lexicon (about 2 s to build: once per process)."""
    from burmesenlp.lexicon import Lexicon

    return Lexicon.default()


def _burmese_words(run: str) -> list[str]:
    """Burmese words: burmesenlp (pure Python, its dictionary in the wheel) normalises the run,
    splits it into syllables and joins them by longest dictionary match."""
    from burmesenlp import word_tokenize

    return word_tokenize(run, lexicon=_burmese_lexicon())
