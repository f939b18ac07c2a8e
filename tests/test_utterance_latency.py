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


def test_the_summary_groups_by_language_and_path():
    """Mode ``all``: each (language, path) keeps its own text and figures; the simul and e2e
    utterance figures are never averaged together, and the e2e text is kept."""
    from streamst.results import UtteranceResult, path_summary, primary_means, utterance_metrics

    def result(utt: int, path: str, text: str, delay: float, **kw) -> UtteranceResult:
        r = UtteranceResult(utt, "en", 1000 * utt, 1000 * utt + 900, "源", path=path, **{path: text}, **kw)
        r.delays_ms = r.elapsed_ms = [delay] * len(text.split())
        r.metrics = utterance_metrics(r)
        return r

    results = [result(0, "simul", "a b", 800.0, cascade="A B", cascade_delay_ms=900.0), result(0, "e2e", "x", 300.0),
               result(1, "simul", "c", 1900.0, cascade="C", cascade_delay_ms=1900.0), result(1, "e2e", "y z", 1500.0)]
    out = path_summary(results, 2000, ["en"], ["e2e", "simul", "cascade"])["en"]
    assert (out["simul"]["text"], out["e2e"]["text"], out["cascade"]["text"]) == ("a b c", "x y z", "A B C")
    assert out["simul"]["utterances"] == out["e2e"]["utterances"] == 2
    simul_al = [r.metrics["AL"] for r in results if r.path == "simul"]
    e2e_al = [r.metrics["AL"] for r in results if r.path == "e2e"]
    assert out["simul"]["mean_latency_ms"]["AL"] == round(sum(simul_al) / 2, 1)
    assert out["e2e"]["mean_latency_ms"]["AL"] == round(sum(e2e_al) / 2, 1) != out["simul"]["mean_latency_ms"]["AL"]
    assert out["e2e"]["AL"] < out["simul"]["AL"]  # whole-stream figures, per path
    assert set(out["cascade"]) == {"text"}  # the cascade is not simultaneous: no latency figures
    assert primary_means({"en": out}) == {"en": out["simul"]["mean_latency_ms"]}
    assert primary_means({"en": {"e2e": out["e2e"]}}) == {"en": out["e2e"]["mean_latency_ms"]}
