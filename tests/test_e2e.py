"""The end-to-end path: Fun-ASR-Nano (transformers) fed audio chunks under READ/WRITE policies.

The tiny model has random weights, so its text is meaningless; what is tested is that the
streaming decoder computes exactly what transformers computes offline, and the policy
invariants over audio chunks.
"""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from streamst.asr.vad import VadEvent
from streamst.builders.funasr_nano import AUDIO_TOKEN, AUDIO_TOKEN_ID, build_tiny
from streamst.e2e.funasr_nano import FunAsrNanoSpeech
from streamst.events import TranslationEvent
from streamst.e2e.path import E2EPath
from streamst.pipeline import PipelineConfig
from streamst.policy import force_prefix
from streamst.results import UtteranceResult
from streamst.text import join_units, split_units

SENTENCE = "区块链是今年最火热的科技趋势了"
# small budgets: the random model never emits <|im_end|>, so every proposal runs to its budget
BUDGET = dict(step_tokens=4, final_tokens=10)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread


def open_e2e(model, vad, cfg: PipelineConfig, **kw) -> E2EPath:
    """The e2e path a session with ``cfg`` opens (``kw``: clock, results, lm)."""
    return E2EPath(model, vad, cfg.e2e, src_lang=cfg.src_lang, chunk_ms=cfg.asr.chunk_ms, hotwords=cfg.hotwords,
                   policies={t: cfg.e2e_policy_for(t) for t in cfg.tgt_langs}, **kw)


@pytest.fixture(scope="module")
def nano_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("funasr-nano")
    build_tiny(d, seed=0)
    return d


@pytest.fixture(scope="module")
def nano(nano_dir) -> FunAsrNanoSpeech:
    return FunAsrNanoSpeech(str(nano_dir))


@pytest.fixture(scope="module")
def utterance(speech) -> np.ndarray:
    x, rate = sf.read(str(speech(SENTENCE, "zh")), dtype="float32")
    assert rate == 16000
    return x


class WholeStreamVad:
    """One utterance from 0 to the end of the stream: the e2e path sees exactly the input."""

    def accept(self, samples):
        self.started = getattr(self, "started", False)
        if not self.started:
            self.started = True
            return [VadEvent("start", 0)]
        return []

    def finish(self):
        return []

    def reset(self):
        self.started = False


def run_path(nano, samples, *, policy: str, chunk_ms: int = 600, step_ms: int = 100, **overrides):
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy=policy, chunk_ms=chunk_ms, **overrides)
    cfg = replace(cfg, e2e=replace(cfg.e2e, **BUDGET, source_text=False))
    from collections import deque

    results: deque[UtteranceResult] = deque()
    path = open_e2e(nano, WholeStreamVad(), cfg, clock=lambda: 0.0, results=results)
    events = []
    step = 16 * step_ms
    for i in range(0, len(samples), step):
        path.insert_audio(samples[i : i + step])
        events += path.process()
    events += path.finish()
    return [e for e in events if isinstance(e, TranslationEvent)], list(results)


