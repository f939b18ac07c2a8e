"""Generated hostile inputs for the websocket endpoints, and the documented answer to each.

Each endpoint is ONE entry of :data:`ENDPOINTS` (an :class:`Endpoint`): how to wrap a value
into a message it reads, how its error messages look, how to probe that a connection is
still healthy, and its own cases. Inputs that are about JSON itself (syntax, numbers,
nesting, Unicode, frame sizes) are generated once for every endpoint by
:func:`generic_cases`.

An expectation is ``Error(code)`` (the endpoint's error message with that code, then the
code's close code; the code is a native one, which the endpoint may name differently
(:attr:`Endpoint.codes`), and an endpoint may answer some codes without closing
(:attr:`Endpoint.goes_on`): the error, then the probe is still answered), ``Close(code)``
(a close from the websocket layer itself, or a normal close, with no error message),
``Http(status)`` (the websocket layer refused the handshake), or ``Ok()`` (the input is
accepted or ignored, as documented, and the probe is answered). The OpenAI realtime
endpoint (:data:`OPENAI`) is the third entry.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamst.server.strict import MAX_DEPTH

MAX_FRAME = 64 * 1024  # the fuzz server's --max-frame-bytes

Frame = str | bytes  # a str is sent as a text frame, bytes as a binary frame


@dataclass(frozen=True)
class RawText:
    """Bytes sent as a TEXT frame (e.g. invalid UTF-8, which a str cannot hold)."""

    data: bytes


@dataclass(frozen=True)
class Error:
    code: str


@dataclass(frozen=True)
class Close:
    close_code: int


@dataclass(frozen=True)
class Http:
    status: int  # the websocket layer refused the handshake with this HTTP status


@dataclass(frozen=True)
class Ok:
    pass


Expect = Error | Close | Http | Ok


@dataclass(frozen=True)
class Case:
    name: str
    frames: tuple[Frame | RawText, ...]
    expect: Expect
    headers: tuple[tuple[str, str], ...] = ()
    query: str = ""


@dataclass(frozen=True)
class Endpoint:
    path: str
    wrap: Callable[[str], str]  # JSON text of a value -> a message that carries it in a read field
    error_code: Callable[[dict[str, Any]], str | None]  # the code if the message is an error
    probe: tuple[str, ...]  # frames that must get an answer from a healthy connection
    answered: Callable[[dict[str, Any]], bool]  # whether a message answers the probe
    cases: Callable[[], list[Case]]
    opening: tuple[Frame, ...] = field(default=())  # frames that open a session, before audio
    codes: Mapping[str, str] = field(default_factory=dict)  # native code -> this endpoint's code
    goes_on: frozenset[str] = frozenset()  # this endpoint's codes answered without a close

    def code(self, native: str) -> str:
        return self.codes.get(native, native)

    def closes(self, native: str) -> bool:
        """Whether the error ``native`` ends the connection (else the probe is still answered)."""
        return self.code(native) not in self.goes_on


def j(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


# -- inputs about JSON itself, for every endpoint -------------------------------------------
def generic_cases(ep: Endpoint) -> list[Case]:
    w = ep.wrap
    cases: list[Case] = []
    for text in ("{nope", "", " ", "{", "}", '{"a":', '{"a" 1}', "[1,2", "'single'", "{'a': 1}", "undefined",
                 '{"a":1}{"b":2}', '{"a":01}', '{"a":.5}', '{"a":1,}', "\u0000", "\ufeff{}"):
        cases.append(Case(f"not json {text[:10]!r}", (text,), Error("malformed_json")))
    for text in ("null", "true", "0", "1.5", '"text"', "[]", "[{}]", '["start"]'):
        cases.append(Case(f"not an object {text}", (text,), Error("malformed_json")))
    for lit in ("NaN", "Infinity", "-Infinity"):
        cases.append(Case(f"literal {lit}", (w(lit),), Error("malformed_json")))
        cases.append(Case(f"literal {lit} in a list", (w(f"[1, {lit}]"),), Error("malformed_json")))
    for digits in (21, 100, 5000, 50_000 // 4):
        cases.append(Case(f"{digits}-digit integer", (w("9" * digits),), Error("bad_value")))
        cases.append(Case(f"-{digits}-digit integer", (w("-" + "9" * digits),), Error("bad_value")))
    for num in ("1e309", "-1e309", "1e999999", "123456789e400"):
        cases.append(Case(f"float overflow {num}", (w(num),), Error("bad_value")))
    for depth in (MAX_DEPTH + 1, 20, 100, 900, 5000):
        cases.append(Case(f"list nesting {depth}", (w("[" * depth + "]" * depth),), Error("malformed_json")))
        cases.append(Case(f"object nesting {depth}", (w('{"a":' * depth + "1" + "}" * depth),), Error("malformed_json")))
    cases.append(Case("raw nesting 10000", ("[" * 10000 + "]" * 10000,), Error("malformed_json")))
    cases.append(Case("raw object nesting 10000", ('{"a":' * 10000 + "}" * 10000,), Error("malformed_json")))
    for s in ("\\ud800", "\\udfff", "a\\ud83dz", "\\udc00\\ud800"):
        cases.append(Case(f"lone surrogate value {s}", (w(f'"{s}"'),), Error("malformed_json")))
        cases.append(Case(f"lone surrogate key {s}", (f'{{"{s}": 1}}',), Error("malformed_json")))
    cases.append(Case("lone surrogate in a nested key", (w('{"x": {"\\ud800": 1}}'),), Error("malformed_json")))
    # sizes: characters are not bytes (3-byte CJK under the character count, over the bytes)
    cjk = "区" * (MAX_FRAME // 3 + 10)
    cases.append(Case("text frame over the limit in bytes, not characters", (w(j(cjk)),), Error("frame_too_big")))
    cases.append(Case("text frame over the limit", (w(j("a" * (MAX_FRAME + 10))),), Error("frame_too_big")))
    cases.append(Case("binary frame over the limit", (b"\x00" * (MAX_FRAME + 2),), Error("frame_too_big")))
    cases.append(Case("frame over twice the limit", (b"\x00" * (3 * MAX_FRAME),), Close(1009)))
    for bad in (b"\xff\xfe", b"\xc3\x28", b'{"a": "\xed\xa0\x80"}', b"\xf8\x88\x80\x80\x80"):
        cases.append(Case(f"invalid UTF-8 text frame {bad[:6]!r}", (RawText(bad),), Close(1007)))
    return cases


def admission_cases() -> list[Case]:
    """For a server with ``--token s3cret --allowed-origins http://good.example``."""
    tok = (("Authorization", "Bearer s3cret"),)
    return [
        Case("no token", (), Error("unauthorized")),
        Case("wrong token", (), Error("unauthorized"), headers=(("Authorization", "Bearer nope"),)),
        Case("empty bearer", (), Error("unauthorized"), headers=(("Authorization", "Bearer "),)),
        Case("two Authorization headers", (), Error("unauthorized"),
             headers=(("Authorization", "Bearer s3cret"), ("Authorization", "Bearer s3cret"))),
        Case("basic scheme", (), Error("unauthorized"), headers=(("Authorization", "Basic czNjcmV0"),)),
        Case("token as the scheme", (), Error("unauthorized"), headers=(("Authorization", "s3cret"),)),
        Case("wrong query token", (), Error("unauthorized"), query="?token=nope"),
        Case("query token twice, first wrong", (), Error("unauthorized"), query="?token=nope&token=s3cret"),
        Case("bearer in lower case", (), Ok(), headers=(("Authorization", "bearer s3cret"),)),
        Case("BEARER in upper case", (), Ok(), headers=(("Authorization", "BEARER s3cret"),)),
        Case("query token", (), Ok(), query="?token=s3cret"),
        Case("origin not allowed", (), Error("origin_not_allowed"), headers=(*tok, ("Origin", "http://evil.example"))),
        Case("two Origin headers (refused by the websocket layer)", (), Http(400),
             headers=(*tok, ("Origin", "http://good.example"), ("Origin", "http://evil.example"))),
        Case("allowed origin", (), Ok(), headers=(*tok, ("Origin", "http://good.example"))),
    ]


