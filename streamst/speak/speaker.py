"""One session's spoken output: segments queued per target language, synthesised off the
event loop, scheduled on the output timeline (:mod:`.timeline`) and delivered in order.

:class:`SpeechTrack` is the synchronous core (policy, timeline, meter) that both the
server's :class:`Speaker` (asyncio; synthesis in worker threads) and the CLI's
:func:`render_offline` use. Memory is bounded: a language's queue holds text segments,
merged past ``merge_over`` and skipped past ``max_backlog_ms``; audio leaves at once
through ``on_chunk`` (the server's outbox, bounded in bytes).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamst.events import Event
from streamst.speak.engine import OUTPUT_RATE, Synthesizer, pcm16, to_output
from streamst.speak.segments import Segment, Segmenter
from streamst.speak.timeline import SpeechPolicy, Timeline

PIECE_MS = 500  # longest audio in one message (a segment's audio is sent in pieces: outbox bounds)


@dataclass(frozen=True)
class SpeechChunk:
    """The audio of one segment (or of several merged), placed on the output timeline."""

    segment: Segment  # the first segment it speaks; ``text`` is all of them
    text: str
    audio: np.ndarray = field(repr=False)  # float32 mono at OUTPUT_RATE; empty when skipped
    start_ms: float  # output timeline (source stream ms) where it starts playing
    speed: float  # 1.0 normal; > 1 faster (catching up)
    synth_ms: float  # wall time of synthesis
    segments: int = 1  # segments merged into it
    skipped: bool = False

    @property
    def language(self) -> str:
        return self.segment.language

    @property
    def duration_ms(self) -> float:
        return self.audio.size * 1000.0 / OUTPUT_RATE

    @property
    def delay_ms(self) -> float:
        """From the start of the source words it renders to the start of its audio."""
        return self.start_ms - self.segment.source_ms

    @property
    def lag_ms(self) -> float:
        """From its text's commit to the start of its audio (synthesis + waiting to play)."""
        return self.start_ms - self.segment.commit_ms

    def pcm16(self) -> bytes:
        return pcm16(self.audio)

    def meta(self) -> dict[str, Any]:
        """Everything but the audio (JSON)."""
        seg = self.segment
        return {"language": seg.language, "segment": seg.index, "segments": self.segments,
                "utterance": seg.utterance, "text": self.text, "skipped": self.skipped,
                "start_ms": round(self.start_ms, 1), "duration_ms": round(self.duration_ms, 1),
                "source_ms": seg.source_ms, "commit_ms": seg.commit_ms, "delay_ms": round(self.delay_ms, 1),
                "lag_ms": round(self.lag_ms, 1), "speed": self.speed, "synth_ms": round(self.synth_ms, 1)}

    def pieces(self, max_ms: int = PIECE_MS) -> list[tuple[float, bytes]]:
        """Its PCM16 in pieces of at most ``max_ms`` (what one message carries): (start on
        the output timeline, bytes); none when skipped."""
        raw, step = self.pcm16(), OUTPUT_RATE * max_ms // 1000 * 2
        return [(self.start_ms + at / 2 * 1000 / OUTPUT_RATE, raw[at: at + step]) for at in range(0, len(raw), step)]

    def messages(self) -> list[dict[str, Any]]:
        """The native protocol's ``speech`` messages of this chunk (docs/protocol.md): one per
        piece of at most ``PIECE_MS`` (``part`` of ``parts``); one without audio when skipped."""
        meta = self.meta()
        pieces = self.pieces() or [(self.start_ms, b"")]
        return [{"type": "speech", **meta, "part": k, "parts": len(pieces), "at_ms": round(at, 1),
                 "sample_rate": OUTPUT_RATE, "channels": 1, "format": "pcm16",
                 "audio": base64.b64encode(raw).decode("ascii")} for k, (at, raw) in enumerate(pieces)]


def percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    p50, p95, top = np.percentile(np.asarray(xs, dtype=float), [50, 95, 100], method="nearest")
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "max": round(float(top), 1)}


