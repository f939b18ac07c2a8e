"""Voice activity detection and utterance endpointing.

A VAD is fed 16 kHz float32 samples and reports speech segment boundaries as
:class:`VadEvent` in ms of stream time. ``EnergyVad`` is built in (no model: an adaptive
noise floor and hysteresis on 10 ms frame energies); the FSMN-VAD adapter
(``streamst.asr.fsmn_vad``) implements the same protocol with FunASR's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

SAMPLE_RATE = 16000
FRAME = 160  # 10 ms


@dataclass(frozen=True)
class VadEvent:
    """``start``: speech began at ``ms``; ``end``: speech ended at ``ms`` (endpoint)."""

    kind: Literal["start", "end"]
    ms: int


class Vad(Protocol):
    """Streaming VAD. ``accept`` may be called with any number of samples."""

    def accept(self, samples: np.ndarray) -> list[VadEvent]:
        """Feed float32 samples in [-1, 1] at 16 kHz; return boundaries decided so far."""
        ...

    def finish(self) -> list[VadEvent]:
        """End of stream: close an open segment."""
        ...

    def reset(self) -> None: ...


class AlwaysSpeech:
    """A VAD stand-in for benchmarks and tests: the whole stream is one utterance, from the
    first sample; ``finish`` leaves it open (the caller's own finish closes it)."""

    def __init__(self) -> None:
        self._started = False

    def accept(self, samples: np.ndarray) -> list[VadEvent]:
        if self._started:
            return []
        self._started = True
        return [VadEvent("start", 0)]

    def finish(self) -> list[VadEvent]:
        return []

    def reset(self) -> None:
        self._started = False


@dataclass(frozen=True)
class EnergyVadOptions:
    threshold_db: float = 12.0  # speech when frame energy exceeds the noise floor by this
    abs_floor_dbfs: float = -55.0  # never call anything quieter than this speech
    start_ms: int = 60  # consecutive speech needed to open a segment
    end_silence_ms: int = 500  # consecutive silence that closes a segment (endpoint)
    pre_roll_ms: int = 200  # a segment starts this much before the first speech frame
    max_segment_ms: int = 30_000  # force an endpoint in continuous speech


class EnergyVad:
    """Energy VAD with an adaptive noise floor and hysteresis.

    State is a handful of scalars plus < 10 ms of pending samples: constant memory.
    """

    def __init__(self, options: EnergyVadOptions = EnergyVadOptions()) -> None:
        self.opt = options
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames = 0  # 10 ms frames consumed
        self._noise_db = -70.0
        self._in_speech = False
        self._run = 0  # consecutive frames agreeing with the opposite state
        self._seg_start_frame = 0
        self._last_speech_frame = 0

    def accept(self, samples: np.ndarray) -> list[VadEvent]:
        buf = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        n = len(buf) // FRAME
        self._pending = buf[n * FRAME :].copy()
        if n == 0:
            return []
        frames = buf[: n * FRAME].reshape(n, FRAME)
        energy_db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)
        events: list[VadEvent] = []
        o = self.opt
        for e in energy_db:
            speech = e > max(self._noise_db + o.threshold_db, o.abs_floor_dbfs)
            if not speech:  # track the floor on non-speech frames (fast down, slow up)
                rate = 0.5 if e < self._noise_db else 0.02
                self._noise_db += rate * (e - self._noise_db)
            i = self._frames
            self._frames += 1
            if not self._in_speech:
                self._run = self._run + 1 if speech else 0
                if self._run * 10 >= o.start_ms:
                    first = i - self._run + 1
                    start = max(0, first - o.pre_roll_ms // 10)
                    self._in_speech, self._run = True, 0
                    self._seg_start_frame = start
                    self._last_speech_frame = i
                    events.append(VadEvent("start", start * 10))
            else:
                if speech:
                    self._run = 0
                    self._last_speech_frame = i
                else:
                    self._run += 1
                too_long = (i - self._seg_start_frame) * 10 >= o.max_segment_ms
                if self._run * 10 >= o.end_silence_ms or too_long:
                    end = (i + 1) if too_long else self._last_speech_frame + 1 + o.pre_roll_ms // 10
                    events.append(VadEvent("end", min(end, i + 1) * 10))
                    self._in_speech, self._run = False, 0
                    if too_long:  # continuous speech: open the next segment at once
                        self._in_speech = True
                        self._seg_start_frame = i + 1
                        self._last_speech_frame = i
                        events.append(VadEvent("start", (i + 1) * 10))
        return events

    def finish(self) -> list[VadEvent]:
        events = []
        if self._in_speech:
            end_frame = self._frames + (1 if len(self._pending) else 0)
            events.append(VadEvent("end", end_frame * 10))
        self.reset()
        return events
