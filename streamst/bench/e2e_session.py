"""``streamst bench e2e-session``: can one simultaneous end-to-end session keep up with real time?

A whole session runs through :class:`~streamst.pipeline.TranslationSession` in mode ``e2e``
(the path of ``translate --mode e2e``: energy VAD, :class:`~streamst.e2e.path.E2EPath`,
incremental encoding, the policy, the per-utterance source transcript) over at least
``--seconds`` of synthesised speech (espeak-ng, the test set's sources with pauses between
them). Audio is fed one chunk at a time, each ``process()`` timed in CPU time
(``time.process_time``: all of this process's threads) and wall time. Compute does not depend on
weight values, so the ``random-real`` profile (real sizes, random weights) measures the real
cost, except that random weights rarely emit a stop token: every decode runs to its budget,
so the final step of each utterance decodes ``--final-tokens`` tokens (the rest of the
translation a trained model would write; default 16) where a trained model stops earlier.

Each configuration (``--configs``) is one session on the same audio:

* ``base``: the path as it was before the levers below (no proposal reuse);
* ``draft``: the previous step's proposal is verified in the prefill (``NanoOptions.draft``,
  greedy-exact): decode steps are only spent where the new proposal departs from the old one;
* ``lean``: ``draft`` plus the opt-in levers that change outputs (``PipelineConfig.e2e_lean``,
  ``translate``/``serve --e2e-lean``): the final step encodes only
  the unfrozen frames (``final_encoding=incremental``, the transcript's audio K/V
  prefilled chunk by chunk), 10 frames (600 ms) of encoder left context instead of 20, and a
  policy lookahead of 1 unit instead of 4 (fewer tokens decoded per step).

Under ``--quantize int8`` "same output" may read False even for ``draft``: dynamic
quantisation scales each forward's activations as one tensor, so any regrouping of positions
into forwards (KV reuse included) moves greedy outputs a little; in float ``draft`` is exact.

It prints, per configuration, compute RTF (CPU seconds and wall seconds per audio second), the
chunk-step p50/p95/max in CPU and wall ms, the utterance-final steps separately, the cost
breakdown (encoder, decoder prefill positions and decode forwards) and the ratios to the
first configuration. No figure is asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streamst.audio import SAMPLE_RATE
from streamst.bench.stats import load_avg, pct
from streamst.errors import UserError

CONFIGS = ("base", "draft", "lean")


def speech(seconds: float, workdir: Path) -> np.ndarray:
    """At least ``seconds`` of Mandarin test-set speech, sentences separated by 700 ms pauses."""
    from streamst import tts
    from streamst.audio import read_audio
    from streamst.testset import load_testset

    parts: list[np.ndarray] = []
    total = 0
    for i, pair in enumerate(load_testset(["zh-en"])):
        wav = tts.synthesize(pair.source, "zh", workdir / f"s{i}.wav", gap_ms=700)
        x, _ = read_audio(wav)
        parts.append(x.astype(np.float32))
        total += x.size
        if total >= seconds * SAMPLE_RATE:
            break
    if total < seconds * SAMPLE_RATE:
        raise UserError(f"the test set speaks only {total / SAMPLE_RATE:.1f} s of zh; ask for less --seconds")
    return np.concatenate(parts)


class _Meter:
    """Wraps the shared model: times ``encode`` and collects every decode's :class:`StepStats`."""

    def __init__(self, model) -> None:
        self.model = model
        self.encode_cpu = 0.0
        self.encode_frames = 0
        self.decodes: list[Any] = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def encode(self, features, keys):
        t0 = time.process_time()
        out = self.model.encode(features, keys)
        self.encode_cpu += time.process_time() - t0
        self.encode_frames += sum(f.shape[0] for f in features)
        return out

    def open_stream(self, *args, **kwargs):
        stream = self.model.open_stream(*args, **kwargs)
        meter = self

        class _Stream:
            def reset(self) -> None:
                stream.reset()

            def propose(self, speech, committed, *, max_new_tokens=64):
                out = stream.propose(speech, committed, max_new_tokens=max_new_tokens)
                meter.decodes.append(stream.last)
                return out

            def __getattr__(self, name):
                return getattr(stream, name)

        return _Stream()


