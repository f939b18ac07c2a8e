"""``streamst bench quality``'s e2e path: a speech model that learned the task, streamed per policy and lever.

The model is the tiny profile's Fun-ASR-Nano trained from random weights by ``streamst train``
(encoder, adaptor and decoder, full fine-tune) on the spoken training split of the
small-lexicon corpus (:data:`E2E_CORPUS`, :data:`E2E_RECIPE`; docs/quality.md). Each held-out
test wav is streamed through the product's own session (:class:`~streamst.pipeline.TranslationSession`
in mode ``e2e``, fed in ``chunk_ms`` chunks as ``streamst eval`` does: VAD, chunk grid,
incremental encoding, the policy's tracks), so every figure is the product path's. Offline
decoding is the same model's greedy whole-utterance ``generate``; retention is chrF of the
stream over chrF of offline, per reorder-distance bucket. Policy units on this path are audio
chunks (``k`` chunks before the first write), not words.

Levers, each against :data:`BASE` (the e2e default, reorder-aware k=2): int8 dynamic
quantisation, ``--e2e-lean`` (``PipelineConfig.e2e_lean``), draft verification off
(``NanoOptions.draft``), lookahead 1 and 8 (default 4), and no final-length bound (the
utterance-final decode capped only by ``final_tokens``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from streamst.errors import UserError
from streamst.quality.bench import (Setting, _rows, _training_summary, cache_root, ensure_corpus, policy_settings,
                                    run_bench, score_settings, table)

BASE = "reorder-aware k=2"
NO_BOUND_RATIO = 1e6  # a schedule ratio no final decode reaches: the final-length bound never cuts
# the corpus and recipe the bench builds when no --e2e-profile is given (measured in docs/quality.md)
E2E_CORPUS = {"train": 2500, "dev": 20, "test": 60, "seed": 0, "lexicon_rows": 10,
              "directions": (("zh", "en"),), "speak": ("train", "dev", "test")}
E2E_RECIPE = {"train": ("encoder", "adaptor", "decoder"), "lora_rank": 0, "steps": 1400, "batch_size": 8,
              "prefix_pairs": 2, "seed": 0}


def e2e_settings(quick: bool = False) -> list[Setting]:
    out = policy_settings((2,) if quick else (1, 2, 3))
    if not quick:
        out.append(Setting("reorder-aware k=2 max_lag=8", "policy", "reorder-aware", {"k": 2, "max_lag": 8}))
    base = {"k": 2}
    out += [
        Setting("int8", "lever", "reorder-aware", base, quantize="int8", lever="int8 dynamic quantisation vs fp32"),
        Setting("lean", "lever", "reorder-aware", base, lean=True,
                   lever="--e2e-lean (incremental final encoding, 600 ms context, lookahead 1) vs default"),
        Setting("no draft", "lever", "reorder-aware", base, draft=False, lever="draft verification off vs on"),
        Setting("lookahead=1", "lever", "reorder-aware", {**base, "lookahead": 1}, lever="lookahead 1 vs 4"),
        Setting("lookahead=8", "lever", "reorder-aware", {**base, "lookahead": 8}, lever="lookahead 8 vs 4"),
        Setting("no final-length bound", "lever", "reorder-aware", base, final_bound=False,
                   lever="final decode bounded only by final_tokens"),
    ]
    return out


def ensure_e2e_corpus(root: Path, log: Callable[[str], None]) -> Path:
    return ensure_corpus(root, log, E2E_CORPUS, "e2e-corpus")


def ensure_e2e_model(root: Path, corpus: Path, log: Callable[[str], None]) -> Path:
    """The trained profile (``profile.json``) of :data:`E2E_RECIPE` on ``corpus``, cached by content hash."""
    from streamst.training import recipe
    from streamst.training.config import TrainConfig

    train = corpus / "train.jsonl"
    key = hashlib.sha256(train.read_bytes() + json.dumps(E2E_RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    out = root / f"e2e-{key}"
    if not (out / recipe.PROFILE).is_file():
        log(f"training the e2e model into {out} (cached by content hash; 40 min on one core of a busy box, docs/quality.md)")
        cfg = TrainConfig(checkpoint_every=200, **E2E_RECIPE)
        p = recipe.plan(train, "tiny", out, cfg, eval_manifest=corpus / "dev.jsonl", force=True)
        recipe.run(p, cfg, log=log)
        translate_only(out / recipe.PROFILE)
    return out / recipe.PROFILE


def translate_only(profile: Path) -> None:
    """Declare the profile's e2e model a translator only (``tasks``): trained from random
    weights on translation pairs, it never learned to transcribe, so the e2e path shows no
    source transcript for it (``pipeline._e2e_options``)."""
    prof = json.loads(profile.read_text(encoding="utf-8"))
    prof["e2e"]["tasks"] = ["translate"]
    profile.write_text(json.dumps(prof, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _models(profile: str, quantize: str, draft: bool, threads: int):
    from streamst.loading import Models, RuntimeOptions
    from streamst.profiles import load_profile

    models = Models(load_profile(profile), RuntimeOptions(device="cpu", quantize=quantize, threads=threads))
    models.require(["e2e"])  # one line if the profile's e2e model does not translate
    if not draft:  # the lever: the same model decoding without draft verification
        models.e2e.options = replace(models.e2e.options, draft=False)
    return models


def stream_item(models, audio: Path, config, chunk_ms: int, *, final_bound: bool = True) -> dict[str, Any]:
    """One wav streamed through the product's session in mode e2e, in ``chunk_ms`` chunks (as
    ``streamst eval`` feeds it); the e2e path's whole output with its per-unit delays."""
    from streamst.audio import SAMPLE_RATE, read_audio
    from streamst.pipeline import TranslationSession
    from streamst.results import path_outputs

    samples, _ = read_audio(audio)
    session = TranslationSession(models, config)
    if not final_bound:
        for track in session.e2e.tracks:
            track.ratio = NO_BOUND_RATIO
    step = chunk_ms * SAMPLE_RATE // 1000
    for i in range(0, len(samples), step):
        session.insert_audio(samples[i:i + step])
        session.process()
    session.finish()
    text, delays, elapsed = path_outputs(session.results, config.tgt_langs[0], "e2e")
    return {"prediction": text.strip(), "delays": delays, "elapsed": elapsed, "source_ms": float(session.audio_ms)}


