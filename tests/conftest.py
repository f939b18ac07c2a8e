"""Shared fixtures: offline tiny models built once per test session, espeak-ng speech."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from streamst.tts import have_tts, synthesize

REPO = Path(__file__).resolve().parent.parent
NO_TTS = "espeak-ng and sox are not installed (Debian: apt-get install espeak-ng sox; .ci/run installs them)"


@pytest.fixture(scope="session")
def tiny_sensevoice_dir(tmp_path_factory) -> Path:
    from streamst.builders.sensevoice import build_tiny

    path = tmp_path_factory.mktemp("models") / "sensevoice"
    build_tiny(path, seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_asr(tiny_sensevoice_dir):
    from streamst.asr.sensevoice import SenseVoiceASR

    return SenseVoiceASR(str(tiny_sensevoice_dir))


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """Factory: speech(text, lang, gap_ms=0) -> Path of a 16 kHz wav (cached per session)."""
    if not have_tts():
        pytest.skip(NO_TTS)
    root = tmp_path_factory.mktemp("speech")
    cache: dict[tuple, Path] = {}

    def make(text: str, lang: str, gap_ms: int = 0) -> Path:
        key = (text, lang, gap_ms)
        if key not in cache:
            cache[key] = synthesize(text, lang, root / f"u{len(cache)}.wav", gap_ms=gap_ms)
        return cache[key]

    return make


def concat_wavs(paths, out: Path, silence_ms: int = 0) -> Path:
    """Join wavs with ``silence_ms`` of digital silence between them (16 kHz PCM16)."""
    import soundfile as sf

    parts = []
    for p in paths:
        x, rate = sf.read(str(p), dtype="float32")
        assert rate == 16000
        parts += [x, np.zeros(16 * silence_ms, dtype=np.float32)]
    sf.write(str(out), np.concatenate(parts), 16000, subtype="PCM_16")
    return out


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory) -> Path:
    """A models folder with the profiles and the tiny profile fully built (STREAMST_MODELS)."""
    from streamst.profiles import build_profile, load_profile

    root = tmp_path_factory.mktemp("streamst-models")
    shutil.copytree(REPO / "streamst" / "data" / "profiles", root / "profiles")
    build_profile(load_profile(str(root / "profiles" / "tiny.json")), root=root)
    return root


@pytest.fixture()
def models_env(tiny_models_root, monkeypatch) -> Path:
    """The tiny models folder as STREAMST_MODELS for one test (what `streamst train` reads)."""
    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    return tiny_models_root


@pytest.fixture()
def spoken_manifest(tmp_path, speech) -> Path:
    """A training manifest of two zh test-set sentences spoken by espeak-ng, with their English
    references and transcripts."""
    import json

    from streamst.testset import load_testset

    rows = [{"audio": str(speech(p.source, "zh")), "source": p.source, "reference": p.reference,
             "src_lang": "zh", "tgt_lang": "en", "id": p.id} for p in load_testset(["zh-en"], limit=2)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_models(tiny_models_root):
    """The tiny profile's models (ASR, MT, punctuation loaded), shared by every server test."""
    from streamst.loading import Models
    from streamst.profiles import load_profile

    m = Models(load_profile(str(tiny_models_root / "profiles" / "tiny.json")), root=tiny_models_root)
    m.asr, m.mt, m.punc  # noqa: B018 - properties load
    return m


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: the tiny models gain nothing from intra-op threads, and on a busy CI
    core threads only contend. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``
    or as an autouse fixture of a module."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
