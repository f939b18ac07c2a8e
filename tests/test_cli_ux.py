"""What a person sees from the CLI: arguments checked before any model loads, messages that
name the fix, progress and live lines only at a terminal, the per-utterance summary, eval
results kept as they finish, FunASR's ffmpeg notice silenced, mic without a device."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from streamst.cli import main
from streamst.commands import _common
from tests.conftest import REPO


@pytest.fixture()
def no_models(tmp_path, monkeypatch):
    """A models folder with the profiles but nothing built: loading any model would exit 3."""
    shutil.copytree(REPO / "streamst" / "data" / "profiles", tmp_path / "profiles")
    monkeypatch.setenv("STREAMST_MODELS", str(tmp_path))
    return tmp_path


@pytest.fixture()
def tone(tmp_path):
    import soundfile as sf

    path = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, subtype="PCM_16")
    return path


def last_err(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("args, needle", [
    (["--tgt", "xx"], "--tgt 'xx' is not a supported language (choose from zh, yue, en"),
    (["--src", "zh", "--tgt", "en,zh"], "--tgt includes the source language 'zh'"),
    (["--tgt", "en,en"], "--tgt lists a language twice"),
    (["--tgt", ","], "--tgt needs at least one language, e.g. --tgt en"),
    (["--src", "klingon"], "--src 'klingon' is not a supported language"),
    (["--chunk-ms", "100"], "multiple of 60"),
])
def test_translate_checks_arguments_before_loading_models(no_models, tone, capsys, args, needle):
    rc = main(["translate", str(tone), "--profile", "tiny", *args])
    assert rc == 2  # not 3: the (missing) models were never reached
    assert needle in last_err(capsys)


@pytest.mark.parametrize("value", ["-1", "two"])
def test_threads_must_be_a_count(no_models, tone, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["translate", str(tone), "--profile", "tiny", "--threads", value])
    assert e.value.code == 2
    assert f"--threads: must be an integer >= 0, got '{value}'" in last_err(capsys)


def test_audio_path_errors_name_the_fix(no_models, tmp_path, capsys):
    assert main(["translate", str(tmp_path), "--profile", "tiny"]) == 2
    assert f"{tmp_path} is a directory: give an audio file (wav, flac, ogg)" in last_err(capsys)
    assert main(["transcribe", str(tmp_path / "nope.wav"), "--profile", "tiny"]) == 2
    assert "no such file" in last_err(capsys)
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "manifest.jsonl").write_text("")
    assert main(["eval", str(tmp_path / "set"), "--profile", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "is a directory: give the manifest file (did you mean" in last_err(capsys)


def test_missing_models_are_reported_up_front_with_the_command(no_models, tone, capsys):
    assert main(["translate", str(tone), "--profile", "tiny", "--json"]) == 3
    err = last_err(capsys)
    assert "profile 'tiny'" in err and "run `streamst models build --profile tiny`" in err
    assert capsys.readouterr().out == ""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_and_live_line_only_at_a_terminal(monkeypatch):
    out, err = _Tty(), _Tty()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert _common.interactive() and not _common.interactive(as_json=True)
    lines = _common.LiveLines(10.0, enabled=_common.interactive())
    lines.live("[0] en simul: Blockchain is [the most]")
    lines.advance(4.0)
    lines.line("[0] en simul: Blockchain is the most trendy technology of the year.")
    lines.close()
    assert "s audio" in err.getvalue() and "Blockchain is [the most]" in err.getvalue()
    assert "4.0/10.0" in err.getvalue()
    assert out.getvalue() == "[0] en simul: Blockchain is the most trendy technology of the year.\n"
    # either stream redirected: no bar, no rewriting, the finished lines only
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not _common.interactive()
    plain_out = io.StringIO()
    plain = _common.LiveLines(10.0, enabled=_common.interactive(), out=plain_out)
    plain.live("tentative")
    plain.advance(5.0)
    plain.line("done")
    plain.close()
    assert plain_out.getvalue() == "done\n" and sys.stderr.getvalue() == ""


def test_clip_left_keeps_the_newest_words_by_display_width():
    assert _common.clip_left("hello world", 20) == "hello world"
    assert _common.clip_left("hello world", 6) == "…world"
    assert _common.clip_left("区块链是今年最火", 7) == "…年最火"  # CJK is two columns wide


def test_utterance_table_per_path_and_means():
    from streamst.pipeline import UtteranceResult

    rs = [UtteranceResult(0, "en", 300, 4000, "源", simul="a b", cascade="a b c", retention_proxy=0.8,
                          metrics={"AL": 1690.0, "LAAL": 1700.0, "AL_CA": 2880.0, "LAAL_CA": 2890.0}),
          UtteranceResult(1, "en", 5000, 7000, "源", simul="c", cascade="c", retention_proxy=1.0,
                          metrics={"AL": 310.0, "LAAL": 300.0, "AL_CA": 1120.0, "LAAL_CA": 1110.0})]
    buf = io.StringIO()
    _common.utterance_table(rs, buf)
    rows = [line.split() for line in buf.getvalue().splitlines()]
    assert rows[1] == ["0", "0.3-4.0", "en", "simul", "1.69", "1.70", "2.88", "2.89", "0.80*"]
    assert rows[2] == ["1", "5.0-7.0", "en", "simul", "0.31", "0.30", "1.12", "1.11", "1.00*"]
    assert rows[3] == ["mean", "en", "simul", "1.00", "1.00", "2.00", "2.00"]
    assert "retention*: chrF(streaming, cascade)/100" in buf.getvalue()


def test_result_paths_reads_any_path():
    obj = types.SimpleNamespace(simul="x", cascade=None, e2e="y", texts={"future": "z"})
    assert list(_common.result_paths(obj)) == ["e2e", "simul", "future"]
    assert _common.ordered_paths(["cascade", "zeta", "simul", "e2e"]) == ["e2e", "simul", "cascade", "zeta"]


def test_funasr_ffmpeg_notice_is_dropped(capsys):
    from streamst.asr.funasr_load import funasr_output_to_stderr

    with funasr_output_to_stderr():
        print("Notice: ffmpeg is not installed. torchaudio is used to load audio")
        print("If you want to use ffmpeg backend to load audio, please install it by:")
        print("\tsudo apt install ffmpeg # ubuntu")
        print("\t# brew install ffmpeg # mac")
        print("funasr version: 1.4.16.")
        print("something else FunASR says")
    got = capsys.readouterr()
    assert got.out == "" and got.err == "something else FunASR says\n"


def test_importing_funasr_prints_nothing():
    if shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is installed: FunASR prints no notice to drop")
    code = ("from streamst.asr.funasr_load import funasr_output_to_stderr\n"
            "with funasr_output_to_stderr():\n    import funasr.utils.load_utils\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ffmpeg" not in r.stdout + r.stderr and r.stdout == ""


def test_mic_without_an_audio_device_suggests_file(monkeypatch):
    from streamst.commands import mic
    from streamst.errors import UserError

    class PortAudioError(Exception):
        pass

    def query_devices(device=None, kind=None):
        raise PortAudioError("Error querying device -1")

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(query_devices=query_devices))
    with pytest.raises(UserError, match="--file talk.wav"):
        mic.mic_source(None)
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    with pytest.raises(UserError, match="--file talk.wav"):
        mic.mic_source(None)
    help_text = subprocess.run([sys.executable, "-m", "streamst.cli", "mic", "--help"], capture_output=True,
                               text=True, timeout=120, cwd=REPO).stdout
    assert "1 the server could not be reached" in " ".join(help_text.split())


@pytest.fixture()
def translate_sessions(tiny_models_root, monkeypatch) -> list:
    """The tiny models for ``streamst translate`` (in-process), and the sessions it makes."""
    from streamst.commands import translate

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    sessions: list = []
    real = translate.TranslationSession

    def keep(*a, **kw):
        sessions.append(real(*a, **kw))
        return sessions[-1]

    monkeypatch.setattr(translate, "TranslationSession", keep)
    return sessions


def test_translate_prints_lines_and_a_latency_table(translate_sessions, speech, capsys):
    """The human output agrees with what the session measured (tiny random models: the text
    itself is noise, so the test compares against the session's own results)."""
    from streamst.commands._common import one_line

    sessions = translate_sessions

    wav = speech("今天天气很好", "zh", gap_ms=600)
    assert main(["translate", str(wav), "--profile", "tiny", "--mode", "both"]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out and not out.lstrip().startswith("{")  # not a terminal: no rewriting, no JSON
    lines = out.splitlines()
    results = list(sessions[0].results)
    assert results, out
    summary = next(i for i, line in enumerate(lines) if line.startswith("summary: "))
    assert "mode both, profile tiny" in lines[summary]
    table = [line.split() for line in lines[summary + 1 :]]
    for r in results:
        span = f"{r.start_ms / 1000:.1f}-{r.end_ms / 1000:.1f}"
        # one line each, whatever whitespace the (random) models emit
        assert f"[{r.utterance}] {span} s zh: {one_line(r.source)}" in lines, out
        assert f"[{r.utterance}] en simul: {one_line(r.simul)}".rstrip() in lines, out
        assert f"[{r.utterance}] en cascade: {one_line(r.cascade)}".rstrip() in lines, out
        if r.metrics:
            lat = (f"[{r.utterance}] en {r.path} latency: AL {r.metrics['AL'] / 1000:.2f} s · "
                   f"LAAL {r.metrics['LAAL'] / 1000:.2f} s")
            assert any(x.startswith(lat) for x in lines), out
            row = [str(r.utterance), span, "en", "simul", f"{r.metrics['AL'] / 1000:.2f}",
                   f"{r.metrics['LAAL'] / 1000:.2f}", f"{r.metrics['AL_CA'] / 1000:.2f}",
                   f"{r.metrics['LAAL_CA'] / 1000:.2f}"]
            assert any(t[:8] == row for t in table), (row, out)
    if any(r.metrics for r in results):
        assert table[0][:4] == ["utt", "time", "(s)", "lang"] and "retention" in table[0], out
        assert any(t[:1] == ["mean"] for t in table), out
    else:
        assert "no utterance produced a streaming translation" in out


def test_eval_keeps_results_as_they_finish_and_resumes(tiny_models_root, monkeypatch, capsys, tmp_path):
    from streamst.testset import synthesize_testset
    from streamst.tts import have_tts

    if not have_tts():
        pytest.skip("espeak-ng and sox are not installed (apt-get install espeak-ng sox)")
    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    manifest = synthesize_testset(tmp_path / "set", langs=["zh-en"], limit=2)
    out = tmp_path / "report"
    args = ["eval", str(manifest), "--profile", "tiny", "--policy", "wait-k", "--k", "2", "--out", str(out)]
    assert main([*args, "--limit", "1"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (first["resumed"], first["computed"]) == (0, 1)
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    assert main(args) == 0  # the whole manifest: the first line is reused
    got = capsys.readouterr()
    second = json.loads(got.out.splitlines()[-1])
    assert (second["resumed"], second["computed"]) == (1, 1), got
    assert "reusing 1 of 2 results" in got.err
    assert second["settings"] == ["wait-k-k2", "cascade"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["profile"].startswith("tiny") and report["meta"]["commit"]
    assert "CPUs" in report["meta"]["machine"] and report["meta"]["models"]["mt"].startswith("qwen")
    assert {p["path"] for p in report["curve"]["points"]} <= {"simul", "cascade"}
    md = (out / "report.md").read_text()
    assert "| profile | tiny" in md and "| commit |" in md and "AL below zero" in md


def test_result_store_appends_skips_cut_lines_and_starts_fresh(tmp_path):
    from streamst.commands.eval import ResultStore

    path = tmp_path / "results.jsonl"
    store = ResultStore(path, fresh=False)
    store.put({"key": "a", "paths": {}})
    store.put({"key": "b", "paths": {}})
    with path.open("a") as f:
        f.write('{"key": "c", "pa')  # interrupted mid-write
    again = ResultStore(path, fresh=False)
    assert again.get("a") and again.get("b") and again.get("c") is None
    assert ResultStore(path, fresh=True).get("a") is None and not path.exists()


def test_eval_merges_each_path_from_its_own_results(tmp_path):
    """Mode all gives one pipeline result per streaming path; eval scores e2e from the e2e
    results, simul from the simul ones and the cascade from the sentence the simul one carries."""
    from streamst.commands.eval import ManifestLine, merge
    from streamst.pipeline import UtteranceResult as R

    line = ManifestLine("u1", tmp_path / "a.wav", "源", "a b c", "zh", "en")
    results = [R(0, "en", 0, 1000, "源", simul="s1 s2", delays_ms=[300.0, 600.0], elapsed_ms=[310.0, 620.0],
                 cascade="c1 c2 c3", cascade_delay_ms=1200.0, displays=["s1", "s1 s2"], commits=["s1", "s1 s2"]),
               R(0, "en", 0, 1000, "源", path="e2e", e2e="e1", delays_ms=[450.0], elapsed_ms=[480.0],
                 displays=["e1 x"], commits=["e1"])]
    e2e, simul, cascade = (merge(line, results, 1500, p) for p in ("e2e", "simul", "cascade"))
    assert (e2e.prediction, list(e2e.delays), list(e2e.elapsed), list(e2e.displays)) == ("e1", [450.0], [480.0], ["e1 x"])
    assert (simul.prediction, list(simul.delays), list(simul.committed)) == ("s1 s2", [300.0, 600.0], ["s1", "s1 s2"])
    assert (cascade.prediction, list(cascade.delays), list(cascade.elapsed)) == ("c1 c2 c3", [1200.0] * 3, [])


def test_translate_realtime_reports_how_far_behind_it_ran(translate_sessions, capsys, tmp_path):
    """``--realtime --json``: the summary says how far processing was behind the audio after
    each chunk and when the last results were out; ``--e2e-lean`` and ``--threads`` reach the
    session's config and the models' runtime options."""
    import soundfile as sf
    import torch

    sessions = translate_sessions
    wav = tmp_path / "noise.wav"
    rng = np.random.default_rng(0)
    sf.write(str(wav), (0.2 * rng.standard_normal(19200)).astype(np.float32), 16000, subtype="PCM_16")  # 1.2 s
    threads = torch.get_num_threads()
    try:
        assert main(["translate", str(wav), "--profile", "tiny", "--mode", "e2e", "--e2e-lean", "--threads", "1",
                     "--realtime", "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["type"] == "summary" and summary["audio_s"] == 1.2
    lag = summary["lag_ms"]
    assert set(lag) == {"p50", "p95", "max"} and all(isinstance(v, float) and v >= 0 for v in lag.values())
    assert summary["done_after_end_ms"] >= 0
    assert summary["wall_s"] >= 1.2  # paced: not before the audio's own duration
    [session] = sessions
    assert session.cfg.e2e.final_encoding == "incremental" and session.cfg.e2e.lookahead == 1
    assert session.models.options.threads == 1


def test_realtime_lag_figures():
    from streamst.commands.translate import realtime_lag

    figures = realtime_lag([-5.0, 10.0, 30.0, 20.0, 400.0], 150.0)
    assert figures == {"lag_ms": {"p50": 20.0, "p95": 400.0, "max": 400.0}, "done_after_end_ms": 150.0}
    assert realtime_lag([], -3.0) == {"lag_ms": {"p50": 0.0, "p95": 0.0, "max": 0.0}, "done_after_end_ms": 0.0}
