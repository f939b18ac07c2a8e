"""OpenAI Realtime Translation at /v1/realtime/translations, driven by the official `openai`
SDK (`client.realtime.translations.connect`) against an in-process server on loopback."""

from __future__ import annotations

import base64
import threading
from typing import Any

import numpy as np
import pytest
import soxr

from streamst.server import ServerConfig
from streamst.server.openai_realtime import EventError, OpenAIConnection, TranslationSettings, _Deltas, apply_update, decode_audio
from tests.conftest import concat_wavs
from tests.server_util import TIMEOUT, ServerThread, read_wav

openai = pytest.importorskip("openai", reason="the openai SDK is a dev dependency: pip install -e '.[dev]'")

TOKEN = "sdk-test-token"
ZH = "区块链是今年最火热的科技趋势了。"
EN = "The weather is nice today."


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


@pytest.fixture(scope="module")
def server(models):
    srv = ServerThread(ServerConfig(profile="tiny", token=TOKEN, idle_timeout_s=20), models)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def audio_24k(speech, tmp_path_factory):
    """Two utterances (zh, then en) with a pause, as 24 kHz float32."""
    path = concat_wavs([speech(ZH, "zh"), speech(EN, "en")], tmp_path_factory.mktemp("oa") / "two.wav",
                       silence_ms=900)
    return soxr.resample(read_wav(path), 16000, 24000).astype(np.float32)


@pytest.fixture
def spy(monkeypatch):
    """Every pipeline event an OpenAI session produced (what the deltas must add up to)."""
    seen: list[Any] = []
    real = OpenAIConnection.on_update

    def on_update(self, events, samples, compute_ms):
        seen.extend(events)
        return real(self, events, samples, compute_ms)

    monkeypatch.setattr(OpenAIConnection, "on_update", on_update)
    return seen


def client(server, key: str = TOKEN):
    return openai.OpenAI(api_key=key, base_url=f"http://127.0.0.1:{server.port}/v1",
                         websocket_base_url=f"ws://127.0.0.1:{server.port}/v1", max_retries=0)


def pcm_b64(x: np.ndarray) -> str:
    return base64.b64encode((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()).decode()


def translate(server, audio: np.ndarray, *, update: dict | None = None, before: list[dict] = (),
              key: str = TOKEN) -> list[Any]:
    """One SDK session: optional session.update, raw events, the audio in 200 ms chunks,
    session.close; every server event until the server closes (bounded by a watchdog)."""
    events: list[Any] = []
    with client(server, key).realtime.translations.connect(model="streamst-test") as conn:
        watchdog = threading.Timer(TIMEOUT, conn.close)  # unblocks the iteration if the server hangs
        watchdog.start()
        try:
            if update is not None:
                conn.session.update(session=update)
            for raw in before:
                conn.send(raw)
            for i in range(0, len(audio), 4800):
                conn.session.input_audio_buffer.append(audio=pcm_b64(audio[i : i + 4800]))
            conn.session.close()
            for event in conn:
                events.append(event)
        finally:
            watchdog.cancel()
    return events


def joined(texts: list[str], sep: str) -> str:
    return sep.join(t for t in texts if t)


def test_sdk_translates_with_append_only_deltas(server, audio_24k, spy):
    events = translate(server, audio_24k, update={"audio": {"output": {"language": "en"},
                                                            "input": {"transcription": {"model": "sensevoice"}}}})
    types = [e.type for e in events]
    assert types[0] == "session.created" and types[-1] == "session.closed", types
    created = events[0].session
    assert created.type == "translation" and created.model == "streamst-test" and created.id.startswith("sess_")
    updated = [e for e in events if e.type == "session.updated"]
    assert len(updated) == 1 and updated[0].session.audio.output.language == "en"
    assert updated[0].session.audio.input.transcription.model == "sensevoice"
    assert "error" not in types

    out = [e for e in events if e.type == "session.output_transcript.delta"]
    inp = [e for e in events if e.type == "session.input_transcript.delta"]
    assert out and inp
    # the deltas add up to exactly the committed translation of each utterance, in order,
    # with the separating space inside the delta (clients join without adding spaces)
    finals = [ev for ev in spy if getattr(ev, "type", "") == "translation" and ev.final]
    assert len(finals) >= 2  # both utterances
    assert "".join(e.delta for e in out) == joined([f.committed for f in finals], " ")
    assert all(e.delta for e in out)
    sources = [ev for ev in spy if getattr(ev, "type", "") == "transcript" and ev.kind == "final"]
    src_text = ""
    for ev in sources:  # zh needs no separator, en after something does
        sep = " " if src_text and ev.text and ev.language not in ("zh", "ja", "yue") else ""
        src_text += sep + ev.text if ev.text else ""
    assert "".join(e.delta for e in inp) == src_text
    # elapsed_ms is the stream position: never decreasing, never beyond the audio sent
    total_ms = len(audio_24k) * 1000 // 24000
    for stream in (out, inp):
        ms = [e.elapsed_ms for e in stream]
        assert ms == sorted(ms) and 0 < ms[0] and ms[-1] <= total_ms + 200


def test_source_transcript_only_when_configured(server, audio_24k):
    events = translate(server, audio_24k[: 24000 * 3])
    assert events[0].type == "session.created" and events[-1].type == "session.closed"
    assert events[0].session.audio.output.language == "en"  # the default target
    assert not [e for e in events if e.type == "session.input_transcript.delta"]


def test_bad_events_get_error_events_and_the_session_goes_on(server, audio_24k):
    bad = [
        {"type": "session.input_audio_buffer.append", "audio": "***not base64***", "event_id": "e1"},
        {"type": "session.input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02\x03").decode()},
        {"type": "session.update", "session": {"audio": {"output": {"language": "xx"}}}},
        {"type": "session.update", "session": {"voice": "alloy"}},
        {"type": "response.create"},
    ]
    events = translate(server, audio_24k[: 24000 * 2], before=bad)
    errors = [e for e in events if e.type == "error"]
    assert [e.error.code for e in errors] == ["invalid_audio", "invalid_audio", "invalid_value",
                                              "unknown_parameter", "invalid_event"]
    assert errors[0].error.event_id == "e1" and errors[0].error.param == "audio"
    assert errors[2].error.param == "session.audio.output.language"
    assert all(e.error.type == "invalid_request_error" and e.error.message for e in errors)
    assert events[-1].type == "session.closed"  # the session survived every bad event


