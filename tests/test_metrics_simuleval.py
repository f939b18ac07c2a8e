"""Our latency/BLEU scores agree with SimulEval 1.1.4's own scorers.

SimulEval runs in its own venv (it pins old packages), created with::

    python3 -m venv .venv-simuleval && .venv-simuleval/bin/pip install simuleval==1.1.4

tests/simuleval_oracle.py builds SimulEval's ``--score-only`` evaluator on instances.log
files we write and prints its scores before rounding, so we compare to 1e-6.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from streamst import cli
from streamst.metrics.instances import InstanceRecord, read_instances, simuleval_scores, write_instances
from streamst.metrics.latency import LATENCY_METRICS, LatencyInput, reference_length, utterance_latency

ROOT = Path(__file__).resolve().parents[1]
ORACLE_PY = ROOT / ".venv-simuleval" / "bin" / "python"
ORACLE = Path(__file__).with_name("simuleval_oracle.py")
METRICS = list(LATENCY_METRICS)
TOL = 1e-6

pytestmark = pytest.mark.skipif(
    not ORACLE_PY.exists(),
    reason="SimulEval oracle venv missing; create it with: python3 -m venv .venv-simuleval "
    "&& .venv-simuleval/bin/pip install simuleval==1.1.4",
)

WORDS = "the a of blockchain is most trendy technology year this genes strawberry seven".split()
HANZI = "区块链是今年最火热的科技趋势了所有草莓基因都由几组含七条染色体"


def _random_record(rng: random.Random, index: int, unit: str) -> InstanceRecord:
    src = round(rng.uniform(300, 12000), rng.choice([0, 1, 3]))
    n = rng.randint(1, 30)
    # non-decreasing delays within the source, sometimes ending at |X| (source finished)
    delays = sorted(round(rng.uniform(0, src), 2) for _ in range(n))
    if rng.random() < 0.5:
        k = rng.randint(1, n)
        delays = delays[: n - k] + [src] * k
    steps = [rng.uniform(0, 300) for _ in range(n)]
    processing, acc = [], 0.0
    for s in steps:
        acc += s
        processing.append(acc)
    elapsed = [d + p for d, p in zip(delays, processing)]
    if unit == "word":
        hyp = " ".join(rng.choice(WORDS) for _ in range(n))
        ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 35)))
    else:
        hyp = "".join(rng.choice(HANZI) for _ in range(n))
        ref = "".join(rng.choice(HANZI) for _ in range(rng.randint(1, 35)))
        if rng.random() < 0.2:  # SimulEval counts inner spaces of a char reference
            ref = ref[:3] + " " + ref[3:]
    return InstanceRecord(index=index, prediction=hyp, delays=delays, source_length=src,
                          reference=ref, elapsed=elapsed, source=[f"utt{index}.wav"])


def _edge_records(start: int, unit: str) -> list[InstanceRecord]:
    word = "w" if unit == "word" else "字"
    sep = " " if unit == "word" else ""
    cases = [
        # empty hypothesis: no delays, skipped by the latency scorers, still in BLEU
        dict(prediction="", delays=[], elapsed=[], source_length=2000.0),
        # all output after the source ended: every delay equals |X|
        dict(prediction=sep.join([word] * 4), delays=[3000.0] * 4,
             elapsed=[3100.0, 3150.0, 3400.0, 3500.0], source_length=3000.0),
        # first delay beyond |X| (as happens to elapsed): AL = LAAL = d_1
        dict(prediction=sep.join([word] * 3), delays=[1600.0, 1700.0, 1800.0],
             elapsed=[1650.0, 1800.0, 1900.0], source_length=1500.0),
        # single unit
        dict(prediction=word, delays=[640.0], elapsed=[700.5], source_length=1280.0),
        # single unit exactly at the end of the source
        dict(prediction=word, delays=[1280.0], elapsed=[1280.0], source_length=1280.0),
        # delays equal to source length midway: tau stops there
        dict(prediction=sep.join([word] * 5), delays=[200.0, 900.0, 1000.0, 1000.0, 1000.0],
             elapsed=[260.0, 990.0, 1100.0, 1150.0, 1170.0], source_length=1000.0),
        # hypothesis much longer than the reference (LAAL differs from AL)
        dict(prediction=sep.join([word] * 12), delays=[float(100 * i) for i in range(1, 13)],
             elapsed=[float(100 * i + 30) for i in range(1, 13)], source_length=1200.0),
    ]
    refs = [sep.join([word] * k) for k in (3, 4, 2, 1, 2, 5, 3)]
    return [InstanceRecord(index=start + i, reference=ref, source=None, **c)
            for i, (c, ref) in enumerate(zip(cases, refs))]


def _corpus(seed: int, unit: str, n: int = 80) -> list[InstanceRecord]:
    rng = random.Random(seed)
    recs = [_random_record(rng, i, unit) for i in range(n)]
    return recs + _edge_records(n, unit)


def _run_oracle(jobs: list[dict]) -> list[dict]:
    proc = subprocess.run([str(ORACLE_PY), str(ORACLE)], input=json.dumps(jobs),
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= TOL * max(1.0, abs(b))


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    """Two corpora (word / char units), each scored by SimulEval with and without CA."""
    base = tmp_path_factory.mktemp("simuleval")
    corpora = {"word": (_corpus(1234, "word"), "13a"), "char": (_corpus(5678, "char"), "zh")}
    jobs = []
    for unit, (recs, tok) in corpora.items():
        d = write_instances(base / unit, recs).parent
        for ca in (False, True):
            jobs.append({"dir": str(d), "unit": unit, "computation_aware": ca,
                         "tokenizer": tok, "metrics": METRICS})
    results = _run_oracle(jobs)
    return corpora, jobs, results


def _mismatches(ours: dict, theirs: dict, keys) -> list[str]:
    return [f"{k}: ours={ours.get(k)!r} simuleval={theirs.get(k)!r}"
            for k in keys if not _close(ours.get(k), theirs.get(k))]


@pytest.mark.parametrize("unit", ["word", "char"])
def test_corpus_scores_agree(oracle_run, unit):
    corpora, jobs, results = oracle_run
    recs, tok = corpora[unit]
    plain = next(r for j, r in zip(jobs, results) if j["unit"] == unit and not j["computation_aware"])
    with_ca = next(r for j, r in zip(jobs, results) if j["unit"] == unit and j["computation_aware"])

    ours = simuleval_scores(recs, latency_unit=unit, computation_aware=True, tokenize=tok)
    # plain columns: from SimulEval run without --computation-aware
    assert not _mismatches(ours, plain["scores"], ["BLEU", *METRICS])
    # _CA columns: from the run with the flag
    ca_keys = [m + "_CA" for m in METRICS]
    assert not _mismatches(ours, with_ca["scores"], ca_keys)
    # the 1.1.4 quirk: with the flag, its plain columns are computation-aware as well
    quirk = {m: with_ca["scores"][m] for m in METRICS}
    assert not _mismatches({m: ours[m + "_CA"] for m in METRICS}, quirk, METRICS)
    assert ours["BLEU"] > 0


@pytest.mark.parametrize("unit", ["word", "char"])
def test_per_utterance_scores_agree(oracle_run, unit):
    corpora, jobs, results = oracle_run
    recs, _ = corpora[unit]
    for ca in (False, True):
        theirs = next(r for j, r in zip(jobs, results)
                      if j["unit"] == unit and j["computation_aware"] == ca)["per_instance"]
        for rec in recs:
            item = LatencyInput(rec.delays, rec.source_length,
                                reference_length(rec.reference, unit), rec.elapsed)
            ours = utterance_latency(item, computation_aware=ca)
            got = theirs[str(rec.index)]
            if ours is None:  # empty hypothesis: SimulEval skipped it too
                assert got == {}
                continue
            ours = {k.removesuffix("_CA"): v for k, v in ours.items()}
            assert not _mismatches(ours, got, METRICS), (rec.index, ca)


def test_no_reference_uses_hypothesis_length(tmp_path):
    """reference: null -> |Y| = hypothesis length, in SimulEval and here (latency only)."""
    recs = [InstanceRecord(index=r.index, prediction=r.prediction, delays=r.delays,
                           source_length=r.source_length, reference=None, elapsed=r.elapsed)
            for r in _corpus(42, "word", n=30)]
    d = write_instances(tmp_path / "noref", recs).parent
    (res,) = _run_oracle([{"dir": str(d), "unit": "word", "computation_aware": False,
                           "tokenizer": "13a", "metrics": METRICS}])
    ours = simuleval_scores(recs)
    assert not _mismatches(ours, res["scores"], METRICS)
    assert ours["BLEU"] is None  # SimulEval logs the sacrebleu error and prints 0


@pytest.mark.parametrize("unit", ["word", "char"])
def test_score_command_matches_simuleval(oracle_run, unit, monkeypatch, capsys):
    corpora, jobs, results = oracle_run
    job_plain = next(j for j in jobs if j["unit"] == unit and not j["computation_aware"])
    plain = results[jobs.index(job_plain)]["scores"]
    with_ca = next(r for j, r in zip(jobs, results) if j["unit"] == unit and j["computation_aware"])
    log = Path(job_plain["dir"]) / "instances.log"
    assert len(read_instances(log)) == len(corpora[unit][0])

    monkeypatch.setattr(cli, "COMMANDS", ("score",))
    rc = cli.main(["score", str(log), "--latency-unit", unit, "--computation-aware",
                   "--sacrebleu-tokenizer", job_plain["tokenizer"]])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert not _mismatches(out, plain, ["BLEU", *METRICS])
    assert not _mismatches(out, with_ca["scores"], [m + "_CA" for m in METRICS])
    assert list(out)[:3] == ["BLEU", "AL", "AL_CA"]
    assert out["_meta"]["skipped_without_output"] == 1

