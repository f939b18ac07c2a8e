"""Streaming recognition with a non-streaming recogniser (SenseVoice, Fun-ASR-Nano: any
:class:`~streamst.asr.base.Recognizer`) over a bounded, re-encoded window of the current
utterance, with a stable prefix that never changes. The recogniser owns its features: this
module hands its frontend 16 kHz samples and windows of whatever frames it returns.

Three verbs, as in whisper_streaming: ``insert_audio(samples)`` buffers audio (features are
computed incrementally as it arrives), ``process()`` decodes what is due and returns
:class:`~streamst.events.TranscriptEvent` s, ``finish()`` flushes at end of stream.

How the stable prefix is made (and why it is never contradicted):

* The VAD splits the stream into utterances; silence is never decoded.
* Every ``chunk_ms`` of new speech, the window ``[window_start, now)`` of the current
  utterance is re-encoded. Tokens that start before ``stable_end`` (the end of the
  committed tokens) are dropped; the rest is the *hypothesis*.
* Local agreement (LA-n): the longest common prefix (token ids) of the last ``agreement``
  hypotheses becomes stable and is committed: appended to ``stable``, never revised.
  The final hypothesis of the utterance is ``stable`` plus the final decode after
  ``stable_end``, so no later output can contradict a stable token.
* Bounded cost and memory: when the window exceeds ``trim_ms`` (4 s) it is trimmed to
  ``context_ms`` before ``stable_end`` when the stable point allows; past ``max_window_ms``
  (12 s), if nothing became stable for that long, tokens older than half the window are
  committed by force. Feature frames before the window are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from streamst.asr.base import CtcToken, Recognition, Recognizer, pieces_to_text
from streamst.asr.vad import Vad, VadEvent
from streamst.events import Token, TranscriptEvent

RecognizeFn = Callable[[np.ndarray, str], Recognition]
# The streaming step: chunk_ms is a multiple of it. Both recogniser kinds (SenseVoice and
# Fun-ASR-Nano share the SenseVoice encoder) see one frame per 60 ms; a recogniser with
# another frame length must divide the chunk (StreamingRecognizer checks it).
FRAME_MS = 60


@dataclass(frozen=True)
class StreamingASRConfig:
    chunk_ms: int = 600  # decode after this much new speech (the streaming chunk)
    language: str = "auto"  # zh | en | yue | ja | ko | auto
    agreement: int = 2  # LA-n: stable = common prefix of the last n hypotheses
    max_window_ms: int = 12_000  # cap on the re-encoded window (bounds per-update cost)
    context_ms: int = 1_200  # left context kept before the stable point after a trim
    # perf (issue 13): once the window is longer than this and the stable point allows it,
    # trim it to context_ms before the stable point, so each update re-encodes about
    # context + the unstable tail instead of the whole utterance (max_window_ms disables)
    trim_ms: int = 4_000
    # perf (issue 13): two passes. A chunk update (partial + agreement) re-encodes only the
    # last partial_ms of the window; its first context_ms is left context, so uncommitted
    # tokens older than that are committed by force as the previous update decoded them
    # (the stable point stays within partial_ms - context_ms of the newest audio). The final
    # of an utterance re-encodes the whole window [window_start, end) for what is not
    # committed. None: every update re-encodes the whole window and only max_window_ms
    # forces commits (the pre-issue-13 behaviour).
    partial_ms: int | None = 3_000
    idle_keep_ms: int = 1_000  # feature frames kept while no speech (VAD pre-roll)

    def __post_init__(self) -> None:
        if self.chunk_ms < FRAME_MS or self.chunk_ms % FRAME_MS:
            raise ValueError(f"chunk_ms must be a positive multiple of {FRAME_MS} ms, got {self.chunk_ms}")
        if self.agreement < 1:
            raise ValueError("agreement must be >= 1")
        if self.max_window_ms < 2 * self.chunk_ms or self.context_ms >= self.max_window_ms // 2:
            raise ValueError("need max_window_ms >= 2 * chunk_ms and context_ms < max_window_ms / 2")
        if not self.context_ms < self.trim_ms <= self.max_window_ms:
            raise ValueError("need context_ms < trim_ms <= max_window_ms")
        if self.partial_ms is not None and not self.context_ms < self.partial_ms <= self.max_window_ms:
            raise ValueError("need context_ms < partial_ms <= max_window_ms (or partial_ms=None)")

    @property
    def partial_frames(self) -> int | None:
        """Frames a chunk update re-encodes at most: partial_ms, but never less than the left
        context plus one chunk (a long chunk_ms widens it)."""
        if self.partial_ms is None:
            return None
        return max(self.partial_ms, self.context_ms + self.chunk_ms) // FRAME_MS


@dataclass
class _Utterance:
    """State of the utterance being recognised; absolute LFR frame indices."""

    index: int
    start_frame: int
    window_start: int
    stable: list[CtcToken] = field(default_factory=list)  # committed, absolute frames
    stable_end: int = 0  # frame where the next uncommitted token may start
    hyps: list[list[CtcToken]] = field(default_factory=list)  # last hypotheses after stable_end
    decoded_to: int = 0  # window end of the last decode
    language: str = "unknown"
    emitted: bool = False
    last_text: str = ""


class StreamingRecognizer:
    """Per-session streaming recogniser over a shared :class:`~streamst.asr.base.Recognizer`.

    Memory is bounded by ``max_window_ms`` of feature frames plus O(1) VAD and fbank state,
    however long the stream runs.
    """

    def __init__(self, asr: Recognizer, vad: Vad, config: StreamingASRConfig = StreamingASRConfig(),
                 recognize: RecognizeFn | None = None) -> None:
        self.asr, self.vad, self.cfg = asr, vad, config
        self._recognize: RecognizeFn = recognize or (lambda w, lang: asr.recognize([w], lang)[0])
        self.fms = int(asr.frame_ms)  # ms of audio per frame of the recogniser's frontend
        if config.chunk_ms % self.fms:
            raise ValueError(f"chunk_ms {config.chunk_ms} is not a multiple of the recogniser's {self.fms} ms frames")
        self.features = asr.frontend()  # the recogniser's own per-session feature frontend
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        self.features.reset()
        self.vad.reset()
        self.received = 0  # samples received
        self._frames = np.zeros((0, self.features.dim), dtype=np.float32)
        self._frames_start = 0  # absolute index of self._frames[0]
        self._vad_events: list[VadEvent] = []
        self._utt: _Utterance | None = None
        self._next_utt = 0
        self._finished = False
        self.last_hidden: tuple[int, torch.Tensor] | None = None  # (abs start frame, (T, D))
        self.stats = {"decodes": 0, "max_window_frames": 0, "max_buffer_frames": 0,
                      "partial_decodes": 0, "partial_frames": 0, "final_decodes": 0, "final_frames": 0,
                      "forced_commits": 0}

    @property
    def audio_ms(self) -> int:
        return self.received * 1000 // 16000

    @property
    def buffered_frames(self) -> int:
        """Feature frames held (the bound the memory tests check)."""
        return self._frames.shape[0]

    # -- the three verbs -----------------------------------------------------------------
    def insert_audio(self, samples: np.ndarray) -> None:
        """Buffer 16 kHz float32 samples (features and VAD are computed incrementally)."""
        if self._finished:
            raise RuntimeError("insert_audio() after finish()")
        samples = np.asarray(samples, dtype=np.float32)
        self.received += samples.size
        self._append(self.features.accept(samples))
        self._vad_events.extend(self.vad.accept(samples))

    def process(self) -> list[TranscriptEvent]:
        """Decode what is due; return transcript events (partial, stable, final)."""
        events: list[TranscriptEvent] = []
        while self._vad_events:
            ev = self._vad_events.pop(0)
            if ev.kind == "start" and self._utt is None:
                start = max(ev.ms // self.fms, self._frames_start)
                self._utt = _Utterance(self._next_utt, start, start, stable_end=start, decoded_to=start)
            elif ev.kind == "end" and self._utt is not None:
                events += self._end_utterance(-(-ev.ms // self.fms))
        utt = self._utt
        end = self._frames_start + self._frames.shape[0]
        if utt is not None and (end - utt.decoded_to) * self.fms >= self.cfg.chunk_ms:
            events += self._decode(utt, end, final=False)
        self._trim()
        return events

    def finish(self) -> list[TranscriptEvent]:
        """End of stream: flush features and VAD, finalise an open utterance."""
        self._append(self.features.finish())
        self._vad_events.extend(self.vad.finish())
        events = self.process()
        if self._utt is not None:
            events += self._end_utterance(self._frames_start + self._frames.shape[0])
        self._finished = True
        return events

    # -- internals -----------------------------------------------------------------------
    def _append(self, frames: np.ndarray) -> None:
        if frames.shape[0]:
            self._frames = np.concatenate([self._frames, frames]) if self._frames.size else frames
            self.stats["max_buffer_frames"] = max(self.stats["max_buffer_frames"], self._frames.shape[0])

    def _window(self, start: int, end: int) -> np.ndarray:
        return self._frames[start - self._frames_start : end - self._frames_start]

    def _end_utterance(self, end: int) -> list[TranscriptEvent]:
        utt = self._utt
        assert utt is not None
        end = min(end, self._frames_start + self._frames.shape[0])
        events = self._decode(utt, end, final=True) if end > utt.window_start else []
        if not events and utt.emitted:  # nothing new decoded, but the utterance was shown: close it
            events.append(self._event("final", utt, utt.stable, end))
        self._utt = None
        if utt.emitted:
            self._next_utt += 1
        return events

    def _decode(self, utt: _Utterance, end: int, *, final: bool) -> list[TranscriptEvent]:
        lo, valid = utt.window_start, utt.window_start  # re-encoded from lo; tokens kept from valid
        cfg = self.cfg
        bound = None if cfg.partial_ms is None else max(cfg.partial_ms, cfg.context_ms + cfg.chunk_ms) // self.fms
        ctx = cfg.context_ms // self.fms
        forced = False
        if not final and bound is not None and end - lo > bound:
            # partial pass over the recent partial_ms. Its first context_ms is left context
            # only, so what starts before ``cut`` is decoded for the last time: if it is not
            # stable yet, commit it by force as the last update decoded it (shown already),
            # so the stable point is never more than partial_ms - context_ms behind
            cut = end - bound + ctx
            if utt.stable_end < cut:
                forced = self._force_commit(utt, cut)
            lo = max(lo, min(end - bound, utt.stable_end - ctx))
            if lo > utt.window_start:
                valid = lo + ctx  # tokens in the first context_ms have no left context: dropped
        window = self._window(lo, end)
        if window.shape[0] == 0:
            return []
        rec = self._recognize(window, self.cfg.language)
        kind = "final" if final else "partial"
        self.stats["decodes"] += 1
        self.stats[f"{kind}_decodes"] += 1
        self.stats[f"{kind}_frames"] += window.shape[0]
        self.stats["max_window_frames"] = max(self.stats["max_window_frames"], window.shape[0])
        self.last_hidden = (lo, rec.hidden)
        utt.decoded_to = end
        if rec.language != "unknown":
            utt.language = rec.language
        hyp = [
            CtcToken(t.id, t.piece, t.start_frame + lo, t.end_frame + lo)
            for t in rec.tokens
            if t.start_frame + lo >= max(utt.stable_end, valid)
        ]
        events: list[TranscriptEvent] = []
        if final:
            utt.stable.extend(hyp)
            if utt.stable or utt.emitted:
                utt.emitted = True
                events.append(self._event("final", utt, utt.stable, end))
            return events
        utt.hyps = (utt.hyps + [hyp])[-self.cfg.agreement :]
        grown = forced
        if len(utt.hyps) == self.cfg.agreement:
            n = _common_prefix(utt.hyps)
            if n:
                utt.stable.extend(hyp[:n])
                utt.stable_end = hyp[n - 1].end_frame
                utt.hyps = [h[n:] for h in utt.hyps]
                hyp = hyp[n:]
                grown = True
        if (end - utt.window_start) * self.fms > self.cfg.max_window_ms:
            grown |= self._bound_window(utt, end)  # utt.hyps[-1] is hyp here
            hyp = utt.hyps[-1] if utt.hyps else []
        elif (end - utt.window_start) * self.fms > self.cfg.trim_ms:  # soft trim: no forced commit
            utt.window_start = max(utt.window_start, utt.stable_end - self.cfg.context_ms // self.fms)
        text_tokens = utt.stable + hyp
        text = pieces_to_text([t.piece for t in text_tokens])
        if text != utt.last_text or grown:
            utt.emitted = utt.emitted or bool(text_tokens)
            if utt.emitted:
                events.append(self._event("partial", utt, text_tokens, end))
                if grown:
                    events.append(self._event("stable", utt, text_tokens, end))
        return events

    def _force_commit(self, utt: _Utterance, cut: int) -> bool:
        """Commit the last hypothesis' tokens that start before ``cut``; the stable point
        moves to ``cut`` at least (the partial window's edge, and ``max_window_ms``). Returns
        True when the stable prefix grew."""
        forced = [t for t in (utt.hyps[-1] if utt.hyps else []) if t.start_frame < cut]
        utt.stable.extend(forced)
        utt.stable_end = max(utt.stable_end, cut, forced[-1].end_frame if forced else 0)
        utt.hyps = [[t for t in h if t.start_frame >= utt.stable_end] for h in utt.hyps]
        self.stats["forced_commits"] += bool(forced)
        return bool(forced)

    def _bound_window(self, utt: _Utterance, end: int) -> bool:
        """Trim the window to ``context_ms`` before the stable point, forcing a commit of
        tokens older than half the window if agreement has not moved it. Returns True when
        the stable prefix grew."""
        frames_max = self.cfg.max_window_ms // self.fms
        grown = False
        if utt.stable_end - frames_max // 2 < utt.window_start:
            grown = self._force_commit(utt, end - frames_max // 2)
        utt.window_start = max(utt.window_start, utt.stable_end - self.cfg.context_ms // self.fms)
        return grown

    def _trim(self) -> None:
        """Drop feature frames no decode will need again."""
        end = self._frames_start + self._frames.shape[0]
        keep_from = self._utt.window_start if self._utt else end - self.cfg.idle_keep_ms // self.fms
        drop = keep_from - self._frames_start
        if drop > 0:
            self._frames = self._frames[drop:]
            self._frames_start += drop

    def _event(self, kind: str, utt: _Utterance, tokens: list[CtcToken], end: int) -> TranscriptEvent:
        limit = self.audio_ms
        toks = tuple(
            Token(t.piece.replace("▁", ""), min(t.start_frame * self.fms, limit), min(t.end_frame * self.fms, limit))
            for t in tokens
        )
        text = pieces_to_text([t.piece for t in tokens])
        utt.last_text = text
        stable_text = text if kind == "final" else pieces_to_text([t.piece for t in utt.stable])
        language = utt.language if utt.language != "unknown" else self.cfg.language
        return TranscriptEvent(
            kind=kind, utterance=utt.index, text=text, stable_text=stable_text, tokens=toks,  # type: ignore[arg-type]
            language=language, audio_ms=self.audio_ms, start_ms=utt.start_frame * self.fms,
            end_ms=min(end * self.fms, limit),
        )


def _common_prefix(hyps: list[list[CtcToken]]) -> int:
    n = min(len(h) for h in hyps)
    for i in range(n):
        if any(h[i].id != hyps[0][i].id for h in hyps[1:]):
            return i
    return n
