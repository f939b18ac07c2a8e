"""Build a tiny Kokoro text-to-speech directory in kokoro-onnx's real format, offline.

The layout of the released model files (``kokoro-v1.0.onnx`` + ``voices-v1.0.bin``, from
the kokoro-onnx releases page): an ONNX graph with inputs ``input_ids`` (phoneme ids),
``style`` (a (1, 256) voice vector) and ``speed``, outputs ``waveform`` (24 kHz) and
``duration``, and an ``.npz`` of voices, each a (510, 1, 256) table of style vectors by
phoneme count. The graph is hexgrad's own Kokoro architecture (``kokoro.model.KModel``:
ALBERT text encoder, prosody predictor, iSTFTNet decoder) exported with ``torch.onnx``
from the real ``config.json`` and vocabulary (the one kokoro-onnx ships), with only the
widths shrunk and the weights random (seeded): the audio is noise-like, every code path
of loading, phonemisation and inference is the real one. Needs the ``kokoro`` package
(model code only: ``pip install --no-deps kokoro loguru``) at build time, never at run time.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

__all__ = ["BUILDERS", "build_tiny", "MODEL_FILE", "VOICES_FILE", "VOICES"]

DURATION_LOGIT = -2.8  # 50 * sigmoid(-2.8) = 2.9 frames (72 ms) per phoneme
MODEL_FILE = "kokoro-v1.0.onnx"
VOICES_FILE = "voices-v1.0.bin"
# one voice of the real set per language Kokoro speaks (the first letter is the language)
VOICES = {"en": "af_heart", "ja": "jf_alpha", "zh": "zf_xiaobei", "es": "ef_dora", "fr": "ff_siwis",
          "it": "if_sara", "pt": "pf_dora"}


def real_config() -> dict:
    """Kokoro-82M's config.json as kokoro-onnx ships it (vocabulary included)."""
    spec = importlib.util.find_spec("kokoro_onnx")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("kokoro-onnx is not installed (pip install kokoro-onnx)")
    path = Path(next(iter(spec.submodule_search_locations))) / "config.json"
    return json.loads(path.read_text(encoding="utf-8"))


def tiny_config() -> dict:
    """The real config with the free widths shrunk (the decoder's 512/1024 channels are
    fixed in Kokoro's code, so ``hidden_dim`` and the generator's width stay)."""
    cfg = copy.deepcopy(real_config())
    cfg["n_layer"] = 1
    cfg["istftnet"]["resblock_kernel_sizes"] = [3]
    cfg["istftnet"]["resblock_dilation_sizes"] = [[1, 3, 5]]
    cfg["plbert"].update(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_hidden_layers=1)
    return cfg  # style_dim, n_token, vocab, the iSTFT hop and rates stay: the same I/O as the real model


def _kmodel():
    """``kokoro.model.KModel`` without running ``kokoro/__init__`` (which imports the G2P
    pipeline and its language packages, not needed to build a model)."""
    if "kokoro" not in sys.modules:
        spec = importlib.util.find_spec("kokoro")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("building a Kokoro model needs the kokoro package's model code: "
                              "pip install --no-deps kokoro loguru")
        pkg = types.ModuleType("kokoro")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["kokoro"] = pkg
    from kokoro.model import KModel, KModelForONNX

    return KModel, KModelForONNX


def build_tiny(path: Path, seed: int = 0) -> None:
    import torch

    KModel, KModelForONNX = _kmodel()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config()
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:  # KModel loads a state dict: an empty one keeps the random init
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        model = KModel(repo_id="hexgrad/Kokoro-82M", config=cfg, model=str(empty), disable_complex=True).eval()
    for p in model.parameters():  # the default init of the decoder's convolutions is near silent
        p.data.normal_(0, 0.05)
    # durations: each phoneme lasts sum(sigmoid(logits)) frames of 25 ms; random logits give
    # ~25 frames (0.6 s a phoneme), real speech ~3: a constant logit of -2.8 gives that
    proj = model.predictor.duration_proj.linear_layer
    proj.weight.data.zero_()
    proj.bias.data.fill_(DURATION_LOGIT)
    (path / "config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    ids = torch.randint(1, 100, (1, 24))
    ids[0, 0] = ids[0, -1] = 0
    style = torch.randn(1, 256) * 0.1
    torch.onnx.export(KModelForONNX(model), (ids, style, torch.ones(1)), str(path / MODEL_FILE),
                      input_names=["input_ids", "style", "speed"], output_names=["waveform", "duration"],
                      dynamic_axes={"input_ids": {1: "input_ids_len"}, "waveform": {0: "num_samples"},
                                    "duration": {0: "input_ids_len"}},
                      opset_version=17, dynamo=False)
    rng = np.random.default_rng(seed)
    voices = {name: (rng.standard_normal((510, 1, 256)) * 0.1).astype(np.float32) for name in VOICES.values()}
    with open(path / VOICES_FILE, "wb") as f:
        np.savez(f, **voices)


BUILDERS = {"kokoro-tiny": build_tiny}