def run_session(model, audio: np.ndarray, *, chunk_ms: int = 600, final_tokens: int = 16,
                source_text: bool = True, draft: bool = False, lean: bool = False,
                policy: str = "reorder-aware", lm: Any = None, set_options: bool = True) -> dict[str, Any]:
    """One ``zh -> en`` e2e session over ``audio`` through :class:`TranslationSession`;
    ``lm``: the decoder forwards' runner (a :class:`~streamst.mt.batching.BatchedLM` shared
    by concurrent sessions, as the server does). ``set_options``: set the model's ``draft``
    option for the session and restore it after (concurrent sessions: the caller does)."""
    from streamst.pipeline import PipelineConfig, TranslationSession

    meter = _Meter(model)
    models = _E2EModels(meter)
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy=policy, chunk_ms=chunk_ms)
    cfg = replace(cfg, e2e=replace(cfg.e2e, final_tokens=final_tokens, source_text=source_text))
    if lean:
        cfg = cfg.e2e_lean()  # translate/serve --e2e-lean
    session = TranslationSession(models, cfg, e2e_lm=lm)
    old = model.options
    if set_options:
        model.options = replace(old, draft=draft)
    step = chunk_ms * SAMPLE_RATE // 1000
    chunk_cpu: list[float] = []
    chunk_wall: list[float] = []
    final_cpu: list[float] = []
    final_wall: list[float] = []
    total_cpu = total_wall = 0.0
    events = 0
    try:
        for i in range(0, audio.size, step):
            session.insert_audio(audio[i : i + step])
            n_dec = len(meter.decodes)
            c0, w0 = time.process_time(), time.perf_counter()
            evs = session.process()
            dc, dw = time.process_time() - c0, time.perf_counter() - w0
            total_cpu += dc
            total_wall += dw
            events += len(evs)
            if len(meter.decodes) == n_dec:
                continue  # nothing decoded (silence)
            finals = any(getattr(e, "final", False) or type(e).__name__ == "LatencyEvent" for e in evs)
            (final_cpu if finals else chunk_cpu).append(dc * 1e3)
            (final_wall if finals else chunk_wall).append(dw * 1e3)
        c0, w0 = time.process_time(), time.perf_counter()
        events += len(session.finish())
        dc, dw = time.process_time() - c0, time.perf_counter() - w0
        total_cpu += dc
        total_wall += dw
        final_cpu.append(dc * 1e3)
        final_wall.append(dw * 1e3)
    finally:
        model.options = old
    audio_s = audio.size / SAMPLE_RATE
    stats = [s for s in meter.decodes if s is not None]
    return {
        "audio_s": round(audio_s, 1), "utterances": len(session.results), "events": events,
        "rtf_cpu": round(total_cpu / audio_s, 3), "rtf_wall": round(total_wall / audio_s, 3),
        "chunk_steps": len(chunk_cpu),
        "chunk_cpu_p50_ms": round(statistics.median(chunk_cpu), 1) if chunk_cpu else None,
        "chunk_cpu_p95_ms": round(pct(chunk_cpu, 95, method="nearest"), 1),
        "chunk_cpu_max_ms": round(max(chunk_cpu), 1) if chunk_cpu else None,
        "chunk_wall_p50_ms": round(statistics.median(chunk_wall), 1) if chunk_wall else None,
        "chunk_wall_p95_ms": round(pct(chunk_wall, 95, method="nearest"), 1),
        "chunk_cpu_mean_ms": round(statistics.fmean(chunk_cpu), 1) if chunk_cpu else None,
        "final_steps": len(final_cpu), "final_cpu_p50_ms": round(statistics.median(final_cpu), 1),
        "final_cpu_max_ms": round(max(final_cpu), 1),
        "encoder_cpu_s": round(meter.encode_cpu, 2), "encoder_frames": meter.encode_frames,
        "decodes": len(stats),
        "prefill_positions": sum(s.computed_tokens for s in stats),
        "reused_positions": sum(s.reused_tokens for s in stats),
        "decode_forwards": sum(s.decode_forwards for s in stats),
        "new_tokens": sum(s.new_tokens for s in stats),
        "draft_tokens": sum(s.draft_tokens for s in stats),
        "draft_accepted": sum(s.draft_accepted for s in stats),
        "prefill_s": round(sum(s.prefill_ms for s in stats) / 1e3, 2),
        "decode_s": round(sum(s.decode_ms for s in stats) / 1e3, 2),
        "e2e": [r.e2e for r in session.results],
    }


