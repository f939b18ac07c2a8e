"""Narrow interfaces between the pipeline and a translation model.

A *model* (``Translator``) is loaded once per process and shared by all sessions; it holds
no per-stream state. A *stream* (``TranslationStream``) is opened per session and owns the
per-stream state (e.g. a KV cache of the unchanged prompt prefix), reset per utterance.
A new MT model is one new file implementing these two protocols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Proposal:
    """The decoder's proposed continuation of the committed target for a source prefix.

    ``text`` is the full proposed target (committed prefix + continuation), already
    detokenised so that it never ends in half a UTF-8 character.
    """

    text: str
    continuation: str  # text[len(committed):]
    steps: int  # decoder forward passes spent (prefill counts as 1)
    reused_tokens: int  # prompt tokens served from the KV cache instead of recomputed
    complete: bool = True  # False when cut by max_new_tokens (the last word may be partial)


class TranslationStream(Protocol):
    """Per-session simultaneous decoding state for one language pair."""

    def propose(self, source: str, committed: str, *, max_new_tokens: int = 64) -> Proposal:
        """Translate the source prefix ``source`` with the target forced to start with
        ``committed`` (never regenerated) and return the proposed full target."""
        ...

    def propose_many(self, sources: list[str], committed: str, *, max_new_tokens: int = 64,
                     follow_first: bool = False) -> list[Proposal]:
        """``propose`` for several source prefixes in one batched decode; ``follow_first``: the
        later ones may stop where they first differ from the first."""
        ...

    def predict_source(self, source: str, n: int, *, max_new_tokens: int = 8) -> list[str]:
        """Up to ``n`` likely continuations of the source prefix, by the model's own
        prediction (used by the reorder-aware policy's anticipation)."""
        ...

    def reset(self) -> None:
        """Forget per-utterance state (cached KV of the previous utterance)."""
        ...


class Translator(Protocol):
    """A loaded MT model shared by sessions."""

    def open_stream(self, src_lang: str, tgt_lang: str) -> TranslationStream: ...

    def translate(self, source: str, src_lang: str, tgt_lang: str, *, max_new_tokens: int = 256) -> str:
        """Whole-sentence translation (the cascaded, offline reference path)."""
        ...
