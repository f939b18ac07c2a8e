"""``streamst eval MANIFEST``: stream a test set through the pipeline for several policy
settings; write report.json, report.md, curve.png and SimulEval logs.

Manifest: JSONL, one utterance a line with ``audio`` (wav path relative to the manifest),
``source``, ``reference``, ``src_lang``, ``tgt_lang`` (``id`` optional). ``streamst testset
--out DIR`` synthesises the project's own test set into such a manifest.

Every path of ``--mode`` is measured: the streaming paths (e2e, simul...) once per policy
setting, the sentence-level cascade once (it does not depend on the policy) as the quality
reference. Each (setting, manifest line) result is appended to ``OUT/results.jsonl`` as soon
as it is done; a second run with the same arguments reuses them and computes only what is
missing (``--fresh`` starts over). At a terminal a progress bar counts items and audio and
estimates the time left.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from streamst import pipeline
from streamst.commands._common import (
    add_model_args,
    check_languages,
    interactive,
    load_models,
    open_audio,
    progress,
    result_paths,
    stream_file,
)
from streamst.errors import UserError
from streamst.evaluation import SettingResult, UtteranceResult, write_report
from streamst.loading import Models
from streamst.commands._speakers import add_speaker_args, session_speakers
from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.policy.config import POLICY_NAMES, POLICY_OPTIONS, PolicyOption
from streamst.speak.cli import speech_record, speech_report
from streamst.text import join_units, split_units

RESULTS = "results.jsonl"
CASCADE = "cascade"  # the policy-independent path: measured once, the retention reference


@dataclass(frozen=True)
class ManifestLine:
    id: str
    audio: Path
    source: str
    reference: str | None
    src_lang: str
    tgt_lang: str


def read_manifest(path: str | Path) -> list[ManifestLine]:
    path = Path(path)
    if path.is_dir():
        hint = f" (did you mean {path / 'manifest.jsonl'}?)" if (path / "manifest.jsonl").is_file() else ""
        raise UserError(f"{path} is a directory: give the manifest file{hint}")
    if not path.is_file():
        raise UserError(f"{path}: no such manifest (make one with `streamst testset --out DIR`)")
    lines = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            audio = path.parent / obj["audio"]
            line = ManifestLine(str(obj.get("id", n)), audio, obj.get("source", ""), obj.get("reference"),
                                obj["src_lang"], obj["tgt_lang"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(f"{path}:{n}: bad manifest line ({type(e).__name__}: {e}); each line needs "
                            "audio, src_lang, tgt_lang (source, reference, id optional)") from e
        if not audio.is_file():
            raise UserError(f"{path}:{n}: audio file {audio} not found (paths are relative to the manifest)")
        try:
            check_languages(line.src_lang, [line.tgt_lang], src_flag="src_lang", tgt_flag="tgt_lang")
        except UserError as e:
            raise UserError(f"{path}:{n}: {e}") from e
        lines.append(line)
    if not lines:
        raise UserError(f"{path}: the manifest is empty")
    return lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="latency/quality evaluation of policy settings on a manifest")
    p.add_argument("manifest")
    p.add_argument("--policy", action="append", choices=POLICY_NAMES,
                   help="policy to evaluate (repeatable; default reorder-aware)")
    for o in POLICY_OPTIONS:  # every declared policy option is a sweep: --k 1,3,5,7 is one setting per value
        p.add_argument(f"--{o.name.replace('_', '-')}", default=None, metavar="V,...",
                       help=f"comma-separated {o.name} values, one setting each ({o.help})")
    # the pipeline's own list: a new mode there is a new choice here
    p.add_argument("--mode", default="both", choices=pipeline.MODES,
                   help="translation path(s) to measure (default both: simul + the cascade reference)")
    p.add_argument("--chunk-ms", type=int, default=600)
    p.add_argument("--limit", type=int, default=None, help="first N manifest lines only")
    p.add_argument("--out", required=True, help="output folder (results.jsonl there is reused: see --fresh)")
    p.add_argument("--fresh", action="store_true", help="ignore results of an earlier run in --out")
    p.add_argument("--speak", action="store_true",
                   help="also speak each item's translation (profile's tts engine) and report the speech-output delay")
    add_model_args(p)
    add_speaker_args(p)  # a speaker label per utterance, counted per manifest line in the report
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """One setting per policy and combination of swept option values (an option counts only
    for the policies that read it: local-agreement ignores --k)."""
    sweeps = [(o, _values(o, getattr(args, o.name))) for o in POLICY_OPTIONS if getattr(args, o.name, None)]
    out = []
    for pol in args.policy or ["reorder-aware"]:
        for combo in itertools.product(*([(o, v) for v in vals] for o, vals in sweeps if pol in o.policies)):
            out.append((pol + "".join(f"-{o.name}{v}" for o, v in combo), {"policy": pol, **{o.name: v for o, v in combo}}))
    return out


def _values(o: PolicyOption, text: str) -> list[Any]:
    parse = (lambda t: {"true": True, "false": False}[t.strip().lower()]) if o.type is bool else o.type
    try:
        return [parse(t) for t in text.split(",")]
    except (ValueError, KeyError) as e:
        kind = {int: "integers", float: "numbers", bool: "true/false"}[o.type]
        raise UserError(f"--{o.name.replace('_', '-')} takes comma-separated {kind}, e.g. --k 1,3,5; got {text!r}") from e


def pipeline_config(line: ManifestLine, params: dict[str, Any], mode: str, chunk_ms: int) -> PipelineConfig:
    overrides = {k: v for k, v in params.items() if k != "policy"}
    return PipelineConfig.create(line.src_lang, line.tgt_lang, mode=mode, policy=params["policy"],
                                 chunk_ms=chunk_ms, **overrides)


def run_one(models: Models, line: ManifestLine, config: PipelineConfig, chunk_ms: int,
            on_events=lambda events: None, speakers: Any = None) -> tuple[Any, int]:
    """Stream one manifest line; return (results of its utterances, audio ms). ``speakers``:
    the session's :class:`~streamst.speakers.turns.SpeakerTurns` (``--speakers``)."""
    session = TranslationSession(models, config, speakers=speakers)
    stream_file(session, open_audio(line.audio).chunks(chunk_ms), on_events)
    return list(session.results), session.audio_ms


