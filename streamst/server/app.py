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
import functools
import hmac
import http
import json
import logging
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamst.errors import ModelNotFoundError, UserError
from streamst.loading import Models, RuntimeOptions, engine_options
from streamst.profiles import load_profile
from streamst.server.config import ServerConfig  # noqa: F401 - re-exported: `streamst serve` maps its flags onto it
from streamst.server.connection import CLOSE_GRACE_S, Connection, NativeConnection, reset
from streamst.server.funasr_compat import FunasrConnection
from streamst.server import strict
from streamst.server.guard import log_failure
from streamst.server.metrics import ServerMetrics
from streamst.server.openai_realtime import PATH as OPENAI_PATH
from streamst.server.openai_realtime import OpenAIConnection
from streamst.server.protocol import ProtocolError, ServerMessage
from streamst.server.resume import ResumableConnection, ResumeRegistry, drain
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
ENDPOINTS: dict[str, type[Connection]] = {"/ws": ResumableConnection, "/funasr": FunasrConnection,
                                          OPENAI_PATH: OpenAIConnection}
WS_PATHS = tuple(ENDPOINTS)


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
        self.tts: Any = None  # the speech engine of spoken output (streamst/speak); None: text only
        self.started = 0.0
        self.resume = ResumeRegistry(config.resume_options)
        self.draining = False  # SIGTERM: /healthz answers 503, new sessions are refused
        self.connections_changed = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        if self.models is None:
            profile = load_profile(cfg.profile)
            runtime = RuntimeOptions(cfg.device, cfg.quantize, cfg.threads,
                                     **engine_options(profile, cfg.engine, cfg.engine_url))
            self.models = Models(profile, runtime, root=cfg.models_root)
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
            self._funasr_ws = await serve(self._handle_funasr_port, cfg.funasr_host or cfg.host, cfg.funasr_port,
                                          process_request=self._process_funasr_request, **options)
            warn_funasr_port(cfg)
        self.started = time.monotonic()
        log.info("streamst serving profile %s on ws://%s:%d/ws", cfg.profile, cfg.host, self.port)

    def _decoder_batcher(self, model: Any, name: str, rows: int) -> tuple[Any, Any]:
        """A :class:`~streamst.mt.batching.ForwardBatcher` over ``model``'s local decoder and the
        :class:`~streamst.mt.batching.BatchedLM` sessions decode through; (None, None) when
        batching is off (``rows`` 0) or the engine batches by itself (an HTTP server, vLLM:
        the sessions then decode through ``model.engine`` directly)."""
        if not rows:
            return None, None
        batcher, engine = model.engine.batched(max_rows=rows, max_wait_ms=self.config.mt_batch_wait_ms, name=name)
        return (batcher, engine) if batcher is not None else (None, None)

    def _load_models(self) -> None:
        """Load every model once, before the first client (start-up cost, not a session's)."""
        assert self.models is not None
        self.models.asr, self.models.mt, self.models.punc  # noqa: B018 - properties load
        self.models.new_vad()
        from streamst.speak.serving import server_synthesizer

        self.tts = server_synthesizer(self.models, self.config.tts)
        if self.config.speakers:
            if not self.models.has_spk:
                raise UserError(f"--speakers needs a speaker model, and profile '{self.models.profile.name}' has "
                                "none (add an `spk` entry, or use --profile tiny / default)")
            self.models.spk  # noqa: B018
        self.e2e_available = False
        if self.models.has_e2e:  # optional: without it, modes e2e/all are refused (mode_unavailable)
            try:
                self.models.e2e  # noqa: B018
                self.e2e_available = True
            except ModelNotFoundError as e:
                log.warning("modes e2e and all are unavailable: %s", e)
        models = [("mt", self.models.mt)] + ([("e2e", self.models.e2e)] if self.e2e_available else [])
        for role, model in models:  # the decoder engine's request latency in /metrics
            model.engine.observe(functools.partial(self.metrics.engine_request, role))

    @property
    def port(self) -> int:
        assert self._ws is not None, "start() first"
        return self._ws.sockets[0].getsockname()[1]

    @property
    def bound_funasr_port(self) -> int | None:
        """The FunASR port actually bound (``funasr_port=0`` picks a free one), or None."""
        return self._funasr_ws.sockets[0].getsockname()[1] if self._funasr_ws is not None else None

    def speakers(self, wanted: bool | None = None, max_speakers: int | None = None) -> Any:
        """A new session's :class:`~streamst.speakers.turns.SpeakerTurns`, or None when speakers
        are off (server setting, or the client's ``speakers: false``)."""
        if not self.config.speakers or wanted is False:
            return None
        from streamst.speakers.turns import session_speakers

        assert self.models is not None
        return session_speakers(self.models.spk, max_speakers)

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
        self.resume.close()
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
            if self.config.drain_s > 0:
                self.draining = True
                log.info("draining: open sessions go on for up to %g s", self.config.drain_s)
                await drain(self, self.config.drain_s)
            await self.close()

    # -- HTTP -----------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path in WS_PATHS:
            return None  # websocket handshake
        if path == "/healthz":  # 503 while draining: load balancers take the instance out
            status = http.HTTPStatus.SERVICE_UNAVAILABLE if self.draining else http.HTTPStatus.OK
            return _response(status, "application/json", json.dumps(self.health()).encode())
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
        return {"ok": not self.draining, "draining": self.draining, "sessions": len(self.connections),
                "max_sessions": self.config.max_sessions, "profile": self.config.profile,
                "uptime_s": round(time.monotonic() - self.started, 1), "resume": self.resume.stats()}

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
            self._admit(ws, url.query, open_port=funasr and self.config.funasr_open)
            if self.draining and cls is not ResumableConnection:  # /ws may still resume a session here
                raise ProtocolError("shutting_down", "the server is draining; connect to another instance")
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
            self.connections_changed.set()

    def _admit(self, ws: ServerConnection, query: str, *, open_port: bool = False) -> None:
        """Origin, token and capacity checks, in that order (no token on an ``open_port``)."""
        cfg = self.config
        origins = ws.request.headers.get_all("Origin")
        if cfg.allowed_origins and origins and (len(origins) > 1 or origins[0] not in cfg.allowed_origins):
            raise ProtocolError("origin_not_allowed", f"origin {strict.short(', '.join(origins))} is not allowed")
        if cfg.token and not open_port:
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


def warn_funasr_port(cfg: ServerConfig) -> None:
    """FunASR clients cannot send a token: say what the FunASR port's setting means."""
    host = cfg.funasr_host or cfg.host
    if cfg.token and not cfg.funasr_open:
        log.warning("the FunASR port %d requires the token, which FunASR clients cannot send: they are refused "
                    "(unauthorized). Use --funasr-open (with --funasr-host 127.0.0.1 or a private address) "
                    "to let them in", cfg.funasr_port)
    elif cfg.funasr_open and cfg.token and not _loopback(host):
        log.warning("WARNING: the FunASR port %s:%d takes NO token (--funasr-open) and is reachable beyond this "
                    "machine: anyone who can reach it can use the server. Bind it with --funasr-host 127.0.0.1 "
                    "or a private address, or firewall it", host, cfg.funasr_port)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or "" (every interface): assume reachable


def _response(status: http.HTTPStatus, content_type: str, body: bytes) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, body)


def _echo_binary_subprotocol(connection: ServerConnection, offered) -> str | None:
    """FunASR clients offer the ``binary`` subprotocol (browsers fail the handshake unless
    it is echoed); nothing else is negotiated."""
    return "binary" if "binary" in offered else None
