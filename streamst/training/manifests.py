"""Training manifests from the layouts public speech corpora ship in (``streamst manifest``).

Each reader turns one layout into :class:`Row` s (an id, a way to load the clip, source text,
reference, languages); :func:`write_manifest` decodes every clip (wav, flac, mp3, ogg through
libsndfile), mixes it to mono, resamples it to 16 kHz with soxr, writes ``wav/ID.wav`` and
one line of the eval/training manifest (``streamst/training/data.py``) per clip into
``OUT/manifest.jsonl``. ``OUT`` appears only when every clip is written (the work happens in
``OUT.partial``).

Layouts (docs/training.md "Manifests from public corpora"):

* ``covost2``: a CoVoST 2 TSV (``covost_v2.zh-CN_en.train.tsv``, or the release's
  ``covost_v2.zh-CN_en.tsv`` with a ``split`` column) with ``path``, ``sentence``,
  ``translation`` over the Common Voice ``clips/`` folder (default: ``clips/`` beside the TSV).
  The languages come from the file name.
* ``commonvoice``: a Common Voice language folder (``train.tsv``, ``dev.tsv``, ... and
  ``clips/``): ``path``, ``sentence``. Transcripts only, so the rows are transcription rows
  (``tgt_lang`` = ``src_lang``).
* ``fleurs``: FLEURS' ``data/<lang>/<split>.tsv`` (no header: id, file name, raw
  transcription, normalised transcription, characters, samples, gender) with the extracted
  ``data/<lang>/audio/<split>/*.wav``. With a target language its raw transcription of the
  same sentence ``id`` is the reference (FLEURS is n-way parallel); without, transcription rows.
* ``hf-disk``: a Hugging Face ``datasets`` dataset (or DatasetDict) written with
  ``save_to_disk``: an audio column (an ``Audio`` feature, decoded here with soundfile, not with
  ``datasets``' own decoder) and text columns (default ``sentence`` and ``translation``, the
  schema of the Hub's CoVoST 2).

Every layout problem (a missing file or column, a clip that is not there, a language that is
not in :mod:`streamst.languages`) is one :class:`~streamst.errors.UserError` line; the clips'
presence is checked before any audio is decoded.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamst.audio import SAMPLE_RATE
from streamst.errors import UserError
from streamst.languages import LANGUAGES, base

FORMATS: tuple[str, ...] = ("covost2", "commonvoice", "fleurs", "hf-disk")
MANIFEST = "manifest.jsonl"
MIN_SAMPLES = 400  # as streamst.training.data: one 25 ms fbank window
# corpus language codes whose first part is not the ISO 639-1 code of streamst.languages
_ALIASES = {"cmn": "zh", "nb": "no", "nn": "no", "tl": "fil", "fa-ir": "fa"}
csv.field_size_limit(2**24)


@dataclass(frozen=True)
class ManifestOptions:
    """What to read from a corpus. Languages are the corpus' own codes (``zh-CN``,
    ``cmn_hans_cn``) or streamst's (``zh``)."""

    fmt: str
    split: str = "train"
    src_lang: str | None = None
    tgt_lang: str | None = None
    clips: Path | None = None  # covost2 / commonvoice: the Common Voice clips folder
    audio_column: str | None = None  # hf-disk: default the first Audio feature
    source_column: str = "sentence"  # hf-disk (absent: no source text)
    reference_column: str = "translation"  # hf-disk
    limit: int | None = None  # the first N rows

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"--from takes one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")


@dataclass(frozen=True)
class Row:
    """One clip of a corpus: ``load()`` returns (float32 samples, rate), any channel count."""

    id: str
    load: Callable[[], tuple[np.ndarray, int]]
    source: str
    reference: str
    src_lang: str
    tgt_lang: str


@dataclass(frozen=True)
class ManifestResult:
    out: Path
    manifest: Path
    rows: int
    skipped: int  # rows without a reference or too short to train on
    seconds: float  # audio written, at 16 kHz


def streamst_lang(code: str, what: str) -> str:
    """A corpus language code -> streamst's (``zh-CN`` -> ``zh``, ``cmn_hans_cn`` -> ``zh``,
    ``en_us`` -> ``en``); one error line for a language streamst does not know."""
    norm = code.strip().lower().replace("_", "-")
    for key in (norm, norm.split("-")[0]):
        if key in _ALIASES:
            return _ALIASES[key]
    lang = base(norm)
    if lang not in LANGUAGES:
        raise UserError(f"unknown language {what}={code!r} (streamst knows: {', '.join(LANGUAGES)})")
    return lang


