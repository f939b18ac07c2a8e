"""``streamst train MANIFEST --profile P --out DIR``: fine-tune the end-to-end model for speech
translation (adaptor + LoRA on the Qwen decoder by default; see docs/training.md).

Writes into DIR: ``model/`` (merged save_pretrained directory), ``profile.json`` (usable as
``--profile DIR/profile.json`` by every command), ``train_log.jsonl``, ``loss.png`` and
``eval.json`` (chrF/BLEU of greedy offline decoding on the manifest or ``--eval``). DIR appears
only when all of it is written; an interrupted run stays in ``DIR.partial`` (``--resume``).

Under ``torchrun --nproc_per_node N -m streamst.cli train ...`` the processes train data-parallel
(streamst/training/distributed.py): ``--batch-size`` is the global batch, rank 0 writes.
"""

from __future__ import annotations

import argparse
import json
import sys

from streamst.errors import UserError
from streamst.training.config import TrainConfig, parse_parts


def register(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = sub.add_parser("train", help="fine-tune the end-to-end model (speech translation) on a manifest")
    p.add_argument("manifest", help="JSONL: audio (16 kHz wav, relative to the manifest), reference, src_lang, tgt_lang")
    p.add_argument("--profile", default="default", help="base profile (name or path to a profile JSON) with an e2e model")
    p.add_argument("--out", required=True, help="output folder (must not exist, unless --force)")
    p.add_argument("--eval", default=None, metavar="MANIFEST", help="evaluate on this manifest (default: the training one)")
    p.add_argument("--train", default=",".join(d.train), help="parts that learn: encoder,adaptor,decoder (default %(default)s)")
    p.add_argument("--lora-rank", type=int, default=d.lora_rank, help="LoRA rank on the decoder; 0: full fine-tune (default %(default)s)")
    p.add_argument("--lora-alpha", type=float, default=d.lora_alpha, help="LoRA alpha (default %(default)s)")
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (default %(default)s)")
    p.add_argument("--epochs", type=float, default=None, help="passes over the examples (overrides --steps)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step (default %(default)s)")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per step (default %(default)s)")
    p.add_argument("--lr", default="auto", help="peak learning rate, or auto = 0.32 / decoder hidden size (default auto)")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--prefix-pairs", type=int, default=d.prefix_pairs,
                   help="(audio prefix, proportional target prefix) pairs per utterance (default %(default)s)")
    p.add_argument("--max-target-tokens", type=int, default=d.max_target_tokens)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in OUT.partial")
    p.add_argument("--force", action="store_true", help="replace an existing OUT (and OUT.partial)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="autocast to bfloat16 (default: on CUDA; --bf16 on CPU too)")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute layer activations in backward: less memory, same loss, slower steps")
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="log the loss of --eval (or the training manifest) every N steps (train_log.jsonl: eval_loss)")
    p.add_argument("--e2e-arch", default=None, metavar="NAME",
                   help="start from a fresh random Fun-ASR-Nano of this architecture (tiny, small) instead of the "
                        "profile's weights; needs --train encoder,adaptor,decoder")
    p.add_argument("--init-decoder", default=None, metavar="DIR",
                   help="start the decoder from this Qwen3 model of the same shape (e.g. a `--task mt` model's DIR/model)")
    p.add_argument("--prune-vocab", action="store_true",
                   help="train the decoder on the tokens the data uses (the saved model keeps the full vocabulary)")
    p.add_argument("--ctc-weight", type=float, default=d.ctc_weight, metavar="W",
                   help="weight of an auxiliary CTC loss teaching the encoder the source transcript (the manifest's "
                        "`source` field; default %(default)s: none)")
    p.add_argument("--transcribe", action="store_true",
                   help="each utterance also trains the transcribe task on its transcript (the manifest's `source`)")
    p.add_argument("--ctc-on", choices=("encoder", "adaptor", "both"), default=d.ctc_on,
                   help="--ctc-weight on the encoder output (own classifier over transcript units) or on the adaptor "
                        "output (the decoder's embedding of the transcript's tokens as classifier), or both (default %(default)s)")
    p.add_argument("--json", action="store_true", help="no progress bar; the summary as one JSON line")
    p.add_argument("--task", choices=("e2e", "mt"), default="e2e",
                   help="e2e: the speech model (default); mt: the simul path's text decoder on source/reference "
                        "text (streamst/training/text_mt.py; uses --steps, --batch-size, --lr, --prefix-pairs, --seed)")
    p.add_argument("--mt-arch", default=None, metavar="HxL",
                   help="--task mt: train a fresh random decoder of hidden H and L layers (default: the profile's mt model)")
    p.add_argument("--source-lm", type=float, default=0.0, metavar="F",
                   help="--task mt: source-continuation rows per pair (plain source text, the prompt the "
                        "reorder-aware policy samples continuations under; default %(default)s)")
    p.add_argument("--eval-limit", type=int, default=200, help="--task mt: pairs of the eval manifest decoded at the end")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace, device: str | None = None) -> TrainConfig:
    try:
        lr = None if str(args.lr) == "auto" else float(args.lr)
    except ValueError as e:
        raise UserError(f"--lr takes a number or auto, got {args.lr!r}") from e
    try:
        return TrainConfig(
            train=parse_parts(args.train), lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size,
            grad_accum=args.grad_accum, lr=lr, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
            prefix_pairs=args.prefix_pairs, max_target_tokens=args.max_target_tokens, seed=args.seed,
            checkpoint_every=args.checkpoint_every, device=device or args.device, bf16=args.bf16,
            grad_checkpointing=args.grad_checkpointing, eval_every=args.eval_every,
            arch=args.e2e_arch, init_decoder=args.init_decoder, prune_vocab=args.prune_vocab, ctc_weight=args.ctc_weight,
            ctc_on=args.ctc_on, transcribe=args.transcribe,
        )
    except ValueError as e:
        raise UserError(str(e)) from e


