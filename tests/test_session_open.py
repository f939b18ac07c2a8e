"""One opener for every endpoint (streamst/server/session.py): what `serve` is started with
reaches the sessions of /ws, /funasr and the OpenAI Realtime endpoint alike."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
from websockets.sync.client import connect

from streamst.audio import pcm16_bytes
from streamst.server import ServerConfig
from tests.server_util import ServerThread

STEP_MS = 120  # not the runner's default (60): a session that ignores the server's step shows it
SILENCE = np.zeros(16000 // 5, dtype=np.float32)


@pytest.fixture(scope="module")
def server(tiny_models):
    srv = ServerThread(ServerConfig(profile="tiny", step_ms=STEP_MS), tiny_models)
    yield srv
    srv.close()


def _open(ws, endpoint: str) -> None:
    """The first messages that open a session on ``endpoint``."""
    if endpoint == "/ws":
        ws.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"]}))
        assert json.loads(ws.recv(timeout=20))["type"] == "ready"
    elif endpoint == "/funasr":
        ws.send(json.dumps({"mode": "online", "wav_name": "t", "is_speaking": True}))
        ws.send(pcm16_bytes(SILENCE))
    else:  # OpenAI Realtime: the first append opens the session (24 kHz PCM16)
        assert json.loads(ws.recv(timeout=20))["type"] == "session.created"
        audio = base64.b64encode(np.zeros(4800, dtype="<i2").tobytes()).decode()
        ws.send(json.dumps({"type": "session.input_audio_buffer.append", "audio": audio}))


@pytest.mark.parametrize("endpoint", ["/ws", "/funasr", "/v1/realtime/translations"])
def test_every_endpoint_runs_its_sessions_on_the_servers_step(server, endpoint) -> None:
    """`serve --step-ms` reaches every endpoint (the OpenAI endpoint dropped it before
    sessions were opened in one place)."""
    with connect(server.url(endpoint), open_timeout=20) as ws:
        _open(ws, endpoint)
        deadline, steps = time.monotonic() + 20, []
        while not steps and time.monotonic() < deadline:
            steps = server.on_loop(lambda: [c.runner.step for c in server.server.connections.values()
                                            if c.runner is not None])
            time.sleep(0.02)  # polling a condition with a deadline, not a sync point
    assert steps == [STEP_MS * 16]
