"""One stream's whole pipeline: up to three paths over the same audio, with exact latency
bookkeeping.

* ``simul``: streaming ASR (SenseVoice CTC) -> stable source text -> simultaneous policy +
  Qwen text decoder (:class:`TextTrack`, below, over :class:`streamst.track.Track`);
* ``cascade``: final ASR -> punctuation -> sentence MT (the offline quality reference);
* ``e2e``: audio chunks -> speech encoder -> adaptor -> decoder under the same policies
  (:mod:`streamst.e2e.path`, its options :class:`streamst.e2e.config.E2EConfig`).

Modes name the paths that run: ``simul``, ``cascade``, ``both`` (simul + cascade), ``e2e``,
``all`` (e2e + simul + cascade).

``TranslationSession`` has the three verbs of a streaming processor: ``insert_audio``,
``process`` and ``finish``, each returning events (:mod:`streamst.events`). It owns every
per-stream state (recogniser, policy states, decoder KV caches) and shares the loaded models
(:class:`streamst.loading.Models`). It is synchronous; the server runs it off the event loop.
Latency bookkeeping is the tracks' (:mod:`streamst.track`), on the session's clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from streamst.asr.streaming import RecognizeFn, StreamingASRConfig, StreamingRecognizer
from streamst.e2e.config import E2EConfig
from streamst.e2e.path import E2EPath
from streamst.events import Event, TranscriptEvent, TranslationEvent
from streamst.languages import LANGUAGES
from streamst.modes import AUTO, AUTO_FALLBACK, MODES, PATHS, Mode, paths_of
from streamst.loading import Models
from streamst.metrics.quality import chrf
from streamst.mt.base import Proposal, TranslationStream
from streamst.mt.budget import final_tokens
from streamst.policy import PolicyConfig
from streamst.policy.config import default_ratio
from streamst.results import UtteranceResult
from streamst.text import is_char_lang, join_units, output_units, split_units
from streamst.track import Track

__all__ = ["MODES", "Mode", "PATHS", "PipelineConfig", "TranslationSession", "UtteranceResult", "paths_of"]

CASCADE_MAX_TOKENS = 256  # one sentence translation of the cascade, at most (less: mt/budget.length_bound)


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
    e2e: E2EConfig = field(default_factory=E2EConfig)  # the e2e path's options (chunk grid = asr.chunk_ms)
    hotwords: tuple[str, ...] = ()  # biasing words in the e2e prompt (ignored by the text path)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.tgt_langs or len(set(self.tgt_langs)) != len(self.tgt_langs):
            raise ValueError("tgt_langs must be a non-empty list of distinct languages")
        if self.src_lang in self.tgt_langs:
            raise ValueError(f"source language {self.src_lang!r} is also a target language")
        if self.e2e.source_text is None:
            object.__setattr__(self, "e2e", replace(self.e2e, source_text=self.mode == "e2e"))
        if self.e2e.max_utterance_ms < 2 * self.asr.chunk_ms:
            raise ValueError("max_utterance_ms must be at least two chunks")
        for tgt in self.tgt_langs:
            if "simul" in self.paths:
                self.policy_for(tgt)  # validates the policy options early
            if "e2e" in self.paths:
                self.e2e_policy_for(tgt)

    def e2e_lean(self) -> "PipelineConfig":
        """This config with the e2e path's opt-in cost levers (:data:`streamst.e2e.config.E2E_LEAN`)."""
        return replace(self, e2e=self.e2e.lean())

    @property
    def paths(self) -> tuple[str, ...]:
        return paths_of(self.mode)

    def policy_for(self, tgt_lang: str, src_lang: str | None = None) -> PolicyConfig:
        """Per-pair policy defaults (``PolicyConfig.for_pair``) plus the explicit overrides;
        ``src_lang`` replaces the configured source (the detected one under ``auto``)."""
        return PolicyConfig.for_pair(src_lang or self.src_lang, tgt_lang, name=self.policy,
                                     **dict(self.policy_overrides))

    def e2e_policy_for(self, tgt_lang: str) -> PolicyConfig:
        """The e2e path's policy: units are audio chunks (:meth:`E2EConfig.policy_for`)."""
        return self.e2e.policy_for(self.src_lang, tgt_lang, self.asr.chunk_ms, self.policy, **dict(self.policy_overrides))

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


