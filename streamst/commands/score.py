"""``streamst score``: SimulEval's scores of an ``instances.log``, as one JSON object.

Same metric names and values as ``simuleval --score-only`` (1.1.4), printed at full
precision (SimulEval rounds to 3 decimals when it prints). With ``--computation-aware``
the plain columns stay computation-unaware and the ``_CA`` columns are added.
"""

from __future__ import annotations

import argparse
import json

from sacrebleu.metrics.bleu import BLEU

from streamst.errors import UserError
from streamst.metrics.instances import read_instances, simuleval_scores


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("score", help="score a SimulEval instances.log (BLEU, AL, LAAL, ...)",
                              description=__doc__)
    p.add_argument("instances", help="path to instances.log")
    p.add_argument("--latency-unit", choices=("word", "char"), default="word",
                   help="unit of the reference length (SimulEval --eval-latency-unit; default word)")
    p.add_argument("--computation-aware", action="store_true",
                   help="add AL_CA, LAAL_CA, ... computed from 'elapsed'")
    p.add_argument("--sacrebleu-tokenizer", default="13a", choices=sorted(BLEU.TOKENIZERS),
                   help="sacrebleu tokenizer for BLEU (default 13a; zh for Chinese targets)")
    p.add_argument("--no-use-ref-len", action="store_true",
                   help="use the hypothesis length instead of the reference length (as SimulEval)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    records = read_instances(args.instances, need_elapsed=args.computation_aware)
    try:
        scores = simuleval_scores(
            records,
            latency_unit=args.latency_unit,
            computation_aware=args.computation_aware,
            tokenize=args.sacrebleu_tokenizer,
            use_ref_len=not args.no_use_ref_len,
        )
    except ValueError as e:
        raise UserError(f"{args.instances}: {e}") from None
    scored = sum(1 for r in records if len(r.delays) > 0)
    scores_meta = {
        "precision": "full; simuleval --score-only prints the same values rounded to 3 decimals",
        "latency_unit": args.latency_unit,
        "sacrebleu_tokenizer": args.sacrebleu_tokenizer,
        "instances": len(records),
        "skipped_without_output": len(records) - scored,
    }
    print(json.dumps({**scores, "_meta": scores_meta}, ensure_ascii=False))
    return 0