# -- readers --------------------------------------------------------------------------------
def read_rows(src: str | Path, opts: ManifestOptions) -> list[Row]:
    """The rows of ``src`` in layout ``opts.fmt``, checked (files, columns, clips, languages)."""
    src = Path(src)
    if not src.exists():
        raise UserError(f"{src}: no such file or folder")
    rows = {"covost2": _covost2, "commonvoice": _commonvoice, "fleurs": _fleurs, "hf-disk": _hf_disk}[opts.fmt](src, opts)
    if not rows:
        raise UserError(f"{src}: no {opts.fmt} rows for split {opts.split!r}")
    return rows


def _tsv(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a TSV with a header; Common Voice and CoVoST quote nothing."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: no column {missing[0]!r} (columns: {', '.join(reader.fieldnames or [])})")
        for n, row in enumerate(reader, 2):
            yield n, {k: (v or "") for k, v in row.items() if k is not None}


def _clip(clips: Path, name: str, where: str) -> Path:
    path = clips / name
    if not path.is_file() and not name.endswith(".mp3") and (clips / f"{name}.mp3").is_file():
        path = clips / f"{name}.mp3"  # early Common Voice releases list clips without the extension
    if not path.is_file():
        raise UserError(f"{where}: clip {name} not found in {clips}")
    return path


def _file_loader(path: Path) -> Callable[[], tuple[np.ndarray, int]]:
    return lambda: _decode(path, str(path))


def _covost2(src: Path, opts: ManifestOptions) -> list[Row]:
    tsv = src
    if src.is_dir():
        found = sorted(src.glob(f"covost_v2.*_*.{opts.split}.tsv")) or sorted(src.glob("covost_v2.*_*.tsv"))
        if opts.src_lang:
            found = [p for p in found if p.name.split(".")[1].split("_")[0].lower() == opts.src_lang.lower()]
        if opts.tgt_lang:
            found = [p for p in found if p.name.split(".")[1].split("_")[-1].lower() == opts.tgt_lang.lower()]
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise UserError(f"{src}: expected one covost_v2.SRC_TGT[.{opts.split}].tsv (found: {names}); "
                            "pass the TSV itself, or --src-lang/--tgt-lang")
        tsv = found[0]
    m = re.match(r"covost_v2\.([A-Za-z-]+)_([A-Za-z-]+)(?:\.(\w+))?\.tsv$", tsv.name)
    if m:
        src_code, tgt_code = m.group(1), m.group(2)
    elif opts.src_lang and opts.tgt_lang:
        src_code, tgt_code = opts.src_lang, opts.tgt_lang
    else:
        raise UserError(f"{tsv}: not named covost_v2.SRC_TGT[.SPLIT].tsv; pass --src-lang and --tgt-lang")
    src_lang, tgt_lang = streamst_lang(src_code, "src_lang"), streamst_lang(tgt_code, "tgt_lang")
    clips = opts.clips or tsv.parent / "clips"
    if not clips.is_dir():
        raise UserError(f"{clips}: no clips folder (the Common Voice clips of this CoVoST 2 TSV: --clips DIR)")
    rows: list[Row] = []
    for n, r in _tsv(tsv, ("path", "sentence", "translation")):
        if "split" in r and r["split"] and r["split"] != opts.split and not _split_matches(r["split"], opts.split):
            continue
        path = _clip(clips, r["path"], f"{tsv}:{n}")
        rows.append(Row(Path(r["path"]).stem, _file_loader(path), r["sentence"].strip(), r["translation"].strip(),
                        src_lang, tgt_lang))
        if opts.limit and len(rows) >= opts.limit:
            break
    return rows


def _split_matches(row_split: str, wanted: str) -> bool:
    """The release TSV's ``split`` column: ``train``, ``dev``, ``test``, and ``train_covost``
    (kept as train) in the full version."""
    return row_split.split("_")[0] == wanted


