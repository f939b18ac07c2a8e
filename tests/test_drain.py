"""Graceful drain of a real ``streamst serve`` process: SIGTERM makes /healthz answer 503,
refuses new sessions, lets open ones finish, and ends the rest with their summary at
``--drain-s``; then the process exits 0. Also the FunASR port's access setting."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
from websockets.sync.client import connect

from streamst.audio import pcm16_bytes
from streamst.server import ServerConfig
from tests.live_server import running_server
from tests.server_util import ServerThread, read_all, read_wav
from tests.test_funasr_port import reference_like_client

ZH = "区块链是今年最火热的科技趋势了。"
FRAME = 1600
START = {"type": "start", "src_lang": "zh", "tgt_langs": ["en"], "mode": "simul"}


@pytest.fixture(scope="module")
def audio(speech):
    return read_wav(speech(ZH, "zh", gap_ms=700))


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def send(ws, audio: np.ndarray) -> None:
    for i in range(0, len(audio), FRAME):
        ws.send(pcm16_bytes(audio[i: i + FRAME]))


def test_sigterm_drains_open_sessions_then_ends_the_rest_with_their_summary(tiny_models_root, audio):
    half = len(audio) // 2 // FRAME * FRAME
    with running_server(tiny_models_root, "--drain-s", "12") as srv:
        with connect(srv.ws, open_timeout=20) as finishing, connect(srv.ws, open_timeout=20) as lingering:
            for ws in (finishing, lingering):
                ws.send(json.dumps(START))
                assert json.loads(ws.recv(timeout=20))["type"] == "ready"
                send(ws, audio[:half])
            srv.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while (got := health(srv.port))[0] == 200 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a condition with a deadline
            status, body = got
            assert status == 503 and body["draining"] is True and body["ok"] is False
            with connect(srv.ws, open_timeout=20) as new:  # a new session goes elsewhere
                new.send(json.dumps(START))
                msgs, code = read_all(new, timeout=20)
                assert msgs[-1]["code"] == "shutting_down" and code == 1001
            send(finishing, audio[half:])  # an open session goes on and ends normally
            finishing.send(json.dumps({"type": "end"}))
            msgs, code = read_all(finishing)
            assert msgs[-1]["type"] == "end" and "reason" not in msgs[-1] and code == 1000
            assert msgs[-1]["summary"]["audio_samples"] == len(audio)
            msgs, code = read_all(lingering)  # one that never ends gets its summary at --drain-s
            end = msgs[-1]
            assert end["type"] == "end" and end["reason"] == "shutting_down" and code == 1001
            # what it processed (audio short of a whole 60 ms grid step is given back): a client
            # continues elsewhere from there
            assert half - 960 < end["summary"]["audio_samples"] <= half
        assert srv.proc.wait(timeout=30) == 0
        assert "Traceback" not in srv.output()


def test_the_funasr_port_of_a_token_server_is_open_only_when_the_operator_says_so(tiny_models, audio, caplog):
    cfg = ServerConfig(profile="tiny", token="s3cret", funasr_port=0, idle_timeout_s=30)
    srv = ServerThread(cfg, tiny_models)  # default: the port asks for the token, which FunASR cannot send
    try:
        with connect(f"ws://127.0.0.1:{srv.server.bound_funasr_port}/", subprotocols=["binary"]) as ws:
            msgs, code = read_all(ws, timeout=20)
        assert code == 1008 and "unauthorized" in json.dumps(msgs)
        assert "FunASR clients cannot send" in caplog.text
    finally:
        srv.close()
    caplog.clear()
    srv = ServerThread(replace(cfg, funasr_open=True, funasr_host="127.0.0.1"), tiny_models)
    try:
        got = asyncio.run(reference_like_client(f"ws://127.0.0.1:{srv.server.bound_funasr_port}",
                                                [("t", pcm16_bytes(audio))], mode="offline"))
        assert got["t"] and got["t"][-1]["is_final"] is True, got
        with connect(srv.url()) as ws:  # the main port still asks for the token
            msgs, code = read_all(ws, timeout=20)
        assert code == 1008
        assert "NO token" not in caplog.text  # bound to loopback: no warning
    finally:
        srv.close()
    caplog.clear()
    import logging

    from streamst.server.app import warn_funasr_port

    with caplog.at_level(logging.WARNING):
        warn_funasr_port(replace(cfg, funasr_open=True, funasr_host="0.0.0.0", funasr_port=10095))
    assert "takes NO token" in caplog.text and "reachable beyond this machine" in caplog.text
