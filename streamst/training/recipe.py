"""One training run, start to finish: validate, train, save, evaluate, publish.

Everything that can be wrong with the input (manifest lines, audio, languages, the profile,
its e2e model, the output folder, the options) is checked before anything is written. The
run then works in ``DIR.partial`` (checkpoints, log) and renames it to ``DIR`` only once the
model, profile, plot and evaluation are all written: ``DIR`` is complete or absent. An
interrupted run leaves ``DIR.partial`` with its last checkpoint; ``--resume`` continues it.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamst.errors import UserError
from streamst.profiles import Profile, load_profile
from streamst.training.artifacts import evaluate_offline, plot_loss, save_model, trained_profile, write_json
from streamst.training.config import TrainConfig
from streamst.training.ctc import CtcUnits
from streamst.training.data import ExampleSet, TrainItem, build_examples, read_train_manifest
from streamst.training.distributed import SINGLE, World
from streamst.training.vocab import PrunedVocab
from streamst.training.trainer import CHECKPOINT, LOG, NanoTrainer, StepRecord, fingerprint, read_log, require_peft, truncate_log

MODEL_DIR = "model"
PROFILE = "profile.json"
EVAL = "eval.json"
LOSS_PLOT = "loss.png"
E2E_KINDS = ("fun-asr-nano",)
FINAL_LOSS_EXAMPLES = 1000  # the summary's final_loss: over at most this many training examples


@dataclass(frozen=True)
class TrainResult:
    out: Path
    profile: Path
    model: Path
    steps: int
    examples: int
    trainable_params: int
    loss_first: float
    loss_last: float
    final_loss: float  # over (at most FINAL_LOSS_EXAMPLES of) the training examples after training, eval mode
    train_seconds: float
    evaluation: dict[str, Any] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "type": "summary", "out": str(self.out), "profile": str(self.profile), "model": str(self.model),
            "steps": self.steps, "examples": self.examples, "trainable_params": self.trainable_params,
            "loss_first": round(self.loss_first, 4), "loss_last": round(self.loss_last, 4),
            "loss_drop": round(1 - self.loss_last / self.loss_first, 4) if self.loss_first else None,
            "final_loss": round(self.final_loss, 4), "train_seconds": round(self.train_seconds, 1),
            "eval": {"n": ev["n"], "chrF": ev["chrF"], "directions": ev["directions"]},
        }


@dataclass(frozen=True)
class Plan:
    """Validated inputs of a run."""

    items: list[TrainItem]
    eval_items: list[TrainItem]
    eval_manifest: Path
    profile: Profile
    source: str  # the base e2e model as the loader takes it
    out: Path
    partial: Path
    data_id: dict[str, Any]


def plan(manifest: str | Path, profile: str, out: str | Path, config: TrainConfig, *,
         eval_manifest: str | Path | None = None, resume: bool = False, force: bool = False) -> Plan:
    """Check everything; raise one UserError line on the first problem. Writes nothing."""
    items = read_train_manifest(manifest)
    ev_path = Path(eval_manifest) if eval_manifest is not None else Path(manifest)
    eval_items = read_train_manifest(ev_path) if eval_manifest is not None else items
    prof = load_profile(profile)
    spec = prof.e2e
    if spec is None:
        raise UserError(f"profile '{prof.name}' has no e2e model to train (add an `e2e` entry, e.g. "
                        '{"kind": "fun-asr-nano", "source": "FunAudioLLM/Fun-ASR-Nano-2512-hf"}, or use --profile tiny)')
    if spec.kind not in E2E_KINDS:
        raise UserError(f"profile '{prof.name}': cannot train an e2e model of kind {spec.kind!r} (trainable: {', '.join(E2E_KINDS)})")
    source = prof.require(spec)
    if config.arch is not None:
        from streamst.builders.funasr_nano import ARCHS

        if config.arch not in ARCHS:
            raise UserError(f"--e2e-arch: unknown architecture {config.arch!r} (known: {', '.join(ARCHS)})")
    if config.ctc_weight > 0 or config.transcribe:
        lacking = next((it for it in items if not it.source), None)
        if lacking is not None:
            raise UserError(f"{manifest}:{lacking.line}: --ctc-weight and --transcribe need each utterance's transcript in a "
                            "`source` field")
    if "decoder" in config.train and config.lora_rank > 0:
        require_peft()
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if out.exists() and not force:
        raise UserError(f"{out} already exists; choose another --out, or --force to replace it")
    if resume:
        if not (partial / CHECKPOINT).is_file():
            raise UserError(f"nothing to resume: {partial / CHECKPOINT} not found (start without --resume)")
    elif partial.exists() and not force:
        raise UserError(f"{partial} holds an interrupted run: continue it with --resume, or --force to start afresh")
    digest = hashlib.sha256(Path(manifest).read_bytes()).hexdigest()[:16]
    data_id = {"manifest": str(Path(manifest).resolve()), "manifest_sha256": digest, "base": source}
    return Plan(items, eval_items, ev_path, prof, source, out, partial, data_id)


def run(p: Plan, config: TrainConfig, *, resume: bool = False, progress: bool = False,
        log: Callable[[str], None] = lambda s: None,
        on_step: Callable[[StepRecord], None] = lambda r: None, world: World = SINGLE) -> TrainResult | None:
    """Train, save, evaluate and publish ``p.out``. ``on_step`` sees every step (tests use it to
    interrupt a run the way Ctrl-C does). Under torchrun (``world``) every rank trains its share
    and rank 0 alone writes; the other ranks return None after the last step."""
    if not world.main:
        log, progress = (lambda s: None), False
    from transformers import AutoConfig

    from streamst.e2e.funasr_nano import FunAsrNanoSpeech, NanoOptions
    from streamst.hf_load import resolve_source

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    source = p.source if config.arch is None else str(fresh_model(config.arch, config.seed, log))
    log(f"loading {source}")
    speech = FunAsrNanoSpeech(source, NanoOptions(device=config.device, dtype="float32"))
    save_dtype = getattr(AutoConfig.from_pretrained(resolve_source(speech.path, what="Fun-ASR-Nano model", hint="")),
                         "dtype", None) or torch.float32
    if isinstance(save_dtype, str):
        save_dtype = getattr(torch, save_dtype)
    examples = build_examples(p.items, config.prefix_pairs, config.seed, transcribe=config.transcribe)
    units = None
    if config.ctc_weight > 0:  # on the adaptor: the decoder's own tokens of the transcripts
        units = CtcUnits([(it.source, it.src_lang) for it in p.items],
                         tokenizer=speech.tokenizer if config.ctc_on != "encoder" else None)
    data = ExampleSet(speech, p.items, examples, max_target_tokens=config.max_target_tokens,
                      im_end_id=_im_end_id(speech), cache_mb=config.cache_mb, units=units)
    eval_data = None
    if config.eval_every:  # whole eval utterances (no prefix pairs), their loss every eval_every steps
        eval_data = ExampleSet(speech, p.eval_items, build_examples(p.eval_items, 0, config.seed),
                               max_target_tokens=config.max_target_tokens, im_end_id=_im_end_id(speech),
                               cache_mb=config.cache_mb)
    vocab = None
    if config.prune_vocab:  # the eval set's tokens too, so its loss is defined
        ids = data.token_ids() | (eval_data.token_ids() if eval_data is not None else set())
        ids |= set(units.tokens) if units is not None else set()
        vocab = PrunedVocab(ids, int(speech.model.config.text_config.vocab_size))
        log(f"pruned vocabulary: {len(vocab)} of {vocab.full_size} tokens")
    if config.init_decoder:
        log(f"decoder weights from {config.init_decoder}")
        load_decoder(speech.model, config.init_decoder)
    trainer = NanoTrainer(speech.model, config, world, vocab=vocab, ctc_classes=len(units) if units is not None else 0,
                          ctc_tokens=units.tokens if units is not None else None)
    if trainer.encoder_frozen:  # frozen encoder: its outputs are computed once per example
        data.encoder = trainer.frozen_encoder
        if eval_data is not None:
            eval_data.encoder = trainer.frozen_encoder
    total = config.total_steps(len(data))
    fp = fingerprint(config, p.data_id)

    # -- from here on, files are written (in DIR.partial only) --
    start, seconds = 0, 0.0
    if resume:
        start, seconds = trainer.load_checkpoint(p.partial / CHECKPOINT, fp)
        world.barrier()  # every rank has read the checkpoint before rank 0 truncates or rewrites
        if world.main:
            truncate_log(p.partial / LOG, start)
        log(f"resuming {p.partial} at step {start} of {total}")
    elif world.main:
        if p.partial.exists():
            shutil.rmtree(p.partial)
        p.partial.mkdir(parents=True)
    if world.distributed:
        log(f"data-parallel over {world.size} processes: {config.batch_size} examples a step, "
            f"at most {-(-config.batch_size // world.size)} per process")
    n_prefix = sum(not e.whole for e in examples)
    n_transcribe = sum(e.task == "transcribe" for e in examples)
    log(f"training {trainer.trainable_count:,} parameters ({'+'.join(config.train)}, "
        f"{'LoRA rank ' + str(config.lora_rank) if config.lora_rank else 'full'} decoder) on {len(data)} examples "
        f"({len(p.items)} utterances + {n_prefix} prefix pairs{f' + {n_transcribe} transcriptions' if n_transcribe else ''}), "
        f"{total} steps, "
        f"lr {config.peak_lr(trainer.hidden):.3g}")
    bar = _progress(total, start, enabled=progress)
    try:
        def step(rec: StepRecord) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{rec.loss:.3f}", lr=f"{rec.lr:.2e}", refresh=False)
            if rec.eval_loss is not None:
                (bar.write if bar is not None else log)(f"step {rec.step}: eval loss {rec.eval_loss:.4f} "
                                                        f"(train {rec.loss:.4f})")
            on_step(rec)

        trainer.run(data, total=total, work=p.partial, start=start, seconds=seconds, fingerprint=fp, on_step=step,
                    eval_data=eval_data)
    finally:
        if bar is not None:
            bar.close()
    # every rank: its share; at most FINAL_LOSS_EXAMPLES examples spread over the set (a pass over
    # a large set's every example costs as much as a good part of the training)
    stride = max(1, len(data) // FINAL_LOSS_EXAMPLES)
    final_loss = trainer.mean_loss(data, list(range(0, len(data), stride))[:FINAL_LOSS_EXAMPLES])
    if not world.main:
        return None
    records = read_log(p.partial / LOG)
    n_trainable = trainer.trainable_count

    log("saving the merged model")
    model = trainer.merged()
    model_dir = p.partial / MODEL_DIR
    if model_dir.exists():
        shutil.rmtree(model_dir)
    save_model(model, speech.tokenizer, speech.path, model_dir, save_dtype)
    del model, trainer, speech, data
    how = f"trained from a random {config.arch} model" if config.arch else "fine-tuned"
    desc = (f"profile '{p.profile.name}' with its e2e model {how} by `streamst train` on {p.data_id['manifest']} "
            f"({total} steps, {'+'.join(config.train)}); the other models are the base profile's")
    write_json(p.partial / PROFILE, trained_profile(p.profile, p.out / MODEL_DIR, name=p.out.name, description=desc))
    plot_loss(records, p.partial / LOSS_PLOT, f"streamst train: {p.out.name}")

    log(f"evaluating on {p.eval_manifest} ({len(p.eval_items)} utterances, greedy offline decoding)")
    trained = FunAsrNanoSpeech(str(model_dir), NanoOptions(device=config.device))
    evaluation = {"manifest": str(p.eval_manifest.resolve()), **evaluate_offline(
        trained, p.eval_items, max_new_tokens=config.eval_max_new_tokens)}
    write_json(p.partial / EVAL, evaluation)
    (p.partial / CHECKPOINT).unlink(missing_ok=True)

    if p.out.exists():  # --force
        shutil.rmtree(p.out)
    p.partial.rename(p.out)
    return TrainResult(
        out=p.out, profile=p.out / PROFILE, model=p.out / MODEL_DIR, steps=total, examples=len(examples),
        trainable_params=n_trainable, loss_first=records[0]["loss"], loss_last=records[-1]["loss"],
        final_loss=final_loss, train_seconds=records[-1]["seconds"], evaluation=evaluation,
    )


def fresh_model(arch: str, seed: int, log: Callable[[str], None] = lambda s: None) -> Path:
    """A random-weight model of the architecture ``arch`` (``builders.funasr_nano.ARCHS``) and
    seed, built once into the models store (``train-init/``) and reused."""
    from streamst.builders.funasr_nano import ARCHS
    from streamst.profiles import build_model, models_dir

    dest = models_dir() / "store" / "train-init" / f"funasr-nano-{arch}-seed{seed}"
    if not (dest / "config.json").is_file():
        log(f"building a random {arch} Fun-ASR-Nano into {dest}")
        build_model(ARCHS[arch], dest, seed)
    return dest


SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
              "intermediate_size", "vocab_size")


def load_decoder(model, source: str) -> None:
    """Copy a Qwen3 causal LM's weights (e.g. a ``streamst train --task mt`` model) into the
    decoder of ``model`` (a ``FunAsrNanoForConditionalGeneration``); their shapes must match."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise UserError(f"--init-decoder {source}: not a model directory ({e})") from e
    ours = model.config.text_config
    diff = [f"{k} {getattr(cfg, k, None)} != {getattr(ours, k, None)}" for k in SHAPE_KEYS
            if getattr(cfg, k, None) != getattr(ours, k, None)]
    if getattr(cfg, "model_type", None) != getattr(ours, "model_type", None) or diff:
        raise UserError(f"--init-decoder {source}: its {cfg.model_type} decoder does not fit the e2e model's "
                        f"{ours.model_type} decoder ({'; '.join(diff) or 'model type'})")
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    missing, unexpected = model.model.language_model.load_state_dict(lm.model.state_dict(), strict=False)
    if missing or unexpected:
        raise UserError(f"--init-decoder {source}: weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr():
        with torch.no_grad():
            model.lm_head.weight.copy_(lm.lm_head.weight)


def _im_end_id(speech) -> int:
    ids = speech.tokenizer.convert_tokens_to_ids(["<|im_end|>"])
    if not ids or ids[0] is None or ids[0] == speech.tokenizer.unk_token_id:
        raise UserError(f"{speech.source}: its tokenizer has no <|im_end|> token (not a ChatML Qwen tokenizer)")
    return int(ids[0])


def _progress(total: int, start: int, *, enabled: bool):
    """A tqdm bar on stderr when it is a terminal; None otherwise (or with --json)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", desc="train", dynamic_ncols=True, file=sys.stderr)