def _commonvoice(src: Path, opts: ManifestOptions) -> list[Row]:
    tsv = src if src.is_file() else src / f"{opts.split}.tsv"
    if not tsv.is_file():
        raise UserError(f"{tsv}: not found (a Common Voice language folder has train.tsv, dev.tsv, test.tsv and clips/)")
    clips = opts.clips or tsv.parent / "clips"
    if not clips.is_dir():
        raise UserError(f"{clips}: no clips folder (--clips DIR)")
    rows: list[Row] = []
    lang = streamst_lang(opts.src_lang, "src_lang") if opts.src_lang else None
    for n, r in _tsv(tsv, ("path", "sentence")):
        where = f"{tsv}:{n}"
        row_lang = lang
        if row_lang is None:
            code = r.get("locale") or tsv.parent.name  # releases since v7 carry the locale; else the folder name
            row_lang = streamst_lang(code, "src_lang (Common Voice locale; or pass --src-lang)")
        path = _clip(clips, r["path"], where)
        text = r["sentence"].strip()
        rows.append(Row(Path(r["path"]).stem, _file_loader(path), text, text, row_lang, row_lang))
        if opts.limit and len(rows) >= opts.limit:
            break
    return rows


FLEURS_FIELDS = 7  # id, file name, raw transcription, transcription, characters, samples, gender


def _fleurs_root(src: Path) -> Path:
    return src / "data" if (src / "data").is_dir() else src


def _fleurs_tsv(root: Path, lang: str, split: str) -> Iterator[tuple[int, list[str], Path]]:
    tsv = root / lang / f"{split}.tsv"
    if not tsv.is_file():
        langs = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not (root / lang).is_dir():
            raise UserError(f"{root}: no FLEURS language folder {lang!r} (found: {', '.join(langs[:12]) or 'none'})")
        raise UserError(f"{tsv}: not found (a FLEURS language folder has train.tsv, dev.tsv, test.tsv and audio/)")
    with open(tsv, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != FLEURS_FIELDS:
                raise UserError(f"{tsv}:{n}: expected {FLEURS_FIELDS} tab-separated fields (id, file name, raw "
                                f"transcription, transcription, characters, samples, gender), got {len(fields)}")
            yield n, fields, tsv


def _fleurs(src: Path, opts: ManifestOptions) -> list[Row]:
    if not opts.src_lang:
        raise UserError("--from fleurs needs --src-lang (a FLEURS folder name such as cmn_hans_cn)")
    root = _fleurs_root(src)
    src_lang = streamst_lang(opts.src_lang, "src_lang")
    tgt_lang = streamst_lang(opts.tgt_lang, "tgt_lang") if opts.tgt_lang else src_lang
    if not (root / opts.src_lang).is_dir():
        langs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise UserError(f"{root}: no FLEURS language folder {opts.src_lang!r} (found: {', '.join(langs[:12]) or 'none'})")
    refs: dict[str, str] = {}
    if opts.tgt_lang and opts.tgt_lang != opts.src_lang:
        # the target language's sentence of the same id, from any split it is in
        for split in ("train", "dev", "test"):
            if (root / opts.tgt_lang / f"{split}.tsv").is_file() or split == opts.split:
                for _, f, _ in _fleurs_tsv(root, opts.tgt_lang, split):
                    refs.setdefault(f[0], f[2].strip())
    audio = root / opts.src_lang / "audio" / opts.split
    if not audio.is_dir():
        tar = audio.with_name(f"{opts.split}.tar.gz")
        hint = f" (extract {tar}: tar -xzf {tar.name} in {tar.parent})" if tar.is_file() else ""
        raise UserError(f"{audio}: no audio folder{hint}")
    rows: list[Row] = []
    for n, f, tsv in _fleurs_tsv(root, opts.src_lang, opts.split):
        if refs:
            if f[0] not in refs:
                continue  # a sentence the target language did not record
            reference = refs[f[0]]
        else:
            reference = f[2].strip()
        path = _clip(audio, f[1], f"{tsv}:{n}")
        rows.append(Row(Path(f[1]).stem, _file_loader(path), f[2].strip(), reference, src_lang, tgt_lang))
        if opts.limit and len(rows) >= opts.limit:
            break
    if opts.tgt_lang and opts.tgt_lang != opts.src_lang and not rows:
        raise UserError(f"{root}: no sentence id of {opts.src_lang}/{opts.split}.tsv is in {opts.tgt_lang}'s TSVs")
    return rows


def _hf_disk(src: Path, opts: ManifestOptions) -> list[Row]:
    try:
        import datasets
    except ImportError as e:
        raise UserError("--from hf-disk needs the datasets package: pip install 'streamst[train]'") from e
    if not opts.src_lang or not opts.tgt_lang:
        raise UserError("--from hf-disk needs --src-lang and --tgt-lang (the dataset does not say)")
    src_lang, tgt_lang = streamst_lang(opts.src_lang, "src_lang"), streamst_lang(opts.tgt_lang, "tgt_lang")
    try:
        ds = datasets.load_from_disk(str(src))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"{src}: not a dataset written by save_to_disk ({str(e).splitlines()[0]})") from e
    if isinstance(ds, datasets.DatasetDict):
        if opts.split not in ds:
            raise UserError(f"{src}: no split {opts.split!r} (splits: {', '.join(ds)})")
        ds = ds[opts.split]
    features = ds.features
    audio_col = opts.audio_column or next((k for k, v in features.items() if isinstance(v, datasets.Audio)), "audio")
    for col in (audio_col, opts.reference_column):
        if col not in features:
            raise UserError(f"{src}: no column {col!r} (columns: {', '.join(features)})")
    if isinstance(features[audio_col], datasets.Audio):
        ds = ds.cast_column(audio_col, datasets.Audio(decode=False))  # {bytes, path}: decoded by soundfile here
    has_source = opts.source_column in features
    n = len(ds) if opts.limit is None else min(len(ds), opts.limit)
    rows: list[Row] = []
    for i in range(n):
        rec = ds[i]
        rid = str(rec.get("id") or Path(str((rec[audio_col] or {}).get("path") or "")).stem or i)
        rows.append(Row(_safe_id(rid, i), _hf_loader(ds, i, audio_col, src), str(rec[opts.source_column] or "").strip()
                        if has_source else "", str(rec[opts.reference_column] or "").strip(), src_lang, tgt_lang))
    return rows


