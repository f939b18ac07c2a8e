"""The websocket service end to end on loopback: tiny models, espeak-ng speech, one
in-process server per limit setting. Every wait is bounded (timeouts), nothing sleeps to
synchronise."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from streamst.audio import pcm16_bytes
from streamst.server import ServerConfig
from streamst.server.protocol import ERRORS, ProtocolError, parse_text
from tests.server_util import ServerThread, expect_error, metric_value, read_all, read_wav, run_session

ZH = "区块链是今年最火热的科技趋势了。"
EN = "The weather is nice today and we walk to the park."


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


BASE = ServerConfig(profile="tiny", max_sessions=6, idle_timeout_s=20, max_frame_bytes=64 * 1024,
                    status_interval_s=0.5)


@pytest.fixture(scope="module")
def server(models):
    srv = ServerThread(BASE, models)
    yield srv
    srv.close()


@pytest.fixture
def make_server(models):
    started = []

    def make(**overrides):
        from dataclasses import replace

        srv = ServerThread(replace(BASE, **overrides), models)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.close()


@pytest.fixture(scope="module")
def zh_audio(speech):
    return read_wav(speech(ZH, "zh", gap_ms=700))


@pytest.fixture(scope="module")
def en_audio(speech):
    return read_wav(speech(EN, "en", gap_ms=700))


def check_transcripts(msgs):
    kinds = set()
    for m in msgs:
        if m["type"] != "transcript":
            continue
        kinds.add(m["kind"])
        assert m["kind"] in ("partial", "stable", "final")
        assert isinstance(m["utterance"], int) and m["utterance"] >= 0
        assert m["text"].startswith(m["stable_text"]) or m["kind"] == "final"
        assert 0 <= m["start_ms"] <= m["end_ms"] <= m["audio_ms"]
        for tok in m["tokens"]:
            assert tok["start_ms"] <= tok["end_ms"]
        if m["kind"] == "final":
            assert m["text"] == m["stable_text"]
    return kinds


def test_concurrent_sessions_get_independent_results(server, zh_audio, en_audio):
    jobs = {
        "zh-en simul": ({"src_lang": "zh", "tgt_langs": ["en"], "mode": "simul"}, zh_audio),
        "en-zh both": ({"src_lang": "en", "tgt_langs": ["zh"], "mode": "both"}, en_audio),
        "zh-en wait-k": ({"src_lang": "zh", "tgt_langs": ["en"], "policy": {"name": "wait-k", "k": 2}}, zh_audio),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(run_session, server.url(), start, audio, pace_s=0.02)
                   for name, (start, audio) in jobs.items()}
        results = {name: f.result(timeout=120) for name, f in futures.items()}
    for name, (msgs, code) in results.items():
        start = jobs[name][0]
        assert code == 1000, (name, msgs[-1])
        assert msgs[0]["type"] == "ready" and msgs[0]["version"] == 1
        cfg = msgs[0]["config"]
        assert cfg["src_lang"] == start["src_lang"] and cfg["tgt_langs"] == start["tgt_langs"]
        if name == "zh-en wait-k":
            assert cfg["policy"]["en"]["name"] == "wait-k" and cfg["policy"]["en"]["k"] == 2
        end = msgs[-1]
        assert end["type"] == "end", end
        assert sum(m["type"] == "end" for m in msgs) == 1
        assert "final" in check_transcripts(msgs), name
        tgt = start["tgt_langs"][0]
        translations = [m for m in msgs if m["type"] == "translation"]
        assert translations and all(t["language"] == tgt for t in translations), name
        modes = {t["mode"] for t in translations}
        assert modes == ({"simul", "cascade"} if start.get("mode") == "both" else {"simul"}), (name, modes)
        for t in translations:  # committed only grows within an utterance; delays per new unit
            assert len(t["delays_ms"]) == len(t["new_units"]) == len(t["elapsed_ms"])
        simul = [t for t in translations if t["mode"] == "simul"]
        for a, b in zip(simul, simul[1:]):
            if a["utterance"] == b["utterance"]:
                assert b["committed"].startswith(a["committed"])
        assert any(m["type"] == "latency" for m in msgs)
        summary = end["summary"]
        assert summary["audio_ms"] == summary["processed_ms"] > 0
        assert summary["utterances"] >= 1
        assert {r["language"] for r in summary["results"]} == {tgt}
        status = [m for m in msgs if m["type"] == "status"]
        assert status and {"audio_ms", "processed_ms", "lag_ms", "coalesced_ms"} <= set(status[-1])
    assert server.wait_sessions(0) == 0
    _, _, metrics = server.http("/metrics")
    assert 'streamst_sessions_total{endpoint="ws"}' in metrics
    assert "streamst_utterance_latency_ms_count" in metrics and 'metric="LAAL"' in metrics


def test_app_ping_pong_before_and_during_a_session(server, zh_audio):
    with connect(server.url()) as ws:
        ws.send(json.dumps({"type": "ping", "id": 7}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong", "id": 7}
        ws.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"]}))
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        ws.send(pcm16_bytes(zh_audio[:3200]))
        ws.send(json.dumps({"type": "ping", "id": "x"}))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = json.loads(ws.recv(timeout=20))
            if m["type"] == "pong":
                assert m["id"] == "x"
                break
        else:
            pytest.fail("no pong")


BAD_INPUTS = [
    ("malformed_json", ["{not json"], 1007),
    ("malformed_json", ["[1, 2]"], 1007),
    ("unknown_type", [{"type": "hello"}], 1007),
    ("unknown_field", [{"type": "start", "src_lang": "zh", "colour": "red"}], 1007),
    ("unknown_field", [{"type": "start", "policy": {"name": "wait-k", "bogus": 1}}], 1007),
    ("binary_before_start", [b"\x00\x00" * 160], 1003),
    ("wrong_order", [{"type": "end"}], 1007),
    ("wrong_order", [{"type": "start"}, {"type": "start"}], 1007),
    ("bad_sample_rate", [{"type": "start", "sample_rate": 5}], 1007),
    ("bad_sample_rate", [{"type": "start", "sample_rate": 10_000_000}], 1007),
    ("bad_language", [{"type": "start", "src_lang": "xx"}], 1007),
    ("bad_language", [{"type": "start", "src_lang": "zh", "tgt_langs": ["zh"]}], 1007),
    ("bad_encoding", [{"type": "start", "encoding": "mp3"}], 1007),
    ("bad_value", [{"type": "start", "policy": {"name": "wait-k", "k": 0}}], 1007),
    ("bad_policy", [{"type": "start", "policy": {"name": "wait-k", "k": 5, "max_lag": 3}}], 1007),
    ("bad_policy", [{"type": "start", "policy": {"name": "nope"}}], 1007),
    ("unsupported_version", [{"type": "start", "version": 2}], 1007),
    ("bad_value", [{"type": "start", "chunk_ms": 100}], 1007),
    ("bad_audio", [{"type": "start"}, b"\x00\x00\x00"], 1007),
    ("bad_audio", [{"type": "start", "encoding": "f32le"}, np.full(8, np.nan, "<f4").tobytes()], 1007),
    ("frame_too_big", [{"type": "start"}, b"\x00" * (64 * 1024 + 2)], 1009),
]


def test_every_bad_input_gets_its_code_and_a_good_session_is_unaffected(server, zh_audio):
    good = ThreadPoolExecutor(1).submit(run_session, server.url(), {"src_lang": "zh", "tgt_langs": ["en"]},
                                        zh_audio, pace_s=0.03)
    for code, sends, close_code in BAD_INPUTS:
        assert ERRORS[code] == close_code
        with connect(server.url(), max_size=None) as ws:
            for item in sends:
                if isinstance(item, dict):
                    ws.send(json.dumps(item))
                else:
                    ws.send(item)
            err = expect_error(ws, code, close_code)
            assert err["message"], code
    msgs, close = good.result(timeout=120)
    assert close == 1000 and msgs[-1]["type"] == "end"
    assert server.wait_sessions(0) == 0
    _, _, metrics = server.http("/metrics")
    assert metric_value(metrics, "streamst_errors_total", code="bad_language") == 2


def test_frame_far_beyond_the_limit_is_refused_by_websockets_with_1009(server):
    with connect(server.url(), max_size=None) as ws:
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        ws.send(b"\x00" * (4 * 64 * 1024))
        _, close = read_all(ws, timeout=20)
    assert close == 1009


def test_token_and_origin(make_server):
    srv = make_server(token="s3cret", allowed_origins=("http://good.example",))
    with connect(srv.url()) as ws:
        expect_error(ws, "unauthorized", 1008)
    with connect(srv.url() + "?token=wrong") as ws:
        expect_error(ws, "unauthorized", 1008)
    with connect(srv.url(), additional_headers={"Authorization": "Bearer s3cret"}, origin="http://evil.example") as ws:
        expect_error(ws, "origin_not_allowed", 1008)
    for kw in ({"additional_headers": {"Authorization": "Bearer s3cret"}},
               {"origin": "http://good.example", "uri_suffix": "?token=s3cret"}):
        suffix = kw.pop("uri_suffix", "")
        with connect(srv.url() + suffix, **kw) as ws:
            ws.send(json.dumps({"type": "ping", "id": 1}))
            assert json.loads(ws.recv(timeout=10))["type"] == "pong"
    _, _, metrics = srv.http("/metrics")
    assert metric_value(metrics, "streamst_errors_total", code="unauthorized") == 2


def test_server_full_then_admitted_again(make_server):
    srv = make_server(max_sessions=1)
    with connect(srv.url()) as first:
        first.send(json.dumps({"type": "ping"}))
        assert json.loads(first.recv(timeout=10))["type"] == "pong"
        with connect(srv.url()) as second:
            expect_error(second, "server_full", 1013)
    assert srv.wait_sessions(0) == 0
    with connect(srv.url()) as third:
        third.send(json.dumps({"type": "ping"}))
        assert json.loads(third.recv(timeout=10))["type"] == "pong"


def test_idle_timeout_and_app_pings_keep_a_session_alive(make_server):
    srv = make_server(idle_timeout_s=0.6, ping_interval_s=0.2, ping_timeout_s=5)
    with connect(srv.url()) as ws:
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        for i in range(8):  # 8 x 0.25 s: far past the idle timeout, kept alive by app pings
            ws.send(json.dumps({"type": "ping", "id": i}))
            while (msg := json.loads(ws.recv(timeout=5)))["type"] != "pong":
                assert msg["type"] == "status", msg  # no error: the pings reset the idle clock
            time.sleep(0.25)  # a client's keepalive period, not synchronisation
        assert srv.sessions() == 1  # still open at the server after 3 idle timeouts
        err = expect_error(ws, "idle_timeout", 4001)  # now silent: closed
        assert "0.6" in err["message"]


def test_session_too_long(make_server):
    srv = make_server(max_session_s=1.0, status_interval_s=0.2)
    with connect(srv.url()) as ws:
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        t0 = time.monotonic()
        got: list[dict] = []
        while time.monotonic() - t0 < 10 and not any(m["type"] == "error" for m in got):
            try:
                ws.send(pcm16_bytes(np.zeros(1600, np.float32)))
                got.append(json.loads(ws.recv(timeout=0.1)))
            except TimeoutError:
                continue
            except ConnectionClosed:
                break  # the close may overtake our send; the error came before it
        rest, close = read_all(ws, timeout=10)
        errors = [m for m in got + rest if m["type"] == "error"]
        assert [m["code"] for m in errors] == ["session_too_long"]
        assert ws.close_code == 4002


def test_disconnect_mid_stream_frees_the_session(server, zh_audio):
    assert server.wait_sessions(0) == 0
    with connect(server.url()) as ws:
        ws.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"], "mode": "both"}))
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        for i in range(0, 16000 * 2, 1600):
            ws.send(pcm16_bytes(zh_audio[i : i + 1600]))
        assert server.sessions() == 1
        ws.socket.shutdown(socket.SHUT_RDWR)  # vanish without a close handshake
    assert server.wait_sessions(0, timeout=20) == 0
    _, _, metrics = server.http("/metrics")
    assert metric_value(metrics, "streamst_sessions_active") == 0
    assert json.loads(server.http("/healthz")[2])["sessions"] == 0


def test_slow_client_is_dropped_and_others_finish(make_server, zh_audio):
    # tiny buffers everywhere so a client that never reads fills them within seconds; it is
    # judged on send progress: nothing sent for slow_consumer_s
    srv = make_server(send_queue=64, write_limit=2048, send_buffer_bytes=4096, status_interval_s=0.01,
                      slow_consumer_s=2.0)
    good = ThreadPoolExecutor(1).submit(run_session, srv.url(), {"src_lang": "zh", "tgt_langs": ["en"]},
                                        zh_audio, pace_s=0.02)
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with connect(srv.url(), sock=sock, max_queue=1, compression=None) as slow:
        slow.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"]}))
        deadline = time.monotonic() + 60
        dropped = False
        while time.monotonic() < deadline and not dropped:  # stream at 2x real time, never read
            try:
                for i in range(0, len(zh_audio), 1600):
                    slow.send(pcm16_bytes(zh_audio[i : i + 1600]))
                    time.sleep(0.05)  # pacing the stream like a live client
            except Exception:  # noqa: BLE001 - the server closed us: that is the point
                break
            _, _, metrics = srv.http("/metrics")
            dropped = metric_value(metrics, "streamst_errors_total", code="slow_consumer") == 1
        slow.socket.close()
    msgs, close = good.result(timeout=120)
    assert close == 1000 and msgs[-1]["type"] == "end"
    _, _, metrics = srv.http("/metrics")
    assert metric_value(metrics, "streamst_errors_total", code="slow_consumer") == 1, \
        [line for line in metrics.splitlines() if "error" in line or "sessions" in line]
    assert srv.wait_sessions(0, timeout=20) == 0


def test_http_endpoints(server):
    status, ctype, body = server.http("/healthz")
    assert status == 200 and ctype.startswith("application/json")
    health = json.loads(body)
    assert health["ok"] is True and health["profile"] == "tiny" and "sessions" in health
    status, ctype, body = server.http("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    for name in ("streamst_sessions_active", "streamst_sessions_total", "streamst_audio_seconds_total",
                 "streamst_real_time_factor", "streamst_lag_ms", "streamst_errors_total",
                 "streamst_utterance_latency_ms", "streamst_retention_proxy", "streamst_asr_batch_size"):
        assert f"# TYPE {name} " in body, name
    assert server.http("/nope.html")[0] == 404
    assert server.http("/..%2Fapp.py")[0] == 404
    assert server.http("/.hidden")[0] == 404
    from streamst.server.app import WEB_DIR

    index = server.http("/")
    assert index[0] == (200 if (WEB_DIR / "index.html").is_file() else 404)
    if index[0] == 200:
        assert index[1].startswith("text/html")


def test_shutdown_tells_clients(make_server):
    srv = make_server()
    with connect(srv.url()) as ws:
        ws.send(json.dumps({"type": "start"}))
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
        closer = threading.Thread(target=srv.close)
        closer.start()
        expect_error(ws, "shutting_down", 1001)
        closer.join(30)
    srv.close = lambda: None  # already closed


def test_parse_text_unit():
    assert parse_text('{"type":"ping","id":3}').id == 3
    start = parse_text('{"type":"start","tgt_langs":"en","policy":"wait-k"}')
    assert start.tgt_langs == ("en",) and start.policy.name == "wait-k"
    with pytest.raises(ProtocolError) as e:
        parse_text('{"type":"start","sample_rate":true}')
    assert e.value.code == "bad_sample_rate" and e.value.close_code == 1007


def test_asr_batcher_batches_concurrent_requests(models):
    from streamst.server.worker import AsrBatcher

    rng = np.random.default_rng(0)
    windows = [rng.standard_normal((n, 560)).astype(np.float32) for n in (20, 35, 50, 35)]
    alone = [models.asr.recognize([w], "zh")[0] for w in windows]
    batcher = AsrBatcher(models.asr, max_batch=8, max_wait_ms=200)
    barrier = threading.Barrier(len(windows))
    try:
        def call(w):
            barrier.wait(timeout=10)
            return batcher.recognize(w, "zh")

        with ThreadPoolExecutor(len(windows)) as pool:
            got = list(pool.map(call, windows, timeout=60))
    finally:
        batcher.close()
    assert batcher.stats["max_batch"] > 1, batcher.batch_sizes  # they really ran together
    assert batcher.stats["windows"] == len(windows)
    for a, b in zip(alone, got):  # padding in a batch does not change any window's result
        assert [t.id for t in a.tokens] == [t.id for t in b.tokens]


class _BlockingSession:
    """A fake session whose first update blocks until released (inference falling behind)."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.inserted: list[int] = []

    def insert_audio(self, samples):
        self.inserted.append(samples.size)

    def process(self):
        self.started.set()
        assert self.release.wait(10)
        return []

    def finish(self):
        return []


