"""Options of ``streamst train``: one frozen dataclass, mapped from argparse at the CLI edge.

The defaults are the recipe that proves learning on the tiny profile in minutes on two CPU
cores (``docs/training.md``); for real data pass ``--epochs`` (and keep ``--lr auto``, which
scales with the decoder's width).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PARTS: tuple[str, ...] = ("encoder", "adaptor", "decoder")
# Adam learning rate per unit of decoder width: lr = LR_WIDTH / hidden_size ("auto"), the
# 1/width scaling of muP for hidden weights. 5e-3 for the tiny model (hidden 64), 3.1e-4 for
# Qwen3-0.6B (hidden 1024), in the range LoRA recipes use for a model of that size.
LR_WIDTH = 0.32


@dataclass(frozen=True)
class TrainConfig:
    """What is trained and how. Fields marked (*) change the result; resuming checks them."""

    train: tuple[str, ...] = ("adaptor", "decoder")  # (*) parts that learn; the rest is frozen
    lora_rank: int = 16  # (*) LoRA rank on the decoder's linear layers; 0: full fine-tune of the decoder
    lora_alpha: float = 32.0  # (*) LoRA scale alpha / rank = 2
    lora_dropout: float = 0.0  # (*)
    steps: int = 300  # (*) optimiser steps (ignored when epochs is set)
    epochs: float | None = None  # (*) passes over the examples; sets steps = ceil(epochs * examples / batch)
    batch_size: int = 4  # (*) examples per optimiser step (split into micro-batches by grad_accum)
    grad_accum: int = 1  # (*) micro-batches per step (batch_size must be a multiple)
    lr: float | None = None  # (*) peak learning rate; None ("auto"): LR_WIDTH / decoder hidden size
    warmup_steps: int = 10  # (*) linear warm-up (at most a quarter of the run), then linear decay to 0
    weight_decay: float = 0.0  # (*) AdamW weight decay
    max_grad_norm: float = 1.0  # (*) gradient clipping
    prefix_pairs: int = 2  # (*) extra (audio prefix, proportional target prefix) pairs per utterance
    seed: int = 0  # (*) initialisation of the adapters, example order, prefix cut points
    max_target_tokens: int = 256  # (*) longer references are cut (and then get no <|im_end|>)
    checkpoint_every: int = 50  # steps between checkpoints (and at the last step)
    cache_mb: int = 2048  # features / frozen-encoder outputs kept in memory up to this size
    eval_max_new_tokens: int = 128  # budget of the final greedy evaluation
    device: str = "cpu"
    bf16: bool | None = None  # (*) autocast to bfloat16 (None: on CUDA only); weights stay float32
    grad_checkpointing: bool = False  # recompute layer activations in backward (less memory, same result)
    eval_every: int = 0  # steps between eval-set losses logged during training (0: none)
    arch: str | None = None  # (*) start from a fresh random model of this architecture (builders ARCHS), not the profile's weights
    prune_vocab: bool = False  # (*) train the decoder on the tokens the data uses (training/vocab.py)
    init_decoder: str | None = None  # (*) a Qwen3 causal-LM directory of the decoder's shape whose weights start the decoder
    transcribe: bool = False  # (*) each utterance also trains the transcribe task on its `source` (data.build_examples)
    ctc_on: str = "encoder"  # (*) CTC on the encoder output (own classifier), the adaptor output (the decoder's embedding as classifier) or both
    ctc_weight: float = 0.0  # (*) weight of the auxiliary CTC loss of the encoder on the source transcript (training/ctc.py)

    def __post_init__(self) -> None:
        problems = []
        unknown = [p for p in self.train if p not in PARTS]
        if unknown or not self.train:
            problems.append(f"--train takes a comma-separated subset of {','.join(PARTS)}, got {','.join(self.train)!r}")
        if self.lora_rank < 0:
            problems.append(f"--lora-rank must be >= 0 (0: full fine-tune), got {self.lora_rank}")
        if self.steps < 1:
            problems.append(f"--steps must be >= 1, got {self.steps}")
        if self.epochs is not None and not self.epochs > 0:
            problems.append(f"--epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.batch_size % self.grad_accum:
            problems.append(f"--batch-size ({self.batch_size}) must be a positive multiple of --grad-accum ({self.grad_accum})")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"--lr must be > 0, got {self.lr}")
        if self.prefix_pairs < 0:
            problems.append(f"--prefix-pairs must be >= 0, got {self.prefix_pairs}")
        if self.checkpoint_every < 1:
            problems.append(f"--checkpoint-every must be >= 1, got {self.checkpoint_every}")
        if self.eval_every < 0:
            problems.append(f"--eval-every must be >= 0, got {self.eval_every}")
        if self.ctc_on not in ("encoder", "adaptor", "both"):
            problems.append(f"--ctc-on takes encoder, adaptor or both, got {self.ctc_on!r}")
        if not self.ctc_weight >= 0:
            problems.append(f"--ctc-weight must be >= 0, got {self.ctc_weight}")
        needs = {"encoder": ("encoder",), "adaptor": ("adaptor",), "both": ("encoder", "adaptor")}.get(self.ctc_on, ())
        if self.ctc_weight > 0 and not set(needs) <= set(self.train):
            problems.append(f"--ctc-weight with --ctc-on {self.ctc_on} trains the {' and '.join(needs)}: add "
                            f"{','.join(needs)} to --train")
        if self.arch is not None and not ({"encoder", "adaptor"} <= set(self.train)
                                          and ("decoder" in self.train or self.init_decoder)):
            problems.append("--e2e-arch starts from random weights: every part must learn (--train "
                            "encoder,adaptor,decoder; the decoder may stay frozen with --init-decoder)")
        if self.max_target_tokens < 1:
            problems.append(f"--max-target-tokens must be >= 1, got {self.max_target_tokens}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.grad_accum

    def total_steps(self, n_examples: int) -> int:
        if self.epochs is None:
            return self.steps
        return max(1, -(-int(self.epochs * n_examples) // self.batch_size))

    def peak_lr(self, hidden_size: int) -> float:
        return self.lr if self.lr is not None else LR_WIDTH / hidden_size

    def lr_at(self, step: int, total: int, hidden_size: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): warm-up, then linear decay."""
        peak = self.peak_lr(hidden_size)
        warmup = min(self.warmup_steps, total // 4)  # a short run is mostly not warm-up
        if step < warmup:
            return peak * (step + 1) / (warmup + 1)
        span = max(1, total - warmup)
        return peak * max(0.0, 1.0 - (step - warmup) / span)

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change the result (a resumed run must match them)."""
        skip = {"checkpoint_every", "cache_mb", "eval_max_new_tokens", "device", "grad_checkpointing", "eval_every"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def parse_parts(text: str) -> tuple[str, ...]:
    """``"adaptor,decoder"`` -> ``("adaptor", "decoder")`` (order and duplicates normalised)."""
    parts = {p.strip() for p in text.split(",") if p.strip()}
    return tuple(p for p in PARTS if p in parts) + tuple(sorted(parts - set(PARTS)))