# -- /ws: the native protocol ----------------------------------------------------------------
POOL = [True, False, None, 0, -1, 1.5, 1e308, -1e308, 2**62, "", "x", "A" * 300, [], [1], {}, {"a": 1}, "\u0000", "区块链"]

START_BAD: dict[str, tuple[str, list[Any]]] = {  # field -> (code, values that must be refused)
    "sample_rate": ("bad_sample_rate", [v for v in POOL] + [7999, 192001, 16000.0, 2**32 - 1, "16000"]),
    "encoding": ("bad_encoding", [v for v in POOL] + ["PCM_S16LE", "mp3", "pcm_s16le "]),
    "src_lang": ("bad_language", [v for v in POOL] + ["AUTO", "EN", "de", "zh-CN"]),  # "auto" is valid
    "tgt_langs": ("bad_language", [v for v in POOL] + [["en"] * 5, ["zh"], ["en", "en"], ["en", "xx"], [["en"]]]),
    "mode": ("bad_value", [v for v in POOL] + ["SIMUL", "both "]),
    "chunk_ms": ("bad_value", [v for v in POOL] + [60, 3060, 601, 240.0, 180]),
    "version": ("bad_value", [True, False, None, 1.5, 1e308, "", "1", [], [1], {}, 1.0]),
}
START_UNSUPPORTED_VERSION = [0, -1, 2, 2**62]
POLICY_BAD_VALUE: dict[str, list[Any]] = {  # policy option -> values refused with bad_value
    "k": [True, False, 0, -1, 1.5, 65, 1e308, 2**62, "3", [], {}],
    "ratio": [True, 0, 0.0, -1, 0.01, 21, 1e308, "1", [], {}],
    "max_lag": [True, 0, -1, 257, 2**62, 2.5, "10", []],
    "la_n": [True, 0, 1, 9, 2.0, "2", []],
    "continuations": [True, -1, 9, 1.0, "2", []],
    "stable": [0, 1, "yes", "false", "true", [], {}, 1.5],
}
POLICY_NOT_A_POLICY = [True, False, 0, -1, 1.5, 1e308, 2**62, [], [1], "x", "", "A" * 300, "\u0000", "区块链"]
UNKNOWN_FIELDS = ["colour", "Type", "", "\u0000", "a" * 200, "sample-rate", "tgt_lang", "区"]
PING_BAD_ID = [[1], [], {}, {"a": 1}, "A" * 257, 2**53 + 1, -(2**53) - 1]
PING_OK_ID = [True, None, 1.5, "", "区块链", 2**53, "A" * 256, -5]


