"""A small decoder's output projection on CPU through numpy's BLAS (issue 13).

``SegmentLM(head="auto")`` keeps a transposed contiguous copy ``(hidden, vocab)`` of a small
output projection (the tiny Qwen3: 64 x 151936, 39 MB) and multiplies the last hidden state
of each row by it. That matrix product is most of a forward's cost on the tiny profile, and
for the row counts a decoder runs (1 to 32: one stream, a batched decode, the server's
cross-session batches) torch's MKL sgemm on this CPU (AMD EPYC, AVX2) is slow beyond one
row; numpy's bundled OpenBLAS does the same product in about half the time from 4 rows on.
Measured, one thread, best of 3 (ms): rows 1: 2.4 / 2.2, 4: 11.3 / 6.4, 8: 14.3 / 6.8,
16: 12.3 / 11.6, 32: 19.8 / 13.9 (torch ``h @ w_t`` / numpy ``np.matmul``).

Same logits up to float rounding (another BLAS sums the 64 products in another order; the
tests check that greedy tokens are unchanged). numpy's BLAS runs with the thread count
streamst gives torch (:mod:`streamst.threads`: one per model call), and releases the GIL
while it runs, so the other sessions' Python goes on meanwhile.
"""

from __future__ import annotations

import numpy as np
import torch


def project_rows(hidden: torch.Tensor, w_t: np.ndarray) -> torch.Tensor:
    """``hidden`` ``(B, hidden)`` (or ``(B, T, hidden)``) float32 CPU times ``w_t``
    ``(hidden, vocab)`` float32: the logits ``(B, vocab)`` (``(B, T, vocab)``) as a torch
    tensor (sharing numpy's result, no copy)."""
    h = np.ascontiguousarray(hidden.detach().numpy(), dtype=np.float32)  # (..., hidden)
    out = np.matmul(h, w_t)  # (..., vocab)
    return torch.from_numpy(out)
