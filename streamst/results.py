"""Per-utterance results of a session and the latency figures computed when one closes.

Shared by every streaming path (``simul`` in :mod:`streamst.pipeline`, ``e2e`` in
:mod:`streamst.e2e.path`), so that both are metered by the same code.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamst.metrics.latency import LatencyInput, utterance_latency
from streamst.text import join_units, split_units


@dataclass
class UtteranceResult:
    """Everything measured for one utterance and target language (summaries, `streamst eval`)."""

    utterance: int
    language: str  # target language
    start_ms: int
    end_ms: int
    source: str
    simul: str | None = None  # the simultaneous output (path "simul")
    delays_ms: list[float] = field(default_factory=list)  # stream time at commit, per unit
    elapsed_ms: list[float] = field(default_factory=list)  # delays + processing time (CA)
    cascade: str | None = None
    cascade_delay_ms: float | None = None
    displays: list[str] = field(default_factory=list)  # simul caption as shown after each step
    commits: list[str] = field(default_factory=list)  # committed text after each step
    metrics: dict[str, float] = field(default_factory=dict)
    retention_proxy: float | None = None
    path: str = "simul"  # which streaming path the delays/displays belong to: "simul" | "e2e"
    e2e: str | None = None  # the end-to-end output (path "e2e")

    @property
    def output(self) -> str | None:
        """The streaming output of this result's path."""
        return self.e2e if self.path == "e2e" else self.simul


def utterance_metrics(cur: UtteranceResult) -> dict[str, float]:
    """AL, LAAL and their computation-aware forms for one utterance, delays taken relative to
    the utterance start (SimulEval semantics per utterance); empty when nothing was written."""
    source_ms = max(1.0, float(cur.end_ms - cur.start_ms))
    metrics: dict[str, float] = {}
    if cur.delays_ms:
        item = LatencyInput(
            delays=[max(0.0, d - cur.start_ms) for d in cur.delays_ms], source_length=source_ms,
            elapsed=[max(0.0, d - cur.start_ms) for d in cur.elapsed_ms],
        )
        for ca in (False, True):
            metrics.update(utterance_latency(item, computation_aware=ca, metrics=("AL", "LAAL")) or {})
    return metrics


def path_outputs(results: Iterable[UtteranceResult], language: str, path: str) -> tuple[str, list[float], list[float]]:
    """One path's whole-stream output into ``language``: (text, per-unit delays, per-unit
    elapsed), in stream time, utterances in order. ``path`` is e2e, simul or cascade (the
    cascade's units all carry the delay at which its sentence was translated)."""
    units: list[str] = []
    delays: list[float] = []
    elapsed: list[float] = []
    for r in (r for r in results if r.language == language):
        if path == "cascade" and r.path == "simul" and r.cascade is not None:
            u = split_units(r.cascade, language)
            d = e = [float(r.cascade_delay_ms or r.end_ms)] * len(u)
        elif path != "cascade" and r.path == path and r.output is not None:
            u = split_units(r.output, language)
            d, e = r.delays_ms[: len(u)], r.elapsed_ms[: len(u)]
        else:
            continue
        units, delays, elapsed = units + u, delays + d, elapsed + e
    return join_units(units, language), delays, elapsed


def path_summary(results: Iterable[UtteranceResult], audio_ms: float, languages: Iterable[str],
                 paths: Iterable[str]) -> dict[str, dict[str, dict]]:
    """``{language: {path: {text, AL, LAAL, AL_CA, LAAL_CA, utterances, mean_latency_ms}}}``: each
    path's whole output and latency over the stream (SimulEval semantics: delays in stream time,
    source length = the audio; no reference, so |Y| is the hypothesis length), and the mean of
    its per-utterance figures. The cascade's latency is not simultaneous and is left out."""
    results = list(results)
    out: dict[str, dict[str, dict]] = {}
    for lang in languages:
        per: dict[str, dict] = {}
        for path in paths:
            text, delays, elapsed = path_outputs(results, lang, path)
            entry: dict = {"text": text}
            if path != "cascade":
                if delays:
                    item = LatencyInput(delays=delays, source_length=max(1.0, float(audio_ms)), elapsed=elapsed)
                    for ca in (False, True):
                        entry.update(utterance_latency(item, computation_aware=ca, metrics=("AL", "LAAL")) or {})
                rows = [r.metrics for r in results if r.language == lang and r.path == path]
                keys = sorted({k for row in rows for k in row})
                entry["utterances"] = len(rows)
                entry["mean_latency_ms"] = {k: round(statistics.fmean(row[k] for row in rows if k in row), 1) for k in keys}
            per[path] = entry
        out[lang] = per
    return out


def primary_means(summary: dict[str, dict[str, dict]]) -> dict[str, dict[str, float]]:
    """Per language, the mean per-utterance latency of its first streaming path (simul, else
    e2e) in a :func:`path_summary`: one path's figures, never two paths averaged together."""
    return {lang: next((per[p]["mean_latency_ms"] for p in ("simul", "e2e") if p in per), {})
            for lang, per in summary.items()}
