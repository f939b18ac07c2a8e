"""The end-to-end path of one session: audio chunks -> speech encoder -> adaptor -> decoder,
simultaneous under the same READ/WRITE policies as the text path.

``E2EPath`` has the three verbs of a streaming processor (``insert_audio``, ``process``,
``finish``). It owns a VAD, the raw audio of the current utterance (bounded by
``max_utterance_ms``: a longer utterance is closed and a new one opened where it stopped) and
a chunk grid anchored at the utterance start: at every ``chunk_ms`` of utterance audio the
utterance so far is encoded once (one ``get_audio_features`` pass shared by every target
language) and each target's :class:`~streamst.track.Track` takes one policy step, its source
units being the chunks read (``c0, c1, ...``), its proposer a :class:`SpeechProposer`. Steps
happen at every grid point, whatever the arrival pattern of the audio, so the output does not
depend on load. Delays are the grid point: the ms of source audio the step read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from streamst.asr.vad import Vad
from streamst.e2e.base import SpeechEmbeddings, SpeechModel, SpeechStream
from streamst.e2e.config import UNITS_PER_SECOND, E2EConfig
from streamst.events import Event, TranscriptEvent
from streamst.mt.base import Proposal
from streamst.mt.budget import final_tokens
from streamst.policy import PolicyConfig
from streamst.results import UtteranceResult
from streamst.track import Track

SR = 16000


@dataclass
class _Utterance:
    index: int
    start: int  # absolute sample index
    steps: int = 0  # grid points decoded so far (chunk k ends at start + k * chunk)
    frozen: torch.Tensor | None = None  # incremental encoding: embeddings fixed so far, (T, hidden)


class E2EPath:
    """Per-session end-to-end path over a shared :class:`~streamst.e2e.base.SpeechModel`."""

    def __init__(self, model: SpeechModel, vad: Vad, config: E2EConfig, *, src_lang: str,
                 policies: Mapping[str, PolicyConfig], chunk_ms: int, hotwords: Sequence[str] = (),
                 clock: Callable[[], float], results: MutableSequence[UtteranceResult], lm: Any = None) -> None:
        """``policies``: one per target; ``clock``, ``results``: the session's (:class:`~streamst.track.Track`);
        ``lm``: what runs the streams' decoder forwards (default: the model's own)."""
        self.model, self.vad, self.cfg, self.src = model, vad, config, src_lang
        lm_kw = {"lm": lm} if lm is not None else {}  # open_stream's: only when given
        self.chunk = chunk_ms * SR // 1000
        self.max_utt = config.max_utterance_ms * SR // 1000
        self.idle_keep = SR  # 1 s of audio kept while no speech (the VAD's pre-roll reaches back 200 ms)
        self.proposers = [SpeechProposer(model.open_stream("translate", src_lang, t, hotwords=hotwords, **lm_kw))
                          for t in policies]
        self.streams = [p.stream for p in self.proposers]  # the translation streams, one per target
        self.tracks = [  # typical ratio: target units per chunk of the pair (no client options)
            Track("e2e", t, p, E2EConfig().policy_for(src_lang, t, chunk_ms, p.name).ratio, proposer,
                  step_tokens=config.step_tokens, final_tokens=config.final_tokens, clock=clock, results=results)
            for (t, p), proposer in zip(policies.items(), self.proposers)]
        self.source_stream: SpeechStream | None = (
            model.open_stream("transcribe", src_lang, src_lang, hotwords=hotwords, **lm_kw)
            if config.source_text else None
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
        return self.cfg.encoding == "incremental" and self.cfg.final_encoding == "incremental"

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
            out += self._step(speech, utt.steps, False, point * 1000 // SR)
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
            src = self.src
            expected = (end - utt.start) / SR * UNITS_PER_SECOND.get(src.split("-")[0], 3.0)  # source units spoken
            budget = final_tokens(expected, 0, src, self.cfg.final_tokens)
            source = self.source_stream.propose(speech, "", max_new_tokens=budget).text.strip()
            out.append(TranscriptEvent(kind="final", utterance=utt.index, text=source, stable_text=source, tokens=(),
                                       language=src, audio_ms=self.audio_ms, start_ms=utt.start * 1000 // SR,
                                       end_ms=end_ms, path="e2e"))
        out += self._step(speech, n, True, end_ms, source)
        self._next_index += 1
        return out

    def _step(self, speech: SpeechEmbeddings, chunks: int, finished: bool, delay_ms: int, source: str = "") -> list[Event]:
        """Each target's policy step, its source units the chunks read (``c0, c1, ...``); when
        ``finished``, then its utterance's close (``source``: the transcript)."""
        out: list[Event] = []
        for t, p in zip(self.tracks, self.proposers):
            p.speech = speech
            out += t.step([f"c{i}" for i in range(max(chunks, len(t.state.source)))], finished, delay_ms, self.audio_ms)
            p.speech = None
            if finished:
                out.append(t.close(delay_ms, source))
        return out

    def _encode(self, utt: _Utterance, end: int, final: bool = False) -> SpeechEmbeddings:
        """Speech embeddings of the utterance up to ``end``.

        ``full`` (and, by default, every utterance's final step): the whole utterance is
        re-encoded, so the final step sees exactly what offline decoding of the utterance sees.
        ``incremental`` (chunk steps; the final step too with ``final_encoding=incremental``):
        only the new frames are encoded, with ``context_frames`` of left context; earlier
        embeddings stay frozen, so their keys (and the decoder's K/V for them) survive from
        chunk to chunk and per-chunk cost stays flat as the utterance grows.
        """
        samples = self._buf[utt.start - self._buf_start : end - self._buf_start]
        feats = self.model.features(samples)
        if self.cfg.encoding == "full" or (final and not self._final_incremental):
            return self.model.encode([feats], [("e2e", utt.index, utt.steps, final)])[0]
        done = 0 if utt.frozen is None else utt.frozen.shape[0]
        # the last LFR frame is right-padded: wait for it, except at the end (no more audio)
        ready = max(done, feats.shape[0] - (0 if final else 1))
        if ready > done:
            lo = max(0, done - self.cfg.context_frames)
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


class SpeechProposer:
    """The e2e path's :class:`~streamst.track.Proposer`: a speech stream decoding ``speech``,
    the utterance's audio read so far (set by the path around each step)."""

    def __init__(self, stream: SpeechStream) -> None:
        self.stream = stream
        self.speech: SpeechEmbeddings | None = None

    def propose_many(self, sources: Sequence[Sequence[str]], committed: str, *, max_new_tokens: int,
                     follow_first: bool = False) -> list[Proposal]:
        assert self.speech is not None
        return [self.stream.propose(self.speech, committed, max_new_tokens=max_new_tokens) for _ in sources]

    def continuations(self, source: Sequence[str], n: int) -> list[list[str]]:
        return []  # audio cannot be predicted

    def reset(self) -> None:
        self.stream.reset()
