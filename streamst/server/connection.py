"""One websocket connection speaking the native protocol (``/ws``, docs/protocol.md).

A connection has three tasks, as in the websockets examples: the handler coroutine
consumes client messages, :func:`pump` sends from a bounded :class:`Outbox`, and the
session's :class:`~streamst.server.worker.SessionRunner` runs inference in worker threads.
A ticker sends ``status`` and enforces the session-length limit. Every way a connection
ends goes through :meth:`Connection.fail` (error message + close code) or the normal
``end`` path; the ``finally`` of :meth:`Connection.run` releases everything.

Nothing here blocks the event loop: inference runs in the server's executor; the outbox is
bounded in messages and bytes, pauses reading the client at half its bound, and a client
that lets nothing be sent for ``slow_consumer_s`` is dropped (``slow_consumer``). Every
coroutine runs through the choke point of :mod:`streamst.server.guard`, so any exception
ends the connection with a documented error.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import socket
import statistics
import struct
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from streamst.audio import StreamResampler, decode_pcm
from streamst.errors import AudioFormatError
from streamst.events import Event, LatencyEvent
from streamst.pipeline import TranslationSession
from streamst.server import strict
from streamst.server.guard import guarded, log_failure, watch
from streamst.server.protocol import (
    End,
    EndMessage,
    ErrorMessage,
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
    """Outgoing messages of one connection, bounded in messages AND bytes.

    * ``full`` (half of either bound): the connection stops reading the client until the
      pump has sent enough (backpressure: a client that bursts pings while reading gets
      every pong; one that does not read stops being read, so it cannot queue more).
    * ``put`` refuses past the hard bounds (``slow_consumer``): only messages the server
      makes on its own (results of audio already received, status) can get there.
    * ``stalled_s``: how long something has been waiting without any send completing;
      ``slow_consumer`` is judged on this progress over time, not on queue length.
    * ``put_last`` always fits and is followed by closing with ``close_code``.
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._items: deque[bytes | tuple[int, str]] = deque()
        self.bytes = 0
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.sealed = False
        self.in_flight = False
        self.last_progress = time.monotonic()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_messages // 2 or self.bytes >= self.max_bytes // 2

    def put(self, message: ServerMessage | dict[str, Any]) -> bool:
        if self.sealed:
            return True  # closing: later messages are moot
        data = _encode(message)
        if len(self._items) >= self.max_messages or self.bytes + len(data) > self.max_bytes:
            return False
        if not self._items and not self.in_flight:
            self.last_progress = time.monotonic()  # idle until now: the stall clock starts here
        self._items.append(data)
        self.bytes += len(data)
        self._ready.set()
        if self.full:
            self._space.clear()
        return True

    def put_last(self, message: ServerMessage | dict[str, Any] | None, close_code: int, reason: str) -> None:
        if self.sealed:
            return
        self.sealed = True
        if message is not None:
            data = _encode(message)
            self._items.append(data)
            self.bytes += len(data)
        self._items.append((close_code, reason))
        self._ready.set()
        self._space.set()

    def seal(self) -> None:
        """Accept nothing more (the connection is being dropped); wakes ``wait_space``."""
        self.sealed = True
        self._space.set()

    async def wait_space(self) -> None:
        while self.full and not self.sealed:
            self._space.clear()
            await self._space.wait()

    async def get(self) -> bytes | tuple[int, str]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if isinstance(item, bytes):
            self.bytes -= len(item)
        self.in_flight = True
        return item

    def sent(self) -> None:
        """The pump finished one send: progress."""
        self.in_flight = False
        self.last_progress = time.monotonic()
        if not self.full:
            self._space.set()

    def stalled_s(self) -> float:
        if not self._items and not self.in_flight:
            return 0.0
        return time.monotonic() - self.last_progress


def _encode(message: ServerMessage | dict[str, Any]) -> bytes:
    if isinstance(message, ServerMessage):
        return message.to_json()
    return strict.dumps(message)


async def pump(ws: ServerConnection, outbox: Outbox, close_timeout_s: float) -> None:
    """Send the outbox in order; a ``(code, reason)`` item closes the connection (if the close
    handshake does not end within ``close_timeout_s``: a reset after an error, a plain close
    after a normal end, so a slow reader still gets what the kernel holds)."""
    try:
        while True:
            item = await outbox.get()
            if isinstance(item, tuple):  # (close code, reason): 1000 ends a session normally
                await close_or_reset(ws, close_timeout_s, *item, hard=item[0] != 1000)
                return
            await ws.send(item, text=True)
            outbox.sent()
    except ConnectionClosed:
        outbox.seal()  # nothing more can be sent: wake a handler waiting for space
        return


