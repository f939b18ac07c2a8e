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
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from streamst.asr.features import FRAME_MS
from streamst.audio import MAX_RATE, MIN_RATE
from streamst.languages import LANGUAGES as MT_LANGUAGES
from streamst.modes import AUTO, MODES, paths_of
from streamst.policy.config import POLICY_NAMES, POLICY_OPTIONS, PolicyConfig
from streamst.server import strict
from streamst.server.codes import ERRORS, ProtocolError  # noqa: F401 - re-exported (every close code is there)

PROTOCOL_VERSION = 1
ENCODINGS = ("pcm_s16le", "f32le")
SOURCE_LANGS = tuple(MT_LANGUAGES)  # any language of the table; which ones a server hears is its profile's
# (Profile.source_problem, checked when the session begins)
TARGET_LANGS = tuple(MT_LANGUAGES)
CHUNK_MS_RANGE = (240, 3000)
MAX_TARGETS = 4
MAX_SPEAKERS = 16  # start.max_speakers at most (streamst.speakers.cluster.MAX_SPEAKERS_LIMIT)
MAX_PING_ID = 256  # characters of a string ping id (ids are echoed: they must stay small)
MAX_ID_INT = 2**53  # integers beyond this lose precision in JavaScript clients


# -- client -> server ----------------------------------------------------------------------
class _Strict(BaseModel):
    """Schema base: unknown fields are errors, no coercion (``true`` is not 1, "1" is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ``start.policy``: a name and the declared options (streamst.policy.config.POLICY_OPTIONS), each range-checked
PolicyIn = create_model("PolicyIn", __base__=_Strict, name=(str, "reorder-aware"), **{  # type: ignore[call-overload]
    o.name: ((o.type if o.range is None else Annotated[o.type, Field(ge=o.range[0], le=o.range[1])]) | None, None)
    for o in POLICY_OPTIONS})


class StartIn(_Strict):
    type: Literal["start"]
    version: int = PROTOCOL_VERSION
    sample_rate: Annotated[int, Field(ge=MIN_RATE, le=MAX_RATE)] = 16000
    encoding: str = "pcm_s16le"
    src_lang: str = "zh"
    tgt_langs: Annotated[list[str], Field(min_length=1, max_length=MAX_TARGETS)] = ["en"]
    mode: str = "simul"
    policy: PolicyIn = PolicyIn()
    chunk_ms: Annotated[int, Field(ge=CHUNK_MS_RANGE[0], le=CHUNK_MS_RANGE[1], multiple_of=FRAME_MS)] = 600
    speak: Annotated[list[str], Field(max_length=MAX_TARGETS)] = []  # targets to speak (streamst/speak)
    speakers: bool | None = None  # speaker labels (default: the server's setting)
    max_speakers: Annotated[int, Field(ge=1, le=MAX_SPEAKERS)] | None = None


PingId = (Annotated[str, Field(max_length=MAX_PING_ID)] | bool | Annotated[int, Field(ge=-MAX_ID_INT, le=MAX_ID_INT)]
          | Annotated[float, Field(gt=-MAX_ID_INT, lt=MAX_ID_INT)] | None)  # a scalar: echoed, so it stays small


class PingIn(_Strict):
    type: Literal["ping"]
    id: PingId = None


class EndIn(_Strict):
    type: Literal["end"]


# field (dotted path; the longest listed prefix wins) -> error code; everything else bad_value
START_CODES = {"sample_rate": "bad_sample_rate", "encoding": "bad_encoding", "src_lang": "bad_language",
               "tgt_langs": "bad_language", "policy.name": "bad_policy", "speak": "bad_language"}


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
    speak: tuple[str, ...] = ()  # target languages whose translation is spoken (``speech`` messages)
    speakers: bool | None = None  # None: the server's setting
    max_speakers: int | None = None

    def to_message(self) -> dict[str, Any]:
        """The ``start`` message as clients send it: the one place it is built (``streamst mic``,
        ``streamst bench server``, the demos; the page's app.js sends the same fields)."""
        policy: dict[str, Any] = {"name": self.policy.name, **dict(self.policy.overrides)}
        return {"type": "start", "version": self.version, "sample_rate": self.sample_rate, "encoding": self.encoding,
                "src_lang": self.src_lang, "tgt_langs": list(self.tgt_langs), "mode": self.mode,
                "policy": policy, "chunk_ms": self.chunk_ms, **({"speak": list(self.speak)} if self.speak else {}),
                **{k: v for k, v in (("speakers", self.speakers), ("max_speakers", self.max_speakers)) if v is not None}}


@dataclass(frozen=True)
class Ping:
    id: Any = None


@dataclass(frozen=True)
class End:
    pass


ClientMessage = Start | Ping | End


def parse_start(obj: dict[str, Any]) -> Start:
    """A ``start`` message (already strict-parsed JSON) -> :class:`Start`, or a specific error."""
    obj = dict(obj)
    if isinstance(obj.get("tgt_langs"), str):
        obj["tgt_langs"] = [obj["tgt_langs"]]  # a string is a one-element list
    raw = obj.get("policy")
    if raw is None:
        obj.pop("policy", None)
    elif isinstance(raw, str):
        obj["policy"] = {"name": raw}
    elif not isinstance(raw, dict):
        raise ProtocolError("bad_policy", f"start.policy must be an object or a name, got {strict.short(raw)}")
    msg = strict.validate(StartIn, obj, "start", START_CODES)
    if msg.version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version",
                            f"protocol version {msg.version} is not supported (server speaks {PROTOCOL_VERSION})")
    if msg.encoding not in ENCODINGS:
        raise ProtocolError("bad_encoding", f"encoding must be one of {', '.join(ENCODINGS)}, got {strict.short(msg.encoding)}")
    src = msg.src_lang
    if src not in SOURCE_LANGS and src != AUTO:
        raise ProtocolError("bad_language", f"src_lang must be one of {', '.join(SOURCE_LANGS)} or {AUTO}, "
                                            f"got {strict.short(src)}")
    tgts = msg.tgt_langs
    bad = [t for t in tgts if t not in TARGET_LANGS]
    if bad:
        raise ProtocolError("bad_language", f"unsupported target language(s) {strict.clip(', '.join(map(repr, bad)))} "
                                            f"(known: {', '.join(TARGET_LANGS)})")
    if len(set(tgts)) != len(tgts) or src in tgts:
        raise ProtocolError("bad_language", f"tgt_langs must be 1..{MAX_TARGETS} distinct languages other than src_lang, got {tgts!r}")
    if not set(msg.speak) <= set(tgts) or len(set(msg.speak)) != len(msg.speak):
        raise ProtocolError("bad_language", f"speak must list distinct languages of tgt_langs, got {strict.clip(repr(msg.speak))}")
    if msg.mode not in MODES:
        raise ProtocolError("bad_value", f"mode must be one of {', '.join(MODES)}, got {strict.short(msg.mode)}")
    pol = msg.policy
    if pol.name not in POLICY_NAMES:
        raise ProtocolError("bad_policy", f"policy.name must be one of {', '.join(POLICY_NAMES)}, got {strict.short(pol.name)}")
    overrides = tuple(sorted((k, v) for k, v in pol.model_dump(exclude={"name"}).items() if v is not None))
    start = Start(version=msg.version, sample_rate=msg.sample_rate, encoding=msg.encoding, src_lang=src,
                  tgt_langs=tuple(tgts), mode=msg.mode, policy=PolicySpec(pol.name, overrides), chunk_ms=msg.chunk_ms,
                  speak=tuple(msg.speak), speakers=msg.speakers, max_speakers=msg.max_speakers)
    if "simul" in paths_of(start.mode):  # the policy values against each pair's defaults (max_lag >= k, ...)
        try:
            for tgt in start.tgt_langs:
                PolicyConfig.for_pair(src, tgt, name=pol.name, **dict(overrides))
        except (ValueError, TypeError) as e:
            raise ProtocolError("bad_policy", strict.clip(str(e), 300)) from e
    return start


def parse_text(text: str | bytes) -> ClientMessage:
    """Parse one client text frame. Raises :class:`ProtocolError` with a specific code."""
    obj = strict.loads(text)
    if not isinstance(obj, dict):
        raise ProtocolError("malformed_json", f"a message must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "start":
        return parse_start(obj)
    if kind == "ping":
        try:
            strict.validate(PingIn, obj, "ping")
        except ProtocolError as e:
            if e.code != "bad_value":
                raise
            raise ProtocolError("bad_value", f"ping.id must be a string of at most {MAX_PING_ID} characters, a number "
                                             f"within +-2^53, a boolean or null, got {strict.short(obj.get('id'))}") from None
        return Ping(id=obj.get("id"))
    if kind == "end":
        strict.validate(EndIn, obj, "end")
        return End()
    raise ProtocolError("unknown_type", f"unknown message type {strict.short(kind)} (expected start, ping or end)")


# -- server -> client ----------------------------------------------------------------------
@dataclass(frozen=True)
class ServerMessage:
    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}  # type: ignore[attr-defined]

    def to_json(self) -> bytes:
        """UTF-8 JSON (strict: never NaN / Infinity)."""
        return strict.dumps(self.to_dict())


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
