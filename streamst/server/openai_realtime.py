"""OpenAI Realtime Translation at ``/v1/realtime/translations`` (docs/protocol.md, section
"OpenAI Realtime Translation endpoint"), so the official ``openai`` SDK translates through
streamst::

    client = OpenAI(api_key=TOKEN, websocket_base_url="ws://HOST:PORT/v1")
    with client.realtime.translations.connect(model="streamst") as conn: ...

Client events: ``session.update`` (``audio.output.language``, ``audio.input.transcription``
``{model}`` or null, ``audio.input.noise_reduction`` accepted and ignored),
``session.input_audio_buffer.append`` (also accepted as ``input_audio_buffer.append``;
base64 of 24 kHz PCM16 mono little-endian), ``session.close``. Server events:
``session.created`` (first), ``session.updated``, ``session.input_transcript.delta`` /
``session.output_transcript.delta`` (append-only text, spacing inside the delta,
``elapsed_ms`` = source stream position in ms when the text was committed),
``session.output_audio.delta`` (the committed translation spoken, PCM16 24 kHz: streamst/speak;
``serve --no-speech`` turns it off), ``session.closed``, ``error``.

The source language is detected (pipeline ``src_lang="auto"``: SenseVoice's language ID).
A mistake in one client event is answered by an ``error`` event and the session goes on
(as OpenAI's service does); limits and failures (``frame_too_big``, ``idle_timeout``,
``overloaded``, ``internal_error``...) send an ``error`` event and close with the code
of docs/protocol.md. Built on the same :class:`SessionRunner` and :class:`Connection`
base as ``/ws``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from streamst.events import Event, LatencyEvent, TranscriptEvent, TranslationEvent
from streamst.pipeline import AUTO, PipelineConfig
from streamst.server import strict
from streamst.server.connection import Connection
from streamst.server.protocol import TARGET_LANGS, ProtocolError
from streamst.text import joins_without_spaces

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from streamst.server.session import SessionHost

PATH = "/v1/realtime/translations"
INPUT_RATE = 24000  # the only input format of the API: 24 kHz PCM16 mono little-endian
DEFAULT_TARGET = "en"
DEFAULT_MODEL = "streamst"
APPEND_TYPES = ("session.input_audio_buffer.append", "input_audio_buffer.append")
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
# error.type "server_error"
SERVER_ERRORS = ("internal_error", "overloaded", "shutting_down", "server_full", "engine_unavailable")
JSON_CODES = {"malformed_json": "invalid_json", "bad_value": "invalid_value"}  # strict.loads' codes here


class EventError(Exception):
    """A mistake in one client event: answered with an ``error`` event, the session stays."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass(frozen=True)
class TranslationSettings:
    """What ``session.update`` may change."""

    language: str = DEFAULT_TARGET  # audio.output.language
    transcription: str | None = None  # audio.input.transcription.model; None: no source deltas
    noise_reduction: dict[str, Any] | None = None  # accepted, echoed, not applied

    def session_object(self, session_id: str, model: str, expires_at: int) -> dict[str, Any]:
        """The ``RealtimeTranslationSession`` of session.created / session.updated."""
        return {
            "id": session_id, "type": "translation", "model": model, "expires_at": expires_at,
            "audio": {
                "input": {"transcription": {"model": self.transcription} if self.transcription else None,
                          "noise_reduction": self.noise_reduction},
                "output": {"language": self.language},
            },
        }


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError("invalid_value", f"{param} must be an object, got {strict.short(value)}", param)
    return value


def _part(obj: dict[str, Any], key: str, param: str) -> dict[str, Any]:
    """``obj[key]`` as an object; absent or ``null``: no change (``{}``)."""
    value = obj.get(key)
    return {} if value is None else _object(value, param)


