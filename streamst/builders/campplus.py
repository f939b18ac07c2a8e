"""Build a CAM++ speaker-embedding directory in FunASR's format, offline.

The directory holds what ``funasr.AutoModel(model=DIR)`` reads for the hub model ``cam++``
(``iic/speech_campplus_sv_zh-cn_16k-common``): ``config.yaml`` (``model: CAMPPlus`` and its
``model_conf``) and ``model.pt`` (the state dict). FunASR's ``CAMPPlus`` computes its own
80-bin Kaldi fbank, so there is no frontend or CMVN file.

* ``campplus-real``: the real architecture and size (7.2M parameters, 192-dim embeddings)
  with seeded random weights: for cost figures only. Measured: random weights do not
  separate espeak-ng voices (every pair of utterances has cosine about 0.99, same voice or
  not), so it cannot label speakers.
* ``campplus-tiny``: a narrow CAM++ (same blocks, 0.4M parameters, 64-dim embeddings) whose
  embedding layer is TRAINED on synthetic espeak-ng voices by :mod:`streamst.builders.campplus_train`
  (about a minute on a small CPU, cached by content hash, so later builds take a second);
  its trunk keeps seeded random weights. ``speaker.json`` records the training figures and
  the calibrated new-speaker threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["BUILDERS", "REAL_CONF", "TINY_CONF", "build_real", "build_tiny", "write_dir"]

REAL_CONF: dict = {  # the hub model's values (3D-Speaker / FunASR campplus)
    "feat_dim": 80,
    "embedding_size": 192,
    "growth_rate": 32,
    "bn_size": 4,
    "init_channels": 128,
    "config_str": "batchnorm-relu",
    "memory_efficient": True,
    "output_level": "segment",
}
TINY_CONF: dict = {**REAL_CONF, "embedding_size": 64, "growth_rate": 8, "bn_size": 2, "init_channels": 32}


def write_dir(path: Path, conf: dict, state: dict[str, torch.Tensor], extra: dict | None = None) -> None:
    """``config.yaml`` + ``model.pt`` (+ ``speaker.json`` with ``extra``) at ``path``."""
    import yaml

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(state, path / "model.pt")
    with open(path / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump({"model": "CAMPPlus", "model_conf": dict(conf)}, f, sort_keys=False)
    if extra is not None:
        (path / "speaker.json").write_text(json.dumps(extra, indent=2) + "\n", encoding="utf-8")


def random_state(conf: dict, seed: int) -> dict[str, torch.Tensor]:
    """A seeded random CAM++ state dict (FunASR's own init)."""
    from funasr.models.campplus.model import CAMPPlus

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CAMPPlus(**conf)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def build_real(path: Path, seed: int = 0) -> None:
    """Real-size CAM++ with random weights (cost benchmarks; it does not tell voices apart)."""
    write_dir(path, REAL_CONF, random_state(REAL_CONF, seed))


def build_tiny(path: Path, seed: int = 0) -> None:
    """The tiny CAM++, trained on synthetic voices (cached by content hash). Without
    espeak-ng/sox it cannot be trained: the random model is written, marked untrained in
    ``speaker.json`` (loading it logs a warning; its labels mean nothing)."""
    from streamst.builders.campplus_train import TrainConfig, trained
    from streamst.tts import have_tts

    if not have_tts():
        write_dir(path, TINY_CONF, random_state(TINY_CONF, seed),
                  {"trained": False, "why": "espeak-ng and sox were missing when it was built"})
        return
    state, report = trained(TrainConfig(model_conf=tuple(sorted(TINY_CONF.items())), seed=seed))
    write_dir(path, TINY_CONF, state, {**report, "trained": True})


BUILDERS = {"campplus-tiny": build_tiny, "campplus-real": build_real}
