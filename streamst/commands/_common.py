"""Helpers shared by the file-streaming commands (transcribe, translate, eval): arguments,
input checks made before any model loads, the streaming loop, progress bars and the
human-readable figures."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from wcwidth import wcswidth, wcwidth

from streamst.audio import StreamResampler, read_audio
from streamst.errors import AudioFormatError, UserError
from streamst.languages import LANGUAGES

# the translation paths in display order; a path not listed here is shown after these
PATH_ORDER: tuple[str, ...] = ("e2e", "simul", "cascade")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="default", help="model profile: a name (streamst models list) or a JSON file")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--quantize", default="none", choices=("none", "int8"),
                   help="int8: dynamic int8 Linear layers in the ASR, MT and e2e models (CPU; about 2x faster at real sizes)")
    add_threads_arg(p)
    add_engine_args(p)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """``--engine`` / ``--engine-url`` (``RuntimeOptions.engine``): what runs the decoders."""
    p.add_argument("--engine", default=None, choices=("local", "vllm"),
                   help="what runs the MT and e2e decoders: local (in-process, the default) or vllm "
                        "(servers started by `streamst engine start`); default: the profile's engine")
    p.add_argument("--engine-url", default=None, metavar="URL[,URL]",
                   help="the vLLM servers of --engine vllm (the line `streamst engine start` prints)")


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads`` (``RuntimeOptions.threads``), the same on every command that loads models."""
    p.add_argument("--threads", type=threads_arg, default=None,
                   help="torch threads per model call on CPU (default 1, or $STREAMST_TORCH_THREADS; one "
                        "real-size session on an idle machine: the number of cores)")


def add_e2e_lean_arg(p: argparse.ArgumentParser) -> None:
    """``--e2e-lean`` (``PipelineConfig.e2e_lean``): translate, serve, bench server."""
    p.add_argument("--e2e-lean", action="store_true",
                   help="e2e path: the cost levers that let one real-size session keep up on a small CPU "
                        "(incremental final step, shorter encoder context, lookahead 1); outputs differ from "
                        "the offline decode")


def threads_arg(text: str) -> int:
    """argparse type of --threads: an integer >= 0."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return n


def add_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-ms", type=int, default=600, help="streaming chunk (multiple of 60 ms)")
    p.add_argument("--realtime", action="store_true", help="feed audio at real-time pace")
    p.add_argument("--rate", type=int, default=None, help="declared sample rate; must match the file")
    p.add_argument("--json", action="store_true",
                   help="one JSON event per line, then a summary (no progress bar, no live lines)")


# ------------------------------------------------------------------------------ input checks
def check_languages(src: str, tgts: Sequence[str], *, src_flag: str = "--src", tgt_flag: str = "--tgt") -> tuple[str, ...]:
    """Validate a source and target languages (cheap: before any model loads); returns the
    targets as a tuple. Each message names the flag and the values that would work."""
    known = ", ".join(LANGUAGES)
    if src not in LANGUAGES:
        raise UserError(f"{src_flag} {src!r} is not a supported language (choose from {known})")
    tgts = tuple(t.strip() for t in tgts if t.strip())
    if not tgts:
        raise UserError(f"{tgt_flag} needs at least one language, e.g. {tgt_flag} en")
    for t in tgts:
        if t not in LANGUAGES:
            raise UserError(f"{tgt_flag} {t!r} is not a supported language (choose from {known})")
    if len(set(tgts)) != len(tgts):
        raise UserError(f"{tgt_flag} lists a language twice: {','.join(tgts)}")
    if src in tgts:
        others = ",".join(t for t in tgts if t != src) or ("en" if src != "en" else "zh")
        raise UserError(f"{tgt_flag} includes the source language {src!r}: translate into other languages "
                        f"(e.g. {tgt_flag} {others})")
    return tgts


@dataclass(frozen=True)
class AudioInput:
    """An audio file read and validated up front (before models load)."""

    path: Path
    samples: np.ndarray  # float32 mono at the file's own rate
    rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate

    def chunks(self, chunk_ms: int, *, realtime: bool = False) -> Iterator[np.ndarray]:
        """16 kHz float32 chunks of ``chunk_ms`` (resampled as needed). With ``realtime``
        each chunk is yielded no earlier than its time in the audio."""
        resample = StreamResampler(self.rate)
        step = self.rate * chunk_ms // 1000
        t0 = time.monotonic()
        for i in range(0, len(self.samples), step):
            if realtime:
                delay = t0 + (i + step) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing a replay, not synchronisation
            yield resample(self.samples[i : i + step])


def open_audio(path: str | Path, *, declared_rate: int | None = None) -> AudioInput:
    """Read ``path``; a missing file, a directory or an unreadable file is one clear line."""
    p = Path(path)
    if p.is_dir():
        raise AudioFormatError(f"{p} is a directory: give an audio file (wav, flac, ogg), e.g. {p}/talk.wav")
    if not p.exists():
        raise AudioFormatError(f"{p}: no such file (check the path; `streamst testset --out DIR` makes sample wavs)")
    samples, rate = read_audio(p, declared_rate=declared_rate)
    return AudioInput(p, samples, rate)


def file_chunks(path: str | Path, chunk_ms: int, *, declared_rate: int | None = None,
                realtime: bool = False) -> Iterator[np.ndarray]:
    """Yield 16 kHz float32 chunks of ``chunk_ms`` from an audio file (see :class:`AudioInput`)."""
    return open_audio(path, declared_rate=declared_rate).chunks(chunk_ms, realtime=realtime)


# ------------------------------------------------------------------------------ output
def emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        sys.stdout.flush()


def interactive(as_json: bool = False) -> bool:
    """Progress bars and live lines only for a person at a terminal: never with ``--json``,
    never when stdout or stderr goes to a file or a pipe."""
    return not as_json and _isatty(sys.stdout) and _isatty(sys.stderr)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(total: float | None, *, unit: str, desc: str = "", enabled: bool, **kw: Any):
    """A tqdm bar on stderr, or a silent stand-in when not ``enabled`` (same methods)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                leave=False, **kw)


