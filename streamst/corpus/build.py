"""Write the corpus: splits disjoint by combination, manifests, espeak speech with word times.

:func:`generate` draws unique sentence pairs from :mod:`streamst.corpus.grammar` and splits
them by a hash of the pair, so a test (or dev) sentence is never a training sentence in
either direction; test and dev items whose words are not all in the training vocabulary are
dropped (held-out items are new combinations of *known* words and structures).

:func:`write_corpus` writes ``DIR/{train,dev,test}.jsonl`` with one line per item and
direction: ``id``, ``src_lang``, ``tgt_lang``, ``source``, ``reference``, ``structure``,
``reorder_distance`` (longest reorder, in source words), ``reorder`` (distance > 0) and
``words`` (the source words). Items of the spoken splits also get ``audio`` (a 16 kHz wav,
relative to the manifest: the training and eval manifest format) and ``word_times``: per
source word ``[start_ms, end_ms]``. espeak-ng reports no word times, so each word's share
of the utterance is its duration when spoken alone (cached per word), scaled to the
utterance's length. Wavs are cached by content hash (text, voice, speed) in ``tts_cache``.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamst.corpus.grammar import Sentence, random_sentence, sentence

SPLITS = ("train", "dev", "test")
DIRECTIONS = (("zh", "en"), ("en", "zh"))


@dataclass(frozen=True)
class CorpusConfig:
    train: int = 6000  # sentence pairs (each gives one item per direction)
    dev: int = 150
    test: int = 300
    seed: int = 0
    directions: tuple[tuple[str, str], ...] = DIRECTIONS
    speak: tuple[str, ...] = ("dev", "test")  # splits given audio and word times
    speed: int = 150  # espeak-ng words per minute
    structures: tuple[str, ...] | None = None  # only these grammar structures (None: all, weighted)
    lexicon_rows: int | None = None  # only the first N entries of each lexicon table (None: all)


def split_of(s: Sentence, seed: int) -> str:
    """Which split a sentence pair belongs to: a hash of the pair (both texts) and the seed."""
    h = int(hashlib.sha256(f"{seed}\n{s.text('zh')}\n{s.text('en')}".encode()).hexdigest()[:8], 16) % 100
    return "test" if h < 8 else "dev" if h < 12 else "train"


def generate(config: CorpusConfig) -> dict[str, list[Sentence]]:
    """Unique sentence pairs per split, train first; held-out ones use only training words."""
    rng = random.Random(config.seed)
    want = {"train": config.train, "dev": config.dev, "test": config.test}
    out: dict[str, list[Sentence]] = {k: [] for k in SPLITS}
    seen: set[str] = set()
    tries = 0
    while any(len(out[k]) < want[k] * (1.3 if k != "train" else 1) for k in SPLITS):
        tries += 1
        if tries > 50 * sum(want.values()) + 1000:
            raise RuntimeError("the grammar cannot produce that many distinct sentences")
        rows = config.lexicon_rows
        s = random_sentence(rng, rows) if not config.structures else sentence(rng.choice(config.structures), rng, rows)
        key = s.text("zh") + "\n" + s.text("en")
        if key in seen:
            continue
        seen.add(key)
        split = split_of(s, config.seed)
        if len(out[split]) < want[split] * (1.3 if split != "train" else 1):
            out[split].append(s)
    known = {lang: {w for s in out["train"] for w in s.words(lang)} for lang in ("zh", "en")}
    for k in ("dev", "test"):
        ok = [s for s in out[k] if all(set(s.words(lang)) <= known[lang] for lang in ("zh", "en"))]
        out[k] = ok[: want[k]]
    return out


def items(sentences: Iterable[Sentence], split: str, directions: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    rows = []
    sentences = list(sentences)
    for src, tgt in directions:
        for i, s in enumerate(sentences):
            d = s.reorder_distance(src)
            rows.append({
                "id": f"{split}-{src}{tgt}-{i:05d}", "src_lang": src, "tgt_lang": tgt,
                "source": s.text(src), "reference": s.text(tgt), "structure": s.structure,
                "reorder_distance": d, "reorder": d > 0, "words": s.words(src),
            })
    return rows


# -- speech -------------------------------------------------------------------------------

def default_tts_cache() -> Path:
    return Path.home() / ".cache" / "streamst" / "tts"


def cached_speech(text: str, lang: str, cache_dir: Path, speed: int) -> Path:
    """The espeak-ng wav of ``text`` (16 kHz mono PCM16), synthesised once per content hash."""
    from streamst import tts

    key = hashlib.sha256(f"{lang}\n{speed}\n{tts.VOICES.get(lang, lang)}\n{text}".encode()).hexdigest()[:24]
    path = cache_dir / key[:2] / f"{key}.wav"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.wav")
        tts.synthesize(text, lang, tmp, speed=speed)
        tmp.replace(path)
    return path


def wav_ms(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() * 1000.0 / w.getframerate()


def word_times(words: list[str], lang: str, total_ms: float, solo_ms: Callable[[str], float]) -> list[list[float]]:
    """``[start, end]`` ms per word: solo durations scaled to the utterance's ``total_ms``."""
    durations = [max(1.0, solo_ms(w)) for w in words]
    scale = total_ms / sum(durations)
    out, t = [], 0.0
    for d in durations:
        out.append([round(t, 1), round(t + d * scale, 1)])
        t += d * scale
    return out


def speak(rows: list[dict[str, Any]], out: Path, cache_dir: Path, speed: int,
          progress: Callable[[int, int], None] = lambda i, n: None) -> None:
    """Give every row ``audio`` (``wav/<id>.wav`` under ``out``) and ``word_times``."""
    (out / "wav").mkdir(parents=True, exist_ok=True)
    solo: dict[tuple[str, str], float] = {}

    def solo_ms(lang: str) -> Callable[[str], float]:
        def f(word: str) -> float:
            if (lang, word) not in solo:
                solo[(lang, word)] = wav_ms(cached_speech(word, lang, cache_dir, speed))
            return solo[(lang, word)]
        return f

    for n, row in enumerate(rows):
        src = cached_speech(row["source"], row["src_lang"], cache_dir, speed)
        dest = out / "wav" / f"{row['id']}.wav"
        shutil.copyfile(src, dest)
        row["audio"] = f"wav/{row['id']}.wav"
        row["word_times"] = word_times(row["words"], row["src_lang"], wav_ms(dest), solo_ms(row["src_lang"]))
        progress(n + 1, len(rows))


def write_corpus(out: str | Path, config: CorpusConfig, *, tts_cache: Path | None = None,
                 progress: Callable[[str, int, int], None] = lambda s, i, n: None) -> dict[str, Any]:
    """Generate and write the corpus into ``out``; return its summary (also ``out/corpus.json``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(tts_cache) if tts_cache is not None else default_tts_cache()
    sentences = generate(config)
    summary: dict[str, Any] = {"config": {**config.__dict__}, "splits": {}}
    for split in SPLITS:
        rows = items(sentences[split], split, config.directions)
        if split in config.speak:
            speak(rows, out, cache_dir, config.speed, lambda i, n, s=split: progress(s, i, n))
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                            encoding="utf-8")
        dist = [r["reorder_distance"] for r in rows]
        summary["splits"][split] = {
            "items": len(rows), "pairs": len(sentences[split]), "spoken": split in config.speak,
            "max_reorder": max(dist, default=0), "reorder_6plus": sum(1 for d in dist if d >= 6),
        }
    summary["vocabulary"] = {lang: len({w for s in sentences["train"] for w in s.words(lang)}) for lang in ("zh", "en")}
    (out / "corpus.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return summary


def read_items(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
