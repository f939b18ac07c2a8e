"""``streamst transcribe FILE``: stream a file through the streaming recogniser."""

from __future__ import annotations

import argparse
import time
from collections import Counter

from streamst.asr.streaming import StreamingASRConfig, StreamingRecognizer
from streamst.commands._common import (
    LiveLines,
    add_model_args,
    add_stream_args,
    emit,
    interactive,
    open_audio,
    load_models,
    stream_file,
)
from streamst.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="streaming speech recognition of an audio file")
    p.add_argument("file")
    p.add_argument("--lang", default="auto", help="source language (zh, en, yue, ja, ko, auto)")
    add_model_args(p)
    add_stream_args(p)
    p.add_argument("--update-ms", type=int, default=None,
                   help="new speech between recogniser updates (multiple of 60 ms; default --chunk-ms)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = StreamingASRConfig(chunk_ms=args.update_ms or args.chunk_ms, language=args.lang)
    except ValueError as e:
        raise UserError(str(e)) from e
    audio = open_audio(args.file, declared_rate=args.rate)  # checked before models load
    models = load_models(args.profile, args.device, quantize=args.quantize, threads=args.threads)
    rec = StreamingRecognizer(models.asr, models.new_vad(), config)
    counts: Counter[str] = Counter()
    finals = []
    out = LiveLines(audio.duration_s, enabled=interactive(args.json))
    t0, c0 = time.perf_counter(), time.process_time()

    def handle(events) -> None:
        for ev in events:
            counts[ev.kind] += 1
            emit(ev.to_dict(), args.json)
            if ev.kind == "final":
                finals.append(ev)
                if not args.json:
                    out.line(f"[{ev.start_ms / 1000:7.2f}-{ev.end_ms / 1000:7.2f}] ({ev.language}) {ev.text}")
            elif not args.json:
                out.live(f"({ev.language}) {ev.text}")

    try:
        stream_file(rec, audio.chunks(args.chunk_ms, realtime=args.realtime), handle,
                    on_chunk=lambda n: out.advance(n / 16000))
    finally:
        out.close()
    wall = time.perf_counter() - t0
    audio_s = rec.audio_ms / 1000
    summary = {
        "type": "summary",
        "audio_s": round(audio_s, 3),
        "utterances": len(finals),
        "events": {k: counts.get(k, 0) for k in ("partial", "stable", "final")},
        "wall_s": round(wall, 3),
        "rtf": round(wall / audio_s, 4) if audio_s else None,
        "decodes": rec.stats["decodes"],
        "partial_decodes": rec.stats["partial_decodes"],
        "final_decodes": rec.stats["final_decodes"],
        "cpu_s": round(time.process_time() - c0, 3),
        "max_window_ms": rec.stats["max_window_frames"] * 60,
    }
    emit(summary, args.json)
    if not args.json:
        cpu_rtf = round(summary["cpu_s"] / audio_s, 4) if audio_s else None
        print(f"{audio_s:.1f} s of audio, {len(finals)} utterances, RTF {summary['rtf']} (cpu {cpu_rtf})")
    return 0

