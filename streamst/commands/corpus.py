"""``streamst corpus --out DIR``: the synthetic zh<->en corpus with long-range reordering
(:mod:`streamst.corpus`): train/dev/test manifests, espeak-ng speech and word times."""

from __future__ import annotations

import argparse
import json
import sys

from streamst.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    from streamst.corpus.build import CorpusConfig, SPLITS

    d = CorpusConfig()
    p = sub.add_parser("corpus", help="write the synthetic zh<->en reordering corpus (manifests + speech)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=d.train, help="training sentence pairs (default %(default)s)")
    p.add_argument("--dev", type=int, default=d.dev, help="dev sentence pairs (default %(default)s)")
    p.add_argument("--test", type=int, default=d.test, help="test sentence pairs (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lexicon-rows", type=int, default=None,
                   help="use only the first N entries of each lexicon table (a smaller vocabulary; default: all)")
    p.add_argument("--directions", default="zh-en,en-zh", help="comma-separated (default %(default)s)")
    p.add_argument("--speak", default=",".join(d.speak),
                   help=f"splits to synthesise with espeak-ng, from {','.join(SPLITS)}; '' for none (default %(default)s)")
    p.add_argument("--tts-cache", default=None, help="wav cache folder (default ~/.cache/streamst/tts)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streamst.corpus.build import CorpusConfig, SPLITS, write_corpus

    speak = tuple(s for s in args.speak.split(",") if s)
    bad = [s for s in speak if s not in SPLITS]
    if bad:
        raise UserError(f"--speak takes splits from {','.join(SPLITS)}, got {','.join(bad)}")
    dirs = []
    for d in args.directions.split(","):
        parts = tuple(d.strip().split("-"))
        if parts not in (("zh", "en"), ("en", "zh")):
            raise UserError(f"--directions takes zh-en and/or en-zh, got {d!r}")
        dirs.append(parts)
    if min(args.train, args.dev, args.test) < 1:
        raise UserError("--train, --dev and --test must be >= 1")
    if speak:
        from streamst.tts import have_tts

        if not have_tts():
            raise UserError("espeak-ng and sox are needed to speak the corpus (or --speak '')")
    config = CorpusConfig(train=args.train, dev=args.dev, test=args.test, seed=args.seed,
                          directions=tuple(dirs), speak=speak, lexicon_rows=args.lexicon_rows)

    def progress(split: str, i: int, n: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\rspeaking {split}: {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)

    summary = write_corpus(Path(args.out), config, tts_cache=Path(args.tts_cache) if args.tts_cache else None,
                           progress=progress)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        for split, s in summary["splits"].items():
            print(f"{split}: {s['items']} items ({s['pairs']} pairs), longest reorder {s['max_reorder']} words, "
                  f"{s['reorder_6plus']} with 6+{', spoken' if s['spoken'] else ''}")
        print(f"vocabulary in train: {summary['vocabulary']['zh']} zh words, {summary['vocabulary']['en']} en words")
        print(f"written to {args.out}")
    return 0
