"""The websocket server: one :class:`Server` object owns the loaded models, the ASR batcher,
the inference executor, the metrics and the open connections (no module-level state).

One port serves both websockets and plain HTTP (``process_request``):

* ``/ws``: the native protocol (:mod:`streamst.server.connection`, docs/protocol.md)
* ``/funasr``: the FunASR runtime protocol (:mod:`streamst.server.funasr_compat`); with
  ``funasr_port`` also at every path of a second port, as FunASR's own server does
* ``/v1/realtime/translations``: OpenAI Realtime Translation (:mod:`streamst.server.openai_realtime`)
* ``GET /healthz`` (JSON), ``GET /metrics`` (Prometheus text)
* ``GET /`` and ``GET /<name>``: the files of the ``streamst/web/`` package folder

Limits: ``max_sessions`` (``server_full``), ``max_frame_bytes`` (``frame_too_big``; frames
over twice that are refused by websockets itself with 1009), ``max_session_s``,
``idle_timeout_s``, an optional bearer token (``Authorization: Bearer T`` or ``?token=T``),
allowed origins. Keepalive: websocket pings every ``ping_interval_s`` plus the
application-level ``ping`` for browsers. SIGTERM / SIGINT close the server gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import json
import logging
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamst.errors import ModelNotFoundError
from streamst.loading import Models, RuntimeOptions
from streamst.profiles import load_profile
from streamst.server.connection import CLOSE_GRACE_S, Connection, NativeConnection, reset
from streamst.server.funasr_compat import FunasrConnection
from streamst.server import strict
from streamst.server.guard import log_failure
from streamst.server.metrics import ServerMetrics
from streamst.server.openai_realtime import PATH as OPENAI_PATH
from streamst.server.openai_realtime import OpenAIConnection
from streamst.server.protocol import ProtocolError, ServerMessage
from streamst.server.worker import AsrBatcher

log = logging.getLogger(__name__)

MAX_QUEUE = 8  # incoming frames buffered per connection by websockets before TCP pushes back

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8", ".wasm": "application/wasm",
}
# websocket path -> connection class; an endpoint is one entry here (plus its module)
ENDPOINTS: dict[str, type[Connection]] = {"/ws": NativeConnection, "/funasr": FunasrConnection,
                                          OPENAI_PATH: OpenAIConnection}
WS_PATHS = tuple(ENDPOINTS)


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server is started with (``streamst serve`` maps its flags onto this)."""

    profile: str = "default"
    host: str = "127.0.0.1"
    port: int = 8765  # 0: an ephemeral port (tests)
    funasr_port: int | None = None  # also serve FunASR at the root path of this port (FunASR: 10095)
    device: str = "cpu"
    quantize: str = "none"  # "int8": dynamic int8 Linear layers in every model (CPU)
    threads: int | None = None  # torch threads per model call on CPU (None: $STREAMST_TORCH_THREADS, else 1)
    e2e_lean: bool = False  # every session's e2e path with PipelineConfig.e2e_lean's cost levers
    max_sessions: int = 8  # concurrent websocket sessions (both endpoints); more get server_full
    max_frame_bytes: int = 256 * 1024  # one websocket message; 100 ms of 48 kHz f32 is 19 KiB
    max_session_s: float = 4 * 3600.0  # wall clock (or audio) length of one session
    idle_timeout_s: float = 60.0  # no message at all (audio, ping) for this long closes
    token: str | None = None  # bearer token required from clients when set
    allowed_origins: tuple[str, ...] = ()  # empty: any; browsers always send Origin
    ping_interval_s: float = 20.0  # websocket-level pings (non-browser keepalive)
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 2.0
    status_interval_s: float = 1.0  # period of status messages
    max_pending_s: float = 30.0  # audio waiting for inference per session before `overloaded`
    send_queue: int = 1024  # messages queued for a client: at half, reading it pauses; beyond, `slow_consumer`
    send_queue_bytes: int = 4 * 1024 * 1024  # the same bound in bytes
    slow_consumer_s: float = 15.0  # something to send and no send completed for this long: `slow_consumer`
    start_timeout_s: float = 10.0  # from the handshake to `start` (/ws) or the first audio (/funasr)
    step_ms: int = 60  # the chunk grid: audio goes to the pipeline in pieces of this, whatever the load
    write_limit: int = 256 * 1024  # bytes buffered in the transport before sends wait
    send_buffer_bytes: int = 0  # SO_SNDBUF of each client socket (0: the OS default)
    workers: int = 0  # inference threads; 0: max_sessions
    asr_batch: int = 8  # max windows per batched ASR call
    asr_batch_wait_ms: float = 5.0  # how long the batcher waits for more requests
    mt_batch_rows: int = 32  # max rows per batched decoder forward across sessions; 0: no cross-session batching
    # the same for the e2e model's decoder; None: mt_batch_rows on an accelerator, 0 on CPU (at real size
    # on a few cores one batching thread is slower than the sessions' own threads: docs/architecture.md)
    e2e_batch_rows: int | None = None
    mt_batch_wait_ms: float = 2.0  # how long the decoder batcher waits for the next forward of a decode under way
    models_root: Path | None = None  # models folder (default: $STREAMST_MODELS / models/)

    def __post_init__(self) -> None:
        if self.max_sessions < 1 or self.max_frame_bytes < 1024 or self.idle_timeout_s <= 0 or self.max_session_s <= 0:
            raise ValueError("need max_sessions >= 1, max_frame_bytes >= 1024, positive timeouts")
        if self.send_queue < 2 or self.send_queue_bytes < 2 * self.max_frame_bytes or self.slow_consumer_s <= 0 \
                or self.start_timeout_s <= 0:
            raise ValueError("need send_queue >= 2, send_queue_bytes >= 2 * max_frame_bytes, positive timeouts")
        if self.mt_batch_rows < 0 or self.mt_batch_wait_ms < 0 or (self.e2e_batch_rows or 0) < 0:
            raise ValueError("need mt_batch_rows >= 0, e2e_batch_rows >= 0 and mt_batch_wait_ms >= 0")
        if self.step_ms < 10 or self.step_ms % 10:
            raise ValueError(f"step_ms must be a positive multiple of 10, got {self.step_ms}")

    @property
    def e2e_rows(self) -> int:
        """Rows per batched e2e decoder forward in effect (0: none)."""
        if self.e2e_batch_rows is not None:
            return self.e2e_batch_rows
        return 0 if self.device.startswith("cpu") else self.mt_batch_rows


