"""Latency of simultaneous translation, as SimulEval 1.1.4 computes it for speech input.

Notation (all times in milliseconds of *source audio*):

* ``delays`` = d_1..d_n: source audio received when target unit i was emitted,
  one entry per emitted unit (SimulEval ``delays``);
* ``source_length`` = |X|: source duration;
* ``reference_length`` = |Y*|: reference length in units, or ``None`` without a reference
  (then the hypothesis length n is used, as SimulEval does with ``reference = None``).

Each metric is a function ``fn(delays, source_length, reference_length) -> float`` for
one utterance, registered by its SimulEval name in :data:`LATENCY_METRICS`. A corpus score
is the plain mean over utterances (:func:`corpus_latency`); utterances without any output
are skipped, as in SimulEval (which logs "has no delay information. Skipped").

Computation-aware variants (``AL_CA`` ...) are the same functions applied to SimulEval's
``elapsed`` instead of ``delays``: elapsed_i = d_i + wall-clock processing time spent up to
unit i (see :func:`computation_aware_delays`).

Edge cases follow SimulEval exactly: AL/LAAL return d_1 when d_1 > |X| (all output after
the source ended), tau stops at the first d_i >= |X| (so a delay equal to |X| counts),
AP divides by the *reference* length, DAL always uses the hypothesis length. Where
SimulEval would crash (|X| = 0, a reference of length 0 in ``char`` units, every utterance
empty) we raise :class:`ValueError` or return ``None`` instead.

Also here: :func:`flicker` (erasure of shown text) and :func:`retractions` (of committed
text), which SimulEval does not have.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from streamst.text import split_units

LatencyUnit = Literal["word", "char"]
LatencyFn = Callable[[Sequence[float], float, "int | None"], float]


def reference_length(reference: str, unit: LatencyUnit) -> int:
    """Reference length in latency units, counted exactly as SimulEval's ``LogInstance``.

    ``word``: ``len(reference.split(" "))`` -- a split on single spaces, so an empty
    reference counts 1 and a double space adds an empty word. ``char``:
    ``len(reference.strip())`` -- every character, inner spaces included.
    """
    if unit == "word":
        return len(reference.split(" "))
    if unit == "char":
        return len(reference.strip())
    raise ValueError(f"latency unit must be 'word' or 'char', not {unit!r}")


def _target_length(delays: Sequence[float], reference_length: int | None) -> int:
    """|Y|: the reference length when there is a reference, else the hypothesis length."""
    return len(delays) if reference_length is None else reference_length


def _check(delays: Sequence[float], source_length: float) -> None:
    if len(delays) == 0:
        raise ValueError("latency is undefined for an empty hypothesis (no delays)")
    if source_length <= 0:
        raise ValueError(f"source_length must be > 0 ms, got {source_length}")


def _lagging(delays: Sequence[float], source_length: float, target_length: int) -> float:
    """(1/tau) * sum_{i<=tau} (d_i - (i-1)/gamma), gamma = target_length/|X|."""
    if target_length <= 0:
        raise ValueError("target length is 0 (empty reference in char units)")
    gamma = target_length / source_length
    total = 0.0
    tau = 0
    for i_minus_1, d in enumerate(delays):
        total += d - i_minus_1 / gamma
        tau = i_minus_1 + 1
        if d >= source_length:
            break
    return total / tau


def average_lagging(
    delays: Sequence[float], source_length: float, reference_length: int | None = None
) -> float:
    r"""AL (Ma et al. 2019, STACL), SimulEval ``AL``.

    gamma = |Y| / |X|, tau = min{i : d_i >= |X|} (or n if none),
    AL = (1/tau) * sum_{i=1..tau} (d_i - (i-1)/gamma);
    if d_1 > |X|: AL = d_1.
    |Y| = ``reference_length`` when given, else n = len(delays).
    """
    _check(delays, source_length)
    if delays[0] > source_length:
        return delays[0]
    return _lagging(delays, source_length, _target_length(delays, reference_length))


def length_adaptive_average_lagging(
    delays: Sequence[float], source_length: float, reference_length: int | None = None
) -> float:
    r"""LAAL (Papi et al. 2022), SimulEval ``LAAL``.

    As AL with gamma = max(n, |Y|) / |X|, n = len(delays) (hypothesis length),
    |Y| = ``reference_length`` when given, else n. If d_1 > |X|: LAAL = d_1.
    """
    _check(delays, source_length)
    if delays[0] > source_length:
        return delays[0]
    target = max(len(delays), _target_length(delays, reference_length))
    return _lagging(delays, source_length, target)


def differentiable_average_lagging(
    delays: Sequence[float], source_length: float, reference_length: int | None = None
) -> float:
    r"""DAL (Arivazhagan et al. 2019, MILk), SimulEval ``DAL``.

    gamma = n / |X| with n = len(delays) (the reference is *not* used);
    g'_1 = d_1, g'_i = max(d_i, g'_{i-1} + 1/gamma);
    DAL = (1/n) * sum_{i=1..n} (g'_i - (i-1)/gamma).
    """
    del reference_length  # SimulEval's DAL always uses the hypothesis length
    _check(delays, source_length)
    n = len(delays)
    gamma = n / source_length
    total = 0.0
    g_prev = 0.0
    for i_minus_1, d in enumerate(delays):
        g = d if i_minus_1 == 0 else max(d, g_prev + 1 / gamma)
        total += g - i_minus_1 / gamma
        g_prev = g
    return total / n


def average_proportion(
    delays: Sequence[float], source_length: float, reference_length: int | None = None
) -> float:
    r"""AP (Cho & Esipova 2016), SimulEval ``AP``.

    AP = sum_{i=1..n} d_i / (|X| * |Y|), |Y| = ``reference_length`` when given, else n.
    (With a reference of a different length than the hypothesis AP is not bounded by 1.)
    """
    _check(delays, source_length)
    target = _target_length(delays, reference_length)
    if target <= 0:
        raise ValueError("target length is 0 (empty reference in char units)")
    return sum(delays) / (source_length * target)


def start_offset(
    delays: Sequence[float], source_length: float, reference_length: int | None = None
) -> float:
    """StartOffset, SimulEval ``StartOffset``: d_1."""
    del reference_length
    _check(delays, source_length)
    return delays[0]


def end_offset(
    delays: Sequence[float], source_length: float, reference_length: int | None = None
) -> float:
    """EndOffset, SimulEval ``EndOffset`` (text output): d_n - |X|."""
    del reference_length
    _check(delays, source_length)
    return delays[-1] - source_length


LATENCY_METRICS: Mapping[str, LatencyFn] = {
    "AL": average_lagging,
    "LAAL": length_adaptive_average_lagging,
    "DAL": differentiable_average_lagging,
    "AP": average_proportion,
    "StartOffset": start_offset,
    "EndOffset": end_offset,
}
"""SimulEval metric name -> per-utterance function (same order as ``streamst score``)."""

CA_SUFFIX = "_CA"


def computation_aware_delays(
    delays: Sequence[float], processing_ms: Sequence[float]
) -> list[float]:
    """SimulEval ``elapsed``: d_i plus the wall-clock processing time spent up to unit i.

    ``processing_ms`` is cumulative processing time per unit (``TranslationEvent.elapsed_ms``).
    """
    if len(delays) != len(processing_ms):
        raise ValueError(f"{len(delays)} delays but {len(processing_ms)} processing times")
    return [d + p for d, p in zip(delays, processing_ms)]


@dataclass(frozen=True)
class LatencyInput:
    """What latency needs of one utterance.

    ``elapsed`` is SimulEval's (d_i + processing so far), needed only for ``_CA`` metrics.
    """

    delays: Sequence[float]
    source_length: float  # ms
    reference_length: int | None = None  # units; None = no reference
    elapsed: Sequence[float] | None = None


def utterance_latency(
    item: LatencyInput,
    *,
    computation_aware: bool = False,
    metrics: Iterable[str] = tuple(LATENCY_METRICS),
) -> dict[str, float] | None:
    """All ``metrics`` of one utterance, keyed by SimulEval name (``AL`` or ``AL_CA``).

    ``None`` for an utterance without output (SimulEval skips those).
    """
    timestamps = item.elapsed if computation_aware else item.delays
    if timestamps is None:
        raise ValueError("computation-aware latency needs elapsed times")
    if len(timestamps) == 0:
        return None
    suffix = CA_SUFFIX if computation_aware else ""
    return {
        name + suffix: LATENCY_METRICS[name](timestamps, item.source_length, item.reference_length)
        for name in metrics
    }


def corpus_latency(
    items: Sequence[LatencyInput],
    *,
    computation_aware: bool = False,
    metrics: Iterable[str] = tuple(LATENCY_METRICS),
) -> dict[str, float | None]:
    """Mean over utterances of each metric, as SimulEval's latency scorers compute it.

    Utterances without output are skipped; a metric is ``None`` when all of them are
    (SimulEval raises ``StatisticsError`` there). ``statistics.mean`` is used, like SimulEval,
    so results agree to the last bit.
    """
    metrics = tuple(metrics)
    per_utt = [utterance_latency(it, computation_aware=computation_aware, metrics=metrics) for it in items]
    scored = [u for u in per_utt if u is not None]
    suffix = CA_SUFFIX if computation_aware else ""
    return {
        name + suffix: (statistics.mean(u[name + suffix] for u in scored) if scored else None)
        for name in metrics
    }


# ---------------------------------------------------------------------------------------
# Stability of what was shown


def _erased(prev: list[str], cur: list[str]) -> int:
    """Units of ``prev`` not kept as a prefix of ``cur`` (they had to be erased)."""
    keep = 0
    for a, b in zip(prev, cur):
        if a != b:
            break
        keep += 1
    return len(prev) - keep


def flicker(displays: Sequence[str], lang: str) -> int:
    """How many shown units were later changed (erasure, Arivazhagan et al. 2020).

    ``displays`` is the text shown (committed + tentative) after each update, in order.
    Between two consecutive displays, every unit of the earlier one beyond their longest
    common unit prefix was erased or replaced; growth at the end costs nothing.
    Units are those of :func:`streamst.text.split_units` for the target ``lang``.
    """
    units = [split_units(t, lang) for t in displays]
    return sum(_erased(a, b) for a, b in zip(units, units[1:]))


def normalized_flicker(displays: Sequence[str], lang: str) -> float:
    """:func:`flicker` divided by the length of the last display (0.0 when it is empty)."""
    if not displays:
        return 0.0
    final = len(split_units(displays[-1], lang))
    return flicker(displays, lang) / final if final else 0.0


def retractions(committed: Sequence[str], lang: str) -> int:
    """Committed units later taken back: :func:`flicker` over the committed texts only.

    Committed text must only grow, so this is 0 for a correct system; it is measured
    from the emitted events rather than assumed.
    """
    return flicker(committed, lang)
