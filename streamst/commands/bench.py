"""``streamst bench``: argparse for every benchmark of :mod:`streamst.bench` (one module per
target, each with a ``command(args)`` entry point that :func:`_run` imports when it runs)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from streamst.commands._common import add_e2e_lean_arg, add_engine_args, add_threads_arg
from streamst.commands._speakers import add_speaker_args
from streamst.modes import MODES


def _run(module: str, name: str = "command") -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"streamst.bench.{module}"), name)(args)

    return run


def _mt_model(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model-dir", help="a Qwen save_pretrained directory (or hub id)")
    src.add_argument("--profile", help="take the MT model of this profile (default: tiny)")
    return p


def register(sub: argparse._SubParsersAction) -> None:
    from streamst.bench.e2e import CONFIGS as E2E_CONFIGS
    from streamst.bench.e2e_session import CONFIGS as SESSION_CONFIGS

    p = sub.add_parser("bench", help="speed benchmarks (mt, ...)")
    bsub = p.add_subparsers(dest="bench_command", required=True, metavar="TARGET")

    m = _mt_model(bsub.add_parser("mt", help="simultaneous MT decode cost per step, with and without KV reuse"))
    m.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    m.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    m.add_argument("--steps", type=int, default=8, help="timed policy steps")
    m.add_argument("--chars-per-step", type=int, default=3, help="source characters added per step")
    m.add_argument("--max-new-tokens", type=int, default=16, help="continuation length per proposal")
    m.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads (default: torch's)")
    m.add_argument("--json", action="store_true", help="print the report as JSON")
    m.set_defaults(func=_run("mt", "command_mt"))


    d = _mt_model(bsub.add_parser("dtype", help="decoder speed and greedy agreement with float32: bfloat16, int8 (CPU)"))
    d.add_argument("--variants", default="float32,bfloat16,int8", help="comma-separated: float32, bfloat16, int8")
    d.add_argument("--sentences", type=int, default=10, help="test-set zh->en sources translated")
    d.add_argument("--max-new-tokens", type=int, default=16)
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=_run("mt", "command_dtype"))

    h = bsub.add_parser("mt-http", help="per-step MT latency through an OpenAI-compatible server vs the local decoder")
    h.add_argument("--profile", required=True, help="a profile whose mt kind is openai-http (name or JSON path)")
    h.add_argument("--local-model-dir", default=None,
                   help="the same weights for the local decoder (default: the profile's mt source)")
    h.add_argument("--device", default="cpu", help="local decoder device: cpu, cuda, cuda:N")
    h.add_argument("--steps", type=int, default=8, help="timed policy steps")
    h.add_argument("--chars-per-step", type=int, default=3, help="source characters added per step")
    h.add_argument("--max-new-tokens", type=int, default=16, help="continuation length per proposal")
    h.add_argument("--json", action="store_true", help="print the report as JSON")
    h.set_defaults(func=_run("mt_http"))

    s = bsub.add_parser("server", help="concurrent real-time sessions one server process holds")
    s.add_argument("--profile", default="tiny")
    s.add_argument("--device", default="cpu")
    s.add_argument("--sessions", type=int, default=4, help="ramp N = 1..SESSIONS concurrent clients")
    s.add_argument("--seconds", type=float, default=20.0, help="speech per session")
    s.add_argument("--src", default="zh")
    s.add_argument("--tgt", default="en")
    s.add_argument("--mode", default="simul", choices=MODES)
    s.add_argument("--policy", default="reorder-aware")
    s.add_argument("--lag-bound-ms", type=float, default=3000.0, help="p95 lag that still counts as real time")
    s.add_argument("--keep-going", action="store_true", help="run every N even after one falls behind")
    s.add_argument("--flush-bound-s", type=float, default=5.0)
    s.add_argument("--mt-batch-rows", type=int, default=None,
                   help="rows per cross-session decoder call (0: no cross-session batching; default: the server's)")
    s.add_argument("--continuations", type=int, default=None,
                   help="reorder-aware: predicted source continuations per step (default: the policy's)")
    s.add_argument("--e2e-batch-rows", type=int, default=None,
                   help="rows per cross-session e2e decoder call (default: the server's: on a GPU only)")
    s.add_argument("--quantize", default="none", choices=("none", "int8"), help="as serve --quantize")
    add_threads_arg(s)
    add_engine_args(s)
    add_e2e_lean_arg(s)
    s.add_argument("--speak", action="store_true", help="every session also speaks its translation (start.speak)")
    add_speaker_args(s, server=True)  # sessions held with speaker labels on vs off
    s.add_argument("--json", action="store_true", help="print the report as one JSON line")
    s.set_defaults(func=_run("server"))

    from streamst.bench.speech import add_parser as add_speech_parser

    add_speech_parser(bsub)  # `bench speech`: synthesis RTF per engine, the bounded speech lag

    from streamst.bench.speakers import add_parser as add_speakers_parser

    add_speakers_parser(bsub)  # `bench speakers`: speaker attribution on synthetic dialogues, cost

    from streamst.bench.chaos import add_parser as add_chaos_parser

    add_chaos_parser(bsub)  # `bench chaos`: drops, reconnects, a drain and a restart; nothing lost

    from streamst.quality.e2e import add_parser as add_quality_parser  # bench.py's, with --paths (e2e)

    add_quality_parser(bsub)  # `bench quality`: held-out quality per policy and lever on a learned task

    from streamst.bench.train_step import add_parser as add_train_step_parser

    add_train_step_parser(bsub)  # `bench train-step`: seconds and FLOPs of one training step at a model size

    s = bsub.add_parser("soak", help="long audio in fast mode through one server: RSS and fds must stay flat")
    s.add_argument("--profile", default="tiny")
    s.add_argument("--device", default="cpu")
    s.add_argument("--minutes", type=float, default=60.0, help="audio to stream in total")
    s.add_argument("--session-minutes", type=float, default=15.0, help="audio per session")
    s.add_argument("--sample-minutes", type=float, default=5.0, help="audio between RSS / fd samples")
    s.add_argument("--clients", type=int, default=2, help="sessions streaming at once (each --session-minutes)")
    s.add_argument("--src", default="zh")
    s.add_argument("--tgt", default="en")
    s.add_argument("--policy", default="wait-k")
    s.add_argument("--rss-slack-mb", type=float, default=64.0, help="RSS growth after warm-up that still counts as flat")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=_run("soak"))

    p = bsub.add_parser("e2e", help="end-to-end per-chunk latency vs utterance length, with/without KV reuse")
    p.add_argument("--profile", default="random-real", help="profile whose e2e model to time (default random-real)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--quantize", default="none", choices=("none", "int8"),
                   help="int8: dynamic int8 Linear layers (CPU; encoder, adaptor and decoder)")
    p.add_argument("--lengths", default="2,5,10,20", help="utterance lengths in seconds")
    p.add_argument("--chunk-ms", type=int, default=600)
    p.add_argument("--step-tokens", type=int, default=4, help="tokens decoded per chunk step")
    p.add_argument("--final-tokens", type=int, default=8, help="tokens decoded at the utterance end")
    p.add_argument("--configs", default=",".join(E2E_CONFIGS), help=f"subset of {','.join(E2E_CONFIGS)}")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op CPU threads")
    p.add_argument("--json", action="store_true", help="one JSON line per (length, config), then a summary")
    p.set_defaults(func=_run("e2e"))

    p = bsub.add_parser("e2e-session", help="one whole simultaneous e2e session: compute RTF, step p50/p95")
    p.add_argument("--profile", default="random-real", help="profile whose e2e model runs (default random-real)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--quantize", default=None, choices=("none", "int8"), help="default: int8 on CPU, none on a GPU")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="weights dtype when not quantised (bfloat16: AVX512-BF16 / AMX kernels)")
    p.add_argument("--seconds", type=float, default=30.0, help="at least this much speech (default 30)")
    p.add_argument("--chunk-ms", type=int, default=600)
    p.add_argument("--final-tokens", type=int, default=16, help="decode budget of an utterance's final step")
    p.add_argument("--source-text", action=argparse.BooleanOptionalAction, default=True,
                   help="the per-utterance LLM transcript (on in translate --mode e2e)")
    p.add_argument("--configs", default=",".join(SESSION_CONFIGS), help=f"subset of {','.join(SESSION_CONFIGS)}, in order")
    p.add_argument("--policy", default="reorder-aware", help="simultaneous policy (default: translate's)")
    add_threads_arg(p)
    p.add_argument("--wav", help="use this 16 kHz wav instead of synthesised speech")
    p.add_argument("--sessions", type=int, default=1,
                   help="run N sessions at once (one thread each, the same audio), as the server does")
    p.add_argument("--batch", action=argparse.BooleanOptionalAction, default=True,
                   help="with --sessions: batch their decoder forwards across sessions (the server's default)")
    p.add_argument("--compare-unbatched", action="store_true", help="with --sessions: run batched and unbatched")
    p.add_argument("--json", action="store_true", help="one JSON line per configuration, then a summary")
    p.set_defaults(func=_run("e2e_session"))

    for name, help_ in (("asr", "streaming ASR RTF and per-update latency against utterance length"),
                        ("pipeline", "one simultaneous-translation stream: RTF, update latency, decoder forwards")):
        p = bsub.add_parser(name, help=help_)
        p.add_argument("--profile", default="tiny")
        p.add_argument("--device", default="cpu")
        p.add_argument("--file", help="audio file (default: espeak-ng speech of --seconds)")
        p.add_argument("--seconds", default="10,60", help="comma-separated lengths of synthetic speech")
        p.add_argument("--src", default="zh", choices=("zh", "en"))
        p.add_argument("--chunk-ms", type=int, default=600)
        p.add_argument("--trim-ms", type=int, default=None, help="StreamingASRConfig.trim_ms (default: its default)")
        p.add_argument("--max-window-ms", type=int, default=None, help="StreamingASRConfig.max_window_ms")
        p.add_argument("--partial-ms", default=None,
                       help="StreamingASRConfig.partial_ms: longest window a chunk update re-encodes "
                            "('none': the whole window, the pre-issue-13 behaviour)")
        p.add_argument("--update-ms", type=int, default=None,
                       help="StreamingASRConfig.chunk_ms: new speech between updates (default --chunk-ms); "
                            "audio is still fed in --chunk-ms pieces")
        p.add_argument("--quantize", choices=("none", "int8"), default="none",
                       help="int8: dynamic int8 SenseVoice (asr) and Qwen (pipeline) Linear layers on CPU")
        add_threads_arg(p)
        if name == "pipeline":
            p.add_argument("--tgt", default="en")
            p.add_argument("--mode", default="simul", choices=("simul", "cascade", "both"))
            p.add_argument("--policy", default="reorder-aware")
            p.add_argument("--continuations", type=int, default=None)
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.set_defaults(func=_run("stream"), bench_target=name)
