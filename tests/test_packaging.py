"""Installing like a real package: profiles are package data, a built wheel works from
another directory; hub models count as present only when they are in the local caches;
a profile that cannot be had offline fails at once, naming every model and how to get it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import wave
from pathlib import Path

import numpy as np
import pytest

from streamst.errors import ModelNotFoundError
from streamst.profiles import PACKAGED_PROFILES, list_profiles, load_profile
from tests.conftest import REPO

HUB_ENV = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELSCOPE_CACHE",
           "MODELSCOPE_OFFLINE", "HF_ENDPOINT", "MODELSCOPE_DOMAIN", "MODELSCOPE_ENDPOINT", "HTTPS_PROXY", "https_proxy")


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty Hugging Face and ModelScope caches, no offline setting, models folder in tmp."""
    for var in HUB_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("STREAMST_MODELS", str(tmp_path / "models"))
    return tmp_path


def fake_hf(root: Path, repo: str) -> Path:
    snap = root / "hf" / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"\0")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc123")
    return snap


def fake_ms(root: Path, repo: str, *, weights: bool = True) -> Path:
    owner, name = repo.split("/")
    d = root / "ms" / "models" / owner / name.replace(".", "___")
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("x: 1\n")
    if weights:
        (d / "model.pt").write_bytes(b"\0")
    return d


def never_called(endpoints, timeout_s):
    raise AssertionError(f"the hub must not be contacted here: {endpoints}")


def test_profiles_are_package_data_and_user_profiles_override(caches):
    assert {p.stem for p in PACKAGED_PROFILES.glob("*.json")} >= {"default", "tiny", "random-real"}
    assert {"default", "tiny", "random-real"} <= set(list_profiles())
    user = caches / "models" / "profiles"
    user.mkdir(parents=True)
    raw = json.loads((PACKAGED_PROFILES / "tiny.json").read_text())
    (user / "tiny.json").write_text(json.dumps(raw | {"description": "mine"}))
    (user / "mine.json").write_text(json.dumps(raw | {"name": "mine"}))
    assert load_profile("tiny").description == "mine" and "mine" in list_profiles()


