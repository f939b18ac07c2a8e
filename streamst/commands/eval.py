"""``streamst eval MANIFEST``: stream a test set through the pipeline for several policy
settings and the cascade; write report.json, report.md, curve.png and SimulEval logs.

Manifest: JSONL, one utterance a line with ``audio`` (wav path relative to the manifest),
``source``, ``reference``, ``src_lang``, ``tgt_lang`` (``id`` optional). ``streamst testset
--out DIR`` synthesises the project's own test set into such a manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamst.commands._common import add_model_args, file_chunks, stream_file
from streamst.errors import UserError
from streamst.evaluation import SettingResult, UtteranceResult, write_report
from streamst.loading import Models, RuntimeOptions
from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.policy import POLICY_NAMES
from streamst.text import join_units, split_units


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
    if not path.is_file():
        raise UserError(f"{path}: no such manifest")
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
            raise UserError(f"{path}:{n}: bad manifest line ({type(e).__name__}: {e})") from e
        if not audio.is_file():
            raise UserError(f"{path}:{n}: audio file {audio} not found")
        lines.append(line)
    if not lines:
        raise UserError(f"{path}: the manifest is empty")
    return lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="latency/quality evaluation of policy settings on a manifest")
    p.add_argument("manifest")
    p.add_argument("--policy", action="append", choices=POLICY_NAMES,
                   help="policy to evaluate (repeatable; default reorder-aware)")
    p.add_argument("--k", default=None, help="comma-separated k values, one setting each (e.g. 1,3,5,7)")
    p.add_argument("--chunk-ms", type=int, default=600)
    p.add_argument("--limit", type=int, default=None, help="first N manifest lines only")
    p.add_argument("--out", required=True, help="output folder")
    add_model_args(p)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    policies = args.policy or ["reorder-aware"]
    try:
        ks = [int(k) for k in args.k.split(",")] if args.k else [None]
    except ValueError as e:
        raise UserError(f"--k takes comma-separated integers, got {args.k!r}") from e
    out = []
    for pol in policies:
        for k in ks if pol != "local-agreement" else [None]:
            params = {"k": k} if k is not None else {}
            name = pol + (f"-k{k}" if k is not None else "")
            out.append((name, {"policy": pol, **params}))
    return out


def run_one(models: Models, line: ManifestLine, config: PipelineConfig, chunk_ms: int) -> tuple[Any, int]:
    """Stream one manifest line; return (results of its utterances, audio ms)."""
    session = TranslationSession(models, config)
    stream_file(session, file_chunks(line.audio, chunk_ms), lambda events: None)
    return list(session.results), session.audio_ms


def merge(line: ManifestLine, results, audio_ms: int) -> UtteranceResult:
    """All VAD utterances of one manifest line as one SimulEval instance (stream times)."""
    lang = line.tgt_lang
    simul_units, cascade_units, delays, elapsed, displays, commits = [], [], [], [], [], []
    for r in results:
        units = split_units(r.simul or "", lang)
        simul_units += units
        delays += r.delays_ms[: len(units)]
        elapsed += r.elapsed_ms[: len(units)]
        cascade_units += split_units(r.cascade or "", lang)
        prefix = join_units(simul_units[: len(simul_units) - len(units)], lang)
        displays += [f"{prefix} {d}".strip() for d in r.displays]
        commits += [f"{prefix} {c}".strip() for c in r.commits]
    return UtteranceResult(
        id=line.id, src_lang=line.src_lang, tgt_lang=lang, prediction=join_units(simul_units, lang),
        delays=delays, elapsed=elapsed, source_length=float(audio_ms), reference=line.reference,
        cascade=join_units(cascade_units, lang) if results else "", displays=displays, committed=commits,
        source=str(line.audio),
    )


def run(args: argparse.Namespace) -> int:
    lines = read_manifest(args.manifest)[: args.limit]
    settings = settings_from_args(args)
    models = Models.from_profile(args.profile, RuntimeOptions(device=args.device))
    cascade: dict[str, str] = {}
    out: list[SettingResult] = []
    for i, (name, params) in enumerate(settings):
        utts = []
        for line in lines:
            overrides = {k: v for k, v in params.items() if k != "policy"}
            try:
                config = PipelineConfig.create(line.src_lang, line.tgt_lang, mode="both" if i == 0 else "simul",
                                               policy=params["policy"], chunk_ms=args.chunk_ms, **overrides)
            except ValueError as e:
                raise UserError(f"setting {name}: {e}") from e
            results, audio_ms = run_one(models, line, config, args.chunk_ms)
            u = merge(line, results, audio_ms)
            if i == 0:
                cascade[line.id] = u.cascade or ""
            utts.append(UtteranceResult(**{**u.__dict__, "cascade": cascade[line.id]}))
            print(f"{name}: {line.id} done", file=sys.stderr)
        out.append(SettingResult(name, utts, params=params))
    report = write_report(args.out, out)
    print(json.dumps({"out": str(Path(args.out)), "settings": [s.name for s in out],
                      "files": ["report.json", "report.md", "curve.png"]}, ensure_ascii=False))
    del report
    return 0
