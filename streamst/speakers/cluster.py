"""Online clustering of one session's utterance embeddings into stable speaker labels.

Each finished utterance brings one unit-length embedding (the mean of its windows'
embeddings). Speakers are kept as centroids (unit-length running means):

* the utterance goes to the closest speaker when its cosine similarity is at least
  ``threshold``; that speaker's centroid moves towards it by ``1 / min(n + 1, max_weight_n)``
  (n: utterances it already has), so a centroid settles but can still follow a voice;
* otherwise it starts a new speaker, unless ``max_speakers`` are known already: then it goes
  to the closest one anyway (a bounded number of speakers, and of memory);
* an utterance shorter than ``min_new_ms`` never starts a new speaker (too little audio for
  a reliable embedding) and does not move a centroid; it gets the closest speaker (the first
  speaker when none is known yet).

Labels are integers from 0 in order of first appearance and never change: a later turn of
speaker 0 is speaker 0 again. FunASR's streaming speaker tracker (``funasr/bin/realtime_ws.py``)
matches cluster centres to known speakers the same way (cosine >= 0.6, weight
``1 / min(n + 1, 20)``, at most 15 speakers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ClusterOptions", "OnlineClusterer"]

MAX_SPEAKERS_LIMIT = 16  # what a client may ask for at most


@dataclass(frozen=True)
class ClusterOptions:
    threshold: float = 0.6  # cosine to the closest centroid below which a new speaker starts
    max_speakers: int = 8  # speakers one session may have; more utterances join the closest
    min_new_ms: int = 700  # shorter utterances never start a speaker nor move a centroid
    max_weight_n: int = 20  # a centroid's step towards a new utterance is at least 1/20

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine in [-1, 1], got {self.threshold}")
        if not 1 <= self.max_speakers <= MAX_SPEAKERS_LIMIT:
            raise ValueError(f"max_speakers must be in 1..{MAX_SPEAKERS_LIMIT}, got {self.max_speakers}")
        if self.min_new_ms < 0 or self.max_weight_n < 1:
            raise ValueError("need min_new_ms >= 0 and max_weight_n >= 1")


@dataclass
class OnlineClusterer:
    """Per-session speakers. Memory: ``max_speakers`` centroids."""

    options: ClusterOptions = ClusterOptions()
    centroids: list[np.ndarray] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @property
    def speakers(self) -> int:
        return len(self.centroids)

    def similarities(self, emb: np.ndarray) -> np.ndarray:
        """Cosine of ``emb`` (unit length) to every centroid."""
        if not self.centroids:
            return np.zeros(0, dtype=np.float32)
        return np.stack(self.centroids) @ emb

    def peek(self, emb: np.ndarray) -> int | None:
        """The speaker ``emb`` would join now, without changing anything; None when it would
        start a new one (provisional labels of an utterance still under way)."""
        sims = self.similarities(emb)
        if sims.size and (sims.max() >= self.options.threshold or self.speakers >= self.options.max_speakers):
            return int(sims.argmax())
        return None

    def assign(self, emb: np.ndarray, duration_ms: float) -> int:
        """The label of a finished utterance with embedding ``emb`` (unit length)."""
        o = self.options
        sims = self.similarities(emb)
        best = int(sims.argmax()) if sims.size else -1
        short = duration_ms < o.min_new_ms
        if best >= 0 and (sims[best] >= o.threshold or self.speakers >= o.max_speakers or short):
            if not short:
                n = self.counts[best]
                w = 1.0 / min(n + 1, o.max_weight_n)
                c = (1.0 - w) * self.centroids[best] + w * emb
                self.centroids[best] = (c / max(float(np.linalg.norm(c)), 1e-12)).astype(np.float32)
                self.counts[best] = n + 1
            return best
        self.centroids.append(np.asarray(emb, dtype=np.float32).copy())
        self.counts.append(0 if short else 1)
        return self.speakers - 1
