"""The FunASR runtime websocket protocol at ``/funasr``, so existing FunASR clients
(``funasr_wss_client.py``, the FunASR HTML demo, SDKs) work unchanged and get translations
in an extra field. Mapping and quirks: docs/protocol.md, section "FunASR endpoint".

Client: a JSON config (``mode`` offline|online|2pass, ``chunk_size`` [5,10,5] or "5,10,5",
``wav_name``, ``is_speaking``, ``hotwords``, ``itn``, ``audio_fs``, ``wav_format``,
``svs_lang``; extension ``tgt_lang``), then binary PCM16; ``{"is_speaking": false}`` ends
the segment, ``{"is_speaking": false, "is_end": true}`` ends it and asks for the
acknowledgement ``{"mode", "wav_name", "is_final": true, "is_end": true}``. A config may be
resent at any time; missing fields keep their values. ``hotwords`` (FunASR's JSON object
``{"word": weight}``, or words separated by commas or spaces) go to
``PipelineConfig.hotwords`` for the models that use them.

Server (every message has ``mode``, ``text``, ``wav_name``, ``is_final``):

* ``2pass-online`` / ``online``: the text that became stable since the previous message
  (clients append it; it is never revised), plus ``translation`` {lang: committed
  translation of the current utterance so far}.
* ``2pass-offline`` / ``offline``: one per utterance: the punctuated utterance text,
  ``timestamp`` "[[beg,end],...]" per token (ms), ``stamp_sents``, ``translation``
  {lang: final translation}.
* ``is_final``: true on exactly one message per segment: the last one, an empty
  offline message (``end_of_segment: true``) sent after ``is_speaking: false`` once every
  result of the segment was sent, so clients waiting for it always finish. Utterance ends
  (sentences) are the offline messages; ``is_final`` never marks them.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection

from streamst.audio import MAX_RATE, MIN_RATE, StreamResampler, wav_header
from streamst.errors import AudioFormatError
from streamst.events import Event, LatencyEvent, TranscriptEvent, TranslationEvent
from streamst.pipeline import AUTO, PipelineConfig, TranslationSession
from streamst.server.connection import Connection, decode_samples
from streamst.server import strict
from streamst.server.protocol import CHUNK_MS_RANGE, SOURCE_LANGS, TARGET_LANGS, ProtocolError
from streamst.server.worker import SessionRunner

MODES = ("offline", "online", "2pass")
LFR_MS = 60  # one FunASR chunk_size unit
MAX_WAV_NAME = 256  # characters; echoed in every message


@dataclass(frozen=True)
class PunctuatedFinal:
    """A final transcript event with its punctuated text (made in the worker thread)."""

    event: TranscriptEvent
    punctuated: str


def parse_chunk_ms(value: Any, default: int = 600) -> int:
    """FunASR ``chunk_size`` ([5, 10, 5], "5,10,5", "[5, 10, 5]") -> streaming chunk in ms
    (clamped to ``CHUNK_MS_RANGE``; anything unreadable, non-finite or a boolean keeps
    ``default``)."""
    if isinstance(value, str):
        value = [p for p in value[:64].strip("[] ").replace(" ", "").split(",") if p]
    middle = value[1] if isinstance(value, (list, tuple)) and len(value) >= 2 else value
    if isinstance(middle, str) and middle.isdigit() and len(middle) <= 6:
        middle = int(middle)
    if isinstance(middle, bool) or not isinstance(middle, (int, float)) or not math.isfinite(middle):
        return default
    lo, hi = CHUNK_MS_RANGE
    units = max(0.0, min(float(middle), hi / LFR_MS))  # clamp before multiplying: no overflow
    return min(hi, max(lo, int(units) * LFR_MS))


def parse_rate(value: Any, what: str) -> int:
    """A sample rate from a config field (an integer, or a string of digits) or a WAV
    header; outside MIN_RATE..MAX_RATE: ``bad_sample_rate``."""
    rate = value
    if isinstance(rate, str) and rate.strip().isdigit() and len(rate.strip()) <= 7:
        rate = int(rate)
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError("bad_sample_rate", f"{what} {strict.short(value)} is not supported ({MIN_RATE}..{MAX_RATE} Hz)")
    return rate


@dataclass
class FunasrOptions:
    """The client's current config (updated by every config message it sends)."""

    mode: str = "2pass"
    chunk_ms: int = 600
    wav_name: str = "demo"
    audio_fs: int = 16000
    src_lang: str = "zh"
    tgt_lang: str = "en"
    is_speaking: bool = True
    hotwords: tuple[str, ...] = ()

    def update(self, obj: dict[str, Any]) -> None:
        """Apply a config message (strict-parsed JSON). Unknown fields and unknown ``mode`` /
        language values are ignored (FunASR clients send many optional fields); a bad
        ``audio_fs`` is ``bad_sample_rate``; ``is_speaking`` that is not a boolean, or a
        ``wav_name`` that is not a string of at most ``MAX_WAV_NAME`` characters, is ``bad_value``."""
        if isinstance(obj.get("mode"), str) and obj["mode"] in MODES:
            self.mode = obj["mode"]
        if "chunk_size" in obj:
            self.chunk_ms = parse_chunk_ms(obj["chunk_size"], self.chunk_ms)
        if "wav_name" in obj:
            name = obj["wav_name"]
            if not isinstance(name, str) or len(name) > MAX_WAV_NAME:
                raise ProtocolError("bad_value", f"wav_name must be a string of at most {MAX_WAV_NAME} characters, "
                                                 f"got {strict.short(name)}")
            self.wav_name = name
        if "audio_fs" in obj:
            self.audio_fs = parse_rate(obj["audio_fs"], "audio_fs")
        lang = obj.get("svs_lang")
        if isinstance(lang, str) and (lang in SOURCE_LANGS or lang == AUTO):
            self.src_lang = lang
        tgt = obj.get("tgt_lang")
        if isinstance(tgt, str) and tgt in TARGET_LANGS:
            self.tgt_lang = tgt
        if "is_speaking" in obj:
            if not isinstance(obj["is_speaking"], bool):
                raise ProtocolError("bad_value", f"is_speaking must be true or false, got {strict.short(obj['is_speaking'])}")
            self.is_speaking = obj["is_speaking"]
        if "is_end" in obj:
            if not isinstance(obj["is_end"], bool):
                raise ProtocolError("bad_value", f"is_end must be true or false, got {strict.short(obj['is_end'])}")
            if obj["is_end"]:
                self.is_speaking = False
        if "hotwords" in obj:
            self.hotwords = parse_hotwords(obj["hotwords"])

    def pipeline(self) -> PipelineConfig:
        tgt = self.tgt_lang if self.tgt_lang != self.src_lang else ("zh" if self.src_lang != "zh" else "en")
        return PipelineConfig.create(self.src_lang, [tgt], mode="simul", chunk_ms=self.chunk_ms,
                                     hotwords=self.hotwords)


