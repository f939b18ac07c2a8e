"""``streamst bench``: speed benchmarks of the pipeline's parts.

Each target is a sub-command (``streamst bench mt``) backed by one ``bench_<target>``
function that returns a JSON-able report; ``bench asr`` / ``bench server`` slot in as
siblings (one ``add_parser`` in ``register`` plus one function).

``bench mt`` replays a simultaneous session on a Chinese source that grows a few
characters per step, with a simple commit rule (half of the previous proposal's
continuation is committed and forced into the next step). Every step is decoded twice,
with and without KV-cache reuse, from the same inputs; the two proposals must be equal
(greedy decoding is deterministic), else the command fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from streamst.errors import UserError

# Growing zh source for `bench mt` (the brief's two examples, then more of the same).
BENCH_SOURCE_ZH = (
    "区块链是今年最火热的科技趋势了。"
    "所有草莓的基因都由几组含七条染色体的染色体组构造而成。"
    "我们今天要讨论的是如何在不牺牲翻译质量的前提下降低同声传译的延迟。"
    "演讲者说话的时候，听众应该在一两秒之内看到另一种语言的字幕。"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmarks (mt, ...)")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="TARGET")

    m = bsub.add_parser("mt", help="simultaneous MT decode cost per step, with and without KV reuse")
    src = m.add_mutually_exclusive_group()
    src.add_argument("--model-dir", help="a Qwen save_pretrained directory (or hub id)")
    src.add_argument("--profile", help="take the MT model of this profile (default: tiny)")
    m.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    m.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    m.add_argument("--steps", type=int, default=8, help="timed policy steps")
    m.add_argument("--chars-per-step", type=int, default=3, help="source characters added per step")
    m.add_argument("--max-new-tokens", type=int, default=16, help="continuation length per proposal")
    m.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads (default: torch's)")
    m.add_argument("--json", action="store_true", help="print the report as JSON")
    m.set_defaults(func=_mt_command)

    from streamst.commands import bench_http

    bench_http.add_parser(bsub)  # bench mt-http: the decoder on an OpenAI-compatible server vs local

    d = bsub.add_parser("dtype", help="decoder speed and greedy agreement with float32: bfloat16, int8 (CPU)")
    dsrc = d.add_mutually_exclusive_group()
    dsrc.add_argument("--model-dir", help="a Qwen save_pretrained directory (or hub id)")
    dsrc.add_argument("--profile", help="take the MT model of this profile (default: tiny)")
    d.add_argument("--variants", default="float32,bfloat16,int8", help="comma-separated: float32, bfloat16, int8")
    d.add_argument("--sentences", type=int, default=10, help="test-set zh->en sources translated")
    d.add_argument("--max-new-tokens", type=int, default=16)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=_dtype_command)

    from streamst.server.loadcheck import add_parser as add_server_parser

    add_server_parser(bsub)  # `bench server`: concurrent real-time sessions per process

    from streamst.server.soak import add_parser as add_soak_parser

    add_soak_parser(bsub)  # `bench soak`: long audio in fast mode, RSS and fds flat

    from streamst.e2e.bench import add_parser as add_e2e_parser

    add_e2e_parser(bsub)  # `bench e2e`: end-to-end per-chunk cost vs utterance length

    from streamst.e2e.session_bench import add_parser as add_e2e_session_parser

    add_e2e_session_parser(bsub)  # `bench e2e-session`: one whole e2e session, compute RTF

    from streamst.quality.bench import add_parser as add_quality_parser

    add_quality_parser(bsub)  # `bench quality`: held-out quality per policy and lever on a learned task

    from streamst.commands.bench_stream import add_parsers as add_stream_parsers

    add_stream_parsers(bsub)  # `bench asr`, `bench pipeline`: one stream as fast as it goes


@dataclass(frozen=True)
class MtStep:
    """One policy step, decoded with (warm) and without (cold) KV reuse."""

    step: int
    source_chars: int
    committed_chars: int
    prompt_tokens: int
    computed_warm: int  # prompt tokens run through the model with KV reuse
    computed_cold: int  # == prompt_tokens
    new_tokens: int
    ms_warm: float
    ms_cold: float
    prefill_ms_warm: float
    prefill_ms_cold: float


def bench_mt(
    source: str,
    *,
    device: str = "cpu",
    dtype: str = "auto",
    steps: int = 8,
    chars_per_step: int = 3,
    max_new_tokens: int = 16,
    hint: str = "",
) -> dict[str, Any]:
    """Decode ``steps`` growing zh->en prefixes with and without KV reuse; return a report."""
    import torch

    from streamst.mt.qwen import QwenOptions, QwenTranslator

    if steps < 1 or chars_per_step < 1:
        raise UserError("--steps and --chars-per-step must be >= 1")
    text = BENCH_SOURCE_ZH
    while len(text) < (steps + 1) * chars_per_step:
        text += BENCH_SOURCE_ZH
    t0 = time.perf_counter()
    warm_mt = QwenTranslator(source, QwenOptions(device=device, dtype=dtype, kv_reuse=True), hint=hint)
    load_s = time.perf_counter() - t0
    cold_mt = QwenTranslator.from_loaded(warm_mt.tokenizer, warm_mt.model, replace(warm_mt.options, kv_reuse=False))
    sync = _synchronizer(device)

    # one untimed step on throw-away streams: first-call allocations and kernel selection
    for mt in (warm_mt, cold_mt):
        mt.open_stream("zh", "en").propose(text[:chars_per_step], "", max_new_tokens=2)

    # float32: cached and recomputed K/V agree to ~1e-6, so greedy outputs must be equal.
    # bf16/fp16: a chunked prefill rounds differently from a full one and a random model's
    # near-tied logits may flip; the steps where outputs differ are reported instead.
    strict = warm_mt.model.dtype == torch.float32
    unequal: list[int] = []
    warm, cold = warm_mt.open_stream("zh", "en"), cold_mt.open_stream("zh", "en")
    committed = ""
    rows: list[MtStep] = []
    for i in range(steps):
        prefix = text[: (i + 1) * chars_per_step]
        timed: dict[str, tuple[Any, float]] = {}
        # alternate the order so neither variant always runs on a warmer CPU cache
        order = (("warm", warm), ("cold", cold)) if i % 2 == 0 else (("cold", cold), ("warm", warm))
        for name, stream in order:
            sync()
            t = time.perf_counter()
            proposal = stream.propose(prefix, committed, max_new_tokens=max_new_tokens)
            sync()
            timed[name] = (proposal, (time.perf_counter() - t) * 1e3)
        (pw, ms_w), (pc, ms_c) = timed["warm"], timed["cold"]
        if pw.text != pc.text:
            if strict:
                raise RuntimeError(
                    f"step {i}: KV reuse changed the proposal:\n  warm {pw.text!r}\n  cold {pc.text!r}"
                )
            unequal.append(i)
        assert warm.last is not None and cold.last is not None
        rows.append(
            MtStep(
                step=i,
                source_chars=len(prefix),
                committed_chars=len(committed),
                prompt_tokens=warm.last.prompt_tokens,
                computed_warm=warm.last.computed_tokens,
                computed_cold=cold.last.computed_tokens,
                new_tokens=warm.last.new_tokens,
                ms_warm=round(ms_w, 2),
                ms_cold=round(ms_c, 2),
                prefill_ms_warm=round(warm.last.prefill_ms, 2),
                prefill_ms_cold=round(cold.last.prefill_ms, 2),
            )
        )
        committed = pw.text[: len(committed) + len(pw.continuation) // 2]

    def mean(key: str) -> float:
        return statistics.fmean(getattr(r, key) for r in rows)

    summary = {
        "ms_per_step_warm": round(mean("ms_warm"), 2),
        "ms_per_step_cold": round(mean("ms_cold"), 2),
        "speedup": round(mean("ms_cold") / mean("ms_warm"), 3),
        "prefill_ms_warm": round(mean("prefill_ms_warm"), 2),
        "prefill_ms_cold": round(mean("prefill_ms_cold"), 2),
        "prefill_speedup": round(mean("prefill_ms_cold") / mean("prefill_ms_warm"), 3),
        "prompt_tokens": round(mean("prompt_tokens"), 1),
        "computed_tokens_warm": round(mean("computed_warm"), 1),
        "computed_tokens_cold": round(mean("computed_cold"), 1),
        "computed_ratio": round(mean("computed_warm") / mean("computed_cold"), 3),
        "outputs_equal": not unequal,
        "unequal_steps": unequal,
    }
    return {
        "bench": "mt",
        "model": warm_mt.name,
        "device": device,
        "dtype": str(warm_mt.model.dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in warm_mt.model.parameters()),
        "load_s": round(load_s, 2),
        "cpu_threads": torch.get_num_threads(),
        "steps": steps,
        "chars_per_step": chars_per_step,
        "max_new_tokens": max_new_tokens,
        "per_step": [asdict(r) for r in rows],
        "summary": summary,
    }


def print_mt_table(report: dict[str, Any]) -> None:
    """Human-readable form of a ``bench_mt`` report."""
    print(
        f"bench mt: {report['model']} ({report['parameters'] / 1e6:.1f}M params, {report['dtype']}) "
        f"on {report['device']}; {report['chars_per_step']} zh chars/step, "
        f"{report['max_new_tokens']} new tokens/step; load {report['load_s']} s"
    )
    head = ("step", "src", "prompt", "run warm", "run cold", "new", "ms warm", "ms cold", "prefill w", "prefill c")
    print("  ".join(f"{h:>9}" for h in head))
    for r in report["per_step"]:
        vals = (
            r["step"], r["source_chars"], r["prompt_tokens"], r["computed_warm"], r["computed_cold"],
            r["new_tokens"], r["ms_warm"], r["ms_cold"], r["prefill_ms_warm"], r["prefill_ms_cold"],
        )
        print("  ".join(f"{v:>9}" for v in vals))
    s = report["summary"]
    print(
        f"mean ms/step: {s['ms_per_step_warm']} with KV reuse, {s['ms_per_step_cold']} without "
        f"(x{s['speedup']}); prefill {s['prefill_ms_warm']} vs {s['prefill_ms_cold']} ms "
        f"(x{s['prefill_speedup']})"
    )
    print(
        f"prompt tokens recomputed/step: {s['computed_tokens_warm']} with KV reuse, "
        f"{s['computed_tokens_cold']} without (ratio {s['computed_ratio']}); outputs equal: {s['outputs_equal']}"
        + ("" if s["outputs_equal"] else f" (differ at steps {s['unequal_steps']}: {report['dtype']} rounding)")
    )


def _mt_command(args: argparse.Namespace) -> int:
    source, hint = _mt_source(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = bench_mt(
        source,
        device=args.device,
        dtype=args.dtype,
        steps=args.steps,
        chars_per_step=args.chars_per_step,
        max_new_tokens=args.max_new_tokens,
        hint=hint,
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print_mt_table(report)
    return 0


def _mt_source(args: argparse.Namespace) -> tuple[str, str]:
    """The MT model to load and the hint shown when it is missing."""
    if args.model_dir:
        return args.model_dir, ""
    from streamst.profiles import load_profile

    profile = load_profile(args.profile or "tiny")
    return profile.require(profile.mt), profile.mt.hint(profile.name)


def _synchronizer(device: str):
    """A function that waits for queued GPU work (a no-op on CPU), for honest timings."""
    if device.startswith("cuda"):
        import torch

        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def bench_dtype(source: str, *, variants: list[str], sentences: int = 10, max_new_tokens: int = 16,
                hint: str = "") -> dict[str, Any]:
    """Greedy whole-sentence translations of test-set sources with each numeric variant:
    CPU ms per generated token, and agreement of the token sequences with float32."""
    import copy

    import torch

    from streamst.mt.kv import CachedDecoder
    from streamst.mt.qwen import QwenOptions, QwenTranslator, quantize_int8
    from streamst.testset import load_testset

    known = ("float32", "bfloat16", "int8")
    bad = [v for v in variants if v not in known]
    if bad or not variants:
        raise UserError(f"--variants must be among {', '.join(known)}, got {','.join(variants)!r}")
    pairs = [p for p in load_testset() if p.src_lang == "zh" and p.tgt_lang == "en"][:sentences]
    base = QwenTranslator(source, QwenOptions(dtype="float32"), hint=hint)
    models = {}
    for v in dict.fromkeys(["float32", *variants]):
        if v == "float32":
            models[v] = base
        elif v == "bfloat16":
            models[v] = QwenTranslator.from_loaded(base.tokenizer, copy.deepcopy(base.model).to(torch.bfloat16), base.options)
        else:
            models[v] = QwenTranslator.from_loaded(base.tokenizer, quantize_int8(copy.deepcopy(base.model)), base.options)
    outputs: dict[str, list[tuple[int, ...]]] = {}
    rows = []
    for v, mt in models.items():
        stream = mt.open_stream("zh", "en")
        stream.propose(pairs[0].source[:2], "", max_new_tokens=1)  # warm-up
        ids, tokens, cpu, wall = [], 0, 0.0, 0.0
        for p in pairs:
            segs = stream.prompt.build(p.source, "", max_source_tokens=512, max_target_tokens=512)
            c0, w0 = time.thread_time(), time.perf_counter()
            out = CachedDecoder(mt.lm).decode(segs, max_new_tokens=max_new_tokens)
            cpu += time.thread_time() - c0
            wall += time.perf_counter() - w0
            ids.append(out.token_ids)
            tokens += max(1, len(out.token_ids))
        outputs[v] = ids
        ref = outputs["float32"]

        def agree(a: tuple[int, ...], b: tuple[int, ...]) -> float:
            n = 0
            while n < min(len(a), len(b)) and a[n] == b[n]:
                n += 1
            return n / max(1, max(len(a), len(b)))

        rows.append({"variant": v, "cpu_ms_per_token": round(cpu * 1e3 / tokens, 2),
                     "wall_ms_per_token": round(wall * 1e3 / tokens, 2),
                     "exact_match_vs_float32": round(sum(a == b for a, b in zip(ids, ref)) / len(ids), 3),
                     "token_agreement_vs_float32": round(statistics.fmean(agree(a, b) for a, b in zip(ids, ref)), 3)})
    f32 = rows[0]["cpu_ms_per_token"]
    for r in rows:
        r["speedup_vs_float32"] = round(f32 / r["cpu_ms_per_token"], 3) if r["cpu_ms_per_token"] else None
    return {"bench": "dtype", "model": base.name, "parameters": sum(p.numel() for p in base.model.parameters()),
            "cpu_threads": torch.get_num_threads(), "sentences": len(pairs), "max_new_tokens": max_new_tokens,
            "rows": rows}


def _dtype_command(args: argparse.Namespace) -> int:
    from streamst.threads import pin_torch_threads

    pin_torch_threads("cpu")
    source, hint = _mt_source(args)
    report = bench_dtype(source, variants=[v.strip() for v in args.variants.split(",") if v.strip()],
                         sentences=args.sentences, max_new_tokens=args.max_new_tokens, hint=hint)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"bench dtype: {report['model']} ({report['parameters'] / 1e6:.1f}M params), {report['cpu_threads']} "
          f"thread(s), {report['sentences']} test-set sentences x {report['max_new_tokens']} greedy tokens")
    for r in report["rows"]:
        print(f"  {r['variant']:>9}: {r['cpu_ms_per_token']} ms/token cpu ({r['wall_ms_per_token']} wall), "
              f"x{r['speedup_vs_float32']} vs float32; greedy exact match {r['exact_match_vs_float32']}, "
              f"token agreement {r['token_agreement_vs_float32']}")
    return 0