def _hf_loader(ds, i: int, col: str, src: Path) -> Callable[[], tuple[np.ndarray, int]]:
    def load() -> tuple[np.ndarray, int]:
        value = ds[i][col]
        where = f"{src} row {i}"
        if isinstance(value, dict) and value.get("array") is not None:
            return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
        if isinstance(value, dict) and value.get("bytes"):
            return _decode(io.BytesIO(value["bytes"]), where)
        if isinstance(value, dict) and value.get("path"):
            path = Path(value["path"])
            path = path if path.is_absolute() else src / path
            if not path.is_file():
                raise UserError(f"{where}: audio file {path} not found")
            return _decode(path, where)
        raise UserError(f"{where}: column {col!r} holds no audio (bytes, path or array)")

    return load


def _safe_id(rid: str, i: int) -> str:
    safe = re.sub(r"[^\w.-]+", "_", rid).strip("._")
    return safe or str(i)


# -- writing --------------------------------------------------------------------------------
def _decode(src, where: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, rate = sf.read(src, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise UserError(f"{where}: not a readable audio file ({e})") from e
    return data, int(rate)


def to_16k_mono(samples: np.ndarray, rate: int) -> np.ndarray:
    """Any channel count and rate -> float32 mono at 16 kHz (soxr, high quality)."""
    import soxr

    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


def write_manifest(rows: list[Row], out: str | Path, *, force: bool = False, absolute: bool = False,
                   progress: Callable[[int, int], None] = lambda done, total: None) -> ManifestResult:
    """Decode and resample every row into ``OUT/wav/``, write ``OUT/manifest.jsonl`` (audio
    paths relative to it, or with ``absolute`` the final absolute paths, so that manifests
    can be concatenated)."""
    import soundfile as sf

    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if out.exists() and not force:
        raise UserError(f"{out} already exists; choose another --out, or --force to replace it")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "wav").mkdir(parents=True)
    written, skipped, seconds, seen = 0, 0, 0.0, set()
    try:
        with open(partial / MANIFEST, "w", encoding="utf-8") as m:
            for k, row in enumerate(rows):
                progress(k, len(rows))
                if not row.reference:
                    skipped += 1
                    continue
                x = to_16k_mono(*row.load())
                if x.size < MIN_SAMPLES:
                    skipped += 1
                    continue
                rid = row.id if row.id not in seen else f"{row.id}-{k}"
                seen.add(rid)
                rel = f"wav/{rid}.wav"
                sf.write(str(partial / rel), np.clip(x, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
                line = {"id": rid, "audio": str(out.resolve() / rel) if absolute else rel, "source": row.source, "reference": row.reference,
                        "src_lang": row.src_lang, "tgt_lang": row.tgt_lang}
                m.write(json.dumps(line, ensure_ascii=False) + "\n")
                written += 1
                seconds += x.size / SAMPLE_RATE
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if not written:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError("no row has both a reference and audio long enough to train on")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return ManifestResult(out, out / MANIFEST, written, skipped, round(seconds, 2))
