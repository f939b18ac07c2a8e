"""Train a small CAM++ on synthetic espeak-ng voices (the tiny profile's speaker model).

Random CAM++ weights do not separate voices (measured: cosine about 0.99 between any two
utterances), so the tiny profile's speaker model is trained, offline and quickly:

* data: one paragraph read by each training "speaker" = an espeak-ng voice variant
  (``en-us+m1``, ``en-us+klatt``, ...) at a pitch (``-p``); random crops of ``crop_ms``;
* model: FunASR's ``CAMPPlus`` (narrow, :data:`streamst.builders.campplus.TINY_CONF`), with
  the crops' features computed as FunASR's ``extract_feature`` does (80-bin Kaldi fbank,
  mean-normalised per crop);
* loss: additive-margin softmax on the unit-length embeddings (CAM++'s own recipe uses AAM
  softmax); the classifier is dropped afterwards.

The voices of :data:`HELD_OUT` (the variants the dialogues of tests and
``streamst bench speakers`` use) are never trained on. After training, utterances of the
held-out voices give the calibration: the new-speaker threshold is the midpoint between the
mean same-voice and the mean different-voice cosine, recorded in ``speaker.json``.

The result is cached by content hash (the config, the espeak-ng version and the library
versions) under ``$STREAMST_CACHE`` (default ``~/.cache/streamst``), so a second build of the
tiny profile takes about a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["HELD_OUT", "TrainConfig", "cache_dir", "trained", "voice_audio"]

log = logging.getLogger(__name__)

TRAIN_VARIANTS = ("m1", "m2", "m4", "m5", "m6", "m8", "f1", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "croak",
                  "Andy", "Annie", "adam", "Alex", "Alicia", "david", "ed", "edward", "Gene", "iven", "john", "linda",
                  "max", "Mike", "paul", "rob", "robert", "steph", "travis", "victor", "norbert", "zac")
HELD_OUT = ("m3", "f2", "m7")  # dialogue voices (tests, bench): never trained on
TRAIN_PITCHES = (25, 50, 75)
PARAGRAPH = ("The history of the city goes back many centuries. Merchants travelled along the river to sell grain, "
             "wool and salt. Today the old market square is full of small cafes, and visitors walk along the bridges "
             "in the evening. Numbers like seventeen, forty two and one hundred are spoken clearly. "
             "Would you like a cup of tea or coffee before we begin the lesson?")
CALIBRATION = ("Please send me the report before the meeting tomorrow.", "I think the results are quite interesting.",
               "Can you tell me where the train station is?")


@dataclass(frozen=True)
class TrainConfig:
    model_conf: tuple[tuple[str, Any], ...]  # CAMPPlus keyword arguments
    seed: int = 0
    steps: int = 100
    batch: int = 64
    crop_ms: int = 1500  # one embedding window (the serving window)
    lr: float = 3e-3
    margin: float = 0.2  # additive margin on the target cosine
    scale: float = 30.0  # logit scale
    variants: tuple[str, ...] = TRAIN_VARIANTS
    pitches: tuple[int, ...] = TRAIN_PITCHES
    speed: int = 160  # espeak-ng words per minute

    def key(self) -> str:
        """Content hash: the config and everything that changes the result."""
        import funasr

        versions = {"espeak": _espeak_version(), "torch": torch.__version__, "funasr": funasr.__version__,
                    "numpy": np.__version__, "paragraph": PARAGRAPH, "calibration": CALIBRATION, "recipe": 1}
        blob = json.dumps({"config": asdict(self), "versions": versions}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _espeak_version() -> str:
    r = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=False)
    return r.stdout.strip()


def cache_dir() -> Path:
    return Path(os.environ.get("STREAMST_CACHE") or Path.home() / ".cache" / "streamst") / "speakers"


def voice_audio(variant: str, pitch: int, text: str, *, lang: str = "en-us", speed: int = 160) -> np.ndarray:
    """``text`` read by espeak-ng voice ``lang+variant`` at ``pitch``: float32 16 kHz mono."""
    import soundfile as sf
    import soxr

    from streamst.tts import _require_tools

    _require_tools()
    out = subprocess.run(["espeak-ng", "-v", f"{lang}+{variant}", "-p", str(pitch), "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True).stdout
    x, rate = sf.read(io.BytesIO(out), dtype="float32")
    return soxr.resample(x, rate, 16000).astype(np.float32)


def _fbank(x: np.ndarray) -> torch.Tensor:
    from funasr.utils import fbank as kaldi

    return kaldi.fbank(torch.from_numpy(x).unsqueeze(0), num_mel_bins=80)  # (T, 80), 10 ms frames


def train(cfg: TrainConfig, log_fn: Callable[[str], None] = log.info) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train; returns the CAMPPlus state dict and a report (losses, calibration, time)."""
    from funasr.models.campplus.model import CAMPPlus

    t0 = time.perf_counter()
    speakers = [(v, p) for v in cfg.variants for p in cfg.pitches]
    feats = [_fbank(voice_audio(v, p, PARAGRAPH, speed=cfg.speed)) for v, p in speakers]
    conf = dict(cfg.model_conf)
    rng = np.random.default_rng(cfg.seed)
    n_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = CAMPPlus(**{**conf, "memory_efficient": False})  # same weights; no recompute in training
        head = torch.nn.Parameter(torch.randn(len(speakers), conf["embedding_size"]) * 0.1)
    opt = torch.optim.Adam([*model.parameters(), head], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    frames = cfg.crop_ms // 10
    losses: list[float] = []
    model.train()
    try:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        for step in range(cfg.steps):
            idx = rng.integers(0, len(feats), cfg.batch)
            crops = []
            for i in idx:
                f = feats[i]
                s = int(rng.integers(0, f.shape[0] - frames))
                c = f[s: s + frames]
                crops.append(c - c.mean(dim=0, keepdim=True))  # as FunASR's extract_feature
            y = torch.from_numpy(idx)
            emb = torch.nn.functional.normalize(model(torch.stack(crops)), dim=1)
            cos = emb @ torch.nn.functional.normalize(head, dim=1).T
            logits = cfg.scale * (cos - cfg.margin * torch.nn.functional.one_hot(y, len(speakers)))
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(round(float(loss), 4))
            if step % 20 == 0 or step == cfg.steps - 1:
                log_fn(f"speaker model: step {step + 1}/{cfg.steps} loss {loss.item():.3f} "
                       f"({time.perf_counter() - t0:.0f} s)")
    finally:
        torch.set_num_threads(n_threads)
    model.eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    report = {"speakers_trained": len(speakers), "steps": cfg.steps, "loss_first": losses[0], "loss_last": losses[-1],
              "train_s": round(time.perf_counter() - t0, 1), **calibrate(model, cfg)}
    return state, report


@torch.no_grad()
def calibrate(model: torch.nn.Module, cfg: TrainConfig) -> dict[str, Any]:
    """Cosines between utterances of the held-out voices; the threshold between them."""
    voices = [(v, p) for v, p in zip(HELD_OUT, (40, 70, 55))]
    embs, labels = [], []
    for k, (v, p) in enumerate(voices):
        for text in CALIBRATION:
            f = _fbank(voice_audio(v, p, text, speed=cfg.speed))
            embs.append(torch.nn.functional.normalize(model((f - f.mean(dim=0, keepdim=True))[None])[0], dim=0))
            labels.append(k)
    e = torch.stack(embs)
    sims = (e @ e.T).numpy()
    n = len(labels)
    same = [sims[i, j] for i in range(n) for j in range(i + 1, n) if labels[i] == labels[j]]
    diff = [sims[i, j] for i in range(n) for j in range(i + 1, n) if labels[i] != labels[j]]
    threshold = float((np.mean(same) + np.mean(diff)) / 2)
    return {"held_out_voices": [f"en-us+{v} -p {p}" for v, p in voices],
            "same_voice_cos": {"mean": round(float(np.mean(same)), 3), "min": round(float(np.min(same)), 3)},
            "other_voice_cos": {"mean": round(float(np.mean(diff)), 3), "max": round(float(np.max(diff)), 3)},
            "threshold": round(threshold, 3)}


def trained(cfg: TrainConfig, log_fn: Callable[[str], None] = log.info) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The trained state and report, from the cache when the same content was trained before."""
    key = cfg.key()
    path = cache_dir() / f"campplus-{key}.pt"
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return blob["state"], json.loads(blob["report"])
    state, report = train(cfg, log_fn)
    report["cache_key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.partial")
    torch.save({"state": state, "report": json.dumps(report)}, tmp)
    tmp.replace(path)  # atomic: concurrent builds never read half a file
    return state, report
