"""The small bilingual test set shipped with streamst, and its synthetic speech.

``streamst/data/testset.jsonl`` holds sentence pairs written for this project (zh->en and
en->zh), one JSON object per line: ``id``, ``src_lang``, ``tgt_lang``, ``source``,
``reference`` and ``reorder`` -- true where a good translation must move something heard
early to the end (pre-nominal modifiers, relative clauses, 是...的, time/place adverbials),
the cases where a wait-k policy should wait.

:func:`synthesize_testset` speaks the sources with espeak-ng (:mod:`streamst.tts`) and
writes a manifest: one JSON line per utterance with ``audio`` (wav path relative to the
manifest), ``source``, ``reference``, ``src_lang``, ``tgt_lang``, ``id`` and ``reorder``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from streamst import tts

TESTSET_PATH = Path(__file__).parent / "data" / "testset.jsonl"
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class TestPair:
    """One sentence pair of the test set."""

    __test__ = False  # not a pytest test class

    id: str
    src_lang: str
    tgt_lang: str
    source: str
    reference: str
    reorder: bool

    @property
    def pair(self) -> str:
        return f"{self.src_lang}-{self.tgt_lang}"


def load_testset(langs: Iterable[str] | None = None, limit: int | None = None) -> list[TestPair]:
    """The test set, optionally filtered.

    ``langs``: keep pairs whose direction (``"zh-en"``) or source language (``"zh"``) is
    listed. ``limit``: at most this many pairs *per direction*, in file order.
    """
    text = TESTSET_PATH.read_text(encoding="utf-8")
    pairs = [TestPair(**json.loads(line)) for line in text.splitlines() if line.strip()]
    if langs is not None:
        wanted = set(langs)
        known = {p.pair for p in pairs} | {p.src_lang for p in pairs}
        unknown = wanted - known
        if unknown:
            raise ValueError(f"no test pairs for {sorted(unknown)}; have {sorted(known)}")
        pairs = [p for p in pairs if p.pair in wanted or p.src_lang in wanted]
    if limit is not None:
        counts: dict[str, int] = {}
        kept = []
        for p in pairs:
            if counts.get(p.pair, 0) < limit:
                counts[p.pair] = counts.get(p.pair, 0) + 1
                kept.append(p)
        pairs = kept
    return pairs


def synthesize_testset(
    out_dir: str | Path, langs: Iterable[str] | None = None, limit: int | None = None
) -> Path:
    """Speak the test set's sources into ``out_dir/wav/<id>.wav``; return the manifest path.

    ``langs`` and ``limit`` as in :func:`load_testset`. Needs espeak-ng and sox
    (:class:`streamst.errors.UserError` otherwise). Existing wavs are overwritten.
    """
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    lines = []
    for p in load_testset(langs, limit):
        wav = Path("wav") / f"{p.id}.wav"
        tts.synthesize(p.source, p.src_lang, out / wav)
        entry = {"audio": wav.as_posix(), **asdict(p)}
        lines.append(json.dumps(entry, ensure_ascii=False))
    manifest.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return manifest
