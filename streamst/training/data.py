"""Training data: a validated manifest, examples (whole utterances and prefix pairs), batches.

The manifest is the eval format (``streamst/commands/eval.py``): JSONL with ``audio`` (a
16 kHz wav, relative to the manifest), ``reference``, ``src_lang``, ``tgt_lang`` (``source``
and ``id`` optional). :func:`read_train_manifest` checks every line before anything is
trained or written, and raises one :class:`~streamst.errors.UserError` line naming the
file and line of the first problem.

An :class:`Example` is a span of one utterance's audio and the target text it should
produce: the whole utterance with its reference, or a *prefix pair*, the first ``f`` of the
audio with the first ``floor(f * units)`` target units (words, or characters for zh/ja),
which is what the simultaneous decoder asks the model mid-utterance. Every example ends with
``<|im_end|>`` (unless its reference was cut at ``max_target_tokens``), so a trained model
stops a proposal where the heard speech ends.

Inputs are built with the inference prompt (:class:`~streamst.e2e.funasr_nano.SpeechPrompt`:
ChatML head, ``T`` audio placeholder tokens, fixed tail) and the inference features
(:meth:`FunAsrNanoSpeech.features`), so what is trained is exactly what the decoder is fed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from streamst.audio import SAMPLE_RATE
from streamst.errors import UserError
from streamst.languages import LANGUAGES
from streamst.text import join_units, split_units

if TYPE_CHECKING:
    from streamst.e2e.funasr_nano import FunAsrNanoSpeech, SpeechPrompt

MIN_SAMPLES = 400  # one 25 ms fbank window
IGNORE = -100  # label of positions without loss (prompt, audio, padding)


@dataclass(frozen=True)
class TrainItem:
    """One validated manifest line."""

    id: str
    audio: Path
    reference: str
    src_lang: str
    tgt_lang: str
    frames: int  # samples at 16 kHz
    source: str = ""
    line: int = 0


def read_train_manifest(path: str | Path) -> list[TrainItem]:
    """Parse and check every line of a training/eval manifest (audio headers included)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such manifest")
    items: list[TrainItem] = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not a JSON object ({e})") from e
        if not isinstance(obj, dict):
            raise UserError(f"{where}: not a JSON object")
        for key in ("audio", "reference", "src_lang", "tgt_lang"):
            if not isinstance(obj.get(key), str):
                raise UserError(f"{where}: missing or non-string field {key!r}")
        reference = obj["reference"].strip()
        if not reference:
            raise UserError(f"{where}: empty reference (every training utterance needs its translation)")
        for key in ("src_lang", "tgt_lang"):
            lang = obj[key]
            if lang.split("-")[0] not in LANGUAGES:
                raise UserError(f"{where}: unknown language {key}={lang!r} (known: {', '.join(LANGUAGES)})")
        audio = path.parent / obj["audio"]
        if not audio.is_file():
            raise UserError(f"{where}: audio file {audio} not found")
        try:
            info = sf.info(str(audio))
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            raise UserError(f"{where}: {audio} is not a readable audio file ({e})") from e
        if info.samplerate != SAMPLE_RATE:
            raise UserError(f"{where}: {audio} is {info.samplerate} Hz; training needs 16 kHz audio "
                            f"(resample: sox IN.wav -r 16000 -c 1 OUT.wav)")
        if info.frames < MIN_SAMPLES:
            raise UserError(f"{where}: {audio} is too short ({info.frames} samples)")
        items.append(TrainItem(str(obj.get("id", n)), audio, reference, obj["src_lang"], obj["tgt_lang"],
                               int(info.frames), str(obj.get("source", "")), n))
    if not items:
        raise UserError(f"{path}: the manifest is empty")
    return items


def load_samples(item: TrainItem) -> np.ndarray:
    """The item's audio as float32 mono at 16 kHz (validated by :func:`read_train_manifest`)."""
    from streamst.audio import read_audio

    samples, rate = read_audio(item.audio)
    if rate != SAMPLE_RATE:  # the file changed since it was validated
        raise UserError(f"{item.audio} is {rate} Hz; training needs 16 kHz audio")
    return samples


@dataclass(frozen=True)
class Example:
    """The first ``end`` samples of item ``item`` (None: all) and the text they translate to."""

    item: int
    end: int | None
    target: str
    whole: bool  # the whole utterance (False: a prefix pair)
    task: str = "translate"  # or "transcribe": the target is the utterance's transcript (its `source`)


def build_examples(items: list[TrainItem], prefix_pairs: int, seed: int, transcribe: bool = False) -> list[Example]:
    """Whole utterances, plus ``prefix_pairs`` prefix pairs each at seeded, stratified cut
    points: pair ``j`` of ``P`` cuts at a fraction drawn uniformly from ``[j/P, (j+1)/P)`` of
    the span 10%..90% of the audio. With ``transcribe``, each utterance with a ``source`` also
    gives a whole-utterance *transcription* example (the transcribe prompt, its transcript as
    target): the model learns both tasks of Fun-ASR-Nano, and the monotonic one teaches the
    decoder where the words are in the audio."""
    rng = random.Random(seed)
    out: list[Example] = []
    for i, item in enumerate(items):
        n = item.frames
        out.append(Example(i, None, item.reference, True))
        if transcribe and item.source:
            out.append(Example(i, None, item.source, True, "transcribe"))
        units = split_units(item.reference, item.tgt_lang)
        for j in range(prefix_pairs):
            frac = 0.1 + 0.8 * (j + rng.random()) / prefix_pairs
            end = max(MIN_SAMPLES, int(n * frac))
            k = int(len(units) * end / n)
            out.append(Example(i, end, join_units(units[:k], item.tgt_lang), False))
    return out


