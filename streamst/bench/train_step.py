"""``streamst bench train-step``: the cost of one ``streamst train`` optimiser step at a given
model size, measured: wall seconds per step and the FLOPs the step executes (counted by
``torch.utils.flop_counter``: matmuls, convolutions, attention), for the recipe's settings
(trainable parts, LoRA rank, bf16, gradient checkpointing).

``--arch real`` builds the exact Fun-ASR-Nano-2512 architecture with random weights in memory
(0.8B parameters, 3.2 GB float32; nothing is written); ``--arch tiny`` the tiny profile's;
``--model DIR`` loads a model directory. The batch is ``--batch`` utterances of
``--clip-seconds`` of audio (random LFR features: cost does not depend on content) with
``--target-tokens`` target tokens each, inside the real inference prompt. A frozen encoder
runs once per example (the recipe caches its outputs), so it is timed and counted apart.

The FLOP count is what converts a measurement on one machine into an estimate for another
(docs/training.md "GPU-hours"); the step time measured here is the CPU's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import torch

from streamst.errors import UserError


def add_parser(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser("train-step", help="seconds and FLOPs of one training step at a model size (for GPU-hour estimates)")
    p.add_argument("--arch", choices=("real", "tiny"), default="tiny", help="random weights of this architecture (in memory)")
    p.add_argument("--model", default=None, metavar="DIR", help="a Fun-ASR-Nano model directory instead of --arch")
    p.add_argument("--batch", type=int, default=1, help="utterances per step (default %(default)s)")
    p.add_argument("--clip-seconds", type=float, default=5.0, help="audio per utterance (default %(default)s)")
    p.add_argument("--target-tokens", type=int, default=20, help="target tokens per utterance, <|im_end|> included")
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step (default %(default)s)")
    p.add_argument("--train", default="adaptor,decoder", help="parts that learn (default %(default)s)")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CPUs without bf16 units emulate it: slow)")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="the report as one JSON line")
    p.set_defaults(func=command)


def _model(args: argparse.Namespace):
    from transformers import FunAsrNanoForConditionalGeneration

    if args.model:
        from streamst.e2e.funasr_nano import FunAsrNanoSpeech, NanoOptions

        return FunAsrNanoSpeech(args.model, NanoOptions(dtype="float32")).model
    from streamst.builders.funasr_nano import REAL, TINY, nano_config

    torch.manual_seed(0)
    config = nano_config(REAL if args.arch == "real" else TINY, torch.float32)
    with torch.device("meta"):  # no slow initialisers: shapes first, then normal(0, 0.02) weights
        model = FunAsrNanoForConditionalGeneration._from_config(config, attn_implementation="sdpa")
    for sub in (model.config, model.config.adaptor_config, model.config.text_config, model.config.audio_config):
        if getattr(sub, "_attn_implementation", None) is None:  # as streamst.e2e.funasr_nano._load does
            sub._attn_implementation = "sdpa"
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if "norm" in name or "weight" in name else 0.0)
            else:
                p.normal_(0.0, 0.02)
        for b in model.buffers():
            b.zero_()
    model.tie_weights()
    return model.eval()


def _batch(model, args: argparse.Namespace):
    from transformers import AutoTokenizer

    from streamst.builders.qwen import tokenizer_files_dir
    from streamst.e2e.funasr_nano import SpeechPrompt
    from streamst.training.data import IGNORE, Batch

    tok = AutoTokenizer.from_pretrained(str(tokenizer_files_dir()))
    prompt = SpeechPrompt(tok, "translate", "zh", "en")
    frames = max(1, int(args.clip_seconds * 1000 / 60))  # LFR frames (60 ms each) = audio placeholders
    head = prompt.input_ids(frames, int(model.config.audio_token_id), "", max_target_tokens=0)
    g = torch.Generator().manual_seed(0)
    target = torch.randint(1000, 100_000, (args.target_tokens,), generator=g).tolist()
    seq = torch.tensor(head + target)
    ids = seq.repeat(args.batch, 1)
    labels = torch.full_like(ids, IGNORE)
    labels[:, len(head):] = torch.tensor(target)
    audio = torch.randn(args.batch, frames, 560, generator=g)
    return Batch(ids, labels, torch.ones_like(ids), audio, torch.ones(args.batch, frames, dtype=torch.long)), len(head)


def command(args: argparse.Namespace) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from streamst.training.config import TrainConfig, parse_parts
    from streamst.training.trainer import NanoTrainer

    if args.batch < 1 or args.steps < 1 or args.target_tokens < 1 or args.clip_seconds <= 0:
        raise UserError("--batch, --steps, --target-tokens and --clip-seconds must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda s: None) if args.json else print
    t0 = time.perf_counter()
    model = _model(args)
    try:
        config = TrainConfig(train=parse_parts(args.train), lora_rank=args.lora_rank, bf16=args.bf16,
                             grad_checkpointing=args.grad_checkpointing, batch_size=args.batch)
    except ValueError as e:
        raise UserError(str(e)) from e
    trainer = NanoTrainer(model, config)
    log(f"model ready in {time.perf_counter() - t0:.1f} s: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M "
        f"parameters, {trainer.trainable_count / 1e6:.2f}M trainable")
    batch, prompt_len = _batch(model, args)
    report: dict[str, Any] = {
        "arch": args.model or args.arch, "batch": args.batch, "clip_seconds": args.clip_seconds,
        "target_tokens": args.target_tokens, "sequence_tokens": int(batch.input_ids.shape[1]),
        "prompt_and_audio_tokens": prompt_len, "train": list(config.train), "lora_rank": args.lora_rank,
        "bf16": args.bf16, "grad_checkpointing": args.grad_checkpointing,
        "total_params": sum(p.numel() for p in model.parameters()), "trainable_params": trainer.trainable_count,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
    }
    if trainer.encoder_frozen:  # once per example in a real run (cached): timed and counted apart
        feats = batch.audio
        with FlopCounterMode(display=False) as fc:
            enc = torch.cat([trainer.frozen_encoder(feats[i : i + 1]) for i in range(args.batch)])
        t1 = time.perf_counter()
        trainer.frozen_encoder(feats[:1])
        report["encoder_seconds_per_example"] = round(time.perf_counter() - t1, 3)
        report["encoder_gflop_per_example"] = round(fc.get_total_flops() / args.batch / 1e9, 3)
        batch.audio = enc

    def step() -> None:
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.loss(batch).backward()
        trainer.optimizer.step()

    step()  # warm-up (allocations, kernels)
    with FlopCounterMode(display=False) as fc:
        step()
    times = []
    for _ in range(args.steps):
        t1 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t1)
    sec = statistics.median(times)
    gflop = fc.get_total_flops() / 1e9
    report.update({
        "step_seconds_median": round(sec, 3), "step_seconds": [round(t, 3) for t in times],
        "step_gflop": round(gflop, 2), "gflop_per_example": round(gflop / args.batch, 2),
        "achieved_gflops": round(gflop / sec, 1), "loadavg": [round(x, 2) for x in os.getloadavg()],
    })
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k}: {v}")
    return 0