def path_trace(r: Any, path: str) -> tuple[str | None, list[float], list[float], list[str], list[str]]:
    """(text, delays, elapsed, displays, commits) of one path in one pipeline utterance result.

    A pipeline result belongs to one streaming path (``r.path``: its delays, displays and
    commits); the simul result also carries the cascade's sentence, all of whose units are
    committed at ``cascade_delay_ms``."""
    text = result_paths(r).get(path)
    if path == CASCADE:
        n = len(split_units(text or "", r.language))
        delay = getattr(r, "cascade_delay_ms", None)
        return text, [float(delay if delay is not None else r.end_ms)] * n, [], [], []
    return text, list(r.delays_ms), list(r.elapsed_ms), list(r.displays), list(r.commits)


def belongs(r: Any, path: str) -> bool:
    """Whether pipeline result ``r`` holds ``path``'s output (one result per streaming path;
    the cascade's sentence rides on the simul one)."""
    own = getattr(r, "path", "simul")
    return own == ("simul" if path == CASCADE else path)


def merge(line: ManifestLine, results, audio_ms: int, path: str = "simul") -> UtteranceResult:
    """All VAD utterances of one manifest line as one SimulEval instance (stream times)."""
    lang = line.tgt_lang
    units_all, delays, elapsed, displays, commits = [], [], [], [], []
    for r in (r for r in results if belongs(r, path)):
        text, d, e, shown, comm = path_trace(r, path)
        units = split_units(text or "", lang)
        units_all += units
        delays += d[: len(units)]
        elapsed += e[: len(units)]
        prefix = join_units(units_all[: len(units_all) - len(units)], lang)
        displays += [f"{prefix} {x}".strip() for x in shown]
        commits += [f"{prefix} {c}".strip() for c in comm]
    return UtteranceResult(
        id=line.id, src_lang=line.src_lang, tgt_lang=lang, prediction=join_units(units_all, lang),
        delays=delays, elapsed=elapsed if len(elapsed) == len(delays) else [], source_length=float(audio_ms),
        reference=line.reference, cascade=None, displays=displays, committed=commits, source=str(line.audio),
    )


