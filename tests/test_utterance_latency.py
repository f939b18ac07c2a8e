"""Per-utterance latency figures are relative to their utterance and never accumulate over
a session (issue 12: LAAL_CA used to grow with every utterance by the compute of earlier ones)."""

from __future__ import annotations

import pytest

from streamst.audio import read_audio
from streamst.loading import Models
from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.profiles import load_profile
from tests.conftest import concat_wavs

EARLIER_COMPUTE_MS = 1e7  # pretend earlier utterances cost ~3 hours of processing


@pytest.fixture(scope="module")
def tiny_models(tiny_models_root):
    return Models(load_profile(str(tiny_models_root / "profiles" / "tiny.json")), root=tiny_models_root)


def test_computation_aware_latency_restarts_per_utterance(tiny_models, speech, tmp_path):
    wav = concat_wavs([speech("今天天气很好", "zh"), speech("我们去公园散步吧", "zh")],
                      tmp_path / "two.wav", silence_ms=1500)
    x, _ = read_audio(wav)
    session = TranslationSession(tiny_models, PipelineConfig.create("zh", "en", mode="both"))
    events = []
    for i in range(0, len(x), 9600):
        session.insert_audio(x[i : i + 9600])
        step = session.process()
        events += step
        if any(e.type == "latency" for e in step) and session.compute_ms < EARLIER_COMPUTE_MS:
            session.compute_ms += EARLIER_COMPUTE_MS  # as if the first utterance had been slow
    events += session.finish()
    lat = [e for e in events if e.type == "latency"]
    assert len(lat) >= 2, [e.to_dict() for e in events if e.type == "transcript" and e.kind == "final"]
    later = [e for e in events if e.type == "translation" and e.utterance > lat[0].utterance]
    units = [(d, el) for e in later for d, el in zip(e.delays_ms, e.elapsed_ms)]
    assert units, "no translation units after the first utterance"
    for d, el in units:
        assert d <= el < d + EARLIER_COMPUTE_MS / 10, (d, el)
    for e in lat[1:]:
        if "LAAL_CA" in e.metrics:
            assert e.metrics["LAAL_CA"] < EARLIER_COMPUTE_MS / 10, e.metrics
