"""Profiles declare what their e2e model can do (issue 21): the public Fun-ASR-Nano only
transcribes, so a translating mode on it is refused with one line instead of captioning a
transcript as a translation."""

from __future__ import annotations

import json

import pytest

from streamst.errors import UserError
from streamst.profiles import load_profile


def test_the_public_fun_asr_nano_transcribes_only():
    prof = load_profile("default")
    assert prof.e2e.tasks == ("transcribe",)
    assert "translate" in load_profile("tiny").e2e.tasks  # a model built/trained here translates


def _profile(tmp_path, tasks):
    raw = json.loads(load_profile.__globals__["PACKAGED_PROFILES"].joinpath("tiny.json").read_text())
    raw["e2e"]["tasks"] = tasks
    path = tmp_path / "p.json"
    path.write_text(json.dumps(raw))
    return path


def test_mode_e2e_on_a_transcription_only_model_is_refused_in_one_line(tmp_path, tiny_models_root, monkeypatch, capsys):
    from streamst.cli import main
    from streamst.commands._common import load_models

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    path = _profile(tmp_path, ["transcribe"])
    with pytest.raises(UserError, match="transcribes only"):
        load_models(str(path), "cpu", ("e2e",))
    load_models(str(path), "cpu", ("simul",))  # the text paths stay available
    wav = tmp_path / "x.wav"
    import numpy as np
    import soundfile as sf

    sf.write(str(wav), np.zeros(8000, dtype=np.float32), 16000, subtype="PCM_16")
    assert main(["translate", str(wav), "--profile", str(path), "--src", "zh", "--tgt", "en", "--mode", "e2e"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "transcribes only" in err[0]


def test_malformed_tasks_are_one_line(tmp_path):
    with pytest.raises(UserError, match="tasks must be"):
        load_profile(str(_profile(tmp_path, ["dance"])))
