"""``streamst manifest SRC --from FORMAT --out DIR``: a training/eval manifest from a public
corpus layout (CoVoST 2, Common Voice, FLEURS, a Hugging Face dataset saved to disk).

Writes ``DIR/manifest.jsonl`` (the format ``streamst train`` and ``streamst eval`` read) and
``DIR/wav/*.wav`` (16 kHz mono); see streamst/training/manifests.py and docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streamst.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    from streamst.training.manifests import FORMATS

    p = sub.add_parser("manifest", help="write a training manifest from CoVoST 2, Common Voice, FLEURS or an HF dataset")
    p.add_argument("src", help="covost2: a covost_v2.SRC_TGT[.SPLIT].tsv (or its folder); commonvoice: a language "
                               "folder (train.tsv, clips/); fleurs: the data/ folder (or the repo above it); "
                               "hf-disk: a save_to_disk folder")
    p.add_argument("--from", dest="fmt", required=True, choices=FORMATS, help="the layout of SRC")
    p.add_argument("--out", required=True, help="output folder (must not exist, unless --force)")
    p.add_argument("--split", default="train", help="train, dev, test, ... (default %(default)s)")
    p.add_argument("--src-lang", default=None,
                   help="source language in the corpus' code (fleurs: cmn_hans_cn; commonvoice: zh-CN; hf-disk: zh)")
    p.add_argument("--tgt-lang", default=None,
                   help="target language (fleurs: en_us, joined by sentence id; hf-disk: en); "
                        "none for fleurs/commonvoice: transcription rows")
    p.add_argument("--clips", default=None, help="covost2/commonvoice: the Common Voice clips/ folder (default: beside the TSV)")
    p.add_argument("--audio-column", default=None, help="hf-disk: the audio column (default: the first Audio feature)")
    p.add_argument("--source-column", default="sentence", help="hf-disk (default %(default)s; absent: no source text)")
    p.add_argument("--reference-column", default="translation", help="hf-disk (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="the first N rows only")
    p.add_argument("--absolute-paths", action="store_true",
                   help="write absolute audio paths (manifests can then be concatenated with cat)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT")
    p.add_argument("--json", action="store_true", help="the summary as one JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamst.training.manifests import ManifestOptions, read_rows, write_manifest

    try:
        opts = ManifestOptions(args.fmt, split=args.split, src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                               clips=Path(args.clips) if args.clips else None, audio_column=args.audio_column,
                               source_column=args.source_column, reference_column=args.reference_column,
                               limit=args.limit)
    except ValueError as e:
        raise UserError(str(e)) from e
    out = Path(args.out)
    if out.exists() and not args.force:  # before reading a large corpus
        raise UserError(f"{out} already exists; choose another --out, or --force to replace it")
    rows = read_rows(args.src, opts)
    tty = sys.stderr.isatty() and not args.json

    def progress(done: int, total: int) -> None:
        if tty and (done % 50 == 0):
            print(f"\rstreamst manifest: {done}/{total} clips", end="", file=sys.stderr, flush=True)

    res = write_manifest(rows, out, force=args.force, absolute=args.absolute_paths, progress=progress)
    if tty:
        print(file=sys.stderr)
    summary = {"type": "summary", "manifest": str(res.manifest), "rows": res.rows, "skipped": res.skipped,
               "hours": round(res.seconds / 3600, 3)}
    if args.json:
        print(json.dumps(summary))
    else:
        dur = f"{res.seconds / 3600:.2f} h" if res.seconds >= 360 else f"{res.seconds:.1f} s"
        print(f"wrote {res.rows} rows ({dur} of 16 kHz audio; {res.skipped} skipped) to {res.manifest}")
        print(f"train on it: streamst train {res.manifest} --profile P --out DIR")
    return 0