def test_tiny_directory_loads_with_transformers_alone(nano_dir: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer, FunAsrNanoForConditionalGeneration

    config = AutoConfig.from_pretrained(nano_dir)
    assert config.model_type == "fun_asr_nano" and config.audio_token_id == AUDIO_TOKEN_ID
    assert json.loads((nano_dir / "config.json").read_text())["model_type"] == "fun_asr_nano"
    assert (nano_dir / "model.safetensors").is_file()
    model = FunAsrNanoForConditionalGeneration.from_pretrained(nano_dir)
    tok = AutoTokenizer.from_pretrained(nano_dir)
    assert tok.convert_tokens_to_ids(AUDIO_TOKEN) == AUDIO_TOKEN_ID
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    # the processor files name transformers' own classes; AutoProcessor needs torchaudio for the
    # feature extractor, which does not load beside the pinned CPU torch
    pre = json.loads((nano_dir / "preprocessor_config.json").read_text())
    assert pre["feature_extractor_type"] == "FunAsrNanoFeatureExtractor"
    from transformers import AutoProcessor

    try:
        proc = AutoProcessor.from_pretrained(nano_dir)
    except ImportError as e:
        assert "torchaudio" in str(e)
    else:
        assert type(proc).__name__ == "FunAsrNanoProcessor"
    # the model runs: audio placeholders are replaced by the adaptor's output inside forward
    feats = torch.randn(1, 5, 560)
    ids = torch.tensor([[1, *([AUDIO_TOKEN_ID] * 5), 2]])
    out = model(input_ids=ids, input_features=feats, input_features_mask=torch.ones(1, 5, dtype=torch.long))
    assert out.logits.shape[:2] == (1, 7)


def test_features_are_the_extractors_lfr_of_kaldi_fbank(nano, utterance) -> None:
    import kaldi_native_fbank as knf
    from transformers.models.fun_asr_nano.feature_extraction_fun_asr_nano import FunAsrNanoFeatureExtractor

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hamming"
    opts.mel_opts.num_bins = 80
    opts.energy_floor = 0.0
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, utterance.tolist())
    fb.input_finished()
    fbank = torch.tensor(np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)]))
    lfr = FunAsrNanoFeatureExtractor._apply_lfr(SimpleNamespace(num_frames_lfr=7, stride_lfr=6), fbank)
    ours = nano.features(utterance)
    assert ours.shape == tuple(lfr.shape) and ours.shape[1] == 560
    np.testing.assert_allclose(ours, lfr.numpy(), atol=1e-4)


def test_write_only_at_the_end_equals_offline_generate(nano, utterance) -> None:
    """A policy that never writes before the end: the output is transformers' own greedy
    generate on the whole utterance with the same prompt."""
    events, results = run_path(nano, utterance, policy="wait-k", k=1000, max_lag=1000)
    assert all(not e.new_units for e in events if not e.final)
    offline = nano.generate(utterance, "translate", "zh", "en", max_new_tokens=BUDGET["final_tokens"])
    assert offline and results[0].e2e == join_units(split_units(offline, "en"), "en")


@pytest.mark.parametrize("policy", ["reorder-aware", "wait-k", "local-agreement"])
def test_continuation_after_finish_equals_offline_with_the_committed_prefix(nano, utterance, policy) -> None:
    events, results = run_path(nano, utterance, policy=policy)
    before = [e for e in events if not e.final]
    prefix = before[-1].committed if before else ""
    if policy != "local-agreement":  # random proposals rarely agree: LA may commit nothing early
        assert prefix, "the policy should have committed something before the end"
    offline = nano.generate(utterance, "translate", "zh", "en", committed=prefix,
                            max_new_tokens=BUDGET["final_tokens"])
    # the decoder continued exactly as offline; committed units stay as they were (force_prefix)
    committed = split_units(prefix, "en")
    expected = force_prefix(committed, split_units(prefix + offline, "en"))
    assert results[0].e2e == join_units(expected, "en")


@pytest.mark.parametrize("policy", ["reorder-aware", "wait-k", "local-agreement"])
def test_committed_only_grows_and_delays_are_monotone(nano, utterance, policy) -> None:
    events, results = run_path(nano, utterance, policy=policy)
    committed = [split_units(e.committed, "en") for e in events]
    for a, b in zip(committed, committed[1:]):
        assert b[: len(a)] == a
    delays = [d for e in events for d in e.delays_ms]
    assert delays == sorted(delays) and len(delays) == len(committed[-1])
    assert results[0].delays_ms == delays


