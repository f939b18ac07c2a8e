"""``streamst bench soak``: long audio through one server in fast mode; RSS and fds must stay flat.

A server is started in-process (loopback, ephemeral port). Clients stream ``--minutes``
of espeak-ng speech with pauses (one sentence set, repeated) through ``/ws`` as fast as the
server processes it ("fast mode": each client keeps at most ``AHEAD_S`` of audio unprocessed,
reading ``status`` to know), in sessions of ``--session-minutes`` each, ``--clients`` at a
time (so long sessions, concurrent sessions and session churn are all exercised). Every ``--sample-minutes`` of audio it samples the
process's resident memory (VmRSS) and open file descriptors. The report gives the samples
and the growth from the first sample after warm-up to the last; ``flat`` is true when RSS
grew by at most ``--rss-slack-mb`` and the fd count by at most 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamst.errors import UserError

AHEAD_S = 8.0  # audio the client keeps in flight beyond what the server processed
FRAME_MS = 200


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc; 0.0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


async def _session(url: str, audio: np.ndarray, start: dict[str, Any], on_progress) -> dict[str, Any]:
    """Stream ``audio`` fast, bounded by the server's progress; returns the end summary."""
    from websockets.asyncio.client import connect

    from streamst.audio import pcm16_bytes

    step = 16 * FRAME_MS
    async with connect(url, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "start", **start}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if ready.get("type") != "ready":
            raise UserError(f"soak: the server refused the session: {ready}")
        processed_ms = 0
        summary: dict[str, Any] = {}
        errors: list[str] = []

        async def reader() -> None:
            nonlocal processed_ms, summary
            async for raw in ws:
                m = json.loads(raw)
                if m["type"] == "status":
                    processed_ms = m["processed_ms"]
                elif m["type"] == "end":
                    summary = m["summary"]
                elif m["type"] == "error":
                    errors.append(f"{m['code']}: {m['message']}")

        task = asyncio.create_task(reader())
        sent_ms = 0
        for i in range(0, len(audio), step):
            while sent_ms - processed_ms > AHEAD_S * 1000 and not task.done():
                await asyncio.sleep(0.05)  # fast mode: wait for the server's progress (status)
            if task.done():
                break
            await ws.send(pcm16_bytes(audio[i : i + step]))
            sent_ms += FRAME_MS
            on_progress(sent_ms / 1000)
        if not task.done():
            await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait_for(task, 600)
        if errors or not summary:
            raise UserError(f"soak: session failed: {errors or 'no end summary'}")
        return summary


