"""Decoder prompts as *segments*: runs of positions fed as input embeddings, one key each.

A prompt is a tuple of segments. Each position has a hashable key; equal key prefixes mean
equal inputs, so their cached K/V can be reused (:mod:`streamst.mt.kv`). Text positions
are token ids (:class:`TokenSegment`); an end-to-end model adds a segment of projected
speech embeddings (:class:`streamst.e2e.funasr_nano.AudioSegment`) with keys that change
whenever the audio embeddings do.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


class PromptSegment(Protocol):
    """A run of prompt positions fed to the decoder as embeddings."""

    @property
    def keys(self) -> tuple[Hashable, ...]:
        """One key per position. Equal key prefixes must mean equal inputs."""
        ...

    def embed(self, embedding: torch.nn.Module, start: int) -> torch.Tensor:
        """Embeddings of positions ``start:``, shape ``(len(keys) - start, hidden)``."""
        ...


@dataclass(frozen=True)
class TokenSegment:
    """Text positions: token ids embedded by the model's input embedding."""

    ids: tuple[int, ...]

    @property
    def keys(self) -> tuple[Hashable, ...]:
        return self.ids

    def embed(self, embedding: torch.nn.Module, start: int) -> torch.Tensor:
        w = embedding.weight
        ids = torch.tensor(self.ids[start:], dtype=torch.long, device=w.device)  # (T,)
        return embedding(ids)  # (T, hidden)


def embed_segments(segments: Sequence[PromptSegment], start: int, embedding: torch.nn.Module) -> torch.Tensor:
    """Input embeddings of prompt positions ``start:`` across segments, ``(T, hidden)``."""
    parts: list[torch.Tensor] = []
    offset = 0
    for seg in segments:
        n = len(seg.keys)
        if offset + n > start and n:
            parts.append(seg.embed(embedding, max(0, start - offset)))
        offset += n
    return torch.cat(parts, dim=0)


def common_prefix(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common prefix of two key sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def encode_text(tokenizer, text: str, *, special: bool) -> list[int]:
    """Token ids of ``text``; with ``special=False`` control-token strings in it are split, so
    no input text can forge ``<|im_end|>`` and the like."""
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=not special)["input_ids"]
