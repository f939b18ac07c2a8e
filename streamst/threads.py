"""Torch CPU thread settings: one intra-op thread per model call, set once per process.

Why one: streamst runs its models (SenseVoice, Qwen, punctuation) one call at a time per
session, and the server runs one session update per worker thread. With torch's default
(one intra-op thread per core) every small op pays OpenMP fork/join and spin-waits, and
threads of concurrent calls oversubscribe the cores: measured on a shared 2-core box, the
tiny profile's `translate` ran at RTF 12.5 with 2 threads and 3.5 with 1 (same code), and
the issue's real-size ASR at RTF 12.3 vs 1.7. Parallelism comes from sessions (worker
threads) and from batching, not from splitting each small matmul.

numpy's BLAS (OpenBLAS in numpy's wheels; the tiny decoder's output projection runs through
it, :mod:`streamst.mt.head`) gets the same count through ``threadpoolctl``: its default of
one spinning thread per core would oversubscribe the cores the same way.

``STREAMST_TORCH_THREADS`` (or ``--threads`` / ``RuntimeOptions.threads``, which win over it)
overrides the count: one real-size session on an otherwise idle 2-core box runs faster with
``2`` (a Fun-ASR-Nano decode forward, int8: 77 -> 47 ms; ``bench e2e-session --threads 2``);
``0`` leaves torch's own default alone. FunASR's ``AutoModel`` resets
the count on its own calls; :func:`streamst.asr.funasr_load.keep_torch_threads` restores it.
"""

from __future__ import annotations

import os
import threading

ENV = "STREAMST_TORCH_THREADS"
DEFAULT_THREADS = 1

_lock = threading.Lock()
_done = False


def configured_threads(threads: int | None = None) -> int:
    """The intra-op thread count streamst asks for (0: torch's default): ``threads`` when
    given, else ``STREAMST_TORCH_THREADS``, else 1."""
    if threads is not None:
        if threads < 0:
            raise ValueError(f"threads must be an integer >= 0, got {threads!r}")
        return threads
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{ENV} must be an integer >= 0, got {raw!r}") from None
    if n < 0:
        raise ValueError(f"{ENV} must be an integer >= 0, got {raw!r}")
    return n


def pin_torch_threads(device: str = "cpu", threads: int | None = None) -> int:
    """Set torch's intra-op (and, when still possible, inter-op) threads for CPU inference.

    Cheap to call again and process-wide (torch's setting is global); GPU devices are left alone.
    ``threads``: the count (see :func:`configured_threads`). Returns the intra-op thread count in effect.
    """
    import torch

    global _done
    if not device.startswith("cpu"):
        return torch.get_num_threads()
    with _lock:
        n = configured_threads(threads)
        if n:
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)
            _limit_blas(n)
            if not _done:
                try:  # allowed once, before any inter-op parallel work started
                    torch.set_num_interop_threads(n)
                except RuntimeError:
                    pass
        _done = True
        return torch.get_num_threads()


def _limit_blas(n: int) -> None:
    """numpy's BLAS to ``n`` threads (process-wide; cheap to repeat)."""
    import numpy  # noqa: F401 - its BLAS must be loaded for threadpoolctl to find it
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


def blas_threads() -> list[int]:
    """Thread counts of the BLAS libraries loaded in this process (numpy's, and any other)."""
    from threadpoolctl import threadpool_info

    return [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
