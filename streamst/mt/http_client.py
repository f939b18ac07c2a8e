"""A small blocking JSON-over-HTTP client for OpenAI-compatible model servers.

Standard library only (``http.client``): keep-alive connections reused from a bounded pool
owned by the client object (no module-level state), a connect timeout and a read timeout,
one retry when a reused keep-alive connection turns out to be closed by the server, and
every failure as one :class:`~streamst.errors.RemoteModelError` line naming the server:
unreachable, timed out, HTTP status with the server's own message, or an answer that is
not JSON. Thread-safe: each request holds its own connection.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from streamst.errors import RemoteModelError, UserError


class HttpStatusError(RemoteModelError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, status: int, detail: str):
        super().__init__(message)
        self.status, self.detail = status, detail


class JsonClient:
    """``post(path, body)`` / ``get(path)`` of JSON documents under one base URL.

    ``base_url``: ``http(s)://host[:port][/prefix]``; request paths are appended to the
    prefix. ``api_key``: sent as ``Authorization: Bearer`` when given.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 60.0,
                 connect_timeout_s: float = 5.0, max_idle: int = 16, name: str = "MT server",
                 hint: str = "is it running, and is the profile's base_url right?"):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UserError(f"MT server URL must be http(s)://host[:port][/path], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.name, self.hint = name, hint  # how failures name the server, and what to check
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(maxsize=max_idle)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, json.dumps(body, ensure_ascii=False).encode("utf-8"))

    def get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path, None)

    def close(self) -> None:
        """Close the idle connections (in-flight ones close when their request ends)."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    # -- internals ------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        kw: dict[str, Any] = {"context": ssl.create_default_context()} if self._https else {}
        conn = cls(self._host, self._port, timeout=self.connect_timeout_s, **kw)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.timeout_s)  # reads may take as long as a generation
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _request(self, method: str, path: str, data: bytes | None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        for attempt in range(2):
            conn, reused = None, False
            if attempt == 0:  # a retry never takes from the pool: after one stale hit, all likely are
                try:
                    conn, reused = self._idle.get_nowait(), True
                except queue.Empty:
                    pass
            connected = conn is not None
            try:
                if conn is None:
                    conn = self._connect()
                connected = True
                conn.request(method, self._prefix + path, body=data, headers=self._headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                if conn is not None:
                    conn.close()
                if reused and attempt == 0:
                    # the server closed an idle keep-alive connection (its keep-alive timeout
                    # passed): the others idle as long are stale too, so drop them all and
                    # try once more on a fresh connection
                    self.close()
                    continue
                raise RemoteModelError(f"{self.name} {self.base_url} closed the connection ({_why(e)})") from e
            except TimeoutError as e:
                if conn is not None:
                    conn.close()
                what = "answer" if connected else "accept a connection"
                limit = self.timeout_s if connected else self.connect_timeout_s
                raise RemoteModelError(f"{self.name} {self.base_url} did not {what} within {limit:g} s") from e
            except (OSError, http.client.HTTPException) as e:
                if conn is not None:
                    conn.close()
                raise RemoteModelError(f"{self.name} {self.base_url} is unreachable ({_why(e)}); "
                                       f"{self.hint}") from e
            self._release(conn, resp)
            return self._decode(url, resp.status, raw)
        raise AssertionError("unreachable")

    def _release(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        if resp.will_close:
            conn.close()
            return
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def _decode(self, url: str, status: int, raw: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if status >= 400:
            detail = _server_message(doc) or raw[:200].decode("utf-8", "replace").strip() or "no message"
            raise HttpStatusError(f"{self.name} {url} answered HTTP {status}: {detail}", status, detail)
        if not isinstance(doc, dict):
            raise RemoteModelError(f"{self.name} {url} answered something that is not a JSON object "
                                   f"({raw[:80]!r}); is base_url an OpenAI-compatible API?")
        return doc


def _server_message(doc: Any) -> str:
    """The error text of the usual shapes: OpenAI ``{"error": {"message"}}``, FastAPI
    ``{"detail": ...}``, ``{"error": "..."}``, ``{"message": ...}``."""
    if not isinstance(doc, dict):
        return ""
    err = doc.get("error")
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    for key in ("detail", "error", "message"):
        if doc.get(key):
            v = doc[key]
            return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)[:300]
    return ""


def _why(e: BaseException) -> str:
    return str(e) or type(e).__name__
