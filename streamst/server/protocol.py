"""The streamst websocket protocol, version 1 (docs/protocol.md): every message type as a
dataclass, parsing with one specific error code per kind of mistake, and the close codes.

Client -> server (text frames are JSON objects with a ``type``; binary frames are audio):

* ``start``: opens the session (exactly once, first); answered by ``ready``.
* binary frames: audio in the ``encoding`` and ``sample_rate`` announced by ``start``.
* ``ping``: application-level keepalive (browsers cannot send websocket pings); ``pong``.
* ``end``: end of stream. The server flushes, sends the remaining events, an ``end``
  message with a summary, and closes with 1000.

Server -> client: ``ready``, ``pong``, the pipeline events (``transcript``,
``translation``, ``latency``: :mod:`streamst.events` ``to_dict()``), periodic ``status``,
``end``, and ``error`` followed by a close with the code in :data:`ERRORS`.

A transcript event with ``kind: "final"`` ends ONE utterance; the session ends only with
the ``end`` message.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from streamst.asr.features import FRAME_MS
from streamst.audio import MAX_RATE, MIN_RATE
from streamst.languages import LANGUAGES as MT_LANGUAGES
from streamst.pipeline import AUTO, MODES, PipelineConfig
from streamst.policy.config import POLICY_NAMES, PolicyConfig

PROTOCOL_VERSION = 1
ENCODINGS = ("pcm_s16le", "f32le")
SOURCE_LANGS = ("zh", "en", "yue", "ja", "ko")  # SenseVoice languages the MT also knows
TARGET_LANGS = tuple(MT_LANGUAGES)
CHUNK_MS_RANGE = (240, 3000)
MAX_TARGETS = 4

# Close codes (RFC 6455 where one fits; 4000-4999 are application codes).
CLOSE_NORMAL = 1000  # after the ``end`` summary
CLOSE_GOING_AWAY = 1001  # server shutting down
CLOSE_UNSUPPORTED = 1003  # a binary frame before ``start``
CLOSE_INVALID = 1007  # malformed or invalid message, bad audio, wrong order
CLOSE_POLICY = 1008  # authentication / origin
CLOSE_TOO_BIG = 1009  # frame larger than the server's max frame size
CLOSE_INTERNAL = 1011  # unexpected server error
CLOSE_TRY_LATER = 1013  # server full / overloaded
CLOSE_IDLE = 4001  # no message for idle_timeout_s
CLOSE_TOO_LONG = 4002  # session longer than max_session_s
CLOSE_SLOW_CONSUMER = 4003  # the client does not read its results

# error code -> close code. Every error the server sends is one of these.
ERRORS: dict[str, int] = {
    "binary_before_start": CLOSE_UNSUPPORTED,
    "malformed_json": CLOSE_INVALID,  # not JSON, or not a JSON object
    "unknown_type": CLOSE_INVALID,  # missing or unknown "type"
    "unknown_field": CLOSE_INVALID,  # a field this message type does not have
    "missing_field": CLOSE_INVALID,
    "bad_value": CLOSE_INVALID,  # a field of the wrong type or out of range
    "unsupported_version": CLOSE_INVALID,
    "bad_sample_rate": CLOSE_INVALID,
    "bad_encoding": CLOSE_INVALID,
    "bad_language": CLOSE_INVALID,
    "bad_policy": CLOSE_INVALID,
    "mode_unavailable": CLOSE_INVALID,  # e.g. mode e2e on a profile without an end-to-end model
    "bad_audio": CLOSE_INVALID,  # odd byte count, NaN, out-of-range floats
    "wrong_order": CLOSE_INVALID,  # start twice, a message after end, ...
    "unauthorized": CLOSE_POLICY,
    "origin_not_allowed": CLOSE_POLICY,
    "frame_too_big": CLOSE_TOO_BIG,
    "server_full": CLOSE_TRY_LATER,
    "overloaded": CLOSE_TRY_LATER,  # pending audio beyond the per-session bound
    "idle_timeout": CLOSE_IDLE,
    "session_too_long": CLOSE_TOO_LONG,
    "slow_consumer": CLOSE_SLOW_CONSUMER,
    "shutting_down": CLOSE_GOING_AWAY,
    "internal_error": CLOSE_INTERNAL,
}


class ProtocolError(Exception):
    """A client mistake or a limit: becomes an ``error`` message and a close."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def close_code(self) -> int:
        return ERRORS[self.code]

    def to_message(self) -> "ErrorMessage":
        return ErrorMessage(code=self.code, message=self.message)


