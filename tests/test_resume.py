"""Sessions of /ws that survive dropped connections (streamst.server.resume): a proxy cuts the
TCP connection at random points, the client resumes with its token, and the committed
transcript and translations equal an uninterrupted run; detached sessions stay bounded."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import replace

import numpy as np
import pytest
from websockets.asyncio.client import connect

from streamst.audio import pcm16_bytes
from streamst.netproxy import CuttingProxy
from streamst.resume_client import ReconnectOptions, ResumingClient
from streamst.server import Server, ServerConfig
from streamst.server.codes import ProtocolError
from streamst.server.resume import EventLog
from tests.server_util import read_wav

pytestmark = pytest.mark.usefixtures("one_thread")

ZH = ["区块链是今年最火热的科技趋势了。", "我们明天去公园散步吧。"]
CFG = ServerConfig(profile="tiny", max_sessions=8, idle_timeout_s=30, status_interval_s=0.3, close_timeout_s=1.0)
START = {"type": "start", "src_lang": "zh", "tgt_langs": ["en"], "mode": "all"}
FRAME = 1600  # samples: 100 ms


@pytest.fixture(scope="module")
def audio(speech):
    return np.concatenate([read_wav(speech(t, "zh", gap_ms=700)) for t in ZH])


async def frames(audio: np.ndarray):
    for i in range(0, len(audio), FRAME):
        yield pcm16_bytes(audio[i: i + FRAME])
        await asyncio.sleep(0)


def units(events: list[dict]) -> dict:
    """The committed output: final transcripts per (utterance, path); translation units in
    order per (utterance, mode, language)."""
    out: dict = {}
    for ev in events:
        if ev.get("type") == "transcript" and ev.get("kind") == "final":
            key = ("transcript", ev["utterance"], ev.get("path"))
            assert key not in out, f"final transcript twice: {key}"
            out[key] = ev["text"]
        elif ev.get("type") == "translation":
            out.setdefault(("translation", ev["utterance"], ev["mode"], ev["language"]), []).extend(ev["new_units"])
    return out


async def run_client(url: str, audio: np.ndarray, **kw) -> tuple[list[dict], ResumingClient, dict]:
    events: list[dict] = []
    client = ResumingClient(url, START, on_event=events.append, rng=random.Random(0),
                            options=ReconnectOptions(base_s=0.05, max_s=0.5, ack_every=8), **kw)
    summary = await asyncio.wait_for(client.run(frames(audio)), 240)
    return events, client, summary


async def with_server(models, fn, **cfg):
    server = Server(replace(CFG, host="127.0.0.1", port=0, **cfg), models)
    await server.start()
    try:
        return await fn(server)
    finally:
        await server.close()


def assert_in_order(events: list[dict]) -> None:
    seqs = [ev["seq"] for ev in events if "seq" in ev]
    assert seqs == list(range(1, len(seqs) + 1)), "events delivered out of order, twice or with a gap"


@pytest.mark.parametrize("seed", [1])
def test_a_session_cut_at_random_points_resumes_to_the_same_output(tiny_models, audio, seed):
    async def body(server: Server):
        ref, _, ref_summary = await run_client(f"ws://127.0.0.1:{server.port}/ws", audio)
        proxy = CuttingProxy(server.port, cuts=3, cut_bytes=(1_000, 40_000), rng=random.Random(seed))
        await proxy.start()
        try:
            got, client, summary = await run_client(f"ws://127.0.0.1:{proxy.port}/ws", audio)
        finally:
            await proxy.close()
        return ref, ref_summary, got, client, summary, proxy.cuts

    ref, ref_summary, got, client, summary, cuts = asyncio.run(with_server(tiny_models, body))
    assert cuts >= 1 and client.connections == cuts + 1, (cuts, client.connections)
    assert_in_order(got)
    assert units(got) == units(ref) and units(ref), "committed output differs from the uninterrupted run"
    expected = len(audio)
    assert summary["audio_samples"] == ref_summary["audio_samples"] == expected, "audio lost or counted twice"
    assert summary["audio_ms"] == ref_summary["audio_ms"]


def test_resume_replays_missed_events_and_drops_audio_it_already_has(tiny_models, audio):
    """A client that drops mid-stream, resumes from an old seq and re-sends ALL its audio
    (audio_from 0): the missed events come in order, the audio it re-sent is not counted twice."""
    half = len(audio) // 2 // FRAME * FRAME

    async def body(server: Server):
        url = f"ws://127.0.0.1:{server.port}/ws"
        _, _, ref_summary = await run_client(url, audio)
        ws = await connect(url)
        await ws.send(json.dumps(START))
        ready = json.loads(await ws.recv())
        ref = [ready]
        token = ready["resume"]["token"]
        assert ready["seq"] == 1 and ready["resume"]["grace_s"] == CFG.resume_grace_s
        for i in range(0, half, FRAME):
            await ws.send(pcm16_bytes(audio[i: i + FRAME]))
        # read until the server has all of it, then drop without a close handshake
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if "seq" in msg:
                ref.append(msg)
            if msg["type"] == "status" and msg["audio_samples"] == half and msg["lag_ms"] < 60:  # the rest waits for a whole grid step
                break
        ws.transport.abort()
        kept_seq = ref[len(ref) // 2]["seq"]  # pretend the later events were lost
        ws2 = await connect(url)
        await ws2.send(json.dumps({"type": "resume", "token": token, "last_seq": kept_seq, "audio_from": 0}))
        resumed = json.loads(await ws2.recv())
        assert resumed["type"] == "resumed" and resumed["audio_samples"] == half
        for i in range(0, len(audio), FRAME):
            await ws2.send(pcm16_bytes(audio[i: i + FRAME]))
        await ws2.send(json.dumps({"type": "end"}))
        after = []
        async for raw in ws2:
            msg = json.loads(raw)
            if "seq" in msg:
                after.append(msg)
        return ref_summary, ref[: ref.index(next(m for m in ref if m["seq"] == kept_seq)) + 1] + after

    ref_summary, events = asyncio.run(with_server(tiny_models, body))
    assert_in_order(events)
    end = events[-1]
    assert end["type"] == "end" and end["summary"]["audio_samples"] == len(audio)
    assert end["summary"]["audio_ms"] == ref_summary["audio_ms"]
    assert [r["source"] for r in end["summary"]["results"]] == [r["source"] for r in ref_summary["results"]]


def wait_until(cond, timeout=20.0):
    async def poll():
        deadline = time.monotonic() + timeout
        while not cond() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # polling a condition with a deadline
        return cond()
    return poll()


@pytest.mark.parametrize("bound", [dict(resume_max_sessions=3), dict(resume_max_bytes=100_000, resume_log_bytes=4096)],
                         ids=["count", "bytes"])
def test_clients_that_never_come_back_are_bounded_in_count_bytes_and_time(tiny_models, audio, bound):
    async def body(server: Server):
        url = f"ws://127.0.0.1:{server.port}/ws"
        tokens = []
        for _ in range(6):
            ws = await connect(url)
            await ws.send(json.dumps(START))
            tokens.append(json.loads(await ws.recv())["resume"]["token"])
            for i in range(0, 16000, FRAME):
                await ws.send(pcm16_bytes(audio[i: i + FRAME]))
            ws.transport.abort()  # never comes back
        reg = server.resume
        assert await wait_until(lambda: reg.evicted + reg.expired + len(reg.detached) == 6 and not server.connections)
        assert len(reg.detached) <= server.config.resume_max_sessions and reg.evicted >= 1
        assert reg.detached_bytes() <= server.config.resume_max_bytes
        # an evicted session is gone: its token gets resume_unknown
        ws = await connect(url)
        await ws.send(json.dumps({"type": "resume", "token": tokens[0]}))
        err = json.loads(await ws.recv())
        assert err["code"] == "resume_unknown"
        await ws.wait_closed()
        assert ws.close_code == 4005
        # the rest expire after the grace period: nothing is kept
        assert await wait_until(lambda: not reg.sessions, timeout=30)
        assert reg.expired >= 1
        return True

    assert asyncio.run(with_server(tiny_models, body, resume_grace_s=8.0, **bound))


def test_the_event_log_is_bounded_and_says_when_a_resume_comes_too_late():
    log = EventLog(max_bytes=4096)
    for i in range(400):
        log.append({"type": "translation", "committed": "x" * 40, "i": i})
    assert log.bytes <= 4096 and log.seq == 400 and log.lost > 0
    with pytest.raises(ProtocolError) as e:
        log.since(1)
    assert e.value.code == "resume_gap"
    tail = log.since(390)
    assert [json.loads(d)["seq"] for d in tail] == list(range(391, 401))
    log.ack(400)
    assert log.bytes == 0 and log.since(400) == []


def test_mic_reconnects_by_itself_and_prints_the_same_captions(tiny_models, speech, tmp_path):
    """``streamst mic --file --fast --plain`` through a proxy that cuts the connection: it
    says "reconnecting" and prints exactly the captions of an uninterrupted run."""
    import argparse
    import contextlib
    import io

    from streamst.commands.mic import Renderer, _main, file_source
    from tests.conftest import concat_wavs

    wav = concat_wavs([speech(t, "zh", gap_ms=700) for t in ZH], tmp_path / "two.wav")

    async def captions(port: int) -> tuple[str, str]:
        args = argparse.Namespace(url=f"ws://127.0.0.1:{port}/ws", token=None, src="zh", tgt="en", mode="simul",
                                  policy="reorder-aware", chunk_ms=600, connect_timeout=20.0, end_timeout=120.0)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = await _main(args, file_source(str(wav), True), Renderer(out, tty=False))
        assert rc == 0, err.getvalue()
        return out.getvalue(), err.getvalue()

    async def body(server: Server):
        ref, _ = await captions(server.port)
        proxy = CuttingProxy(server.port, cuts=2, cut_bytes=(1_000, 30_000), rng=random.Random(7))
        await proxy.start()
        try:
            got, err = await captions(proxy.port)
        finally:
            await proxy.close()
        return ref, got, err, proxy.cuts

    ref, got, err, cuts = asyncio.run(with_server(tiny_models, body))
    assert cuts >= 1 and err.count("reconnecting") == cuts, err
    def strip(text: str) -> list[str]:  # captions; latency figures with processing time (_CA) vary
        return [ln for ln in text.splitlines() if not ln.startswith("summary:") and " latency: " not in ln]

    assert strip(got) == strip(ref) and any(": " in ln for ln in strip(ref))