def run_e2e(args: Any, root: Path, rows_of: Callable[[Path], list[dict[str, Any]]],
            log: Callable[[str], None], chosen: list[Setting] | None = None) -> dict[str, Any]:
    """The e2e section of the report (same shape as the simul one: ``settings``, ``utterances``);
    ``chosen``: the settings (default :func:`e2e_settings`)."""
    from streamst.audio import read_audio
    from streamst.pipeline import PipelineConfig

    t_start = time.perf_counter()
    corpus = Path(args.e2e_corpus) if args.e2e_corpus else ensure_e2e_corpus(root, log)
    profile = Path(args.e2e_profile) if args.e2e_profile else ensure_e2e_model(root, corpus, log)
    if not profile.is_file():
        raise UserError(f"--e2e-profile {profile}: no such profile (a `streamst train` folder's profile.json)")
    rows = rows_of(corpus)
    chosen = chosen if chosen is not None else e2e_settings(args.quick)
    variants = {(s.quantize, s.draft) for s in chosen} | {("none", True)}
    models = {v: _models(str(profile), v[0], v[1], args.threads) for v in sorted(variants)}
    fp32 = models[("none", True)]
    log(f"e2e: {len(rows)} held-out items; offline decoding")
    for r in rows:
        samples, _ = read_audio(corpus / r["audio"])
        r["offline"] = fp32.e2e.generate(samples, "translate", r["src_lang"], r["tgt_lang"],
                                         max_new_tokens=args.max_new_tokens).strip()
    for n, s in enumerate(chosen, 1):
        t0 = time.perf_counter()
        for r in rows:
            cfg = PipelineConfig.create(r["src_lang"], r["tgt_lang"], mode="e2e", policy=s.policy,
                                        chunk_ms=args.e2e_chunk_ms, **s.overrides)
            if s.lean:
                cfg = cfg.e2e_lean()
            r[s.name] = stream_item(models[(s.quantize, s.draft)], corpus / r["audio"], cfg, args.e2e_chunk_ms,
                                    final_bound=s.final_bound)
        log(f"e2e [{n}/{len(chosen)}] {s.name}: {time.perf_counter() - t0:.0f} s, load {os.getloadavg()}")
    report: dict[str, Any] = {
        "path": f"e2e (the product's session in mode e2e over the test wavs, {args.e2e_chunk_ms} ms chunks; "
                "policy units are chunks)",
        "model": str(profile), "corpus": str(corpus), "items": len(rows), "chunk_ms": args.e2e_chunk_ms,
        "threads": args.threads, "lever_base": BASE, "curve": "e2e-curve.png",
        "training": _training_summary(profile.parent), "settings": [],
    }
    report["settings"] = score_settings(chosen, rows)
    report["utterances"] = [{k: v for k, v in r.items() if k not in ("word_times",)} for r in rows]
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return report