def run(args: argparse.Namespace) -> int:
    if args.task == "mt":
        return _run_mt(args)
    from streamst.training import distributed, recipe

    world, device = distributed.init_from_env(args.device)  # torchrun: join its process group
    try:
        config = config_from_args(args, device)
        plan = recipe.plan(args.manifest, args.profile, args.out, config, eval_manifest=args.eval,
                           resume=args.resume, force=args.force)
        world.barrier()  # every rank has checked the output folder before rank 0 creates DIR.partial

        def log(msg: str) -> None:
            print(f"streamst train: {msg}", file=sys.stderr, flush=True)

        try:
            result = recipe.run(plan, config, resume=args.resume, progress=not args.json, log=log, world=world)
        except KeyboardInterrupt:
            if world.main:
                print(f"streamst train: interrupted; the last checkpoint is in {plan.partial} "
                      f"(continue with the same command plus --resume)", file=sys.stderr)
            return 130
    finally:
        distributed.shutdown(world)
    if result is None:  # a rank other than 0: rank 0 reports
        return 0
    summary = result.summary()
    _report(summary, args.json, "utterances", model=str(result.model), profile=str(result.profile))
    return 0


def _report(summary: dict, as_json: bool, items: str, *, profile: str, model: str | None = None) -> None:
    """The run's summary: one JSON line, or lines for people (both training tasks)."""
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    drop = f" ({summary['loss_drop']:.0%} lower)" if "loss_drop" in summary else ""
    print(f"trained {summary['steps']} steps in {summary['train_seconds']} s: loss {summary['loss_first']} -> "
          f"{summary['loss_last']}{drop}")
    print(f"offline greedy decoding of {summary['eval']['n']} {items}: chrF {summary['eval']['chrF']}")
    if model is not None:
        print(f"model: {model}")
    print(f"use it: --profile {profile}")


def _run_mt(args: argparse.Namespace) -> int:
    import os

    from streamst.training import text_mt

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UserError("--task mt trains in one process; run it without torchrun")

    try:
        lr = None if str(args.lr) == "auto" else float(args.lr)
        config = text_mt.TextMTConfig(steps=args.steps, batch_size=args.batch_size, lr=lr,
                                      warmup_steps=args.warmup_steps, prefix_pairs=args.prefix_pairs, seed=args.seed,
                                      source_lm=args.source_lm, arch=text_mt.parse_arch(args.mt_arch), eval_limit=args.eval_limit)
    except ValueError as e:
        raise UserError(str(e)) from e
    summary = text_mt.train(args.manifest, args.profile, args.out, config, eval_manifest=args.eval, force=args.force,
                            log=lambda m: print(f"streamst train: {m}", file=sys.stderr, flush=True))
    _report(summary, args.json, "pairs", profile=str(summary["profile"]))
    return 0
