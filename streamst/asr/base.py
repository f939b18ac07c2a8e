"""The recogniser interface the streaming layer talks to (a new ASR model is one new file).

A *recogniser* is a loaded, shared, stateless model that encodes and decodes whole windows of
feature frames in a batch. :class:`~streamst.asr.streaming.StreamingRecognizer` (per session)
and the server's batching worker depend only on :class:`Recognizer`, never on SenseVoice.
Tokens are SentencePiece-style pieces ("▁" starts a word) with frame spans of 60 ms frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

_TAG = re.compile(r"<\|[^|]*\|>")


@dataclass(frozen=True)
class CtcToken:
    """A greedy-CTC token; frames are speech-frame indices within the window (60 ms each)."""

    id: int
    piece: str  # SentencePiece piece, "▁" marks a word start
    start_frame: int
    end_frame: int  # exclusive


@dataclass(frozen=True)
class Recognition:
    tokens: tuple[CtcToken, ...]
    language: str  # detected from the language tag, or the requested language
    hidden: torch.Tensor  # (T, D) encoder states of the speech frames (queries dropped)


def pieces_to_text(pieces: list[str]) -> str:
    """Join SentencePiece pieces: "▁" starts a word; CJK pieces join without spaces."""
    text = "".join(pieces).replace("▁", " ")
    text = _TAG.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


class Recognizer(Protocol):
    """A loaded ASR model shared by sessions (thread-safe for inference)."""

    cmvn: tuple[np.ndarray, np.ndarray]
    """(shift, scale) applied to LFR frames before :meth:`recognize` (from ``am.mvn``)."""

    def recognize(self, windows: list[np.ndarray], language: str = "auto") -> list[Recognition]:
        """Encode and decode a batch of windows, each ``(T_i, 560)`` float32 LFR+CMVN frames;
        ``language`` is a code or ``"auto"`` (detect). One :class:`Recognition` per window."""
        ...