def _native_error(m: dict[str, Any]) -> str | None:
    return m.get("code") if m.get("type") == "error" else None


def native_cases() -> list[Case]:
    start = {"type": "start", "src_lang": "zh", "tgt_langs": ["en"]}
    cases: list[Case] = []
    for fld, (code, values) in START_BAD.items():
        for v in values:
            cases.append(Case(f"start.{fld}={v!r:.30}", (j({**start, fld: v}),), Error(code)))
    for v in START_UNSUPPORTED_VERSION:
        cases.append(Case(f"start.version={v}", (j({**start, "version": v}),), Error("unsupported_version")))
    for opt, values in POLICY_BAD_VALUE.items():
        for v in values:
            cases.append(Case(f"policy.{opt}={v!r:.30}", (j({**start, "policy": {"name": "wait-k", opt: v}}),),
                              Error("bad_value")))
    for v in POLICY_NOT_A_POLICY:
        cases.append(Case(f"policy={v!r:.30}", (j({**start, "policy": v}),), Error("bad_policy")))
    for v in ("nope", "WAIT-K", "", 5, None, True, []):
        cases.append(Case(f"policy.name={v!r}", (j({**start, "policy": {"name": v}}),), Error("bad_policy")))
    cases.append(Case("policy max_lag < k", (j({**start, "policy": {"name": "reorder-aware", "k": 5, "max_lag": 3}}),),
                      Error("bad_policy")))
    for name in UNKNOWN_FIELDS:
        cases.append(Case(f"start unknown field {name[:10]!r}", (j({**start, name: 1}),), Error("unknown_field")))
        cases.append(Case(f"policy unknown field {name[:10]!r}", (j({**start, "policy": {name: 1}}),), Error("unknown_field")))
    for v in PING_BAD_ID:
        cases.append(Case(f"ping id {v!r:.30}", (j({"type": "ping", "id": v}),), Error("bad_value")))
    for v in PING_OK_ID:
        cases.append(Case(f"ping id ok {v!r:.30}", (j({"type": "ping", "id": v}),), Ok()))
    cases.append(Case("ping extra field", (j({"type": "ping", "id": 1, "x": 2}),), Error("unknown_field")))
    cases.append(Case("end extra field", (j({"type": "end", "x": 2}),), Error("unknown_field")))
    for t in (None, 5, "START", "", "pong", "hello", [], {}):
        cases.append(Case(f"type {t!r}", (j({"type": t}),), Error("unknown_type")))
    cases.append(Case("no type", (j({"id": 1}),), Error("unknown_type")))
    cases.append(Case("end before start", (j({"type": "end"}),), Error("wrong_order")))
    cases.append(Case("start twice", (j(start), j(start)), Error("wrong_order")))
    cases.append(Case("binary before start", (b"\x00\x00" * 160,), Error("binary_before_start")))
    cases.append(Case("empty binary before start", (b"",), Error("binary_before_start")))
    cases.append(Case("odd pcm16 frame", (j(start), b"\x00\x00\x00"), Error("bad_audio")))
    f32 = {**start, "encoding": "f32le"}
    for name, arr in (("nan", [np.nan]), ("inf", [np.inf]), ("-inf", [-np.inf]), ("huge", [1e30]), ("9.0", [9.0])):
        cases.append(Case(f"f32le {name}", (j(f32), np.array(arr * 8, "<f4").tobytes()), Error("bad_audio")))
    cases.append(Case("f32le 5 bytes", (j(f32), b"\x00" * 5), Error("bad_audio")))
    cases.append(Case("f32le 2.0 is clipped", (j(f32), np.full(16, 2.0, "<f4").tobytes()), Ok()))
    cases.append(Case("empty audio frame", (j(start), b""), Ok()))
    cases.append(Case("src_lang auto", (j({**start, "src_lang": "auto"}),), Ok()))
    cases.append(Case("valid edge start", (j({**start, "sample_rate": 8000, "chunk_ms": 3000, "tgt_langs": "ja",
                                              "policy": {"name": "reorder-aware", "k": 64, "max_lag": 256,
                                                         "ratio": 20, "stable": True}}),), Ok()))
    cases.append(Case("mode all", (j({**start, "mode": "all"}),), Ok()))
    return cases


