"""``streamst translate FILE``: stream a file through ASR + simultaneous translation."""

from __future__ import annotations

import argparse
import itertools
import time

from streamst.commands._common import add_model_args, add_stream_args, emit, file_chunks, stream_file
from streamst.errors import UserError
from streamst.loading import Models, RuntimeOptions
from streamst.pipeline import MODES, PipelineConfig, TranslationSession
from streamst.results import path_summary
from streamst.policy import POLICY_NAMES


def add_policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", default="zh", help="source language (zh, en, ja, ko, yue, de, fr, es)")
    p.add_argument("--tgt", default="en", help="target language(s), comma-separated")
    p.add_argument("--policy", default="reorder-aware", choices=POLICY_NAMES)
    p.add_argument("--k", type=int, default=None, help="wait-k lag in source units")
    p.add_argument("--max-lag", type=int, default=None, help="forced-progress bound (source units)")
    p.add_argument("--ratio", type=float, default=None, help="target units per source unit")
    p.add_argument("--la-n", type=int, default=None, help="local-agreement n")
    p.add_argument("--continuations", type=int, default=None, help="predicted source continuations")


def policy_overrides(args: argparse.Namespace) -> dict:
    names = {"k": "k", "max_lag": "max_lag", "ratio": "ratio", "la_n": "la_n", "continuations": "continuations"}
    return {field: getattr(args, attr) for attr, field in names.items() if getattr(args, attr, None) is not None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translate", help="simultaneous speech translation of an audio file")
    p.add_argument("file")
    add_policy_args(p)
    p.add_argument("--mode", default="simul", choices=MODES)
    add_model_args(p)
    add_stream_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = PipelineConfig.create(args.src, args.tgt.split(","), mode=args.mode, policy=args.policy,
                                       chunk_ms=args.chunk_ms, **policy_overrides(args))
    except ValueError as e:
        raise UserError(str(e)) from e
    chunks = file_chunks(args.file, args.chunk_ms, declared_rate=args.rate, realtime=args.realtime)
    first = next(chunks)  # validates the file before loading models
    models = Models.from_profile(args.profile, RuntimeOptions(device=args.device))
    models.require(config.paths)  # a mode the profile cannot serve fails before any model loads
    session = TranslationSession(models, config)
    t0 = time.perf_counter()

    def handle(events) -> None:
        for ev in events:
            emit(ev.to_dict(), args.json)
            if not args.json and ev.type == "translation" and ev.final:
                print(f"[{ev.mode}] {ev.committed}")
            elif not args.json and ev.type == "transcript" and ev.kind == "final":
                print(f"[source] {ev.text}")

    stream_file(session, itertools.chain([first], chunks), handle)
    wall = time.perf_counter() - t0
    audio_s = session.audio_ms / 1000
    summary = {
        "type": "summary",
        "audio_s": round(audio_s, 3),
        "mode": config.mode,
        "policy": config.policy,
        "src_lang": config.src_lang,
        "tgt_langs": list(config.tgt_langs),
        "wall_s": round(wall, 3),
        "rtf": round(wall / audio_s, 4) if audio_s else None,
        "utterances": [
            {"utterance": r.utterance, "language": r.language, "start_ms": r.start_ms, "end_ms": r.end_ms, "source": r.source,
             "path": r.path, "simul": r.simul, "e2e": r.e2e, "cascade": r.cascade, "delays_ms": r.delays_ms,
             "elapsed_ms": r.elapsed_ms, "latency": r.metrics, "retention_proxy": r.retention_proxy}
            for r in session.results
        ],
        # per target language and path: the whole output and its AL/LAAL (and _CA) over the stream
        "outputs": path_summary(session.results, session.audio_ms, config.tgt_langs, config.paths),
    }
    emit(summary, args.json)
    if not args.json:
        print(f"{audio_s:.1f} s of audio, {len(session.results)} utterances, RTF {summary['rtf']}")
    return 0