@dataclass
class Batch:
    """Right-padded model inputs of a micro-batch.

    ``input_ids`` / ``labels`` / ``attention_mask``: ``(B, L)``; labels are the target ids
    at target positions and ``IGNORE`` elsewhere. ``audio``: ``(B, T, D)``, the LFR features
    (D = 560) or, with a frozen encoder, its outputs; ``audio_mask``: ``(B, T)``.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    audio: torch.Tensor
    audio_mask: torch.Tensor
    ctc: list[list[int] | None] | None = None  # per row, source-transcript unit ids (training/ctc.py) or None

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


class ExampleSet:
    """Examples with their features (or frozen-encoder outputs), computed once and kept in
    memory up to ``cache_mb``; beyond it recomputed per use. Collates batches."""

    def __init__(self, speech: FunAsrNanoSpeech, items: list[TrainItem], examples: list[Example], *,
                 max_target_tokens: int, im_end_id: int, encoder=None, cache_mb: int = 2048, units=None) -> None:
        from streamst.e2e.funasr_nano import SpeechPrompt
        from streamst.mt.prompt import encode_text

        self.speech, self.items, self.examples = speech, items, examples
        self.encoder = encoder  # callable (features (1, T, 560)) -> (1, T, H) when frozen, else None
        self.units = units  # CtcUnits: whole utterances get their source transcript as CTC targets
        self.budget = cache_mb * 2**20
        self.used = 0
        self._cache: dict[int, torch.Tensor] = {}
        self._prompts: dict[tuple[str, str, str], SpeechPrompt] = {}  # (task, src, tgt)
        self._targets: list[list[int]] = []
        self._ctc: list[list[int] | None] = []  # CTC targets, encoded once: whole utterances with a source only
        for ex in examples:
            item = items[ex.item]
            ids = encode_text(speech.tokenizer, ex.target, special=False)
            self._targets.append(ids[:max_target_tokens] if len(ids) >= max_target_tokens else ids + [im_end_id])
            has = units is not None and ex.whole and bool(item.source)
            self._ctc.append((units.encode(item.source, item.src_lang) or None) if has else None)
            key = (ex.task, item.src_lang, item.tgt_lang)
            if key not in self._prompts:
                self._prompts[key] = SpeechPrompt(speech.tokenizer, ex.task, item.src_lang, item.tgt_lang)

    def __len__(self) -> int:
        return len(self.examples)

    def target_ids(self, i: int) -> list[int]:
        return self._targets[i]

    def token_ids(self) -> set[int]:
        """Every token id a batch of this set can hold (prompts, targets, the audio placeholder, padding)."""
        ids = {t for target in self._targets for t in target}
        for prompt in self._prompts.values():
            ids.update(prompt.head.ids)
            ids.update(prompt.tail.ids)
        ids.add(self.speech.audio_token_id)
        pad = self.speech.tokenizer.pad_token_id
        ids.add(pad if pad is not None else 0)
        return ids

    def ctc_target(self, i: int) -> list[int] | None:
        """Example ``i``'s transcript as CTC unit ids (whole utterances with a source only)."""
        return self._ctc[i]

    def audio(self, i: int) -> torch.Tensor:
        """``(T, D)``: features of example ``i`` (or the frozen encoder's outputs)."""
        hit = self._cache.get(i)
        if hit is not None:
            return hit
        ex = self.examples[i]
        samples = load_samples(self.items[ex.item])
        if ex.end is not None:
            samples = samples[: ex.end]
        x = torch.from_numpy(self.speech.features(samples))  # (T, 560)
        if self.encoder is not None:
            x = self.encoder(x[None])[0]  # (T, H)
        size = x.numel() * x.element_size()
        if self.used + size <= self.budget:
            self._cache[i] = x
            self.used += size
        return x

    def batch(self, indices: list[int]) -> Batch:
        audio = [self.audio(i) for i in indices]
        rows = []
        for i, a in zip(indices, audio):
            ex = self.examples[i]
            item = self.items[ex.item]
            prompt = self._prompts[(ex.task, item.src_lang, item.tgt_lang)]
            head = prompt.input_ids(a.shape[0], self.speech.audio_token_id, "", max_target_tokens=0)
            rows.append((head, self._targets[i]))
        b, length = len(indices), max(len(h) + len(t) for h, t in rows)
        tmax, dim = max(a.shape[0] for a in audio), audio[0].shape[1]
        pad = self.speech.tokenizer.pad_token_id
        ids = torch.full((b, length), pad if pad is not None else 0, dtype=torch.long)
        labels = torch.full((b, length), IGNORE, dtype=torch.long)
        att = torch.zeros(b, length, dtype=torch.long)
        x = torch.zeros(b, tmax, dim, dtype=audio[0].dtype)
        xm = torch.zeros(b, tmax, dtype=torch.long)
        for r, ((head, target), a) in enumerate(zip(rows, audio)):
            seq = head + target
            ids[r, : len(seq)] = torch.tensor(seq)
            labels[r, len(head) : len(seq)] = torch.tensor(target)
            att[r, : len(seq)] = 1
            x[r, : a.shape[0]] = a
            xm[r, : a.shape[0]] = 1
        ctc = [self.ctc_target(i) for i in indices] if self.units is not None else None
        return Batch(ids, labels, att, x, xm, ctc)


def order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch: a permutation fixed by (seed, epoch), so any step's
    batch is known without replaying the run (resume is exact)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of optimiser step ``step``: the next ``batch_size`` of the epoch orders."""
    start = step * batch_size
    out: list[int] = []
    epoch, pos = divmod(start, n)
    perm = order(n, seed, epoch)
    while len(out) < batch_size:
        out.append(perm[pos])
        pos += 1
        if pos == n:
            epoch, pos = epoch + 1, 0
            perm = order(n, seed, epoch)
    return out
