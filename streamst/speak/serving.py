"""Spoken output in the server: the engine a server speaks with, its ``/metrics`` series,
and the wire forms of a :class:`~streamst.speak.speaker.SpeechChunk` on each endpoint.

The connection classes call three hooks (``Connection.speak``, ``feed`` through
``on_update``, ``finish_speaking``); everything else about speech lives in this package.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from streamst.errors import ModelNotFoundError, UserError
from streamst.speak.engine import OUTPUT_RATE, Synthesizer, load_synthesizer, parse_engine
from streamst.speak.speaker import SpeechChunk

if TYPE_CHECKING:
    from streamst.loading import Models

log = logging.getLogger(__name__)

DELAY_BUCKETS_MS = (500.0, 1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 10000.0, 20000.0)


def server_synthesizer(models: Models, engine: str | None) -> Synthesizer | None:
    """The engine of a server: ``engine`` (``KIND`` or ``KIND:DIR``, the ``--tts`` option)
    or the profile's ``tts`` role (espeak-ng without one). None, with a warning, when it
    cannot be loaded: sessions then get text only (``speak`` is refused with
    ``speech_unavailable``)."""
    try:
        if engine:
            kind, source = parse_engine(engine)
            return load_synthesizer(kind, source)
        return models.tts
    except (UserError, ModelNotFoundError) as e:
        log.warning("spoken output is off: %s", e)
        return None


class SpeechMetrics:
    """The speech series of ``/metrics`` (registered on the server's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.segments = Counter("streamst_speech_segments", "Spoken segments, by outcome (spoken, skipped).",
                                ["outcome"], registry=registry)
        self.audio_s = Counter("streamst_speech_audio_seconds", "Speech audio sent to clients.", registry=registry)
        self.synth_s = Counter("streamst_speech_synthesis_seconds", "Wall time spent synthesising.",
                               registry=registry)
        self.delay = Histogram("streamst_speech_delay_ms",
                               "Per spoken segment: from the start of the source words it renders to the start "
                               "of its audio (ms), by language.", ["language"], buckets=DELAY_BUCKETS_MS,
                               registry=registry)
        self.lag = Histogram("streamst_speech_lag_ms", "Per spoken segment: from its text's commit to the start "
                             "of its audio (ms; synthesis + waiting behind earlier speech).", ["language"],
                             buckets=DELAY_BUCKETS_MS, registry=registry)

    def chunk(self, chunk: SpeechChunk) -> None:
        if chunk.skipped:
            self.segments.labels(outcome="skipped").inc(chunk.segments)
            return
        self.segments.labels(outcome="spoken").inc(chunk.segments)
        self.audio_s.inc(chunk.duration_ms / 1000)
        self.synth_s.inc(chunk.synth_ms / 1000)
        self.delay.labels(language=chunk.language).observe(chunk.delay_ms)
        self.lag.labels(language=chunk.language).observe(chunk.lag_ms)


def openai_deltas(chunk: SpeechChunk, offset_ms: int = 0) -> list[dict[str, Any]]:
    """The fields of the ``session.output_audio.delta`` events of a chunk (without ``type``
    and ``event_id``): one per piece, with the stream position where it plays
    (``elapsed_ms``; the pipeline began at ``offset_ms``)."""
    return [{"delta": base64.b64encode(raw).decode("ascii"), "sample_rate": OUTPUT_RATE, "channels": 1,
             "format": "pcm16", "elapsed_ms": int(offset_ms + at)} for at, raw in chunk.pieces()]
