"""Spoken output on the server's endpoints, with real clients: the official ``openai`` SDK
against ``streamst serve --profile tiny`` (the README's command), a websocket client with
``start.speak`` on ``/ws``, and a client that never reads."""

from __future__ import annotations

import base64
import json
import select
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import soxr
from websockets.sync.client import connect

from streamst.audio import pcm16_bytes
from streamst.server import ServerConfig
from tests.conftest import concat_wavs
from tests.live_server import running_server
from tests.server_util import TIMEOUT, ServerThread, metric_value, raw_client, raw_frame, read_all, read_wav

ZH = ["区块链是今年最火热的科技趋势了。", "今天天气很好，我们去公园散步吧。"]


@pytest.fixture(scope="module")
def zh10(speech, tmp_path_factory):
    """About 10 s of Mandarin (two sentences and a pause), 16 kHz float32."""
    path = concat_wavs([speech(t, "zh") for t in ZH], tmp_path_factory.mktemp("zh10") / "zh10.wav", silence_ms=700)
    return read_wav(path)


def energy(pcm: bytes) -> tuple[float, float]:
    """(RMS, fraction of 20 ms frames above -40 dBFS) of PCM16 bytes."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    frames = x[: x.size // 480 * 480].reshape(-1, 480)
    loud = np.sqrt((frames ** 2).mean(axis=1)) > 0.01
    return float(np.sqrt((x ** 2).mean())) if x.size else 0.0, float(loud.mean()) if loud.size else 0.0


def test_openai_sdk_receives_speech_for_mandarin(tiny_models_root, zh10):
    openai = pytest.importorskip("openai", reason="the openai SDK is a dev dependency: pip install -e '.[dev]'")
    audio = soxr.resample(zh10, 16000, 24000).astype(np.float32)
    assert 9.0 < audio.size / 24000 < 13.0
    events = []
    with running_server(tiny_models_root) as srv:  # streamst serve --profile tiny
        client = openai.OpenAI(api_key="x", base_url=f"{srv.http}/v1", websocket_base_url=f"ws://127.0.0.1:{srv.port}/v1",
                               max_retries=0)
        with client.realtime.translations.connect(model="streamst") as conn:
            watchdog = threading.Timer(TIMEOUT, conn.close)  # unblocks the iteration if the server hangs
            watchdog.start()
            try:
                for i in range(0, audio.size, 4800):
                    conn.send({"type": "session.input_audio_buffer.append",
                               "audio": base64.b64encode(pcm16_bytes(audio[i: i + 4800])).decode()})
                conn.send({"type": "session.close"})
                for ev in conn:
                    events.append(ev)
                    if ev.type in ("session.closed", "error"):
                        break
            finally:
                watchdog.cancel()
    types = [e.type for e in events]
    assert "error" not in types and types[-1] == "session.closed", types[-5:]
    deltas = [e for e in events if e.type == "session.output_audio.delta"]
    assert deltas, types
    assert type(deltas[0]).__name__ == "RealtimeTranslationOutputAudioDeltaEvent"  # the SDK's own schema
    assert {(d.sample_rate, d.channels, d.format) for d in deltas} == {(24000, 1, "pcm16")}
    pcm = b"".join(base64.b64decode(d.delta) for d in deltas)
    rms, voiced = energy(pcm)
    assert len(pcm) / 48000 > 1.0 and rms > 0.02 and voiced > 0.3, (len(pcm), rms, voiced)
    at = [d.elapsed_ms for d in deltas]
    assert at == sorted(at) and at[0] > 0  # played in order, after the source words
    text = [e for e in events if e.type == "session.output_transcript.delta"]
    assert text and min(d.elapsed_ms for d in deltas) >= min(t.elapsed_ms for t in text)


@pytest.fixture(scope="module")
def srv(tiny_models):
    s = ServerThread(ServerConfig(profile="tiny", idle_timeout_s=30), tiny_models)
    yield s
    s.close()


def squash(text: str) -> str:
    return "".join(text.split())


def native_session(url: str, start: dict, audio: np.ndarray) -> tuple[list[dict], int | None]:
    """A /ws session of ``audio`` sent at once. Tests that need spoken text use policy wait-k, which
    commits on a fixed schedule: reorder-aware commits only what its checks agree on, and on the
    tiny model's random text that can be nothing at all, depending on float details that other
    tests in the same process change (seen after the Kokoro ONNX export test)."""
    with connect(url, open_timeout=20, max_queue=None) as ws:  # reads while it sends
        ws.send(json.dumps({"type": "start", **start}))
        for i in range(0, audio.size, 1600):
            ws.send(pcm16_bytes(audio[i: i + 1600]))
        ws.send(json.dumps({"type": "end"}))
        return read_all(ws)


def test_native_ws_speak_sends_documented_speech_messages(srv, zh10):
    msgs, code = native_session(srv.url(), {"src_lang": "zh", "tgt_langs": ["en", "ja"], "speak": ["en"],
                                                 "policy": {"name": "wait-k"}}, zh10)
    assert code == 1000 and msgs[0]["type"] == "ready" and msgs[0]["config"]["speak"] == ["en"], [m for m in msgs if m["type"] == "error"]
    speech = [m for m in msgs if m["type"] == "speech"]
    assert speech and {m["language"] for m in speech} == {"en"}  # only what was asked for
    assert {(m["sample_rate"], m["channels"], m["format"]) for m in speech} == {(24000, 1, "pcm16")}
    # the speech says exactly the committed translation, in order (merged or skipped chunks too)
    finals = [m["committed"] for m in msgs if m["type"] == "translation" and m["language"] == "en"
              and m["mode"] == "simul" and m["final"]]
    assert squash("".join(m["text"] for m in speech if m["part"] == 0)) == squash("".join(finals))
    for m in speech:
        assert 0 <= m["part"] < m["parts"] and m["delay_ms"] >= m["lag_ms"] >= 0 and m["start_ms"] >= m["commit_ms"]
    nxt = 0  # chunks cover segments 0, 1, ... in order (a merged chunk several)
    for m in (m for m in speech if m["part"] == 0):
        assert m["segment"] == nxt
        nxt += m["segments"]
    pcm = b"".join(base64.b64decode(m["audio"]) for m in speech)
    rms, voiced = energy(pcm)
    assert rms > 0.02 and voiced > 0.3
    summary = msgs[-1]["summary"]["speech"]
    assert summary["segments"] == nxt and summary["delay_ms"]["p50"] > 0
    _, _, metrics = srv.http("/metrics")
    assert metric_value(metrics, "streamst_speech_segments_total", outcome="spoken") >= 1
    assert metric_value(metrics, "streamst_speech_delay_ms_count", language="en") >= 1


class HeldSynth:
    """The server's engine, held until the session's pipeline has flushed: every chunk is
    still being synthesised when the translation is final (a slow engine, made certain)."""

    def __init__(self, inner, flushed: threading.Event) -> None:
        self.inner, self.flushed = inner, flushed
        self.name, self.sample_rate = inner.name, inner.sample_rate

    def supports(self, language: str) -> bool:
        return self.inner.supports(language)

    def synthesize(self, text: str, language: str, *, speed: float = 1.0) -> np.ndarray:
        assert self.flushed.wait(TIMEOUT), "the pipeline never flushed"
        return self.inner.synthesize(text, language, speed=speed)


def test_speech_still_synthesising_at_the_end_arrives_before_the_summary(tiny_models, zh10, monkeypatch):
    """The summary waits for the speech: on a resumable /ws session the runner's own completion
    used to send ``end`` at once, dropping every chunk not yet synthesised."""
    from streamst.server.worker import SessionRunner

    flushed = threading.Event()
    finish = SessionRunner._finish

    def finish_then_release(self):
        out = finish(self)
        flushed.set()
        return out

    monkeypatch.setattr(SessionRunner, "_finish", finish_then_release)
    s = ServerThread(ServerConfig(profile="tiny", idle_timeout_s=30), tiny_models)
    try:
        s.on_loop(lambda: setattr(s.server, "tts", HeldSynth(s.server.tts, flushed)))
        msgs, code = native_session(s.url(), {"src_lang": "zh", "tgt_langs": ["en"], "speak": ["en"],
                                              "policy": {"name": "wait-k"}}, zh10[: 16000 * 5])
    finally:
        s.close()
    assert code == 1000 and msgs[-1]["type"] == "end", [m for m in msgs if m["type"] == "error"]
    assert msgs[0]["resume"]["token"]  # the resumable session (the default)
    speech = [m for m in msgs if m["type"] == "speech"]
    spoken = [m for m in speech if not m["skipped"]]
    assert spoken and all(m["audio"] for m in spoken), [m["text"] for m in speech]
    finals = [m["committed"] for m in msgs if m["type"] == "translation" and m["language"] == "en"
              and m["mode"] == "simul" and m["final"]]
    assert squash("".join(m["text"] for m in speech if m["part"] == 0)) == squash("".join(finals))
    summary = msgs[-1]["summary"]["speech"]
    assert summary["segments"] == sum(m["segments"] for m in speech if m["part"] == 0)
    assert summary["spoken_ms"] > 0


def test_speak_must_name_a_target(srv):
    with connect(srv.url(), open_timeout=20) as ws:
        ws.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"], "speak": ["de"]}))
        msgs, code = read_all(ws, timeout=20)
    assert code == 1007 and msgs[-1]["code"] == "bad_language"


def test_without_speak_no_audio(srv, zh10):
    msgs, code = native_session(srv.url(), {"src_lang": "zh", "tgt_langs": ["en"]}, zh10[: 16000 * 4])
    assert code == 1000 and not [m for m in msgs if m["type"] == "speech"]
    assert "speech" not in msgs[-1]["summary"]


def test_a_client_that_stops_reading_speech_does_not_grow_the_outbox(tiny_models, zh10):
    """Speech counts against the outbox bounds: a client that sends audio with speak on and
    stops reading is dropped (slow_consumer), and the queue never passes its byte bound.

    The client reads until ``/metrics`` shows a spoken segment, then never again: whether
    the first segment is synthesised before the buffers fill must not hang on timing."""
    cfg = ServerConfig(profile="tiny", idle_timeout_s=30, slow_consumer_s=3.0, max_frame_bytes=32 * 1024,
                       send_queue_bytes=96 * 1024, max_pending_s=600)  # audio may wait: only the reading is at fault
    s = ServerThread(cfg, tiny_models)

    def spoken() -> float:
        return metric_value(s.http("/metrics")[2], "streamst_speech_segments_total", outcome="spoken")

    try:
        sock = raw_client(s.port, rcvbuf=4096)
        sock.sendall(raw_frame(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"], "speak": ["en"],
                                           "policy": {"name": "wait-k"}}).encode()))
        peak, deadline = 0, time.monotonic() + 90
        audio = np.tile(zh10, 6)
        sent, reading = 0, True
        sock.settimeout(0.5)
        while time.monotonic() < deadline and (reading or sent < audio.size):
            if sent < (zh10.size if reading else audio.size):
                try:
                    sock.sendall(raw_frame(pcm16_bytes(audio[sent: sent + 3200]), opcode=2))
                    sent += 3200
                except TimeoutError:
                    pass  # the server stopped reading us (backpressure)
                except OSError:
                    break  # dropped
            if reading:  # phase 1: drain what arrived, stop once a segment was spoken
                while select.select([sock], [], [], 0.05)[0] and sock.recv(65536):
                    pass
                reading = spoken() < 1
                continue
            peak = max(peak, s.on_loop(lambda: max((c.outbox.bytes for c in s.server.connections.values()),
                                                   default=0)))
            if not s.sessions():
                break
        assert not reading, "nothing was spoken from 10 s of Mandarin"
        assert s.wait_sessions(0, timeout=30) == 0  # the server ended it itself
        sock.close()
        _, _, metrics = s.http("/metrics")
        assert metric_value(metrics, "streamst_errors_total", code="slow_consumer") == 1, \
            [line for line in metrics.splitlines() if "errors_total" in line or "speech_seg" in line]
        assert peak <= cfg.send_queue_bytes
    finally:
        s.close()


def test_serve_no_speech_turns_openai_audio_off(tiny_models, zh10):
    openai = pytest.importorskip("openai", reason="the openai SDK is a dev dependency")
    s = ServerThread(ServerConfig(profile="tiny", speech=False), tiny_models)
    try:
        client = openai.OpenAI(api_key="x", base_url=f"http://127.0.0.1:{s.port}/v1",
                               websocket_base_url=f"ws://127.0.0.1:{s.port}/v1", max_retries=0)
        audio = soxr.resample(zh10[: 16000 * 4], 16000, 24000).astype(np.float32)
        types = []
        with client.realtime.translations.connect(model="streamst") as conn:
            for i in range(0, audio.size, 4800):
                conn.send({"type": "session.input_audio_buffer.append",
                           "audio": base64.b64encode(pcm16_bytes(audio[i: i + 4800])).decode()})
            conn.send({"type": "session.close"})
            for ev in conn:
                types.append(ev.type)
                if ev.type in ("session.closed", "error"):
                    break
        assert types[-1] == "session.closed" and "session.output_transcript.delta" in types
        assert "session.output_audio.delta" not in types
    finally:
        s.close()


def test_replace_keeps_speech_default():
    assert ServerConfig().speech is True and replace(ServerConfig(), speech=False).speech is False