class SpeechMeter:
    """Speech-output figures of a session: per chunk delay and lag, kept as short lists of
    floats (a few per utterance)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.lags: list[float] = []
        self.spoken_ms = 0.0
        self.synth_ms = 0.0
        self.segments = self.skipped = self.merged = 0
        self.max_speed = 1.0

    def add(self, chunk: SpeechChunk) -> None:
        self.segments += chunk.segments
        if chunk.skipped:
            self.skipped += chunk.segments
            return
        self.merged += chunk.segments - 1
        self.delays.append(chunk.delay_ms)
        self.lags.append(chunk.lag_ms)
        self.spoken_ms += chunk.duration_ms
        self.synth_ms += chunk.synth_ms
        self.max_speed = max(self.max_speed, chunk.speed)

    def summary(self) -> dict[str, Any]:
        return {"segments": self.segments, "skipped": self.skipped, "merged": self.merged,
                "spoken_ms": round(self.spoken_ms, 1), "synth_ms": round(self.synth_ms, 1),
                "synthesis_rtf": round(self.synth_ms / self.spoken_ms, 4) if self.spoken_ms else None,
                "max_speed": self.max_speed, "delay_ms": percentiles(self.delays), "lag_ms": percentiles(self.lags)}


class SpeechTrack:
    """Policy, timelines and meter of one session's speech (synchronous; no threads)."""

    def __init__(self, synth: Synthesizer, policy: SpeechPolicy = SpeechPolicy()) -> None:
        self.synth, self.policy = synth, policy
        self.timelines: dict[str, Timeline] = {}
        self.meter = SpeechMeter()

    def timeline(self, language: str) -> Timeline:
        return self.timelines.setdefault(language, Timeline(self.policy))

    def plan(self, segments: list[Segment], now_ms: float) -> float | None:
        """Speed for these (merged) segments now; None: skip them."""
        return self.timeline(segments[0].language).speed(max(now_ms, segments[-1].commit_ms))

    def render(self, segments: list[Segment], speed: float) -> tuple[np.ndarray, float]:
        """Blocking synthesis at ``speed``: (24 kHz audio, wall ms)."""
        t0 = time.perf_counter()
        text = join_text(segments)
        audio = to_output(self.synth.synthesize(text, segments[0].language, speed=speed), self.synth.sample_rate)
        return audio, (time.perf_counter() - t0) * 1000.0

    def place(self, segments: list[Segment], now_ms: float, audio: np.ndarray | None, speed: float | None,
              synth_ms: float = 0.0) -> SpeechChunk:
        """Put rendered (or skipped: ``audio`` None) segments on their timeline."""
        first = segments[0]
        base = max(now_ms, segments[-1].commit_ms)
        if audio is None or speed is None:
            chunk = SpeechChunk(first, join_text(segments), np.zeros(0, np.float32), base, 1.0, 0.0,
                                len(segments), skipped=True)
        else:
            start = self.timeline(first.language).place(base + synth_ms, audio.size * 1000.0 / OUTPUT_RATE)
            chunk = SpeechChunk(first, join_text(segments), audio, start, speed, synth_ms, len(segments))
        self.meter.add(chunk)
        return chunk


def join_text(segments: list[Segment]) -> str:
    from streamst.text import is_char_lang

    sep = "" if is_char_lang(segments[0].language) else " "
    return sep.join(s.text for s in segments)


def take(queue: deque[Segment], policy: SpeechPolicy) -> list[Segment]:
    """The next segments to synthesise: one, or past ``merge_over`` waiting, as many as fit
    in ``merge_chars`` (merged)."""
    out = [queue.popleft()]
    if len(queue) >= policy.merge_over:
        size = len(out[0].text)
        while queue and size + len(queue[0].text) <= policy.merge_chars:
            size += len(queue[0].text) + 1
            out.append(queue.popleft())
    return out


def render_offline(synth: Synthesizer, events: Iterable[Event], languages: list[str], path: str,
                   policy: SpeechPolicy = SpeechPolicy()) -> tuple[list[SpeechChunk], SpeechMeter]:
    """Speak a whole session's events after the fact, as a live session would have: each
    segment is planned at its commit position (the stream position when it committed)."""
    segmenter, track = Segmenter(languages, path), SpeechTrack(synth, policy)
    chunks = []
    for seg in segmenter.feed(list(events)):
        speed = track.plan([seg], seg.commit_ms)
        audio, ms = track.render([seg], speed) if speed is not None else (None, 0.0)
        chunks.append(track.place([seg], seg.commit_ms, audio, speed, ms))
    return chunks, track.meter


def mix(chunks: list[SpeechChunk], language: str) -> np.ndarray:
    """One language's chunks laid on the output timeline: float32 at OUTPUT_RATE."""
    mine = [c for c in chunks if c.language == language and not c.skipped]
    end = max((int(c.start_ms * OUTPUT_RATE / 1000) + c.audio.size for c in mine), default=0)
    out = np.zeros(end, np.float32)
    for c in mine:
        at = int(c.start_ms * OUTPUT_RATE / 1000)
        out[at: at + c.audio.size] += c.audio
    return out


class Speaker:
    """A session's speech in the server: ``feed`` pipeline events (from the event loop),
    ``run`` as ONE task, ``end`` then await that task to speak what remains. ``clock()`` is the session's stream
    position (ms); ``on_chunk`` gets each chunk in order per language, on the event loop."""

    def __init__(self, synth: Synthesizer, languages: list[str] | tuple[str, ...], path: str, *,
                 clock: Callable[[], float], on_chunk: Callable[[SpeechChunk], None],
                 policy: SpeechPolicy = SpeechPolicy()) -> None:
        self.languages = tuple(languages)
        self.segmenter = Segmenter(self.languages, path)
        self.track = SpeechTrack(synth, policy)
        self.clock, self.on_chunk = clock, on_chunk
        self.queues: dict[str, deque[Segment]] = {lang: deque() for lang in self.languages}
        self._wake = {lang: asyncio.Event() for lang in self.languages}
        self._ended = False

    @property
    def meter(self) -> SpeechMeter:
        return self.track.meter

    def feed(self, events: list[Event]) -> None:
        for seg in self.segmenter.feed(events):
            self.queues[seg.language].append(seg)
            self._wake[seg.language].set()

    def end(self) -> None:
        """No more events: ``run`` returns once everything queued is spoken."""
        self._ended = True
        for wake in self._wake.values():
            wake.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._voice(lang) for lang in self.languages))

    async def _voice(self, language: str) -> None:
        queue, track, wake = self.queues[language], self.track, self._wake[language]
        while True:
            while not queue:
                if self._ended:
                    return
                wake.clear()
                await wake.wait()
            segments = take(queue, self.policy)
            now = self.clock()
            speed = track.plan(segments, now)
            audio, ms = (None, 0.0) if speed is None else await asyncio.to_thread(track.render, segments, speed)
            self.on_chunk(track.place(segments, now, audio, speed, ms))

    @property
    def policy(self) -> SpeechPolicy:
        return self.track.policy
