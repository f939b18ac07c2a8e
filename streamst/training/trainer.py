"""The training loop for Fun-ASR-Nano: which parts learn, the loss, checkpoints and resume.

Parts (``TrainConfig.train``): ``encoder`` (SenseVoice SAN-M audio tower), ``adaptor`` (the
projector + adaptor Transformer), ``decoder`` (Qwen3: LoRA adapters from ``peft`` on every
attention and MLP projection plus the final RMSNorm, or, with ``lora_rank=0``, all of its weights including the
tied embedding). Frozen parts run in eval mode; a frozen encoder's outputs are computed once
per example (:class:`~streamst.training.data.ExampleSet` caches them).

The loss is computed as ``FunAsrNanoForConditionalGeneration.forward(labels=...)`` computes
it (audio placeholders replaced by the projected speech, next-token cross-entropy over the
positions whose label is not ``-100``), except that the vocabulary projection runs only at
target positions (the prompt and audio carry no loss, and the 152k-way projection is most of
the cost); ``tests/test_train.py`` checks the two agree. With a :class:`PrunedVocab` the decoder's
tied embedding holds only the data's tokens while training (the same full-vocabulary loss;
``merged()`` scatters it back), and with ``ctc_weight`` a training-only :class:`CtcHead` adds
the encoder's CTC loss on the source transcript (``tests/test_train_aux.py``).

A checkpoint (``checkpoint.pt``: trainable weights, optimiser state, RNG, step, elapsed
seconds, and the fingerprint of config + data + base model) is written to a temporary file and
renamed, so an interrupt at any moment leaves the previous one intact. Batches are a pure
function of (seed, step) (:func:`~streamst.training.data.batch_indices`), so a resumed run
continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from streamst.errors import UserError
from streamst.training.config import TrainConfig
from streamst.training.ctc import CtcHead
from streamst.training.data import IGNORE, Batch, ExampleSet, batch_indices
from streamst.training.distributed import SINGLE, World
from streamst.training.vocab import PrunedVocab

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"
# Decoder linear layers that get LoRA adapters (Qwen3 attention and MLP projections).
LORA_TARGETS = r".*\.language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"


def require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError as e:
        raise UserError("LoRA training needs peft: pip install 'streamst[train]' (or --lora-rank 0 for a full "
                        "fine-tune of the decoder)") from e


@dataclass
class StepRecord:
    step: int  # optimiser steps done (1-based)
    loss: float  # mean target-token cross-entropy of the step's batch
    lr: float
    seconds: float  # training wall time so far (summed over resumed runs)
    tokens: int  # target tokens in the step's batch
    eval_loss: float | None = None  # mean target-token cross-entropy of the eval set (--eval-every steps)
    ctc_loss: float | None = None  # auxiliary CTC loss per transcript unit of the step's batch (--ctc-weight)

    def to_dict(self) -> dict[str, Any]:
        out = {"step": self.step, "loss": round(self.loss, 6), "lr": self.lr, "seconds": round(self.seconds, 3),
               "tokens": self.tokens}
        if self.eval_loss is not None:
            out["eval_loss"] = round(self.eval_loss, 6)
        if self.ctc_loss is not None:
            out["ctc_loss"] = round(self.ctc_loss, 6)
        return out


class NanoTrainer:
    """Owns the model being trained (a loaded ``FunAsrNanoForConditionalGeneration``), its
    trainable parameters and optimiser. Not thread-safe; one per training run (per process
    under torchrun: ``world``, see :mod:`~streamst.training.distributed`)."""

    def __init__(self, model, config: TrainConfig, world: World = SINGLE, *, vocab: PrunedVocab | None = None,
                 ctc_classes: int = 0, ctc_tokens: list[int] | None = None) -> None:
        self.config = config
        self.world = world
        self.parts = set(config.train)
        self.hidden = int(model.config.text_config.hidden_size)
        self.audio_token_id = int(model.config.audio_token_id)
        self.peft_model = None
        self.vocab = vocab  # pruned decoder vocabulary (training/vocab.py), expanded back by merged()
        model.float()  # master weights in float32 (bf16 is autocast, see TrainConfig.bf16)
        for p in model.parameters():
            p.requires_grad_(False)
        if vocab is not None:
            vocab.shrink(model)
        if "decoder" in self.parts and config.lora_rank > 0:
            require_peft()
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(config.seed)  # LoRA A matrices are drawn from the global RNG
            lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=LORA_TARGETS, bias="none")
            self.peft_model = get_peft_model(model, lora)
            model = self.peft_model.get_base_model()  # the same modules, adapters injected
        self.model = model
        core = model.model  # FunAsrNanoModel
        self.core = core
        groups = {"encoder": [core.audio_tower], "adaptor": [core.multi_modal_projector], "decoder": []}
        if config.lora_rank == 0:
            groups["decoder"] = [core.language_model, model.lm_head]
        else:  # LoRA, plus the final RMSNorm (hidden-size weights) so output logits can sharpen
            groups["decoder"] = [core.language_model.norm]
        for part, modules in groups.items():
            if part in self.parts:
                for m in modules:
                    for p in m.parameters():
                        p.requires_grad_(True)
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.ctc: CtcHead | None = None  # training-only head on the encoder output (training/ctc.py)
        self.ctc_tied: CtcHead | None = None  # on the adaptor output, the decoder's embedding as classifier
        if ctc_classes and config.ctc_weight > 0:
            dev = next(model.parameters()).device
            if config.ctc_on in ("encoder", "both"):
                self.ctc = CtcHead(int(model.config.audio_config.hidden_size), ctc_classes).to(dev)
                self.params += [(f"ctc_head.{n}", p) for n, p in self.ctc.named_parameters()]
            if config.ctc_on in ("adaptor", "both"):  # classifier tied to the decoder's embedding of the units' tokens
                ids = torch.tensor(ctc_tokens or [], dtype=torch.long)
                if vocab is not None:
                    ids = vocab.to_pruned(ids)
                ids = ids.to(dev)
                emb = core.get_input_embeddings()
                self.ctc_tied = CtcHead(self.hidden, ctc_classes, rows=lambda: emb.weight.index_select(0, ids)).to(dev)
                self.params += [(f"ctc_tied_head.{n}", p) for n, p in self.ctc_tied.named_parameters()]
        if not self.params:
            raise UserError("nothing to train: --train selected no parameters")
        world.broadcast([p for _, p in self.params])  # every rank starts from rank 0's weights
        if config.grad_checkpointing:  # recompute each layer's activations in backward (parts in train mode)
            enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.optimizer = torch.optim.AdamW([p for _, p in self.params], lr=config.peak_lr(self.hidden),
                                           weight_decay=config.weight_decay)
        dev = next(model.parameters()).device
        self.device = dev
        use_bf16 = config.bf16 if config.bf16 is not None else dev.type == "cuda"
        self._autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
        self.train_mode()

    # -- model ----------------------------------------------------------------------------
    @property
    def trainable_count(self) -> int:
        return sum(p.numel() for _, p in self.params)

    def train_mode(self) -> None:
        self.model.train()
        for head in (self.ctc, self.ctc_tied):
            if head is not None:
                head.train()
        if "encoder" not in self.parts:
            self.core.audio_tower.eval()
        if "adaptor" not in self.parts:
            self.core.multi_modal_projector.eval()
        if "decoder" not in self.parts:
            self.core.language_model.eval()

    @property
    def encoder_frozen(self) -> bool:
        return "encoder" not in self.parts

    @torch.no_grad()
    def frozen_encoder(self, features: torch.Tensor) -> torch.Tensor:
        """``(1, T, 560)`` LFR features -> ``(1, T, H)`` outputs of the (frozen, eval-mode) encoder."""
        mask = torch.ones(features.shape[:2], dtype=torch.long, device=self.device)
        with self._autocast():
            out = self.core.audio_tower(input_features=features.to(self.device), input_features_mask=mask)
        return out.last_hidden_state.float().cpu()

    def loss(self, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of the target tokens of a batch (prompt and audio carry none): their
        mean, or with ``reduction="sum"`` their sum (over the full vocabulary, pruned or not)."""
        return self.objective(batch, reduction=reduction, ctc=False)[0]

    def objective(self, batch: Batch, *, reduction: str = "sum", ctc: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(target-token cross-entropy, auxiliary CTC loss summed over the batch's transcripts or
        None, their units) of a batch."""
        dev = self.device
        ids, mask = batch.input_ids.to(dev), batch.audio_mask.to(dev)
        audio = batch.audio.to(dev)
        slots = ids == self.audio_token_id  # before any remapping
        labels = batch.labels.to(dev)
        if self.vocab is not None:
            ids = self.vocab.to_pruned(ids)
            labels = self.vocab.to_pruned(labels, ignore=IGNORE)
        aux, units = None, 0
        with self._autocast():
            if self.encoder_frozen:  # batch.audio holds encoder outputs
                encoded = audio
            else:  # get_audio_features' two steps, each output kept for the CTC heads
                encoded = self.core.audio_tower(input_features=audio, input_features_mask=mask).last_hidden_state
            projected = self.core.multi_modal_projector(encoded, mask)  # (B, T, hidden)
            speech = projected[mask.bool()]  # (sum T_i, hidden)
            if ctc and batch.ctc is not None:
                for head, frames in ((self.ctc, encoded), (self.ctc_tied, projected)):
                    if head is not None:
                        loss, units = head.loss(frames, mask.sum(1), batch.ctc)
                        aux = loss if aux is None else aux + loss
            embeds = self.core.get_input_embeddings()(ids)  # (B, L, hidden)
            embeds = embeds.masked_scatter(slots.unsqueeze(-1).expand_as(embeds), speech.to(embeds.dtype))
            hidden = self.core(inputs_embeds=embeds, attention_mask=batch.attention_mask.to(dev)).last_hidden_state
            shifted = labels[:, 1:]  # position t predicts token t + 1
            keep = shifted != IGNORE
            logits = self.model.lm_head(hidden[:, :-1][keep])  # (N, vocab): target positions only
        if self.vocab is not None:
            ce = self.vocab.cross_entropy(logits.float(), shifted[keep], reduction=reduction)
        else:
            ce = F.cross_entropy(logits.float(), shifted[keep], reduction=reduction)
        return ce, aux, units

    # -- loop -----------------------------------------------------------------------------
    def run(self, data: ExampleSet, *, total: int, work: Path, start: int = 0, seconds: float = 0.0,
            fingerprint: str = "", on_step: Callable[[StepRecord], None] = lambda r: None,
            eval_data: ExampleSet | None = None) -> list[StepRecord]:
        """Optimiser steps ``start .. total-1``; appends each to ``work/train_log.jsonl`` and
        checkpoints every ``checkpoint_every`` steps and at the end (rank 0 writes). With
        ``eval_data`` and ``eval_every``, the eval set's loss every ``eval_every`` steps and at
        the end goes into that step's record.

        The step's loss is the target-token cross-entropy of the whole batch (summed over its
        micro-batches and the ranks' shares, divided by its target tokens), so 1 process and N
        processes on the same global batch compute the same loss and gradient."""
        cfg, world = self.config, self.world
        params = [p for _, p in self.params]
        micro = max(1, -(-cfg.micro_batch // world.size))  # per rank: grad_accum micro-batches a step
        records: list[StepRecord] = []
        log = open(work / LOG, "a", encoding="utf-8") if world.main else None
        try:
            t0 = time.perf_counter() - seconds
            for step in range(start, total):
                lr = cfg.lr_at(step, total, self.hidden)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                self.optimizer.zero_grad(set_to_none=True)
                indices = batch_indices(len(data), cfg.batch_size, step, cfg.seed)
                tokens = sum(len(data.target_ids(i)) for i in indices)  # the global batch's target tokens
                loss_sum, ctc_sum, ctc_units = 0.0, 0.0, 0
                for chunk in _chunks(world.share(indices), micro):
                    loss, aux, units = self.objective(data.batch(chunk))
                    total_loss = loss if aux is None else loss + cfg.ctc_weight * aux
                    (total_loss / tokens).backward()
                    loss_sum += float(loss.detach())
                    if aux is not None:
                        ctc_sum, ctc_units = ctc_sum + float(aux.detach()), ctc_units + units
                world.sum_grads(params)
                loss_sum, ctc_sum, ctc_units = world.sum([loss_sum, ctc_sum, float(ctc_units)])
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                rec = StepRecord(step + 1, loss_sum / tokens, lr, time.perf_counter() - t0, tokens,
                                 ctc_loss=ctc_sum / ctc_units if ctc_units else None)
                if eval_data is not None and cfg.eval_every and (rec.step % cfg.eval_every == 0 or rec.step == total):
                    rec.eval_loss = self.mean_loss(eval_data)
                if log is not None:
                    log.write(json.dumps(rec.to_dict()) + "\n")
                    log.flush()
                records.append(rec)
                if world.main and (rec.step % cfg.checkpoint_every == 0 or rec.step == total):
                    self.save_checkpoint(work / CHECKPOINT, rec.step, rec.seconds, fingerprint)
                on_step(rec)
        finally:
            if log is not None:
                log.close()
        return records

    @torch.no_grad()
    def mean_loss(self, data: ExampleSet, indices: list[int] | None = None) -> float:
        """Target-token cross-entropy over all examples (or ``indices``), in eval mode (no
        dropout); under torchrun each rank computes its share."""
        self.model.eval()
        try:
            total, count = 0.0, 0
            chosen = list(range(len(data))) if indices is None else indices
            for micro in _chunks(self.world.share(chosen), self.config.micro_batch):
                batch = data.batch(micro)
                total += float(self.loss(batch, reduction="sum"))
                count += batch.target_tokens
            total, count = self.world.sum([total, float(count)])
            return total / max(1.0, count)
        finally:
            self.train_mode()

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, path: Path, step: int, seconds: float, fingerprint: str) -> None:
        state = {
            "format": 1,
            "step": step,
            "seconds": seconds,
            "fingerprint": fingerprint,
            "trainable": {n: p.detach().cpu().clone() for n, p in self.params},
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: an interrupt leaves the previous checkpoint whole

    def load_checkpoint(self, path: Path, fingerprint: str) -> tuple[int, float]:
        """Restore weights, optimiser and RNG; return (steps done, seconds)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file
            raise UserError(f"{path}: not a usable checkpoint ({type(e).__name__}: {e})") from e
        if state.get("fingerprint") != fingerprint:
            raise UserError(f"{path} was written by a run with other settings, data or base model; resume with the "
                            "same command, or start afresh without --resume")
        params = dict(self.params)
        if set(state["trainable"]) != set(params):
            raise UserError(f"{path}: its trainable weights do not match this model")
        with torch.no_grad():
            for n, t in state["trainable"].items():
                params[n].copy_(t)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        return int(state["step"]), float(state["seconds"])

    def merged(self):
        """The trained model as a plain ``FunAsrNanoForConditionalGeneration`` (LoRA merged)."""
        if self.peft_model is not None:
            model = self.peft_model.merge_and_unload()
            self.peft_model = None
            self.model = model
        if self.vocab is not None:  # back to the full vocabulary (other tokens' rows zero)
            self.vocab.expand(self.model)
            self.vocab = None
        self.model.eval()
        return self.model


def fingerprint(config: TrainConfig, data: dict[str, Any]) -> str:
    return json.dumps({"config": config.fingerprint(), "data": data}, sort_keys=True, default=str)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_log(path: Path, steps: int) -> None:
    """Keep the log lines of steps ``<= steps`` (those after the checkpoint are redone)."""
    kept = [r for r in read_log(path) if r["step"] <= steps]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, path)


def _chunks(xs: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(xs), n):
        yield xs[i : i + n]
