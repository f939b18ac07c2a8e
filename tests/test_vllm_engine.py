"""vLLM as the decoder engine, against a real vLLM server (no mocks).

One session-scoped fixture runs ``streamst engine start --profile tiny`` (two vLLM CPU
servers: the tiny MT Qwen3 and the tiny Fun-ASR-Nano's Qwen3 decoder exported as a plain
Qwen3 checkpoint) ONCE; every test here talks to it. vLLM lives in a venv of its own
(``.ci/run`` makes ``.venv-vllm``); the tests find its python through
``$STREAMST_VLLM_PYTHON`` (default ``.venv-vllm/bin/python`` in the repository) and skip,
saying so, when it is absent. The test that kills a vLLM process runs last in this module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamst.server import ServerConfig
from tests.server_util import ServerThread, metric_value, read_wav, run_session

REPO = Path(__file__).resolve().parent.parent
VLLM_PYTHON = os.environ.get("STREAMST_VLLM_PYTHON") or str(REPO / ".venv-vllm" / "bin" / "python")
ZH = "区块链是今年最火热的科技趋势了。"
START_TIMEOUT_S = 900  # two vLLM servers starting side by side on a loaded 2-core box


@dataclass
class Engine:
    url: str  # the --engine-url line
    mt_pid: int
    e2e_pid: int
    e2e_base: str  # http://host:port of the e2e decoder's server (its /metrics)


def _free_pair() -> int:
    """A port P with P and P + 1 free on loopback."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="session")