def test_hub_models_count_only_when_cached_with_weights(caches, capsys):
    from streamst.cli import main

    prof = load_profile("default")
    assert [s.role for s in prof.missing()] == ["asr", "vad", "punc", "mt", "e2e", "spk"]
    main(["models", "list"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("default"))
    assert "missing" in line and "Qwen/Qwen3-1.7B" in line and "iic/SenseVoiceSmall" in line
    fake_ms(caches, prof.asr.source)
    fake_ms(caches, prof.vad.source, weights=False)  # an interrupted download
    fake_ms(caches, prof.punc.source)
    snap = fake_hf(caches, prof.mt.source)
    fake_hf(caches, prof.e2e.source)
    fake_ms(caches, prof.spk.source)
    assert [s.role for s in prof.missing()] == ["vad"]
    (caches / "ms" / "models" / "iic" / prof.vad.source.split("/")[1] / "model.pt").write_bytes(b"\0")
    assert prof.missing() == []
    main(["models", "list"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("default"))
    assert line.split() == ["default", "ready"]
    # a cached hub model loads from its cache directory: no network needed
    assert prof.require(prof.mt) == str(snap)
    prof.check_available(probe=never_called)


def test_offline_setting_fails_at_once_naming_every_model(caches, monkeypatch):
    prof = load_profile("default")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELSCOPE_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as e:
        prof.check_available(probe=never_called)  # offline: the hub is not even asked
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 3
    for spec in prof.specs():
        assert spec.source in msg
    assert "modelscope download --model iic/SenseVoiceSmall" in msg and "hf download Qwen/Qwen3-1.7B" in msg
    assert "HF_HUB_OFFLINE" in msg and "MODELSCOPE_OFFLINE" in msg
    with pytest.raises(ModelNotFoundError):
        prof.require(prof.mt)  # the loader path refuses too


def test_an_optional_model_alone_does_not_fail_the_check(caches, monkeypatch):
    prof = load_profile("default")
    for spec in (prof.asr, prof.vad, prof.punc, prof.spk):
        fake_ms(caches, spec.source)
    fake_hf(caches, prof.mt.source)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prof.check_available(probe=never_called)  # only e2e (Fun-ASR-Nano) is missing: mode e2e fails when loaded
    with pytest.raises(ModelNotFoundError, match="Fun-ASR-Nano"):
        prof.require(prof.e2e)


def test_unreachable_hub_fails_fast_and_a_reachable_one_downloads(caches):
    prof = load_profile("default")
    asked = []

    def probe(endpoints, timeout_s):
        asked.append((tuple(endpoints), timeout_s))
        return {e: "huggingface" in e for e in endpoints}  # ModelScope does not answer

    with pytest.raises(ModelNotFoundError) as e:
        prof.check_available(probe=probe)
    assert asked == [(("https://huggingface.co", "https://www.modelscope.cn"), 2.0)]
    msg = str(e.value)
    assert "no answer from https://www.modelscope.cn" in msg
    assert all(s.source in msg for s in (prof.asr, prof.vad, prof.punc)) and "Qwen" not in msg
    prof.check_available(probe=lambda eps, t: {x: True for x in eps})  # online: fetched on first use
    assert prof.require(prof.mt) == "Qwen/Qwen3-1.7B"


def test_real_probe_against_a_closed_port_is_bounded(caches, monkeypatch):
    import socket

    from streamst.hub import reachable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MODELSCOPE_DOMAIN", f"127.0.0.1:{port}")
    assert reachable([f"http://127.0.0.1:{port}"], 2.0) == {f"http://127.0.0.1:{port}": False}
    with pytest.raises(ModelNotFoundError, match="no answer from"):
        load_profile("default").check_available()


def test_cli_offline_default_profile_exits_3_with_one_line(caches, tmp_path):
    wav = tmp_path / "s.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.zeros(16000, dtype="<i2").tobytes())
    env = {k: v for k, v in os.environ.items() if k not in HUB_ENV}
    env.update(HF_HOME=str(tmp_path / "hf"), MODELSCOPE_CACHE=str(tmp_path / "ms"), HF_HUB_OFFLINE="1",
               MODELSCOPE_OFFLINE="1", STREAMST_MODELS=str(tmp_path / "models"))
    r = subprocess.run([sys.executable, "-m", "streamst.cli", "translate", str(wav), "--profile", "default"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 3, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if x.startswith("streamst ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(s in lines[0] for s in ("iic/SenseVoiceSmall", "Qwen/Qwen3-1.7B", "fsmn_vad", "punc_ct"))


@pytest.mark.slow
def test_wheel_installs_and_runs_from_another_directory(tmp_path, speech):
    """Build the wheel, install it (not editable) into a fresh venv that reuses this
    environment's dependencies, then build the tiny models and translate elsewhere."""
    import shutil

    src, dist = tmp_path / "src", tmp_path / "dist"  # a clean copy: no stale build/ or egg-info
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv*", "models", "build", "dist", "out",
                                                             "*.egg-info", "__pycache__", ".pytest_cache"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next(dist.glob("streamst-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STREAMST_MODELS", "VIRTUAL_ENV")}
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        str(wheel)], capture_output=True, text=True, timeout=600, env=clean, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # then the dependencies come from this environment (a path line: the .pth files there,
    # such as an editable install of streamst, are not run)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "home").mkdir(parents=True)
    env = dict(clean)
    env.update(HOME=str(elsewhere / "home"), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    # the tiny speaker model's training is cached by content hash: share this machine's cache
    env.setdefault("STREAMST_CACHE", str(Path.home() / ".cache" / "streamst"))
    exe = str(venv / "bin" / "streamst")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, env=env, cwd=elsewhere, timeout=600)

    where = run(str(py), "-c", "import streamst, streamst.profiles as p; print(streamst.__file__); print(p.models_dir())")
    assert where.returncode == 0, where.stderr
    pkg, models = where.stdout.split()
    assert pkg.startswith(str(site)), pkg  # the installed wheel, not the checkout
    assert models == str(elsewhere / "home" / ".cache" / "streamst" / "models")
    r = run(exe, "models", "build", "--profile", "tiny")
    assert r.returncode == 0, r.stderr[-3000:]
    built = json.loads(r.stdout.splitlines()[-1])["built"]
    assert len(built) == sum(s.is_store for s in load_profile("tiny").specs()) == 5
    r = run(exe, "models", "list")
    assert any(x.split() == ["tiny", "ready"] for x in r.stdout.splitlines()), r.stdout
    r = run(exe, "translate", str(speech("区块链是今年最火热的科技趋势了。", "zh")), "--profile", "tiny",
            "--src", "zh", "--tgt", "en", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.splitlines()[-1])["type"] == "summary"