MAX_HOTWORDS, MAX_HOTWORD_CHARS = 100, 50


def parse_hotwords(value: Any) -> tuple[str, ...]:
    """FunASR ``hotwords``: a JSON object ``{"阿里巴巴": 20}`` (weights dropped), or words
    separated by commas (or, without commas, by spaces). Bounded: the first 100 words of at
    most 50 characters each; anything unreadable is no hotwords."""
    if not isinstance(value, str) or not value.strip():
        return ()
    text = value.strip()
    words: list[str]
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return ()
        words = [k for k in obj if isinstance(k, str)] if isinstance(obj, dict) else []
    else:
        words = text.split(",") if "," in text else text.split()
    out = [w.strip() for w in words if w.strip() and len(w.strip()) <= MAX_HOTWORD_CHARS]
    return tuple(dict.fromkeys(out))[:MAX_HOTWORDS]


def refusal_message(err: ProtocolError, wav_name: str = "") -> dict[str, Any]:
    """An error in FunASR's message shape (connect-time refusals and session errors): FunASR
    clients read ``text`` from every message and take ``is_end`` with ``is_final`` false and
    ``error`` as "the server failed"."""
    return {"type": "error", "code": err.code, "message": err.message, "mode": "error", "text": "",
            "wav_name": wav_name, "is_final": False, "is_end": True, "error": err.message}