def vllm_engine(tiny_models_root, tmp_path_factory):
    if not Path(VLLM_PYTHON).is_file():
        pytest.skip(f"vLLM not installed: no {VLLM_PYTHON} (set STREAMST_VLLM_PYTHON, or let .ci/run make .venv-vllm)")
    out = tmp_path_factory.mktemp("engine")
    port = _free_pair()
    env = dict(os.environ, STREAMST_MODELS=str(tiny_models_root), PYTHONPATH=str(REPO))
    # vLLM flags: -O0 no torch.compile (start-up time); KV blocks of 32 positions (CPU attention
    # takes multiples of 32; its default 128 would leave the tiny prompts few whole blocks to share)
    cmd = [sys.executable, "-m", "streamst.cli", "engine", "start", "--profile", "tiny", "--port", str(port),
           "--dtype", "float32", "--vllm-python", VLLM_PYTHON, "--out", str(out), "--timeout", str(START_TIMEOUT_S),
           "--", "-O0", "--block-size", "32"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    url = None
    for line in proc.stdout:  # ends when the command exits (its own timeout bounds the wait)
        lines.append(line.strip())
        if line.startswith("engine url: "):
            url = line.split(": ", 1)[1].strip()
            break
    if url is None:
        err = proc.stderr.read()
        proc.wait(30)
        pytest.fail(f"engine start failed ({proc.returncode}): {err.strip()[-800:]} {lines}")
    pids = {ln.split()[1]: int(ln.split("pid ")[1].split(",")[0]) for ln in lines if " decoder " in ln}
    engine = Engine(url=url, mt_pid=pids["mt"], e2e_pid=pids["e2e"],
                    e2e_base=url.split(",")[1].removesuffix("/v1"))
    yield engine
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


@pytest.fixture(scope="module")
def vllm_models(vllm_engine, tiny_models_root):
    """The tiny profile's models with both decoders on the vLLM servers."""
    from streamst.loading import Models, RuntimeOptions
    from streamst.profiles import load_profile

    profile = load_profile(str(tiny_models_root / "profiles" / "tiny.json"))
    return Models(profile, RuntimeOptions(engine="vllm", engine_url=vllm_engine.url), root=tiny_models_root)


@pytest.fixture(scope="module")
def zh_audio(speech):
    return read_wav(speech(ZH, "zh", gap_ms=700))


def _vllm_metric(base: str, name: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(name) and not ln.startswith("#") and (ln[len(name)] in "{ "))


def test_engine_start_without_vllm_is_one_line(capsys) -> None:
    """A python without vLLM: one line naming what to install, exit code 2 (no vLLM needed)."""
    from streamst.cli import main

    assert main(["engine", "start", "--profile", "tiny", "--vllm-python", sys.executable]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vLLM is not importable" in err and "pip install vllm" in err, err


def test_translate_mode_all_on_vllm_equals_local(vllm_engine, tiny_models_root, speech, monkeypatch, capsys):
    """``translate --mode all --engine vllm``: the same committed text per path (and the same
    delays) as the in-process decoders, float32 greedy, under wait-k and under reorder-aware
    (its proposal + alternatives as one multi-prompt request; one predicted continuation, the
    greedy one: sampled ones come from the engine's own sampler); a wrong engine URL is one line."""
    from streamst.cli import main

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    wav = speech(ZH, "zh", gap_ms=700)

    def run(policy: list[str], *engine: str) -> list[dict]:
        args = ["translate", str(wav), "--profile", "tiny", "--src", "zh", "--tgt", "en", "--mode", "all",
                "--json", *policy, *engine]
        assert main(args) == 0
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        keys = ("utterance", "path", "source", "simul", "cascade", "e2e", "delays_ms")
        return [{k: u.get(k) for k in keys} for u in summary["utterances"]]

    for policy in (["--policy", "wait-k"], ["--policy", "reorder-aware", "--continuations", "1"]):
        want = run(policy, "--engine", "local")
        assert {u["path"] for u in want} == {"e2e", "simul"} and all(u[u["path"]] for u in want), want
        assert run(policy, "--engine", "vllm", "--engine-url", vllm_engine.url) == want, policy

    port = _free_pair()
    assert main(["translate", str(wav), "--profile", "tiny", "--mode", "simul", "--json", "--engine", "vllm",
                 "--engine-url", f"http://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unreachable" in err and "engine start" in err, err


def test_concurrent_sessions_through_one_vllm_equal_their_solo_runs(vllm_models, zh_audio, speech):
    """Three sessions at once (mode all: both decoders on vLLM), each equal to its own solo
    run; vLLM's /metrics shows prefix-cache hits from the e2e steps (frozen audio frames)."""
    en_audio = read_wav(speech("the weather is nice today and we go out", "en", gap_ms=700))
    starts = [({"src_lang": "zh", "tgt_langs": ["en"], "mode": "all", "policy": "wait-k"}, zh_audio),
              ({"src_lang": "en", "tgt_langs": ["zh"], "mode": "all", "policy": "wait-k"}, en_audio),
              ({"src_lang": "zh", "tgt_langs": ["en", "ja"], "mode": "e2e"}, zh_audio)]
    srv = ServerThread(ServerConfig(profile="tiny", max_sessions=4, idle_timeout_s=60), vllm_models)

    def finals(msgs):
        return sorted((m["mode"], m["language"], m["utterance"], m["committed"]) for m in msgs
                      if m["type"] == "translation" and m.get("final"))

    try:
        hits0 = _vllm_metric(vllm_engine_base(vllm_models), "vllm:prefix_cache_hits_total")
        solo = []
        for start, audio in starts:
            msgs, code = run_session(srv.url(), start, audio)
            assert code == 1000, msgs[-3:]
            solo.append(finals(msgs))
        assert all(solo) and any(any(t for *_, t in s) for s in solo), solo
        hits = _vllm_metric(vllm_engine_base(vllm_models), "vllm:prefix_cache_hits_total") - hits0
        assert hits > 0
        results: list = [None] * len(starts)

        def one(i):
            results[i] = run_session(srv.url(), *starts[i])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(starts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        for i, (msgs, code) in enumerate(results):
            assert code == 1000, msgs[-3:]
            assert finals(msgs) == solo[i]
        status, _, text = srv.http("/metrics")
        assert metric_value(text, "streamst_engine_request_seconds_count", decoder="e2e") > 0
    finally:
        srv.close()


def vllm_engine_base(models) -> str:
    return models.e2e.engine.client.base_url.removesuffix("/v1")


def test_killing_vllm_mid_session_ends_that_session_with_engine_unavailable(vllm_engine, vllm_models, zh_audio,
                                                                            caplog):
    """The e2e decoder's vLLM dies during a session: that session gets ``engine_unavailable``
    (close 1013) and the log has no traceback; a simul session (the MT decoder's vLLM, still
    up) finishes normally. Runs last: it ends the module's e2e server."""
    from websockets.sync.client import connect

    from streamst.audio import pcm16_bytes
    from tests.server_util import read_all

    srv = ServerThread(ServerConfig(profile="tiny", max_sessions=4, idle_timeout_s=60), vllm_models)
    try:
        with connect(srv.url(), open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"], "mode": "e2e",
                                "policy": "wait-k"}))
            assert json.loads(ws.recv(timeout=20))["type"] == "ready"
            half = len(zh_audio) // 2
            ws.send(pcm16_bytes(zh_audio[:half]))
            os.kill(vllm_engine.e2e_pid, signal.SIGKILL)
            for i in range(half, len(zh_audio), 1600):
                ws.send(pcm16_bytes(zh_audio[i : i + 1600]))
            ws.send(json.dumps({"type": "end"}))
            msgs, code = read_all(ws, timeout=120)
        errors = [m for m in msgs if m["type"] == "error"]
        assert errors and errors[-1]["code"] == "engine_unavailable", msgs[-3:]
        assert code == 1013
        assert "Traceback" not in caplog.text
        msgs, code = run_session(srv.url(), {"src_lang": "zh", "tgt_langs": ["en"], "mode": "simul"}, zh_audio)
        assert code == 1000 and [m for m in msgs if m["type"] == "translation" and m.get("final")]
    finally:
        srv.close()
