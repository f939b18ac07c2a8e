"""Punctuation restoration: FunASR CT-Transformer (``ct-punc``) and a rule fallback.

Both implement :class:`~streamst.asr.punc_base.Punctuator`: ``punctuate(text)`` returns
``text`` with punctuation inserted and every other character unchanged.

CT-Transformer's own output text is not the input plus marks: it capitalises the first
English word of each sentence (``capitalize()`` also lower-cases the rest: "iPhone" ->
"Iphone"), drops and adds spaces, and could in principle emit a label string. So
:class:`CtPunctuator` walks the model's text alongside the input, keeps the input's
characters and spacing, and takes only the marks the model put between them. If the two
disagree on anything but marks, case and spaces, the model output is discarded and the
input gets a sentence-final mark (logged).
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from pathlib import Path
from typing import Any

from streamst.asr.funasr_load import keep_torch_threads, load_auto_model

log = logging.getLogger(__name__)

__all__ = ["CtPunctuator", "RulePunctuator", "is_punct", "transfer_marks"]

# Full-width marks written after an ASCII word become ASCII (as FunASR does for ，。？).
_TO_ASCII = {"，": ",", "。": ".", "？": "?", "、": ",", "！": "!", "；": ";", "：": ":"}
_FINAL = frozenset("。？！.?!…")  # marks that already end a sentence
_PAUSE = frozenset("，,、;；:：")  # a trailing one is replaced by the final mark
_CJK_FINAL_LANGS = frozenset({"zh", "ja", "yue"})


def is_punct(ch: str) -> bool:
    """True for a Unicode punctuation character (categories P*)."""
    return unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF


def transfer_marks(source: str, model_text: str) -> str | None:
    """Insert into ``source`` the punctuation marks that ``model_text`` adds to it.

    ``model_text`` must equal ``source`` up to inserted punctuation, letter case and
    whitespace; otherwise returns ``None``. Marks are never placed next to punctuation the
    source already has, and a full-width mark after an ASCII character becomes ASCII.
    Removing the inserted marks from the result gives ``source`` back exactly.
    """
    inserts: dict[int, str] = {}  # source index -> mark to insert before it
    i = 0
    last = -1  # index in source of the last character matched
    for c in model_text:
        if c.isspace():
            continue
        while i < len(source) and source[i].isspace():
            i += 1
        if i < len(source) and source[i].lower() == c.lower():
            last = i
            i += 1
        elif is_punct(c) and last >= 0:
            if is_punct(source[last]) or last + 1 in inserts:
                continue
            j = last + 1  # next non-space source char must not be punctuation either
            while j < len(source) and source[j].isspace():
                j += 1
            if j < len(source) and is_punct(source[j]):
                continue
            inserts[last + 1] = _TO_ASCII.get(c, c) if source[last].isascii() else c
        elif is_punct(c):  # a mark before any text: drop it
            continue
        else:
            return None
    if source[i:].strip():
        return None
    parts = []
    for k, ch in enumerate(source):
        if k in inserts:
            parts.append(inserts[k])
        parts.append(ch)
    if len(source) in inserts:
        parts.append(inserts[len(source)])
    return "".join(parts)


class RulePunctuator:
    """No model: end the text with a sentence-final mark if it lacks one.

    ``'。'`` for Chinese/Japanese/Cantonese (or text ending in a CJK character when the
    language is unknown), ``'.'`` otherwise. A trailing comma-like mark is replaced by it
    (punctuation only; other characters never change). Empty text is returned unchanged.
    """

    kind = "rule-punc"

    def __init__(self, lang: str | None = None) -> None:
        self.lang = lang  # source language code ("zh", "en", ...), None: guess per text

    def punctuate(self, text: str) -> str:
        """Return ``text`` with a final mark appended where missing."""
        stripped = text.rstrip()
        if not stripped or stripped[-1] in _FINAL:
            return text
        if self.lang is not None:
            cjk = self.lang.split("-")[0].lower() in _CJK_FINAL_LANGS
        else:
            cjk = _is_cjk(stripped[-1])
        if stripped[-1] in _PAUSE:  # a trailing comma becomes the final mark
            stripped = stripped[:-1]
        return stripped + ("。" if cjk else ".") + text[len(text.rstrip()) :]


class CtPunctuator:
    """FunASR CT-Transformer punctuation, shared by sessions (calls are serialised).

    ``AutoModel.generate`` resets and rewrites the ``AutoModel``'s kwargs on every call,
    so concurrent calls into one instance are not safe; a lock serialises them.
    """

    kind = "ct-punc"

    def __init__(self, auto_model: Any) -> None:
        self.auto_model = auto_model
        self._lock = threading.Lock()
        self._fallback = RulePunctuator()
        self.fallbacks = 0  # model outputs rejected (diagnostics)

    @classmethod
    def load(
        cls, source: str | Path, hint: str, device: str = "cpu", ncpu: int | None = None
    ) -> CtPunctuator:
        """Load from a hub id / alias (``"ct-punc"``) or a local directory.

        ``ncpu``: torch threads during this model's calls (``None``: the process's count).
        The caller's count is restored after each call.

        Raises:
            ModelNotFoundError: missing directory or a hub id that cannot be fetched; the
                one-line message names the model and ends with ``hint``.
        """
        am = load_auto_model(
            source, what="punctuation model (ct-punc)", hint=hint, device=device, ncpu=ncpu
        )
        return cls(am)

    def model_text(self, text: str) -> str:
        """The model's raw output text for ``text`` (not surface-preserving)."""
        # A list input keeps FunASR from reading ``text`` as a file path; the leading
        # space keeps it from downloading text that starts with "http(s)://" (the model
        # splits on whitespace, so the space changes nothing else).
        with self._lock, keep_torch_threads():
            res = self.auto_model.generate(input=[" " + text])
        return str(res[0]["text"]) if res else ""

    def punctuate(self, text: str) -> str:
        """Return ``text`` with the model's punctuation inserted, characters unchanged."""
        if not text.strip():
            return text
        out = self.model_text(text)
        restored = transfer_marks(text, out)
        if restored is None:
            self.fallbacks += 1
            log.warning("ct-punc changed the text (%r -> %r); using a final mark only", text, out)
            return self._fallback.punctuate(text)
        return restored