def run_soak(profile: str, *, minutes: float = 60.0, session_minutes: float = 15.0, sample_minutes: float = 5.0,
             clients: int = 2, src: str = "zh", tgt: str = "en", policy: str = "wait-k", device: str = "cpu",
             rss_slack_mb: float = 64.0, log=print) -> dict[str, Any]:
    from streamst.bench.server import BENCH_TEXT, bench_audio, running_server
    from streamst.server.config import ServerConfig
    from streamst.tts import have_tts

    if not have_tts():
        raise UserError("bench soak needs espeak-ng and sox for its speech (apt-get install espeak-ng sox)")
    if src not in BENCH_TEXT:
        raise UserError(f"--src must be one of {', '.join(BENCH_TEXT)}")
    if minutes <= 0 or session_minutes <= 0 or sample_minutes <= 0:
        raise UserError("--minutes, --session-minutes and --sample-minutes must be positive")
    if not 1 <= clients <= 64:
        raise UserError("--clients must be within 1..64")
    with tempfile.TemporaryDirectory() as tmp:
        piece = bench_audio(60.0, src, Path(tmp))  # one minute of speech with pauses, repeated
    cfg = ServerConfig(profile=profile, host="127.0.0.1", port=0, device=device, max_sessions=clients + 1,
                       idle_timeout_s=120, max_session_s=session_minutes * 60 * 4 + 600)
    start = {"src_lang": src, "tgt_langs": [tgt], "policy": {"name": policy}}
    samples: list[dict[str, float]] = []
    done_s = 0.0  # audio of the sessions that ended
    active: dict[int, float] = {}  # audio sent so far by each running session
    next_sample = 0.0
    t0 = time.monotonic()

    def sample(at: float) -> None:
        row = {"audio_min": round(at / 60, 2), "wall_s": round(time.monotonic() - t0, 1),
               "rss_mb": round(rss_mb(), 1), "fds": open_fds()}
        samples.append(row)
        log(f"audio {row['audio_min']:7.2f} min  wall {row['wall_s']:8.1f} s  RSS {row['rss_mb']:8.1f} MB  fds {row['fds']}")

    def progress(key: int, session_s: float) -> None:
        nonlocal next_sample
        active[key] = session_s
        at = done_s + sum(active.values())
        if at >= next_sample:
            sample(at)
            next_sample += sample_minutes * 60

    async def wave(lengths: list[float]) -> list[dict[str, Any]]:
        """``len(lengths)`` sessions at once (each its own client), their audio in ``lengths``."""
        def one(key: int, length: float):
            n = int(length * 16000)
            audio = np.tile(piece, int(np.ceil(n / len(piece))))[:n]
            return _session(url, audio, start, lambda s: progress(key, s))
        return list(await asyncio.gather(*(one(k, x) for k, x in enumerate(lengths))))

    summaries = []
    with running_server(cfg, "soak-server") as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        total = minutes * 60
        while done_s < total - 1e-6:
            lengths = []
            left = total - done_s
            while left > 1e-6 and len(lengths) < clients:
                lengths.append(min(session_minutes * 60, left))
                left -= lengths[-1]
            active.clear()
            summaries.extend(asyncio.run(wave(lengths)))
            active.clear()
            done_s += sum(lengths)
        sample(done_s)
    warm = samples[1] if len(samples) > 2 else samples[0]  # after the first sample period: warmed up
    last = samples[-1]
    rss_growth = last["rss_mb"] - warm["rss_mb"]
    fd_growth = last["fds"] - warm["fds"]
    audio_s = sum(s["audio_ms"] for s in summaries) / 1000
    report = {
        "profile": profile, "pair": f"{src}-{tgt}", "policy": policy, "audio_minutes": round(audio_s / 60, 2),
        "sessions": len(summaries), "clients": clients, "wall_s": last["wall_s"],
        "speed_x_real_time": round(audio_s / last["wall_s"], 2) if last["wall_s"] else None,
        "utterances": sum(s["utterances"] for s in summaries), "samples": samples,
        "rss_mb_warm": warm["rss_mb"], "rss_mb_last": last["rss_mb"], "rss_growth_mb": round(rss_growth, 1),
        "fds_warm": warm["fds"], "fds_last": last["fds"], "fd_growth": fd_growth,
        "flat": rss_growth <= rss_slack_mb and fd_growth <= 2, "rss_slack_mb": rss_slack_mb,
    }
    return report


def command(args: argparse.Namespace) -> int:
    report = run_soak(args.profile, minutes=args.minutes, session_minutes=args.session_minutes,
                      sample_minutes=args.sample_minutes, clients=args.clients, src=args.src, tgt=args.tgt, policy=args.policy,
                      device=args.device, rss_slack_mb=args.rss_slack_mb,
                      log=(lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['audio_minutes']:.1f} min of audio in {report['sessions']} session(s), "
              f"{report['clients']} at a time, {report['wall_s']:.0f} s "
              f"({report['speed_x_real_time']}x real time); RSS {report['rss_mb_warm']:.0f} -> {report['rss_mb_last']:.0f} MB "
              f"({report['rss_growth_mb']:+.1f}), fds {report['fds_warm']} -> {report['fds_last']}: "
              f"{'flat' if report['flat'] else 'NOT FLAT'}")
    return 0 if report["flat"] else 1
