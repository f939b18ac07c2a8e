"""``streamst translate FILE``: stream a file through ASR + simultaneous translation.

At a terminal: each utterance's transcript, translation per path and latency as it finishes,
the caption being made and a progress bar on the bottom line, then a table of per-utterance
latency and retention. ``--json``: one event per line, then a summary object (no bar).
Arguments, languages and the file are checked before any model loads.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from streamst.commands._common import (
    LiveLines,
    add_e2e_lean_arg,
    add_model_args,
    add_stream_args,
    check_languages,
    emit,
    fmt_s,
    interactive,
    load_models,
    one_line,
    open_audio,
    stream_file,
    utterance_table,
)
from streamst import modes
from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.errors import UserError
from streamst.events import Event
from streamst.policy import POLICY_NAMES
from streamst.results import path_summary


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
    # the pipeline's own list: a new mode there is a new choice here
    p.add_argument("--mode", default="simul", choices=modes.MODES, help="translation path(s) to run")
    add_model_args(p)
    add_stream_args(p)
    add_e2e_lean_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # everything that can be wrong with the arguments is reported before models load
    tgts = check_languages(args.src, args.tgt.split(","))
    try:
        config = PipelineConfig.create(args.src, tgts, mode=args.mode, policy=args.policy,
                                       chunk_ms=args.chunk_ms, **policy_overrides(args))
    except ValueError as e:
        raise UserError(str(e)) from e
    if args.e2e_lean:
        config = config.e2e_lean()
    audio = open_audio(args.file, declared_rate=args.rate)
    live = interactive(args.json)
    if live:
        print(f"loading models (profile {args.profile})…", file=sys.stderr, flush=True)
    # a mode the profile cannot serve, or unbuilt models, fail before any model loads
    models = load_models(args.profile, args.device, config.paths, quantize=args.quantize,
                         threads=args.threads)
    if problem := models.profile.source_problem(config.src_lang, config.paths):
        raise UserError(problem)  # a language the profile's recogniser / e2e model does not hear
    session = TranslationSession(models, config)
    out = LiveLines(audio.duration_s, enabled=live)
    t0 = time.perf_counter()

    def handle(events: list[Event]) -> None:
        for ev in events:
            if args.json:
                emit(ev.to_dict(), True)
            else:
                show(out, ev)

    fed = 0  # samples processed
    lags: list[float] = []  # --realtime: how far processing is behind the audio after each chunk (ms)

    def on_chunk(n: int) -> None:
        nonlocal fed
        fed += n
        out.advance(n / 16000)
        lags.append((time.perf_counter() - t0) * 1000 - fed / 16)

    try:
        stream_file(session, audio.chunks(args.chunk_ms, realtime=args.realtime), handle, on_chunk=on_chunk)
    finally:
        out.close()
    wall = time.perf_counter() - t0
    audio_s = session.audio_ms / 1000
    rtf = round(wall / audio_s, 4) if audio_s else None
    summary = {
        "type": "summary",
        "audio_s": round(audio_s, 3),
        "mode": config.mode,
        "policy": config.policy,
        "profile": args.profile,
        "src_lang": config.src_lang,
        "tgt_langs": list(config.tgt_langs),
        "wall_s": round(wall, 3),
        "rtf": rtf,
        **(realtime_lag(lags, wall * 1000 - fed / 16) if args.realtime else {}),
        "utterances": [
            {"utterance": r.utterance, "language": r.language, "start_ms": r.start_ms, "end_ms": r.end_ms, "source": r.source,
             "path": r.path, "simul": r.simul, "e2e": r.e2e, "cascade": r.cascade, "delays_ms": r.delays_ms,
             "elapsed_ms": r.elapsed_ms, "latency": r.metrics, "retention_proxy": r.retention_proxy}
            for r in session.results
        ],
        # per target language and path: the whole output and its AL/LAAL (and _CA) over the stream
        "outputs": path_summary(session.results, session.audio_ms, config.tgt_langs, config.paths),
    }
    if args.json:
        emit(summary, True)
        return 0
    n = len({r.utterance for r in session.results})
    print(f"summary: {audio_s:.1f} s of audio, {n} utterance{'s' if n != 1 else ''}, mode {config.mode}, "
          f"profile {args.profile}; {wall:.1f} s of processing (RTF {rtf})")
    if args.realtime:
        lag = summary["lag_ms"]
        print(f"real time: processing was behind the audio by {fmt_s(lag['p50'])} s (p50), {fmt_s(lag['p95'])} s "
              f"(p95), {fmt_s(lag['max'])} s at most; done {fmt_s(summary['done_after_end_ms'])} s after the audio ended")
    utterance_table(list(session.results), sys.stdout)
    return 0


def realtime_lag(lags: list[float], end_lag_ms: float) -> dict:
    """``--realtime`` figures: after each chunk's processing, how far it was behind the audio
    fed so far (ms; p50/p95/max, never below 0), and how long after the end of the audio
    the last results (the final flush) were out."""
    xs = np.maximum(np.asarray(lags or [0.0], dtype=float), 0.0)
    p50, p95, top = np.percentile(xs, [50, 95, 100], method="nearest")
    return {"lag_ms": {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "max": round(float(top), 1)},
            "done_after_end_ms": round(max(0.0, end_lag_ms), 1)}


def show(out: LiveLines, ev: Event) -> None:
    """One pipeline event for a person: finished things as lines, the rest as the live line."""
    d = ev.to_dict()
    kind = d.get("type")
    utt = d.get("utterance")
    if kind == "transcript":
        text = one_line(d["text"])
        if d["kind"] == "final":
            out.line(f"[{utt}] {d['start_ms'] / 1000:.1f}-{d['end_ms'] / 1000:.1f} s "
                     f"{d.get('language') or 'source'}: {text}")
        else:
            out.live(f"[{utt}] {d.get('language') or 'source'}: {text}")
    elif kind == "translation":
        label = f"{d['language']} {d.get('mode', 'simul')}"
        committed = one_line(d["committed"])
        if d.get("final"):
            out.line(f"[{utt}] {label}: {committed}")
        else:
            tentative = f" [{one_line(d['tentative'])}]" if d.get("tentative") else ""
            out.live(f"[{utt}] {label}: {committed}{tentative}")
    elif kind == "latency":
        m = d.get("metrics") or {}
        figures = " · ".join(f"{k} {fmt_s(m[k])} s" for k in ("AL", "LAAL", "AL_CA", "LAAL_CA") if k in m)
        ret = d.get("retention_proxy")
        extra = f" · retention {ret:.2f}*" if isinstance(ret, (int, float)) else ""
        label = d["language"] + (f" {d['mode']}" if d.get("mode") else "")
        if figures or extra:
            out.line(f"[{utt}] {label} latency: {figures}{extra}")
