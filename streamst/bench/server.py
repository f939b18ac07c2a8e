"""``streamst bench server``: how many concurrent real-time sessions one server process holds.

A server is started in-process (its own event-loop thread, loopback, ephemeral port). For
N = 1, 2, ... up to ``--sessions``, N clients connect at once and stream espeak-ng speech
in real time (100 ms PCM16 frames on a wall-clock schedule) for ``--seconds``, then send
``end``. A round *holds real time* when every session's lag (``status.lag_ms``: audio
received minus audio processed) stays within ``--lag-bound-ms`` at p95, does not drift
(median lag of a session's last quarter at most ``DRIFT_MS`` above its first quarter's),
and each flush (``end`` sent -> ``end`` received) takes under ``--flush-bound-s``. The ramp
stops after the first round that does not (unless ``--keep-going``); ``max_realtime_sessions``
is the largest N such that every round up to N held.

The client runs in the same process as the server (its own event loop), so a round's CPU
time (``cpu_s``, process CPU during the round; ``cpu_s_per_audio_s`` per second of audio
streamed) counts both; each row also records the 1-minute load average at the round's end
(``loadavg``): on a shared machine a round falls behind when other processes take the cores,
so weigh ``held_real_time`` with it.

Caption delay of a committed simultaneous unit = wall time it arrived minus wall time the
audio it translates was sent. Target units are aligned to source audio uniformly over the
utterance (unit i of n at ``start + (i + 0.5) / n * duration``, the alignment AL assumes),
so the figure includes the policy's wait, the computation and the transport. ``commit lag``
is the same but measured from the audio that triggered the commit (``delays_ms``): the
computation and transport part alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamst.bench.stats import pct
from streamst.errors import UserError
from streamst.server.config import ServerConfig
from streamst.server.protocol import PolicySpec, Start

if TYPE_CHECKING:
    from streamst.server.app import Server

FRAME_MS = 100
DRIFT_MS = 1000.0
BENCH_TEXT = {
    "zh": "区块链是今年最火热的科技趋势了。所有草莓的基因都由几组含七条染色体的染色体组构造而成。"
          "我们今天要讨论的是如何在不牺牲翻译质量的前提下降低同声传译的延迟。",
    "en": "Blockchain is the hottest technology trend of the year. We discuss how to lower the latency "
          "of simultaneous interpretation without losing translation quality.",
}


@dataclass
class ClientResult:
    caption_delays_ms: list[float] = field(default_factory=list)
    commit_lags_ms: list[float] = field(default_factory=list)
    status_lags_ms: list[int] = field(default_factory=list)
    flush_s: float = float("nan")
    ok: bool = False
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    speech_delays_ms: list[float] = field(default_factory=list)  # --speak: per spoken chunk (streamst/speak)


def drift_ms(lags: list[int]) -> float:
    """Median lag of the last quarter minus that of the first quarter of one session."""
    q = len(lags) // 4
    if q < 2:
        return 0.0
    return float(statistics.median(lags[-q:]) - statistics.median(lags[:q]))


async def run_client(url: str, audio: np.ndarray, start: dict[str, Any], timeout_s: float) -> ClientResult:
    """One real-time client: send on a wall-clock schedule, read concurrently."""
    from websockets.asyncio.client import connect

    from streamst.audio import pcm16_bytes

    res = ClientResult()
    units: dict[tuple[int, str], list[tuple[float, float]]] = {}  # utterance -> (arrival, delays_ms)
    spans: dict[int, tuple[int, int]] = {}
    async with connect(url, max_size=None, open_timeout=30) as ws:
        await ws.send(json.dumps({"type": "start", **start}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ready.get("type") != "ready":
            res.error = str(ready)
            return res
        t0 = time.monotonic()
        step = 16 * FRAME_MS
        end_sent = 0.0

        async def sender() -> None:
            nonlocal end_sent
            for k, i in enumerate(range(0, len(audio), step)):
                due = t0 + k * FRAME_MS / 1000
                await asyncio.sleep(max(0.0, due - time.monotonic()))  # real-time pacing
                await ws.send(pcm16_bytes(audio[i : i + step]))
            await asyncio.sleep(max(0.0, t0 + len(audio) / 16000 - time.monotonic()))
            end_sent = time.monotonic()
            await ws.send(json.dumps({"type": "end"}))

        send_task = asyncio.create_task(sender())
        try:
            async with asyncio.timeout(timeout_s):
                async for raw in ws:
                    now = time.monotonic()
                    m = json.loads(raw)
                    kind = m.get("type")
                    if kind == "status":
                        res.status_lags_ms.append(m["lag_ms"])
                    elif kind == "transcript" and m["kind"] == "final":
                        spans[m["utterance"]] = (m["start_ms"], m["end_ms"])
                    elif kind == "translation" and m["mode"] in ("simul", "e2e"):  # the streaming paths
                        key = (m["utterance"], m["language"])
                        units.setdefault(key, []).extend((now, d) for d in m["delays_ms"])
                    elif kind == "speech" and m["part"] == 0 and not m["skipped"]:
                        res.speech_delays_ms.append(m["delay_ms"])
                    elif kind == "end":
                        res.flush_s = now - end_sent
                        res.summary = m["summary"]
                        res.ok = True
                    elif kind == "error":
                        res.error = f"{m['code']}: {m['message']}"
        except TimeoutError:
            res.error = f"no end within {timeout_s:.0f} s"
        finally:
            send_task.cancel()
    for (utt, _lang), items in units.items():
        start_ms, end_ms = spans.get(utt, (0, 0))
        n = len(items)
        for i, (arrival, delay) in enumerate(items):
            src_ms = start_ms + (i + 0.5) / n * max(0, end_ms - start_ms)
            res.caption_delays_ms.append((arrival - (t0 + src_ms / 1000)) * 1000)
            res.commit_lags_ms.append((arrival - (t0 + delay / 1000)) * 1000)
    return res


def bench_audio(seconds: float, lang: str, workdir: Path) -> np.ndarray:
    """``seconds`` of espeak-ng speech with pauses between sentences (repeated as needed)."""
    import soundfile as sf

    from streamst.tts import synthesize

    parts = []
    for i, sentence in enumerate(s for s in BENCH_TEXT[lang].replace("。", "。|").replace(". ", ".|").split("|") if s):
        x, _ = sf.read(str(synthesize(sentence, lang, workdir / f"s{i}.wav", gap_ms=800)), dtype="float32")
        parts.append(x)
    one = np.concatenate(parts)
    reps = int(np.ceil(seconds * 16000 / len(one)))
    return np.tile(one, reps)[: int(seconds * 16000)]


async def _round(url: str, n: int, audio: np.ndarray, start: dict[str, Any], timeout_s: float) -> list[ClientResult]:
    async def one() -> ClientResult:
        from websockets.exceptions import WebSocketException

        try:
            return await run_client(url, audio, start, timeout_s)
        except (OSError, WebSocketException, TimeoutError) as e:
            return ClientResult(error=f"{type(e).__name__}: {e}")

    return list(await asyncio.gather(*(one() for _ in range(n))))


@contextlib.contextmanager
def running_server(cfg: ServerConfig, name: str) -> Iterator[Server]:
    """A :class:`~streamst.server.app.Server` on its own event loop in a thread (loaded and
    started on entry, closed on exit): the in-process server of ``bench server`` and ``bench soak``."""
    from streamst.server.app import Server

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    server = Server(cfg)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(600)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def run_loadcheck(profile: str, *, max_sessions: int, seconds: float, src: str = "zh", tgt: str = "en",
                  mode: str = "simul", policy: str = "reorder-aware", lag_bound_ms: float = 3000.0,
                  flush_bound_s: float = 5.0, device: str = "cpu", keep_going: bool = False,
                  mt_batch_rows: int | None = None, continuations: int | None = None, log=print,
                  server_options: dict[str, Any] | None = None, speak: bool = False) -> dict[str, Any]:
    """Ramp 1..``max_sessions`` concurrent real-time clients against one in-process server.
    ``server_options``: more :class:`ServerConfig` fields (quantize, threads, e2e_lean,
    e2e_batch_rows...)."""
    import tempfile

    from streamst.tts import have_tts

    if not have_tts():
        raise UserError("bench server needs espeak-ng and sox for its speech (apt-get install espeak-ng sox)")
    with tempfile.TemporaryDirectory() as tmp:
        audio = bench_audio(seconds, src, Path(tmp))
    cfg = ServerConfig(profile=profile, host="127.0.0.1", port=0, device=device, max_sessions=max_sessions,
                       idle_timeout_s=60, max_session_s=seconds * 4 + 60,
                       **({} if mt_batch_rows is None else {"mt_batch_rows": mt_batch_rows}), **(server_options or {}))
    overrides = (("continuations", continuations),) if continuations is not None else ()
    start = Start(src_lang=src, tgt_langs=(tgt,), mode=mode, policy=PolicySpec(policy, overrides)).to_message()
    del start["type"]  # _round adds it
    if speak:
        start["speak"] = [tgt]  # every session also speaks its translation (streamst/speak)
    rounds = []
    t_load = time.monotonic()
    with running_server(cfg, "bench-server") as server:
        log(f"server up in {time.monotonic() - t_load:.1f} s (profile {profile}); {seconds:g} s of {src} speech per session")
        url = f"ws://127.0.0.1:{server.port}/ws"
        for n in range(1, max_sessions + 1):
            assert server.batcher is not None
            deadline = time.monotonic() + 30  # the last round's handlers finish their cleanup
            while server.connections and time.monotonic() < deadline:
                time.sleep(0.05)  # deadline-bounded poll of a condition
            before = dict(server.batcher.batch_sizes)
            mt_before = dict(server.mt_batcher.stats) if server.mt_batcher is not None else {}
            e2e_before = dict(server.e2e_batcher.stats) if server.e2e_batcher is not None else {}
            t_round, cpu = time.monotonic(), time.process_time()
            results = asyncio.run(_round(url, n, audio, start, timeout_s=seconds * 3 + 120))
            t_round, cpu = time.monotonic() - t_round, time.process_time() - cpu
            mt_after = dict(server.mt_batcher.stats) if server.mt_batcher is not None else {}
            e2e_after = dict(server.e2e_batcher.stats) if server.e2e_batcher is not None else {}
            after = server.batcher.batch_sizes
            batches = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
            lags = [v for r in results for v in r.status_lags_ms]
            delays = [v for r in results for v in r.caption_delays_ms]
            commits = [v for r in results for v in r.commit_lags_ms]
            flush = [r.flush_s for r in results]
            rtf = [r.summary.get("real_time_factor", float("nan")) for r in results]
            drift = max(drift_ms(r.status_lags_ms) for r in results)
            held = (all(r.ok for r in results) and pct(lags, 95) <= lag_bound_ms
                    and drift <= DRIFT_MS and max(flush) <= flush_bound_s)
            row = {
                "sessions": n, "held_real_time": held, "errors": [r.error for r in results if r.error],
                "lag_drift_ms": drift, "lag_ms_p50": pct(lags, 50), "lag_ms_p95": pct(lags, 95), "lag_ms_max": max(lags, default=0),
                "caption_delay_ms_p50": pct(delays, 50), "caption_delay_ms_p95": pct(delays, 95),
                "commit_lag_ms_p50": pct(commits, 50), "commit_lag_ms_p95": pct(commits, 95),
                "flush_s_max": max(flush), "rtf_mean": statistics.fmean(rtf) if rtf else float("nan"),
                "units": len(delays), "cpu_s": round(cpu, 2), "cpu_s_per_audio_s": round(cpu / (n * seconds), 4),
                "loadavg": round(os.getloadavg()[0], 2), "asr_batches": dict(sorted(batches.items())),
                "decoder_batches": _decoder_batches(mt_before, mt_after, t_round),
                **({"e2e_batches": _decoder_batches(e2e_before, e2e_after, t_round)} if e2e_after else {}),
                **({"speech_delay_ms_p50": pct(sd, 50), "speech_delay_ms_p95": pct(sd, 95), "speech_chunks": len(sd)}
                   if speak and (sd := [v for r in results for v in r.speech_delays_ms]) is not None else {}),
            }
            rounds.append(row)
            log(format_row(row))
            if not held and not keep_going:
                break
    held_n = 0
    for r in rounds:  # the largest N such that every N' <= N held
        if not r["held_real_time"]:
            break
        held_n = r["sessions"]
    best = rounds[held_n - 1] if held_n else None
    return {"profile": profile, "seconds": seconds, "pair": f"{src}-{tgt}", "mode": mode, "policy": policy,
            "continuations": continuations, "cpus": os.cpu_count(),
            "mt_batch_rows": cfg.mt_batch_rows, "e2e_batch_rows": cfg.e2e_rows, "quantize": cfg.quantize,
            "threads": cfg.threads, "e2e_lean": cfg.e2e_lean, "speak": speak,
            "lag_bound_ms": lag_bound_ms, "flush_bound_s": flush_bound_s, "rounds": rounds,
            "max_realtime_sessions": best["sessions"] if best else 0,
            "caption_delay_ms_p50": best["caption_delay_ms_p50"] if best else None,
            "caption_delay_ms_p95": best["caption_delay_ms_p95"] if best else None}


def _decoder_batches(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, float]:
    """The round's cross-session decoder batching: model calls, requests (session forwards),
    rows per call, and the share of the round the batching thread was running the model."""
    if not after:
        return {}
    calls = after["calls"] - before["calls"]
    rows = after["rows"] - before["rows"]
    return {"calls": int(calls), "requests": int(after["requests"] - before["requests"]),
            "mean_rows": round(rows / calls, 2) if calls else 0.0,
            "projections": int(after.get("projections", 0) - before.get("projections", 0)),
            "busy": round((after["busy_s"] - before["busy_s"]) / wall_s, 3) if wall_s > 0 else 0.0}


def format_row(r: dict[str, Any]) -> str:
    return (f"N={r['sessions']:2d} {'holds' if r['held_real_time'] else 'FALLS BEHIND'}: "
            f"lag p50/p95/max {r['lag_ms_p50']:.0f}/{r['lag_ms_p95']:.0f}/{r['lag_ms_max']:.0f} ms "
            f"(drift {r['lag_drift_ms']:+.0f}), "
            f"caption delay p50/p95 {r['caption_delay_ms_p50']:.0f}/{r['caption_delay_ms_p95']:.0f} ms, "
            f"commit lag p50/p95 {r['commit_lag_ms_p50']:.0f}/{r['commit_lag_ms_p95']:.0f} ms, "
            f"flush max {r['flush_s_max']:.1f} s, rtf {r['rtf_mean']:.2f}, units {r['units']}, "
            f"cpu {r['cpu_s_per_audio_s']:.3f} s per audio s (load {r['loadavg']:.2f}), "
            f"asr batches {r['asr_batches']}"
            + (f", decoder batches {r['decoder_batches']}" if r.get("decoder_batches") else "")
            + (f", errors {r['errors']}" if r["errors"] else ""))


def command(args: argparse.Namespace) -> int:
    if args.src not in BENCH_TEXT:
        raise UserError(f"--src must be one of {', '.join(BENCH_TEXT)}")
    report = run_loadcheck(args.profile, max_sessions=args.sessions, seconds=args.seconds, src=args.src,
                           tgt=args.tgt, mode=args.mode, policy=args.policy, lag_bound_ms=args.lag_bound_ms,
                           flush_bound_s=args.flush_bound_s, device=args.device, keep_going=args.keep_going,
                           mt_batch_rows=args.mt_batch_rows, continuations=args.continuations,
                           log=(lambda s: None) if args.json else print,
                           server_options={"quantize": args.quantize, "threads": args.threads, "e2e_lean": args.e2e_lean,
                                           "e2e_batch_rows": args.e2e_batch_rows, "engine": args.engine,
                                           "engine_url": args.engine_url, "speakers": args.speakers}, speak=args.speak)
    if args.json:
        print(json.dumps(report))  # one line
    else:
        print(f"one process holds {report['max_realtime_sessions']} concurrent real-time session(s) "
              f"({report['pair']}, {report['mode']}, {report['policy']}); caption delay at that load "
              f"p50 {report['caption_delay_ms_p50'] or float('nan'):.0f} ms, p95 {report['caption_delay_ms_p95'] or float('nan'):.0f} ms")
    return 0