def _e2e_options(models: Models, config: PipelineConfig) -> E2EConfig:
    """The e2e path's options; no source transcript from an e2e model that does not transcribe
    (its profile's ``tasks``: e.g. a model trained from random weights on translation only)."""
    spec = getattr(getattr(models, "profile", None), "e2e", None)
    if spec is not None and "transcribe" not in spec.tasks and config.e2e.source_text:
        return replace(config.e2e, source_text=False)
    return config.e2e


class TranslationSession:
    """Per-stream pipeline over shared models: a recogniser with one text track per target
    language (paths simul/cascade) and/or an end-to-end path. Not thread-safe: one caller at
    a time (the server serialises per session)."""

    def __init__(self, models: Models, config: PipelineConfig, *, recognize: RecognizeFn | None = None,
                 mt_lm: Any = None, e2e_lm: Any = None, speakers: Any = None) -> None:
        """``recognize`` / ``mt_lm`` / ``e2e_lm``: what runs this session's ASR windows, its
        simultaneous text decoder's and its e2e decoder's forwards (the server's batchers,
        :class:`~streamst.server.worker.AsrBatcher` and one
        :class:`~streamst.mt.batching.BatchedLM` per decoder); default: the models themselves.
        ``speakers``: a :class:`~streamst.speakers.turns.SpeakerTurns` that puts a ``speaker``
        on the events (None: speakers off)."""
        self.models, self.cfg = models, config
        self.speakers = speakers
        self.mt_lm = mt_lm
        self.compute_ms = 0.0  # processing time spent by this session so far
        self._t0: float | None = None  # start of the step under way
        self.results: deque[UtteranceResult] = deque(maxlen=config.keep_results)
        paths = config.paths
        self.recognizer = (StreamingRecognizer(models.asr, models.new_vad(), config.asr, recognize=recognize)
                           if "simul" in paths or "cascade" in paths else None)
        self.tracks = [TextTrack(self, tgt) for tgt in config.tgt_langs] if self.recognizer is not None else []
        self.e2e = E2EPath(models.e2e, models.new_vad(), _e2e_options(models, config), src_lang=config.src_lang,
                           chunk_ms=config.asr.chunk_ms, policies={t: config.e2e_policy_for(t) for t in config.tgt_langs},
                           hotwords=config.hotwords, clock=self._elapsed_now, results=self.results,
                           lm=e2e_lm) if "e2e" in paths else None

    # -- the three verbs -----------------------------------------------------------------
    def insert_audio(self, samples) -> None:
        t0 = time.perf_counter()
        if self.recognizer is not None:
            self.recognizer.insert_audio(samples)
        if self.e2e is not None:
            self.e2e.insert_audio(samples)
        if self.speakers is not None:
            self.speakers.insert_audio(samples)
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
                    out += track.on_transcript(ev)
        if self.speakers is not None:
            out = self.speakers.label(out)
        self.compute_ms += (time.perf_counter() - t0) * 1e3
        self._t0 = None
        return out

    def _elapsed_now(self) -> float:
        """Processing time of this session so far, including the step under way (ms)."""
        return self.compute_ms + ((time.perf_counter() - self._t0) * 1e3 if self._t0 is not None else 0.0)


class TextProposer:
    """The text path's :class:`~streamst.track.Proposer`: a translation stream over the
    stable transcript (source units joined into text)."""

    def __init__(self, stream: TranslationStream, src_lang: str, continuation_tokens: int) -> None:
        self.stream, self.src, self.continuation_tokens = stream, src_lang, continuation_tokens

    def propose_many(self, sources: Sequence[Sequence[str]], committed: str, *, max_new_tokens: int,
                     follow_first: bool = False) -> list[Proposal]:
        srcs = [join_units(list(units), self.src) for units in sources]
        return self.stream.propose_many(srcs, committed, max_new_tokens=max_new_tokens, follow_first=follow_first)

    def continuations(self, source: Sequence[str], n: int) -> list[list[str]]:
        """The decoder's own guesses of how the source continues (reorder-aware anticipation)."""
        if not source:
            return []
        conts = self.stream.predict_source(join_units(list(source), self.src), n, max_new_tokens=self.continuation_tokens)
        return [u for u in (split_units(c, self.src) for c in conts) if u]

    def reset(self) -> None:
        self.stream.reset()


