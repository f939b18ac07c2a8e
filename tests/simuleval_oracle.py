"""Reference scores from SimulEval 1.1.4 itself, for tests/test_metrics_simuleval.py.

Runs under ``.venv-simuleval/bin/python`` (simuleval pins old packages, so it is kept out
of the service's environment). Reads a JSON list of jobs on stdin::

    [{"dir": ".../out", "unit": "word", "computation_aware": false, "tokenizer": "13a",
      "metrics": ["AL", "LAAL", ...]}, ...]

and for each builds the evaluator exactly as ``simuleval --score-only --output DIR ...``
does (same argument parser, ``SentenceLevelEvaluator.from_args``), then prints one JSON
line: a list of ``{"scores": {...}, "per_instance": {index: {...}}}``. Scores are taken
from the scorers before SimulEval's print-time rounding to 3 decimals.
"""

import json
import sys
import warnings

warnings.filterwarnings("ignore")  # pydub: "Couldn't find ffmpeg" on import

from simuleval import options  # noqa: E402
from simuleval.evaluator.evaluator import SentenceLevelEvaluator  # noqa: E402


def score(job):
    sys.argv = [
        "simuleval", "--score-only", "--output", job["dir"],
        "--source-type", "speech", "--target-type", "text",
        "--eval-latency-unit", job["unit"],
        "--sacrebleu-tokenizer", job["tokenizer"],
        "--quality-metrics", "BLEU",
        "--latency-metrics", *job["metrics"],
    ] + (["--computation-aware"] if job["computation_aware"] else [])
    # the same steps as simuleval.cli.scoring(), minus its rounded print
    parser = options.general_parser()
    options.add_evaluator_args(parser)
    options.add_scorer_args(parser)
    options.add_dataloader_args(parser)
    args = parser.parse_args()
    evaluator = SentenceLevelEvaluator.from_args(args)
    scores = {**evaluator.quality, **evaluator.latency}
    per_instance = {ins.index: dict(ins.metrics) for ins in evaluator.instances.values()}
    return {"scores": scores, "per_instance": per_instance}


def main():
    jobs = json.load(sys.stdin)
    print(json.dumps([score(job) for job in jobs]))


if __name__ == "__main__":
    main()