# -- client -> server ----------------------------------------------------------------------
@dataclass(frozen=True)
class PolicySpec:
    name: str = "reorder-aware"
    overrides: tuple[tuple[str, Any], ...] = ()  # PolicyConfig fields set explicitly


@dataclass(frozen=True)
class Start:
    version: int = PROTOCOL_VERSION
    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    src_lang: str = "zh"
    tgt_langs: tuple[str, ...] = ("en",)
    mode: str = "simul"
    policy: PolicySpec = PolicySpec()
    chunk_ms: int = 600

    def to_message(self) -> dict[str, Any]:
        """The ``start`` message as clients send it: the one place it is built (``streamst mic``,
        ``streamst bench server``, the demos; the page's app.js sends the same fields)."""
        policy: dict[str, Any] = {"name": self.policy.name, **dict(self.policy.overrides)}
        return {"type": "start", "version": self.version, "sample_rate": self.sample_rate, "encoding": self.encoding,
                "src_lang": self.src_lang, "tgt_langs": list(self.tgt_langs), "mode": self.mode,
                "policy": policy, "chunk_ms": self.chunk_ms}

    def pipeline_config(self) -> PipelineConfig:
        try:
            return PipelineConfig.create(self.src_lang, self.tgt_langs, mode=self.mode,  # type: ignore[arg-type]
                                         policy=self.policy.name, chunk_ms=self.chunk_ms,
                                         **dict(self.policy.overrides))
        except ValueError as e:
            code = "bad_policy" if "policy" in str(e) else "bad_value"
            raise ProtocolError(code, str(e)) from e


@dataclass(frozen=True)
class Ping:
    id: Any = None


@dataclass(frozen=True)
class End:
    pass


ClientMessage = Start | Ping | End

_POLICY_FIELDS = {f.name for f in dataclasses.fields(PolicyConfig)} - {"name"}
_START_FIELDS = {"type", "version", "sample_rate", "encoding", "src_lang", "tgt_langs", "mode", "policy", "chunk_ms"}


def _int(obj: dict[str, Any], key: str, default: int) -> int:
    v = obj.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("bad_value", f"start.{key} must be an integer, got {v!r}")
    return v


def _str(obj: dict[str, Any], key: str, default: str) -> str:
    v = obj.get(key, default)
    if not isinstance(v, str):
        raise ProtocolError("bad_value", f"start.{key} must be a string, got {v!r}")
    return v


def _unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ProtocolError("unknown_field", f"unknown field(s) in {where}: {', '.join(extra)} "
                                             f"(allowed: {', '.join(sorted(allowed))})")


def _parse_policy(raw: Any) -> PolicySpec:
    if raw is None:
        return PolicySpec()
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ProtocolError("bad_policy", f"start.policy must be an object or a name, got {raw!r}")
    _unknown(raw, _POLICY_FIELDS | {"name"}, "start.policy")
    name = raw.get("name", "reorder-aware")
    if name not in POLICY_NAMES:
        raise ProtocolError("bad_policy", f"policy.name must be one of {', '.join(POLICY_NAMES)}, got {name!r}")
    overrides = tuple(sorted((k, v) for k, v in raw.items() if k != "name"))
    return PolicySpec(name=name, overrides=overrides)


