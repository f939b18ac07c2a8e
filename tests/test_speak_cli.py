"""``translate --speak-out``: the wav holds the spoken translation on the output timeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from streamst.cli import main
from streamst.speak.timeline import SpeechPolicy


def test_translate_speak_out_writes_the_spoken_translation(tiny_models_root, monkeypatch, speech, tmp_path, capsys):
    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    wav = speech("今天天气很好，我们去公园散步吧。", "zh", gap_ms=600)
    out = tmp_path / "out.wav"
    assert main(["translate", str(wav), "--profile", "tiny", "--json", "--speak-out", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    summary = lines[-1]
    sp = summary["speech"]
    committed = "".join(e["committed"] for e in lines if e.get("type") == "translation" and e["final"]
                        and e["mode"] == "simul" and e["language"] == "en")
    assert committed.strip() and sp["segments"] >= 1 and sp["spoken_ms"] > 0
    audio, rate = sf.read(str(out), dtype="float32")
    assert rate == 24000 and audio.ndim == 1
    length_ms = audio.size * 1000 / rate
    assert abs(length_ms - sp["duration_s"] * 1000) < 1
    # as long as the speech placed after the first commit, never longer than the source plus
    # the speech and the bound the policy allows
    assert sp["spoken_ms"] <= length_ms <= summary["audio_s"] * 1000 + sp["spoken_ms"] + SpeechPolicy().max_backlog_ms
    frames = audio[: audio.size // 480 * 480].reshape(-1, 480)
    voiced_ms = float((np.sqrt((frames ** 2).mean(axis=1)) > 0.01).sum()) * 20
    assert 0.3 * sp["spoken_ms"] <= voiced_ms <= sp["spoken_ms"] + 40  # speech where it was placed, silence elsewhere


@pytest.mark.parametrize("name, needle", [("out.mp3", "must name a .wav"), ("nope/out.wav", "does not exist")])
def test_speak_out_checked_before_models_load(tmp_path, monkeypatch, speech, capsys, name, needle):
    monkeypatch.setenv("STREAMST_MODELS", str(tmp_path / "empty"))  # loading a model would exit 3
    wav = speech("你好", "zh")
    assert main(["translate", str(wav), "--profile", "tiny", "--speak-out", str(tmp_path / name)]) == 2
    assert needle in capsys.readouterr().err


def test_eval_speak_reports_the_speech_output_delay(tiny_models_root, monkeypatch, capsys, tmp_path, speech):
    """``speech`` (the espeak-ng fixture) skips without espeak-ng; the test set is one line."""
    from streamst.testset import synthesize_testset

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    out = tmp_path / "report"
    args = ["eval", str(synthesize_testset(tmp_path / "set", langs=["zh-en"], limit=1)), "--profile", "tiny",
            "--mode", "simul", "--out", str(out), "--speak"]
    assert main(args) == 0
    capsys.readouterr()
    rec = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    report = json.loads((out / "report.json").read_text())
    speech = report["meta"]["speech"]
    assert speech["engine"] == "espeak-ng" and speech["items"] == 1
    assert speech["segments"] == rec["speech"]["segments"] >= 1
    delays = rec["speech"]["delays_ms"]
    assert delays and speech["delay_ms"]["max"] == max(delays) and speech["delay_ms"]["p50"] > 0
    assert "speech" in (out / "report.md").read_text()