def quiet_libraries() -> None:
    """No per-file progress bars from transformers while models load (ours are enough);
    FunASR's notices are filtered where it is loaded (``asr/funasr_load.py``)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def roles_for(paths: Sequence[str] | None) -> set[str]:
    """The profile roles the given translation paths load (None: transcription only)."""
    roles = {"asr", "vad"}
    paths = set(paths or ())
    if paths & {"simul", "cascade"}:
        roles.add("mt")
    if "cascade" in paths:
        roles.add("punc")
    if "e2e" in paths:
        roles.add("e2e")
    return roles


def load_models(profile: str, device: str, paths: Sequence[str] | None = None, *, quantize: str = "none",
                threads: int | None = None, engine: str | None = None, engine_url: str | None = None):
    """The shared models of ``profile`` (loaded lazily), after checking that it can serve
    ``paths`` and that the offline models those need are built: one line naming the profile
    and the command to run otherwise."""
    from streamst.errors import ModelNotFoundError
    from streamst.loading import Models, RuntimeOptions, engine_options
    from streamst.profiles import load_profile

    prof = load_profile(profile)
    models = Models(prof, RuntimeOptions(device=device, quantize=quantize, threads=threads,
                                         **engine_options(prof, engine, engine_url)))
    if paths and hasattr(models, "require"):
        models.require(paths)  # e.g. mode e2e on a profile without an e2e model
    needed = roles_for(paths)
    missing = [s for s in models.profile.missing(models.root) if s.role in needed]
    if missing:
        roles = ", ".join(f"{s.role} ({s.kind})" for s in missing)
        raise ModelNotFoundError(f"profile '{models.profile.name}': {roles} not built yet; "
                                 f"run `streamst models build --profile {models.profile.name}`")
    quiet_libraries()
    return models


def stream_file(processor, chunks: Iterator[np.ndarray], handle, *,
                on_chunk: Callable[[int], None] | None = None) -> None:
    """Feed ``chunks`` to a three-verb processor (insert_audio / process / finish), passing
    the events of each step to ``handle``; ``on_chunk(samples)`` after each chunk (progress)."""
    for chunk in chunks:
        processor.insert_audio(chunk)
        handle(processor.process())
        if on_chunk is not None:
            on_chunk(len(chunk))
    handle(processor.finish())


def fmt_s(ms: float | None, digits: int = 2) -> str:
    """Milliseconds as seconds for people; ``-`` when missing."""
    return f"{ms / 1000:.{digits}f}" if isinstance(ms, (int, float)) and not isinstance(ms, bool) else "-"


def ordered_paths(paths) -> list[str]:
    """Path names in display order (e2e, simul, cascade, then any other, alphabetically)."""
    rank = {p: i for i, p in enumerate(PATH_ORDER)}
    return sorted(set(paths), key=lambda p: (rank.get(p, len(rank)), p))


def result_paths(result: Any) -> dict[str, str]:
    """{path: translation} of one utterance result, for every path it has output for.

    A result names its paths either as attributes (``simul``, ``cascade``, ``e2e``...) or as
    a ``texts``/``outputs`` mapping; both are read, so a new path needs no change here. A
    result with a ``path`` (pipeline results: one per streaming path) has that path's output
    and, for the simul path, the cascade's."""
    out: dict[str, str] = {}
    for attr in ("texts", "outputs"):
        m = getattr(result, attr, None)
        if isinstance(m, Mapping):
            out.update({str(k): str(v) for k, v in m.items() if v is not None})
    for name in PATH_ORDER:
        v = getattr(result, name, None)
        if isinstance(v, str):
            out.setdefault(name, v)
    return {p: out[p] for p in ordered_paths(out)}


