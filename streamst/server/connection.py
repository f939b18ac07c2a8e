"""One websocket connection speaking the native protocol (``/ws``, docs/protocol.md).

A connection has three tasks, as in the websockets examples: the handler coroutine
consumes client messages, :func:`pump` sends from a bounded :class:`Outbox`, and the
session's :class:`~streamst.server.worker.SessionRunner` runs inference in worker threads.
A ticker sends ``status`` and enforces the session-length limit. Every way a connection
ends goes through :meth:`Connection.fail` (error message + close code) or the normal
``end`` path; the ``finally`` of :meth:`Connection.run` releases everything.

Nothing here blocks the event loop: inference runs in the server's executor, sends to a
client that does not read are bounded by the outbox (overflow: ``slow_consumer``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import statistics
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from streamst.audio import StreamResampler, decode_pcm
from streamst.errors import AudioFormatError
from streamst.events import Event, LatencyEvent
from streamst.pipeline import TranslationSession
from streamst.server.protocol import (
    End,
    EndMessage,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    ServerMessage,
    Start,
    parse_text,
    resolved_config,
)
from streamst.server.worker import SessionRunner

if TYPE_CHECKING:
    from streamst.server.app import Server

log = logging.getLogger(__name__)


class Outbox:
    """Bounded queue of outgoing messages. ``put`` refuses past ``limit`` (the client is not
    reading); ``put_last`` always fits and is followed by closing with ``close_code``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[str | tuple[int, str]] = deque()
        self._ready = asyncio.Event()
        self.sealed = False

    def put(self, message: ServerMessage | dict[str, Any]) -> bool:
        if self.sealed:
            return True  # closing: later messages are moot
        if len(self._items) >= self.limit:
            return False
        self._items.append(_encode(message))
        self._ready.set()
        return True

    def put_last(self, message: ServerMessage | dict[str, Any] | None, close_code: int, reason: str) -> None:
        if self.sealed:
            return
        self.sealed = True
        if message is not None:
            self._items.append(_encode(message))
        self._items.append((close_code, reason))
        self._ready.set()

    async def get(self) -> str | tuple[int, str]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


def _encode(message: ServerMessage | dict[str, Any]) -> str:
    if isinstance(message, ServerMessage):
        return message.to_json()
    return json.dumps(message, ensure_ascii=False)


async def pump(ws: ServerConnection, outbox: Outbox) -> None:
    """Send the outbox in order; a ``(code, reason)`` item closes the connection."""
    try:
        while True:
            item = await outbox.get()
            if isinstance(item, tuple):
                await ws.close(*item)
                return
            await ws.send(item)
    except ConnectionClosed:
        return


