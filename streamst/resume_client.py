"""A ``/ws`` client session that survives dropped connections (docs/protocol.md, "Resume").

:class:`ResumingClient` streams audio frames and delivers the server's events exactly once,
in order, over as many websocket connections as it takes:

* it keeps ``ready``'s resume token and the last ``seq`` it delivered, and acknowledges
  every ``ack_every`` events (the server's log of unacknowledged events stays small);
* it keeps the audio the server has not processed (``status.processed_samples``; a drained
  server gives back what it had not processed) and after a resume re-sends from what the
  server received (``resumed.audio_samples``);
* a drop (EOF, reset, a refused connection) means ``reconnecting``: it retries with
  exponential backoff and full jitter, then sends ``resume`` and skips events it already
  delivered (a ``seq`` at or below the last one);
* an ``end`` with ``reason: "shutting_down"`` (a drained server) ends that session cleanly;
  with ``continue_on_drain`` the client starts a new session (on whatever instance the URL
  reaches now) with the audio after the summary's ``audio_samples``; events of the next
  session are delivered with ``part`` + 1.

Used by ``streamst mic``, ``streamst bench chaos`` and the resume tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import websockets

RESUME_FAILED = ("resume_unknown", "resume_gap")


@dataclass(frozen=True)
class ReconnectOptions:
    attempts: int = 10  # consecutive failed connections (none got ready / resumed) before giving up
    base_s: float = 0.1  # first backoff; doubles per failure up to max_s, full jitter
    max_s: float = 5.0
    ack_every: int = 16  # acknowledge after this many events
    frame_bytes: int = 3200  # audio re-sent in frames of this size (100 ms of 16 kHz PCM16)
    open_timeout_s: float = 20.0
    continue_on_drain: bool = True
    fail_first: bool = False  # the very first connection failing is an error (no retries before ready)


class SessionFailed(Exception):
    """The server ended the session with an error, or it could not be reached in time."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class _Dropped(Exception):
    """The connection went away (network): reconnect and resume."""