def write_e2e(out: Path, e2e: dict[str, Any], *, append: bool) -> None:
    """The e2e section into ``out/report.md`` (appended to the simul one, or alone) and ``out/e2e-curve.png``."""
    from streamst.quality.report import markdown, plot

    text = markdown(e2e).replace("# streamst bench quality", "# streamst bench quality: e2e path", 1)
    md = out / "report.md"
    md.write_text((md.read_text(encoding="utf-8") + "\n" if append and md.is_file() else "") + text, encoding="utf-8")
    plot(e2e, out / e2e["curve"])


# -- the command: `streamst bench quality` with --paths (bench.py's parser, e2e options added) --

def add_parser(bsub: argparse._SubParsersAction) -> None:
    from streamst.quality.bench import add_parser as add_simul_parser

    add_simul_parser(bsub)
    q = bsub.choices["quality"]
    q.add_argument("--paths", default="simul", help="simul, e2e or simul,e2e (default %(default)s)")
    q.add_argument("--e2e-profile", default=None,
                   help="a `streamst train` profile.json of the e2e model (default: trained into the cache)")
    q.add_argument("--e2e-corpus", default=None,
                   help="a `streamst corpus --speak train,dev,test` folder for the e2e path (default: written to the cache)")
    q.add_argument("--e2e-chunk-ms", type=int, default=600, help="the e2e path's chunk grid (default %(default)s)")
    q.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or set(paths) - {"simul", "e2e"}:
        raise UserError(f"--paths takes simul, e2e or simul,e2e; got {args.paths!r}")
    if args.limit < 1:
        raise UserError("--limit must be >= 1")
    import torch

    torch.set_num_threads(args.threads)
    log = (lambda m: None) if args.json else (lambda m: print(f"bench quality: {m}", file=sys.stderr, flush=True))
    report: dict[str, Any] = run_bench(args) if "simul" in paths else {"items": 0, "seconds": 0.0, "settings": []}
    summary: dict[str, Any] = {"out": args.out, "items": report["items"], "seconds": report["seconds"],
                               "settings": table(report)}
    if "e2e" in paths:
        root = Path(args.cache) if args.cache else cache_root()
        root.mkdir(parents=True, exist_ok=True)
        report["e2e"] = run_e2e(args, root, lambda corpus: _rows(corpus, args), log)
        for key in ("e2e path", "lean vs default", "draft verification"):
            report.get("not_measured", {}).pop(key, None)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        write_e2e(out, report["e2e"], append="simul" in paths)
        summary["e2e"] = {"items": report["e2e"]["items"], "seconds": report["e2e"]["seconds"],
                          "settings": table(report["e2e"])}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    return 0
