"""The simul path over an *oracle transcript*: the source words revealed at espeak's word times.

Training a recogniser too is out of the 2-core budget, so the ``simul`` path here reads the
corpus's own source words, each one the moment espeak finished speaking it
(:func:`streamst.corpus.build.word_times`). Everything after the recogniser is the
pipeline's own code: :class:`OracleTrack` is the pipeline's text track (policy, proposals,
budgets, final-length bound, latency bookkeeping) fed ``stable`` transcript events, one per
word, and a ``final`` one at the end of the audio. The one change: a word at the edge of
the transcript is final when heard (a recogniser's edge word may still grow, so the
pipeline holds it back).

Latency is in ms of source audio, as SimulEval counts it; the computation-aware delays add
the processing time spent on the utterance so far.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamst.events import TranscriptEvent
from streamst.pipeline import PipelineConfig, TextProposer, TextTrack
from streamst.policy.config import PolicyConfig
from streamst.results import UtteranceResult
from streamst.text import join_units, split_units


@dataclass
class _Models:
    mt: Any


@dataclass
class OracleSession:
    """What the pipeline's text track needs of its session (models, config, compute clock)."""

    cfg: PipelineConfig
    models: _Models
    mt_lm: Any = None
    compute_ms: float = 0.0
    results: deque = field(default_factory=lambda: deque(maxlen=4))
    _t0: float | None = None  # start of the step under way

    def _elapsed_now(self) -> float:
        """The track's clock, as :meth:`streamst.pipeline.TranslationSession._elapsed_now`."""
        return self.compute_ms + ((time.perf_counter() - self._t0) * 1e3 if self._t0 is not None else 0.0)


class OracleTrack(TextTrack):
    """The pipeline's text track, reading oracle words (final when heard)."""

    def __init__(self, session: Any, tgt_lang: str, *, final_bound: bool = True) -> None:
        self.final_bound = final_bound
        super().__init__(session, tgt_lang)

    def _source_units(self, text: str, finished: bool) -> list[str]:
        return split_units(text, self.src)

    def _source(self, src: str) -> tuple[PolicyConfig, float, TextProposer | None]:
        policy, ratio, proposer = super()._source(src)
        if not self.final_bound:  # lever: no final-length bound (only max_new_tokens caps the last decode)
            ratio = 1e6
        return policy, ratio, proposer


@dataclass(frozen=True)
class OracleOutput:
    prediction: str
    delays: list[float]
    elapsed: list[float]
    source_ms: float
    steps: int


def run_item(translator, cfg: PipelineConfig, words: Sequence[str], times: Sequence[Sequence[float]],
             total_ms: float, *, final_bound: bool = True) -> OracleOutput:
    """One utterance through the simul path: a ``stable`` event per word at its end time, then
    ``final`` at ``total_ms``."""
    session = OracleSession(cfg, _Models(translator))
    track = OracleTrack(session, cfg.tgt_langs[0], final_bound=final_bound)
    src = cfg.src_lang
    for i in range(len(words) + 1):
        final = i == len(words)
        text = join_units(list(words[:i + 1] if not final else words), src)
        if src == "en":
            text = " ".join(words[:i + 1] if not final else words)
        audio_ms = int(round(total_ms if final else times[i][1]))
        ev = TranscriptEvent(kind="final" if final else "stable", utterance=0, text=text, stable_text=text,
                             tokens=(), language=src, audio_ms=audio_ms, start_ms=0, end_ms=audio_ms)
        t0 = session._t0 = time.perf_counter()
        track.on_transcript(ev)
        session.compute_ms += (time.perf_counter() - t0) * 1e3
        session._t0 = None
    cur: UtteranceResult = session.results[-1]
    return OracleOutput(cur.simul or "", list(cur.delays_ms), list(cur.elapsed_ms), float(total_ms),
                        len(words) + 1)
