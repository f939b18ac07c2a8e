"""``streamst testset --out DIR``: synthesise the project's bilingual test set (espeak-ng)."""

from __future__ import annotations

import argparse
import json

from streamst.testset import synthesize_testset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("testset", help="synthesise the built-in zh<->en test set into a manifest")
    p.add_argument("--out", required=True, help="output folder (wavs + manifest.jsonl)")
    p.add_argument("--langs", default=None, help="directions, comma-separated (e.g. zh-en,en-zh)")
    p.add_argument("--limit", type=int, default=None, help="at most N utterances per direction")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    langs = args.langs.split(",") if args.langs else None
    manifest = synthesize_testset(args.out, langs=langs, limit=args.limit)
    print(json.dumps({"manifest": str(manifest)}))
    return 0