class ResultStore:
    """``results.jsonl``: one finished (setting, manifest line) per line, appended at once, so
    an interrupted eval resumes where it stopped."""

    def __init__(self, path: Path, *, fresh: bool) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if fresh and path.exists():
            path.unlink()
        if path.is_file():
            for raw in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(raw)
                    self.records[rec["key"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by an interruption: that item is computed again

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, rec: dict[str, Any]) -> None:
        self.records[rec["key"]] = rec
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def item_key(args: argparse.Namespace, name: str, params: dict[str, Any], line: ManifestLine) -> str:
    audio = line.audio.stat()
    ident = {"profile": args.profile, "chunk_ms": args.chunk_ms, "mode": args.mode, "setting": name,
             "params": params, "id": line.id, "audio": str(line.audio.resolve()), "size": audio.st_size,
             "src": line.src_lang, "tgt": line.tgt_lang, "reference": line.reference}
    return hashlib.sha1(json.dumps(ident, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:20]


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    lines = read_manifest(args.manifest)[: args.limit]
    settings = settings_from_args(args)
    if args.mode == CASCADE:
        settings = settings[:1]  # the cascade does not depend on the policy
    # every setting and direction is checked before any model loads
    for name, params in settings:
        for line in {(x.src_lang, x.tgt_lang): x for x in lines}.values():
            try:
                pipeline_config(line, params, args.mode, args.chunk_ms)
            except ValueError as e:
                raise UserError(f"setting {name}: {e}") from e
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file: give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out_dir / RESULTS, fresh=args.fresh)
    durations = {line.id: open_audio(line.audio).duration_s for line in lines}
    items = [(name, params, line, item_key(args, name, params, line)) for name, params in settings for line in lines]
    resumed = sum(1 for *_, key in items if store.get(key) is not None)
    live = interactive()
    if resumed:
        print(f"eval: reusing {resumed} of {len(items)} results from {store.path} (--fresh to start over)",
              file=sys.stderr)
    models = load_models(args.profile, args.device, quantize=args.quantize, threads=args.threads,
                         engine=args.engine, engine_url=args.engine_url) if resumed < len(items) else None
    total_s = sum(durations[line.id] for *_, line, _ in items)
    done_s = sum(durations[line.id] for *_, line, key in items if store.get(key) is not None)
    bar = progress(round(total_s, 1), unit="s", enabled=live, initial=round(done_s, 1),
                   bar_format="{desc} {percentage:3.0f}%|{bar:16}| {n:.0f}/{total:.0f} s audio "
                              "[{elapsed}<{remaining}]")
    t0 = time.perf_counter()
    n_done = resumed
    try:
        for name, params, line, key in items:
            if store.get(key) is not None:
                continue
            bar.set_description_str(f"eval {n_done + 1}/{len(items)} {name} {line.id}", refresh=True)
            assert models is not None
            t_item = time.perf_counter()
            config = pipeline_config(line, params, args.mode, args.chunk_ms)
            events: list = []
            spk = session_speakers(args, models)
            results, audio_ms = run_one(models, line, config, args.chunk_ms, events.extend if args.speak else (lambda e: None),
                                        speakers=spk)
            paths = sorted({p for r in results for p in result_paths(r)})
            store.put({"key": key, "setting": name, "id": line.id, "audio_ms": audio_ms,
                       "wall_s": round(time.perf_counter() - t_item, 3),
                       "paths": {p: asdict(merge(line, results, audio_ms, p)) for p in paths},
                       **({"speech": speech_record(models.tts, events, line.tgt_lang, config.paths[0])}
                          if args.speak else {}),
                       **({"speakers": spk.summary(results)} if spk is not None else {})})
            n_done += 1
            bar.update(min(durations[line.id], bar.total - bar.n))
    finally:
        bar.close()
    wall = time.perf_counter() - t0

    meta = run_meta(args, lines, models, wall, resumed, len(items))
    spoken = [rec["speech"] for *_, key in items if "speech" in (rec := store.get(key) or {})]
    if spoken:  # eval --speak: the speech-output delay beside the text latency (streamst/speak)
        meta["speech"] = speech_report(spoken, models.tts.name if models is not None else "")
    speakers = {line.id: store.get(key)["speakers"] for name, _, line, key in items
                if name == settings[0][0] and "speakers" in store.get(key)}
    if speakers:  # --speakers: per manifest line, the speakers found and the label of each utterance
        meta["speakers"] = "; ".join(f"{i}: {v['speakers']} speaker(s), utterances "
                                     f"{' '.join('-' if u['speaker'] is None else str(u['speaker']) for u in v['utterances'])}"
                                     for i, v in speakers.items())
    report = write_report(out_dir, collect(settings, lines, store, items), meta=meta)
    print(json.dumps({"out": str(out_dir), "settings": [s["name"] for s in report["settings"]],
                      "resumed": resumed, "computed": len(items) - resumed,
                      "files": ["report.json", "report.md", "curve.png", RESULTS]}, ensure_ascii=False))
    return 0


def collect(settings, lines, store: ResultStore, items) -> list[SettingResult]:
    """SettingResults per path: each streaming path once per setting, the cascade once; every
    utterance carries the cascade's text as its retention reference."""
    by = {(name, line.id): store.get(key) for name, _, line, key in items}
    first = settings[0][0]
    cascade_text = {line.id: (by[(first, line.id)]["paths"].get(CASCADE) or {}).get("prediction") for line in lines}
    present = sorted({p for rec in by.values() for p in rec["paths"]})
    out: list[SettingResult] = []
    for path in (p for p in present if p != CASCADE):
        for name, params in settings:
            utts = [UtteranceResult(**{**by[(name, line.id)]["paths"][path], "cascade": cascade_text[line.id]})
                    for line in lines if path in by[(name, line.id)]["paths"]]
            if utts:
                label = name if path == "simul" else f"{path}-{name}"
                out.append(SettingResult(label, utts, params=params, path=path))
    if CASCADE in present:
        utts = [UtteranceResult(**{**by[(first, line.id)]["paths"][CASCADE], "cascade": cascade_text[line.id]})
                for line in lines if CASCADE in by[(first, line.id)]["paths"]]
        out.append(SettingResult(CASCADE, utts, params={}, path=CASCADE))
    if not out:
        raise UserError("no path produced any output to score (is the manifest's audio speech?)")
    return out


def run_meta(args: argparse.Namespace, lines, models: Models | None, wall_s: float, resumed: int,
             items: int) -> dict[str, Any]:
    """What report.md records about the run: enough to reproduce and compare it."""
    import torch

    from streamst.profiles import load_profile

    profile = models.profile if models is not None else load_profile(args.profile)
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "profile": f"{profile.name}: {profile.description}".rstrip(": "),
        "models": {s.role: f"{s.kind} {s.source}".strip() for s in profile.specs()},
        "mode": args.mode,
        "chunk_ms": args.chunk_ms,
        "manifest": f"{args.manifest} ({len(lines)} lines)",
        "commit": git_commit(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {args.device}",
        "run": f"{items - resumed} items computed in {wall_s:.0f} s, {resumed} reused from {RESULTS}",
        "command": "streamst " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["eval"] else "streamst eval",
    }


def git_commit() -> str:
    """The commit of the streamst checkout (``+dirty`` with local changes), or why unknown."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"unknown (installed package streamst {version('streamst')}, not a git checkout)"
        except PackageNotFoundError:
            return "unknown (not a git checkout)"
