"""The evaluation report writer, on synthetic results."""

from __future__ import annotations

import json

import pytest

from streamst.evaluation import SettingResult, UtteranceResult, write_report
from streamst.metrics.instances import read_instances, simuleval_scores
from streamst.metrics.latency import computation_aware_delays


def _utt(i: int, k: int, *, reference: bool = True) -> UtteranceResult:
    """zh->en utterance; a wait-k-like setting emits each word k*300 ms later."""
    ref = "Blockchain is the hottest technology trend of the year."
    hyp = "Blockchain is the hottest tech trend of the year." if k < 3 else ref
    words = hyp.split()
    src = 3000.0
    delays = [min(src, 300.0 * (k + j)) for j in range(len(words))]
    displays = [" ".join(words[: j + 1]) + (" trendy" if j == 1 else "") for j in range(len(words))]
    committed = [" ".join(words[: j + 1]) for j in range(len(words))]
    return UtteranceResult(
        id=f"zh-en-{i:03d}", src_lang="zh", tgt_lang="en", prediction=hyp, delays=delays,
        elapsed=computation_aware_delays(delays, [40.0 * (j + 1) for j in range(len(words))]),
        source_length=src, reference=ref if reference else None,
        cascade="Blockchain is this year's hottest technology trend.",
        displays=displays, committed=committed, source=f"wav/zh-en-{i:03d}.wav",
    )


def _settings():
    return [SettingResult(name=f"wait-{k}", params={"k": k}, utterances=[_utt(i, k) for i in range(3)])
            for k in (1, 3, 5)]


def test_report_files(tmp_path):
    report = write_report(tmp_path, _settings(), title="synthetic")
    png = (tmp_path / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert len(on_disk["curve"]["points"]) == 3
    assert {p["label"] for p in on_disk["curve"]["points"]} == {"wait-1 (zh-en)", "wait-3 (zh-en)", "wait-5 (zh-en)"}
    md = (tmp_path / "report.md").read_text()
    for k in (1, 3, 5):
        assert f"## wait-{k}" in md
    for col in ("BLEU", "chrF", "AL", "LAAL", "AL_CA", "retention", "flicker"):
        assert col in md


def test_report_figures_and_logs(tmp_path):
    report = write_report(tmp_path, _settings())
    rows = {s["name"]: s["directions"]["zh-en"] for s in report["settings"]}
    # later commits -> higher AL; the computation-aware AL is higher still
    assert rows["wait-1"]["AL"] < rows["wait-3"]["AL"] < rows["wait-5"]["AL"]
    assert all(r["AL_CA"] > r["AL"] for r in rows.values())
    assert all(r["flicker"] == 3 and r["retractions"] == 0 for r in rows.values())  # " trendy" once each
    assert rows["wait-5"]["retention"] == pytest.approx(rows["wait-5"]["chrF"] / rows["wait-5"]["cascade_chrF"])
    assert rows["wait-5"]["quality_basis"] == "reference"
    # each instances.log rescored gives the report's latency
    for name, r in rows.items():
        recs = read_instances(tmp_path / name / "zh-en" / "instances.log")
        assert [x.extra["id"] for x in recs] == ["zh-en-000", "zh-en-001", "zh-en-002"]
        again = simuleval_scores(recs, computation_aware=True)
        assert again["AL"] == r["AL"] and again["AL_CA"] == r["AL_CA"]
        assert again["BLEU"] == pytest.approx(r["BLEU"])


def test_without_references_uses_labelled_proxy(tmp_path):
    s = SettingResult(name="noref", utterances=[_utt(i, 2, reference=False) for i in range(2)])
    report = write_report(tmp_path, [s])
    row = report["settings"][0]["directions"]["zh-en"]
    assert row["quality_basis"] == "cascade-agreement" and row["BLEU"] is None
    assert report["curve"]["points"][0]["quality_basis"] == "cascade-agreement"
    assert "*" in (tmp_path / "report.md").read_text().split("| zh-en |")[1].splitlines()[0]


def test_duplicate_setting_names_rejected(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        write_report(tmp_path, [SettingResult("a b", [_utt(0, 1)]), SettingResult("a_b", [_utt(0, 1)])])


def test_one_curve_line_per_path_and_report_explains_figures(tmp_path):
    """Whatever paths the settings carry get a line each through their settings; the cascade
    is its own point at retention 1; report.md records the run and explains AL and retention."""
    settings = [SettingResult(name=f"e2e-wait-{k}", params={"k": k}, path="e2e",
                              utterances=[_utt(i, k) for i in range(3)]) for k in (1, 5)]
    settings += _settings()  # simul by default
    cascade = [UtteranceResult(**{**_utt(i, 5).__dict__, "prediction": _utt(i, 5).cascade}) for i in range(3)]
    settings.append(SettingResult(name="cascade", utterances=cascade, path="cascade"))
    meta = {"profile": "tiny: random weights", "models": {"asr": "sensevoice store:tiny/sensevoice"},
            "commit": "0123abcd", "machine": "linux, 2 CPUs"}
    report = write_report(tmp_path, settings, meta=meta)
    assert [s["path"] for s in report["settings"]] == ["e2e"] * 2 + ["simul"] * 3 + ["cascade"]
    assert report["curve"]["lines"] == [{"label": "e2e (zh-en)", "points": 2}, {"label": "simul (zh-en)", "points": 3},
                                        {"label": "cascade (zh-en)", "points": 1}]
    [casc] = [p for p in report["curve"]["points"] if p["path"] == "cascade"]
    assert casc["retention"] == pytest.approx(1.0)
    md = (tmp_path / "report.md").read_text()
    for needle in ("| profile | tiny: random weights |", "| commit | 0123abcd |", "| machine | linux, 2 CPUs |",
                   "asr: sensevoice store:tiny/sensevoice", "AL below zero", "Above 1", "## Summary",
                   "| e2e | e2e-wait-1 | zh-en |", "| cascade | cascade | zh-en |"):
        assert needle in md, needle
    assert json.loads((tmp_path / "report.json").read_text())["meta"]["commit"] == "0123abcd"