NATIVE = Endpoint(
    path="/ws",
    wrap=lambda value: f'{{"type": "ping", "id": {value}}}',
    error_code=_native_error,
    probe=(j({"type": "ping", "id": "probe"}),),
    answered=lambda m: m.get("type") == "pong" and m.get("id") == "probe",
    cases=native_cases,
    opening=(j({"type": "start", "src_lang": "zh", "tgt_langs": ["en"]}),),
)


# -- /funasr: the FunASR runtime protocol ------------------------------------------------------
def _funasr_error(m: dict[str, Any]) -> str | None:
    if m.get("mode") != "error":
        return None
    # FunASR's error shape: empty text, is_final false with is_end and error ("the server failed")
    assert m.get("text") == "" and m.get("is_final") is False and m.get("is_end") is True and m.get("error"), m
    assert "wav_name" in m, m
    return m.get("code")


def wav_header(rate: int, channels: int = 1) -> bytes:
    """A 44-byte RIFF/WAVE PCM16 header declaring ``rate`` (may be absurd)."""
    byte_rate = (rate * channels * 2) & 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, byte_rate,
                                                                         channels * 2, 16) + b"data" + struct.pack("<I", 0))


def funasr_cases() -> list[Case]:
    cfg = {"mode": "2pass", "chunk_size": [5, 10, 5], "wav_name": "w", "is_speaking": True}
    cases: list[Case] = []
    for v in ("false", "true", 0, 1, None, [], {}, "", 1.5):
        cases.append(Case(f"is_speaking={v!r}", (j({**cfg, "is_speaking": v}),), Error("bad_value")))
    for v in (5, None, [], {}, True, "A" * 257):
        cases.append(Case(f"wav_name={v!r:.30}", (j({**cfg, "wav_name": v}),), Error("bad_value")))
    for v in (0, 1, 7999, 200000, 2**32 - 1, -1, "abc", "", True, None, [], {}, 1e308, 16000.5, "1e5"):
        cases.append(Case(f"audio_fs={v!r:.30}", (j({**cfg, "audio_fs": v}),), Error("bad_sample_rate")))
    for rate in (0, 1, 7999, 200000, 2**32 - 1):
        cases.append(Case(f"WAV header rate {rate}", (j(cfg), wav_header(rate) + b"\x00" * 320), Error("bad_sample_rate")))
    # documented leniency: unreadable chunk_size keeps 600, unknown mode / languages are ignored
    for v in ([1e308, 1e308, 1e308], "x", [], {}, [[1], [2]], "5,1e400,5", [5, -10, 5], True, "9" * 60, None):
        cases.append(Case(f"chunk_size={v!r:.30} is tolerated", (j({**cfg, "chunk_size": v}),), Ok()))
    for fld, v in (("mode", "weird"), ("mode", 5), ("svs_lang", "xx"), ("svs_lang", []), ("tgt_lang", {}),
                   ("hotwords", {"a": 1}), ("itn", "yes"), ("unknown_field", 1), ("audio_fs", "16000"),
                   ("audio_fs", 8000), ("wav_format", "wav")):
        cases.append(Case(f"{fld}={v!r} is tolerated", (j({**cfg, fld: v}),), Ok()))
    cases.append(Case("odd pcm16 frames", (j(cfg), b"\x00" * 3201, b"\x00" * 3199), Ok()))
    cases.append(Case("audio before any config", (b"\x00" * 3200,), Ok()))
    cases.append(Case("valid WAV header at 8 kHz", (j(cfg), wav_header(8000) + b"\x00" * 320), Ok()))
    cases.append(Case("empty binary frame", (j(cfg), b""), Ok()))
    return cases