def parse_start(obj: dict[str, Any]) -> Start:
    _unknown(obj, _START_FIELDS, "start")
    version = _int(obj, "version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {version} is not supported (server speaks {PROTOCOL_VERSION})")
    rate = obj.get("sample_rate", 16000)
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError("bad_sample_rate", f"sample_rate {rate!r} is not supported (integer {MIN_RATE}..{MAX_RATE} Hz)")
    encoding = _str(obj, "encoding", "pcm_s16le")
    if encoding not in ENCODINGS:
        raise ProtocolError("bad_encoding", f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    src = _str(obj, "src_lang", "zh")
    if src not in SOURCE_LANGS and src != AUTO:
        raise ProtocolError("bad_language", f"src_lang must be one of {', '.join(SOURCE_LANGS)} or {AUTO}, got {src!r}")
    tgts = obj.get("tgt_langs", ["en"])
    if isinstance(tgts, str):
        tgts = [tgts]
    if not isinstance(tgts, list) or not tgts or not all(isinstance(t, str) for t in tgts):
        raise ProtocolError("bad_language", f"tgt_langs must be a non-empty list of language codes, got {tgts!r}")
    bad = [t for t in tgts if t not in TARGET_LANGS]
    if bad:
        raise ProtocolError("bad_language", f"unsupported target language(s) {', '.join(map(repr, bad))} "
                                            f"(known: {', '.join(TARGET_LANGS)})")
    if len(set(tgts)) != len(tgts) or len(tgts) > MAX_TARGETS or src in tgts:
        raise ProtocolError("bad_language", f"tgt_langs must be 1..{MAX_TARGETS} distinct languages other than src_lang, got {tgts!r}")
    mode = _str(obj, "mode", "simul")
    if mode not in MODES:
        raise ProtocolError("bad_value", f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    chunk_ms = _int(obj, "chunk_ms", 600)
    lo, hi = CHUNK_MS_RANGE
    if not lo <= chunk_ms <= hi or chunk_ms % FRAME_MS:
        raise ProtocolError("bad_value", f"chunk_ms must be a multiple of {FRAME_MS} in {lo}..{hi}, got {chunk_ms}")
    start = Start(version=version, sample_rate=rate, encoding=encoding, src_lang=src, tgt_langs=tuple(tgts),
                  mode=mode, policy=_parse_policy(obj.get("policy")), chunk_ms=chunk_ms)
    try:
        start.pipeline_config()  # validates policy values against the pair
    except TypeError as e:  # pragma: no cover - unknown keys are caught above
        raise ProtocolError("bad_policy", str(e)) from e
    return start


def parse_text(text: str) -> ClientMessage:
    """Parse one client text frame. Raises :class:`ProtocolError` with a specific code."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError("malformed_json", f"text frame is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ProtocolError("malformed_json", f"a message must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "start":
        return parse_start(obj)
    if kind == "ping":
        _unknown(obj, {"type", "id"}, "ping")
        return Ping(id=obj.get("id"))
    if kind == "end":
        _unknown(obj, {"type"}, "end")
        return End()
    raise ProtocolError("unknown_type", f"unknown message type {kind!r} (expected start, ping or end)")


# -- server -> client ----------------------------------------------------------------------
@dataclass(frozen=True)
class ServerMessage:
    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}  # type: ignore[attr-defined]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class Ready(ServerMessage):
    session: str
    config: dict[str, Any]
    version: int = PROTOCOL_VERSION
    type = "ready"


@dataclass(frozen=True)
class Pong(ServerMessage):
    id: Any = None
    type = "pong"


@dataclass(frozen=True)
class Status(ServerMessage):
    audio_ms: int  # audio received
    processed_ms: int  # audio that went through the pipeline
    lag_ms: int  # audio_ms - processed_ms: how far inference is behind
    coalesced_ms: int  # audio that arrived while an update ran and was merged into the next
    updates: int  # pipeline updates run
    type = "status"


@dataclass(frozen=True)
class EndMessage(ServerMessage):
    summary: dict[str, Any] = field(default_factory=dict)
    type = "end"


@dataclass(frozen=True)
class ErrorMessage(ServerMessage):
    code: str
    message: str
    type = "error"


def resolved_config(start: Start, cfg: PipelineConfig) -> dict[str, Any]:
    """The configuration a session actually runs with (echoed in ``ready``)."""
    policies = {t: dataclasses.asdict(cfg.policy_for(t)) for t in cfg.tgt_langs}
    return {
        "sample_rate": start.sample_rate, "encoding": start.encoding, "src_lang": cfg.src_lang,
        "tgt_langs": list(cfg.tgt_langs), "mode": cfg.mode, "chunk_ms": cfg.asr.chunk_ms,
        "policy": policies,
    }
