"""The neural speech engine: Kokoro-82M through kokoro-onnx, from a directory in the
released format (built offline with random weights by streamst/builders/kokoro.py)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from streamst.errors import ModelNotFoundError

pytest.importorskip("kokoro_onnx", reason="kokoro-onnx is a dev dependency: pip install -e '.[dev]'")
pytest.importorskip("onnx", reason="building the test model needs onnx (a dev dependency)")
if importlib.util.find_spec("kokoro") is None:
    pytest.skip("building the test model needs the kokoro package's model code: pip install --no-deps kokoro "
                "(.ci/run does)", allow_module_level=True)


@pytest.fixture(scope="module")
def kokoro_dir(tmp_path_factory):
    from streamst.builders.kokoro import build_tiny

    path = tmp_path_factory.mktemp("kokoro") / "kokoro"
    build_tiny(path, seed=0)
    return path


def test_kokoro_loads_its_real_format_and_synthesises(kokoro_dir):
    from streamst.speak import load_synthesizer
    from streamst.speak.kokoro import MODEL_FILE, VOICES_FILE

    assert sorted(p.name for p in kokoro_dir.iterdir()) == sorted(["config.json", MODEL_FILE, VOICES_FILE])
    synth = load_synthesizer("kokoro", str(kokoro_dir))
    assert synth.name == "kokoro" and synth.sample_rate == 24000
    assert synth.supports("en") and synth.supports("zh") and not synth.supports("ko")
    short = synth.synthesize("Hello.", "en")
    long = synth.synthesize("Hello, how are you today?", "en")
    assert short.dtype == np.float32 and np.isfinite(long).all() and long.std() > 0
    assert long.size > 2 * short.size  # more phonemes, more audio (durations are predicted per phoneme)
    zh = synth.synthesize("你好。", "zh")
    assert 0 < zh.size < 24000 * 3  # phoneme durations of speech, not of noise


def test_kokoro_without_weights_says_what_to_download(tmp_path):
    from streamst.speak import load_synthesizer

    with pytest.raises(ModelNotFoundError) as e:
        load_synthesizer("kokoro", str(tmp_path / "missing"))
    msg = str(e.value)
    assert "\n" not in msg and "kokoro-v1.0.onnx" in msg and "voices-v1.0.bin" in msg and "releases" in msg


def test_profile_role_tts_selects_kokoro(kokoro_dir, tiny_models_root, tmp_path):
    from streamst.loading import Models
    from streamst.profiles import load_profile

    raw = json.loads((tiny_models_root / "profiles" / "tiny.json").read_text())
    raw["tts"] = {"kind": "kokoro", "source": str(kokoro_dir), "options": {"voices": {"en": "af_heart"}}}
    path = tmp_path / "tiny-kokoro.json"
    path.write_text(json.dumps(raw))
    models = Models(load_profile(str(path)), root=tiny_models_root)
    assert models.tts.name == "kokoro"
    raw["tts"]["source"] = str(tmp_path / "nope")
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelNotFoundError, match="tts model kokoro is missing"):
        Models(load_profile(str(path)), root=tiny_models_root).tts  # noqa: B018
