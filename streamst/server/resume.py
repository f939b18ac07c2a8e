"""Sessions of ``/ws`` that survive a dropped connection (docs/protocol.md, "Resume").

* Every message of a session's stream (``ready``, ``transcript``, ``translation``,
  ``latency``, ``end``) carries ``seq`` (1, 2, ...) and is kept in the session's
  :class:`EventLog` until the client acknowledges it (``ack``, or the ``last_seq`` of a
  ``resume``). ``pong``, ``status`` and ``error`` belong to one connection: no ``seq``.
* ``ready`` carries ``resume: {token, grace_s}``. When the connection drops without an
  error, the session is *detached*: its pipeline keeps running on the audio it has, its
  events go to the log, and the :class:`ResumeRegistry` keeps it for ``grace_s``.
* A new connection whose first message is ``{"type": "resume", "token": T, "last_seq": N}``
  gets ``resumed`` (with ``audio_samples``: the input samples the server has), the events
  after ``N`` in order, then the live stream. The client re-sends its audio from
  ``audio_samples`` (or says where it re-sends from with ``audio_from``: the server drops
  what it already has), and ``end`` again if it had sent it: no audio counted twice or lost.
* Memory: each log is bounded in bytes (``log_bytes``: past it the oldest unacknowledged
  events go, and a resume from before them gets ``resume_gap``); detached sessions are
  bounded in count and bytes (the oldest is ended first), and each ends after ``grace_s``.

:class:`ResumableConnection` is the ``/ws`` connection with these hooks; the machinery
(log, registry, kept state) lives here so that the connection module stays one concept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from streamst.server import strict
from streamst.server.config import ResumeOptions
from streamst.server.codes import CLOSE_GOING_AWAY, CLOSE_SUPERSEDED, ProtocolError
from streamst.server.connection import NativeConnection
from streamst.server.guard import classify, log_failure
from streamst.server.protocol import MAX_ID_INT, ClientMessage, EndMessage, Ready, ServerMessage, Start, _Strict, parse_text

if TYPE_CHECKING:
    from streamst.server.session import SessionHost as Server  # the app's Server (app imports this module)

log = logging.getLogger(__name__)

NOT_LOGGED = frozenset({"pong", "status", "error"})  # one connection's messages: no seq, not replayed
MAX_TOKEN = 200


# -- client messages -------------------------------------------------------------------------
class ResumeIn(_Strict):
    type: Literal["resume"]
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN)]
    last_seq: Annotated[int, Field(ge=0, le=MAX_ID_INT)] = 0
    audio_from: Annotated[int, Field(ge=0, le=MAX_ID_INT)] | None = None  # input samples; None: audio_samples


class AckIn(_Strict):
    type: Literal["ack"]
    seq: Annotated[int, Field(ge=0, le=MAX_ID_INT)]


# -- the event log -----------------------------------------------------------------------------
class EventLog:
    """The session's numbered messages not yet acknowledged, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.seq = 0  # the last number given
        self.acked = 0
        self.lost = 0  # the highest seq dropped unacknowledged (bound reached)
        self.bytes = 0
        self._items: deque[tuple[int, bytes]] = deque()

    def append(self, message: dict[str, Any]) -> bytes:
        self.seq += 1
        data = strict.dumps({**message, "seq": self.seq})
        self._items.append((self.seq, data))
        self.bytes += len(data)
        while self.bytes > self.max_bytes and len(self._items) > 1:
            seq, old = self._items.popleft()
            self.bytes -= len(old)
            self.lost = seq
        return data

    def ack(self, seq: int) -> None:
        self.acked = max(self.acked, min(seq, self.seq))
        while self._items and self._items[0][0] <= self.acked:
            self.bytes -= len(self._items.popleft()[1])

    def since(self, seq: int) -> list[bytes]:
        """The messages after ``seq``, or ``resume_gap`` when some were dropped."""
        if seq > self.seq:
            raise ProtocolError("bad_value", f"last_seq {seq} is beyond the last event sent ({self.seq})")
        if seq < self.lost:
            raise ProtocolError("resume_gap", f"events after {seq} are no longer kept (the log keeps "
                                              f"{self.max_bytes} bytes unacknowledged; send ack)")
        self.ack(seq)
        return [data for s, data in self._items if s > seq]


