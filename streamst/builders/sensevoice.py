"""Offline SenseVoiceSmall directories in FunASR's real format, with random weights.

A directory holds ``config.yaml`` (model class ``SenseVoiceSmall``, encoder
``SenseVoiceEncoderSmall``, ``WavFrontend`` with LFR 7/6, ``SentencepiecesTokenizer``),
``model.pt`` (a state dict), ``am.mvn`` (Kaldi-nnet CMVN text) and ``bpe.model``
(a SentencePiece model). ``funasr.AutoModel(model=DIR)`` loads it exactly as it loads the
downloaded ``iic/SenseVoiceSmall``.

The SentencePiece model is written directly as a protobuf (no training), so the real-size
vocabulary (25,055 pieces, with SenseVoice's ``<|zh|>``-style tags) builds in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

# SenseVoice's rich-transcription tags (language, emotion, event, text norm).
TAGS = (
    ["<|zh|>", "<|en|>", "<|yue|>", "<|ja|>", "<|ko|>", "<|nospeech|>"]
    + ["<|HAPPY|>", "<|SAD|>", "<|ANGRY|>", "<|NEUTRAL|>", "<|EMO_UNKNOWN|>"]
    + ["<|Speech|>", "<|BGM|>", "<|Applause|>", "<|Laughter|>", "<|Event_UNK|>"]
    + ["<|withitn|>", "<|woitn|>"]
)

REAL_VOCAB = 25055

_FRONTEND = {
    "fs": 16000,
    "window": "hamming",
    "n_mels": 80,
    "frame_length": 25,
    "frame_shift": 10,
    "lfr_m": 7,
    "lfr_n": 6,
    "cmvn_file": None,
}

_REAL_ENCODER = {
    "output_size": 512,
    "attention_heads": 4,
    "linear_units": 2048,
    "num_blocks": 50,
    "tp_blocks": 20,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.1,
    "input_layer": "pe",
    "pos_enc_class": "SinusoidalPositionEncoder",
    "normalize_before": True,
    "kernel_size": 11,
    "sanm_shfit": 0,
    "selfattention_layer_type": "sanm",
}

_TINY_ENCODER = dict(_REAL_ENCODER, output_size=64, linear_units=128, num_blocks=2, tp_blocks=1)


def _pieces(vocab_size: int) -> list[str]:
    """Deterministic piece inventory: specials, tags, common CJK, Latin letters and words."""
    pieces = ["<unk>", "<s>", "</s>"] + TAGS
    pieces += ["▁"] + [f"▁{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz")
    pieces += [str(d) for d in range(10)]
    words = [
        "the", "of", "and", "to", "in", "is", "that", "it", "for", "on", "with", "as", "this",
        "year", "are", "be", "at", "by", "was", "hello", "world", "speech", "translation",
    ]
    pieces += [f"▁{w}" for w in words]
    seen = set(pieces)
    cp = 0x4E00  # CJK unified ideographs, in code point order (covers common characters)
    while len(pieces) < vocab_size and cp <= 0x9FFF:
        ch = chr(cp)
        if ch not in seen:
            pieces.append(ch)
            seen.add(ch)
        cp += 1
    i = 0
    while len(pieces) < vocab_size:  # pad with synthetic Latin pieces for the real size
        pieces.append(f"▁x{i}")
        i += 1
    return pieces[:vocab_size]


def write_bpe_model(path: Path, vocab_size: int) -> None:
    """Write a SentencePiece (unigram) model with ``vocab_size`` pieces to ``path``."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    m.trainer_spec.vocab_size = vocab_size
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id = 0, 1, 2
    m.trainer_spec.pad_id = -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.escape_whitespaces = True
    for i, piece in enumerate(_pieces(vocab_size)):
        p = m.pieces.add()
        p.piece = piece
        if i == 0:
            p.type = pb.ModelProto.SentencePiece.UNKNOWN
        elif i < 3:
            p.type = pb.ModelProto.SentencePiece.CONTROL
        elif piece in TAGS:
            p.type = pb.ModelProto.SentencePiece.USER_DEFINED
        else:
            p.type = pb.ModelProto.SentencePiece.NORMAL
            p.score = -float(len(piece)) * 0.1 - i * 1e-6
    path.write_bytes(m.SerializeToString())


def write_am_mvn(path: Path, dim: int, rng: np.random.Generator) -> None:
    """Kaldi nnet1 text CMVN as FunASR reads it: ``<AddShift>`` means, ``<Rescale>`` scales."""
    shift = -(8.0 + rng.standard_normal(dim) * 2.0)  # typical log-mel means are around 8-16
    scale = 0.25 + rng.random(dim) * 0.1
    fmt = lambda v: " ".join(f"{x:.6f}" for x in v)  # noqa: E731
    path.write_text(
        "<Nnet>\n"
        f"<Splice> {dim} {dim}\n[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {fmt(shift)} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {fmt(scale)} ]\n"
        "</Nnet>\n"
    )


def _config(encoder_conf: dict) -> dict:
    return {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": encoder_conf,
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": dict(_FRONTEND),
    }


def build(path: Path, encoder_conf: dict, vocab_size: int, seed: int) -> None:
    """Write a complete SenseVoiceSmall directory with random weights (fixed ``seed``)."""
    from funasr.models.sense_voice.model import SenseVoiceSmall

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_bpe_model(path / "bpe.model", vocab_size)
    write_am_mvn(path / "am.mvn", _FRONTEND["n_mels"] * _FRONTEND["lfr_m"], rng)
    cfg = _config(encoder_conf)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    torch.manual_seed(seed)
    model = SenseVoiceSmall(
        encoder=cfg["encoder"],
        encoder_conf=encoder_conf,
        input_size=_FRONTEND["n_mels"] * _FRONTEND["lfr_m"],
        vocab_size=vocab_size,
        **cfg["model_conf"],
    )
    torch.save(model.state_dict(), path / "model.pt")


def build_tiny(path: Path, seed: int = 0) -> None:
    """Tiny SenseVoice (2+1 blocks, 64 dims, 2,000 pieces): loads and runs in milliseconds."""
    build(path, _TINY_ENCODER, 2000, seed)


def build_real(path: Path, seed: int = 0) -> None:
    """SenseVoiceSmall at the real size: 50+20 SAN-M blocks of 512, 25,055 pieces (~234M)."""
    build(path, _REAL_ENCODER, REAL_VOCAB, seed)


BUILDERS = {"sensevoice-tiny": build_tiny, "sensevoice-real": build_real}
