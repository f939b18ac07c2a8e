"""Inference off the event loop: a batching ASR thread shared by all sessions, and a runner
per session that steps its pipeline in worker threads on a fixed chunk grid.

* :class:`AsrBatcher` is the ``recognize`` function every session's recogniser calls (from
  a worker thread). Requests that arrive within ``max_wait_ms`` of each other, up to
  ``max_batch`` windows, run as ONE batched ``Recognizer.recognize`` call; each caller
  gets its own result. Batch sizes are counted (``stats``).
* :class:`SessionRunner` owns one :class:`~streamst.pipeline.TranslationSession`. Audio is
  queued in a buffer bounded in samples and fed to the session in fixed pieces of
  ``step_ms`` counted from the stream start (the chunk grid), one worker step at a time.
  When inference falls behind, all the complete pieces waiting go into ONE step (one
  executor hop, one batch of events), still piece by piece, so the output does not depend
  on the load or on the client's frame sizes. Nothing is dropped silently: past
  ``max_pending_ms`` the session fails with ``overloaded``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamst.asr.base import Recognition, Recognizer
from streamst.audio import SAMPLE_RATE
from streamst.events import Event
from streamst.pipeline import TranslationSession
from streamst.requests import EMPTY, RequestQueue
from streamst.server.protocol import ProtocolError, Status

log = logging.getLogger(__name__)



@dataclass
class _Request:
    window: np.ndarray  # (T, 560) LFR+CMVN frames
    language: str
    future: Future


class AsrBatcher:
    """One thread that runs every session's ASR decodes, batching concurrent ones."""

    def __init__(self, asr: Recognizer, *, max_batch: int = 8, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.asr, self.max_batch, self.max_wait = asr, max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.batch_sizes: Counter[int] = Counter()  # batch size -> number of batched calls
        self._requests = RequestQueue("ASR batcher")
        self._thread = threading.Thread(target=self._run, name="streamst-asr-batcher", daemon=True)
        self._thread.start()

    def recognize(self, window: np.ndarray, language: str) -> Recognition:
        """Blocking: the ``RecognizeFn`` handed to each session (called from worker threads)."""
        return self._requests.submit(lambda fut: _Request(window, language, fut))

    def close(self) -> None:
        self._requests.close()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._requests.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                req = self._requests.get_before(deadline)
                if req is EMPTY:
                    break
                if req is None:
                    stop = True
                    break
                batch.append(req)
            self._run_batch(batch)
        self._requests.fail_pending()

    def _run_batch(self, batch: list[_Request]) -> None:
        by_lang: dict[str, list[_Request]] = {}
        for req in batch:
            by_lang.setdefault(req.language, []).append(req)
        for lang, reqs in by_lang.items():
            try:
                results = self.asr.recognize([r.window for r in reqs], lang)
            except BaseException as e:  # noqa: BLE001 - handed to every caller, none is lost
                for r in reqs:
                    r.future.set_exception(e)
                continue
            self.batch_sizes[len(reqs)] += 1
            if self.on_batch is not None:
                self.on_batch(len(reqs))
            for r, res in zip(reqs, results):
                r.future.set_result(res)

    @property
    def stats(self) -> dict[str, float]:
        calls = sum(self.batch_sizes.values())
        windows = sum(k * v for k, v in self.batch_sizes.items())
        return {"calls": calls, "windows": windows, "mean_batch": windows / calls if calls else 0.0,
                "max_batch": max(self.batch_sizes, default=0)}


UpdateHook = Callable[[list[Any], int, float], None]  # events, samples processed, compute ms
PostProcess = Callable[[list[Event]], list[Any]]  # runs in the worker thread after each update


class SessionRunner:
    """Steps one session in worker threads, one step at a time, on a fixed chunk grid.

    Audio is cut into pieces of ``step_ms`` counted from the start of the stream, whatever
    the client's frame sizes; each piece is one ``insert_audio`` + ``process()``. A piece
    is processed once it is complete (the tail at ``end``). When inference is behind, every
    complete piece that waits goes into ONE worker step, still piece by piece: the
    session sees the same calls with the same audio whatever the load, so the same audio
    yields the same events. The backlog is bounded: past ``max_pending_ms`` the session
    fails with ``overloaded``.
    """

    def __init__(self, session: TranslationSession, executor: Executor, *, max_pending_ms: int,
                 on_update: UpdateHook, postprocess: PostProcess | None = None, step_ms: int = 60) -> None:
        if step_ms < 10 or step_ms % 10:
            raise ValueError(f"step_ms must be a positive multiple of 10, got {step_ms}")
        self.session, self.executor, self.on_update = session, executor, on_update
        self.postprocess = postprocess
        self.max_pending = max_pending_ms * SAMPLE_RATE // 1000
        self.step = step_ms * SAMPLE_RATE // 1000  # samples per piece of the grid
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._wake = asyncio.Event()
        self._ended = False
        self.busy = False
        self.received = 0  # samples received
        self.processed = 0  # samples through insert_audio + process
        self.coalesced = 0  # samples that arrived during a step and were processed in a later one
        self.updates = 0  # worker steps
        self.pieces = 0  # grid pieces processed (a step holds one or more)
        self.max_lag_ms = 0

    # -- called by the connection (event loop) ----------------------------------------------
    def feed(self, samples: np.ndarray) -> None:
        if self._ended:
            raise ProtocolError("wrong_order", "audio after end")
        if samples.size == 0:
            return
        if self._pending_samples + samples.size > self.max_pending:
            raise ProtocolError("overloaded", f"more than {self.max_pending * 1000 // SAMPLE_RATE} ms of audio are "
                                              "waiting for inference; the server cannot keep up")
        self._pending.append(samples)
        self._pending_samples += samples.size
        self.received += samples.size
        if self.busy:
            self.coalesced += samples.size
        if self._pending_samples >= self.step:
            self._wake.set()

    def end(self) -> None:
        self._ended = True
        self._wake.set()

    def drop_pending(self) -> int:
        """Forget the audio not yet taken for a step (a drained session ends with what it
        processed; the client re-sends the rest elsewhere). Returns the samples dropped."""
        dropped = self._pending_samples
        self._pending, self._pending_samples = [], 0
        self.received -= dropped
        return dropped

    @property
    def lag_ms(self) -> int:
        return (self.received - self.processed) * 1000 // SAMPLE_RATE

    def status(self) -> Status:
        def ms(samples: int) -> int:
            return samples * 1000 // SAMPLE_RATE

        return Status(audio_ms=ms(self.received), processed_ms=ms(self.processed), lag_ms=self.lag_ms,
                      coalesced_ms=ms(self.coalesced), updates=self.updates)

    def _take(self) -> list[np.ndarray]:
        """The complete grid pieces waiting (and the tail after ``end``)."""
        n = self._pending_samples if self._ended else self._pending_samples // self.step * self.step
        if n == 0:
            return []
        audio = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        rest = audio[n:]
        self._pending = [rest] if rest.size else []
        self._pending_samples = rest.size
        return [audio[i : i + self.step] for i in range(0, n, self.step)]

    async def run(self) -> None:
        """Run steps until ``end()`` and the backlog are done, then ``finish()``."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            pieces = self._take()
            if pieces:
                samples = sum(p.size for p in pieces)
                self.busy = True
                try:
                    events, ms = await loop.run_in_executor(self.executor, self._step, pieces)
                finally:
                    self.busy = False
                self.processed += samples
                self.updates += 1
                self.pieces += len(pieces)
                self.on_update(events, samples, ms)
                self.max_lag_ms = max(self.max_lag_ms, self.lag_ms)
                if self._pending_samples >= self.step or (self._ended and self._pending_samples):
                    self._wake.set()
                    continue
            if self._ended and not self._pending_samples:
                events, ms = await loop.run_in_executor(self.executor, self._finish)
                self.on_update(events, 0, ms)
                return

    # -- worker threads -----------------------------------------------------------------------
    def _step(self, pieces: list[np.ndarray]) -> tuple[list[Any], float]:
        t0 = time.perf_counter()
        events: list[Event] = []
        for piece in pieces:
            self.session.insert_audio(piece)
            events += self.session.process()
        return self._post(events), (time.perf_counter() - t0) * 1e3

    def _finish(self) -> tuple[list[Any], float]:
        t0 = time.perf_counter()
        events = self._post(self.session.finish())
        return events, (time.perf_counter() - t0) * 1e3

    def _post(self, events: list[Event]) -> list[Any]:
        return self.postprocess(events) if self.postprocess is not None else list(events)
