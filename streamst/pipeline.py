"""One stream's whole pipeline: up to three paths over the same audio, with exact latency
bookkeeping.

* ``simul``: streaming ASR (SenseVoice CTC) -> stable source text -> simultaneous policy +
  Qwen text decoder (``_Track``, below);
* ``cascade``: final ASR -> punctuation -> sentence MT (the offline quality reference);
* ``e2e``: audio chunks -> speech encoder -> adaptor -> decoder under the same policies
  (:mod:`streamst.e2e.path`).

Modes name the paths that run: ``simul``, ``cascade``, ``both`` (simul + cascade), ``e2e``,
``all`` (e2e + simul + cascade).

``TranslationSession`` has the three verbs of a streaming processor: ``insert_audio``,
``process`` and ``finish``, each returning events (:mod:`streamst.events`). It owns every
per-stream state (recogniser, policy states, decoder KV caches) and shares the loaded models
(:class:`streamst.loading.Models`). It is synchronous; the server runs it off the event loop.

Latency bookkeeping: each committed target unit carries ``delay`` = ms of source audio
received when it was committed (SimulEval ``delays``) and ``elapsed`` = delay + the processing
time spent on its utterance so far (SimulEval's computation-aware ``elapsed``, where each
instance starts its own clock; counting from the session start would make every later
utterance's ``_CA`` figures grow by all the compute of the earlier ones).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from streamst.asr.streaming import RecognizeFn, StreamingASRConfig, StreamingRecognizer
from streamst.events import Event, LatencyEvent, TranscriptEvent, TranslationEvent
from streamst.languages import LANGUAGES
from streamst.modes import AUTO, AUTO_FALLBACK, MODES, PATHS, Mode, paths_of
from streamst.loading import Models
from streamst.metrics.quality import chrf
from streamst.mt.budget import final_tokens, tokens_for_units  # perf
from streamst.policy import PolicyConfig, PolicyState, force_prefix, make_policy, step
from streamst.policy.config import default_ratio
from streamst.results import UtteranceResult, utterance_metrics
from streamst.text import is_char_lang, join_units, split_units

__all__ = ["MODES", "Mode", "PATHS", "PipelineConfig", "TranslationSession", "UtteranceResult", "paths_of"]

CASCADE_MAX_TOKENS = 256  # one sentence translation of the cascade, at most (less: mt/budget.length_bound)

# The e2e path's opt-in cost levers (``--e2e-lean``; issue 13): each utterance's final step
# encodes only the frames not frozen yet (no whole-utterance re-encode and re-prefill, for the
# translation and the transcript), 600 ms of encoder left context instead of 1.2 s, and a
# policy lookahead of 1 unit (fewer tokens decoded per chunk step). Outputs differ from the
# offline decode of each utterance, which the default keeps; with them one real-size session
# (Fun-ASR-Nano, int8) keeps up with real time on a 2-core CPU (docs/architecture.md).
E2E_LEAN: dict[str, Any] = {"e2e_final_encoding": "incremental", "e2e_context_frames": 10, "e2e_lookahead": 1}


@dataclass(frozen=True)
class PipelineConfig:
    src_lang: str = "zh"
    tgt_langs: tuple[str, ...] = ("en",)
    mode: Mode = "simul"
    policy: str = "reorder-aware"
    policy_overrides: tuple[tuple[str, Any], ...] = ()  # PolicyConfig fields set explicitly (both paths)
    asr: StreamingASRConfig = field(default_factory=StreamingASRConfig)
    max_new_tokens: int = 48  # per simultaneous text proposal
    continuation_tokens: int = 6  # per predicted source continuation (reorder-aware)
    keep_results: int = 200  # utterance results kept per session (oldest dropped)
    # -- e2e path (chunk grid = asr.chunk_ms) --
    e2e_step_tokens: int = 16  # budget of a proposal while the utterance is open
    e2e_final_tokens: int = 96  # budget once it ended (the rest of the translation)
    max_utterance_ms: int = 20_000  # an utterance this long is closed, the next opened where it stopped
    e2e_encoding: Literal["full", "incremental"] = "incremental"  # per chunk step; the final step: e2e_final_encoding
    e2e_context_frames: int = 20  # incremental encoding: left context of the new frames (1.2 s)
    # the utterance-final step: "full" re-encodes the whole utterance (what offline decoding
    # sees); "incremental" (with incremental chunk steps) encodes only the frames not yet
    # frozen, so the decoders keep every audio K/V and the transcript's stream is prefilled
    # chunk by chunk: the final step's cost no longer grows with the utterance (outputs differ)
    e2e_final_encoding: Literal["full", "incremental"] = "full"
    e2e_lookahead: int | None = None  # the e2e policy's lookahead (units) unless set explicitly; None: the policy's
    e2e_source_text: bool | None = None  # LLM transcript per utterance; None: only in mode e2e
    hotwords: tuple[str, ...] = ()  # biasing words in the e2e prompt (ignored by the text path)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.tgt_langs or len(set(self.tgt_langs)) != len(self.tgt_langs):
            raise ValueError("tgt_langs must be a non-empty list of distinct languages")
        if self.src_lang in self.tgt_langs:
            raise ValueError(f"source language {self.src_lang!r} is also a target language")
        if self.e2e_source_text is None:
            object.__setattr__(self, "e2e_source_text", self.mode == "e2e")
        if self.max_utterance_ms < 2 * self.asr.chunk_ms:
            raise ValueError("max_utterance_ms must be at least two chunks")
        for tgt in self.tgt_langs:
            if "simul" in self.paths:
                self.policy_for(tgt)  # validates the policy options early
            if "e2e" in self.paths:
                self.e2e_policy_for(tgt)

    def e2e_lean(self) -> "PipelineConfig":
        """This config with the e2e path's opt-in cost levers (:data:`E2E_LEAN`)."""
        return replace(self, **E2E_LEAN)

    @property
    def paths(self) -> tuple[str, ...]:
        return paths_of(self.mode)

    def policy_for(self, tgt_lang: str, src_lang: str | None = None) -> PolicyConfig:
        """Per-pair policy defaults (``PolicyConfig.for_pair``) plus the explicit overrides;
        ``src_lang`` replaces the configured source (the detected one under ``auto``)."""
        return PolicyConfig.for_pair(src_lang or self.src_lang, tgt_lang, name=self.policy,
                                     **dict(self.policy_overrides))

    def e2e_policy_for(self, tgt_lang: str) -> PolicyConfig:
        """The e2e path's policy: units are audio chunks (:func:`streamst.e2e.path.e2e_policy_config`)."""
        from streamst.e2e.path import e2e_policy_config

        overrides = dict(self.policy_overrides)
        if self.e2e_lookahead is not None and "lookahead" not in overrides:  # a client's own lookahead wins
            overrides["lookahead"] = self.e2e_lookahead
        return e2e_policy_config(self.src_lang, tgt_lang, self.asr.chunk_ms, self.policy, **overrides)

    @classmethod
    def create(cls, src_lang: str, tgt_langs: str | Sequence[str], mode: Mode = "simul",
               policy: str = "reorder-aware", chunk_ms: int = 600, hotwords: Sequence[str] = (),
               **policy_overrides: Any) -> "PipelineConfig":
        """Build a config; ``policy_overrides`` are :class:`PolicyConfig` fields (k, max_lag...)."""
        tgts = (tgt_langs,) if isinstance(tgt_langs, str) else tuple(tgt_langs)
        asr_lang = src_lang if src_lang in LANGUAGES else "auto"  # a recogniser that does not know it detects
        return cls(src_lang=src_lang, tgt_langs=tgts, mode=mode, policy=policy,
                   policy_overrides=tuple(sorted(policy_overrides.items())), hotwords=tuple(hotwords),
                   asr=StreamingASRConfig(chunk_ms=chunk_ms, language=asr_lang))


