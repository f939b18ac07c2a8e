"""FunASR FSMN-VAD behind the streaming :class:`~streamst.asr.vad.Vad` protocol.

One :class:`FsmnVadModel` (the loaded ``AutoModel``) is shared by all sessions; each
session's :class:`FsmnVad` owns its FunASR ``cache`` dict, so sessions share no mutable
state. ``AutoModel.generate`` rewrites the ``AutoModel``'s own kwargs on every call (and
``FsmnVADStreaming.init_cache`` writes ``max_end_silence_time`` into the shared model
options), so calls into one model are serialised by a lock (a call takes 5-15 ms per
600 ms of audio on one CPU thread).

FunASR reports segments per call as ``[[beg, -1]]`` (start), ``[[-1, end]]`` (end) or
``[[beg, end]]`` (both), in ms since its cache was created. This adapter feeds whole
``chunk_ms`` steps only (a remainder waits for the next ``accept``), converts the times to
stream time, and guarantees a well-formed sequence: start/end alternate, times never
decrease and never exceed the audio received.

Memory: FunASR trims its sample/score/decibel history itself, but keeps one record per
detected segment in ``cache["stats"].output_data_buf`` for the life of the cache, so a long
session grows without bound (measured: +1 record per segment, forever). The adapter
therefore starts a fresh cache after every endpoint (no segment open) and feeds it the
last 400 ms after the endpoint again first, so speech that resumed right after it keeps
its start look-back. Cost: 400 ms of extra compute per segment; state held stays constant.
Measured against no restart: identical events with the default 800 ms endpoint; with 300
or 500 ms endpoints and 600 ms steps one start came 180 ms later (still before the onset).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streamst.asr.funasr_load import keep_torch_threads, load_auto_model
from streamst.asr.vad import SAMPLE_RATE, VadEvent

log = logging.getLogger(__name__)

__all__ = ["FsmnVad", "FsmnVadModel", "FsmnVadOptions", "held_bytes"]

# Audio fed again to a fresh cache after an endpoint: the 200 ms start window plus the
# 200 ms start look-back of the model config.
REPLAY_MS = 400


@dataclass(frozen=True)
class FsmnVadOptions:
    """Per-session FSMN-VAD settings."""

    chunk_ms: int = 200  # FunASR's streaming step (``chunk_size``); events come per step
    # Endpoint after this much trailing silence (the model config's 800 ms). ``None`` uses
    # FunASR's dynamic schedule instead, which waits up to 2 s early in a segment.
    max_end_silence_ms: int | None = 800
    reset_after_end: bool = True  # fresh FunASR cache after each endpoint (bounded memory)

    def __post_init__(self) -> None:
        # FunASR treats chunk_size >= 15000 as offline input (no start-only/end-only events).
        if not (10 <= self.chunk_ms < 15000 and self.chunk_ms % 10 == 0):
            raise ValueError(f"chunk_ms must be a multiple of 10 in [10, 15000): {self.chunk_ms}")


class FsmnVadModel:
    """A loaded FSMN-VAD ``AutoModel``, shared by sessions; calls are serialised."""

    def __init__(self, auto_model: Any) -> None:
        self.auto_model = auto_model
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, source: str | Path, hint: str, device: str = "cpu", ncpu: int | None = None
    ) -> FsmnVadModel:
        """Load from a hub id / alias (``"fsmn-vad"``) or a local directory.

        ``ncpu``: torch threads during this model's calls (``None``: the process's count;
        1 is fastest for this small model). The caller's count is restored after each call.

        Raises:
            ModelNotFoundError: the directory is missing or the hub id cannot be fetched;
                the one-line message ends with ``hint``.
        """
        am = load_auto_model(
            source, what="VAD model (fsmn-vad)", hint=hint, device=device, ncpu=ncpu
        )
        return cls(am)

    def step(
        self, samples: np.ndarray, cache: dict, is_final: bool, options: FsmnVadOptions
    ) -> list[list[int]]:
        """Run FunASR on ``samples`` with the session's ``cache``; return its segment list."""
        cfg: dict[str, Any] = {"cache": cache, "is_final": is_final, "chunk_size": options.chunk_ms}
        if options.max_end_silence_ms is not None:
            cfg["max_end_silence_time"] = options.max_end_silence_ms
        with self._lock, keep_torch_threads():
            res = self.auto_model.generate(input=samples, **cfg)
        return [list(map(int, seg)) for seg in (res[0]["value"] if res else [])]

    def session(self, options: FsmnVadOptions = FsmnVadOptions()) -> FsmnVad:
        """A new per-session VAD on this model."""
        return FsmnVad(self, options)


