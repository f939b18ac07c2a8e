"""Narrow interfaces between the pipeline and an end-to-end speech -> text model.

A *model* (``SpeechModel``) is loaded once per process and shared by all sessions; it holds
no per-stream state. It turns an utterance's audio into speech embeddings in the decoder's
input space (one encoder + adaptor pass, shared by every task and target language of that
step) and opens *streams*. A ``SpeechStream`` is per session and task (transcribe, or
translate into one language) and owns the KV cache of its prompt's static head; each
``propose`` decodes greedily with the committed target forced. A new end-to-end model is one
new file implementing these protocols (see :mod:`streamst.e2e.funasr_nano`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch

from streamst.mt.base import Proposal

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class SpeechEmbeddings:
    """Projected speech of one utterance prefix: ``embeds`` of shape ``(T, hidden)``, one row
    per 60 ms encoder frame. ``key`` identifies this encoding (utterance and step): a prompt
    built from other embeddings must not reuse its cached K/V. With ``per_position`` the key
    holds for each row on its own (rows never change once made, as in incremental encoding),
    so a longer encoding with the same key extends the shorter one's cached K/V."""

    embeds: torch.Tensor
    key: tuple
    per_position: bool = False


class SpeechStream(Protocol):
    """Per-session simultaneous decoding state for one task and language pair."""

    def propose(self, speech: SpeechEmbeddings, committed: str, *, max_new_tokens: int = 64) -> Proposal:
        """Decode the speech prefix with the target forced to start with ``committed`` (never
        regenerated); ``complete`` is False when the budget cut the continuation."""
        ...

    def reset(self) -> None:
        """Forget per-utterance state (keep only the cached static prompt head)."""
        ...

    def extend(self, speech: SpeechEmbeddings) -> None:
        """Run the prompt up to the end of ``speech`` into the cache, decoding nothing (a later
        ``propose`` on a longer encoding with the same per-position key reuses it)."""
        ...


class SpeechModel(Protocol):
    """A loaded end-to-end model shared by sessions."""

    frame_ms: int  # encoder frame (60 ms for SenseVoice's LFR 7/6)

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Encoder input frames of a 16 kHz float32 utterance, ``(T, feature_dim)``."""
        ...

    def encode(self, features: Sequence[np.ndarray], keys: Sequence[tuple]) -> list[SpeechEmbeddings]:
        """A batch of utterances' frames -> their speech embeddings (one batched encoder pass)."""
        ...

    def open_stream(self, task: Task, src_lang: str, tgt_lang: str, *, hotwords: Sequence[str] = (),
                    lm: Any = None) -> SpeechStream:
        """A new per-session stream. ``lm``: what runs its decoder forwards (default: the
        model's own; the server passes a :class:`~streamst.mt.batching.BatchedLM` of the same
        model, batching sessions)."""
        ...
