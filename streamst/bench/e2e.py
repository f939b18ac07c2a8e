"""``streamst bench e2e``: per-chunk cost of the end-to-end path against utterance length.

For each utterance length (2, 5, 10, 20 s by default) one utterance of synthetic speech-band
noise (compute does not depend on the signal or the weights) is fed through
:class:`~streamst.e2e.path.E2EPath` chunk by chunk under a write-as-you-go wait-k policy, in
three configurations that differ only in cost:

* ``full``: every chunk re-encodes the utterance so far and the decoder recomputes all of it
  after the cached static prompt head (the K/V of the head is reused);
* ``full-nokv``: the same, recomputing the head too (no prompt-KV reuse);
* ``incremental``: only new frames are encoded (with left context) and their K/V appended.

It prints p50/p95 per-chunk latency (wall time of one chunk step: features, encoder +
adaptor, decoder prefill and decode), the ratio to ``full-nokv``, and the RTF (compute
seconds / audio seconds) over the utterance, including its final full re-encode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np

from streamst.bench.stats import pct
from streamst.errors import UserError

CONFIGS = ("full-nokv", "full", "incremental")


def bench_e2e(model, *, lengths_s: list[float], chunk_ms: int = 600, step_tokens: int = 4, final_tokens: int = 8,
              configs: tuple[str, ...] = CONFIGS, seed: int = 0) -> list[dict[str, Any]]:
    """Time chunk steps of one utterance per length and configuration; one row per pair."""
    from streamst.asr.vad import AlwaysSpeech
    from streamst.mt.kv import CachedDecoder
    from streamst.e2e.path import E2EPath
    from streamst.pipeline import PipelineConfig

    rng = np.random.default_rng(seed)
    rows = []
    for length in lengths_s:
        n = int(length * 16000)
        audio = (0.1 * rng.standard_normal(n)).astype(np.float32)
        for name in configs:
            base = PipelineConfig.create("zh", "en", mode="e2e", policy="wait-k", chunk_ms=chunk_ms, k=1, max_lag=1)
            cfg = replace(base, e2e=replace(base.e2e, step_tokens=step_tokens, final_tokens=final_tokens, source_text=False,
                          max_utterance_ms=max(int(length * 1000) + 2 * chunk_ms, base.e2e.max_utterance_ms),
                          encoding="incremental" if name == "incremental" else "full"))
            path = E2EPath(model, AlwaysSpeech(), cfg.e2e, src_lang="zh", policies={"en": cfg.e2e_policy_for("en")},
                           chunk_ms=chunk_ms, clock=lambda: 0.0, results=deque())
            if name == "full-nokv":
                for s in path.streams:
                    s.decoder = CachedDecoder(model.lm, kv_reuse=False)  # type: ignore[attr-defined]
            # warm-up: one chunk, so that one-time costs (allocator, kernels) do not count
            path.insert_audio(audio[: 16 * chunk_ms])
            path.process()
            path.reset()
            for s in path.streams:
                s.reset()
            step = 16 * chunk_ms
            per_chunk: list[float] = []
            total = 0.0
            for i in range(0, n, step):
                path.insert_audio(audio[i : i + step])
                before = path._utt.steps if path._utt is not None else -1
                t0 = time.perf_counter()
                path.process()
                dt = time.perf_counter() - t0
                total += dt
                if path._utt is not None and path._utt.steps > before:  # a chunk step ran (not a partial chunk)
                    per_chunk.append(dt * 1e3)
            t0 = time.perf_counter()
            path.finish()
            final_ms = (time.perf_counter() - t0) * 1e3
            total += final_ms / 1e3
            stats = path.streams[0].last  # type: ignore[attr-defined]
            rows.append({
                "length_s": length, "config": name, "chunks": len(per_chunk),
                "chunk_p50_ms": round(statistics.median(per_chunk), 1),
                "chunk_p95_ms": round(pct(per_chunk, 95, method="nearest"), 1),
                "chunk_last_ms": round(per_chunk[-1], 1), "final_ms": round(final_ms, 1),
                "rtf": round(total / length, 3),
                "chunk_share_p95": round(pct(per_chunk, 95, method="nearest") / chunk_ms, 3),
                "last_prompt_tokens": stats.prompt_tokens if stats else None,
            })
    by = {(r["length_s"], r["config"]): r for r in rows}
    for r in rows:
        ref = by.get((r["length_s"], "full-nokv"))
        if ref is not None and r["chunk_p50_ms"]:
            r["speedup_p50_vs_nokv"] = round(ref["chunk_p50_ms"] / r["chunk_p50_ms"], 2)
    return rows


def load_e2e(profile_name: str, device: str, dtype: str, quantize: str) -> tuple[Any, Any]:
    """(the profile, its e2e model loaded with these options), or a one-line error."""
    from streamst.e2e.funasr_nano import FunAsrNanoSpeech, NanoOptions
    from streamst.profiles import load_profile

    profile = load_profile(profile_name)
    if profile.e2e is None:
        raise UserError(f"profile '{profile.name}' has no e2e model")
    return profile, FunAsrNanoSpeech(profile.require(profile.e2e), NanoOptions(device=device, dtype=dtype, quantize=quantize),
                                     hint=profile.e2e.hint(profile.name))


def command(args: argparse.Namespace) -> int:
    import torch

    try:
        lengths = [float(x) for x in args.lengths.split(",") if x]
        configs = tuple(c for c in args.configs.split(",") if c)
    except ValueError as e:
        raise UserError(f"--lengths must be comma-separated seconds: {e}") from e
    bad = [c for c in configs if c not in CONFIGS]
    if bad or not lengths or min(lengths) <= 0:
        raise UserError(f"--configs must be a subset of {','.join(CONFIGS)} and --lengths positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    profile, model = load_e2e(args.profile, args.device, args.dtype, args.quantize)
    rows = bench_e2e(model, lengths_s=lengths, chunk_ms=args.chunk_ms, step_tokens=args.step_tokens,
                     final_tokens=args.final_tokens, configs=configs)
    params = sum(p.numel() for p in model.model.parameters())
    summary = {"type": "summary", "profile": profile.name, "device": args.device, "dtype": str(model.model.dtype),
               "quantize": args.quantize,
               "threads": torch.get_num_threads(), "parameters_m": round(params / 1e6, 1), "chunk_ms": args.chunk_ms,
               "rows": len(rows)}
    if args.json:
        for r in rows:
            print(json.dumps(r))
        print(json.dumps(summary))
    else:
        print(f"e2e {profile.name}: {summary['parameters_m']}M params, {summary['dtype']}, {summary['threads']} threads, "
              f"chunk {args.chunk_ms} ms")
        print(f"{'len_s':>6} {'config':>12} {'p50_ms':>8} {'p95_ms':>8} {'last_ms':>8} {'final_ms':>9} {'rtf':>6} {'x_vs_nokv':>9}")
        for r in rows:
            print(f"{r['length_s']:>6g} {r['config']:>12} {r['chunk_p50_ms']:>8} {r['chunk_p95_ms']:>8} "
                  f"{r['chunk_last_ms']:>8} {r['final_ms']:>9} {r['rtf']:>6} {r.get('speedup_p50_vs_nokv', ''):>9}")
    return 0
