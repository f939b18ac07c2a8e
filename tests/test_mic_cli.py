"""``streamst mic``: live captions in the terminal through the websocket service.

Streams espeak-ng speech with ``--file --fast`` to a real ``streamst serve --profile tiny`` on
loopback. No test needs an audio device: the microphone paths are exercised with a missing
or fake ``sounddevice`` module.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import types

import pytest

from streamst.cli import main
from streamst.commands.mic import DIM, NO_SOUNDDEVICE, RESET, Renderer, with_token
from tests.conftest import concat_wavs
from tests.live_server import CLI, free_port, running_server


TOKEN = "mic-test-token"


@pytest.fixture(scope="module")
def server(tiny_models_root):
    with running_server(tiny_models_root, "--token", TOKEN) as s:
        yield s


@pytest.fixture(scope="module")
def two_utterances(speech, tmp_path_factory):
    a = speech("今天天气很好。", "zh")
    b = speech("我们去公园散步吧。", "zh")
    return concat_wavs([a, b], tmp_path_factory.mktemp("mic") / "two.wav", silence_ms=1500)


def run_mic(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, "mic", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_file_plain_prints_final_captions_and_summary(server, two_utterances):
    r = run_mic("--url", server.ws, "--token", TOKEN, "--src", "zh", "--tgt", "en",
                "--file", str(two_utterances), "--fast", "--plain")
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout
    assert "\x1b[" not in out  # --plain (and no TTY): no ANSI codes
    finals = re.findall(r"^\[(\d+)\] en: (.+)$", out, re.M)
    assert len(finals) >= 2 and all(text.strip() for _, text in finals), out
    assert re.search(r"^\[0\] \S+: .+$", out, re.M)  # the final transcript of utterance 0
    assert re.search(r"^\[\d+\] en latency: AL \d+ ms · LAAL \d+ ms", out, re.M), out
    assert re.search(r"^summary: .*\d+ utterances", out, re.M), out
    assert out.rstrip().splitlines()[-1].startswith("summary: ")


@pytest.mark.slow
def test_file_json_prints_raw_events(server, two_utterances):
    r = run_mic("--url", server.ws, "--token", TOKEN, "--src", "zh", "--tgt", "en",
                "--file", str(two_utterances), "--fast", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    types_ = [e["type"] for e in events]
    assert types_[0] == "ready" and types_[-1] == "end", types_
    assert "summary" in events[-1]
    assert any(e["type"] == "transcript" and e["kind"] == "final" for e in events)
    finals = [e for e in events if e["type"] == "translation" and e["final"]]
    assert finals and all(e["language"] == "en" and e["committed"] for e in finals)
    assert any(e["type"] == "latency" and "AL" in e["metrics"] for e in events)


@pytest.mark.slow
def test_server_error_is_reported_with_exit_1(server, two_utterances):
    # source == target is refused by the server at "start"
    r = run_mic("--url", server.ws, "--token", TOKEN, "--src", "zh", "--tgt", "zh",
                "--file", str(two_utterances), "--fast")
    assert r.returncode == 1, r.stderr + r.stdout
    assert "server error bad_language" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_wrong_token_is_refused(server, two_utterances):
    r = run_mic("--url", server.ws, "--token", "wrong", "--file", str(two_utterances), "--fast")
    assert r.returncode == 1, r.stderr + r.stdout
    assert r.stderr.startswith("streamst mic: server error unauthorized:"), r.stderr


def test_missing_file_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["mic", "--url", "ws://127.0.0.1:9/ws", "--file", str(tmp_path / "nope.wav")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "nope.wav" in err and "no such file" in err


def test_connection_refused_exit_1(two_utterances, capsys):
    rc = main(["mic", "--url", f"ws://127.0.0.1:{free_port()}/ws", "--file", str(two_utterances), "--fast"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "cannot connect" in err


def test_without_sounddevice_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice -> ImportError
    rc = main(["mic", "--url", "ws://127.0.0.1:9/ws"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == f"streamst mic: error: {NO_SOUNDDEVICE}"


def test_no_input_device_clear_error(monkeypatch, capsys):
    fake = types.ModuleType("sounddevice")

    def query_devices(device=None, kind=None):
        raise ValueError("No input device matching -1")

    fake.query_devices = query_devices
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    rc = main(["mic", "--url", "ws://127.0.0.1:9/ws", "--device-index", "7"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "no usable audio input device" in err


def _transcript(utt, text, stable, kind="partial"):
    return {"type": "transcript", "kind": kind, "utterance": utt, "text": text, "stable_text": stable,
            "tokens": [], "language": "zh", "audio_ms": 0, "start_ms": 0, "end_ms": 0}


def _translation(utt, committed, tentative, final=False):
    return {"type": "translation", "utterance": utt, "mode": "simul", "language": "en", "committed": committed,
            "new_units": [], "delays_ms": [], "elapsed_ms": [], "tentative": tentative, "final": final,
            "audio_ms": 0}


def test_renderer_tty_rewrites_one_line_with_dim_tentative():
    out = io.StringIO()
    r = Renderer(out, tty=True)
    r.event(_transcript(0, "今天天气", "今天"))
    r.event(_translation(0, "Today", "the weather"))
    text = out.getvalue()
    assert "\r\x1b[2K[0] 今天" + DIM + "天气" + RESET in text
    assert "[0] en: Today" + DIM + " the weather" + RESET in text
    assert "\n" not in text  # still the one live line
    r.event(_transcript(0, "今天天气很好", "今天天气很好", kind="final"))
    r.event(_translation(0, "Today the weather is nice", "", final=True))
    r.event({"type": "latency", "utterance": 0, "language": "en", "source_ms": 2000.0,
             "metrics": {"AL": 812.4, "LAAL": 900.0}, "retention_proxy": None})
    r.event({"type": "end", "summary": {"audio_s": 2.0, "utterances": [{}]}})
    lines = [line.rsplit("\x1b[2K", 1)[-1] for line in out.getvalue().split("\n") if line]
    assert lines == ["[0] zh: 今天天气很好", "[0] en: Today the weather is nice",
                     "[0] en latency: AL 812 ms · LAAL 900 ms",
                     "summary: 2.0 s audio, 1 utterances, en mean AL 812 ms, en mean LAAL 900 ms"]


def test_renderer_plain_uses_brackets_for_tentative():
    out = io.StringIO()
    r = Renderer(out, tty=False)
    r.event(_transcript(0, "今天天气", "今天"))
    r.event(_translation(0, "Today", "the weather"))
    r.event(_translation(0, "Today", "the weather is"))  # nothing new committed: no new line
    r.event(_translation(0, "Today the", "weather is"))
    assert out.getvalue().splitlines() == ["… [0] en: Today [the weather]", "… [0] en: Today the [weather is]"]
    assert "\x1b" not in out.getvalue()


def test_token_goes_to_the_query():
    assert with_token("ws://h:1/ws", "a b") == "ws://h:1/ws?token=a+b"
    assert with_token("ws://h:1/ws?x=1&token=old", "t") == "ws://h:1/ws?x=1&token=t"
    assert with_token("ws://h:1/ws", None) == "ws://h:1/ws"


@pytest.mark.slow
def test_ctrl_c_sends_end_and_waits_for_the_summary(server, two_utterances):
    """SIGINT once the session is ready: the CLI sends ``end`` and still gets the summary."""
    import select
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-c", CLI, "mic", "--url", server.ws, "--token", TOKEN,
                             "--file", str(two_utterances), "--json"],  # real-time pace: still sending
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        first = ""
        while not first and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                first = proc.stdout.readline()
        assert json.loads(first)["type"] == "ready", first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert events and events[-1]["type"] == "end" and "summary" in events[-1]
    assert "stopping" in err
