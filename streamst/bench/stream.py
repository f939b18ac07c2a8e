"""``streamst bench asr`` and ``streamst bench pipeline``: one stream, as fast as it goes.

A file (or ``--seconds`` of espeak-ng speech from :func:`streamst.bench.server.bench_audio`)
is fed in ``--chunk-ms`` pieces to a :class:`~streamst.asr.streaming.StreamingRecognizer`
(``asr``) or a :class:`~streamst.pipeline.TranslationSession` (``pipeline``), without pacing.
Reported per length: RTF by wall clock and by this process's CPU time (the CPU figure is
what the code costs; the wall figure also counts other programs on a shared machine),
per-update latency p50/p95/max (one update = ``insert_audio`` + ``process`` of one chunk),
the same grouped by how long the current utterance window was (``asr``: the re-encoding
cost against utterance length), and for ``pipeline`` the decoder forwards (calls and
batch rows) per audio second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamst.bench.stats import pct
from streamst.errors import UserError


def _audio(args: argparse.Namespace) -> list[tuple[str, np.ndarray]]:
    if args.file:
        from streamst.audio import read_audio

        samples, rate = read_audio(args.file)
        if rate != 16000:
            raise UserError(f"bench needs 16 kHz audio, {args.file} is {rate} Hz")
        return [(Path(args.file).name, samples.astype(np.float32))]
    from streamst.bench.server import bench_audio
    from streamst.tts import have_tts

    if not have_tts():
        raise UserError("bench needs espeak-ng and sox for its speech, or --file")
    try:
        lengths = [float(s) for s in args.seconds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seconds must be comma-separated numbers, got {args.seconds!r}") from None
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in lengths:
            out.append((f"{s:g}s", bench_audio(s, args.src, Path(tmp))))
    return out


def run_stream(processor, audio: np.ndarray, chunk_ms: int, window_ms=None) -> dict[str, Any]:
    """Feed ``audio`` chunk by chunk; time every update (wall and process CPU)."""
    step = 16 * chunk_ms
    updates: list[float] = []
    by_window: dict[int, list[float]] = {}
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(audio), step):
        t = time.perf_counter()
        processor.insert_audio(audio[i : i + step])
        processor.process()
        ms = (time.perf_counter() - t) * 1e3
        updates.append(ms)
        if window_ms is not None:
            by_window.setdefault(int(window_ms() // 2000) * 2, []).append(ms)
    processor.finish()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    seconds = len(audio) / 16000
    chunk = float(chunk_ms)
    report = {
        "audio_s": round(seconds, 2), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "rtf": round(wall / seconds, 3), "rtf_cpu": round(cpu / seconds, 3),
        "updates": len(updates), "update_ms_p50": round(pct(updates, 50), 1), "update_ms_p95": round(pct(updates, 95), 1),
        "update_ms_max": round(max(updates, default=0.0), 1),
        "updates_over_chunk": round(sum(u > chunk for u in updates) / max(1, len(updates)), 3),
    }
    if by_window:
        report["update_ms_by_window_s"] = {
            f"{k}-{k + 2}": {"n": len(v), "p50": round(pct(v, 50), 1), "p95": round(pct(v, 95), 1)} for k, v in sorted(by_window.items())
        }
    return report


def _window_ms(rec) -> Any:
    def current() -> float:
        utt = rec._utt  # noqa: SLF001 - a benchmark's read-only look at the window
        end = rec._frames_start + rec._frames.shape[0]  # noqa: SLF001
        return 0.0 if utt is None else (end - utt.window_start) * 60.0

    return current


def command(args: argparse.Namespace) -> int:
    import torch

    from streamst.loading import Models, RuntimeOptions

    models = Models.from_profile(args.profile, RuntimeOptions(device=args.device, quantize=args.quantize,
                                                                  threads=args.threads))
    inputs = _audio(args)
    t = time.perf_counter()
    _ = models.asr
    if args.bench_target == "pipeline" and args.mode != "cascade":
        _ = models.mt
    load_s = time.perf_counter() - t
    asr_cfg: dict[str, Any] = {k: v for k, v in (("trim_ms", args.trim_ms), ("max_window_ms", args.max_window_ms))
                               if v is not None}
    if args.partial_ms is not None:
        if args.partial_ms.strip().lower() == "none":
            asr_cfg["partial_ms"] = None
        else:
            try:
                asr_cfg["partial_ms"] = int(args.partial_ms)
            except ValueError:
                raise UserError(f"--partial-ms must be an integer or 'none', got {args.partial_ms!r}") from None
    update_ms = args.update_ms or args.chunk_ms
    try:
        from streamst.asr.streaming import StreamingASRConfig

        StreamingASRConfig(chunk_ms=update_ms, **asr_cfg)  # one clear line before the runs
    except ValueError as e:
        raise UserError(str(e)) from e
    if update_ms != args.chunk_ms:
        asr_cfg["chunk_ms"] = update_ms
    rows = []
    for label, audio in inputs:
        if args.bench_target == "asr":
            from streamst.asr.streaming import StreamingASRConfig, StreamingRecognizer

            rec = StreamingRecognizer(models.asr, models.new_vad(),
                                      StreamingASRConfig(**{"chunk_ms": args.chunk_ms, **asr_cfg}, language=args.src))
            row = run_stream(rec, audio, args.chunk_ms, _window_ms(rec))
            st = rec.stats
            row.update(decodes=st["decodes"], max_window_ms=st["max_window_frames"] * 60,
                       partial_decodes=st["partial_decodes"], final_decodes=st["final_decodes"],
                       # how often each audio frame went through the encoder, per pass
                       encodes_per_frame_partial=round(st["partial_frames"] * 60 / (1000 * row["audio_s"]), 2),
                       encodes_per_frame_final=round(st["final_frames"] * 60 / (1000 * row["audio_s"]), 2))
        else:
            from streamst.pipeline import PipelineConfig, TranslationSession

            overrides = {} if args.continuations is None else {"continuations": args.continuations}
            cfg = PipelineConfig.create(args.src, args.tgt.split(","), mode=args.mode, policy=args.policy,
                                        chunk_ms=args.chunk_ms, **overrides)
            if asr_cfg:
                from dataclasses import replace

                cfg = replace(cfg, asr=replace(cfg.asr, **asr_cfg))  # chunk_ms: --update-ms
            session = TranslationSession(models, cfg)
            # decoder counters: local decoders only (an HTTP backend's forwards happen elsewhere)
            lm = getattr(models.mt, "lm", None) if args.mode != "cascade" else None
            f0 = lm.counters() if lm is not None else {}
            row = run_stream(session, audio, args.chunk_ms, _window_ms(session.recognizer))
            if lm is not None:
                f1 = lm.counters()
                secs = len(audio) / 16000
                row.update({f"decoder_{k}_per_audio_s": round((f1[k] - f0.get(k, 0)) / secs, 1) for k in f1})
            row["simul"] = [r.simul for r in session.results][:3]
        row["input"] = label
        rows.append(row)
    report = {"bench": args.bench_target, "profile": args.profile, "device": args.device, "quantize": args.quantize,
              "asr_config": asr_cfg,
              "torch_threads": torch.get_num_threads(), "load_s": round(load_s, 1), "rows": rows}
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"bench {args.bench_target}: profile {args.profile} on {args.device} ({args.quantize}, {asr_cfg or 'defaults'}), "
          f"{report['torch_threads']} torch thread(s), models loaded in {report['load_s']} s")
    for r in rows:
        line = (f"  {r['input']:>8}: RTF {r['rtf']} (cpu {r['rtf_cpu']}), update p50/p95/max "
                f"{r['update_ms_p50']}/{r['update_ms_p95']}/{r['update_ms_max']} ms, "
                f"{100 * r['updates_over_chunk']:.0f}% over the {args.chunk_ms} ms chunk")
        if "decodes" in r:
            line += (f", {r['partial_decodes']} partial + {r['final_decodes']} final decodes "
                     f"(encoder passes per audio frame {r['encodes_per_frame_partial']} + "
                     f"{r['encodes_per_frame_final']}), max window {r['max_window_ms']} ms")
        extra = {k: v for k, v in r.items() if k.startswith("decoder_")}
        if extra:
            line += ", " + ", ".join(f"{k} {v}" for k, v in extra.items())
        print(line)
        for k, v in r.get("update_ms_by_window_s", {}).items():
            print(f"      window {k:>6} s: n={v['n']:3d} p50 {v['p50']} ms, p95 {v['p95']} ms")
    if len(rows) > 1:
        print("  RTF by length: " + ", ".join(f"{r['input']} {r['rtf_cpu']}" for r in rows)
              + f" (cpu); mean update p50 {statistics.fmean(r['update_ms_p50'] for r in rows):.1f} ms")
    return 0