class TranslationSession:
    """Per-stream pipeline over shared models: a recogniser with one text track per target
    language (paths simul/cascade) and/or an end-to-end path. Not thread-safe: one caller at
    a time (the server serialises per session)."""

    def __init__(self, models: Models, config: PipelineConfig, *, recognize: RecognizeFn | None = None,
                 mt_lm: Any = None, e2e_lm: Any = None) -> None:
        """``recognize`` / ``mt_lm`` / ``e2e_lm``: what runs this session's ASR windows, its
        simultaneous text decoder's and its e2e decoder's forwards (the server's batchers,
        :class:`~streamst.server.worker.AsrBatcher` and one
        :class:`~streamst.mt.batching.BatchedLM` per decoder); default: the models themselves."""
        self.models, self.cfg = models, config
        self.mt_lm = mt_lm
        self.compute_ms = 0.0  # processing time spent by this session so far
        self._t0: float | None = None  # start of the step under way
        self.results: deque[UtteranceResult] = deque(maxlen=config.keep_results)
        paths = config.paths
        self.recognizer = (StreamingRecognizer(models.asr, models.new_vad(), config.asr, recognize=recognize)
                           if "simul" in paths or "cascade" in paths else None)
        self.tracks = [_Track(self, tgt) for tgt in config.tgt_langs] if self.recognizer is not None else []
        self.e2e = None
        if "e2e" in paths:
            from streamst.e2e.path import E2EPath

            self.e2e = E2EPath(models.e2e, models.new_vad(), config, clock=self._elapsed_now, results=self.results,
                               lm=e2e_lm)

    # -- the three verbs -----------------------------------------------------------------
    def insert_audio(self, samples) -> None:
        t0 = time.perf_counter()
        if self.recognizer is not None:
            self.recognizer.insert_audio(samples)
        if self.e2e is not None:
            self.e2e.insert_audio(samples)
        self.compute_ms += (time.perf_counter() - t0) * 1e3

    def process(self) -> list[Event]:
        return self._timed(False)

    def finish(self) -> list[Event]:
        return self._timed(True)

    @property
    def audio_ms(self) -> int:
        return self.recognizer.audio_ms if self.recognizer is not None else self.e2e.audio_ms

    def _timed(self, final: bool) -> list[Event]:
        t0 = self._t0 = time.perf_counter()
        out: list[Event] = []
        if self.e2e is not None:
            out += self.e2e.finish() if final else self.e2e.process()
        if self.recognizer is not None:
            for ev in (self.recognizer.finish() if final else self.recognizer.process()):
                out.append(ev)
                for track in self.tracks:
                    out += track.on_transcript(ev, t0)
        self.compute_ms += (time.perf_counter() - t0) * 1e3
        self._t0 = None
        return out

    def elapsed_since(self, t0: float) -> float:
        """Processing time of this session so far, including the step begun at ``t0``."""
        return self.compute_ms + (time.perf_counter() - t0) * 1e3

    def _elapsed_now(self) -> float:
        return self.compute_ms + ((time.perf_counter() - self._t0) * 1e3 if self._t0 is not None else 0.0)


