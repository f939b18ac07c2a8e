"""``streamst bench speakers``: speaker attribution on synthetic dialogues, and the cost.

* Accuracy: ``--dialogues`` dialogues of ``--turns`` turns for 2 and for 3 espeak-ng voices
  (:data:`streamst.speakers.dialogue.VOICES`, held out of the tiny model's training), the
  speaker order drawn at random (seeded) with a change at every turn. Each dialogue runs
  through the profile's streaming recogniser (its VAD makes the utterances) and a
  :class:`~streamst.speakers.turns.SpeakerTurns`, exactly as in a session; scores as in
  :func:`streamst.speakers.dialogue.score`.
* Cost: utterances of 1.5, 3 and 6 s through ``SpeakerTurns.label`` (the session hook, so the
  windows a real utterance needs), ms per utterance and per window, with the model's size.
  ``--spk DIR`` measures another CAM++ directory (e.g. the real-size one built by
  ``streamst.builders.campplus.build_real``) instead of the profile's.

Sessions held with speakers on vs off: ``streamst bench server --speakers``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np

from streamst.errors import UserError
from streamst.events import TranscriptEvent
from streamst.speakers.dialogue import VOICES, Utterance, make_dialogue, score

__all__ = ["add_parser", "label_dialogue", "run_accuracy", "run_cost"]


def label_dialogue(models: Any, audio: np.ndarray, *, max_speakers: int | None = None,
                   chunk_ms: int = 600, language: str = "en") -> list[Utterance]:
    """The final utterances (span, speaker) of ``audio`` streamed through the profile's
    recogniser and a fresh session's speaker hook."""
    from streamst.asr.streaming import StreamingASRConfig, StreamingRecognizer
    from streamst.speakers.turns import session_speakers

    rec = StreamingRecognizer(models.asr, models.new_vad(), StreamingASRConfig(chunk_ms=chunk_ms, language=language))
    turns = session_speakers(models.spk, max_speakers)
    out: list[Utterance] = []

    def handle(events) -> None:
        for ev in turns.label(list(events)):
            if isinstance(ev, TranscriptEvent) and ev.kind == "final":
                out.append(Utterance(ev.start_ms, ev.end_ms, ev.speaker))

    step = 16 * chunk_ms
    for i in range(0, audio.size, step):
        piece = audio[i: i + step]
        rec.insert_audio(piece)
        turns.insert_audio(piece)
        handle(rec.process())
    handle(rec.finish())
    return out


def run_accuracy(models: Any, *, dialogues: int = 3, turns: int = 6, seed: int = 0,
                 log=print) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {}
    for n in (2, 3):
        rows = []
        for d in range(dialogues):
            order = [int(rng.integers(n))]
            while len(order) < turns:
                order.append(int((order[-1] + 1 + rng.integers(n - 1)) % n))  # a change at every turn
            audio, ref = make_dialogue(order, VOICES[:n], offset=d)
            hyp = label_dialogue(models, audio)
            s = score(hyp, ref)
            s["order"] = "".join("ABC"[i] for i in order)
            s["labels"] = "".join("-" if u.speaker is None else str(u.speaker) for u in hyp)
            rows.append(s)
            log(f"{n} voices, dialogue {d + 1}: {s['order']} -> labels {s['labels']}: attribution "
                f"{s['attribution']:.2f}, change accuracy {s['change_accuracy']:.2f}, speakers {s['speakers_found']}/{n}")
        keys = ("attribution", "change_accuracy", "purity", "coverage")
        report[f"{n}_voices"] = {"voices": [str(v) for v in VOICES[:n]], "dialogues": rows,
                                 **{f"mean_{k}": round(statistics.fmean(r[k] for r in rows), 4) for k in keys},
                                 "exact_speaker_count": sum(r["speakers_found"] == n for r in rows)}
    return report


