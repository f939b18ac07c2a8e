"""Text units shared by the policy, the metrics and the captions.

A *unit* is what latency is counted in and what a policy reads or writes:
characters for languages written without spaces (zh, ja, yue), whitespace words otherwise.
"""

from __future__ import annotations

import re

CHAR_LANGS = frozenset({"zh", "ja", "yue"})

# CJK ideographs, kana, CJK punctuation and full-width forms: one unit each.
_CJK = (
    "\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff00-\uffef"
)
_CHAR_UNIT = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def is_char_lang(lang: str) -> bool:
    """True when units of ``lang`` are characters rather than words."""
    return lang.split("-")[0].lower() in CHAR_LANGS


def split_units(text: str, lang: str) -> list[str]:
    """Split ``text`` into units of ``lang``.

    For character languages each CJK character is a unit and any embedded run of
    Latin letters/digits (``"AI"``, ``"2025"``) is one unit, so mixed text stays sensible.
    """
    if is_char_lang(lang):
        return _CHAR_UNIT.findall(text)
    return text.split()


def join_units(units: list[str] | tuple[str, ...], lang: str) -> str:
    """Inverse of :func:`split_units` (up to whitespace normalisation)."""
    if not is_char_lang(lang):
        return " ".join(units)
    out: list[str] = []
    for u in units:
        # keep a space between two Latin runs ("AI model"), none around CJK characters
        if out and _is_latin(out[-1][-1]) and _is_latin(u[0]):
            out.append(" ")
        out.append(u)
    return "".join(out)


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()
