"""Vocabulary pruning for ``streamst train`` (``--prune-vocab``): train the e2e model's decoder
on the tokens its data uses, save an ordinary full-vocabulary model.

A corpus uses a few hundred or thousand of Qwen's 151,936 tokens, yet the output projection,
its log-softmax and AdamW over the tied embedding cost about half of a tiny model's step. With
pruning the decoder's embedding (tied with ``lm_head``) holds only the *kept* rows: every
token of the prompts and targets. The loss is the full-vocabulary cross-entropy of the model
that is saved, in which every other token's embedding row is zero, hence its logit exactly 0:
``logsumexp`` over the kept logits plus ``log(N_other)`` for the rest (as
:func:`streamst.training.text_mt.pruned_loss`). :meth:`PrunedVocab.expand` scatters the rows
back before saving, so the inference code loads and decodes the model unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F


class PrunedVocab:
    """Kept token ids (``kept[i]`` = full id of pruned id ``i``) and the maps between them."""

    def __init__(self, ids: Iterable[int], full_size: int) -> None:
        kept = sorted(set(int(i) for i in ids))
        if not kept or kept[0] < 0 or kept[-1] >= full_size:
            raise ValueError(f"kept token ids must lie in [0, {full_size})")
        self.full_size = full_size
        self.kept = torch.tensor(kept, dtype=torch.long)
        self._to_pruned = torch.full((full_size,), -1, dtype=torch.long)
        self._to_pruned[self.kept] = torch.arange(len(kept))
        self.n_other = full_size - len(kept)

    def __len__(self) -> int:
        return int(self.kept.numel())

    def to_pruned(self, ids: torch.Tensor, *, ignore: int | None = None) -> torch.Tensor:
        """Full ids -> pruned ids (``ignore`` values pass through unchanged)."""
        keep = ids != ignore if ignore is not None else torch.ones_like(ids, dtype=torch.bool)
        out = ids.clone()
        mapped = self._to_pruned[ids[keep].cpu()].to(ids.device)
        if bool((mapped < 0).any()):
            raise ValueError("a token outside the kept vocabulary")
        out[keep] = mapped
        return out

    def shrink(self, model) -> None:
        """Replace the decoder's tied embedding / output projection of ``model``
        (a ``FunAsrNanoForConditionalGeneration``) by their kept rows, in place."""
        lm = model.model.language_model
        old = lm.embed_tokens.weight
        emb = torch.nn.Embedding(len(self), old.shape[1], device=old.device, dtype=old.dtype)
        with torch.no_grad():
            emb.weight.copy_(old[self.kept.to(old.device)])
        emb.weight.requires_grad_(old.requires_grad)
        lm.embed_tokens = emb
        head = torch.nn.Linear(old.shape[1], len(self), bias=False, device=old.device, dtype=old.dtype)
        head.weight = emb.weight  # tied, as in the saved model
        model.lm_head = head

    def expand(self, model) -> None:
        """The inverse of :meth:`shrink`: full-vocabulary embedding with the trained kept rows
        and zeros elsewhere (those tokens' logits are 0, as the training loss assumed)."""
        lm = model.model.language_model
        small = lm.embed_tokens.weight.detach()
        emb = torch.nn.Embedding(self.full_size, small.shape[1], device=small.device, dtype=small.dtype)
        with torch.no_grad():
            emb.weight.zero_()
            emb.weight[self.kept.to(small.device)] = small
        lm.embed_tokens = emb
        head = torch.nn.Linear(small.shape[1], self.full_size, bias=False, device=small.device, dtype=small.dtype)
        head.weight = emb.weight
        model.lm_head = head

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Full-vocabulary cross-entropy from ``(N, kept)`` logits and pruned ``(N,)`` targets."""
        return full_vocab_cross_entropy(logits, target, self.n_other, reduction)


def full_vocab_cross_entropy(logits: torch.Tensor, target: torch.Tensor, n_other: int,
                             reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the full vocabulary from the ``(N, kept)`` logits of the kept tokens,
    the other ``n_other`` tokens' logits being exactly 0 (zero embedding rows, tied head)."""
    if not n_other:
        return F.cross_entropy(logits, target, reduction=reduction)
    extra = torch.full((logits.shape[0], 1), math.log(n_other), dtype=logits.dtype, device=logits.device)
    lse = torch.logsumexp(torch.cat([logits, extra], dim=1), dim=1)
    loss = lse - logits.gather(1, target[:, None])[:, 0]
    return loss.sum() if reduction == "sum" else loss.mean()
