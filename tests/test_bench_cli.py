"""`streamst bench TARGET`: argparse in streamst/commands/bench.py, the run in streamst/bench/."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from streamst.cli import main


def test_bench_targets_run_from_the_command_line(tiny_models_root, monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    assert main(["bench", "mt", "--profile", "tiny", "--steps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["per_step"]) == 1 and report["summary"]["outputs_equal"] is True
    wav = tmp_path / "noise.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32), 16000)
    assert main(["bench", "asr", "--profile", "tiny", "--file", str(wav), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rows"]
    assert row["input"] == "noise.wav" and row["updates"] > 0
