"""Output does not depend on load; one client cannot hurt another; memory stays bounded;
limits count from the handshake; outgoing JSON is strict. In-process servers on loopback,
tiny models, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from streamst.audio import pcm16_bytes
from streamst.server import ServerConfig
from streamst.server import strict
from tests.server_util import ServerThread, metric_value, raw_client, raw_frame, read_all, read_wav, run_session

ZH = "区块链是今年最火热的科技趋势了。"
BASE = ServerConfig(profile="tiny", max_sessions=12, idle_timeout_s=20, status_interval_s=0.5)


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


@pytest.fixture(scope="module")
def zh_audio(speech):
    return read_wav(speech(ZH, "zh", gap_ms=700))


def comparable(msgs: list[dict]) -> list[dict]:
    """The events that must not depend on load: transcripts, translations and latency,
    without the computation-aware figures (wall-clock processing time is load by definition)."""
    out = []
    for m in msgs:
        if m.get("type") not in ("transcript", "translation", "latency"):
            continue
        m = {k: v for k, v in m.items() if k != "elapsed_ms"}
        if "metrics" in m:
            m["metrics"] = {k: v for k, v in m["metrics"].items() if not k.endswith("_CA")}
        out.append(m)
    return out


# -- the chunk grid --------------------------------------------------------------------------
class SlowSession:
    """A real session with an artificial delay in every pipeline step (a loaded server)."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def insert_audio(self, samples):
        self.inner.insert_audio(samples)

    def process(self):
        time.sleep(self.delay_s)  # simulated inference cost, not synchronisation
        return self.inner.process()

    def finish(self):
        return self.inner.finish()


def run_runner(models, audio: np.ndarray, *, frame_ms: int, delay_s: float, burst: bool):
    """Stream ``audio`` through a SessionRunner; returns (events as dicts, runner)."""
    from streamst.pipeline import PipelineConfig, TranslationSession
    from streamst.server.worker import SessionRunner

    async def scenario():
        session = TranslationSession(models, PipelineConfig.create("zh", ["en"], policy="wait-k"))
        events: list[dict] = []
        updated = asyncio.Event()

        def on_update(evs, samples, ms):
            events.extend(e.to_dict() for e in evs)
            updated.set()

        with ThreadPoolExecutor(1) as pool:
            runner = SessionRunner(SlowSession(session, delay_s), pool, max_pending_ms=120_000, step_ms=60,
                                   on_update=on_update)
            task = asyncio.create_task(runner.run())
            step = 16 * frame_ms
            for i in range(0, len(audio), step):
                runner.feed(audio[i : i + step])
                if not burst:  # unloaded: every complete piece is processed before the next frame
                    while runner.received - runner.processed >= runner.step:
                        updated.clear()
                        await asyncio.wait_for(updated.wait(), 30)
                else:
                    await asyncio.sleep(0)  # let the runner start a step now and then
            runner.end()
            await asyncio.wait_for(task, 120)
        return events, runner

    return asyncio.run(scenario())


