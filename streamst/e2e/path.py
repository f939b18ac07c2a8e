"""The end-to-end path of one session: audio chunks -> speech encoder -> adaptor -> decoder,
simultaneous under the same READ/WRITE policies as the text path.

``E2EPath`` has the three verbs of a streaming processor (``insert_audio``, ``process``,
``finish``). It owns a VAD, the raw audio of the current utterance (bounded by
``max_utterance_ms``: a longer utterance is closed and a new one opened where it stopped) and
a chunk grid anchored at the utterance start: at every ``chunk_ms`` of utterance audio the
utterance so far is encoded once (one ``get_audio_features`` pass shared by every target
language) and each target's :class:`E2ETrack` takes one policy step, its source units being
the chunks read (``c0, c1, ...``). Steps happen at every grid point, whatever the arrival
pattern of the audio, so the output does not depend on load. Delays are the grid point: the
ms of source audio the step read (SimulEval ``delays``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from streamst.asr.vad import Vad
from streamst.e2e.base import SpeechEmbeddings, SpeechModel, SpeechStream
from streamst.events import Event, LatencyEvent, TranscriptEvent, TranslationEvent
from streamst.mt.budget import final_tokens, tokens_for_units
from streamst.policy import PolicyConfig, PolicyState, force_prefix, make_policy, step
from streamst.policy.config import default_ratio
from streamst.results import UtteranceResult, utterance_metrics
from streamst.text import join_units, split_units

if TYPE_CHECKING:
    from streamst.pipeline import PipelineConfig

SR = 16000
# Typical speech rates in source units per second (characters for zh/ja/yue, words otherwise):
# the e2e wait-k schedule writes about ``chunk_s * rate * target-per-source ratio`` units a chunk.
UNITS_PER_SECOND: dict[str, float] = {"zh": 4.0, "yue": 4.5, "ja": 6.0, "ko": 3.0, "en": 2.5}


def e2e_policy_config(src_lang: str, tgt_lang: str, chunk_ms: int, name: str, **overrides) -> PolicyConfig:
    """Policy options over audio chunks: ``k`` chunks before the first write (default 2, i.e.
    1.2 s), ``max_lag`` chunks without a write at most (4), ``ratio`` target units per chunk,
    no predicted source continuations (audio cannot be predicted: the reorder-aware guard is
    agreement with the previous chunk's proposal)."""
    rate = UNITS_PER_SECOND.get(src_lang.split("-")[0], 3.0)
    ratio = round(chunk_ms / 1000 * rate * default_ratio(src_lang, tgt_lang), 3)
    base = dict(name=name, k=2, max_lag=4, ratio=ratio, continuations=0)
    base.update(overrides)
    base["continuations"] = 0
    if base["max_lag"] < base["k"]:
        base["max_lag"] = base["k"]
    return PolicyConfig(**base)


@dataclass
class _Utterance:
    index: int
    start: int  # absolute sample index
    steps: int = 0  # grid points decoded so far (chunk k ends at start + k * chunk)
    frozen: torch.Tensor | None = None  # incremental encoding: embeddings fixed so far, (T, hidden)


class E2EPath:
    """Per-session end-to-end path over a shared :class:`~streamst.e2e.base.SpeechModel`."""

    def __init__(self, model: SpeechModel, vad: Vad, config: PipelineConfig, *,
                 clock: Callable[[], float], results: deque[UtteranceResult], lm: Any = None) -> None:
        """``lm``: what runs the decoder forwards of this session's streams (default: the
        model's own; the server's :class:`~streamst.mt.batching.BatchedLM` batches sessions)."""
        self.model, self.vad, self.cfg = model, vad, config
        self.lm_kw = {"lm": lm} if lm is not None else {}  # open_stream's: only when given
        self.results = results  # the session's, shared with the other paths
        self.chunk = config.asr.chunk_ms * SR // 1000
        self.max_utt = config.max_utterance_ms * SR // 1000
        self.idle_keep = SR  # 1 s of audio kept while no speech (the VAD's pre-roll reaches back 200 ms)
        self._clock = clock  # the session's processing time so far (ms), for elapsed
        self.tracks = [E2ETrack(self, tgt) for tgt in config.tgt_langs]
        src = config.src_lang
        self.source_stream: SpeechStream | None = (
            model.open_stream("transcribe", src, src, hotwords=config.hotwords, **self.lm_kw)
            if config.e2e_source_text else None
        )
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self.received = 0
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # absolute sample index of _buf[0]
        self._pending: list = []  # VAD events not handled yet
        self._utt: _Utterance | None = None
        self._next_index = 0

    @property
    def audio_ms(self) -> int:
        return self.received * 1000 // SR

    @property
    def buffered_samples(self) -> int:
        return int(self._buf.size)

    # -- the three verbs -----------------------------------------------------------------
    def insert_audio(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        self._buf = np.concatenate([self._buf, samples]) if self._buf.size else samples.copy()
        self.received += samples.size
        self._pending.extend(self.vad.accept(samples))

    def process(self) -> list[Event]:
        out: list[Event] = []
        while self._pending:
            ev = self._pending.pop(0)
            at = ev.ms * SR // 1000
            if ev.kind == "start" and self._utt is None:
                self._open(max(at, self._buf_start))
            elif ev.kind == "end" and self._utt is not None:
                out += self._grid(min(at, self.received))
                out += self._close(min(at, self.received))
        out += self._grid(self.received)
        self._trim()
        return out

    def finish(self) -> list[Event]:
        self._pending.extend(self.vad.finish())
        out = self.process()
        if self._utt is not None:
            out += self._close(self.received)
        return out

    # -- internals -----------------------------------------------------------------------
    @property
    def _final_incremental(self) -> bool:
        return self.cfg.e2e_encoding == "incremental" and self.cfg.e2e_final_encoding == "incremental"

    def _open(self, start: int) -> None:
        self._utt = _Utterance(self._next_index, start)
        if self.source_stream is not None:
            self.source_stream.reset()
        for t in self.tracks:
            t.begin(self._utt.index, start * 1000 // SR)

    def _grid(self, until: int) -> list[Event]:
        """One step at every chunk boundary of the open utterance up to ``until``."""
        out: list[Event] = []
        while (utt := self._utt) is not None and utt.start + (utt.steps + 1) * self.chunk <= until:
            point = utt.start + (utt.steps + 1) * self.chunk
            if point - utt.start >= self.max_utt:  # bound the window: close here, go on in a new utterance
                out += self._close(point)
                self._open(point)
                continue
            utt.steps += 1
            speech = self._encode(utt, point)
            for t in self.tracks:
                out += t.step(speech, utt.steps, False, point * 1000 // SR)
            if self.source_stream is not None and self._final_incremental:
                self.source_stream.extend(speech)  # the transcript's audio K/V, chunk by chunk
        return out

    def _close(self, end: int) -> list[Event]:
        utt = self._utt
        assert utt is not None
        self._utt = None
        if end - utt.start < self.chunk // 2 and utt.steps == 0:  # a blip: nothing to translate
            return []
        n = -(-(end - utt.start) // self.chunk)
        speech = self._encode(utt, end, final=True)
        end_ms = end * 1000 // SR
        out: list[Event] = []
        source = ""
        if self.source_stream is not None:
            src = self.cfg.src_lang
            expected = (end - utt.start) / SR * UNITS_PER_SECOND.get(src.split("-")[0], 3.0)  # source units spoken
            budget = final_tokens(expected, 0, src, self.cfg.e2e_final_tokens)
            source = self.source_stream.propose(speech, "", max_new_tokens=budget).text.strip()
            out.append(TranscriptEvent(kind="final", utterance=utt.index, text=source, stable_text=source, tokens=(),
                                       language=self.cfg.src_lang, audio_ms=self.audio_ms, start_ms=utt.start * 1000 // SR,
                                       end_ms=end_ms, path="e2e"))
        for t in self.tracks:
            out += t.step(speech, n, True, end_ms)
            out.append(t.close(end_ms, source))
        self._next_index += 1
        return out

    def _encode(self, utt: _Utterance, end: int, final: bool = False) -> SpeechEmbeddings:
        """Speech embeddings of the utterance up to ``end``.

        ``full`` (and, by default, every utterance's final step): the whole utterance is
        re-encoded, so the final step sees exactly what offline decoding of the utterance sees.
        ``incremental`` (chunk steps; the final step too with ``e2e_final_encoding=incremental``):
        only the new frames are encoded, with ``e2e_context_frames`` of left context; earlier
        embeddings stay frozen, so their keys (and the decoder's K/V for them) survive from
        chunk to chunk and per-chunk cost stays flat as the utterance grows.
        """
        samples = self._buf[utt.start - self._buf_start : end - self._buf_start]
        feats = self.model.features(samples)
        if self.cfg.e2e_encoding == "full" or (final and not self._final_incremental):
            return self.model.encode([feats], [("e2e", utt.index, utt.steps, final)])[0]
        done = 0 if utt.frozen is None else utt.frozen.shape[0]
        # the last LFR frame is right-padded: wait for it, except at the end (no more audio)
        ready = max(done, feats.shape[0] - (0 if final else 1))
        if ready > done:
            lo = max(0, done - self.cfg.e2e_context_frames)
            [window] = self.model.encode([feats[lo:ready]], [("e2e-window",)])
            new = window.embeds[done - lo :]
            utt.frozen = new if utt.frozen is None else torch.cat([utt.frozen, new])
        frozen = utt.frozen if utt.frozen is not None else torch.zeros(0, 1)
        return SpeechEmbeddings(frozen, ("e2e-inc", utt.index), per_position=True)

    def _trim(self) -> None:
        keep_from = self._utt.start if self._utt is not None else self.received - self.idle_keep
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop

    def elapsed(self) -> float:
        """The session's processing time so far, including the step under way (ms)."""
        return self._clock()


class E2ETrack:
    """Simultaneous end-to-end translation of one session into one target language."""

    def __init__(self, path: E2EPath, tgt_lang: str) -> None:
        cfg = path.cfg
        self.path, self.tgt = path, tgt_lang
        policy = cfg.e2e_policy_for(tgt_lang)
        # expected target units per chunk, for the final step's length bound: the pair's typical
        # rate, or the configured schedule's when larger (a low one must not cut text)
        typical = e2e_policy_config(cfg.src_lang, tgt_lang, cfg.asr.chunk_ms, cfg.policy).ratio
        self.ratio = max(policy.ratio, typical)
        self.policy = make_policy(policy)
        self.state: PolicyState = self.policy.new_state()
        self.stream = path.model.open_stream("translate", cfg.src_lang, tgt_lang, hotwords=cfg.hotwords, **path.lm_kw)
        self.current: UtteranceResult | None = None
        self.tentative = ""
        self._speech: SpeechEmbeddings | None = None
        self.compute_base = 0.0

    def begin(self, utterance: int, start_ms: int) -> None:
        self.state.reset()
        self.stream.reset()
        self.tentative = ""
        self.current = UtteranceResult(utterance, self.tgt, start_ms, start_ms, "", path="e2e")
        self.compute_base = self.path.elapsed()  # elapsed counts this utterance's processing only

    def _translate(self, units, finished: bool) -> list[str]:
        assert self._speech is not None
        cfg = self.path.cfg
        committed = join_units(self.state.target, self.tgt)
        units = None if finished else self.policy.unit_budget(self.state)  # what this step may commit (+ lookahead)
        budget = cfg.e2e_final_tokens if finished else cfg.e2e_step_tokens
        if units is not None:
            budget = tokens_for_units(units, self.tgt, budget)
        elif finished:  # the rest of the translation, bounded against a runaway decode (mt/budget.py)
            budget = final_tokens(len(self.state.source) * self.ratio, len(self.state.target), self.tgt, budget)
        prop = self.stream.propose(self._speech, committed, max_new_tokens=budget)
        out = split_units(prop.text, self.tgt)
        if not finished and not prop.complete and len(out) > len(self.state.target):
            out = out[:-1]  # cut by the budget: the last unit may be a partial word
        if units is not None:
            out = out[: len(self.state.target) + units]
        return force_prefix(self.state.target, out)

    def step(self, speech: SpeechEmbeddings, chunks: int, finished: bool, delay_ms: int) -> list[Event]:
        cur, state = self.current, self.state
        assert cur is not None
        units = [f"c{i}" for i in range(max(chunks, len(state.source)))]
        self._speech = speech
        trace = step(self.policy, state, self._translate, units, finished)
        self._speech = None
        new = list(trace.new_units)
        delay = float(delay_ms)
        elapsed = delay + self.path.elapsed() - self.compute_base
        cur.delays_ms += [delay] * len(new)
        cur.elapsed_ms += [elapsed] * len(new)
        cur.end_ms = delay_ms
        tentative = "" if finished else join_units(state.proposal[len(state.target):], self.tgt)
        committed = join_units(state.target, self.tgt)
        cur.displays.append(" ".join(x for x in (committed, tentative) if x))
        cur.commits.append(committed)
        if finished:
            cur.e2e = committed
        elif not new and tentative == self.tentative:
            return []
        self.tentative = tentative
        return [TranslationEvent(
            utterance=cur.utterance, mode="e2e", language=self.tgt, committed=committed, new_units=tuple(new),
            delays_ms=(delay,) * len(new), elapsed_ms=(elapsed,) * len(new), tentative=tentative,
            final=finished, audio_ms=self.path.audio_ms,
        )]

    def close(self, end_ms: int, source: str) -> LatencyEvent:
        cur = self.current
        assert cur is not None
        cur.end_ms, cur.source = end_ms, source
        cur.metrics = utterance_metrics(cur)
        self.path.results.append(cur)
        self.current = None
        return LatencyEvent(utterance=cur.utterance, language=self.tgt, source_ms=max(1.0, float(end_ms - cur.start_ms)),
                            metrics=cur.metrics, mode="e2e")