class Server:
    """The streamst server. ``await start()``, then ``port``; ``await close()``;
    ``await serve_forever()`` runs until SIGTERM / SIGINT."""

    def __init__(self, config: ServerConfig, models: Models | None = None) -> None:
        self.config = config
        self.models = models
        self.metrics = ServerMetrics(config.profile)
        self.connections: dict[str, Connection] = {}
        self.executor: ThreadPoolExecutor | None = None
        self.batcher: AsrBatcher | None = None
        self.mt_batcher: Any = None  # streamst.mt.batching.ForwardBatcher (imports torch)
        self.mt_lm: Any = None  # its BatchedLM: the simultaneous decoders' forwards, batched across sessions
        self.e2e_batcher: Any = None  # the same for the e2e model's decoder (modes e2e / all)
        self.e2e_lm: Any = None
        self._ws: WsServer | None = None
        self._funasr_ws: WsServer | None = None
        self.e2e_available = False  # the profile's e2e model loaded (modes e2e / all)
        self.started = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        if self.models is None:
            self.models = Models(load_profile(cfg.profile), RuntimeOptions(cfg.device, cfg.quantize, cfg.threads), root=cfg.models_root)
        await asyncio.to_thread(self._load_models)
        self.batcher = AsrBatcher(self.models.asr, max_batch=cfg.asr_batch, max_wait_ms=cfg.asr_batch_wait_ms,
                                  on_batch=self.metrics.asr_batch)
        self.mt_batcher, self.mt_lm = self._decoder_batcher(self.models.mt, "decoder", cfg.mt_batch_rows)
        if self.e2e_available:  # the e2e model's decoder forwards, batched across sessions the same way
            self.e2e_batcher, self.e2e_lm = self._decoder_batcher(self.models.e2e, "e2e", cfg.e2e_rows)
        self.executor = ThreadPoolExecutor(max_workers=cfg.workers or cfg.max_sessions,
                                           thread_name_prefix="streamst-session")
        options = dict(max_size=2 * cfg.max_frame_bytes, max_queue=MAX_QUEUE, write_limit=cfg.write_limit,
                       ping_interval=cfg.ping_interval_s, ping_timeout=cfg.ping_timeout_s,
                       close_timeout=cfg.close_timeout_s + CLOSE_GRACE_S, server_header="streamst",
                       select_subprotocol=_echo_binary_subprotocol)
        self._ws = await serve(self._handle, cfg.host, cfg.port, process_request=self._process_request, **options)
        if cfg.funasr_port is not None:
            self._funasr_ws = await serve(self._handle_funasr_port, cfg.host, cfg.funasr_port,
                                          process_request=self._process_funasr_request, **options)
        self.started = time.monotonic()
        log.info("streamst serving profile %s on ws://%s:%d/ws", cfg.profile, cfg.host, self.port)

    def _decoder_batcher(self, model: Any, name: str, rows: int) -> tuple[Any, Any]:
        """A :class:`~streamst.mt.batching.ForwardBatcher` over ``model``'s local decoder and the
        :class:`~streamst.mt.batching.BatchedLM` sessions decode through; (None, None) when
        batching is off (``rows`` 0) or the decoder is not local (an HTTP backend)."""
        from streamst.mt.kv import SegmentLM

        lm = getattr(model, "lm", None)
        if not rows or not isinstance(lm, SegmentLM):
            return None, None
        from streamst.mt.batching import BatchedLM, ForwardBatcher

        batcher = ForwardBatcher(lm, max_rows=rows, max_wait_ms=self.config.mt_batch_wait_ms, name=name)
        return batcher, BatchedLM(lm, batcher)

    def _load_models(self) -> None:
        """Load every model once, before the first client (start-up cost, not a session's)."""
        assert self.models is not None
        self.models.asr, self.models.mt, self.models.punc  # noqa: B018 - properties load
        self.models.new_vad()
        self.e2e_available = False
        if self.models.has_e2e:  # optional: without it, modes e2e/all are refused (mode_unavailable)
            try:
                self.models.e2e  # noqa: B018
                self.e2e_available = True
            except ModelNotFoundError as e:
                log.warning("modes e2e and all are unavailable: %s", e)

    @property
    def port(self) -> int:
        assert self._ws is not None, "start() first"
        return self._ws.sockets[0].getsockname()[1]

    @property
    def bound_funasr_port(self) -> int | None:
        """The FunASR port actually bound (``funasr_port=0`` picks a free one), or None."""
        return self._funasr_ws.sockets[0].getsockname()[1] if self._funasr_ws is not None else None

    def recognize(self, window, language):
        """The ``RecognizeFn`` sessions use: through the batcher."""
        assert self.batcher is not None
        return self.batcher.recognize(window, language)

    async def close(self) -> None:
        """Tell every client ``shutting_down`` (1001), stop accepting, release threads."""
        if self._ws is None:
            return
        servers = [w for w in (self._ws, self._funasr_ws) if w is not None]
        for w in servers:
            w.close(close_connections=False)
        for conn in list(self.connections.values()):
            conn.fail(ProtocolError("shutting_down", "the server is shutting down"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.close_timeout_s + 2):
                await asyncio.gather(*(w.wait_closed() for w in servers))
        for w in servers:
            w.close(close_connections=True)
            await w.wait_closed()
        self._ws = self._funasr_ws = None
        for batcher in (self.batcher, self.mt_batcher, self.e2e_batcher):  # joins their threads: off the event loop
            if batcher:
                await asyncio.to_thread(batcher.close)
        if self.executor:
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def serve_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.close()

    # -- HTTP -----------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path in WS_PATHS:
            return None  # websocket handshake
        if path == "/healthz":
            return _response(http.HTTPStatus.OK, "application/json", json.dumps(self.health()).encode())
        if path == "/languages":  # the page's language pickers (streamst.profiles.Profile.language_menu)
            return _response(http.HTTPStatus.OK, "application/json; charset=utf-8",
                             json.dumps(self.models.profile.language_menu(), ensure_ascii=False).encode())
        if path == "/metrics":
            return _response(http.HTTPStatus.OK, "text/plain; version=0.0.4; charset=utf-8",
                             self.metrics.render(self._gauges).encode())
        static = self._static(path)
        if static is not None:
            return _response(http.HTTPStatus.OK, CONTENT_TYPES.get(static.suffix, "application/octet-stream"),
                             static.read_bytes())
        return _response(http.HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")

    @staticmethod
    def _static(path: str) -> Path | None:
        """A file of ``streamst/web/`` by exact name (whitelist: what is there, no dot-files,
        no sub-folders); ``/`` is ``index.html``."""
        name = "index.html" if path == "/" else path[1:]
        if not _STATIC_NAME.fullmatch(name) or not WEB_DIR.is_dir():
            return None
        files = {p.name: p for p in WEB_DIR.iterdir() if p.is_file()}
        return files.get(name)

    def health(self) -> dict:
        return {"ok": True, "sessions": len(self.connections), "max_sessions": self.config.max_sessions,
                "profile": self.config.profile, "uptime_s": round(time.monotonic() - self.started, 1)}

    def _gauges(self) -> dict[str, float]:
        lags = [c.runner.lag_ms for c in self.connections.values() if c.runner is not None]
        return {"sessions_active": len(self.connections), "lag_ms_max": max(lags, default=0)}

    def _process_funasr_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The FunASR port: a websocket handshake at any path (FunASR clients open the root);
        plain HTTP as on the main port."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        return self._process_request(connection, request)

    # -- websocket ------------------------------------------------------------------------------
    async def _handle_funasr_port(self, ws: ServerConnection) -> None:
        await self._handle(ws, funasr=True)

    async def _handle(self, ws: ServerConnection, *, funasr: bool = False) -> None:
        url = urlsplit(ws.request.path)
        cls = FunasrConnection if funasr else ENDPOINTS.get(url.path, NativeConnection)
        if self.config.send_buffer_bytes:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer_bytes)
        try:
            self._admit(ws, url.query)
        except ProtocolError as e:
            self.metrics.error(e.code)
            log_failure("-", e)
            try:
                async with asyncio.timeout(self.config.close_timeout_s):
                    msg = cls.refusal(e)
                    await ws.send(msg.to_json() if isinstance(msg, ServerMessage) else strict.dumps(msg), text=True)
                    await ws.close(e.close_code, e.code)
            except TimeoutError:
                reset(ws)  # a client that does not read cannot hold the refusal open
            except (ConnectionClosed, OSError):
                pass  # gone already
            return
        conn = cls(self, ws)
        self.connections[conn.id] = conn
        self.metrics.session_started(conn.endpoint)
        try:
            await conn.run()
        finally:
            del self.connections[conn.id]

    def _admit(self, ws: ServerConnection, query: str) -> None:
        """Origin, token and capacity checks, in that order."""
        cfg = self.config
        origins = ws.request.headers.get_all("Origin")
        if cfg.allowed_origins and origins and (len(origins) > 1 or origins[0] not in cfg.allowed_origins):
            raise ProtocolError("origin_not_allowed", f"origin {strict.short(', '.join(origins))} is not allowed")
        if cfg.token:
            auths = ws.request.headers.get_all("Authorization")
            if len(auths) > 1:
                raise ProtocolError("unauthorized", "more than one Authorization header")
            scheme, _, credentials = (auths[0] if auths else "").strip().partition(" ")
            if auths and scheme.lower() == "bearer":  # auth schemes are case-insensitive (RFC 9110)
                given = credentials.strip()
            else:  # browsers cannot set headers on websockets: ?token=T
                given = (parse_qs(query).get("token") or [""])[0]
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), cfg.token.encode()):
                raise ProtocolError("unauthorized", "missing or wrong token (Authorization: Bearer T or ?token=T)")
        if len(self.connections) >= cfg.max_sessions:
            raise ProtocolError("server_full", f"the server holds {cfg.max_sessions} sessions; try again later")


def _response(status: http.HTTPStatus, content_type: str, body: bytes) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, body)


def _echo_binary_subprotocol(connection: ServerConnection, offered) -> str | None:
    """FunASR clients offer the ``binary`` subprotocol (browsers fail the handshake unless
    it is echoed); nothing else is negotiated."""
    return "binary" if "binary" in offered else None