def test_runner_batches_pending_pieces_on_the_fixed_grid_and_bounds_pending():
    import asyncio

    from streamst.server.worker import SessionRunner

    async def scenario():
        fake = _BlockingSession()
        updates = []
        with ThreadPoolExecutor(1) as pool:
            runner = SessionRunner(fake, pool, max_pending_ms=1000, step_ms=60,  # type: ignore[arg-type]
                                   on_update=lambda ev, n, ms: updates.append(n))
            task = asyncio.create_task(runner.run())
            runner.feed(np.zeros(1600, np.float32))  # 100 ms: one 60 ms piece starts and blocks
            await asyncio.to_thread(fake.started.wait, 10)
            for _ in range(5):  # 500 ms arrive while it runs
                runner.feed(np.zeros(1600, np.float32))
            assert runner.status().lag_ms == 600 and runner.status().coalesced_ms == 500
            with pytest.raises(ProtocolError) as e:  # past the bound: an explicit error, not a drop
                runner.feed(np.zeros(16000, np.float32))
            assert e.value.code == "overloaded" and e.value.close_code == 1013
            fake.release.set()
            runner.end()
            await asyncio.wait_for(task, 10)
        return runner, fake, updates

    runner, fake, updates = asyncio.run(scenario())
    # the grid is 960 samples (60 ms) from the stream start whatever the frames: 600 ms are
    # 10 pieces, the first alone, then the 9 that waited in ONE step, still piece by piece
    assert fake.inserted == [960] * 10
    assert updates == [960, 9 * 960, 0]  # two steps, then finish
    st = runner.status()
    assert st.lag_ms == 0 and st.processed_ms == st.audio_ms == 600 and st.updates == 2 and runner.pieces == 10


