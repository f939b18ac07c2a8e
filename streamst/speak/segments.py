"""Committed translation text -> speakable segments, cut at clause and sentence ends.

Only committed text is ever spoken (it never changes; the tentative tail is not). Each
target language's committed text is cut as it commits: at the last clause or sentence mark
(``, . ! ? ; :`` and their CJK forms) of the new text, at a word boundary once the uncut
text passes ``max_chars``, and whatever remains when the utterance's translation is final.

Each :class:`Segment` records when its text committed (``commit_ms``, source stream
position) and where the source words it renders began (``source_ms``): the start of the
utterance for its first segment, else the commit position of the segment before it (the
words heard since were what this segment translates). ``source_ms`` is the start of
those words, so delays measured from it are upper bounds, conservative by design.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamst.events import Event, TranscriptEvent, TranslationEvent
from streamst.text import is_char_lang

# a clause / sentence mark with the closing quotes or brackets after it: CJK marks anywhere,
# ASCII ones before a space or the end (not ``a.b`` or ``3,5``)
_CLOSE = "[\"'”’）)\\]」』]*"
_BOUNDARY = re.compile(f"[，。！？；：、…]+{_CLOSE}|[,.!?;:]+{_CLOSE}(?=\\s|$)")
MAX_CHARS = 80  # uncut text longer than this is cut at its last word boundary (characters for CJK)


@dataclass(frozen=True)
class Segment:
    """One piece of committed translation to be spoken."""

    language: str
    index: int  # 0, 1, ... per language over the session
    utterance: int
    text: str
    commit_ms: int  # source stream position when the last of its text committed
    source_ms: int  # where the source words it renders began (stream ms)


class Segmenter:
    """Cuts one session's committed translations (of ``path``) into segments per language."""

    def __init__(self, languages: tuple[str, ...] | list[str], path: str, *, max_chars: int = MAX_CHARS) -> None:
        self.languages = tuple(languages)
        self.path, self.max_chars = path, max_chars
        self._done: dict[tuple[str, int], int] = {}  # (language, utterance) -> characters already cut
        self._count = {lang: 0 for lang in self.languages}
        self._starts: dict[int, int] = {}  # utterance -> its source start (ms)
        self._last_commit = {lang: 0 for lang in self.languages}
        self._spoken: set[tuple[str, int]] = set()  # (language, utterance) with a segment already

    def feed(self, events: list[Event]) -> list[Segment]:
        out: list[Segment] = []
        for ev in events:
            if isinstance(ev, TranscriptEvent):
                self._starts.setdefault(ev.utterance, ev.start_ms)
            elif isinstance(ev, TranslationEvent) and ev.mode == self.path and ev.language in self._count:
                out += self._cut(ev)
        return out

    def _cut(self, ev: TranslationEvent) -> list[Segment]:
        key = (ev.language, ev.utterance)
        done = self._done.get(key, 0)
        rest = ev.committed[done:]
        out: list[Segment] = []
        while rest:
            cut = self._cut_point(rest, ev.language, ev.final)
            if cut <= 0:
                break
            text, rest, done = rest[:cut].strip(), rest[cut:], done + cut
            if text:
                out.append(self._segment(ev, text))
        if ev.final:  # the utterance is over for this language: forget it
            self._done.pop(key, None)
            self._spoken.discard(key)
            self._starts.pop(ev.utterance - 8, None)
        else:
            self._done[key] = done
        return out

    def _segment(self, ev: TranslationEvent, text: str) -> Segment:
        lang = ev.language
        first = (lang, ev.utterance) not in self._spoken
        self._spoken.add((lang, ev.utterance))
        start = self._starts.get(ev.utterance, ev.audio_ms) if first else self._last_commit[lang]
        seg = Segment(lang, self._count[lang], ev.utterance, text, ev.audio_ms, min(start, ev.audio_ms))
        self._count[lang] += 1
        self._last_commit[lang] = ev.audio_ms
        return seg

    def _cut_point(self, text: str, lang: str, final: bool) -> int:
        """Characters of ``text`` to cut now (0: wait for more)."""
        ends = [m.end() for m in _BOUNDARY.finditer(text) if m.end() < len(text) or not _maybe_number(text, m)]
        fit = [e for e in ends if e <= self.max_chars]
        if fit:
            return fit[-1]
        if len(text) > self.max_chars:
            return _wrap(text, lang, self.max_chars)
        return len(text) if final else 0


def _maybe_number(text: str, m: re.Match) -> bool:
    """A mark at the very end after a digit (``3.`` may become ``3.5``): wait for more."""
    return m.start() > 0 and text[m.start() - 1].isdigit() and text[m.start()] in ".,"


def _wrap(text: str, lang: str, max_chars: int) -> int:
    """Where to cut text that has no mark within ``max_chars``: the last space before it."""
    if is_char_lang(lang):
        return max_chars
    space = text.rfind(" ", 0, max_chars + 1)
    return space + 1 if space > 0 else max_chars