class _E2EModels:
    """What a mode-``e2e`` session takes from :class:`~streamst.loading.Models`: the e2e model
    (here metered) and a fresh VAD (the profiles' energy VAD)."""

    def __init__(self, e2e) -> None:
        self.e2e = e2e

    def new_vad(self):
        from streamst.asr.vad import EnergyVad

        return EnergyVad()


def run_sessions(model, audio: np.ndarray, n: int, *, batch: bool = True, **kw: Any) -> dict[str, Any]:
    """``n`` sessions over the same audio at once, one thread each, their decoder forwards
    batched through one :class:`~streamst.mt.batching.ForwardBatcher` (``batch``) as the
    server batches them. Returns the whole run's figures: wall and process CPU time per
    second of one session's audio, and the batcher's rows per call."""
    from concurrent.futures import ThreadPoolExecutor

    from streamst.mt.batching import BatchedLM, ForwardBatcher

    batcher = ForwardBatcher(model.lm, name="e2e") if batch else None
    lm = BatchedLM(model.lm, batcher) if batcher is not None else None
    old = model.options
    model.options = replace(old, draft=kw.get("draft", False))  # once for all sessions: they share the model
    c0, w0 = time.process_time(), time.perf_counter()
    try:
        with ThreadPoolExecutor(n, thread_name_prefix="bench-session") as pool:
            rows = list(pool.map(lambda _: run_session(model, audio, lm=lm, set_options=False, **kw), range(n)))
    finally:
        model.options = old
        if batcher is not None:
            batcher.close()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    audio_s = audio.size / SAMPLE_RATE
    out: dict[str, Any] = {
        "sessions": n, "batched": batch, "audio_s": round(audio_s, 1), "utterances": sum(r["utterances"] for r in rows),
        "wall_s": round(wall, 2), "rtf_wall": round(wall / audio_s, 3), "cpu_s_per_audio_s": round(cpu / (n * audio_s), 3),
        "decode_forwards": sum(r["decode_forwards"] for r in rows), "prefill_positions": sum(r["prefill_positions"] for r in rows),
        "e2e": [r["e2e"] for r in rows],
    }
    if batcher is not None:
        st = batcher.stats
        out["decoder_batches"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in st.items()}
    return out