def _only(obj: dict[str, Any], allowed: set[str], param: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise EventError("unknown_parameter", f"unknown parameter(s) in {param}: {', '.join(extra)} "
                                              f"(allowed: {', '.join(sorted(allowed))})", f"{param}.{extra[0]}")


def apply_update(settings: TranslationSettings, session: Any) -> TranslationSettings:
    """``session.update``'s ``session`` applied to ``settings`` (all or nothing)."""
    session = _object(session, "session")
    _only(session, {"audio", "type"}, "session")
    if session.get("type", "translation") != "translation":
        raise EventError("invalid_value", "session.type is always 'translation'", "session.type")
    audio = _part(session, "audio", "session.audio")
    _only(audio, {"input", "output"}, "session.audio")
    new = settings
    out = _part(audio, "output", "session.audio.output")
    _only(out, {"language"}, "session.audio.output")
    if out.get("language") is not None:
        lang = out["language"]
        if lang not in TARGET_LANGS:
            raise EventError("invalid_value", f"unsupported output language {strict.short(lang)} "
                                              f"(known: {', '.join(TARGET_LANGS)})", "session.audio.output.language")
        new = replace(new, language=lang)
    inp = _part(audio, "input", "session.audio.input")
    _only(inp, {"transcription", "noise_reduction"}, "session.audio.input")
    if "transcription" in inp:
        tr = inp["transcription"]
        if tr is None:
            new = replace(new, transcription=None)
        else:
            tr = _object(tr, "session.audio.input.transcription")
            _only(tr, {"model"}, "session.audio.input.transcription")
            model = tr.get("model")
            if not isinstance(model, str) or not model:
                raise EventError("invalid_value", "session.audio.input.transcription.model must be a non-empty string",
                                 "session.audio.input.transcription.model")
            new = replace(new, transcription=model)
    if "noise_reduction" in inp:
        nr = inp["noise_reduction"]
        if nr is not None:
            nr = _object(nr, "session.audio.input.noise_reduction")
            _only(nr, {"type", "strength"}, "session.audio.input.noise_reduction")
            if nr.get("type") not in NOISE_REDUCTION_TYPES:
                raise EventError("invalid_value", f"noise_reduction.type must be one of {', '.join(NOISE_REDUCTION_TYPES)}",
                                 "session.audio.input.noise_reduction.type")
        new = replace(new, noise_reduction=nr)
    return new


def decode_audio(value: Any) -> np.ndarray:
    """``audio`` of an append event: base64 of 24 kHz PCM16 mono -> float32 samples."""
    if not isinstance(value, str):
        raise EventError("invalid_value", "audio must be a base64 string of 24 kHz PCM16 mono", "audio")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EventError("invalid_audio", f"audio is not valid base64: {e}", "audio") from e
    if len(raw) % 2:
        raise EventError("invalid_audio", f"audio of {len(raw)} bytes is not whole PCM16 samples "
                                          "(24 kHz PCM16 mono little-endian expected)", "audio")
    if raw[:4] == b"RIFF":
        raise EventError("invalid_audio", "audio must be raw 24 kHz PCM16, not a WAV file", "audio")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


class _Deltas:
    """Turns one text stream's per-utterance growing text into append-only deltas, with the
    separator between utterances inside the delta (a space unless a character language)."""

    def __init__(self) -> None:
        self.utterance: tuple[int, int] | None = None  # (pipeline generation, utterance)
        self.sent = ""  # text of the current utterance already sent
        self.any = False  # something was sent in an earlier utterance

    def delta(self, utterance: tuple[int, int], text: str, lang: str) -> str:
        if utterance != self.utterance:
            self.any = self.any or bool(self.sent)
            self.utterance, self.sent = utterance, ""
        if not text.startswith(self.sent) or len(text) == len(self.sent):
            return ""  # committed text only grows; nothing new
        new = text[len(self.sent):]
        sep = " " if self.any and not self.sent and not joins_without_spaces(lang) and not new[:1].isspace() else ""
        self.sent = text
        return sep + new


class OpenAIConnection(Connection):
    """One OpenAI Realtime Translation session."""

    endpoint = "openai"

    def __init__(self, server: SessionHost, ws: ServerConnection) -> None:
        super().__init__(server, ws)
        query = parse_qs(urlsplit(ws.request.path).query)
        self.model = (query.get("model") or [DEFAULT_MODEL])[0]
        self.session_id = f"sess_{self.id}"
        self.expires_at = int(time.time() + self.cfg.max_session_s)
        self.settings = TranslationSettings()
        self.offset_ms = 0  # stream position where the current pipeline began
        self.generation = 0  # pipelines run so far (a new one after a language change)
        self._out, self._in = _Deltas(), _Deltas()

    # -- events -------------------------------------------------------------------------------
    @staticmethod
    def event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"event_{uuid.uuid4().hex[:20]}", **fields}

    def session_event(self, kind: str) -> dict[str, Any]:
        return self.event(kind, session=self.settings.session_object(self.session_id, self.model, self.expires_at))

    def error_event(self, code: str, message: str, *, param: str | None = None,
                    event_id: str | None = None) -> dict[str, Any]:
        """A recoverable mistake in one client event (the session goes on)."""
        return self.event("error", error={"type": "invalid_request_error", "code": code, "message": message,
                                          "param": param, "event_id": event_id})

    @classmethod
    def refusal(cls, err: ProtocolError) -> dict[str, Any]:
        """A fatal error (connect-time refusal or a limit) as an OpenAI ``error`` event."""
        kind = "server_error" if err.code in SERVER_ERRORS else "invalid_request_error"
        return cls.event("error", error={"type": kind, "code": err.code, "message": err.message, "param": None,
                                         "event_id": None})

    # -- the session ---------------------------------------------------------------------------
    async def serve(self) -> None:
        self.send(self.session_event("session.created"))
        self._spawn(self.ticker())
        while not self.closing:
            msg = await self.recv()
            event_id = None
            try:
                if isinstance(msg, bytes):
                    raise EventError("invalid_event", "binary frames are not part of this API: send "
                                                      "session.input_audio_buffer.append with base64 audio")
                try:
                    obj = strict.loads(msg)
                except ProtocolError as e:
                    raise EventError(JSON_CODES[e.code], e.message) from None
                if not isinstance(obj, dict):
                    raise EventError("invalid_json", "an event must be a JSON object")
                event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
                kind = obj.get("type")
                if kind in APPEND_TYPES:
                    _only(obj, {"type", "event_id", "audio"}, kind)
                    self.append(decode_audio(obj.get("audio")))
                elif kind == "session.update":
                    _only(obj, {"type", "event_id", "session"}, kind)
                    await self.update(apply_update(self.settings, obj.get("session")))
                elif kind == "session.close":
                    _only(obj, {"type", "event_id"}, kind)
                    await self.close_session()
                    return
                else:
                    raise EventError("invalid_event", f"unknown event type {kind!r} (expected session.update, "
                                                      "session.input_audio_buffer.append or session.close)", "type")
            except EventError as e:
                self.server.metrics.error(e.code)
                self.send(self.error_event(e.code, e.message, param=e.param, event_id=event_id))

    async def update(self, settings: TranslationSettings) -> None:
        if self.runner is not None and settings.language != self.settings.language:
            await self.drain()  # the new language applies from the next audio on
        self.settings = settings
        self.send(self.session_event("session.updated"))

    def begin(self) -> None:
        cfg = self.open_session(PipelineConfig.create(AUTO, [self.settings.language], mode="simul"), INPUT_RATE)
        tts = self.server.tts  # OpenAI's service always speaks (serve --no-speech: text only)
        if self.cfg.speech and tts is not None and tts.supports(self.settings.language):
            runner = self.runner
            self.speak([self.settings.language], cfg.paths[0], lambda: runner.received / 16, self.send_audio)

    def append(self, samples: np.ndarray) -> None:
        if self.runner is None:
            self.begin()
        self.push(samples)

    async def drain(self) -> None:
        """Flush the running pipeline: every result of the audio so far is sent."""
        if self.runner is None:
            return
        assert self.runner_task is not None and self.resample is not None
        self.runner.feed(self.resample.flush())
        self.runner.end()
        await asyncio.wait({self.runner_task})
        await self.finish_speaking()
        self.speaker = self.speaker_task = None
        self.offset_ms += self.session.audio_ms if self.session is not None else 0
        self.generation += 1
        self.runner, self.runner_task, self.session, self.resample = None, None, None, None

    async def close_session(self) -> None:
        """``session.close``: flush, send what remains, ``session.closed``, close 1000."""
        await self.drain()
        if self.closing:
            return  # failed while flushing: the error went out
        self.outbox.put_last(self.event("session.closed"), 1000, "session closed")
        self.closing = True

    # -- results ---------------------------------------------------------------------------------
    def send_audio(self, chunk) -> None:
        """A spoken chunk (streamst/speak) as ``session.output_audio.delta`` events."""
        from streamst.speak.serving import openai_deltas

        for fields in openai_deltas(chunk, self.offset_ms):
            self.send(self.event("session.output_audio.delta", **fields))

    def on_update(self, events: list[Event], samples: int, compute_ms: float) -> None:
        self.server.metrics.update(samples, compute_ms)
        if self.speaker is not None:
            self.speaker.feed(events)
        for ev in events:
            if isinstance(ev, TranslationEvent):
                delta = self._out.delta((self.generation, ev.utterance), ev.committed, ev.language)
                if delta:
                    self.send(self.event("session.output_transcript.delta", delta=delta,
                                         elapsed_ms=self.offset_ms + ev.audio_ms))
            elif isinstance(ev, TranscriptEvent):
                text = ev.text if ev.kind == "final" else ev.stable_text
                delta = self._in.delta((self.generation, ev.utterance), text, ev.language)
                if delta and self.settings.transcription:
                    self.send(self.event("session.input_transcript.delta", delta=delta,
                                         elapsed_ms=self.offset_ms + ev.audio_ms))
            elif isinstance(ev, LatencyEvent):
                self.server.metrics.utterance(ev.language, ev.metrics, ev.retention_proxy)