def test_same_audio_same_events_whatever_the_load_and_the_frame_size(models, zh_audio):
    calm, calm_runner = run_runner(models, zh_audio, frame_ms=100, delay_s=0.0, burst=False)
    busy, busy_runner = run_runner(models, zh_audio, frame_ms=37, delay_s=0.02, burst=True)
    assert calm_runner.pieces == busy_runner.pieces  # the same grid
    assert calm_runner.updates <= -(-len(zh_audio) // 1600)  # at most one step per frame: never behind
    assert busy_runner.updates < calm_runner.updates / 3, (busy_runner.updates, calm_runner.updates)  # batched
    assert busy_runner.coalesced > 0
    assert any(e["type"] == "transcript" for e in calm), "the test audio must produce events"
    assert comparable(busy) == comparable(calm)


def test_neighbour_flood_does_not_change_a_sessions_output(models, zh_audio):
    srv = ServerThread(BASE, models)
    start = {"src_lang": "zh", "tgt_langs": ["en"], "policy": "wait-k"}
    try:
        alone, code = run_session(srv.url(), start, zh_audio, pace_s=0.01)
        assert code == 1000
        stop = threading.Event()

        def flood(path: str) -> int:
            sent = 0
            noise = pcm16_bytes(np.random.default_rng(1).uniform(-0.8, 0.8, 16000 * 4).astype(np.float32))
            with connect(srv.url(path), max_size=None) as ws:
                if path == "/ws":
                    ws.send(json.dumps({"type": "start", **start}))
                while not stop.is_set():  # as fast as the server reads: audio, speech and pings
                    ws.send(noise[: 32000 * 2])
                    ws.send(pcm16_bytes(zh_audio[:32000]))
                    if path == "/ws":
                        ws.send(json.dumps({"type": "ping", "id": "x" * 200}))
                    sent += 1
                    try:
                        while True:
                            ws.recv(timeout=0)
                    except TimeoutError:
                        pass
            return sent

        with ThreadPoolExecutor(3) as pool:
            floods = [pool.submit(flood, p) for p in ("/ws", "/funasr", "/ws")]
            try:
                beside, code = run_session(srv.url(), start, zh_audio, pace_s=0.01)
            finally:
                stop.set()
            for f in floods:
                try:
                    f.result(timeout=60)
                except ConnectionClosed:
                    pass  # a flood may be cut (overloaded): that is its problem, not the neighbour's
        assert code == 1000
        assert comparable(beside) == comparable(alone)
    finally:
        srv.close()


# -- backpressure, slow consumers, memory ----------------------------------------------------------
def test_a_reading_client_gets_every_pong_of_a_2000_ping_burst(models):
    srv = ServerThread(replace(BASE, send_queue=64), models)  # backpressure engages at 32 queued
    try:
        with connect(srv.url(), max_size=None) as ws:
            got: list[int] = []

            def reader():
                while len(got) < 2000:
                    m = json.loads(ws.recv(timeout=30))
                    if m["type"] == "pong":
                        got.append(m["id"])

            t = threading.Thread(target=reader)
            t.start()
            for i in range(2000):
                ws.send(json.dumps({"type": "ping", "id": i}))
            t.join(60)
        assert got == list(range(2000))
        _, _, metrics = srv.http("/metrics")
        assert metric_value(metrics, "streamst_errors_total", code="slow_consumer") == 0
    finally:
        srv.close()


def rss_mb() -> float:
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


RSS_BOUND_MB = 150  # growth allowed for 8 non-reading clients (outbox 4 MiB + buffers each)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc (Linux)")
def test_non_reading_clients_with_large_pings_stay_within_a_memory_bound(models):
    srv = ServerThread(replace(BASE, slow_consumer_s=2.0, idle_timeout_s=30), models)
    try:
        before = rss_mb()
        big_id = "p" * 256  # the largest id allowed
        stop = time.monotonic() + 6

        def client(k: int):
            sock = raw_client(srv.port)  # never reads: a client library would read on its own
            sent = 0
            try:  # a send blocks once the server stops reading us, until the server drops us
                while time.monotonic() < stop:
                    sock.sendall(raw_frame(json.dumps({"type": "ping", "id": big_id}).encode()))
                    sent += 1
                    if k == 0 and sent == 500:  # and a 200 KB id: refused, not echoed
                        sock.sendall(raw_frame(json.dumps({"type": "ping", "id": "z" * 200_000}).encode()))
            except OSError:
                pass
            return sock, sent

        samples = [before]
        sampling = threading.Event()

        def sampler():
            while not sampling.wait(0.2):  # the sampling period
                samples.append(rss_mb())

        probe = threading.Thread(target=sampler)
        probe.start()
        try:
            with ThreadPoolExecutor(8) as pool:
                clients = list(pool.map(client, range(8), timeout=120))
        finally:
            sampling.set()
            probe.join(10)
        sent = [n for _, n in clients]
        # never read, never closed by the client: the server must end each one itself
        ended = srv.wait_sessions(0, timeout=30)
        for sock, _ in clients:
            sock.close()
        assert ended == 0
        peak, after = max(samples), rss_mb()
        _, _, metrics = srv.http("/metrics")
        # each ends with a documented error: slow_consumer (stopped reading), bad_value (the 200 KB
        # id), or idle_timeout (never started) when the server outpaced the flood
        cut = sum(metric_value(metrics, "streamst_errors_total", code=c)
                  for c in ("slow_consumer", "bad_value", "idle_timeout"))
        print(f"\nnon-reading clients: {sum(sent)} pings sent, RSS {before:.0f} -> peak {peak:.0f} -> {after:.0f} MB")
        assert cut == 8
        assert peak - before < RSS_BOUND_MB, (before, peak)
    finally:
        srv.close()


def _ended_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server ended the TCP connection: reading what it sent before reaches EOF or a reset."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


@pytest.mark.parametrize("how", ["bad_value", "start_timeout"])
def test_a_failed_session_whose_client_never_reads_is_disconnected(models, how):
    """A session that failed (a bad start, or no start in time) while its client floods pings and
    reads nothing is gone within a bound: websockets' close waits for the unread pongs to drain
    with no deadline, so without our bounded close and reset the handler and socket stayed."""
    cfg = replace(BASE, start_timeout_s=2.0, close_timeout_s=1.0, slow_consumer_s=30.0, idle_timeout_s=30,
                  send_buffer_bytes=4096, write_limit=4096)
    srv = ServerThread(cfg, models)
    try:
        sock = raw_client(srv.port)
        t0 = time.monotonic()
        if how == "bad_value":
            sock.sendall(raw_frame(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"],
                                               "policy": {"k": -5}}).encode()))
        sock.settimeout(0.5)
        try:  # pongs pile up unread; the server stops reading us at some point
            while time.monotonic() - t0 < 4:
                sock.sendall(raw_frame(json.dumps({"type": "ping", "id": "p" * 256}).encode()))
        except (OSError, TimeoutError):
            pass
        bound = cfg.start_timeout_s + 2 * cfg.close_timeout_s + 3
        assert srv.wait_sessions(0, timeout=bound) == 0
        assert _ended_by_server(sock, within_s=bound)
        sock.close()
    finally:
        srv.close()