def command(args: argparse.Namespace) -> int:
    import torch

    from streamst.bench.e2e import load_e2e
    from streamst.threads import pin_torch_threads

    configs = tuple(c for c in args.configs.split(",") if c)
    bad = [c for c in configs if c not in CONFIGS]
    if bad or not configs:
        raise UserError(f"--configs must be a subset of {','.join(CONFIGS)}")
    if args.seconds <= 0 or args.chunk_ms <= 0 or args.final_tokens <= 0 or args.sessions < 1:
        raise UserError("--seconds, --chunk-ms, --final-tokens and --sessions must be positive")
    pin_torch_threads(args.device, args.threads)
    if args.quantize is None:
        args.quantize = "int8" if args.device.startswith("cpu") else "none"
    profile, model = load_e2e(args.profile, args.device, args.dtype, args.quantize)
    if args.wav:
        from streamst.audio import read_audio

        audio, _ = read_audio(args.wav)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            audio = speech(args.seconds, Path(tmp))
    # warm-up: one short session, so that one-time costs do not count
    run_session(model, audio[: 3 * SAMPLE_RATE], chunk_ms=args.chunk_ms, final_tokens=2, source_text=False)
    if args.sessions > 1:
        return _command_sessions(args, model, audio, configs)
    rows = []
    for name in configs:
        load_before = load_avg()
        row = run_session(model, audio, chunk_ms=args.chunk_ms, final_tokens=args.final_tokens,
                          source_text=args.source_text, draft=name != "base", lean=name == "lean", policy=args.policy)
        row = {"config": name, "load_before": load_before, "load_after": load_avg(), **row}
        rows.append(row)
    ref = rows[0]
    for r in rows:
        for k in ("rtf_cpu", "rtf_wall", "chunk_cpu_p50_ms", "chunk_cpu_p95_ms", "final_cpu_p50_ms"):
            if r.get(k) and ref.get(k):
                r[f"x_{k}"] = round(ref[k] / r[k], 2)
        r["same_output_as_first"] = r["e2e"] == ref["e2e"]
    summary = {"type": "summary", "profile": profile.name, "quantize": args.quantize, "dtype": str(model.model.dtype),
               "threads": torch.get_num_threads(), "chunk_ms": args.chunk_ms, "final_tokens": args.final_tokens,
               "source_text": args.source_text, "policy": args.policy, "cpus": os.cpu_count()}
    if args.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if k != "e2e"}, ensure_ascii=False))
        print(json.dumps(summary))
        return 0
    print(f"e2e session {profile.name}: {summary['dtype']} quantize={args.quantize}, {summary['threads']} threads, "
          f"policy {args.policy}, chunk {args.chunk_ms} ms, final budget {args.final_tokens} tokens, source text {args.source_text}")
    for r in rows:
        print(f"[{r['config']}] {r['audio_s']} s audio, {r['utterances']} utterances, load {r['load_before']} -> {r['load_after']}")
        print(f"  RTF cpu {r['rtf_cpu']} wall {r['rtf_wall']} (x{r.get('x_rtf_cpu', 1.0)} / x{r.get('x_rtf_wall', 1.0)} vs {ref['config']})")
        print(f"  chunk steps {r['chunk_steps']}: cpu p50 {r['chunk_cpu_p50_ms']} p95 {r['chunk_cpu_p95_ms']} "
              f"max {r['chunk_cpu_max_ms']} mean {r['chunk_cpu_mean_ms']} ms; wall p50 {r['chunk_wall_p50_ms']} "
              f"p95 {r['chunk_wall_p95_ms']} ms (chunk {args.chunk_ms} ms)")
        print(f"  final steps {r['final_steps']}: cpu p50 {r['final_cpu_p50_ms']} max {r['final_cpu_max_ms']} ms")
        print(f"  encoder {r['encoder_cpu_s']} s cpu over {r['encoder_frames']} frames; {r['decodes']} decodes: "
              f"prefill {r['prefill_positions']} positions ({r['reused_positions']} reused) {r['prefill_s']} s, "
              f"{r['decode_forwards']} decode forwards {r['decode_s']} s, {r['new_tokens']} tokens, "
              f"{r['draft_accepted']} of {r['draft_tokens']} draft tokens agreed; same output as {ref['config']}: {r['same_output_as_first']}")
    return 0


def _command_sessions(args: argparse.Namespace, model, audio: np.ndarray, configs: tuple[str, ...]) -> int:
    """``--sessions N``: per configuration, N concurrent sessions (batched, and with
    ``--compare-unbatched`` also unbatched); one line each."""
    import torch

    rows = []
    for name in configs:
        for batch in (True, False) if args.compare_unbatched else (args.batch,):
            load_before = load_avg()
            row = run_sessions(model, audio, args.sessions, batch=batch, chunk_ms=args.chunk_ms,
                               final_tokens=args.final_tokens, source_text=args.source_text, draft=name != "base",
                               lean=name == "lean", policy=args.policy)
            rows.append({"config": name, "load_before": load_before, "load_after": load_avg(), **row})
    ref = rows[0]
    for r in rows:
        r["x_cpu_s_per_audio_s"] = round(ref["cpu_s_per_audio_s"] / r["cpu_s_per_audio_s"], 2)
        r["same_output_as_first"] = r["e2e"] == ref["e2e"]
    for r in rows:
        if args.json:
            print(json.dumps({k: v for k, v in r.items() if k != "e2e"}, ensure_ascii=False))
        else:
            batches = r.get("decoder_batches")
            rows_per = f", {batches['mean_rows']:.2f} rows per decoder call" if batches else ""
            print(f"[{r['config']}] {r['sessions']} sessions {'batched' if r['batched'] else 'unbatched'}: "
                  f"{r['audio_s']} s audio each, wall {r['wall_s']} s (RTF {r['rtf_wall']}), "
                  f"{r['cpu_s_per_audio_s']} cpu-s per audio-s (x{r['x_cpu_s_per_audio_s']}){rows_per}; "
                  f"load {r['load_before']} -> {r['load_after']}; same output: {r['same_output_as_first']}")
    if args.json:
        print(json.dumps({"type": "summary", "profile": args.profile, "quantize": args.quantize, "sessions": args.sessions,
                          "threads": torch.get_num_threads(), "chunk_ms": args.chunk_ms, "final_tokens": args.final_tokens,
                          "source_text": args.source_text, "policy": args.policy, "cpus": os.cpu_count()}))
    return 0