def test_wrong_key_is_refused_with_an_error_event(server):
    from websockets.exceptions import ConnectionClosedError

    seen = []
    with pytest.raises(ConnectionClosedError) as info:
        with client(server, key="wrong").realtime.translations.connect(model="m") as conn:
            for event in conn:
                seen.append(event)
    assert [e.type for e in seen] == ["error"] and seen[0].error.code == "unauthorized"
    assert info.value.rcvd.code == 1008
    assert server.wait_sessions(0) == 0


def test_update_and_audio_parsing_units():
    s = apply_update(TranslationSettings(), {"audio": {"output": {"language": "ja"},
                                                       "input": {"transcription": {"model": "x"},
                                                                 "noise_reduction": {"type": "near_field"}}}})
    assert (s.language, s.transcription, s.noise_reduction) == ("ja", "x", {"type": "near_field"})
    s = apply_update(s, {"audio": {"input": {"transcription": None}}})
    assert s.transcription is None and s.language == "ja"  # untouched fields keep their values
    for bad, param in [({"audio": {"output": {"language": 3}}}, "session.audio.output.language"),
                       ({"type": "realtime"}, "session.type"),
                       ({"audio": {"input": {"transcription": {"model": ""}}}}, "session.audio.input.transcription.model"),
                       ({"audio": {"input": {"noise_reduction": {"type": "loud"}}}}, "session.audio.input.noise_reduction.type"),
                       ("nope", None)]:
        with pytest.raises(EventError) as e:
            apply_update(TranslationSettings(), bad)
        assert e.value.param == param or param is None
    pcm = np.array([0, 16384, -32768], dtype="<i2").tobytes()
    np.testing.assert_allclose(decode_audio(base64.b64encode(pcm).decode()), [0.0, 0.5, -1.0])
    wav = b"RIFF" + b"\0" * 42
    for bad in (None, "a", base64.b64encode(wav).decode()):
        with pytest.raises(EventError):
            decode_audio(bad)


def test_deltas_are_append_only_with_separators():
    d = _Deltas()
    assert d.delta((0, 0), "Hello", "en") == "Hello"
    assert d.delta((0, 0), "Hello world", "en") == " world"
    assert d.delta((0, 0), "Hello world", "en") == ""  # nothing new
    assert d.delta((0, 1), "Again", "en") == " Again"  # the next utterance: the space is in the delta
    assert d.delta((0, 2), "", "en") == ""
    assert d.delta((1, 0), "你好", "zh") == "你好"  # a character language: no space
    z = _Deltas()
    assert z.delta((0, 0), "区块", "zh") + z.delta((0, 0), "区块链", "zh") == "区块链"


def test_new_output_language_applies_from_the_next_audio(server, audio_24k, spy):
    silent = np.flatnonzero(audio_24k == 0)
    gaps = np.split(silent, np.flatnonzero(np.diff(silent) != 1) + 1)
    inner = [g for g in gaps if g[0] > 0 and g[-1] < len(audio_24k) - 1]  # not the leading/trailing silence
    gap = max(inner, key=len)  # the pause between the two utterances
    cut = int(gap[len(gap) // 2])
    events: list[Any] = []
    with client(server).realtime.translations.connect(model="m") as conn:
        watchdog = threading.Timer(TIMEOUT, conn.close)
        watchdog.start()
        try:
            conn.session.update(session={"audio": {"output": {"language": "en"}}})
            for i in range(0, cut, 4800):
                conn.session.input_audio_buffer.append(audio=pcm_b64(audio_24k[i : min(i + 4800, cut)]))
            conn.session.update(session={"audio": {"output": {"language": "ja"}}})
            for i in range(cut, len(audio_24k), 4800):
                conn.session.input_audio_buffer.append(audio=pcm_b64(audio_24k[i : i + 4800]))
            conn.session.close()
            events = list(conn)
        finally:
            watchdog.cancel()
    updated = [e.session.audio.output.language for e in events if e.type == "session.updated"]
    assert updated == ["en", "ja"] and events[-1].type == "session.closed"
    finals = [ev for ev in spy if getattr(ev, "type", "") == "translation" and ev.final]
    assert [f.language for f in finals] == ["en", "ja"]  # the first utterance in en, the second in ja
    out = [e for e in events if e.type == "session.output_transcript.delta"]
    # still one append-only stream; no space before the ja utterance (a character language)
    assert "".join(e.delta for e in out) == finals[0].committed + finals[1].committed
    ms = [e.elapsed_ms for e in out]
    assert ms == sorted(ms) and ms[-1] > cut * 1000 // 24000  # positions continue over the change
