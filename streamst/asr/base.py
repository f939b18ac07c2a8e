"""The recogniser interface the streaming layer talks to (a new ASR model is one new file).

A *recogniser* is a loaded, shared, stateless model. It owns its features: its
:meth:`Recognizer.frontend` turns a session's 16 kHz samples into frames incrementally
(``frame_ms`` of audio each), and :meth:`Recognizer.recognize` encodes and decodes whole
windows of those frames in a batch. :class:`~streamst.asr.streaming.StreamingRecognizer`
(per session) and the server's batching worker depend only on these two protocols, never on
SenseVoice or its CMVN / LFR frames. Kinds: ``sensevoice`` (:mod:`streamst.asr.sensevoice`,
CTC tokens with their frame spans) and ``fun-asr-nano`` (:mod:`streamst.asr.nano`, the
end-to-end model's own transcription; spans spread over the window). Tokens are pieces
("▁" starts a word) with frame spans.
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


class Frontend(Protocol):
    """Per-session features of one recogniser: push 16 kHz samples, pull finished frames.
    Frame ``i`` covers stream time ``[i, i + 1) * frame_ms``; memory is bounded."""

    dim: int  # width of a frame

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Feed float32 samples; return the frames finished by them, ``(T_new, dim)``."""
        ...

    def finish(self) -> np.ndarray:
        """End of stream: the last frames."""
        ...

    def reset(self) -> None: ...


class Recognizer(Protocol):
    """A loaded ASR model shared by sessions (thread-safe for inference)."""

    frame_ms: int  # audio per frame of its frontend (and per token-span unit)

    def frontend(self) -> Frontend:
        """A new per-session feature frontend (this recogniser's own features)."""
        ...

    def recognize(self, windows: list[np.ndarray], language: str = "auto") -> list[Recognition]:
        """Encode and decode a batch of windows of frames from :meth:`frontend`; ``language``
        is a code or ``"auto"`` (detect). One :class:`Recognition` per window."""
        ...
