"""Helpers for the server tests: a server on an ephemeral loopback port running in its own
event-loop thread, and synchronous websocket clients that wait with timeouts."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any

import numpy as np
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from streamst.audio import pcm16_bytes
from streamst.server import Server, ServerConfig

TIMEOUT = 60.0  # upper bound on any single wait; tests finish far sooner


class ServerThread:
    """``Server`` started on 127.0.0.1:0 in a background loop; ``close()`` stops it."""

    def __init__(self, config: ServerConfig, models) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self.thread.start()
        self.server = Server(replace(config, host="127.0.0.1", port=0), models)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(TIMEOUT)
        self.port = self.server.port

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def on_loop(self, fn):
        """Run ``fn()`` on the server's loop (consistent reads of its state)."""

        async def call():
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(TIMEOUT)

    def sessions(self) -> int:
        return self.on_loop(lambda: len(self.server.connections))

    def wait_sessions(self, n: int, timeout: float = 10.0) -> int:
        """Bounded wait until ``n`` sessions are open (a handler's cleanup runs after the
        client sees the close). Returns the last count."""
        deadline = time.monotonic() + timeout
        while (count := self.sessions()) != n and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition with a deadline, not a sync point
        return count

    def http(self, path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


def metric_value(text: str, sample: str, **labels: str) -> float:
    """The value of one sample of Prometheus text (0.0 if absent), e.g.
    ``metric_value(body, "streamst_errors_total", code="bad_value")``."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def read_wav(path) -> np.ndarray:
    x, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000
    return x


def read_all(ws, timeout: float = TIMEOUT) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes; (messages, close code)."""
    msgs = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"server did not close within {timeout} s; got {msgs[-3:]}")
            msgs.append(json.loads(ws.recv(timeout=left)))
    except ConnectionClosed:
        pass
    return msgs, ws.close_code


def expect_error(ws, code: str, close_code: int) -> dict[str, Any]:
    msgs, got_close = read_all(ws, timeout=20)
    errors = [m for m in msgs if m.get("type") == "error"]
    assert errors and errors[-1]["code"] == code, msgs
    assert got_close == close_code, (got_close, msgs)
    return errors[-1]


def run_session(url: str, start: dict[str, Any], audio: np.ndarray, *, frame_ms: int = 100,
                pace_s: float = 0.0, **connect_kw) -> tuple[list[dict[str, Any]], int | None]:
    """Stream ``audio`` as PCM16 frames after ``start``, then ``end``; read everything."""
    with connect(url, open_timeout=20, **connect_kw) as ws:
        ws.send(json.dumps({"type": "start", **start}))
        ready = json.loads(ws.recv(timeout=20))
        assert ready["type"] == "ready", ready
        step = 16 * frame_ms
        for i in range(0, len(audio), step):
            ws.send(pcm16_bytes(audio[i : i + step]))
            if pace_s:
                time.sleep(pace_s)  # pacing the stream like a live client
        ws.send(json.dumps({"type": "end"}))
        msgs, code = read_all(ws)
    return [ready, *msgs], code


def raw_client(port: int, path: str = "/ws", rcvbuf: int = 4096) -> socket.socket:
    """A websocket client that is only a socket: handshake done, then the caller writes
    frames with :func:`raw_frame` and never has to read (a client library reads on its own)."""
    import base64
    import os

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.decode(errors="replace"))
    sock.settimeout(None)
    return sock


def raw_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked, final client frame (opcode 1 text, 2 binary)."""
    import os
    import struct

    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
    return head + mask + masked
