"""``streamst bench chaos``: sessions that must survive drops, reconnects, a drain and a restart.

In one process: server A (loopback, ephemeral port) behind a :class:`~streamst.netproxy.CuttingProxy`,
and ``--sessions`` :class:`~streamst.resume_client.ResumingClient` s streaming the same speech
through the proxy as fast as the server takes it. While they stream:

1. the proxy cuts every open connection at random intervals (``--cut-every-s``): the clients
   reconnect and resume;
2. at ``--drain-at-s`` the cuts pause, server B starts on the same loaded models, the proxy
   sends new connections to B, and A drains (``--drain-s``): sessions on A end with their
   summary (``reason: shutting_down``) and continue on B from the audio A covered; then A
   closes (a restart of one instance of two), and the cuts resume against B.

It first runs one uninterrupted session of the same audio (the reference). Then it counts,
over every client:

* ``duplicated_units``: events delivered twice to the application (same part and ``seq``),
  plus translation units beyond the reference's (sessions that stayed on one server);
* ``lost_units``: gaps in the delivered ``seq`` numbers of a part, plus reference units
  missing (sessions that stayed on one server), plus sessions that failed;
* the audio: the parts' ``audio_samples`` must add up to the audio sent (``audio_mismatch``);
* RSS before, at its peak (sampled every 0.5 s) and after (``rss_bounded``: the peak within
  ``--rss-slack-mb`` of the start), and the most detached sessions kept at once.

The exit code is 0 only when nothing was lost or duplicated, the audio adds up and RSS stayed
bounded.

Sessions that moved to B (cut by the drain) are checked by ``seq`` continuity and audio
accounting only: their utterances end where the drain cut them, so their units differ from
the reference by design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streamst.errors import UserError

FRAME = 1600  # samples: 100 ms at 16 kHz


def _units(events: list[dict[str, Any]]) -> Counter:
    """Committed translation units and final transcripts, as a multiset."""
    out: Counter = Counter()
    for ev in events:
        if ev.get("type") == "translation":
            for unit in ev.get("new_units", ()):
                out[("unit", ev["utterance"], ev["mode"], ev["language"], unit)] += 1
        elif ev.get("type") == "transcript" and ev.get("kind") == "final":
            out[("final", ev["utterance"], ev.get("path"), ev["text"])] += 1
    return out


async def _frames(audio: np.ndarray):
    from streamst.audio import pcm16_bytes

    for i in range(0, len(audio), FRAME):
        yield pcm16_bytes(audio[i: i + FRAME])
        await asyncio.sleep(0)


async def run_chaos(profile: str, *, sessions: int = 20, seconds: float = 8.0, mode: str = "simul",
                    cut_every_s: tuple[float, float] = (0.5, 2.0), drain_at_s: float = 4.0, drain_s: float = 2.0,
                    seed: int = 0, rss_slack_mb: float = 400.0, log=print) -> dict[str, Any]:
    from streamst.loading import Models, RuntimeOptions
    from streamst.netproxy import CuttingProxy
    from streamst.profiles import load_profile
    from streamst.resume_client import ReconnectOptions, ResumingClient, SessionFailed
    from streamst.server.app import Server, ServerConfig
    from streamst.bench.server import bench_audio
    from streamst.bench.soak import rss_mb
    from streamst.tts import have_tts

    if not have_tts():
        raise UserError("bench chaos needs espeak-ng and sox for its speech (apt-get install espeak-ng sox)")
    if not 1 <= sessions <= 64 or seconds <= 0:
        raise UserError("--sessions must be within 1..64 and --seconds positive")
    with tempfile.TemporaryDirectory() as tmp:
        audio = bench_audio(seconds, "zh", Path(tmp))
    rng = random.Random(seed)
    cfg = ServerConfig(profile=profile, host="127.0.0.1", port=0, max_sessions=2 * sessions + 4,
                       idle_timeout_s=120, status_interval_s=0.5, drain_s=drain_s, resume_grace_s=30.0)
    models = Models(load_profile(profile), RuntimeOptions(cfg.device, cfg.quantize, cfg.threads))
    start = {"type": "start", "src_lang": "zh", "tgt_langs": ["en"], "mode": mode}
    options = ReconnectOptions(base_s=0.05, max_s=1.0, attempts=40)
    rss = {"before": 0.0, "peak": 0.0}
    servers: list[Server] = []
    clients: list[ResumingClient] = []
    max_detached = 0

    async def session(url: str, key: int) -> tuple[list[dict[str, Any]], ResumingClient, str | None]:
        events: list[dict[str, Any]] = []
        client = ResumingClient(url, start, on_event=events.append, options=options, rng=random.Random(seed + key))
        clients.append(client)
        try:
            await asyncio.wait_for(client.run(_frames(audio)), 600)
            return events, client, None
        except (SessionFailed, asyncio.TimeoutError) as e:
            return events, client, str(e) or type(e).__name__

    a = Server(cfg, models)
    await a.start()
    servers.append(a)
    rss["before"] = rss_mb()
    log(f"reference session ({len(audio) / 16000:.1f} s of audio, mode {mode})")
    ref_events, _, err = await session(f"ws://127.0.0.1:{a.port}/ws", -1)
    if err:
        raise UserError(f"chaos: the reference session failed: {err}")
    reference = _units(ref_events)
    proxy = CuttingProxy(a.port, rng=rng)
    await proxy.start()
    url = f"ws://127.0.0.1:{proxy.port}/ws"
    cutting = asyncio.Event()
    cutting.set()
    finished = asyncio.Event()
    drained = {"moved": 0, "at_s": None}
    t0 = time.monotonic()

    async def chaos() -> None:
        while not finished.is_set():
            await asyncio.sleep(rng.uniform(*cut_every_s))  # the chaos schedule, not synchronisation
            if cutting.is_set():
                proxy.cut()

    async def drain_and_restart() -> None:
        nonlocal max_detached
        await asyncio.sleep(drain_at_s)  # the chaos schedule
        cutting.clear()  # a session detached on A now could not move: no cuts around the drain
        await asyncio.sleep(0.5)  # the last cut reaches every client
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
                any(c.state not in ("streaming", "ended") for c in clients)
                or len(a.connections) < sum(c.state == "streaming" for c in clients)):
            await asyncio.sleep(0.05)  # until every session is attached again (bounded)
        b = Server(replace(cfg), models)
        await b.start()
        servers.append(b)
        proxy.retarget(b.port)
        drained["at_s"] = round(time.monotonic() - t0, 1)
        log(f"t={drained['at_s']} s: draining server A ({len(a.connections)} sessions), B on port {b.port}")
        a.draining = True
        from streamst.server.resume import drain

        await drain(a, drain_s)
        await a.close()
        log(f"t={time.monotonic() - t0:.1f} s: server A closed; cuts go on against B")
        cutting.set()

    async def sample() -> None:
        nonlocal max_detached
        while not finished.is_set():
            rss["peak"] = max(rss["peak"], rss_mb())
            max_detached = max(max_detached, *(len(s.resume.detached) for s in servers))
            await asyncio.sleep(0.5)  # the sampling period

    background = [asyncio.create_task(c) for c in (chaos(), drain_and_restart(), sample())]
    try:
        results = await asyncio.gather(*(session(url, k) for k in range(sessions)))
    finally:
        finished.set()
        for t in background:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await proxy.close()
        for s in servers:
            await s.close()
    wall = time.monotonic() - t0
    rss["after"] = rss_mb()
    lost = dup = audio_mismatch = failed = reconnects = connections = moved = 0
    for events, client, err in results:
        reconnects += client.reconnects
        connections += client.connections
        if err:
            failed += 1
            log(f"session failed: {err}")
            continue
        seen = Counter((ev.get("part", 0), ev["seq"]) for ev in events if "seq" in ev)
        dup += sum(n - 1 for n in seen.values())
        parts = sorted({p for p, _ in seen})
        for p in parts:
            seqs = sorted(s for q, s in seen if q == p)
            lost += seqs[-1] - len(seqs)  # gaps in 1..last
        ends = [ev for ev in events if ev.get("type") == "end"]
        covered = sum(int(ev["summary"].get("audio_samples", 0)) for ev in ends)
        if covered != len(audio):
            audio_mismatch += 1
            log(f"session {client.token}: audio covered {[e['summary'].get('audio_samples') for e in ends]} "
                f"of {len(audio)} samples")
        if len(parts) == 1:
            got = _units(events)
            missing, extra = sum((reference - got).values()), sum((got - reference).values())
            if missing or extra:
                log(f"session {client.token}: {missing} units missing, {extra} extra; {len(events)} events, "
                    f"ends {[e.get('reason') for e in ends]}, {client.connections} connections")
            lost += missing
            dup += extra
        else:
            moved += 1
    lost += failed
    return {
        "profile": profile, "mode": mode, "sessions": sessions, "audio_s_per_session": round(len(audio) / 16000, 1),
        "wall_s": round(wall, 1), "connections": connections, "reconnects": reconnects, "proxy_cuts": proxy.cuts,
        "drain_at_s": drained["at_s"], "moved_by_drain": moved, "failed_sessions": failed,
        "reference_units": sum(reference.values()),
        "lost_units": lost, "duplicated_units": dup, "audio_mismatch": audio_mismatch,
        "max_detached": max_detached, "rss_mb_before": round(rss["before"], 1), "rss_mb_peak": round(rss["peak"], 1),
        "rss_mb_after": round(rss["after"], 1),
        "rss_bounded": rss["peak"] - rss["before"] <= rss_slack_mb, "rss_slack_mb": rss_slack_mb,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def add_parser(bsub: argparse._SubParsersAction) -> None:
    """``bench chaos`` (registered by ``streamst.commands.bench``)."""
    c = bsub.add_parser("chaos", help="sessions through random drops, reconnects, a drain and a restart: "
                                      "nothing lost or duplicated")
    c.add_argument("--profile", default="tiny")
    c.add_argument("--sessions", type=int, default=20, help="concurrent client sessions")
    c.add_argument("--seconds", type=float, default=8.0, help="audio per session")
    c.add_argument("--mode", default="simul", choices=("simul", "cascade", "both", "e2e", "all"))
    c.add_argument("--drain-at-s", type=float, default=4.0, help="when server A drains (and B takes over)")
    c.add_argument("--drain-s", type=float, default=2.0, help="A's drain period")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--rss-slack-mb", type=float, default=400.0,
                   help="RSS growth (peak over the start, a second server included) that still counts as bounded")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    report = asyncio.run(run_chaos(args.profile, sessions=args.sessions, seconds=args.seconds, mode=args.mode,
                                   drain_at_s=args.drain_at_s, drain_s=args.drain_s, seed=args.seed,
                                   rss_slack_mb=args.rss_slack_mb, log=log))
    print(json.dumps(report, indent=2) if args.json else _line(report))
    return 0 if passed(report) else 1


def passed(report: dict[str, Any]) -> bool:
    """Nothing lost or duplicated, the audio adds up, RSS bounded."""
    return (report["lost_units"], report["duplicated_units"], report["audio_mismatch"]) == (0, 0, 0) \
        and report["rss_bounded"]


def _line(r: dict[str, Any]) -> str:
    return (f"{r['sessions']} sessions, {r['connections']} connections ({r['proxy_cuts']} cut), "
            f"{r['moved_by_drain']} moved by the drain: lost_units {r['lost_units']}, duplicated_units "
            f"{r['duplicated_units']}, audio mismatches {r['audio_mismatch']}; RSS {r['rss_mb_before']:.0f} "
            f"-> peak {r['rss_mb_peak']:.0f} -> {r['rss_mb_after']:.0f} MB")
