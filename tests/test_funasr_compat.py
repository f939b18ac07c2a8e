"""The FunASR runtime protocol at /funasr: message shapes FunASR clients rely on, quirks
they produce (config resent, is_speaking toggles, chunk_size as a string, other rates)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.signal import resample_poly
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from streamst.audio import pcm16_bytes
from streamst.server import ServerConfig
from streamst.server.funasr_compat import FunasrOptions, parse_chunk_ms
from tests.server_util import ServerThread, read_wav

ZH = "区块链是今年最火热的科技趋势了。"


@pytest.fixture(scope="module")
def server(tiny_models_root):
    from streamst.loading import Models
    from streamst.profiles import load_profile

    models = Models(load_profile(str(tiny_models_root / "profiles" / "tiny.json")), root=tiny_models_root)
    srv = ServerThread(ServerConfig(profile="tiny", idle_timeout_s=20), models)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def zh_audio(speech):
    return read_wav(speech(ZH, "zh", gap_ms=700))


def until_final(ws, timeout: float = 60) -> list[dict]:
    """Messages up to and including the first with is_final true."""
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        m = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        assert "text" in m and "mode" in m and "wav_name" in m, m  # FunASR clients read these
        msgs.append(m)
        if m["is_final"]:
            return msgs


def stream(ws, pcm: bytes, frame_bytes: int = 9600) -> None:
    for i in range(0, len(pcm), frame_bytes):
        ws.send(pcm[i : i + frame_bytes])
        time.sleep(0.01)  # pacing like a live client


def test_2pass_messages_with_timestamps_and_translation(server, zh_audio):
    with connect(server.url("/funasr")) as ws:
        ws.send(json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5], "chunk_interval": 10, "wav_name": "mic",
                            "is_speaking": True, "hotwords": "", "itn": True, "audio_fs": 16000, "wav_format": "pcm"}))
        stream(ws, pcm16_bytes(zh_audio))
        ws.send(json.dumps({"is_speaking": False}))
        msgs = until_final(ws)
    modes = {m["mode"] for m in msgs}
    assert modes <= {"2pass-online", "2pass-offline"} and "2pass-offline" in modes, modes
    online = [m for m in msgs if m["mode"] == "2pass-online"]
    assert online and any(m["text"] for m in online)
    assert not any(m["is_final"] for m in msgs[:-1])  # is_final: the segment's last message only
    offline = [m for m in msgs if m["mode"] == "2pass-offline" and m["text"]]
    assert offline, msgs
    utt = offline[0]
    ts = json.loads(utt["timestamp"])
    assert ts and all(len(p) == 2 and p[0] <= p[1] for p in ts)
    assert [p[0] for p in ts] == sorted(p[0] for p in ts)
    sent = utt["stamp_sents"][0]
    assert {"text_seg", "punc", "start", "end", "ts_list"} <= set(sent) and sent["ts_list"] == ts
    assert set(utt["translation"]) == {"en"}
    assert all(m["wav_name"] == "mic" for m in msgs)
    assert msgs[-1]["is_final"] is True


def test_quirks_string_chunk_size_8k_audio_resent_config_and_two_segments(server, zh_audio):
    audio_8k = resample_poly(zh_audio, 1, 2).astype(np.float32)
    with connect(server.url("/funasr")) as ws:
        ws.send(json.dumps({"mode": "2pass", "chunk_size": "5,10,5", "audio_fs": 8000, "tgt_lang": "ja"}))
        pcm = pcm16_bytes(audio_8k)
        half = len(pcm) // 2 + 1  # odd split: the carried byte must not break decoding
        stream(ws, pcm[:half], frame_bytes=3201)
        ws.send(json.dumps({"mode": "2pass", "wav_name": "again", "is_speaking": True}))  # resent mid-stream
        stream(ws, pcm[half:], frame_bytes=3201)
        ws.send(json.dumps({"is_speaking": False}))
        first = until_final(ws)
        assert any(m["mode"] == "2pass-offline" and m["text"] for m in first)
        assert all(set(m.get("translation", {"ja": ""})) == {"ja"} for m in first)
        # a second segment on the same connection (is_speaking toggled back on)
        ws.send(json.dumps({"is_speaking": True}))
        stream(ws, pcm)
        ws.send(json.dumps({"is_speaking": False}))
        second = until_final(ws)
        assert second[-1]["wav_name"] == "again"
    assert server.wait_sessions(0) == 0


def test_offline_mode_sends_offline_messages_only(server, zh_audio):
    with connect(server.url("/funasr")) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_name": "f.wav", "is_speaking": True}))
        stream(ws, pcm16_bytes(zh_audio), frame_bytes=32000)
        ws.send(json.dumps({"is_speaking": False}))
        msgs = until_final(ws)
    assert {m["mode"] for m in msgs} == {"offline"}
    assert any(m["text"] and "timestamp" in m for m in msgs)


def test_malformed_config_and_bad_rate_close_with_codes(server):
    with connect(server.url("/funasr")) as ws:
        ws.send("{nope")
        m = json.loads(ws.recv(timeout=10))
        assert m["code"] == "malformed_json" and m["text"] == ""
        assert m["is_end"] is True and m["is_final"] is False and m["error"]  # FunASR: "the server failed"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1007
    with connect(server.url("/funasr")) as ws:
        ws.send(json.dumps({"mode": "2pass", "audio_fs": 12}))
        assert json.loads(ws.recv(timeout=10))["code"] == "bad_sample_rate"


def test_chunk_size_and_options_parsing():
    assert parse_chunk_ms([5, 10, 5]) == 600
    assert parse_chunk_ms("8,8,4") == 480
    assert parse_chunk_ms("[5, 10, 5]") == 600
    assert parse_chunk_ms("garbage") == 600 and parse_chunk_ms(None) == 600
    assert parse_chunk_ms([0, 1000, 0]) == 3000  # clamped
    opts = FunasrOptions()
    opts.update({"mode": "weird", "svs_lang": "en", "hotwords": "{\"x\": 1}", "itn": False})
    assert opts.mode == "2pass" and opts.src_lang == "en"
    assert opts.pipeline().tgt_langs == ("zh",)  # en source: default target switches to zh