class _Track:
    """Simultaneous and cascaded translation of one session into one target language."""

    def __init__(self, session: TranslationSession, tgt_lang: str) -> None:
        self.session, self.tgt = session, tgt_lang
        paths = session.cfg.paths
        self.simul, self.with_cascade = "simul" in paths, "cascade" in paths
        self.auto = session.cfg.src_lang == AUTO
        self.stream = None
        self.src = ""
        self._use_source(AUTO_FALLBACK if self.auto else session.cfg.src_lang)
        self.current: UtteranceResult | None = None
        self.tentative = ""
        self.compute_base = 0.0  # session compute_ms when the current utterance began
        # perf: alternatives only count where they agree with the proposal (reorder-aware guard)
        self._agreement_only = self.policy.agreement_only

    def _use_source(self, src: str) -> None:
        """Policy, state and decoder stream for source language ``src`` (fixed per utterance)."""
        if src == self.src:
            return
        self.src = src
        policy = self.session.cfg.policy_for(self.tgt, src)
        # expected target units per source unit, for the final step's length bound: the pair's
        # typical ratio, or the client's schedule ratio when larger (a low one must not cut text)
        self.ratio = max(policy.ratio, default_ratio(src, self.tgt))
        self.policy = make_policy(policy)
        self.state: PolicyState = self.policy.new_state()
        if self.simul:
            lm = self.session.mt_lm
            mt = self.session.models.mt
            self.stream = mt.open_stream(src, self.tgt, lm=lm) if lm is not None else mt.open_stream(src, self.tgt)

    def on_transcript(self, ev: TranscriptEvent, t0: float) -> list[Event]:
        if self.current is None or self.current.utterance != ev.utterance:
            self.current = UtteranceResult(ev.utterance, self.tgt, ev.start_ms, ev.end_ms, ev.text)
            self.compute_base = self.session.compute_ms
            self.state.reset()
            if self.stream is not None:
                self.stream.reset()
            self.tentative = ""
        if self.auto and not self.state.source and ev.language in LANGUAGES:
            self._use_source(ev.language)  # src_lang "auto": the recogniser's language ID decides
        cur = self.current
        cur.source, cur.end_ms = ev.text, ev.end_ms
        out: list[Event] = []
        final = ev.kind == "final"
        if self.stream is not None and (ev.kind == "stable" or final):
            out += self._simul_step(ev, t0)
        if final:
            if self.with_cascade:
                out.append(self._cascade(ev, t0))
            out.append(self._close(ev))
            self.session.results.append(cur)
            self.current = None
        return out

    def _source_units(self, text: str, finished: bool) -> list[str]:
        units = split_units(text, self.src)
        if not finished and units and not (is_char_lang(self.src) and not units[-1].isascii()):
            units = units[:-1]  # a word (or Latin run) at the edge may still grow: hold it back
        if units[: len(self.state.source)] != self.state.source:
            return list(self.state.source)  # stable source only grows
        return units

    def _translate(self, units: Sequence[str], finished: bool) -> list[str]:
        return self._translate_many([units], finished)[0]

    def _translate_many(self, sources: Sequence[Sequence[str]], finished: bool = False) -> list[list[str]]:
        """Proposals for source prefixes (proposal + alternatives), batched when the stream can."""
        assert self.stream is not None
        committed = join_units(self.state.target, self.tgt)
        srcs = [join_units(list(units), self.src) for units in sources]
        # perf: decode only what the policy may commit on this step (+ lookahead); see docs/policy.md
        budget = None if finished else self.policy.unit_budget(self.state)
        max_new = self.session.cfg.max_new_tokens
        if budget is not None:
            max_new = tokens_for_units(budget, self.tgt, max_new)
        elif finished:  # the rest of the translation, bounded against a runaway decode (mt/budget.py)
            max_new = final_tokens(len(sources[0]) * self.ratio, len(self.state.target), self.tgt, max_new)
        many = getattr(self.stream, "propose_many", None)
        if many is not None and len(srcs) > 1:
            props = many(srcs, committed, max_new_tokens=max_new, follow_first=self._agreement_only)
        else:
            props = [self.stream.propose(src, committed, max_new_tokens=max_new) for src in srcs]
        outs = []
        for prop in props:
            out = split_units(prop.text, self.tgt)
            if not finished and not prop.complete and len(out) > len(self.state.target):
                out = out[:-1]  # cut by max_new_tokens: the last unit may be a partial word
            if budget is not None:
                out = out[: len(self.state.target) + budget]
            outs.append(force_prefix(self.state.target, out))
        return outs

    def _continue(self, units: Sequence[str], n: int) -> list[list[str]]:
        """The decoder's own guesses of how the source continues (reorder-aware anticipation)."""
        assert self.stream is not None
        if not units:
            return []
        src = join_units(list(units), self.src)
        conts = self.stream.predict_source(src, n, max_new_tokens=self.session.cfg.continuation_tokens)
        return [u for u in (split_units(c, self.src) for c in conts) if u]

    def _simul_step(self, ev: TranscriptEvent, t0: float) -> list[Event]:
        finished = ev.kind == "final"
        state, cur = self.state, self.current
        assert cur is not None
        units = self._source_units(ev.stable_text if not finished else ev.text, finished)
        if not finished and len(units) == len(state.source):
            return []
        trace = step(self.policy, state, self._translate, units, finished, self._continue, self._translate_many)
        new = list(trace.new_units)
        delay = float(ev.audio_ms)
        elapsed = delay + self.session.elapsed_since(t0) - self.compute_base
        cur.delays_ms += [delay] * len(new)
        cur.elapsed_ms += [elapsed] * len(new)
        tentative = "" if finished else join_units(state.proposal[len(state.target) :], self.tgt)
        committed = join_units(state.target, self.tgt)
        cur.displays.append(" ".join(x for x in (committed, tentative) if x))
        cur.commits.append(committed)
        if finished:
            cur.simul = committed
        elif not new and tentative == self.tentative:
            return []
        self.tentative = tentative
        return [TranslationEvent(
            utterance=ev.utterance, mode="simul", language=self.tgt, committed=committed,
            new_units=tuple(new), delays_ms=(delay,) * len(new), elapsed_ms=(elapsed,) * len(new),
            tentative=tentative, final=finished, audio_ms=ev.audio_ms,
        )]

    def _cascade(self, ev: TranscriptEvent, t0: float) -> TranslationEvent:
        cur = self.current
        assert cur is not None
        text = ev.text.strip()
        translation = ""
        if text:
            models = self.session.models
            punctuated = models.punc.punctuate(text)
            budget = final_tokens(len(split_units(text, self.src)) * self.ratio, 0, self.tgt, CASCADE_MAX_TOKENS)
            translation = models.mt.translate(punctuated, self.src, self.tgt, max_new_tokens=budget).strip()
        delay = float(ev.audio_ms)
        cur.cascade, cur.cascade_delay_ms = translation, delay
        units = split_units(translation, self.tgt)
        elapsed = delay + self.session.elapsed_since(t0) - self.compute_base
        return TranslationEvent(
            utterance=ev.utterance, mode="cascade", language=self.tgt, committed=translation,
            new_units=tuple(units), delays_ms=(delay,) * len(units), elapsed_ms=(elapsed,) * len(units),
            tentative="", final=True, audio_ms=ev.audio_ms,
        )

    def _close(self, ev: TranscriptEvent) -> LatencyEvent:
        """Per-utterance latency (delays relative to the utterance start) and, when the
        cascade ran too, the reference-free retention proxy chrF(simul, cascade)."""
        cur = self.current
        assert cur is not None
        if self.simul and self.with_cascade and cur.cascade and cur.simul is not None:
            cur.retention_proxy = round(chrf([cur.simul], [cur.cascade]) / 100.0, 4)
        cur.metrics = utterance_metrics(cur)
        return LatencyEvent(utterance=ev.utterance, language=self.tgt, source_ms=max(1.0, float(cur.end_ms - cur.start_ms)),
                            metrics=cur.metrics, retention_proxy=cur.retention_proxy)