@pytest.mark.parametrize("k", [1, 3])
def test_wait_k_never_writes_before_k_chunks(nano, utterance, k) -> None:
    events, _ = run_path(nano, utterance, policy="wait-k", k=k, max_lag=k)
    first = next(d for e in events for d in e.delays_ms)
    assert first >= k * 600
    # and per chunk at most the schedule's bound: floor((n - k + 1) * ratio) units after n chunks
    ratio = PipelineConfig.create("zh", "en", mode="e2e", policy="wait-k", k=k).e2e_policy_for("en").ratio
    for e in events:
        if not e.final:
            n = int(max(e.delays_ms, default=0) // 600) or None
            if n:
                assert len(split_units(e.committed, "en")) <= int((n - k + 1) * ratio + 1e-9)


class ScriptedSpeech:
    """A fake speech model: after n chunks it proposes the first n words of a sentence plus
    one word that changes every chunk (so only the stable part can ever be agreed on)."""

    frame_ms = 60
    WORDS = "blockchain is the most trendy technology of the year".split()

    def features(self, samples):
        return np.zeros((len(samples) // 960, 1), np.float32)

    def encode(self, features, keys):
        from streamst.e2e.base import SpeechEmbeddings

        return [SpeechEmbeddings(torch.zeros(f.shape[0], 1), tuple(k)) for f, k in zip(features, keys)]

    def open_stream(self, task, src, tgt, hotwords=()):
        from streamst.mt.base import Proposal

        words = self.WORDS

        class Stream:
            calls = 0

            def propose(self, speech, committed, max_new_tokens=64):
                Stream.calls += 1
                n = speech.embeds.shape[0] // 10  # chunks heard
                text = " ".join(words[:n] + [f"noise{Stream.calls}"])
                assert text.startswith(committed)
                return Proposal(text=text, continuation=text[len(committed):], steps=1, reused_tokens=0)

            def reset(self):
                pass

        return Stream()


def test_local_agreement_commits_only_agreed_prefixes() -> None:
    events, results = run_path(ScriptedSpeech(), np.ones(16000 * 4, np.float32) * 0.1, policy="local-agreement")
    proposals = []
    for e in events:
        if e.final:
            break
        if e.new_units and proposals:
            committed = split_units(e.committed, "en")
            assert proposals[-1][: len(committed)] == committed  # agreed with the previous proposal
            assert not any(u.startswith("noise") for u in committed)
        proposals.append(split_units(" ".join(x for x in (e.committed, e.tentative) if x), "en"))
    early = [e for e in events if not e.final and e.new_units]
    assert early, "LA-2 commits the agreed words before the end"
    assert results[0].e2e.startswith("blockchain is the")


def test_prompt_head_kv_is_reused_across_chunks(nano, utterance) -> None:
    from streamst.e2e.funasr_nano import SpeechPrompt

    stream = nano.open_stream("translate", "zh", "en")
    head = len(SpeechPrompt(nano.tokenizer, "translate", "zh", "en").head.ids)
    feats = nano.features(utterance[: 16000])
    a, b = nano.encode([feats, nano.features(utterance[: 24000])], [("u", 1), ("u", 2)])
    stream.propose(a, "", max_new_tokens=2)
    stream.propose(b, "", max_new_tokens=2)
    assert stream.last.reused_tokens == head  # the head, not the changed audio
    stream.reset()
    stream.propose(a, "", max_new_tokens=2)
    assert stream.last.reused_tokens == head  # reset keeps the static head


def test_session_bounds_utterance_window_and_buffers(tiny_models_root, monkeypatch) -> None:
    """Continuous audio longer than max_utterance_ms is cut into bounded utterances."""
    from streamst.loading import Models
    from streamst.pipeline import TranslationSession
    from streamst.profiles import load_profile

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    models = Models(load_profile("tiny"), root=tiny_models_root)
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy="wait-k", k=1000, max_lag=1000)
    cfg = replace(cfg, e2e=replace(cfg.e2e, **BUDGET, max_utterance_ms=2400))
    session = TranslationSession(models, cfg)
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(np.arange(16000 * 9) * 2 * np.pi * 220 / 16000) + 0.01 * rng.standard_normal(16000 * 9))
    peak = 0
    for i in range(0, tone.size, 1600):
        session.insert_audio(tone[i : i + 1600].astype(np.float32))
        session.process()
        peak = max(peak, session.e2e.buffered_samples)
    session.finish()
    lengths = [r.end_ms - r.start_ms for r in session.results]
    assert len(lengths) >= 3 and max(lengths) <= 2400
    assert peak <= 16 * (2400 + 1000 + 200)


def test_profile_without_e2e_model_is_one_clear_error(tiny_models_root, tmp_path, capsys) -> None:
    from streamst.cli import main

    raw = json.loads((tiny_models_root / "profiles" / "tiny.json").read_text())
    raw.pop("e2e")
    raw["name"] = "no-e2e"
    for role in ("asr", "punc", "mt"):
        raw[role]["source"] = str(tiny_models_root / "store" / raw[role]["source"].removeprefix("store:"))
        raw[role].pop("build", None)
    prof = tmp_path / "no-e2e.json"
    prof.write_text(json.dumps(raw))
    wav = tmp_path / "x.wav"
    sf.write(str(wav), np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    code = main(["translate", str(wav), "--profile", str(prof), "--mode", "e2e", "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "e2e" in err[0] and "no-e2e" in err[0]


@pytest.mark.parametrize("encoding", ["full", "incremental"])
def test_encoding_modes_agree_at_the_end_and_incremental_reuses_audio_kv(nano, utterance, encoding) -> None:
    """Chunk steps may encode incrementally (frozen earlier frames, their K/V reused); the
    final step always re-encodes the whole utterance, so write-at-end output is unchanged."""
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy="wait-k", k=1000, max_lag=1000)
    cfg = replace(cfg, e2e=replace(cfg.e2e, **BUDGET, source_text=False, encoding=encoding))
    from collections import deque

    results: deque[UtteranceResult] = deque()
    path = open_e2e(nano, WholeStreamVad(), cfg, clock=lambda: 0.0, results=results)
    reused = []
    for i in range(0, len(utterance), 1600):
        path.insert_audio(utterance[i : i + 1600])
        if path.process():
            reused.append(path.streams[0].last.reused_tokens)
    path.finish()
    offline = nano.generate(utterance, "translate", "zh", "en", max_new_tokens=BUDGET["final_tokens"])
    assert results[0].e2e == join_units(split_units(offline, "en"), "en")
    head = len(path.streams[0].prompt.head.ids)
    reused = reused[1:]  # the first step starts from an empty cache
    if encoding == "incremental":
        assert reused[-1] > reused[0] > head  # the frozen audio's K/V carries over
    else:
        assert set(reused) == {head}


def test_int8_quantises_every_linear_and_still_decodes(nano_dir, utterance) -> None:
    """`--quantize int8` (RuntimeOptions.quantize) reaches the e2e model: encoder, adaptor and
    decoder Linear layers become dynamic int8, and the simultaneous path runs on them."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    from streamst.e2e.funasr_nano import NanoOptions
    from streamst.loading import KINDS, RuntimeOptions

    q = KINDS["e2e"]["fun-asr-nano"](str(nano_dir), RuntimeOptions(quantize="int8"), "", {})
    assert isinstance(q, FunAsrNanoSpeech) and q.options == NanoOptions(quantize="int8")
    kinds = {type(m) for m in q.model.modules()}
    assert QLinear in kinds and torch.nn.Linear not in kinds
    events, results = run_path(q, utterance, policy="wait-k")
    assert events and results[0].output


def test_int8_on_a_gpu_is_one_clear_error(tiny_models_root, tmp_path, capsys) -> None:
    from streamst.cli import main

    wav = tmp_path / "x.wav"
    sf.write(str(wav), np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    code = main(["translate", str(wav), "--profile", str(tiny_models_root / "profiles" / "tiny.json"),
                 "--device", "cuda", "--quantize", "int8", "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "int8" in err[0] and "CPU" in err[0], err


def test_the_paths_and_the_track_do_not_import_the_session_pipeline() -> None:
    """The e2e path and the track are peers below the session (no pipeline <-> e2e circle)."""
    import subprocess
    import sys

    code = ("import sys, streamst.e2e.path, streamst.e2e.config, streamst.track; "
            "bad = [m for m in ('streamst.pipeline', 'streamst.server', 'streamst.commands') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