class Connection(abc.ABC):
    """Base of the native and FunASR connections: outbox, limits, failure path."""

    endpoint = "ws"

    def __init__(self, server: Server, ws: ServerConnection) -> None:
        self.server, self.ws = server, ws
        self.cfg = server.config
        self.id = uuid.uuid4().hex[:12]
        self.outbox = Outbox(self.cfg.send_queue)
        self.runner: SessionRunner | None = None
        self.runner_task: asyncio.Task | None = None
        self.closing = False
        self.opened = time.monotonic()
        self.last_message = time.monotonic()
        self._tasks: list[asyncio.Task] = []
        self._closer: asyncio.Task | None = None  # a close that bypasses the outbox

    # -- failure / limits ---------------------------------------------------------------------
    def fail(self, err: ProtocolError) -> None:
        """Send ``error`` then close with its code (once; later failures are ignored)."""
        if self.closing:
            return
        self.closing = True
        self.server.metrics.error(err.code)
        log.info("session %s: %s (%s)", self.id, err.code, err.message)
        if err.code == "slow_consumer":  # the outbox is full and not draining: close now
            self._closer = asyncio.create_task(self._drop(err.close_code, err.code))
            return
        self.outbox.put_last(self.error_message(err), err.close_code, err.code)

    async def _drop(self, code: int, reason: str) -> None:
        """Close a connection whose send buffers are full: the close frame may never get
        through (a blocked send holds the writer), so abort after ``close_timeout_s``."""
        try:
            async with asyncio.timeout(self.cfg.close_timeout_s):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()

    @classmethod
    def refusal(cls, err: ProtocolError) -> ServerMessage | dict[str, Any]:
        """The message for a connection refused before it started (auth, capacity)."""
        return err.to_message()

    def error_message(self, err: ProtocolError) -> ServerMessage | dict[str, Any]:
        return err.to_message()

    def send(self, message: ServerMessage | dict[str, Any]) -> None:
        if not self.outbox.put(message):
            self.fail(ProtocolError("slow_consumer", f"the client did not read {self.cfg.send_queue} queued messages"))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        return task

    def idle_left(self) -> float:
        return self.cfg.idle_timeout_s - (time.monotonic() - self.last_message)

    def check_length(self) -> None:
        wall = time.monotonic() - self.opened
        audio_s = self.runner.received / 16000 if self.runner else 0.0
        if max(wall, audio_s) > self.cfg.max_session_s:
            raise ProtocolError("session_too_long", f"sessions are limited to {self.cfg.max_session_s:g} s")

    async def recv(self) -> str | bytes:
        """Next client message, or ``idle_timeout`` after ``idle_timeout_s`` without one."""
        try:
            async with asyncio.timeout(max(0.0, self.idle_left())):
                msg = await self.ws.recv()
        except TimeoutError:
            raise ProtocolError("idle_timeout", f"no message for {self.cfg.idle_timeout_s:g} s") from None
        self.last_message = time.monotonic()
        if len(msg) > self.cfg.max_frame_bytes:
            raise ProtocolError("frame_too_big", f"frame of {len(msg)} bytes exceeds {self.cfg.max_frame_bytes} bytes")
        return msg

    async def ticker(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.cfg.status_interval_s)  # a period, not synchronisation
            try:
                self.check_length()
            except ProtocolError as e:
                self.fail(e)
                return
            self.tick()

    def tick(self) -> None:
        """Periodic message (status); subclasses may send nothing."""

    async def run_runner(self) -> None:
        assert self.runner is not None
        try:
            await self.runner.run()
        except ProtocolError as e:
            self.fail(e)
        except Exception as e:  # noqa: BLE001 - reported to the client, then the session ends
            log.exception("session %s: pipeline failed", self.id)
            self.fail(ProtocolError("internal_error", f"pipeline failed: {type(e).__name__}"))

    async def run(self) -> None:
        sender = asyncio.create_task(pump(self.ws, self.outbox))
        try:
            await self.serve()
        except ProtocolError as e:
            self.fail(e)
        except ConnectionClosed:
            pass
        finally:
            self.closing = True
            for task in self._tasks:
                task.cancel()
            # let the error / end message and the close go out, bounded by close_timeout
            waits = ({sender} if self.outbox.sealed else set()) | ({self._closer} if self._closer else set())
            if waits:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.cfg.close_timeout_s + 1):
                        await asyncio.wait(waits)
            sender.cancel()
            await asyncio.gather(sender, *self._tasks, return_exceptions=True)

    @abc.abstractmethod
    async def serve(self) -> None:
        """Consume the client's messages until the session ends (raise ProtocolError to fail)."""


