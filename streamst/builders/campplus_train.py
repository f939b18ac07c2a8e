"""Train a small CAM++ on synthetic espeak-ng voices (the tiny profile's speaker model).

Random CAM++ weights do not separate voices (measured: cosine about 0.99 between any two
utterances), so the tiny profile's speaker model is trained, offline and quickly:

* data: one paragraph (about 10 s) read by each training "speaker" = an espeak-ng voice
  variant (``en-us+m1``, ``en-us+klatt``, ...) at a pitch (``-p``), cut into windows of
  ``crop_ms`` (the serving window) every ``hop_ms``;
* model: FunASR's ``CAMPPlus`` (narrow, :data:`streamst.builders.campplus.TINY_CONF`). Its
  trunk (FCM head, TDNN blocks) keeps seeded random weights and runs once per window
  (80-bin Kaldi fbank mean-normalised per window, as FunASR's ``extract_feature`` and a
  session's windows have it); the embedding layer (``xvector.dense``, statistics ->
  embedding) is trained on the windows' pooled statistics. Training the whole network
  took about 2 s per step of 64 crops on the shared 2-core box (hundreds of steps); this
  takes about a minute there and separates the held-out voices;
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
             "wool and salt. Would you like a cup of tea or coffee before we begin?")  # about 10 s
CALIBRATION = ("Please send me the report before the meeting tomorrow.", "I think the results are quite interesting.",
               "Can you tell me where the train station is?")


@dataclass(frozen=True)
class TrainConfig:
    model_conf: tuple[tuple[str, Any], ...]  # CAMPPlus keyword arguments
    seed: int = 0
    steps: int = 400
    batch: int = 256
    crop_ms: int = 1500  # one embedding window (the serving window: streamst.speakers.turns)
    hop_ms: int = 500  # between training windows
    lr: float = 1e-2
    margin: float = 0.2  # additive margin on the target cosine
    scale: float = 30.0  # logit scale
    variants: tuple[str, ...] = TRAIN_VARIANTS
    pitches: tuple[int, ...] = TRAIN_PITCHES
    speed: int = 160  # espeak-ng words per minute

    def key(self) -> str:
        """Content hash: the config and everything that changes the result."""
        import funasr

        versions = {"espeak": _espeak_version(), "torch": torch.__version__, "funasr": funasr.__version__,
                    "numpy": np.__version__, "paragraph": PARAGRAPH, "calibration": CALIBRATION, "recipe": 2}
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


def windows(x: np.ndarray, window_ms: int, hop_ms: int) -> list[np.ndarray]:
    """Windows of ``window_ms`` every ``hop_ms`` (one window when ``x`` is shorter)."""
    w, h = 16 * window_ms, 16 * hop_ms
    return [x[i: i + w] for i in range(0, max(1, x.size - w + 1), h)]


def _window_stats(model: torch.nn.Module, wins: list[np.ndarray]) -> torch.Tensor:
    """The frozen trunk's pooled statistics of each window, features exactly as FunASR's
    ``extract_feature`` makes them (fbank mean-normalised per window): (N, 2C)."""
    feats = []
    for w in wins:
        f = _fbank(w)
        feats.append(f - f.mean(dim=0, keepdim=True))
    h = model.head(torch.stack(feats).permute(0, 2, 1))
    for name, mod in model.xvector.named_children():
        if name == "dense":
            break
        h = mod(h)
    return h


def train(cfg: TrainConfig, log_fn: Callable[[str], None] = log.info) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train; returns the CAMPPlus state dict and a report (losses, calibration, time).

    The trunk (FCM head and the TDNN blocks up to statistics pooling) keeps its seeded random
    weights and runs once per training window (no gradient); the embedding layer
    (``xvector.dense``) is trained on the windows' pooled statistics."""
    from funasr.models.campplus.model import CAMPPlus

    t0 = time.perf_counter()
    speakers = [(v, p) for v in cfg.variants for p in cfg.pitches]
    conf = dict(cfg.model_conf)
    rng = np.random.default_rng(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = CAMPPlus(**{**conf, "memory_efficient": False}).eval()  # same weights; no recompute
        head = torch.nn.Parameter(torch.randn(len(speakers), conf["embedding_size"]) * 0.1)
    losses: list[float] = []
    # the caller's torch threads (one by default: several only contend on a busy machine)
    with torch.no_grad():
        stats = [_window_stats(model, windows(voice_audio(v, p, PARAGRAPH, speed=cfg.speed), cfg.crop_ms, cfg.hop_ms))
                 for v, p in speakers]
    log_fn(f"speaker model: trunk features of {len(speakers)} synthetic voices ({time.perf_counter() - t0:.0f} s)")
    x = torch.cat(stats)
    y_all = torch.cat([torch.full((len(st),), k) for k, st in enumerate(stats)])
    dense = model.xvector.dense
    dense.train()
    opt = torch.optim.Adam([*dense.parameters(), head], lr=cfg.lr)
    for step in range(cfg.steps):
        idx = torch.from_numpy(rng.integers(0, len(x), cfg.batch))
        y = y_all[idx]
        emb = torch.nn.functional.normalize(dense(x[idx]), dim=1)
        cos = emb @ torch.nn.functional.normalize(head, dim=1).T
        logits = cfg.scale * (cos - cfg.margin * torch.nn.functional.one_hot(y, len(speakers)))
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(float(loss), 4))
    model.eval()
    log_fn(f"speaker model: {cfg.steps} steps, loss {losses[0]:.2f} -> {losses[-1]:.2f} ({time.perf_counter() - t0:.0f} s)")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    report = {"speakers_trained": len(speakers), "steps": cfg.steps,
              "trained_layers": "xvector.dense (the trunk keeps seeded random weights)",
              "loss_first": losses[0], "loss_last": losses[-1], **calibrate(model, cfg),
              "train_s": round(time.perf_counter() - t0, 1)}
    return state, report


@torch.no_grad()
def calibrate(model: torch.nn.Module, cfg: TrainConfig) -> dict[str, Any]:
    """Cosines between utterances of the held-out voices, each embedded as a session embeds
    it (the mean of its 1.5 s windows, hop 0.75 s); the threshold between them."""
    voices = [(v, p) for v, p in zip(HELD_OUT, (40, 70, 55))]
    embs, labels = [], []
    for k, (v, p) in enumerate(voices):
        for text in CALIBRATION:
            st = _window_stats(model, windows(voice_audio(v, p, text, speed=cfg.speed), cfg.crop_ms, cfg.crop_ms // 2))
            e = torch.nn.functional.normalize(model.xvector.dense(st), dim=1).mean(dim=0)
            embs.append(torch.nn.functional.normalize(e, dim=0))
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
