"""``streamst bench mt-http``: per-step latency of the decoder on an OpenAI-compatible server
against the local decoder, on the same steps.

The session of ``bench mt`` (a zh source growing a few characters per step, half of each
proposal's continuation committed and forced into the next step) is replayed twice per
step: through the profile's ``openai-http`` MT (one ``/completions`` request per step) and
through the local Qwen decoder with KV reuse on the same weights (``--local-model-dir``,
default: the profile's MT ``source`` when it is a whole model directory). It prints both
latencies per step, their means and ratio, and whether the proposals agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from streamst.errors import UserError


def bench_mt_http(profile_name: str, *, local_dir: str | None = None, device: str = "cpu", steps: int = 8,
                  chars_per_step: int = 3, max_new_tokens: int = 16) -> dict[str, Any]:
    from streamst.bench.mt import BENCH_SOURCE_ZH, replay
    from streamst.mt.openai_http import HttpOptions, OpenAIHttpTranslator
    from streamst.mt.qwen import QwenOptions, QwenTranslator
    from streamst.profiles import load_profile

    if steps < 1 or chars_per_step < 1 or max_new_tokens < 1:
        raise UserError("--steps, --chars-per-step and --max-new-tokens must be >= 1")
    profile = load_profile(profile_name)
    if profile.mt.kind != "openai-http":
        raise UserError(f"profile '{profile.name}': mt kind is {profile.mt.kind!r}, not openai-http")
    where = profile.require(profile.mt)
    remote = OpenAIHttpTranslator.load(where, HttpOptions.from_mapping(profile.mt.options),
                                       hint=profile.mt.hint(profile.name))
    from streamst.threads import pin_torch_threads

    pin_torch_threads(device)  # as the service runs the local decoder (STREAMST_TORCH_THREADS overrides)
    local = QwenTranslator(local_dir or where, QwenOptions(device=device))
    for mt in (remote, local):  # untimed: first-call allocations, connection set-up
        mt.open_stream("zh", "en").propose(BENCH_SOURCE_ZH[:chars_per_step], "", max_new_tokens=2)
    streams = {"http": remote.open_stream("zh", "en"), "local": local.open_stream("zh", "en")}
    rows: list[dict[str, Any]] = []
    for i, prefix, committed, got in replay(streams, steps=steps, chars_per_step=chars_per_step,
                                            max_new_tokens=max_new_tokens, lead="local"):
        (ph, ms_h), (pl, ms_l) = got["http"], got["local"]
        rows.append({"step": i, "source_chars": len(prefix), "committed_chars": len(committed),
                     "ms_http": round(ms_h, 2), "ms_local": round(ms_l, 2),
                     "equal": (ph.text, ph.complete) == (pl.text, pl.complete),
                     "reused_tokens_http": ph.reused_tokens, "reused_tokens_local": pl.reused_tokens})
    mh = statistics.fmean(r["ms_http"] for r in rows)
    ml = statistics.fmean(r["ms_local"] for r in rows)
    return {
        "bench": "mt-http", "server": remote.options.url, "model": remote.options.model,
        "local_model": local.name, "device": device, "steps": steps, "chars_per_step": chars_per_step,
        "max_new_tokens": max_new_tokens, "per_step": rows,
        "summary": {"ms_per_step_http": round(mh, 2), "ms_per_step_local": round(ml, 2),
                    "ratio_http_over_local": round(mh / ml, 3) if ml else None,
                    "p50_ms_http": round(statistics.median(r["ms_http"] for r in rows), 2),
                    "p50_ms_local": round(statistics.median(r["ms_local"] for r in rows), 2),
                    "outputs_equal": all(r["equal"] for r in rows),
                    "unequal_steps": [r["step"] for r in rows if not r["equal"]]},
    }


def command(args: argparse.Namespace) -> int:
    report = bench_mt_http(args.profile, local_dir=args.local_model_dir, device=args.device, steps=args.steps,
                           chars_per_step=args.chars_per_step, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"bench mt-http: {report['model']} at {report['server']} vs local {report['local_model']} "
          f"on {report['device']}; {report['chars_per_step']} zh chars/step, {report['max_new_tokens']} new tokens/step")
    print("  ".join(f"{h:>9}" for h in ("step", "src", "committed", "ms http", "ms local", "equal")))
    for r in report["per_step"]:
        vals = (r["step"], r["source_chars"], r["committed_chars"], r["ms_http"], r["ms_local"], r["equal"])
        print("  ".join(f"{v!s:>9}" for v in vals))
    s = report["summary"]
    print(f"mean ms/step: {s['ms_per_step_http']} through HTTP, {s['ms_per_step_local']} local "
          f"(HTTP/local x{s['ratio_http_over_local']}); p50 {s['p50_ms_http']} vs {s['p50_ms_local']} ms; "
          f"outputs equal: {s['outputs_equal']}")
    return 0
