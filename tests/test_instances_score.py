"""instances.log reading/writing and the ``streamst score`` command's errors."""

from __future__ import annotations

import json

import pytest

from streamst import cli
from streamst.errors import UserError
from streamst.metrics.instances import InstanceRecord, read_instances, simuleval_scores, write_instances

REC = InstanceRecord(index=0, prediction="a b c", delays=[100, 200, 900], source_length=800,
                     reference="a b c d", elapsed=[150, 300, 1200], source=["x.wav"])


def test_round_trip_and_format(tmp_path):
    path = write_instances(tmp_path, [REC, InstanceRecord(index=1, prediction="", delays=[],
                                                          source_length=500, reference="z")])
    assert path.name == "instances.log"
    assert "source_type: speech" in (tmp_path / "config.yaml").read_text()
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["index", "prediction", "delays", "elapsed", "prediction_length",
                           "reference", "source", "source_length"]
    assert first["prediction_length"] == 3
    back = read_instances(path)
    assert back[0].to_dict() == REC.to_dict()
    assert back[1].delays == []


def test_scores_plain_and_ca():
    s = simuleval_scores([REC], computation_aware=True)
    assert list(s) == ["BLEU", "AL", "AL_CA", "LAAL", "LAAL_CA", "DAL", "DAL_CA", "AP", "AP_CA",
                       "StartOffset", "StartOffset_CA", "EndOffset", "EndOffset_CA"]
    assert s["AL"] == pytest.approx(200.0)  # plain stays plain (unlike SimulEval 1.1.4)
    assert s["AL_CA"] == pytest.approx(350.0)
    assert s["EndOffset"] == 100 and s["EndOffset_CA"] == 400


def _write(tmp_path, lines):
    p = tmp_path / "instances.log"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("lines,message", [
    (['{"index": 0, "prediction": "a", "delays": [1], "source_length": 10, "reference": "a"}',
      '{"index": 1, "prediction": "a", '], r"instances.log:2: malformed JSON"),
    (['{"index": 0, "prediction": "a", "delays": [1], "reference": "a"}'],
     r":1: missing field\(s\) source_length"),
    (['{"index": 0, "prediction": "a", "delays": [1], "source_length": 0, "reference": "a"}'],
     r"source_length"),
    (['{"index": 0, "prediction": "a", "delays": ["x"], "source_length": 9, "reference": "a"}'],
     r"'delays' must be a list of numbers"),
    (['{"index": 0, "prediction": "a", "delays": [1], "source_length": 9, "reference": "a"}'] * 2,
     r":2: index 0 already on line 1"),
    (['[1, 2]'], r"expected a JSON object"),
    ([''], r"no instances"),
])
def test_read_errors_name_the_line(tmp_path, lines, message):
    with pytest.raises(UserError, match=message):
        read_instances(_write(tmp_path, lines))


def test_elapsed_required_when_computation_aware(tmp_path):
    p = _write(tmp_path, ['{"index": 0, "prediction": "a", "delays": [1], "source_length": 9, "reference": "a"}'])
    assert read_instances(p)[0].elapsed == []
    with pytest.raises(UserError, match="missing field\\(s\\) elapsed"):
        read_instances(p, need_elapsed=True)
    p = _write(tmp_path, ['{"index": 0, "prediction": "a", "delays": [1], "elapsed": [], '
                          '"source_length": 9, "reference": "a"}'])
    with pytest.raises(UserError, match="1 delays but 0 elapsed"):
        read_instances(p, need_elapsed=True)


@pytest.fixture
def score_cli(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("score",))
    return cli.main


def test_score_command_output(tmp_path, score_cli, capsys):
    log = write_instances(tmp_path, [REC])
    assert score_cli(["score", str(log)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["AL"] == pytest.approx(200.0)
    assert "AL_CA" not in out
    assert "3 decimals" in out["_meta"]["precision"]
    assert out["_meta"]["latency_unit"] == "word"


def test_score_command_user_errors(tmp_path, score_cli, capsys):
    assert score_cli(["score", str(tmp_path / "nope.log")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and len(err.strip().splitlines()) == 1
    bad = _write(tmp_path, ['{"index": 0, "prediction": "", "delays": [], "source_length": 9, '
                            '"reference": ""}', '{oops'])
    assert score_cli(["score", str(bad)]) == 2
    assert ":2: malformed JSON" in capsys.readouterr().err
    # a char-unit empty reference would divide by zero in SimulEval: one clear line here
    zero = _write(tmp_path, ['{"index": 0, "prediction": "字", "delays": [5], "source_length": 9, '
                             '"reference": ""}'])
    assert score_cli(["score", str(zero), "--latency-unit", "char"]) == 2
    assert "target length is 0" in capsys.readouterr().err