FUNASR = Endpoint(
    path="/funasr",
    wrap=lambda value: f'{{"mode": "2pass", "wav_name": {value}}}',
    error_code=_funasr_error,
    probe=(j({"is_speaking": False}),),
    answered=lambda m: m.get("is_final") is True and m.get("mode") != "error",
    cases=funasr_cases,
    opening=(j({"mode": "2pass", "wav_name": "w", "is_speaking": True}),),
)

# -- /v1/realtime/translations: OpenAI Realtime Translation -----------------------------------
OPENAI_CODES = {"malformed_json": "invalid_json", "bad_value": "invalid_value"}  # of a client event's JSON
OPENAI_GOES_ON = frozenset({"invalid_json", "invalid_event", "unknown_parameter", "invalid_value", "invalid_audio"})
# error.type server_error
OPENAI_SERVER_ERRORS = ("internal_error", "overloaded", "shutting_down", "server_full", "engine_unavailable")


def _openai_error(m: dict[str, Any]) -> str | None:
    if m.get("type") != "error":
        return None
    err = m.get("error")
    # OpenAI's error event: error = {type, code, message, param, event_id}
    assert isinstance(err, dict) and set(err) == {"type", "code", "message", "param", "event_id"}, m
    assert isinstance(err["message"], str) and err["message"], m
    assert err["type"] == ("server_error" if err["code"] in OPENAI_SERVER_ERRORS else "invalid_request_error"), m
    assert isinstance(m.get("event_id"), str), m
    return err["code"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _update(session: Any) -> str:
    return j({"type": "session.update", "session": session})


def openai_cases() -> list[Case]:
    cases: list[Case] = []
    not_objects = [v for v in POOL if not isinstance(v, dict) and v is not None]
    # session.update: every level must be an object (null: no change), of known fields
    for v in not_objects:
        cases.append(Case(f"session={v!r:.30}", (_update(v),), Error("invalid_value")))
        cases.append(Case(f"session.audio={v!r:.30}", (_update({"audio": v}),), Error("invalid_value")))
        cases.append(Case(f"audio.output={v!r:.30}", (_update({"audio": {"output": v}}),), Error("invalid_value")))
        cases.append(Case(f"audio.input={v!r:.30}", (_update({"audio": {"input": v}}),), Error("invalid_value")))
        cases.append(Case(f"input.transcription={v!r:.30}", (_update({"audio": {"input": {"transcription": v}}}),),
                          Error("invalid_value")))
        cases.append(Case(f"input.noise_reduction={v!r:.30}",
                          (_update({"audio": {"input": {"noise_reduction": v}}}),), Error("invalid_value")))
    cases.append(Case("session.update without session", (j({"type": "session.update"}),), Error("invalid_value")))
    for v in [*POOL, "EN", "xx", "zh-CN", "auto", "en "]:
        if v is not None:
            cases.append(Case(f"output.language={v!r:.30}", (_update({"audio": {"output": {"language": v}}}),),
                              Error("invalid_value")))
    for v in ("realtime", "", "Translation", None, 5, [], {}):
        cases.append(Case(f"session.type={v!r}", (_update({"type": v}),), Error("invalid_value")))
    for v in ("", None, 5, True, [], {}, ["whisper-1"]):
        cases.append(Case(f"transcription.model={v!r}", (_update({"audio": {"input": {"transcription": {"model": v}}}}),),
                          Error("invalid_value")))
    for v in ("", "NEAR_FIELD", None, 5, [], "off"):
        cases.append(Case(f"noise_reduction.type={v!r}",
                          (_update({"audio": {"input": {"noise_reduction": {"type": v}}}}),), Error("invalid_value")))
    for name in UNKNOWN_FIELDS:
        for where, session in (("session", {name: 1}), ("session.audio", {"audio": {name: 1}}),
                               ("audio.output", {"audio": {"output": {name: 1}}}),
                               ("audio.input", {"audio": {"input": {name: 1}}}),
                               ("transcription", {"audio": {"input": {"transcription": {"model": "m", name: 1}}}}),
                               ("noise_reduction", {"audio": {"input": {"noise_reduction": {"type": "far_field", name: 1}}}})):
            cases.append(Case(f"{where} unknown parameter {name[:10]!r}", (_update(session),), Error("unknown_parameter")))
        for kind in ("session.update", "session.input_audio_buffer.append", "input_audio_buffer.append", "session.close"):
            cases.append(Case(f"{kind} unknown parameter {name[:10]!r}", (j({"type": kind, name: 1}),),
                              Error("unknown_parameter")))
    # documented answers that are not errors
    for session in ({}, {"type": "translation"}, {"audio": None}, {"audio": {"output": None, "input": None}},
                    {"audio": {"output": {"language": "ja"}}}, {"audio": {"output": {"language": None}}},
                    {"audio": {"input": {"transcription": None, "noise_reduction": None}}},
                    {"audio": {"input": {"noise_reduction": {"type": "near_field", "strength": 0.5}}}},
                    {"audio": {"input": {"transcription": {"model": "区" * 50}}}}):
        cases.append(Case(f"valid session.update {j(session):.40}", (_update(session),), Ok()))
    # audio: base64 of 24 kHz PCM16 mono
    append = "session.input_audio_buffer.append"
    for v in [v for v in POOL if not isinstance(v, str)]:
        cases.append(Case(f"append audio={v!r:.30}", (j({"type": append, "audio": v}),), Error("invalid_value")))
    cases.append(Case("append without audio", (j({"type": append}),), Error("invalid_value")))
    for v in ("!!!!", "AAA", "A", "AAAAA", "====", "AA==AA==", "AA AA", "AA\nAA", "区块链", "\u0000AAA",
              "AAAA" * 100 + "*"):
        cases.append(Case(f"append bad base64 {v!r:.20}", (j({"type": append, "audio": v}),), Error("invalid_audio")))
    for n in (1, 3, 4801):
        cases.append(Case(f"append {n} bytes (odd)", (j({"type": append, "audio": b64(b"\x00" * n)}),),
                          Error("invalid_audio")))
    cases.append(Case("append a WAV file", (j({"type": append, "audio": b64(wav_header(24000) + b"\x00" * 480)}),),
                      Error("invalid_audio")))
    for kind in ("session.input_audio_buffer.append", "input_audio_buffer.append"):
        cases.append(Case(f"{kind} 100 ms", (j({"type": kind, "audio": b64(b"\x00\x01" * 2400)}),), Ok()))
        cases.append(Case(f"{kind} empty", (j({"type": kind, "audio": ""}),), Ok()))
        cases.append(Case(f"{kind} 1 sample", (j({"type": kind, "audio": b64(b"\x00\x80")}),), Ok()))
    cases.append(Case("many tiny appends", tuple(j({"type": append, "audio": b64(b"\x01\x00" * 7)}) for _ in range(40)), Ok()))
    cases.append(Case("append then a bad one, session goes on",
                      (j({"type": append, "audio": b64(b"\x00" * 4800)}), j({"type": append, "audio": "!"})),
                      Error("invalid_audio")))
    # events and frames that are not part of the API
    for t in (None, 5, "", "SESSION.UPDATE", "session.created", "response.create", "session.updated", "error",
              "input_audio_buffer.commit", "start", "ping", [], {}, "区"):
        cases.append(Case(f"type {t!r}", (j({"type": t}),), Error("invalid_event")))
    cases.append(Case("no type", (j({"event_id": "e1"}),), Error("invalid_event")))
    for frame in (b"\x00\x00" * 160, b"", b"\x00", b'{"type": "session.update", "session": {}}'):
        cases.append(Case(f"binary frame {frame[:12]!r}", (frame,), Error("invalid_event")))
    cases.append(Case("event_id of another type is ignored", (j({"type": "session.update", "session": {}, "event_id": 5}),), Ok()))
    cases.append(Case("event_id with an error", (j({"type": "nope", "event_id": "区" * 300}),), Error("invalid_event")))
    # session.close: session.closed, then close 1000 (no error)
    cases.append(Case("session.close at once", (j({"type": "session.close"}),), Close(1000)))
    cases.append(Case("session.close after audio", (j({"type": append, "audio": b64(b"\x00" * 480)}),
                                                    j({"type": "session.close", "event_id": "c"})), Close(1000)))
    return cases


OPENAI = Endpoint(
    path="/v1/realtime/translations",
    wrap=lambda value: f'{{"type": "session.input_audio_buffer.append", "audio": {value}}}',
    error_code=_openai_error,
    # a session.update whose answer is unique to it
    probe=(_update({"audio": {"input": {"transcription": {"model": "probe"}}}}),),
    answered=lambda m: m.get("type") == "session.updated"
    and (m["session"]["audio"]["input"]["transcription"] or {}).get("model") == "probe",
    cases=openai_cases,
    codes=OPENAI_CODES,
    goes_on=OPENAI_GOES_ON,
)

# path -> endpoint
ENDPOINTS: dict[str, Endpoint] = {NATIVE.path: NATIVE, FUNASR.path: FUNASR, OPENAI.path: OPENAI}


def all_cases(ep: Endpoint) -> list[Case]:
    return generic_cases(ep) + ep.cases()
