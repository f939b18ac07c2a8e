"""FunASR clients unchanged: `--funasr-port` serves the FunASR protocol at the root path of a
second port, the `is_end` acknowledgement, refusals in FunASR's shape, hotwords.

`reference_like_client` behaves as FunASR's `runtime/python/websocket/funasr_wss_client.py`
does with `--audio_in` (read, not copied): connect to `ws://HOST:PORT` with the `binary`
subprotocol and no pings, send the config, the PCM in `chunk_size[1] * 60 / chunk_interval`
ms strides, then `{"is_speaking": false, "is_end": true}`, wait for a message with `is_end`
and fail unless its `is_final` is true; next wav on the same connection; close."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from streamst.audio import pcm16_bytes
from streamst.server import ServerConfig
from streamst.server.funasr_compat import FunasrOptions, parse_hotwords
from tests.server_util import TIMEOUT, ServerThread, read_wav

ZH = "区块链是今年最火热的科技趋势了。"


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


@pytest.fixture(scope="module")
def server(models):
    srv = ServerThread(ServerConfig(profile="tiny", funasr_port=0, idle_timeout_s=20, max_sessions=2), models)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def zh_pcm(speech):
    return pcm16_bytes(read_wav(speech(ZH, "zh", gap_ms=500)))


async def reference_like_client(uri: str, wavs: list[tuple[str, bytes]], *, mode: str = "2pass",
                                hotwords: str = "", result_timeout: float = TIMEOUT,
                                received: dict[str, list[dict]] | None = None) -> dict[str, list[dict]]:
    chunk_size, chunk_interval = [5, 10, 5], 10
    stride = int(60 * chunk_size[1] / chunk_interval / 1000 * 16000 * 2)
    received = {} if received is None else received
    acks: asyncio.Queue = asyncio.Queue()
    async with websockets.connect(uri, subprotocols=["binary"], ping_interval=None) as ws:

        async def receive() -> None:
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    received.setdefault(msg.get("wav_name", "demo"), []).append(msg)
                    if msg.get("is_end"):
                        acks.put_nowait(msg)
            except websockets.ConnectionClosed:
                pass
            acks.put_nowait({"is_end": True, "is_final": False, "error": "closed before the acknowledgement"})

        receiver = asyncio.create_task(receive())
        for name, pcm in wavs:
            await ws.send(json.dumps({"mode": mode, "chunk_size": chunk_size, "chunk_interval": chunk_interval,
                                      "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 0, "audio_fs": 16000,
                                      "wav_name": name, "wav_format": "pcm", "is_speaking": True,
                                      "hotwords": hotwords, "itn": True}, ensure_ascii=False))
            for i in range(0, len(pcm), stride):
                await ws.send(pcm[i : i + stride])
                await asyncio.sleep(0.001)  # the client's own pacing (it sleeps per chunk)
            await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
            ack = await asyncio.wait_for(acks.get(), timeout=result_timeout)
            if not ack.get("is_final", False):
                raise RuntimeError(f"server failed to finalize {name!r}: {ack.get('error')}")
        await ws.close()
        await receiver
    return received


def test_reference_client_at_the_root_of_the_funasr_port(server, zh_pcm):
    port = server.server.bound_funasr_port
    assert port and port != server.port
    got = asyncio.run(reference_like_client(f"ws://127.0.0.1:{port}", [("one", zh_pcm), ("two", zh_pcm[: len(zh_pcm) // 2])],
                                            hotwords="阿里巴巴 20"))
    assert set(got) == {"one", "two"}
    for name, msgs in got.items():
        ack = msgs[-1]
        assert ack["is_end"] is True and ack["is_final"] is True and ack["wav_name"] == name
        assert ack["mode"] == "2pass-offline" and ack["text"] == ""
        assert sum(m["is_final"] for m in msgs) == 1  # is_final: the segment's last message only
        assert any(m["mode"] == "2pass-offline" and m["text"] for m in msgs), msgs
        assert all({"mode", "text", "wav_name", "is_final"} <= set(m) for m in msgs)
    assert server.wait_sessions(0) == 0


def test_is_end_on_the_main_port_path_and_without_audio(server, zh_pcm):
    got = asyncio.run(reference_like_client(server.url("/funasr"), [("p", zh_pcm)], mode="online"))
    assert got["p"][-1]["is_end"] is True and got["p"][-1]["mode"] == "offline"  # as documented
    got = asyncio.run(reference_like_client(server.url("/funasr"), [("empty", b"")]))
    assert got["empty"] == [{"mode": "2pass-offline", "text": "", "wav_name": "empty", "is_final": True, "is_end": True}]


def test_plain_is_speaking_false_still_gets_no_is_end(server, zh_pcm):
    async def run():
        async with websockets.connect(server.url("/funasr")) as ws:
            await ws.send(json.dumps({"mode": "offline", "wav_name": "old", "is_speaking": True}))
            await ws.send(zh_pcm)
            await ws.send(json.dumps({"is_speaking": False}))
            while not (m := json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))["is_final"]:
                pass
            return m

    last = asyncio.run(run())
    assert last["end_of_segment"] is True and "is_end" not in last


def test_refusals_at_connect_time_come_in_funasr_shape(models):
    srv = ServerThread(ServerConfig(profile="tiny", funasr_port=0, token="t0k"), models)
    try:
        got: dict[str, list[dict]] = {}
        with pytest.raises((RuntimeError, websockets.ConnectionClosed)):  # as the reference client fails
            asyncio.run(reference_like_client(f"ws://127.0.0.1:{srv.server.bound_funasr_port}",
                                              [("x", b"\0\0" * 64000)], received=got))
        assert [m["code"] for m in got[""]] == ["unauthorized"]

        async def raw():
            async with websockets.connect(f"ws://127.0.0.1:{srv.server.bound_funasr_port}/any/path") as ws:
                msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
                return msg, ws.close_code

        msg, code = asyncio.run(raw())
        assert code == 1008
        assert msg["code"] == "unauthorized" and msg["mode"] == "error" and msg["text"] == ""
        assert msg["is_end"] is True and msg["is_final"] is False and msg["error"]
        status, _, body = srv.http("/healthz")  # the main port still serves HTTP
        assert status == 200 and json.loads(body)["ok"]
    finally:
        srv.close()


def test_hotwords_parsing_reaches_the_session_config():
    assert parse_hotwords('{"阿里巴巴": 20, "达摩院": 10}') == ("阿里巴巴", "达摩院")
    assert parse_hotwords("阿里巴巴,达摩院") == ("阿里巴巴", "达摩院")
    assert parse_hotwords("阿里巴巴 达摩院 阿里巴巴") == ("阿里巴巴", "达摩院")
    assert parse_hotwords("") == () and parse_hotwords(None) == () and parse_hotwords("{broken") == ()
    assert len(parse_hotwords(" ".join(f"w{i}" for i in range(500)))) == 100  # bounded
    assert parse_hotwords("x" * 51) == ()
    opts = FunasrOptions()
    opts.update({"hotwords": "New York,Qwen"})
    assert opts.pipeline().hotwords == ("New York", "Qwen")
    opts.update({"is_end": True})
    assert opts.is_speaking is False


def test_wav_format_frames_have_their_header_read(server, speech):
    import io
    import wave

    import soxr

    x = soxr.resample(read_wav(speech(ZH, "zh", gap_ms=500)), 16000, 8000)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(pcm16_bytes(x))
    data = buf.getvalue()

    async def run(payload: bytes) -> list[dict]:
        async with websockets.connect(server.url("/funasr")) as ws:
            await ws.send(json.dumps({"mode": "offline", "wav_name": "w", "wav_format": "wav", "is_speaking": True}))
            for i in range(0, len(payload), 4000):
                await ws.send(payload[i : i + 4000])
            await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
            msgs = []
            while not (m := json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))).get("is_end"):
                msgs.append(m)
            return msgs + [m]

    msgs = asyncio.run(run(data))
    assert msgs[-1]["is_final"] is True and any(m["text"] for m in msgs[:-1]), msgs
    stereo = data[:22] + (2).to_bytes(2, "little") + data[24:]  # the header now says 2 channels
    msgs = asyncio.run(run(stereo))
    assert msgs[-1]["code"] == "bad_audio" and msgs[-1]["is_final"] is False and "mono" in msgs[-1]["error"]