class TextTrack:
    """Simultaneous (a :class:`~streamst.track.Track` over the stable transcript) and cascaded
    translation of one session into one target language."""

    def __init__(self, session: TranslationSession, tgt_lang: str) -> None:
        self.session, self.tgt, cfg = session, tgt_lang, session.cfg
        self.simul, self.with_cascade = "simul" in cfg.paths, "cascade" in cfg.paths
        self.auto = cfg.src_lang == AUTO
        self.src = AUTO_FALLBACK if self.auto else cfg.src_lang
        self.track = Track("simul", tgt_lang, *self._source(self.src), step_tokens=cfg.max_new_tokens,
                           final_tokens=cfg.max_new_tokens, clock=session._elapsed_now, results=session.results)

    def _source(self, src: str) -> tuple[PolicyConfig, float, TextProposer | None]:
        """Policy, typical ratio and proposer for source language ``src`` (fixed per utterance)."""
        proposer = None
        if self.simul:
            lm, mt = self.session.mt_lm, self.session.models.mt
            stream = mt.open_stream(src, self.tgt, lm=lm) if lm is not None else mt.open_stream(src, self.tgt)
            proposer = TextProposer(stream, src, self.session.cfg.continuation_tokens)
        return self.session.cfg.policy_for(self.tgt, src), default_ratio(src, self.tgt), proposer

    def on_transcript(self, ev: TranscriptEvent) -> list[Event]:
        track = self.track
        if track.current is None or track.current.utterance != ev.utterance:
            track.begin(ev.utterance, ev.start_ms, base=self.session.compute_ms)
        if self.auto and not track.state.source and ev.language in LANGUAGES and ev.language != self.src:
            self.src = ev.language  # src_lang "auto": the recogniser's language ID decides
            track.use(*self._source(ev.language))
        cur = track.current
        assert cur is not None
        cur.source, cur.end_ms = ev.text, ev.end_ms
        out: list[Event] = []
        final = ev.kind == "final"
        if track.proposer is not None and (ev.kind == "stable" or final):
            units = self._source_units(ev.text if final else ev.stable_text, final)
            if final or len(units) != len(track.state.source):
                out += track.step(units, final, ev.audio_ms, ev.audio_ms)
        if final:
            proxy = None
            if self.with_cascade:
                out.append(self._cascade(ev, cur))
                if self.simul and cur.cascade and cur.simul is not None:  # reference-free retention proxy
                    proxy = round(chrf([cur.simul], [cur.cascade]) / 100.0, 4)
            out.append(track.close(ev.end_ms, ev.text, proxy))
        return out

    def _source_units(self, text: str, finished: bool) -> list[str]:
        units = split_units(text, self.src)
        if not finished and units and not (is_char_lang(self.src) and not units[-1].isascii()):
            units = units[:-1]  # a word (or Latin run) at the edge may still grow: hold it back
        source = self.track.state.source
        if units[: len(source)] != source:
            return list(source)  # stable source only grows
        return units

    def _cascade(self, ev: TranscriptEvent, cur: UtteranceResult) -> TranslationEvent:
        text = ev.text.strip()
        translation = ""
        if text:
            models = self.session.models
            punctuated = models.punc.punctuate(text)
            budget = final_tokens(len(split_units(text, self.src)) * self.track.ratio, 0, self.tgt, CASCADE_MAX_TOKENS)
            translation = models.mt.translate(punctuated, self.src, self.tgt, max_new_tokens=budget).strip()
        raw = split_units(translation, self.tgt)
        units = output_units(raw, self.tgt)  # the target's written form (full-width marks: text.py)
        if units != raw:
            translation = join_units(units, self.tgt)
        cur.cascade, cur.cascade_delay_ms = translation, float(ev.audio_ms)
        return self.track.event("cascade", translation, units, ev.audio_ms, ev.audio_ms)
