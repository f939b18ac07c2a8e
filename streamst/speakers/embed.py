"""Speaker embeddings: CAM++ (FunASR ``CAMPPlus``) through ``funasr.AutoModel``.

One loading path for the hub model (``iic/speech_campplus_sv_zh-cn_16k-common``, FunASR's
``spk_model="cam++"``) and for a local directory in the same format (``config.yaml`` with
``model: CAMPPlus`` + ``model.pt``; :mod:`streamst.builders.campplus` writes them offline):
:func:`streamst.asr.funasr_load.load_auto_model`. Embedding goes through FunASR's own
``generate`` (Kaldi fbank with per-window mean normalisation, then the network), as FunASR's
diarization pipelines call it; ``generate`` is not safe to call concurrently on one
``AutoModel``, so calls are serialised by a lock (sessions embed from worker threads).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamst.asr.funasr_load import keep_torch_threads, load_auto_model
from streamst.sources import is_local_source

__all__ = ["CamPlusEmbedder", "Embedder", "SpeakerOptions", "unit"]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


class Embedder(Protocol):
    """What turns audio windows into speaker embeddings."""

    dim: int

    def embed(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """``windows``: float32 16 kHz mono arrays -> (N, dim) float32, each row unit length."""
        ...


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


class SpeakerOptions:
    """Defaults of the speaker role that a profile entry's ``options`` may override."""

    # cosine similarity to the closest known speaker below which an utterance starts a new
    # speaker; 0.6 is FunASR's own streaming tracker's value for its real speaker models
    # (funasr/bin/realtime_ws.py HybridSpeakerTracker); the tiny profile sets its own
    threshold = 0.6


class CamPlusEmbedder:
    """A loaded CAM++ shared by every session; ``embed`` is thread-safe (serialised)."""

    kind = "cam++"

    def __init__(self, auto_model: Any, *, threshold: float = SpeakerOptions.threshold) -> None:
        self.auto_model = auto_model
        self.threshold = float(threshold)
        conf = dict(getattr(auto_model, "kwargs", {}).get("model_conf", {}) or {})
        self.dim = int(conf.get("embedding_size", 192))
        self._lock = threading.Lock()
        self.calls = 0
        self.windows = 0

    @classmethod
    def load(cls, source: str | Path, hint: str, device: str = "cpu", ncpu: int | None = None,
             threshold: float | None = None) -> "CamPlusEmbedder":
        """Load from a hub id (``iic/speech_campplus_sv_zh-cn_16k-common``) or a local directory.

        ``threshold``: the new-speaker cosine; None: the directory's ``speaker.json``
        ``threshold`` (calibrated when the model was trained) if there is one, else
        :attr:`SpeakerOptions.threshold`.

        Raises:
            ModelNotFoundError: one line naming the model and ending with ``hint``.
        """
        am = load_auto_model(source, what="speaker model (cam++)", hint=hint, device=device, ncpu=ncpu)
        meta_path = Path(str(source)).expanduser() / "speaker.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if is_local_source(source) and meta_path.is_file() else {}
        if meta.get("trained") is False:
            log.warning("speaker model at %s is untrained (%s): its speaker labels mean nothing", source, meta.get("why"))
        if threshold is None:
            threshold = float(meta.get("threshold", SpeakerOptions.threshold))
        return cls(am, threshold=threshold)

    def embed(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        if not windows:
            return np.zeros((0, self.dim), dtype=np.float32)
        # one batched forward; FunASR pads windows of unequal length with zeros, so those
        # (the last window of an utterance) go alone
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(len(w), []).append(i)
        out = np.zeros((len(windows), self.dim), dtype=np.float32)
        with self._lock, keep_torch_threads():
            for idx in groups.values():
                batch = [np.ascontiguousarray(windows[i], dtype=np.float32) for i in idx]
                res = self.auto_model.generate(input=batch, batch_size=len(batch))
                emb = np.concatenate([r["spk_embedding"].detach().cpu().float().numpy() for r in res], axis=0)
                out[idx] = emb.reshape(len(idx), -1)
                self.calls += 1
                self.windows += len(idx)
        return unit(out)