class FsmnVad:
    """Streaming VAD for one session (implements :class:`streamst.asr.vad.Vad`)."""

    def __init__(self, model: FsmnVadModel, options: FsmnVadOptions = FsmnVadOptions()) -> None:
        self.model = model
        self.opt = options
        self._step = options.chunk_ms * SAMPLE_RATE // 1000
        self._replay_len = REPLAY_MS * SAMPLE_RATE // 1000
        self.cache: dict = {}  # FunASR state for this session only
        self.resets = 0  # FunASR cache restarts after endpoints, over the session's life
        self.reset()

    def reset(self) -> None:
        """Forget the stream: stream time restarts at 0."""
        self.cache.clear()
        self._pending = np.zeros(0, dtype=np.float32)
        self._fed = 0  # samples handed to FunASR since the stream began
        self._base = 0  # stream sample at which the current FunASR cache started
        self._open = False
        self._last_ms = 0
        self._replay = np.zeros(0, dtype=np.float32)  # fed again after a cache restart
        self._recent = np.zeros(0, dtype=np.float32)  # the last REPLAY_MS fed

    def accept(self, samples: np.ndarray) -> list[VadEvent]:
        """Feed float32 samples in [-1, 1] at 16 kHz; return boundaries decided so far."""
        buf = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32).reshape(-1)])
        n = len(buf) // self._step * self._step
        self._pending = buf[n:].copy()
        if n == 0:
            return []
        return self._run(buf[:n], is_final=False)

    def finish(self) -> list[VadEvent]:
        """End of stream: flush the remainder, close an open segment, reset."""
        events: list[VadEvent] = []
        if len(self._pending):
            events = self._run(self._pending, is_final=True)
            self._pending = np.zeros(0, dtype=np.float32)
        if self._open:  # FunASR closes on is_final; this covers an empty remainder
            events.append(self._event("end", self._fed * 1000 // SAMPLE_RATE))
        self.reset()
        return events

    def held_bytes(self) -> int:
        """Approximate bytes held by this session (FunASR cache + pending samples)."""
        return held_bytes(self.cache) + self._pending.nbytes

    def _run(self, chunk: np.ndarray, is_final: bool) -> list[VadEvent]:
        feed = np.concatenate([self._replay, chunk]) if len(self._replay) else chunk
        self._replay = np.zeros(0, dtype=np.float32)
        segments = self.model.step(feed, self.cache, is_final, self.opt)
        self._fed += len(chunk)
        self._recent = np.concatenate([self._recent, chunk])[-self._replay_len :]
        base_ms = self._base * 1000 // SAMPLE_RATE
        events: list[VadEvent] = []
        for beg, end in segments:
            if beg >= 0:
                if self._open:
                    log.debug("fsmn-vad: start at %d ms inside an open segment ignored", beg)
                else:
                    events.append(self._event("start", base_ms + beg))
            if end >= 0:
                if self._open:
                    events.append(self._event("end", base_ms + end))
                else:
                    log.debug("fsmn-vad: end at %d ms without a start ignored", end)
        if is_final:
            self.cache.clear()
        elif self.opt.reset_after_end and not self._open and any(e >= 0 for _, e in segments):
            # Endpoint reached: drop FunASR's per-segment history. The new cache first
            # re-reads up to REPLAY_MS (never audio before the end just reported), so
            # speech that began there keeps its look-back. FunASR carries a part-step
            # remainder itself, so the replay need not be whole steps.
            self.cache.clear()
            keep = min(len(self._recent), self._fed - self._last_ms * SAMPLE_RATE // 1000)
            self._replay = self._recent[len(self._recent) - max(keep, 0) :].copy()
            self._base = self._fed - len(self._replay)
            self.resets += 1
        return events

    def _event(self, kind: Literal["start", "end"], ms: int) -> VadEvent:
        """Make an event, clamped to [last event, audio received] and tracking open/closed."""
        ms = min(max(ms, self._last_ms), self._fed * 1000 // SAMPLE_RATE)
        self._last_ms = ms
        self._open = kind == "start"
        return VadEvent(kind, ms)


def held_bytes(obj: Any, _seen: set[int] | None = None) -> int:
    """Approximate memory held by a FunASR cache: tensor/array bytes plus 8 per other leaf.

    Walks dicts, lists, tuples and plain objects' attributes (FunASR keeps its state in
    ``Stats``/``WindowDetector`` objects inside the cache dict).
    """
    import torch

    seen = _seen if _seen is not None else set()
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(held_bytes(v, seen) for v in obj.values()) + 8 * len(obj)
    if isinstance(obj, (list, tuple)):
        return sum(held_bytes(v, seen) for v in obj) + 8 * len(obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return held_bytes(vars(obj), seen)
    return 8
