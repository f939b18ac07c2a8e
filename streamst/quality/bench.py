"""``streamst bench quality --out DIR [--json]``: translation quality you can measure.

A learned task (:mod:`streamst.corpus`: zh<->en with long-range reordering, spoken by
espeak-ng), a model that learned it (``streamst train --task mt``: the simul path's text
decoder, trained here on two CPU cores and cached by content hash), and the simul path run
over the held-out test set per policy and speed lever, reading an oracle transcript at
espeak's word times (:mod:`streamst.quality.oracle`). Written to DIR:

* ``report.json``: every figure, per setting, direction and reorder-distance bucket;
* ``report.md``: the tables (policies, reorder buckets, speed levers) and how to read them;
* ``curve.png``: quality retention against LAAL, all items and items with a reorder of 6+ words.

Retention is chrF of the simultaneous output over chrF of offline (whole-sentence) greedy
decoding by the same model. The e2e path (a trained speech model streamed through the
product's session, its levers lean and draft verification) is :mod:`streamst.quality.e2e`,
which also owns the command (``--paths simul,e2e``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from streamst.corpus.grammar import BUCKETS, bucket_of
from streamst.errors import UserError

# the recipe the bench trains when no --model is given (measured in docs/quality.md)
RECIPE = {"arch": (128, 3), "steps": 7000, "batch_size": 32, "warmup_steps": 300, "prefix_pairs": 1,
          "source_lm": 0.1, "seed": 0}
CORPUS = {"train": 40000, "dev": 150, "test": 300, "seed": 0}  # text-only training pairs are cheap


@dataclass(frozen=True)
class Setting:
    name: str
    group: str  # "policy" | "lever"
    policy: str
    overrides: dict[str, Any] = field(default_factory=dict)
    quantize: str = "none"
    final_bound: bool = True
    lever: str = ""  # what the lever row changes vs the base setting
    lean: bool = False  # e2e path: PipelineConfig.e2e_lean (streamst/quality/e2e.py)
    draft: bool = True  # e2e path: NanoOptions.draft

    def label(self) -> str:
        return self.name


def policy_settings(reorder_ks: tuple[int, ...]) -> list[Setting]:
    """The policy rows every path reports: wait-k k=1..5, local agreement, reorder-aware at ``reorder_ks``."""
    out = [Setting(f"wait-k k={k}", "policy", "wait-k", {"k": k}) for k in (1, 2, 3, 4, 5)]
    out.append(Setting("local-agreement", "policy", "local-agreement"))
    out += [Setting(f"reorder-aware k={k}", "policy", "reorder-aware", {"k": k}) for k in reorder_ks]
    return out


def settings(quick: bool = False) -> list[Setting]:
    out = policy_settings((3,) if quick else (1, 3, 5))
    if not quick:
        out.append(Setting("reorder-aware k=3 continuations=0", "policy", "reorder-aware", {"k": 3, "continuations": 0}))
        out.append(Setting("reorder-aware k=3 max_lag=20", "policy", "reorder-aware", {"k": 3, "max_lag": 20}))
        out.append(Setting("reorder-aware k=3 continuations=4", "policy", "reorder-aware", {"k": 3, "continuations": 4}))
        out.append(Setting("reorder-aware k=5 continuations=4 max_lag=20", "policy", "reorder-aware",
                           {"k": 5, "continuations": 4, "max_lag": 20}))
    base = {"k": 3}
    out += [
        Setting("int8", "lever", "reorder-aware", base, quantize="int8", lever="int8 dynamic quantisation vs fp32"),
        Setting("lookahead=1", "lever", "reorder-aware", {**base, "lookahead": 1}, lever="lookahead 1 vs 4"),
        Setting("lookahead=8", "lever", "reorder-aware", {**base, "lookahead": 8}, lever="lookahead 8 vs 4"),
        Setting("no final-length bound", "lever", "reorder-aware", base, final_bound=False,
                lever="final decode bounded only by max_new_tokens"),
    ]
    return out


def select(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` items per direction: half of them with a reorder of 6+ words (the case
    the policies differ on), the rest drawn round-robin over the other buckets."""
    out = []
    for direction in sorted({(r["src_lang"], r["tgt_lang"]) for r in rows}):
        by: dict[str, list[dict[str, Any]]] = {b[0]: [] for b in BUCKETS}
        for r in rows:
            if (r["src_lang"], r["tgt_lang"]) == direction:
                by[bucket_of(r["reorder_distance"])].append(r)
        picked = by.pop("6+")[: (limit + 1) // 2]
        while len(picked) < limit and any(by.values()):
            for b in by.values():
                if b and len(picked) < limit:
                    picked.append(b.pop(0))
        out += picked
    return out


def sparse_head(translator) -> int:
    """Make ``translator``'s output projection skip the pruned tokens; return the rows kept.

    A model from ``streamst train --task mt`` has zero embedding rows for every token outside
    its corpus (vocabulary pruning, docs/training.md), so their logits are exactly 0: the
    projection onto the kept rows, scattered into zeros, is the same logits (up to float
    summation order) at about 1/100 of the cost per decoded token (the full 151,936-row
    projection reads 78 MB per token). Bench-only; the report checks offline outputs agree.
    No-op (0) where the model's own forward makes the logits (int8)."""
    import torch

    from streamst.mt.head import project_rows

    lm = translator.lm
    if getattr(lm, "_proj", None) is None or lm._proj.bias is not None:
        return 0
    w = lm._proj.weight.detach()
    rows = (w != 0).any(dim=1).nonzero()[:, 0]
    w_t = w[rows].t().contiguous().numpy()  # (hidden, kept)
    vocab = w.shape[0]

    def project(hidden: torch.Tensor) -> torch.Tensor:
        part = project_rows(hidden, w_t)  # (..., kept)
        out = torch.zeros(*part.shape[:-1], vocab)
        out[..., rows] = part
        return out

    lm.project = project
    return int(rows.numel())


def cache_root() -> Path:
    return Path(os.environ.get("STREAMST_QUALITY_CACHE") or Path.home() / ".cache" / "streamst" / "quality")


def ensure_corpus(root: Path, log, spec: dict[str, Any] = CORPUS, name: str = "corpus") -> Path:
    """The corpus of ``spec`` (``CorpusConfig`` fields) under ``root``, cached by its config's hash."""
    from streamst.corpus.build import CorpusConfig, write_corpus

    cfg = CorpusConfig(**spec)
    key = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
    path = root / f"{name}-{key}"
    if not (path / "corpus.json").is_file():
        log(f"writing the {name} to {path} (espeak-ng, cached)")
        write_corpus(path, cfg, tts_cache=root / "tts")
    return path


def ensure_model(root: Path, corpus: Path, log) -> Path:
    from streamst.training import text_mt

    train = corpus / "train.jsonl"
    key = hashlib.sha256(train.read_bytes() + json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    out = root / f"mt-{key}"
    if not (out / "profile.json").is_file():
        log(f"training the simul decoder into {out} (cached by content hash; about 35 min on a busy 2-core box)")
        cfg = text_mt.TextMTConfig(**RECIPE, eval_limit=100, threads=1)
        text_mt.train(train, "tiny", out, cfg, eval_manifest=corpus / "dev.jsonl", force=True, log=log)
    return out


def _score(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    from streamst.metrics.latency import LatencyInput, corpus_latency, reference_length
    from streamst.metrics.quality import bleu, bleu_tokenizer, chrf

    tgt = rows[0]["tgt_lang"]
    unit = "char" if tgt == "zh" else "word"
    hyps = [r[key]["prediction"] for r in rows]
    refs = [r["reference"] for r in rows]
    offline = [r["offline"] for r in rows]
    items = [LatencyInput(r[key]["delays"], r[key]["source_ms"], reference_length(r["reference"], unit),
                          r[key]["elapsed"]) for r in rows]
    lat = corpus_latency(items, metrics=("AL", "LAAL"))
    lat.update(corpus_latency(items, computation_aware=True, metrics=("AL", "LAAL")))
    c, c_off = chrf(hyps, refs), chrf(offline, refs)
    return {
        "n": len(rows), "BLEU": round(bleu(hyps, refs, tokenize=bleu_tokenizer(tgt)), 2), "chrF": round(c, 2),
        "offline_chrF": round(c_off, 2), "retention": round(c / c_off, 4) if c_off else None,
        **{k: (round(v / 1000, 3) if v is not None else None) for k, v in lat.items()},  # seconds
    }


def score_settings(chosen: list[Setting], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: its fields and, per direction, scores of all items and per reorder bucket
    (``rows[i][setting.name]``: that setting's output for item i)."""
    directions = sorted({f"{r['src_lang']}-{r['tgt_lang']}" for r in rows})
    out = []
    for s in chosen:
        entry: dict[str, Any] = {**asdict(s), "directions": {}}
        for d in directions:
            sel = [r for r in rows if f"{r['src_lang']}-{r['tgt_lang']}" == d]
            entry["directions"][d] = {"all": _score(sel, s.name), "buckets": {
                b: _score([r for r in sel if bucket_of(r["reorder_distance"]) == b], s.name)
                for b, _, _ in BUCKETS if any(bucket_of(r["reorder_distance"]) == b for r in sel)}}
        out.append(entry)
    return out


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from streamst.mt.qwen import QwenOptions, QwenTranslator
    from streamst.pipeline import PipelineConfig
    from streamst.quality.oracle import run_item

    log = (lambda m: None) if args.json else (lambda m: print(f"bench quality: {m}", file=sys.stderr, flush=True))
    torch.set_num_threads(args.threads)
    root = Path(args.cache) if args.cache else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    corpus = Path(args.corpus) if args.corpus else ensure_corpus(root, log)
    model = Path(args.model) if args.model else ensure_model(root, corpus, log)
    model_dir = model / "model" if (model / "model").is_dir() else model
    rows = _rows(corpus, args)
    translators = {q: QwenTranslator(str(model_dir), QwenOptions(local_files_only=True, quantize=q))
                   for q in ("none", "int8")}
    log(f"{len(rows)} held-out items; offline decoding")
    fp32 = translators["none"]
    check = rows[: args.head_check]
    full = [fp32.translate(r["source"], r["src_lang"], r["tgt_lang"], max_new_tokens=args.max_new_tokens).strip()
            for r in check]
    kept = sparse_head(fp32)
    for r in rows:
        r["offline"] = fp32.translate(r["source"], r["src_lang"], r["tgt_lang"], max_new_tokens=args.max_new_tokens).strip()
    head_check = {"rows_kept": kept, "items": len(check), "same_offline_output": sum(a == r["offline"] for a, r in zip(full, check))}
    chosen = settings(args.quick)
    for n, s in enumerate(chosen, 1):
        t0 = time.perf_counter()
        for r in rows:
            cfg = PipelineConfig.create(r["src_lang"], r["tgt_lang"], mode="simul", policy=s.policy, **s.overrides)
            cfg = replace(cfg, max_new_tokens=args.max_new_tokens)
            out = run_item(translators[s.quantize], cfg, r["words"], r["word_times"], r["word_times"][-1][1],
                           final_bound=s.final_bound)
            r[s.name] = {"prediction": out.prediction.strip(), "delays": out.delays, "elapsed": out.elapsed,
                         "source_ms": out.source_ms}
        log(f"[{n}/{len(chosen)}] {s.name}: {time.perf_counter() - t0:.0f} s")
    report: dict[str, Any] = {
        "model": str(model_dir), "corpus": str(corpus), "items": len(rows), "path": "simul (oracle transcript at espeak word times)",
        "max_new_tokens": args.max_new_tokens, "threads": args.threads, "sparse_head": head_check,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "training": _training_summary(model), "settings": [], "not_measured": {
            "e2e path": "not in this run: --paths simul,e2e (docs/quality.md, e2e section)",
            "lean vs default": "an e2e-path lever (--e2e-lean): --paths e2e",
            "draft verification": "an e2e-path lever (NanoOptions.draft): --paths e2e",
        },
    }
    report["settings"] = score_settings(chosen, rows)
    report["utterances"] = [{k: v for k, v in r.items() if k not in ("word_times",)} for r in rows]
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    from streamst.quality.report import write_report

    write_report(Path(args.out), report)
    return report


def _rows(corpus: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The spoken held-out items of ``corpus`` in the wanted directions, chosen by :func:`select`."""
    from streamst.corpus.build import read_items

    rows = [r for r in read_items(corpus / "test.jsonl") if "word_times" in r]
    if not rows:
        raise UserError(f"{corpus}/test.jsonl has no spoken items (streamst corpus --speak test)")
    wanted = set(args.directions.split(","))
    return select([r for r in rows if f"{r['src_lang']}-{r['tgt_lang']}" in wanted], args.limit)


def _training_summary(model: Path) -> dict[str, Any] | None:
    ev = model / "eval.json"
    log = model / "train_log.jsonl"
    if not ev.is_file():
        return None
    e = json.loads(ev.read_text(encoding="utf-8"))
    last = None
    if log.is_file():
        lines = log.read_text(encoding="utf-8").splitlines()
        last = json.loads(lines[-1]) if lines else None
    return {"dev_offline_chrF": e.get("chrF"), "dev_directions": e.get("directions"),
            "steps": last and last["step"], "train_seconds": last and last["seconds"], "loss_last": last and last["loss"]}


def add_parser(bsub: argparse._SubParsersAction) -> None:
    q = bsub.add_parser("quality", help="held-out quality and latency of each policy and speed lever on a learned task")
    q.add_argument("--out", required=True, help="report folder (report.json, report.md, curve.png)")
    q.add_argument("--corpus", default=None, help="a `streamst corpus` folder (default: written to the cache)")
    q.add_argument("--model", default=None, help="a `streamst train --task mt` folder (default: trained into the cache)")
    q.add_argument("--cache", default=None, help="cache folder (default $STREAMST_QUALITY_CACHE or ~/.cache/streamst/quality)")
    q.add_argument("--limit", type=int, default=16,
                   help="held-out items per direction, half with a reorder of 6+ words (default %(default)s)")
    q.add_argument("--max-new-tokens", type=int, default=96, help="per proposal (default %(default)s)")
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    q.add_argument("--quick", action="store_true", help="fewer reorder-aware settings")
    q.add_argument("--directions", default="zh-en,en-zh", help="comma-separated (default %(default)s)")
    q.add_argument("--head-check", type=int, default=4,
                   help="items decoded offline with the full output projection too, to check the sparse one (default %(default)s)")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q.set_defaults(func=_command)


def table(report: dict[str, Any]) -> dict[str, Any]:
    """chrF, LAAL and retention of every setting and direction (the command's summary)."""
    return {s["name"]: {d: {k: v["all"][k] for k in ("chrF", "LAAL", "retention")}
                        for d, v in s["directions"].items()} for s in report["settings"]}


def _command(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UserError("--limit must be >= 1")
    report = run_bench(args)
    summary = {"out": args.out, "items": report["items"], "seconds": report["seconds"], "settings": table(report)}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    return 0