class NativeConnection(Connection):
    """The native protocol: start -> ready, audio, ping/pong, end -> summary."""

    endpoint = "ws"

    def __init__(self, server: Server, ws: ServerConnection) -> None:
        super().__init__(server, ws)
        self.start: Start | None = None
        self.session: TranslationSession | None = None
        self.resample: StreamResampler | None = None
        self.finals = 0

    async def serve(self) -> None:
        # 1. start
        while self.start is None:
            msg = await self.recv()
            if isinstance(msg, bytes):
                raise ProtocolError("binary_before_start", "send a start message before audio")
            parsed = parse_text(msg)
            if isinstance(parsed, Ping):
                self.send(Pong(id=parsed.id))
            elif isinstance(parsed, End):
                raise ProtocolError("wrong_order", "end before start")
            else:
                self.begin(parsed)
        # 2. audio until end
        while not self.closing:
            msg = await self.recv()
            if isinstance(msg, bytes):
                self.feed(msg)
                continue
            parsed = parse_text(msg)
            if isinstance(parsed, Ping):
                self.send(Pong(id=parsed.id))
            elif isinstance(parsed, Start):
                raise ProtocolError("wrong_order", "start sent twice")
            else:
                await self.finish()
                return

    def begin(self, start: Start) -> None:
        cfg = start.pipeline_config()
        if "e2e" in cfg.paths and not self.server.models.has_e2e:
            raise ProtocolError("mode_unavailable", f"mode {cfg.mode} needs an end-to-end model; profile "
                                f"'{self.server.models.profile.name}' has none (use mode simul, cascade or both)")
        self.start = start
        self.session = TranslationSession(self.server.models, cfg, recognize=self.server.recognize)
        self.resample = StreamResampler(start.sample_rate)
        self.runner = SessionRunner(self.session, self.server.executor,
                                    max_pending_ms=int(self.cfg.max_pending_s * 1000), on_update=self.on_update)
        self.send(Ready(session=self.id, config=resolved_config(start, cfg)))
        self.runner_task = self._spawn(self.run_runner())
        self._spawn(self.ticker())

    def feed(self, frame: bytes) -> None:
        assert self.start is not None and self.runner is not None and self.resample is not None
        samples = self.resample(decode_samples(frame, self.start.encoding))
        busy = self.runner.busy
        self.runner.feed(samples)
        if busy:
            self.server.metrics.coalesced(samples.size)

    def on_update(self, events: list[Event], samples: int, compute_ms: float) -> None:
        self.server.metrics.update(samples, compute_ms)
        for ev in events:
            if isinstance(ev, LatencyEvent):
                self.server.metrics.utterance(ev.language, ev.metrics, ev.retention_proxy, path=ev.mode)
            elif getattr(ev, "kind", None) == "final":
                self.finals += 1
            self.send(ev.to_dict())

    def tick(self) -> None:
        if self.runner is not None:
            self.send(self.runner.status())

    async def finish(self) -> None:
        """End of stream: drain and flush the pipeline, send the summary, close 1000."""
        assert self.runner is not None
        self.runner.end()
        runner_task = self.runner_task
        assert runner_task is not None
        closed = asyncio.create_task(self.ws.wait_closed())
        try:
            await asyncio.wait({runner_task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if self.closing or not runner_task.done():
            return  # failed meanwhile, or the client went away
        self.send(self.runner.status())
        self.outbox.put_last(EndMessage(summary=self.summary()), 1000, "end of stream")
        self.closing = True

    def summary(self) -> dict[str, Any]:
        assert self.session is not None and self.runner is not None
        st = self.runner.status()
        audio_ms = max(1, st.audio_ms)
        results = [
            {"utterance": r.utterance, "language": r.language, "start_ms": r.start_ms, "end_ms": r.end_ms,
             "source": r.source, "simul": r.simul, "cascade": r.cascade, "metrics": r.metrics,
             "retention_proxy": r.retention_proxy}
            for r in self.session.results
        ]
        means: dict[str, dict[str, float]] = {}
        for lang in self.session.cfg.tgt_langs:
            rows = [r.metrics for r in self.session.results if r.language == lang and r.metrics]
            keys = sorted({k for row in rows for k in row})
            means[lang] = {k: round(statistics.fmean(row[k] for row in rows if k in row), 1) for k in keys}
        return {
            "session": self.id, "audio_ms": st.audio_ms, "processed_ms": st.processed_ms,
            "compute_ms": round(self.session.compute_ms, 1),
            "real_time_factor": round(self.session.compute_ms / audio_ms, 4),
            "updates": st.updates, "coalesced_ms": st.coalesced_ms, "max_lag_ms": self.runner.max_lag_ms,
            "utterances": self.finals, "mean_latency_ms": means, "results": results,
        }


def decode_samples(frame: bytes, encoding: str) -> np.ndarray:
    """PCM frame -> float32 samples, as a protocol error on bad audio."""
    try:
        return decode_pcm(frame, encoding)  # type: ignore[arg-type]
    except AudioFormatError as e:
        raise ProtocolError("bad_audio", str(e)) from e
