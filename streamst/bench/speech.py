"""``streamst bench speech``: speech engines' synthesis real-time factor on this CPU, and
the bounded-lag policy on a long talk whose text commits faster than it can be spoken.

* RTF: each engine (espeak-ng; kokoro with ``--kokoro DIR``) speaks the same sentences per
  language; RTF = synthesis wall time / audio duration (below 1: faster than real time).
* Policy: ``--minutes`` of talk where a clause of ``--chars`` characters commits every
  ``--every-ms``, spoken by espeak-ng with the default :class:`SpeechPolicy` and with a
  policy that never speeds up, merges or skips: the wait behind the ready time (the spoken
  lag) stays bounded with it and grows without bound without it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from streamst.speak.engine import OUTPUT_RATE, load_synthesizer, to_output

SENTENCES = {
    "en": ["The weather is nice today, so we are going for a walk in the park.",
           "Blockchain is the most popular technology trend of the year."],
    "zh": ["今天天气很好，我们去公园散步吧。", "区块链是今年最火热的科技趋势了。"],
    "ja": ["今日はいい天気なので、公園を散歩しましょう。", "ブロックチェーンは今年最も人気のある技術です。"],
}


def engine_rtf(synth, repeats: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lang, sents in SENTENCES.items():
        if not synth.supports(lang):
            continue
        synth.synthesize(sents[0], lang)  # warm-up (first-call costs)
        wall = audio = 0.0
        for _ in range(repeats):
            for text in sents:
                t0 = time.perf_counter()
                x = to_output(synth.synthesize(text, lang), synth.sample_rate)
                wall += time.perf_counter() - t0
                audio += x.size / OUTPUT_RATE
        out[lang] = {"rtf": round(wall / audio, 4), "audio_s": round(audio, 2), "wall_s": round(wall, 3)}
    return out


def policy_run(policy, minutes: float, chars: int, every_ms: int) -> dict[str, Any]:
    from streamst.events import TranslationEvent
    from streamst.speak.segments import Segmenter
    from streamst.speak.speaker import SpeechTrack

    synth = load_synthesizer("espeak-ng")
    track, seg = SpeechTrack(synth, policy), Segmenter(["en"], "simul")
    words = "the quick brown fox jumps over a lazy dog and runs far away into the green forest".split()
    waits = []
    for i in range(int(minutes * 60000 / every_ms)):
        text = " ".join(words[(i + k) % len(words)] for k in range(chars // 5))[: chars - 1] + "."
        ev = TranslationEvent(i, "simul", "en", text, (), (), (), "", True, i * every_ms)
        for s in seg.feed([ev]):
            speed = track.plan([s], s.commit_ms)
            audio, ms = track.render([s], speed) if speed is not None else (None, 0.0)
            c = track.place([s], s.commit_ms, audio, speed, ms)
            if not c.skipped:
                waits.append(c.start_ms - c.segment.commit_ms - c.synth_ms)
    m = track.meter.summary()
    return {"wait_ms_max": round(max(waits), 1), "wait_ms_last": round(waits[-1], 1), "segments": m["segments"],
            "skipped": m["skipped"], "max_speed": m["max_speed"], "delay_ms": m["delay_ms"]}


def _command(args: argparse.Namespace) -> int:
    from streamst.speak.timeline import SpeechPolicy

    engines = {"espeak-ng": load_synthesizer("espeak-ng")}
    if args.kokoro:
        engines["kokoro"] = load_synthesizer("kokoro", args.kokoro)
    report: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_before": round(os.getloadavg()[0], 2)}
    report["rtf"] = {name: engine_rtf(s) for name, s in engines.items()}
    unbounded = SpeechPolicy(catch_up_ms=1e9 - 1, max_speed=1.0, max_backlog_ms=1e9, merge_over=10 ** 6)
    report["policy"] = {"minutes": args.minutes, "chars": args.chars, "every_ms": args.every_ms,
                        "default": policy_run(SpeechPolicy(), args.minutes, args.chars, args.every_ms),
                        "none": policy_run(unbounded, args.minutes, args.chars, args.every_ms)}
    report["loadavg_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report))
        return 0
    for name, langs in report["rtf"].items():
        print(f"{name}: " + ", ".join(f"{lang} RTF {v['rtf']:.3f} ({v['audio_s']:.1f} s audio)" for lang, v in langs.items()))
    p = report["policy"]
    for k in ("default", "none"):
        r = p[k]
        print(f"policy {k}: {r['segments']} segments, {r['skipped']} skipped, max speed {r['max_speed']}, "
              f"wait behind ready max {r['wait_ms_max'] / 1000:.1f} s, at the end {r['wait_ms_last'] / 1000:.1f} s")
    print(f"load average {report['loadavg_before']} -> {report['loadavg_after']} on {report['cpus']} CPUs")
    return 0


def add_parser(bsub: argparse._SubParsersAction) -> None:
    s = bsub.add_parser("speech", help="speech engines' synthesis RTF and the bounded-lag speech policy")
    s.add_argument("--kokoro", default=None, metavar="DIR", help="also measure the kokoro engine from this directory")
    s.add_argument("--minutes", type=float, default=10.0, help="length of the simulated talk")
    s.add_argument("--chars", type=int, default=60, help="characters per committed clause")
    s.add_argument("--every-ms", type=int, default=2000, help="a clause commits every this many ms")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_command)
