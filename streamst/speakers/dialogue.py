"""Synthetic dialogues of espeak-ng voices with their reference turns, and how well a run's
speaker labels match them.

A voice is an espeak-ng variant at a pitch (``en-us+m3 -p 40``). A dialogue is a sequence of
turns, one sentence each, joined by ``gap_ms`` of silence (longer than the VAD's endpoint
silence, so each turn is at least one utterance).

Scores (hypothesis = the final transcripts' spans and speaker labels):

* ``attribution``: share of the hypothesis utterances' duration whose label is the
  reference speaker of the turn it overlaps most, under the best one-to-one mapping of
  labels to reference speakers (the labels' names are arbitrary);
* ``change_accuracy``: over consecutive utterance pairs, the share where "the speaker
  changed" is the same in the labels and in the reference;
* ``purity`` / ``coverage`` (turn-level, duration-weighted): how much of each label's audio
  belongs to its dominant reference speaker, and how much of each reference speaker's audio
  its dominant label holds;
* ``speakers_found`` versus ``speakers``.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Turn", "Voice", "VOICES", "SENTENCES", "Utterance", "make_dialogue", "score"]


@dataclass(frozen=True)
class Voice:
    variant: str
    pitch: int
    lang: str = "en"

    def __str__(self) -> str:
        return f"{self.lang}+{self.variant} -p {self.pitch}"


# held out of the tiny speaker model's training (streamst.builders.campplus_train.HELD_OUT)
VOICES = (Voice("m3", 40), Voice("f2", 70), Voice("m7", 55))
SENTENCES = (
    "Good morning, thank you all for coming to the meeting today.",
    "I would like to start with the results of the last quarter.",
    "Sales grew by about twelve percent in the northern region.",
    "That sounds good, but what about the costs of the new factory?",
    "The costs were higher than planned because of the delays.",
    "Can we see the numbers for each month before we decide?",
    "Of course, I will send the full report after this call.",
    "Let us also talk about hiring for the support team.",
    "We need at least three more people before the summer.",
    "I agree, and the training should start as soon as possible.",
)


@dataclass(frozen=True)
class Turn:
    speaker: int  # index into the dialogue's voices
    start_ms: int
    end_ms: int
    text: str


@dataclass(frozen=True)
class Utterance:
    """One hypothesis utterance: a final transcript's span and speaker label."""

    start_ms: int
    end_ms: int
    speaker: int | None


def make_dialogue(order: Sequence[int], voices: Sequence[Voice] = VOICES, *, gap_ms: int = 1200,
                  sentences: Sequence[str] = SENTENCES, offset: int = 0) -> tuple[np.ndarray, list[Turn]]:
    """Audio (float32, 16 kHz) of turns spoken by ``voices[order[i]]`` and the reference turns.
    Turn i says ``sentences[(offset + i) % len(sentences)]``."""
    import soundfile as sf

    from streamst.tts import synthesize

    parts: list[np.ndarray] = [np.zeros(16 * 300, dtype=np.float32)]
    turns: list[Turn] = []
    pos = parts[0].size
    with tempfile.TemporaryDirectory() as tmp:
        for i, spk in enumerate(order):
            v = voices[spk]
            text = sentences[(offset + i) % len(sentences)]
            path = synthesize(text, v.lang, Path(tmp) / f"t{i}.wav", variant=v.variant, pitch=v.pitch)
            x, rate = sf.read(str(path), dtype="float32")
            assert rate == 16000
            turns.append(Turn(spk, pos // 16, (pos + x.size) // 16, text))
            parts += [x, np.zeros(16 * gap_ms, dtype=np.float32)]
            pos += x.size + 16 * gap_ms
    return np.concatenate(parts), turns


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def score(hyp: Sequence[Utterance], ref: Sequence[Turn]) -> dict[str, float | int]:
    """Attribution, change accuracy, purity and coverage of ``hyp`` against ``ref``."""
    rows = []  # (duration, reference speaker, label)
    for u in hyp:
        best = max(ref, key=lambda t: _overlap(u.start_ms, u.end_ms, t.start_ms, t.end_ms), default=None)
        if best is None or _overlap(u.start_ms, u.end_ms, best.start_ms, best.end_ms) == 0:
            continue  # an utterance outside every turn (noise): not scored
        rows.append((max(1, u.end_ms - u.start_ms), best.speaker, u.speaker))
    total = sum(d for d, _, _ in rows) or 1
    refs = sorted({r for _, r, _ in rows})
    labels = sorted({lab for _, _, lab in rows if lab is not None})
    # the best one-to-one mapping of labels to reference speakers (few speakers: brute force)
    best_hit = 0
    slots = refs + [None] * max(0, len(labels) - len(refs))
    for perm in itertools.permutations(slots, len(labels)):
        m = dict(zip(labels, perm))
        best_hit = max(best_hit, sum(d for d, r, lab in rows if lab is not None and m.get(lab) == r))
    changes = [(rows[i][1] != rows[i + 1][1], rows[i][2] != rows[i + 1][2]) for i in range(len(rows) - 1)]
    purity = sum(max(sum(d for d, r, lab in rows if lab == k and r == rr) for rr in refs) for k in labels)
    coverage = sum(max([sum(d for d, r, lab in rows if r == rr and lab == k) for k in labels] or [0]) for rr in refs)
    return {
        "utterances": len(rows),
        "speakers": len({t.speaker for t in ref}),
        "speakers_found": len(labels),
        "attribution": round(best_hit / total, 4),
        "change_accuracy": round(sum(a == b for a, b in changes) / len(changes), 4) if changes else 1.0,
        "purity": round(purity / total, 4),
        "coverage": round(coverage / total, 4),
    }