class _SlowServerSession(SlowSession):
    def __getattr__(self, name):  # everything else: the real session
        return getattr(self.inner, name)


def test_a_client_waiting_for_a_slow_server_is_not_idle(models, monkeypatch):
    """The idle clock stops while audio the client sent waits for inference: a client that
    sent its audio and waits for the results is not idle, however slow the server is."""
    import streamst.server.session as session_mod  # where every endpoint's session is opened

    real = session_mod.TranslationSession
    step_s = 0.8  # per 60 ms piece
    monkeypatch.setattr(session_mod, "TranslationSession", lambda *a, **k: _SlowServerSession(real(*a, **k), step_s))
    srv = ServerThread(replace(BASE, idle_timeout_s=0.5, status_interval_s=0.1), models)
    try:
        with connect(srv.url()) as ws:
            ws.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"]}))
            assert json.loads(ws.recv(timeout=20))["type"] == "ready"
            ws.send(pcm16_bytes(np.zeros(16000 * 18 // 100, np.float32)))  # 3 pieces: 2.4 s of work; then silence
            msgs, close = read_all(ws, timeout=30)
        errors = [m for m in msgs if m["type"] == "error"]
        assert [m["code"] for m in errors] == ["idle_timeout"] and close == 4001
        processed = [m["processed_ms"] for m in msgs if m["type"] == "status"]
        assert processed and max(processed) == 180, processed
    finally:
        srv.close()


# -- limits from the handshake -------------------------------------------------------------------
def test_clients_that_only_ping_cannot_hold_the_slots(models):
    srv = ServerThread(replace(BASE, max_sessions=3, start_timeout_s=1.0, status_interval_s=0.2), models)
    try:
        squatters = [connect(srv.url()) for _ in range(3)]
        codes = []
        for ws in squatters:
            ws.send(json.dumps({"type": "ping", "id": 1}))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(ws.close_code is None for ws in squatters):
            for ws in squatters:
                try:
                    ws.send(json.dumps({"type": "ping", "id": 2}))  # keeps idle_timeout away
                    while True:
                        m = json.loads(ws.recv(timeout=0.05))
                        if m["type"] == "error":
                            codes.append(m["code"])
                except (TimeoutError, ConnectionClosed):
                    pass
        for ws in squatters:  # what is still buffered
            try:
                while True:
                    m = json.loads(ws.recv(timeout=5))
                    if m["type"] == "error":
                        codes.append(m["code"])
            except (TimeoutError, ConnectionClosed):
                pass
            with contextlib.suppress(ConnectionClosed):
                ws.close()
        assert codes == ["idle_timeout"] * 3, codes
        assert srv.wait_sessions(0) == 0
        with connect(srv.url()) as ws:  # a real client is admitted
            ws.send(json.dumps({"type": "start"}))
            assert json.loads(ws.recv(timeout=20))["type"] == "ready"
    finally:
        srv.close()


def test_funasr_client_that_never_sends_audio_is_closed_in_funasr_shape(models):
    srv = ServerThread(replace(BASE, start_timeout_s=1.0, status_interval_s=0.2), models)
    try:
        with connect(srv.url("/funasr")) as ws:
            ws.send(json.dumps({"mode": "2pass", "wav_name": "w"}))
            m = json.loads(ws.recv(timeout=15))
            assert m["code"] == "idle_timeout" and m["mode"] == "error" and m["text"] == "" and m["wav_name"] == "w"
    finally:
        srv.close()


def test_session_length_counts_from_the_handshake(models):
    srv = ServerThread(replace(BASE, max_session_s=1.0, start_timeout_s=10, status_interval_s=0.1), models)
    try:
        with connect(srv.url()) as ws:
            t0 = time.monotonic()
            msgs = []
            try:
                while time.monotonic() - t0 < 3:  # ping, never start
                    ws.send(json.dumps({"type": "ping"}))  # may race the server's close: fine
                    msgs.append(json.loads(ws.recv(timeout=5)))
                    if msgs[-1]["type"] == "error":
                        break
            except ConnectionClosed:
                pass
            errors = [m["code"] for m in msgs if m["type"] == "error"]
            # the error message, or (when a ping raced the close) the close frame that follows it
            assert errors == ["session_too_long"] or (ws.close_code == 4002 and ws.close_reason == "session_too_long"), \
                (msgs[-2:], ws.close_code, ws.close_reason)
    finally:
        srv.close()


# -- strict JSON out -------------------------------------------------------------------------------
def test_outgoing_json_never_has_nan_or_invalid_unicode():
    data = strict.dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads(data) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    assert b"NaN" not in data and b"Infinity" not in data
    data = strict.dumps({"t": "a\ud800b"})  # escaped, never an encoding error at send time
    data.decode("utf-8")
    assert json.loads(data) == {"t": "a\ud800b"}


def test_schema_covers_every_policy_option():
    import dataclasses

    from streamst.policy.config import PolicyConfig
    from streamst.server.protocol import PolicyIn

    assert set(PolicyIn.model_fields) == {f.name for f in dataclasses.fields(PolicyConfig)}


def test_bench_soak_short_run_keeps_fds_flat(tiny_models_root, monkeypatch, speech):
    """A short `streamst bench soak` (the hour-long run is a benchmark, not a test): the
    command works across session churn and leaks no file descriptors."""
    from streamst.bench.soak import run_soak

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    lines: list[str] = []
    report = run_soak("tiny", minutes=0.3, session_minutes=0.1, sample_minutes=0.1, log=lines.append)
    assert report["sessions"] == 3 and report["audio_minutes"] == pytest.approx(0.3, abs=0.01)
    assert report["fd_growth"] <= 2, report["samples"]
    assert len(report["samples"]) >= 3 and all(s["rss_mb"] > 0 for s in report["samples"])
    assert lines and "RSS" in lines[0]
