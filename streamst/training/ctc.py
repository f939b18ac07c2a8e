"""Auxiliary CTC on the speech encoder (``streamst train --ctc-weight W``): the encoder learns to
hear the source words while the decoder learns to translate them.

SenseVoice, the encoder Fun-ASR-Nano is built on, is itself trained with a CTC objective; an
encoder trained from random weights on translation pairs alone gets its only signal through the
decoder's attention, which on 8-13 s utterances with long reorders did not find the words in
the audio within a CPU budget (docs/quality.md). With this head the encoder output at each 60 ms
frame is also trained to emit the source transcript's units (characters for zh/ja, words
otherwise, as :func:`streamst.text.split_units` splits them) under CTC, the joint CTC/attention
recipe of speech recognition. The head is training-only: the saved model has no trace of it.

Only whole utterances carry CTC targets (a prefix pair's audio ends mid-word, so its transcript
is unknown); the manifest's ``source`` field is the transcript.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from streamst.text import split_units

BLANK = 0


class CtcUnits:
    """The transcript units of a training set, numbered from 1 (0 is the CTC blank): units of
    :func:`split_units`, or with ``tokenizer`` the decoder's own tokens of the transcript
    (``tokens[i - 1]`` is class ``i``'s token id)."""

    def __init__(self, transcripts: Sequence[tuple[str, str]], tokenizer=None) -> None:
        self.tokenizer = tokenizer
        units = sorted({u for text, lang in transcripts for u in self._split(text, lang)})
        self.index = {u: i + 1 for i, u in enumerate(units)}
        self.tokens: list[int] = [int(u) for u in units] if tokenizer is not None else []

    def _split(self, text: str, lang: str) -> list:
        if self.tokenizer is None:
            return split_units(text, lang)
        from streamst.mt.prompt import encode_text

        return encode_text(self.tokenizer, text, special=False)

    def __len__(self) -> int:
        return len(self.index) + 1  # with the blank

    def encode(self, text: str, lang: str) -> list[int]:
        return [self.index[u] for u in self._split(text, lang) if u in self.index]


class CtcHead(torch.nn.Module):
    """``(B, T, H)`` frames -> ``(B, T, C)`` unit log-probabilities.

    With ``rows`` (a callable giving the ``(C - 1, H)`` decoder embedding rows of the units'
    tokens) the classifier is the decoder's own embedding, tied, plus a learned blank vector and
    scale: CTC on the adaptor output then pulls each frame where a source token is heard
    toward that token's embedding (cosine similarity, learned scale), the input the decoder
    reads when it translates text."""

    def __init__(self, hidden: int, classes: int, rows=None) -> None:
        super().__init__()
        self.rows = rows
        if rows is None:
            self.proj = torch.nn.Linear(hidden, classes)
        else:
            self.blank = torch.nn.Parameter(torch.randn(hidden) * 0.02)
            self.log_scale = torch.nn.Parameter(torch.tensor(2.3))  # cosine logits times e^2.3 = 10

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            return self.proj(frames).float().log_softmax(-1)
        w = F.normalize(torch.cat([self.blank[None], self.rows()], dim=0), dim=-1)  # (C, H)
        cos = F.normalize(frames, dim=-1) @ w.to(frames.dtype).T  # direction only: the decoder's input norm removes scale
        return (self.log_scale.exp() * cos).float().log_softmax(-1)

    def loss(self, encoded: torch.Tensor, lengths: torch.Tensor, targets: Sequence[list[int] | None]) -> tuple[torch.Tensor, int]:
        """Summed CTC loss of the rows that have targets, and the number of their target units.

        ``encoded``: ``(B, T, H)``; ``lengths``: ``(B,)`` valid frames; ``targets``: per row, unit
        ids (>= 1) or None (no CTC for that row). A row whose transcript cannot fit its frames
        contributes 0 (``zero_infinity``)."""
        rows = [i for i, t in enumerate(targets) if t]
        if not rows:
            return encoded.new_zeros(()), 0
        sel = torch.tensor(rows, device=encoded.device)
        logp = self(encoded.index_select(0, sel)).transpose(0, 1)  # (T, B', C)
        flat = torch.tensor([u for i in rows for u in targets[i]], dtype=torch.long)
        tlen = torch.tensor([len(targets[i]) for i in rows], dtype=torch.long)
        loss = F.ctc_loss(logp, flat, lengths.index_select(0, sel).cpu(), tlen, blank=BLANK, reduction="sum",
                          zero_infinity=True)
        return loss, int(tlen.sum())