def reset(ws: ServerConnection) -> None:
    """End the TCP connection now, with a reset. A plain close (``transport.abort()``) of a
    socket whose peer reads nothing leaves the kernel holding the unsent data and the FIN
    behind it (FIN-WAIT-1, for minutes), and the peer, whose own sends find a closed window,
    never learns that the connection is gone. ``SO_LINGER`` 0 makes the close a reset."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


async def close_or_reset(ws: ServerConnection, timeout_s: float, code: int = 1000, reason: str = "",
                         *, hard: bool = True) -> None:
    """The close handshake within ``timeout_s``, else a reset (``hard``) or a plain close.
    The server gives websockets a longer ``close_timeout`` (``CLOSE_GRACE_S`` more), so this
    deadline always comes first: websockets' own abort at its deadline is a plain close, which
    a non-reading peer never sees. A plain close lets the kernel still deliver what it holds
    (the end of a normal session to a slow reader); a reset discards it."""
    if ws.state is State.CLOSED:
        return
    try:
        async with asyncio.timeout(timeout_s):
            await ws.close(code, reason)
    except TimeoutError:
        if hard:
            reset(ws)
        else:
            ws.transport.abort()


CLOSE_GRACE_S = 1.0


def text_bytes(msg: str) -> int:
    """UTF-8 size of a text frame (``frame_too_big`` counts bytes, not characters)."""
    return len(msg.encode("utf-8", "surrogatepass"))


class Connection(abc.ABC):
    """Base of every websocket endpoint's connection: outbox, limits, the failure path.

    Subclasses implement :meth:`serve` (raise :class:`ProtocolError` to fail) and may
    override :meth:`error_message` (the endpoint's error shape), :meth:`tick` (periodic
    messages) and :meth:`started` (whether the client has begun a session, for
    ``start_timeout_s``). Everything :meth:`run` and :meth:`_spawn` run goes through the
    choke point (:func:`~streamst.server.guard.guarded`): any exception ends the connection
    with a documented error, counted and logged once.
    """

    endpoint = "ws"

    def __init__(self, server: Server, ws: ServerConnection) -> None:
        self.server, self.ws = server, ws
        self.cfg = server.config
        self.id = uuid.uuid4().hex[:12]
        self.outbox = Outbox(self.cfg.send_queue, self.cfg.send_queue_bytes)
        self.runner: SessionRunner | None = None
        self.runner_task: asyncio.Task | None = None
        self.closing = False
        self.opened = time.monotonic()  # the handshake: every limit counts from here
        self.last_message = time.monotonic()
        self._tasks: list[asyncio.Task] = []
        self._closer: asyncio.Task | None = None  # a close that bypasses the outbox
        self._failed = asyncio.Event()  # set by fail(): the handler stops reading the client

    # -- the endpoint's shapes ------------------------------------------------------------------
    @classmethod
    def refusal(cls, err: ProtocolError) -> ServerMessage | dict[str, Any]:
        """The message for a connection refused before it started (auth, capacity)."""
        return ErrorMessage(code=err.code, message=err.message)

    def error_message(self, err: ProtocolError) -> ServerMessage | dict[str, Any]:
        return ErrorMessage(code=err.code, message=err.message)

    def started(self) -> bool:
        """Whether the client has started a session (``start_timeout_s`` stops applying)."""
        return self.runner is not None

    # -- failure / limits ---------------------------------------------------------------------
    def fail(self, err: ProtocolError, exc: BaseException | None = None) -> None:
        """Send ``error`` then close with its code (once; later failures are ignored)."""
        if self.closing:
            return
        self.closing = True
        self._failed.set()
        self.server.metrics.error(err.code)
        log_failure(self.id, err, exc)
        if err.code == "slow_consumer":  # the client does not read: close now
            self.outbox.seal()  # and wake the handler if it waits for space
            self._closer = asyncio.create_task(self._drop(err.close_code, err.code))
            return
        self.outbox.put_last(self.error_message(err), err.close_code, err.code)

    async def _drop(self, code: int, reason: str) -> None:
        """Close a connection whose send buffers are full: the close frame may never get
        through (a blocked send holds the writer), so reset after ``close_timeout_s``."""
        await close_or_reset(self.ws, self.cfg.close_timeout_s, code, reason)

    def send(self, message: ServerMessage | dict[str, Any]) -> None:
        if not self.outbox.put(message):
            self.fail(ProtocolError("slow_consumer", f"the client does not read: more than {self.cfg.send_queue} "
                                                     f"messages or {self.cfg.send_queue_bytes} bytes are queued"))

    def _spawn(self, coro) -> asyncio.Task:
        task = watch(asyncio.create_task(coro), self.fail)
        self._tasks.append(task)
        return task

    def server_was_busy(self) -> None:
        """The server did not read the client until now: restart the idle clock."""
        self.last_message = time.monotonic()

    def server_behind(self) -> bool:
        """Whether audio the client sent still waits for inference (at least one grid step)."""
        r = self.runner
        return r is not None and (r.busy or r.lag_ms >= self.cfg.step_ms)

    def idle_left(self) -> float:
        return self.cfg.idle_timeout_s - (time.monotonic() - self.last_message)

    def check_limits(self) -> None:
        """Limits that count from the handshake (called every ``status_interval_s``)."""
        now = time.monotonic()
        wall = now - self.opened
        audio_s = self.runner.received / 16000 if self.runner else 0.0
        if max(wall, audio_s) > self.cfg.max_session_s:
            raise ProtocolError("session_too_long", f"sessions are limited to {self.cfg.max_session_s:g} s")
        if not self.started() and wall > self.cfg.start_timeout_s:
            raise ProtocolError("idle_timeout", f"no session started within {self.cfg.start_timeout_s:g} s of connecting")
        stalled = self.outbox.stalled_s()
        if stalled > self.cfg.slow_consumer_s:
            raise ProtocolError("slow_consumer", f"the client read nothing for {stalled:.0f} s "
                                                 f"(limit {self.cfg.slow_consumer_s:g} s)")

    async def recv(self) -> str | bytes:
        """Next client message, or ``idle_timeout`` after ``idle_timeout_s`` without one.
        Waits first while the outbox is full (backpressure); time the server spends not
        reading (that wait, a flush) does not count as the client's silence."""
        if self.outbox.full:
            await self.outbox.wait_space()
            self.server_was_busy()
        while True:
            try:
                async with asyncio.timeout(max(0.0, self.idle_left())):
                    msg = await self.ws.recv()
                break
            except TimeoutError:
                if not self.server_behind():
                    raise ProtocolError("idle_timeout", f"no message for {self.cfg.idle_timeout_s:g} s") from None
                self.server_was_busy()  # a client waiting for results of audio it sent is not idle
        self.last_message = time.monotonic()
        size = len(msg) if isinstance(msg, bytes) else text_bytes(msg)
        if size > self.cfg.max_frame_bytes:
            raise ProtocolError("frame_too_big", f"frame of {size} bytes exceeds {self.cfg.max_frame_bytes} bytes")
        return msg

    async def ticker(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.cfg.status_interval_s)  # a period, not synchronisation
            self.check_limits()
            if not self.outbox.full:  # periodic and superseded: skipped while the client is behind
                self.tick()

    def tick(self) -> None:
        """Periodic message (status); subclasses may send nothing."""

    async def run_runner(self) -> None:
        assert self.runner is not None
        await self.runner.run()

    async def run(self) -> None:
        """Serve until the session ends or fails; then end the TCP connection, bounded.

        A failure raised by another task (the ticker's limits, the runner) stops the
        handler at once: the client is not read any further. Whatever the client does, the
        connection is gone within about ``2 * close_timeout_s + 1`` of the end: websockets'
        own close waits for its write buffer to drain without a deadline, which a client
        that never reads would hold open forever (and stop being read, blocking it)."""
        sender = asyncio.create_task(pump(self.ws, self.outbox, self.cfg.close_timeout_s))
        self._spawn(self.ticker())
        serving = asyncio.create_task(guarded(self.serve(), self.fail))
        failed = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait({serving, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.closing = True
            failed.cancel()
            serving.cancel()  # done already, or failed elsewhere: reading the client is moot
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(serving, failed, return_exceptions=True)
            # let the error / end message and the close go out, bounded by close_timeout
            waits = ({sender} if self.outbox.sealed else set()) | ({self._closer} if self._closer else set())
            if waits:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.cfg.close_timeout_s + 1):
                        await asyncio.wait(waits)
            stuck = self.outbox.sealed and not sender.done()  # the close could not get out
            sender.cancel()
            await asyncio.gather(sender, *self._tasks, return_exceptions=True)
            if not stuck:
                await close_or_reset(self.ws, self.cfg.close_timeout_s, hard=self._failed.is_set())
            if stuck or self._failed.is_set():
                # a failed session ends with a reset whatever state websockets reached: after
                # a protocol error it can mark the connection closed while the socket still
                # waits, open, for a peer that never reads (the close handshake, if it came,
                # already delivered the error)
                reset(self.ws)


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
        if self.cfg.e2e_lean:
            cfg = cfg.e2e_lean()
        if "e2e" in cfg.paths and not self.server.e2e_available:
            raise ProtocolError("mode_unavailable", f"mode {cfg.mode} needs an end-to-end model; profile "
                                f"'{self.server.models.profile.name}' has none (use mode simul, cascade or both)")
        if "e2e" in cfg.paths and not getattr(self.server.models, "e2e_translates", True):
            raise ProtocolError("mode_unavailable", self.server.models.e2e_transcribes_only())
        self.start = start
        self.session = TranslationSession(self.server.models, cfg, recognize=self.server.recognize,
                                          mt_lm=self.server.mt_lm, e2e_lm=self.server.e2e_lm)
        self.resample = StreamResampler(start.sample_rate)
        self.runner = SessionRunner(self.session, self.server.executor, max_pending_ms=int(self.cfg.max_pending_s * 1000),
                                    step_ms=self.cfg.step_ms, on_update=self.on_update)
        self.send(Ready(session=self.id, config=resolved_config(start, cfg)))
        self.runner_task = self._spawn(self.run_runner())

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
