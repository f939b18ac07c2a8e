"""The benchmarks' statistics (also ``translate --realtime``'s): one percentile, the load."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def pct(values: Sequence[float], q: float, *, method: str = "linear") -> float:
    """The ``q``-th percentile (0..100) of ``values``, numpy's ``method`` (``"nearest"``: one
    of the values); NaN when there are none."""
    return float(np.percentile(values, q, method=method)) if len(values) else float("nan")  # type: ignore[call-overload]


def load_avg() -> str:
    """The 1, 5 and 15 minute load averages, printed with every figure ("n/a" without them)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
