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
from streamst.bench.stats import pct
from streamst.commands._speakers import add_speaker_args, session_speakers
from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.errors import UserError
from streamst.events import Event
from streamst.policy.config import POLICY_NAMES, POLICY_OPTIONS
from streamst.results import path_summary
from streamst.speak.cli import add_tts_arg, check_speak_out, speak_out, synthesizer


def add_policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", default="zh", help="source language (zh, en, ja, ko, yue, de, fr, es)")
    p.add_argument("--tgt", default="en", help="target language(s), comma-separated")
    p.add_argument("--policy", default="reorder-aware", choices=POLICY_NAMES)
    for o in POLICY_OPTIONS:  # one flag per declared policy option (unset: the per-pair default)
        kind = {"action": argparse.BooleanOptionalAction} if o.type is bool else {"type": o.type}
        p.add_argument(f"--{o.name.replace('_', '-')}", default=None, help=o.help, **kind)


def policy_overrides(args: argparse.Namespace) -> dict:
    return {o.name: getattr(args, o.name) for o in POLICY_OPTIONS if getattr(args, o.name, None) is not None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translate", help="simultaneous speech translation of an audio file")
    p.add_argument("file")
    add_policy_args(p)
    # the pipeline's own list: a new mode there is a new choice here
    p.add_argument("--mode", default="simul", choices=modes.MODES, help="translation path(s) to run")
    add_model_args(p)
    add_stream_args(p)
    add_e2e_lean_arg(p)
    p.add_argument("--speak-out", default=None, metavar="FILE.wav",
                   help="also speak the first target's translation into this wav (24 kHz; streamst/speak)")
    add_tts_arg(p)
    add_speaker_args(p)
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
    speak_to = check_speak_out(args.speak_out)
    live = interactive(args.json)
    if live:
        print(f"loading models (profile {args.profile})…", file=sys.stderr, flush=True)
    # a mode the profile cannot serve, or unbuilt models, fail before any model loads
    models = load_models(args.profile, args.device, config.paths, quantize=args.quantize,
                         threads=args.threads, engine=args.engine, engine_url=args.engine_url)
    if problem := models.profile.source_problem(config.src_lang, config.paths):
        raise UserError(problem)  # a language the profile's recogniser / e2e model does not hear
    session = TranslationSession(models, config, speakers=session_speakers(args, models))
    out = LiveLines(audio.duration_s, enabled=live)
    t0 = time.perf_counter()
    seen: list[Event] = []  # kept for --speak-out

    def handle(events: list[Event]) -> None:
        if speak_to is not None:
            seen.extend(events)
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
             "elapsed_ms": r.elapsed_ms, "latency": r.metrics, "retention_proxy": r.retention_proxy,
             **({"speaker": session.speakers.speaker_of(r)} if session.speakers else {})}
            for r in session.results
        ],
        # per target language and path: the whole output and its AL/LAAL (and _CA) over the stream
        "outputs": path_summary(session.results, session.audio_ms, config.tgt_langs, config.paths),
    }
    if speak_to is not None:
        summary["speech"] = speak_out(synthesizer(models, args.tts), seen, config.tgt_langs[0], config.paths[0], speak_to)
    if args.json:
        emit(summary, True)
        return 0
    if speak_to is not None:
        sp = summary["speech"]
        print(f"speech: {sp['duration_s']:.1f} s of {sp['language']} in {speak_to} ({sp['segments']} segments, "
              f"{sp['skipped']} skipped; delay p50 {fmt_s(sp['delay_ms'].get('p50'))} s)")
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
    p50, p95, top = (pct(xs, q, method="nearest") for q in (50, 95, 100))
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
            who = f" speaker {d['speaker'] + 1}" if d.get("speaker") is not None else ""
            out.line(f"[{utt}] {d['start_ms'] / 1000:.1f}-{d['end_ms'] / 1000:.1f} s{who} "
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