class ResumingClient:
    """One logical session over reconnects. ``await run(frames)`` returns the last ``end``'s summary."""

    def __init__(self, url: str, start: dict[str, Any], *, options: ReconnectOptions = ReconnectOptions(),
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 on_state: Callable[[str], None] | None = None, width: int = 2,
                 rng: random.Random | None = None, connect_kw: dict[str, Any] | None = None) -> None:
        self.url, self.start_msg, self.opt = url, start, options
        self.on_event = on_event or (lambda ev: None)
        self.on_state = on_state or (lambda state: None)
        self.width = width  # bytes per sample of the start's encoding
        self.rng = rng or random.Random()
        self.connect_kw = connect_kw or {}
        self.token: str | None = None
        self.last_seq = 0
        self.part = 0  # sessions started (a drained server ends one; the next continues the audio)
        self.connections = 0
        self.reconnects = 0
        self.duplicates = 0  # events received again after a resume and skipped
        self.state = "connecting"
        self._failures = 0  # consecutive failed connections
        # audio: everything from sample `base` on is kept until the server confirms it
        self._audio = bytearray()
        self._base = 0  # input samples before _audio[0] (confirmed by the server)
        self._part_base = 0  # input sample where the current session's audio starts
        self._source_done = False
        self._more = asyncio.Event()

    # -- public ------------------------------------------------------------------------------------
    async def run(self, frames: AsyncIterator[bytes]) -> dict[str, Any]:
        reader = asyncio.create_task(self._read_source(frames))
        try:
            return await self._sessions()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    # -- audio -------------------------------------------------------------------------------------
    async def _read_source(self, frames: AsyncIterator[bytes]) -> None:
        async for frame in frames:
            self._audio += frame
            self._more.set()
        self._source_done = True
        self._more.set()

    @property
    def _total(self) -> int:
        return self._base + len(self._audio) // self.width

    def _confirm(self, samples: int) -> None:
        """The server has every input sample before ``samples`` of this session: forget them."""
        absolute = self._part_base + samples
        drop = max(0, min(absolute, self._total) - self._base)
        del self._audio[: drop * self.width]
        self._base += drop

    # -- sessions and connections --------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.on_state(state)

    async def _sessions(self) -> dict[str, Any]:
        while True:
            try:
                end = await self._connection()
            except _Dropped as e:
                if self.opt.fail_first and self.token is None and self.last_seq == 0 and self.part == 0:
                    raise SessionFailed("connect", f"cannot connect to {self.url}: {e}") from None
                self._failures += 1
                failures = self._failures
                if failures > self.opt.attempts:
                    raise SessionFailed("unreachable", f"no connection to {self.url} after "
                                                       f"{self.opt.attempts} attempts") from None
                self._set_state("reconnecting")
                self.reconnects += 1
                delay = min(self.opt.max_s, self.opt.base_s * 2 ** (failures - 1))
                await asyncio.sleep(self.rng.uniform(0, delay))  # backoff with full jitter
                continue
            summary = end.get("summary") or {}
            if end.get("reason") == "shutting_down" and self.opt.continue_on_drain and not self._all_sent(summary):
                self._next_part(summary)
                continue
            self._set_state("ended")
            return summary

    def _all_sent(self, summary: dict[str, Any]) -> bool:
        received = int(summary.get("audio_samples", 0))
        return self._source_done and self._part_base + received >= self._total

    def _next_part(self, summary: dict[str, Any]) -> None:
        self._confirm(int(summary.get("audio_samples", 0)))
        self._part_base = self._base
        self.part += 1
        self.token, self.last_seq = None, 0

    async def _connection(self) -> dict[str, Any]:
        try:
            ws = await websockets.connect(self.url, open_timeout=self.opt.open_timeout_s, max_size=2**24,
                                          **self.connect_kw)
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as e:
            raise _Dropped(str(e)) from e
        self.connections += 1
        try:
            return await self._serve(ws)
        except (websockets.ConnectionClosed, OSError) as e:
            raise _Dropped(str(e)) from e
        finally:
            await ws.close()

    async def _serve(self, ws) -> dict[str, Any]:
        first_msg = self.start_msg if self.token is None else \
            {"type": "resume", "token": self.token, "last_seq": self.last_seq}
        try:
            await ws.send(json.dumps(first_msg))
        except websockets.ConnectionClosed:
            pass  # refused at once (token, capacity): the server's error is still to be read
        first = json.loads(await ws.recv())
        if first.get("type") == "error":
            self._raise(first)
        resend_from = 0  # this session's input sample the audio goes on from
        if first.get("type") == "resumed":
            resend_from = int(first["audio_samples"])
        else:
            self._deliver(first)  # ready
            self.token = (first.get("resume") or {}).get("token")
        self._failures = 0  # attempts count from the last connection that got through
        self._set_state("streaming")
        sender = asyncio.create_task(self._send_audio(ws, self._part_base + resend_from))
        try:
            async for raw in ws:
                ev = json.loads(raw)
                kind = ev.get("type")
                if kind == "error":
                    self._raise(ev)
                if kind == "status" and "processed_samples" in ev:
                    self._confirm(int(ev["processed_samples"]))
                    continue
                if "seq" not in ev:
                    continue  # pong, status
                if ev["seq"] <= self.last_seq:
                    self.duplicates += 1
                    continue
                self._deliver(ev)
                if ev["seq"] % self.opt.ack_every == 0:
                    with contextlib.suppress(websockets.ConnectionClosed):  # closing after the end: read on
                        await ws.send(json.dumps({"type": "ack", "seq": self.last_seq}))
                if kind == "end":
                    return ev
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        raise _Dropped("closed before the end of the session")

    def _deliver(self, ev: dict[str, Any]) -> None:
        if "seq" in ev:
            self.last_seq = ev["seq"]
        self.on_event({**ev, "part": self.part} if self.part else ev)

    def _raise(self, ev: dict[str, Any]) -> None:
        code = ev.get("code", "error")
        if code == "shutting_down" and self.token is None:
            raise _Dropped("the server drains: try again (another instance, or after the restart)")
        raise SessionFailed(code, ev.get("message", ""))

    async def _send_audio(self, ws, pos: int) -> None:
        """Send from input sample ``pos`` (absolute) on; ``end`` once the source is done."""
        while True:
            pos = max(pos, self._base)
            offset = (pos - self._base) * self.width
            if offset < len(self._audio):
                chunk = bytes(self._audio[offset: offset + self.opt.frame_bytes])
                chunk = chunk[: len(chunk) // self.width * self.width]
                if chunk:
                    await ws.send(chunk)
                    pos += len(chunk) // self.width
                    continue
            if self._source_done and pos >= self._total:
                await ws.send(json.dumps({"type": "end"}))  # again after a resume: the server may not have it
                return
            self._more.clear()
            await self._more.wait()
