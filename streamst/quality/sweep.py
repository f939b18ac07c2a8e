"""Policy settings on the long-reorder items: ``python -m streamst.quality.sweep``.

``streamst bench quality`` runs a fixed list of settings over items of every reorder bucket;
this runs any policy settings over the first N held-out items of one direction with a
reorder of at least ``--min-reorder`` source words (the items the policies differ on), with
the bench's own pieces (oracle transcript at espeak's word times, ``sparse_head``, scoring),
and prints one JSON line per setting (chrF, offline chrF, retention, LAAL, LAAL_CA, load).

A setting is ``POLICY[:KEY=VALUE,...]``: :class:`~streamst.policy.config.PolicyConfig` fields
(``k``, ``max_lag``, ``continuations``, ``stable``, ...) and ``continuation_tokens`` (a
:class:`~streamst.pipeline.PipelineConfig` field), e.g.
``reorder-aware:k=5,continuations=4,max_lag=20``. The figures in docs/quality.md's policy
tables were made with it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from typing import Any

PIPELINE_FIELDS = ("continuation_tokens",)


def parse_setting(text: str) -> tuple[str, dict[str, Any], dict[str, int]]:
    """``POLICY[:K=V,...]`` -> (policy, policy overrides, pipeline overrides)."""
    policy, _, rest = text.partition(":")
    overrides: dict[str, Any] = {}
    pipeline: dict[str, int] = {}
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"a setting is POLICY[:KEY=VALUE,...], got {text!r}")
        if key in PIPELINE_FIELDS:
            pipeline[key] = int(value)
        elif value in ("true", "false"):
            overrides[key] = value == "true"
        else:
            overrides[key] = float(value) if "." in value else int(value)
    return policy, overrides, pipeline


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamst.quality.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a `streamst train --task mt` folder or its model/")
    p.add_argument("corpus", help="a spoken `streamst corpus` folder (test.jsonl with word_times)")
    p.add_argument("direction", help="e.g. zh-en")
    p.add_argument("settings", nargs="+", help="POLICY[:KEY=VALUE,...]")
    p.add_argument("--items", type=int, default=20)
    p.add_argument("--min-reorder", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=96)
    args = p.parse_args(argv)
    parsed = [parse_setting(s) for s in args.settings]  # fail before loading anything

    import torch

    from streamst.corpus.build import read_items
    from streamst.mt.qwen import QwenOptions, QwenTranslator
    from streamst.pipeline import PipelineConfig
    from streamst.quality.bench import _score, sparse_head
    from streamst.quality.oracle import run_item

    torch.set_num_threads(1)
    model = os.path.join(args.model, "model") if os.path.isdir(os.path.join(args.model, "model")) else args.model
    tr = QwenTranslator(model, QwenOptions(local_files_only=True))
    sparse_head(tr)
    rows = [r for r in read_items(os.path.join(args.corpus, "test.jsonl"))
            if f"{r['src_lang']}-{r['tgt_lang']}" == args.direction and r["reorder_distance"] >= args.min_reorder
            and "word_times" in r][: args.items]
    for r in rows:
        r["offline"] = tr.translate(r["source"], r["src_lang"], r["tgt_lang"], max_new_tokens=args.max_new_tokens).strip()
    for name, (policy, overrides, pipeline) in zip(args.settings, parsed):
        t0 = time.perf_counter()
        for r in rows:
            cfg = PipelineConfig.create(r["src_lang"], r["tgt_lang"], mode="simul", policy=policy, **overrides)
            cfg = replace(cfg, max_new_tokens=args.max_new_tokens, **pipeline)
            out = run_item(tr, cfg, r["words"], r["word_times"], r["word_times"][-1][1])
            r[name] = {"prediction": out.prediction.strip(), "delays": out.delays, "elapsed": out.elapsed,
                       "source_ms": out.source_ms}
        s = _score(rows, name)
        print(json.dumps({"setting": name, **{k: s[k] for k in ("n", "chrF", "offline_chrF", "retention", "LAAL", "LAAL_CA")},
                          "seconds": round(time.perf_counter() - t0), "load": [round(x, 1) for x in os.getloadavg()]}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