class FunasrConnection(Connection):
    endpoint = "funasr"

    def __init__(self, server, ws: ServerConnection) -> None:
        super().__init__(server, ws)
        self.opts = FunasrOptions()
        self.session: TranslationSession | None = None
        self.resample: StreamResampler | None = None
        self._carry = b""  # an odd trailing byte of PCM16 kept for the next frame
        self._first_frame = True
        self._utt: int | None = None
        self._sent_stable = ""  # stable text of the current utterance already sent online
        self._translation = ""
        self._began = False  # audio was received (start_timeout_s no longer applies)

    # -- messages from the client -----------------------------------------------------------------
    async def serve(self) -> None:
        while not self.closing:
            msg = await self.recv()
            if isinstance(msg, bytes):
                if self.runner is None:
                    self.begin()
                self.feed(msg)
                continue
            obj = strict.loads(msg)
            if not isinstance(obj, dict):
                raise ProtocolError("malformed_json", "a config message must be a JSON object")
            self.opts.update(obj)
            ack = {"is_end": True} if obj.get("is_end") is True else {}
            if not self.opts.is_speaking and self.runner is not None:
                await self.flush(ack)
                self.server_was_busy()  # the flush may outlast idle_timeout_s under load
            elif not self.opts.is_speaking:
                self.send(self._message("offline", "", final=True) | ack)  # nothing was sent: still answer

    def begin(self) -> None:
        cfg = self.opts.pipeline()
        if problem := self.server.models.profile.source_problem(cfg.src_lang, cfg.paths):
            raise ProtocolError("bad_language", problem)
        self.session = TranslationSession(self.server.models, cfg, recognize=self.server.recognize,
                                          mt_lm=self.server.mt_lm, e2e_lm=self.server.e2e_lm)
        self.resample = StreamResampler(self.opts.audio_fs)
        self.runner = SessionRunner(self.session, self.server.executor,
                                    max_pending_ms=int(self.cfg.max_pending_s * 1000), step_ms=self.cfg.step_ms,
                                    on_update=self.on_update, postprocess=self._punctuate)
        self.runner_task = self._spawn(self.run_runner())
        self._first_frame, self._carry, self.opts.is_speaking = True, b"", True
        self._began = True

    def started(self) -> bool:
        return self._began

    def feed(self, frame: bytes) -> None:
        assert self.runner is not None and self.resample is not None
        if self._first_frame and frame[:4] == b"RIFF":  # wav_format "wav": the header comes first
            if frame[12:16] == b"fmt ":  # an unusable rate is bad_sample_rate, like audio_fs
                parse_rate(int.from_bytes(frame[24:28], "little"), "WAV header sample rate")
            try:
                rate, offset = wav_header(frame)
            except AudioFormatError as e:
                raise ProtocolError("bad_audio", str(e)) from e
            self.resample, frame = StreamResampler(rate), frame[offset:]
        self._first_frame = False
        data = self._carry + frame
        cut = len(data) - len(data) % 2
        self._carry = data[cut:]
        busy = self.runner.busy
        samples = self.resample(decode_samples(data[:cut], "pcm_s16le"))
        self.runner.feed(samples)
        if busy:
            self.server.metrics.coalesced(samples.size)

    async def flush(self, ack: dict[str, Any]) -> None:
        """``is_speaking: false``: finish the segment, send its results, then the segment's
        one ``is_final`` message (with ``is_end: true`` when the client asked for it)."""
        assert self.runner is not None and self.runner_task is not None
        self.runner.end()
        await asyncio.wait({self.runner_task})
        if self.closing:
            return
        self.send(self._message("offline", "", final=True) | {"end_of_segment": True} | ack)
        self.runner, self.runner_task, self.session = None, None, None
        self._utt, self._sent_stable, self._translation = None, "", ""

    # -- results ------------------------------------------------------------------------------------
    def _punctuate(self, events: list[Event]) -> list[Any]:
        """Worker thread: attach the punctuated text to each final transcript."""
        out: list[Any] = []
        for ev in events:
            if isinstance(ev, TranscriptEvent) and ev.kind == "final":
                out.append(PunctuatedFinal(ev, self.server.models.punc.punctuate(ev.text) if ev.text else ""))
            out.append(ev)
        return out

    def on_update(self, items: list[Any], samples: int, compute_ms: float) -> None:
        self.server.metrics.update(samples, compute_ms)
        finals: list[PunctuatedFinal] = []
        final_translation: dict[int, str] = {}
        increment = ""
        changed = False
        for it in items:
            if isinstance(it, PunctuatedFinal):
                finals.append(it)
            elif isinstance(it, TranscriptEvent):
                if it.utterance != self._utt:
                    self._utt, self._sent_stable, self._translation = it.utterance, "", ""
                if it.kind != "final" and it.stable_text.startswith(self._sent_stable):
                    increment += it.stable_text[len(self._sent_stable):]
                    self._sent_stable = it.stable_text
            elif isinstance(it, TranslationEvent):
                if it.final:
                    final_translation[it.utterance] = it.committed
                elif it.committed != self._translation:
                    self._translation, changed = it.committed, True
            elif isinstance(it, LatencyEvent):
                self.server.metrics.utterance(it.language, it.metrics, it.retention_proxy)
        tgt = self.session.cfg.tgt_langs[0] if self.session else self.opts.tgt_lang
        if self.opts.mode != "offline" and (increment or changed) and not finals:
            self.send(self._message("online", increment, final=False) | {"translation": {tgt: self._translation}})
        for f in finals:
            ev = f.event
            if self.opts.mode == "online":
                rest = ev.text[len(self._sent_stable):] if ev.text.startswith(self._sent_stable) else ""
                msg = self._message("online", rest, final=False)
            else:
                msg = self._message("offline", f.punctuated, final=False) | _timestamps(ev, f.punctuated)
            msg["translation"] = {tgt: final_translation.get(ev.utterance, "")}
            self.send(msg)
            self._utt, self._sent_stable, self._translation = None, "", ""

    def _message(self, phase: str, text: str, *, final: bool) -> dict[str, Any]:
        mode = f"2pass-{phase}" if self.opts.mode == "2pass" else phase
        return {"mode": mode, "text": text, "wav_name": self.opts.wav_name, "is_final": final}

    @classmethod
    def refusal(cls, err: ProtocolError) -> dict[str, Any]:
        return refusal_message(err)

    def error_message(self, err: ProtocolError) -> dict[str, Any]:
        return refusal_message(err, self.opts.wav_name)


def _timestamps(ev: TranscriptEvent, punctuated: str) -> dict[str, Any]:
    """FunASR ``timestamp`` (a string "[[beg,end],...]", ms per token) and one sentence-level
    ``stamp_sents`` entry per utterance."""
    ts = [[t.start_ms, t.end_ms] for t in ev.tokens]
    stripped = punctuated.rstrip()
    punc = stripped[-1] if stripped and not stripped[-1].isalnum() else ""
    sents = [{"text_seg": " ".join(t.text for t in ev.tokens), "punc": punc,
              "start": ts[0][0] if ts else ev.start_ms, "end": ts[-1][1] if ts else ev.end_ms, "ts_list": ts}]
    return {"timestamp": json.dumps(ts, separators=(",", ":")), "stamp_sents": sents}