def test_long_silent_stream_bounded_memory_and_no_text(server):
    """Two minutes of silence at full speed: no hallucinated text, bounded buffers."""
    with connect(server.url()) as ws:
        ws.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"]}))
        ready = json.loads(ws.recv(timeout=20))
        second = pcm16_bytes(np.zeros(16000, np.float32))
        for burst in range(6):  # 20 s bursts (under the 30 s pending bound), each caught up
            for _ in range(20):
                ws.send(second)
            while True:
                m = json.loads(ws.recv(timeout=30))
                assert m["type"] == "status", m
                if m["processed_ms"] > (burst + 1) * 20_000 - 60:  # all but the part of a 60 ms grid piece
                    break

        def buffers():
            conn = server.server.connections[ready["session"]]
            return conn.session.recognizer.buffered_frames, conn.runner._pending_samples, len(conn.outbox._items)

        frames, pending, queued = server.on_loop(buffers)
        assert frames <= 12_000 // 60 and pending <= 120 * 16000 and queued <= 1024
        ws.send(json.dumps({"type": "end"}))
        msgs, close = read_all(ws)
    assert close == 1000
    assert not [m for m in msgs if m["type"] in ("transcript", "translation")]
    assert msgs[-1]["summary"]["audio_ms"] == 120_000


