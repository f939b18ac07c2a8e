"""The full pipeline (ASR -> policy + Qwen decoder, cascade) on the tiny profile, and the
translate / eval / transcribe commands end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streamst.audio import read_audio
from streamst.loading import Models
from streamst.metrics.latency import retractions
from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.profiles import load_profile

ZH = "区块链是今年最火热的科技趋势了"


@pytest.fixture(scope="module")
def tiny_models(tiny_models_root):
    return Models(load_profile(str(tiny_models_root / "profiles" / "tiny.json")), root=tiny_models_root)


def run_session(models, config, samples):
    session = TranslationSession(models, config)
    events = []
    for i in range(0, len(samples), 9600):
        session.insert_audio(samples[i : i + 9600])
        events += session.process()
    return session, events + session.finish()


@pytest.mark.parametrize("mode", ["simul", "cascade", "both"])
def test_pipeline_all_modes(tiny_models, speech, mode):
    x, _ = read_audio(speech(ZH, "zh", gap_ms=600))
    config = PipelineConfig.create("zh", "en", mode=mode)
    session, events = run_session(tiny_models, config, x)
    types = {e.type for e in events}
    assert {"transcript", "translation", "latency"} <= types
    trans = [e for e in events if e.type == "translation"]
    modes = {e.mode for e in trans}
    assert modes == ({"simul", "cascade"} if mode == "both" else {mode})
    # committed simul text only grows, each new unit has a delay within the audio
    simul = [e for e in trans if e.mode == "simul"]
    assert retractions([e.committed for e in simul], "en") == 0
    for e in simul:
        assert len(e.delays_ms) == len(e.new_units) == len(e.elapsed_ms)
        assert all(0 <= d <= session.audio_ms for d in e.delays_ms)
        assert all(el >= d for el, d in zip(e.elapsed_ms, e.delays_ms))
    finals = [e for e in trans if e.final]
    assert finals and all(e.tentative == "" for e in finals)
    lat = [e for e in events if e.type == "latency"]
    assert lat and all(e.source_ms > 0 for e in lat)
    if mode != "cascade":
        assert any("AL" in e.metrics and "LAAL_CA" in e.metrics for e in lat)
    if mode == "both":
        assert all(e.retention_proxy is not None and 0 <= e.retention_proxy <= 1 for e in lat)
    assert len(session.results) == len(lat)


def test_two_targets_share_one_recogniser(tiny_models, speech):
    x, _ = read_audio(speech(ZH, "zh"))
    config = PipelineConfig.create("zh", ["en", "ja"], mode="simul", policy="wait-k", k=2)
    _, events = run_session(tiny_models, config, x)
    langs = {e.language for e in events if e.type == "translation"}
    assert langs == {"en", "ja"}


def test_bad_pipeline_config_is_a_clear_error():
    with pytest.raises(ValueError, match="also a target"):
        PipelineConfig.create("zh", "zh")
    with pytest.raises(ValueError, match="mode"):
        PipelineConfig.create("zh", "en", mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        PipelineConfig.create("zh", "en", k=0)


def cli(args, root, timeout=300):
    env = dict(os.environ, STREAMST_MODELS=str(root))
    return subprocess.run([sys.executable, "-m", "streamst.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_translate_cli_both_summary(tiny_models_root, speech):
    wav = speech(ZH, "zh", gap_ms=600)
    r = cli(["translate", str(wav), "--profile", "tiny", "--src", "zh", "--tgt", "en", "--mode", "both",
             "--policy", "reorder-aware", "--json"], tiny_models_root)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(line) for line in r.stdout.splitlines()]  # every stdout line is JSON
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["mode"] == "both"
    assert summary["utterances"], summary
    for u in summary["utterances"]:
        assert u["simul"] is not None and u["cascade"] is not None
        assert "AL" in u["latency"] and "LAAL" in u["latency"]


def test_transcribe_cli_summary_and_bad_inputs(tiny_models_root, speech, tmp_path):
    wav = speech(ZH, "zh")
    r = cli(["transcribe", str(wav), "--profile", "tiny", "--json"], tiny_models_root)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["type"] == "summary" and summary["audio_s"] > 1
    assert summary["events"]["final"] >= 1 and set(summary["events"]) == {"partial", "stable", "final"}
    assert summary["final_decodes"] >= 1 and summary["decodes"] == summary["partial_decodes"] + summary["final_decodes"]
    assert summary["cpu_s"] > 0
    bad = tmp_path / "notwav.wav"
    bad.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for args, needle in [
        ([str(bad)], "not a readable audio file"),
        ([str(empty)], "empty file"),
        ([str(tmp_path / "missing.wav")], "no such file"),
        ([str(wav), "--rate", "8000"], "declared sample rate 8000"),
        ([str(wav), "--chunk-ms", "100"], "multiple of 60"),
        ([str(wav), "--update-ms", "100"], "multiple of 60"),
    ]:
        r = cli(["transcribe", *args, "--profile", "tiny"], tiny_models_root)
        assert r.returncode == 2, (args, r.stderr)
        err = r.stderr.strip().splitlines()
        assert needle in err[-1] and "Traceback" not in r.stderr, r.stderr


def test_missing_model_names_profile_and_fix(tmp_path, speech):
    import shutil

    from tests.conftest import REPO

    shutil.copytree(REPO / "streamst" / "data" / "profiles", tmp_path / "profiles")
    r = cli(["transcribe", str(speech(ZH, "zh")), "--profile", "tiny"], tmp_path)
    assert r.returncode == 3
    last = r.stderr.strip().splitlines()[-1]
    assert "profile 'tiny'" in last and "streamst models build --profile tiny" in last


def test_eval_cli_writes_report(tiny_models_root, tmp_path):
    from streamst.testset import synthesize_testset
    from streamst.tts import have_tts

    if not have_tts():
        pytest.skip("espeak-ng and sox are not installed (apt-get install espeak-ng sox)")
    manifest = synthesize_testset(tmp_path / "set", langs=["zh-en"], limit=2)
    out = tmp_path / "report"
    r = cli(["eval", str(manifest), "--profile", "tiny", "--policy", "wait-k", "--k", "1,3", "--out", str(out)],
            tiny_models_root, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("report.json", "report.md", "curve.png"):
        assert (out / name).is_file()
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    # simul once per setting, the cascade (policy-independent) once
    assert [s["name"] for s in report["settings"]] == ["wait-k-k1", "wait-k-k3", "cascade"]
    logs = list(out.glob("*/*/instances.log"))
    assert len(logs) == 3
    first = json.loads(logs[0].read_text().splitlines()[0])
    assert {"index", "prediction", "delays", "elapsed", "source_length", "reference"} <= set(first)