def run_cost(embedder: Any, *, lengths_s=(1.5, 3.0, 6.0), repeats: int = 5) -> dict[str, Any]:
    """ms per utterance of each length through the session hook (its windows, in one call, as
    in a session whose final step sees the whole utterance): wall time and this thread's CPU
    time (on a shared machine the CPU figure is what the code costs). Torch threads: the
    caller's (one per model call in a server)."""
    from streamst.speakers.turns import session_speakers

    rng = np.random.default_rng(0)
    rows = []
    for length in lengths_s:
        n = int(length * 16000)
        times, cpu, windows = [], [], 0
        for r in range(repeats + 1):  # the first is a warm-up
            turns = session_speakers(embedder)
            audio = (rng.standard_normal(n) * 0.1).astype(np.float32)
            turns.insert_audio(audio)
            ev = TranscriptEvent(kind="final", utterance=0, text="x", stable_text="x", tokens=(), language="en",
                                 audio_ms=n // 16, start_ms=0, end_ms=n // 16)
            t0, c0 = time.perf_counter(), time.thread_time()
            turns.label([ev])
            if r:
                times.append((time.perf_counter() - t0) * 1e3)
                cpu.append((time.thread_time() - c0) * 1e3)  # this thread's CPU: what the code costs
                windows = turns.windows
        wall, cpu_ms = statistics.median(times), statistics.median(cpu)
        rows.append({"utterance_s": length, "windows": windows, "ms_per_utterance": round(wall, 2),
                     "cpu_ms_per_utterance": round(cpu_ms, 2), "cpu_ms_per_window": round(cpu_ms / max(1, windows), 2),
                     "rtf": round(wall / (length * 1000), 4), "cpu_rtf": round(cpu_ms / (length * 1000), 4)})
    model = getattr(getattr(embedder, "auto_model", None), "model", None)
    params = sum(p.numel() for p in model.parameters()) if model is not None else None
    return {"params": params, "dim": embedder.dim, "threshold": getattr(embedder, "threshold", None), "rows": rows}


def add_parser(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser("speakers", help="speaker attribution on 2- and 3-voice espeak-ng dialogues, and its cost")
    p.add_argument("--profile", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dialogues", type=int, default=3, help="dialogues per voice count")
    p.add_argument("--turns", type=int, default=6, help="turns per dialogue")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spk", default=None, metavar="DIR", help="cost of this CAM++ directory instead of the profile's")
    p.add_argument("--cost-only", action="store_true", help="skip the dialogues")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    from streamst.loading import Models, RuntimeOptions
    from streamst.profiles import load_profile
    from streamst.speakers.embed import CamPlusEmbedder
    from streamst.tts import have_tts

    if not args.cost_only and not have_tts():
        raise UserError("bench speakers needs espeak-ng and sox for its dialogues (apt-get install espeak-ng sox)")
    from streamst.threads import pin_torch_threads

    pin_torch_threads(args.device, None)  # one torch thread per model call, as in a server (also for --spk)
    log = (lambda s: None) if args.json else print
    report: dict[str, Any] = {"profile": args.profile}
    models = None
    if not args.cost_only or args.spk is None:
        models = Models(load_profile(args.profile), RuntimeOptions(device=args.device))
        if not models.has_spk:
            raise UserError(f"profile '{args.profile}' has no speaker model (spk)")
    if not args.cost_only:
        report["accuracy"] = run_accuracy(models, dialogues=args.dialogues, turns=args.turns, seed=args.seed, log=log)
    embedder = (CamPlusEmbedder.load(args.spk, hint="build it with streamst.builders.campplus", device=args.device)
                if args.spk else models.spk)
    report["cost"] = {"model": args.spk or f"profile {args.profile}", **run_cost(embedder)}
    report["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(report))
        return 0
    for n in (2, 3):
        a = report.get("accuracy", {}).get(f"{n}_voices")
        if a:
            print(f"{n} voices ({', '.join(a['voices'])}): attribution {a['mean_attribution']:.3f}, change accuracy "
                  f"{a['mean_change_accuracy']:.3f}, purity {a['mean_purity']:.3f}, coverage {a['mean_coverage']:.3f}; "
                  f"speaker count right in {a['exact_speaker_count']}/{len(a['dialogues'])} dialogues")
    c = report["cost"]
    print(f"cost ({c['model']}, {c['params']} parameters, {c['dim']}-dim):")
    for r in c["rows"]:
        print(f"  {r['utterance_s']:.1f} s utterance: {r['windows']} windows, {r['ms_per_utterance']:.1f} ms wall, "
              f"{r['cpu_ms_per_utterance']:.1f} ms CPU ({r['cpu_ms_per_window']:.1f} ms CPU per window, "
              f"CPU RTF {r['cpu_rtf']:.4f})")
    print(f"load average {report['loadavg']} (a shared box: figures are upper bounds)")
    return 0