def result_metrics(result: Any) -> dict[str, dict[str, float]]:
    """{path: {AL, LAAL, ...}} of one utterance result. Metrics keyed by metric name belong
    to the streaming path(s) of the result; keyed by path, they are taken as they are."""
    m = getattr(result, "metrics", None) or {}
    if m and all(isinstance(v, Mapping) for v in m.values()):
        return {str(k): dict(v) for k, v in m.items()}
    if not m:
        return {}
    own = getattr(result, "path", None)  # the streaming path the result's delays belong to
    if isinstance(own, str):
        return {own: dict(m)}
    streaming = [p for p in result_paths(result) if p != "cascade"] or ["simul"]
    return {streaming[0]: dict(m)}


def utterance_table(results: Sequence[Any], out: TextIO) -> None:
    """Per-utterance latency (s, relative to the utterance start) and retention, one row per
    utterance, target language and path with latency figures; then the means."""
    rows = []
    for r in results:
        for path, m in result_metrics(r).items():
            rows.append((r, path, m))
    if not rows:
        out.write("no utterance produced a streaming translation (no latency to report)\n")
        return
    head = f"  {'utt':>4}  {'time (s)':<13} {'lang':<5} {'path':<8} {'AL':>6} {'LAAL':>6} {'AL_CA':>6} {'LAAL_CA':>7}  retention"
    out.write(head + "\n")
    sums: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r, path, m in rows:
        ret = getattr(r, "retention_proxy", None)
        ret_s = f"{ret:.2f}*" if isinstance(ret, (int, float)) else "-"
        span = f"{r.start_ms / 1000:.1f}-{r.end_ms / 1000:.1f}"
        out.write(f"  {r.utterance:>4}  {span:<13} {r.language:<5} {path:<8} {fmt_s(m.get('AL')):>6} "
                  f"{fmt_s(m.get('LAAL')):>6} {fmt_s(m.get('AL_CA')):>6} {fmt_s(m.get('LAAL_CA')):>7}  {ret_s}\n")
        sums.setdefault((r.language, path), []).append(m)
    for (lang, path), ms in sums.items():
        mean = {k: sum(x[k] for x in ms if k in x) / max(1, sum(1 for x in ms if k in x))
                for k in ("AL", "LAAL", "AL_CA", "LAAL_CA") if any(k in x for x in ms)}
        out.write(f"  {'mean':>4}  {'':<13} {lang:<5} {path:<8} {fmt_s(mean.get('AL')):>6} {fmt_s(mean.get('LAAL')):>6} "
                  f"{fmt_s(mean.get('AL_CA')):>6} {fmt_s(mean.get('LAAL_CA')):>7}\n")
    out.write("  latency in seconds of speech from each utterance's start (AL: average lag behind an ideal "
              "interpreter; LAAL: length-adaptive; _CA: plus processing time)\n")
    if any(isinstance(getattr(r, "retention_proxy", None), (int, float)) for r, _, _ in rows):
        out.write("  retention*: chrF(streaming, cascade)/100, reference-free; 1.0 = the sentence-level cascade's words\n")


def one_line(text: str) -> str:
    """Text as one display line: newlines, tabs and runs of spaces become one space."""
    return " ".join(str(text).split())


def display_width(text: str) -> int:
    """Terminal columns of ``text`` (wcwidth: wide CJK = 2, combining marks = 0; control
    characters, which wcwidth reports as -1, count as 0)."""
    n = wcswidth(text)
    return n if n >= 0 else sum(max(0, wcwidth(c)) for c in text)


def clip_left(text: str, width: int) -> str:
    """The end of ``text`` within ``width`` display columns (CJK counts two), ``…`` in front
    when cut: a live caption shows its newest words."""
    if display_width(text) <= width:
        return text
    out, left = [], width - 1  # a column for the ellipsis
    for c in reversed(text):
        if display_width(c) > left:
            break
        out.append(c)
        left -= display_width(c)
    return "…" + "".join(reversed(out))


class LiveLines:
    """Output of a file-streaming command for a person: finished lines on stdout and, at a
    terminal, one bottom line with a progress bar (audio seconds done, time left) led by the
    caption being made. Not at a terminal: the finished lines only, no bar, no rewriting."""

    BAR = "{desc}{percentage:3.0f}%|{bar:12}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]"

    def __init__(self, total_s: float, *, enabled: bool, out: TextIO | None = None) -> None:
        self.enabled = enabled
        self.out = out or sys.stdout
        self.bar = progress(round(total_s, 1), unit="s", enabled=enabled, bar_format=self.BAR)

    def line(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text, file=self.out)
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def live(self, text: str) -> None:
        if not self.enabled:
            return
        import shutil

        room = shutil.get_terminal_size((100, 24)).columns - 48  # what the bar itself takes
        self.bar.set_description_str(clip_left(text, room) + " " if room > 10 else "", refresh=True)

    def advance(self, seconds: float) -> None:
        self.bar.update(min(seconds, max(0.0, (self.bar.total or 0) - self.bar.n)))

    def close(self) -> None:
        self.bar.close()
