"""``streamst bench quality``'s e2e path: a speech model that learned the task, streamed per policy and lever.

The model is a Fun-ASR-Nano of the ``small`` architecture trained here in two ``streamst train``
stages (:data:`E2E_STAGES`, :func:`ensure_e2e_model`; docs/quality.md) on the spoken training
split of :data:`E2E_CORPUS`, its decoder started from the simul path's text translator. Each held-out
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
import json
import os
import shutil
import sys
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
E2E_CORPUS = {"train": 8000, "dev": 40, "test": 100, "seed": 0, "directions": (("zh", "en"),),
              "speak": ("train", "dev", "test")}
# Two `streamst train` runs (docs/quality.md, "the e2e path"). Both start the decoder from the
# simul path's trained text translator (the bench's --model, same shape as the `small` decoder).
# Stage 1 teaches a fresh `small` encoder to hear the source words (CTC on the transcript) on
# the single-clause items; stage 2 freezes that encoder and trains the adaptor and the decoder
# on every item, the adaptor pulled toward the decoder's own embeddings of the heard source
# tokens (CTC with the decoder's embedding as classifier), so speech reaches the decoder in the
# form it translates text from.
E2E_STAGES = (
    {"train": ("encoder", "adaptor", "decoder"), "lora_rank": 0, "arch": "small", "prune_vocab": True,
     "ctc_weight": 0.3, "ctc_on": "encoder", "steps": 600, "batch_size": 8, "prefix_pairs": 0, "lr": 3e-3,
     "warmup_steps": 100, "seed": 0},
    {"train": ("adaptor", "decoder"), "lora_rank": 0, "prune_vocab": True, "ctc_weight": 1.0, "ctc_on": "adaptor",
     "steps": 3000, "batch_size": 8, "prefix_pairs": 1, "lr": 2e-3, "warmup_steps": 100, "seed": 0},
)
STAGE1_STRUCTURES = "two-clause"  # left out of stage 1: it learns to hear on the single-clause items


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


def ensure_e2e_model(root: Path, corpus: Path, mt_model: Path, log: Callable[[str], None]) -> Path:
    """The trained profile (``profile.json``) of :data:`E2E_STAGES` on ``corpus``, its decoder
    started from ``mt_model`` (a ``streamst train --task mt`` folder), cached by content hash."""
    from streamst.training import recipe
    from streamst.training.config import TrainConfig

    train = corpus / "train.jsonl"
    init = str((mt_model / "model").resolve())
    key = hashlib.sha256(train.read_bytes() + json.dumps(E2E_STAGES, sort_keys=True).encode()
                         + (mt_model / "model" / "model.safetensors").read_bytes()[:1 << 20]).hexdigest()[:12]
    out = root / f"e2e-{key}"
    if (out / recipe.PROFILE).is_file():
        return out / recipe.PROFILE
    log(f"training the e2e model into {out} in two stages (cached by content hash; about 30 min on two cores, "
        "docs/quality.md)")
    out.mkdir(parents=True, exist_ok=True)
    short = out / "stage1-train.jsonl"  # the single-clause items, audio paths made absolute
    rows = [json.loads(line) for line in train.read_text(encoding="utf-8").splitlines() if line.strip()]
    short.write_text("".join(json.dumps({**r, "audio": str((corpus / r["audio"]).resolve())}, ensure_ascii=False) + "\n"
                             for r in rows if r.get("structure") != STAGE1_STRUCTURES), encoding="utf-8")
    dev = corpus / "dev.jsonl"
    dev = dev if dev.is_file() and dev.read_text(encoding="utf-8").strip() else None  # else: the training set
    profile = "tiny"
    for n, (stage, manifest) in enumerate(zip(E2E_STAGES, (short, train)), 1):
        cfg = TrainConfig(checkpoint_every=250, init_decoder=init, **stage)
        dest = out / f"stage{n}"
        if not (dest / recipe.PROFILE).is_file():
            p = recipe.plan(manifest, profile, dest, cfg, eval_manifest=dev, force=True)
            recipe.run(p, cfg, log=log)
        profile = str(dest / recipe.PROFILE)
    shutil.copyfile(profile, out / recipe.PROFILE)
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
    if args.e2e_profile:
        profile = Path(args.e2e_profile)
    else:  # the decoder starts from the simul path's text translator
        from streamst.quality.bench import ensure_model

        mt = Path(args.model) if args.model else ensure_model(
            root, Path(args.corpus) if args.corpus else ensure_corpus(root, log), log)
        profile = ensure_e2e_model(root, corpus, mt, log)
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
        # the two-stage recipe's translating run is stage 2; a `streamst train` folder is its own
        "training": _training_summary(profile.parent / "stage2" if (profile.parent / "stage2").is_dir()
                                      else profile.parent), "settings": [],
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
