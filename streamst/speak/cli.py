"""Spoken output for the CLI: ``translate --speak-out FILE.wav`` and ``mic --speak``.

``translate`` speaks the first target language's committed translation after the run, as
a live session would have spoken it (each segment planned at its commit position), and
writes it on the output timeline: the wav is as long as the source plus the speech that
runs past it, silent where nothing is spoken. ``mic`` plays each chunk as it is ready
(sounddevice, imported only then).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamst.errors import UserError
from streamst.events import Event
from streamst.speak.engine import OUTPUT_RATE, Synthesizer, load_synthesizer, parse_engine
from streamst.speak.speaker import mix, render_offline


def add_tts_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tts", default=None, metavar="KIND[:DIR]",
                   help="speech engine: espeak-ng, or kokoro:DIR (default: the profile's tts, else espeak-ng)")


def synthesizer(models: Any, engine: str | None) -> Synthesizer:
    """``--tts`` if given, else the profile's engine (one line if it cannot be loaded)."""
    if engine:
        kind, source = parse_engine(engine)
        return load_synthesizer(kind, source)
    return models.tts


def check_speak_out(path: str | None) -> Path | None:
    """Checked before models load: a ``.wav`` in a folder that exists."""
    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() != ".wav":
        raise UserError(f"--speak-out must name a .wav file, got {path}")
    if not out.parent.resolve().is_dir():
        raise UserError(f"--speak-out: folder {out.parent} does not exist")
    return out


def speak_out(synth: Synthesizer, events: list[Event], language: str, path: str, out: Path) -> dict[str, Any]:
    """Speak ``language``'s committed translation into ``out``; the summary's ``speech`` object."""
    import soundfile as sf

    chunks, meter = render_offline(synth, events, [language], path)
    audio = mix(chunks, language)
    sf.write(str(out), audio, OUTPUT_RATE, subtype="PCM_16")
    return {"language": language, "engine": synth.name, "file": str(out),
            "duration_s": round(audio.size / OUTPUT_RATE, 3), **meter.summary()}


def speech_record(synth: Synthesizer, events: list[Event], language: str, path: str) -> dict[str, Any]:
    """``eval --speak``: one item's spoken output, kept in results.jsonl (a few floats)."""
    chunks, meter = render_offline(synth, events, [language], path)
    return {"delays_ms": [round(d, 1) for d in meter.delays], "lags_ms": [round(x, 1) for x in meter.lags],
            "segments": meter.segments, "skipped": meter.skipped, "spoken_ms": round(meter.spoken_ms, 1),
            "synth_ms": round(meter.synth_ms, 1)}


def speech_report(records: list[dict[str, Any]], engine: str) -> dict[str, Any]:
    """The eval report's ``speech`` object over the items' records."""
    from streamst.speak.speaker import percentiles

    spoken = sum(r["spoken_ms"] for r in records)
    return {"engine": engine, "items": len(records), "segments": sum(r["segments"] for r in records),
            "skipped": sum(r["skipped"] for r in records),
            "delay_ms": percentiles([d for r in records for d in r["delays_ms"]]),
            "lag_ms": percentiles([d for r in records for d in r["lags_ms"]]),
            "synthesis_rtf": round(sum(r["synth_ms"] for r in records) / spoken, 4) if spoken else None}


class SpeechPlayer:
    """Plays ``speech`` messages (native protocol) in order on an output device: PCM16 goes
    into a queue that the PortAudio callback drains (silence when it runs dry). Holds at
    most ``max_s`` of audio: older audio is dropped past it (a listener far behind)."""

    def __init__(self, sounddevice: Any, device: int | None = None, max_s: float = 30.0) -> None:
        import collections
        import threading

        import numpy as np

        self._np = np
        self._queue: collections.deque = collections.deque()
        self._queued = 0
        self._max = int(max_s * OUTPUT_RATE)
        self._lock = threading.Lock()
        self._stream = sounddevice.OutputStream(samplerate=OUTPUT_RATE, channels=1, dtype="float32",
                                                device=device, callback=self._callback)
        self._stream.start()

    def feed(self, message: dict[str, Any]) -> None:
        import base64

        raw = base64.b64decode(message.get("audio") or "")
        if not raw:
            return
        x = self._np.frombuffer(raw, dtype="<i2").astype(self._np.float32) / 32768
        with self._lock:
            self._queue.append(x)
            self._queued += x.size
            while self._queued > self._max and len(self._queue) > 1:
                self._queued -= self._queue.popleft().size

    def _callback(self, out, frames, time_info, status) -> None:  # PortAudio thread
        out.fill(0)
        at = 0
        with self._lock:
            while at < frames and self._queue:
                head = self._queue[0]
                n = min(frames - at, head.size)
                out[at: at + n, 0] = head[:n]
                at += n
                self._queued -= n
                if n == head.size:
                    self._queue.popleft()
                else:
                    self._queue[0] = head[n:]

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