# -- one resumable session ---------------------------------------------------------------------
class KeptSession:
    """A session's state that outlives its connection: log, runner task, audio offset."""

    def __init__(self, registry: ResumeRegistry, owner: ResumableConnection) -> None:
        self.registry = registry
        self.id = owner.id
        self.secret = secrets.token_urlsafe(18)
        self.log = EventLog(registry.options.log_bytes)
        self.owner = owner  # the connection whose fields hold the pipeline (the latest attached)
        self.conn: ResumableConnection | None = owner  # attached connection, None while detached
        self.task: asyncio.Task | None = None  # the runner: not any connection's task
        self.received = 0  # input samples (client rate) received
        self.ended = False  # the client sent end
        self.done = False  # the end summary is in the log
        self.closed = False
        self.detached_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def token(self) -> str:
        return f"{self.id}.{self.secret}"

    @property
    def bytes(self) -> int:
        runner = self.owner.runner
        pending = runner.lag_ms * 16 * 4 if runner is not None else 0  # float32 samples waiting
        return self.log.bytes + pending

    def emit(self, message: dict[str, Any]) -> None:
        data = self.log.append(message)
        if self.conn is not None:
            self.conn.put(data)
        elif not self.closed:
            self.registry.bound()  # a detached session's log grows: the bounds hold all along

    def start_runner(self) -> asyncio.Task:
        if self.task is None:
            runner = self.owner.runner
            assert runner is not None
            self.task = asyncio.create_task(runner.run())
            self.task.add_done_callback(self._runner_done)
        return self.task

    def _runner_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self.closed:
            return
        exc = task.exception()
        if exc is not None:
            err = classify(exc)
            if self.conn is not None and err is not None:
                self.conn.fail(err, exc)
            elif err is not None:
                log_failure(self.id, err, exc)
                self.registry.drop(self)
            return
        if self.ended and not (self.conn is not None and self.conn.finishing):
            self.complete()  # the client sent end, then left or resumed: nobody else ends it

    def complete(self) -> None:
        """The pipeline is flushed: status, the ``end`` summary (logged), then close 1000."""
        if self.done:
            return
        self.done = True
        owner = self.owner
        assert owner.runner is not None
        if self.conn is not None:
            self.conn.put(owner.runner.status())
        self.emit(EndMessage(summary=owner.summary()).to_dict())
        if self.conn is not None:
            self.conn.outbox.put_last(None, 1000, "end of stream")
            self.conn.closing = True

    def detach(self) -> None:
        self.conn = None
        self.detached_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.registry.options.grace_s, self.registry.expire, self)

    def attach(self, conn: ResumableConnection) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        old = self.conn
        self.conn = conn
        if old is not None and old is not conn:
            old.superseded()

    def close(self) -> None:
        """Free the pipeline (expired, evicted, failed or drained)."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()


class ResumeRegistry:
    """Every resumable session of a server by id; detached ones bounded in count and bytes."""

    def __init__(self, options: ResumeOptions) -> None:
        self.options = options
        self.sessions: dict[str, KeptSession] = {}
        self.detached: OrderedDict[str, KeptSession] = OrderedDict()  # oldest first
        self.expired = 0
        self.evicted = 0
        self.resumed = 0

    @property
    def enabled(self) -> bool:
        return self.options.grace_s > 0

    def open(self, conn: ResumableConnection) -> KeptSession:
        kept = KeptSession(self, conn)
        self.sessions[kept.id] = kept
        return kept

    def detached_bytes(self) -> int:
        return sum(k.bytes for k in self.detached.values())

    def release(self, conn: ResumableConnection) -> None:
        """``conn`` ended: keep its session for ``grace_s`` unless it failed or is superseded."""
        kept = conn.kept
        if kept is None or kept.conn is not conn or kept.closed:
            return
        delivered = kept.done and conn.ws.protocol.close_rcvd is not None  # the client echoed the close after the end
        if conn.failed_session or not self.enabled or delivered:
            self.drop(kept)
            return
        kept.detach()
        self.detached[kept.id] = kept
        self.bound()

    def bound(self) -> None:
        """End the oldest detached sessions while their count or bytes exceed the bounds."""
        while self.detached and (len(self.detached) > self.options.max_detached
                                 or self.detached_bytes() > self.options.max_bytes):
            # ended sessions first (a client may only have missed their end), then the oldest
            oldest = next((k for k in self.detached.values() if k.done), next(iter(self.detached.values())))
            self.evicted += 1
            log.info("session %s: detached session evicted (resume bounds)", oldest.id)
            self.drop(oldest)

    def expire(self, kept: KeptSession) -> None:
        if kept.conn is None and not kept.closed:
            self.expired += 1
            log.info("session %s: not resumed within %g s", kept.id, self.options.grace_s)
            self.drop(kept)

    def drop(self, kept: KeptSession) -> None:
        kept.close()
        self.sessions.pop(kept.id, None)
        self.detached.pop(kept.id, None)

    def take(self, token: str) -> KeptSession:
        sid, _, secret = token.partition(".")
        kept = self.sessions.get(sid)
        if kept is None or kept.closed or not hmac.compare_digest(secret.encode("utf-8", "surrogateescape"),
                                                                  kept.secret.encode()):
            raise ProtocolError("resume_unknown", "no session to resume with this token (ended, expired or unknown)")
        self.detached.pop(kept.id, None)
        self.resumed += 1
        return kept

    def close(self) -> None:
        for kept in list(self.sessions.values()):
            self.drop(kept)

    def stats(self) -> dict[str, int]:
        return {"resumable": len(self.sessions), "detached": len(self.detached),
                "detached_bytes": self.detached_bytes(), "resumed": self.resumed,
                "expired": self.expired, "evicted": self.evicted}


def _succeeded(task: asyncio.Task) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


# -- the /ws connection with resume ----------------------------------------------------------
class ResumableConnection(NativeConnection):
    """``/ws`` with sequence numbers, acks, ``resume`` and detached sessions."""

    def __init__(self, server: Server, ws) -> None:
        super().__init__(server, ws)
        self.kept: KeptSession | None = None
        self.skip = 0  # input samples of re-sent audio the server already has
        self.failed_session = False
        self.finishing = False  # in finish(): this connection sends the end, after the speech

    @property
    def registry(self) -> ResumeRegistry:
        return self.server.resume

    # -- sending ---------------------------------------------------------------------------------
    def put(self, message: ServerMessage | dict[str, Any] | bytes) -> None:
        super().send(message)

    def send(self, message: ServerMessage | dict[str, Any]) -> None:
        kept = self.kept
        as_dict = message.to_dict() if isinstance(message, ServerMessage) else message
        if kept is None or as_dict.get("type") in NOT_LOGGED:
            self.put(message)
            return
        if isinstance(message, Ready) and self.registry.enabled:
            as_dict = {**as_dict, "resume": {"token": kept.token, "grace_s": self.registry.options.grace_s}}
        kept.emit(as_dict)

    def fail(self, err: ProtocolError, exc: BaseException | None = None) -> None:
        if not self.closing:
            self.failed_session = True
        super().fail(err, exc)

    def superseded(self) -> None:
        """The session went to a newer connection: close this one, the session stays."""
        self.kept = None
        self.closing = True
        self._failed.set()  # stop reading this client
        self.outbox.put_last(None, CLOSE_SUPERSEDED, "resumed on another connection")

    # -- hooks of NativeConnection -------------------------------------------------------------
    def parse(self, msg: str | bytes) -> ClientMessage | None:
        obj = strict.loads(msg)
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "ack":
            ack = strict.validate(AckIn, obj, "ack")
            if self.kept is not None:
                self.kept.log.ack(ack.seq)
            return None
        if kind == "resume":
            self.resume(strict.validate(ResumeIn, obj, "resume"))
            return None
        return parse_text(msg)

    def begin(self, start: Start) -> None:
        if self.server.draining:
            raise ProtocolError("shutting_down", "the server is draining; start the session on another instance")
        self.kept = self.registry.open(self)
        try:
            super().begin(start)
        except BaseException:
            self.registry.drop(self.kept)
            self.kept = None
            raise

    async def run_runner(self) -> None:
        assert self.kept is not None
        await asyncio.shield(self.kept.start_runner())

    def feed(self, frame: bytes) -> None:
        assert self.start is not None and self.kept is not None
        if self.kept.done:
            return  # the session was ended (drain): audio still in flight is moot
        width = 2 if self.start.encoding == "pcm_s16le" else 4
        if self.skip and len(frame) % width == 0:
            drop = min(self.skip, len(frame) // width)
            self.skip -= drop
            frame = frame[drop * width:]
            if not frame:
                return
        super().feed(frame)
        self.kept.received += len(frame) // width

    async def finish(self) -> None:
        """The client's ``end``: flush the pipeline, speak what is queued, then the summary.
        While this runs the runner's own completion (``KeptSession._runner_done``) leaves the
        end to this connection, so speech queued at the end goes out before the summary. If the
        client goes away meanwhile, the end still goes to the session's log (for a resume)."""
        kept, runner_task = self.kept, self.runner_task
        assert kept is not None and self.runner is not None and runner_task is not None
        kept.ended = True
        self.finishing = True
        self.runner.end()
        try:
            closed = asyncio.create_task(self.ws.wait_closed())
            try:
                await asyncio.wait({runner_task, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            if _succeeded(runner_task) and not self.closing:
                await self.finish_speaking()  # spoken output (start.speak) before the summary
        finally:
            self.finishing = False
            if _succeeded(runner_task) and self.kept is kept and not self.failed_session and not kept.closed:
                kept.complete()  # once; a no-op when done already

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        if self.kept is not None:
            out["session"], out["audio_samples"] = self.kept.id, self.kept.received
        return out

    def tick(self) -> None:
        if self.runner is not None and self.kept is not None and self.start is not None:
            runner, rate = self.runner, self.start.sample_rate
            unprocessed = round((runner.received - runner.processed) * rate / 16000)  # exact at 16 kHz
            # audio_samples: received; processed_samples: the client may forget the audio before it
            self.put({**runner.status().to_dict(), "audio_samples": self.kept.received,
                      "processed_samples": max(0, self.kept.received - unprocessed)})

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.registry.release(self)

    # -- resume ------------------------------------------------------------------------------------
    def resume(self, msg: ResumeIn) -> None:
        if self.start is not None:
            raise ProtocolError("wrong_order", "resume must be the first message of a connection")
        if not self.registry.enabled:
            raise ProtocolError("resume_unknown", "this server does not keep sessions (--resume-grace-s 0)")
        kept = self.registry.take(msg.token)
        try:
            replay = kept.log.since(msg.last_seq)
            if msg.audio_from is not None and msg.audio_from > kept.received:
                raise ProtocolError("bad_value", f"audio_from {msg.audio_from} is beyond the audio received "
                                                 f"({kept.received} samples): audio would be missing")
        except ProtocolError:
            if kept.conn is None:  # still detached: keep it for a correct retry
                self.registry.detached[kept.id] = kept
            raise
        old = kept.owner
        self.start, self.session, self.resample, self.runner = old.start, old.session, old.resample, old.runner
        self.finals = old.finals
        assert self.runner is not None
        self.runner.on_update = self.on_update
        kept.attach(self)
        kept.owner = self
        self.kept = kept
        self.skip = kept.received - msg.audio_from if msg.audio_from is not None else 0
        self.put({"type": "resumed", "session": kept.id, "seq": kept.log.seq, "audio_samples": kept.received,
                  "audio_ms": kept.received * 1000 // self.start.sample_rate, "ended": kept.ended})
        for data in replay:
            self.put(data)
        if kept.done:
            self.outbox.put_last(None, 1000, "end of stream")
            self.closing = True
            return
        self.runner_task = self._spawn(self.run_runner())


    async def shut_down(self) -> None:
        """End this connection's session now (the drain's deadline): audio not yet processed
        is dropped and given back (``audio_samples`` counts only what was processed), the
        current utterance is finalised, and the client gets every event and the summary with
        ``reason: shutting_down``, then close 1001. Nothing committed is lost, nothing is
        processed twice when the client re-sends from ``audio_samples`` elsewhere."""
        kept, runner = self.kept, self.runner
        if kept is None or runner is None or self.start is None or self.closing:
            return
        kept.ended = kept.done = True  # the end below replaces complete()'s
        dropped = runner.drop_pending()
        kept.received -= round(dropped * self.start.sample_rate / 16000)  # exact at 16 kHz
        runner.end()
        if kept.task is not None and not kept.task.done():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):  # one step in flight and the final step
                    await asyncio.shield(kept.task)
        if self.closing or kept.conn is not self:
            return
        self.put(runner.status())
        kept.emit({**EndMessage(summary=self.summary()).to_dict(), "reason": "shutting_down"})
        self.outbox.put_last(None, CLOSE_GOING_AWAY, "shutting_down")
        self.closing = True


async def drain(server: Server, drain_s: float) -> None:
    """Let open sessions go on for up to ``drain_s``, then end each one cleanly
    (:meth:`ResumableConnection.shut_down`). Detached sessions are dropped (their state
    cannot move)."""
    deadline = time.monotonic() + drain_s
    while server.connections and time.monotonic() < deadline:
        server.connections_changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline - time.monotonic()):
                await server.connections_changed.wait()
    ends = [conn.shut_down() for conn in list(server.connections.values()) if isinstance(conn, ResumableConnection)]
    if ends:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(server.config.close_timeout_s + 30):
                await asyncio.gather(*ends, return_exceptions=True)
    server.resume.close()
