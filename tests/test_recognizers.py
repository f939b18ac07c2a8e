"""The recogniser interface (streamst.asr.base) against both kinds, SenseVoice and Fun-ASR-Nano's
own transcription, and the simul path on a profile whose asr.kind is fun-asr-nano."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from streamst.asr.streaming import StreamingASRConfig, StreamingRecognizer
from streamst.asr.vad import EnergyVad
from streamst.languages import MLT_LANGUAGES

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread

KINDS = ("sensevoice", "fun-asr-nano")


@pytest.fixture(scope="module")
def multilingual_models(tiny_models_root):
    """The tiny-multilingual profile (Fun-ASR-Nano stand-in as recogniser and e2e model)."""
    from streamst.loading import Models
    from streamst.profiles import build_profile, load_profile

    profile = load_profile(str(tiny_models_root / "profiles" / "tiny-multilingual.json"))
    build_profile(profile, root=tiny_models_root)
    return Models(profile, root=tiny_models_root)


@pytest.fixture(scope="module")
def recognizers(tiny_models, multilingual_models):
    return {"sensevoice": tiny_models.asr, "fun-asr-nano": multilingual_models.asr}


@pytest.fixture(scope="module")
def sentence(speech) -> np.ndarray:
    x, rate = sf.read(str(speech("The weather is nice today, let us go for a walk.", "en", gap_ms=600)), dtype="float32")
    assert rate == 16000
    return x


def test_the_profile_chooses_the_recogniser_kind(recognizers, multilingual_models):
    from streamst.asr.nano import NanoRecognizer
    from streamst.asr.sensevoice import SenseVoiceASR

    assert isinstance(recognizers["sensevoice"], SenseVoiceASR)
    asr = recognizers["fun-asr-nano"]
    assert isinstance(asr, NanoRecognizer) and asr.languages == tuple(c for c in MLT_LANGUAGES)
    assert asr.speech is multilingual_models.e2e  # the same checkpoint as the e2e model: loaded once


@pytest.mark.parametrize("kind", KINDS)
def test_frontend_takes_samples_in_any_chunking(recognizers, sentence, kind):
    """A recogniser's frontend: 16 kHz samples in, one frame per frame_ms out, the same frames
    however the samples are chunked."""
    asr = recognizers[kind]
    whole = asr.frontend()
    a = np.concatenate([whole.accept(sentence), whole.finish()])
    parts = asr.frontend()
    chunks = [parts.accept(sentence[i : i + 1234]) for i in range(0, sentence.size, 1234)] + [parts.finish()]
    b = np.concatenate([c for c in chunks if c.shape[0]])
    assert a.shape == b.shape and a.shape[1] == whole.dim
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    expected = -(-sentence.size * 1000 // 16000 // asr.frame_ms)  # ceil(audio ms / frame ms), +-1 at the edges
    assert abs(a.shape[0] - expected) <= 1, (a.shape, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_recognize_a_batch_of_windows(recognizers, sentence, kind):
    asr = recognizers[kind]
    fe = asr.frontend()
    frames = np.concatenate([fe.accept(sentence), fe.finish()])
    windows = [frames[:30], frames[10:]]
    batch = asr.recognize(windows, "en")
    assert len(batch) == 2
    for w, rec in zip(windows, batch):
        assert rec.language == "en"  # a requested language the model hears is kept
        assert rec.hidden.shape[0] == w.shape[0]  # one hidden state per frame
        spans = [(t.start_frame, t.end_frame) for t in rec.tokens]
        assert all(0 <= s < e <= w.shape[0] for s, e in spans), spans
        assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    assert [t.id for t in asr.recognize([windows[1]], "en")[0].tokens] == [t.id for t in batch[1].tokens]


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_over_either_kind_never_contradicts_its_stable_prefix(recognizers, sentence, kind):
    rec = StreamingRecognizer(recognizers[kind], EnergyVad(), StreamingASRConfig(chunk_ms=600, language="en"))
    events = []
    for i in range(0, sentence.size, 3200):
        rec.insert_audio(sentence[i : i + 3200])
        events += rec.process()
    events += rec.finish()
    assert any(e.kind == "final" for e in events), [e.kind for e in events]
    last_stable: dict[int, str] = {}
    for e in events:
        assert e.text.startswith(last_stable.get(e.utterance, "")), (e.text, last_stable)
        last_stable[e.utterance] = e.stable_text
        assert 0 <= e.start_ms <= e.end_ms <= rec.audio_ms
    assert rec.stats["decodes"] >= 2


def test_nano_recogniser_identifies_the_language_among_those_it_hears(recognizers):
    asr = recognizers["fun-asr-nano"]
    assert asr.identify("สวัสดีครับ วันนี้อากาศดีมาก") == "th"
    assert asr.identify("Dobrý den, jak se máte? Dnes je krásné počasí.") == "cs"
    assert asr.identify("   ") == "unknown"
    assert asr.identify("Guten Morgen, wie geht es Ihnen heute?") in MLT_LANGUAGES  # German is not heard


def test_simul_path_with_the_nano_recogniser(multilingual_models, sentence):
    from streamst.pipeline import PipelineConfig, TranslationSession

    session = TranslationSession(multilingual_models, PipelineConfig.create("auto", ["de"], mode="simul"))
    events = []
    for i in range(0, sentence.size, 3200):
        session.insert_audio(sentence[i : i + 3200])
        events += session.process()
    events += session.finish()
    finals = [e for e in events if e.type == "transcript" and e.kind == "final"]
    assert finals and all(e.language in MLT_LANGUAGES for e in finals), [e.language for e in finals]
    results = list(session.results)
    assert results and all(r.simul is not None for r in results)