def test_bench_server_load_check_runs(tiny_models_root, monkeypatch, speech):
    from streamst.bench.server import run_loadcheck

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    lines = []
    report = run_loadcheck("tiny", max_sessions=1, seconds=4, policy="wait-k", log=lines.append)
    row = report["rounds"][0]
    assert row["sessions"] == 1 and not row["errors"], row
    assert row["flush_s_max"] < 30 and row["lag_ms_max"] >= 0
    assert row["cpu_s"] > 0 and row["cpu_s_per_audio_s"] > 0 and row["loadavg"] >= 0  # to weigh the load
    assert report["max_realtime_sessions"] in (0, 1) and any("N= 1" in line for line in lines)


def test_bench_server_takes_server_options_and_reports_e2e_batching(tiny_models_root, monkeypatch, speech):
    """``bench server --mode e2e --e2e-lean --e2e-batch-rows N`` (what a GPU run at real size
    uses): the options reach the server, and each round reports the e2e decoder's batching."""
    from streamst.bench.server import run_loadcheck

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    report = run_loadcheck("tiny", max_sessions=1, seconds=4, mode="e2e", log=lambda line: None,
                           server_options={"e2e_lean": True, "e2e_batch_rows": 4, "threads": 1})
    assert report["e2e_lean"] is True and report["e2e_batch_rows"] == 4 and report["threads"] == 1
    row = report["rounds"][0]
    assert not row["errors"], row
    assert row["e2e_batches"]["requests"] > 0 and row["e2e_batches"]["calls"] > 0
