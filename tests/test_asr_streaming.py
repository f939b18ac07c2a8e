"""Streaming SenseVoice through the tiny (random-weight, real-format) model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from streamst.asr.features import StreamingFeatures, load_cmvn
from streamst.asr.streaming import StreamingASRConfig, StreamingRecognizer
from streamst.asr.vad import AlwaysSpeech, EnergyVad
from streamst.audio import read_audio
from tests.conftest import concat_wavs

ZH = "区块链是今年最火热的科技趋势了"
ZH2 = "所有草莓的基因都由几组含七条染色体的染色体组构造"
EN = "the weather is nice today and we are going to the park"


def stream(rec: StreamingRecognizer, samples: np.ndarray, chunk: int = 9600):
    events = []
    for i in range(0, len(samples), chunk):
        rec.insert_audio(samples[i : i + chunk])
        events += rec.process()
    return events + rec.finish()


def check_well_formed(events, audio_ms: int) -> None:
    """Event sequence invariants every client relies on."""
    by_utt: dict[int, list] = {}
    order = []
    for ev in events:
        by_utt.setdefault(ev.utterance, []).append(ev)
        if not order or order[-1] != ev.utterance:
            assert ev.utterance not in order, "utterances must not interleave"
            order.append(ev.utterance)
    assert order == sorted(order) and order == list(range(order[0], order[0] + len(order)))
    last_audio = 0
    for ev in events:
        assert ev.audio_ms >= last_audio
        last_audio = ev.audio_ms
    for utt, evs in by_utt.items():
        assert [e.kind for e in evs].count("final") == 1 and evs[-1].kind == "final", f"utterance {utt}"
        stable_seen = ""
        for e in evs:
            # a stable prefix is never contradicted later: every later text extends it
            assert e.text.startswith(stable_seen), (utt, stable_seen, e.text)
            assert e.stable_text.startswith(stable_seen)
            assert e.text.startswith(e.stable_text)
            stable_seen = e.stable_text
            assert 0 <= e.start_ms <= e.end_ms <= audio_ms
            prev_start = -1
            for t in e.tokens:
                assert 0 <= t.start_ms <= t.end_ms <= audio_ms
                assert t.start_ms >= prev_start, "token times are monotonic"
                prev_start = t.start_ms
                assert e.start_ms - 60 <= t.start_ms
        assert evs[-1].text == evs[-1].stable_text


def test_streaming_features_equal_funasr_offline_frontend(tiny_sensevoice_dir):
    from funasr.frontends.wav_frontend import WavFrontend

    rng = np.random.default_rng(1)
    x = (rng.standard_normal(16000 * 3 + 123) * 0.1).astype(np.float32)
    cmvn_path = tiny_sensevoice_dir / "am.mvn"
    feats = StreamingFeatures(load_cmvn(cmvn_path))
    parts, i = [], 0
    for n in [100, 4000, 9600, 1, 777, 20000, 100000]:
        parts.append(feats.accept(x[i : i + n]))
        i += n
    parts.append(feats.finish())
    ours = np.concatenate(parts)
    ref, _ = WavFrontend(cmvn_file=str(cmvn_path), lfr_m=7, lfr_n=6, dither=0.0)(
        torch.from_numpy(x)[None], torch.tensor([len(x)]))
    assert ours.shape == tuple(ref.shape[1:])
    np.testing.assert_allclose(ours, ref[0].numpy(), atol=1e-4)


def test_zh_events_well_formed(tiny_asr, speech):
    x, _ = read_audio(speech(ZH, "zh", gap_ms=300))
    rec = StreamingRecognizer(tiny_asr, EnergyVad(), StreamingASRConfig(language="zh"))
    events = stream(rec, x)
    kinds = [e.kind for e in events]
    assert "partial" in kinds and kinds[-1] == "final"
    check_well_formed(events, rec.audio_ms)
    assert all(e.language == "zh" for e in events)


def test_utterances_split_on_silence(tiny_asr, speech, tmp_path):
    wav = concat_wavs([speech(ZH, "zh"), speech(EN, "en"), speech(ZH2, "zh")], tmp_path / "three.wav", silence_ms=1500)
    x, _ = read_audio(wav)
    rec = StreamingRecognizer(tiny_asr, EnergyVad())
    events = stream(rec, x)
    check_well_formed(events, rec.audio_ms)
    finals = [e for e in events if e.kind == "final"]
    assert len(finals) == 3
    # each utterance lies inside one spoken sentence: boundaries fall in the silences
    bounds = []
    t = 0
    for text, lang in [(ZH, "zh"), (EN, "en"), (ZH2, "zh")]:
        d = len(read_audio(speech(text, lang))[0]) * 1000 // 16000
        bounds.append((t, t + d))
        t += d + 1500
    for f, (lo, hi) in zip(finals, bounds):
        assert lo - 300 <= f.start_ms and f.end_ms <= hi + 700, (f.start_ms, f.end_ms, lo, hi)


def test_silence_gives_no_events(tiny_asr):
    rec = StreamingRecognizer(tiny_asr, EnergyVad())
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(16000 * 10) * 1e-4).astype(np.float32)  # -80 dBFS hiss
    assert stream(rec, quiet) == []
    assert rec.stats["decodes"] == 0


def test_streaming_final_equals_offline_decode_of_the_segment(tiny_asr, speech):
    """With stabilisation off (no agreement, and no partial pass, whose window edge commits by
    force), the streaming final is exactly the offline decode of the VAD segment
    (moshi-style streaming == offline)."""
    x, _ = read_audio(speech(ZH, "zh", gap_ms=800))
    cfg = StreamingASRConfig(language="zh", agreement=1000, partial_ms=None)
    rec = StreamingRecognizer(tiny_asr, EnergyVad(), cfg)
    finals = [e for e in stream(rec, x) if e.kind == "final"]
    assert len(finals) == 1
    f = finals[0]
    feats = StreamingFeatures(tiny_asr.cmvn)
    allf = np.concatenate([feats.accept(x), feats.finish()])
    seg = allf[f.start_ms // 60 : -(-f.end_ms // 60)]
    offline = tiny_asr.recognize([seg], "zh")[0]
    from streamst.asr.sensevoice import pieces_to_text

    assert f.text == pieces_to_text([t.piece for t in offline.tokens])
    assert len(f.tokens) == len(offline.tokens)


def test_encoder_hidden_states_exposed(tiny_asr, speech):
    x, _ = read_audio(speech(EN, "en"))
    rec = StreamingRecognizer(tiny_asr, EnergyVad())
    for i in range(0, len(x), 9600):
        rec.insert_audio(x[i : i + 9600])
        rec.process()
        if rec.last_hidden is not None:
            break
    start, hidden = rec.last_hidden
    assert hidden.ndim == 2 and hidden.shape[1] == tiny_asr.hidden_size and hidden.shape[0] > 0
    assert start >= 0


def test_batched_recognition_equals_single(tiny_asr):
    rng = np.random.default_rng(3)
    wins = [rng.standard_normal((n, 560)).astype(np.float32) for n in (30, 55, 12)]
    batched = tiny_asr.recognize(wins, "en")
    for w, b in zip(wins, batched):
        single = tiny_asr.recognize([w], "en")[0]
        assert [t.id for t in single.tokens] == [t.id for t in b.tokens]
        torch.testing.assert_close(single.hidden, b.hidden, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_thirty_minutes_keep_memory_flat(tiny_asr, speech):
    """30 min of speech, streamed as fast as possible: every tracked buffer stays bounded.
    Includes 70 s of continuous speech (no pause) to exercise window trimming."""
    cfg = StreamingASRConfig(language="zh", max_window_ms=6000, context_ms=1200)
    rec = StreamingRecognizer(tiny_asr, EnergyVad(), cfg)
    talk, _ = read_audio(speech(ZH2, "zh"))
    pause = np.zeros(16000, dtype=np.float32)
    continuous = np.tile(talk, int(70 * 16000 / len(talk)) + 1)
    block = np.concatenate([continuous, pause] + [talk, pause] * 20)
    total = 30 * 60 * 16000
    fed, finals, peak_stable, samples_since_check = 0, 0, 0, 0
    bounds = []
    while fed < total:
        for i in range(0, len(block), 9600):
            chunk = block[i : i + 9600]
            rec.insert_audio(chunk)
            for e in rec.process():
                finals += e.kind == "final"
                peak_stable = max(peak_stable, len(e.tokens))
            fed += len(chunk)
            if fed >= total:
                break
        bounds.append(rec.buffered_frames)
    rec.finish()
    assert rec.audio_ms >= 30 * 60 * 1000
    assert finals > 100
    # window never exceeds the cap plus one chunk; buffered features never exceed the window
    assert rec.stats["max_window_frames"] <= cfg.max_window_ms // 60 + cfg.chunk_ms // 60
    assert rec.stats["max_buffer_frames"] <= cfg.max_window_ms // 60 + 2 * cfg.chunk_ms // 60 + 20
    # utterances are capped by the VAD's max segment (30 s): tokens per event bounded
    assert peak_stable <= 30_000 // 60
    assert rec.features._fbank.num_frames_ready - rec.features._popped < 20  # fbank frames held


def test_soft_trim_bounds_the_window_once_the_stable_point_moves(tiny_asr, speech):
    """trim_ms: with every hypothesis stable at once (agreement=1), the re-encoded window
    stays near trim_ms (plus one chunk) however long the speech runs without a pause."""
    talk, _ = read_audio(speech(ZH2, "zh"))
    x = np.tile(talk, int(20 * 16000 / len(talk)) + 1)[: 20 * 16000]
    cfg = StreamingASRConfig(language="zh", agreement=1, trim_ms=2400, context_ms=600)
    rec = StreamingRecognizer(tiny_asr, EnergyVad(), cfg)
    events = stream(rec, x)
    assert any(e.kind == "stable" for e in events)
    assert rec.stats["max_window_frames"] <= (cfg.trim_ms + cfg.chunk_ms) // 60 + 1
    # control: without the soft trim the same stream re-encodes longer windows
    off = StreamingRecognizer(tiny_asr, EnergyVad(), replace(cfg, trim_ms=cfg.max_window_ms))
    stream(off, x)
    assert off.stats["max_window_frames"] > (cfg.trim_ms + cfg.chunk_ms) // 60 + 1
    with pytest.raises(ValueError, match="trim_ms"):
        StreamingASRConfig(trim_ms=1000, context_ms=1200)


def test_partial_pass_is_bounded_and_final_equals_offline(tiny_asr, speech):
    """partial_ms (issue 13): chunk updates re-encode at most the last partial_ms of the window
    (plus one token); the final re-encodes the whole window. With stabilisation off and no
    partial pass nothing is committed before the final, which is then exactly the offline
    decode of the segment; with the partial pass, tokens that leave its window are committed
    by force, so the stable point stays within partial_ms - context_ms."""
    talk, _ = read_audio(speech(ZH2, "zh"))
    x = np.concatenate([talk, np.zeros(16000, dtype=np.float32)])  # one 7 s utterance (< max_window_ms)
    windows: list[int] = []

    def spy(w, lang):
        windows.append(w.shape[0])
        return tiny_asr.recognize([w], lang)[0]

    cfg = StreamingASRConfig(language="zh", agreement=1000, partial_ms=1800, trim_ms=12_000)
    rec = StreamingRecognizer(tiny_asr, EnergyVad(), cfg, recognize=spy)
    events = stream(rec, x)
    check_well_formed(events, rec.audio_ms)
    f = [e for e in events if e.kind == "final"][0]
    assert f.end_ms - f.start_ms > 3 * cfg.partial_ms  # the partial window was cut many times
    assert max(windows[:-1]) <= cfg.partial_ms // 60 + 5  # every chunk update: bounded window
    assert windows[-1] == -(-f.end_ms // 60) - f.start_ms // 60  # the final: the whole utterance
    assert rec.stats["forced_commits"] > 0 and any(e.kind == "stable" for e in events)
    # control: partial_ms=None re-encodes the whole (growing) window on every update
    whole = StreamingRecognizer(tiny_asr, EnergyVad(), replace(cfg, partial_ms=None))
    g = [e for e in stream(whole, x) if e.kind == "final"][0]
    assert whole.stats["partial_frames"] > 2 * rec.stats["partial_frames"]
    assert whole.stats["forced_commits"] == 0
    feats = StreamingFeatures(tiny_asr.cmvn)
    allf = np.concatenate([feats.accept(x), feats.finish()])
    offline = tiny_asr.recognize([allf[g.start_ms // 60 : -(-g.end_ms // 60)]], "zh")[0]
    from streamst.asr.sensevoice import pieces_to_text

    assert g.text == pieces_to_text([t.piece for t in offline.tokens])


def test_a_long_unstable_stretch_does_not_stall_the_stable_point(tiny_asr):
    """A recogniser whose last 2.4 s keep changing for the first 10 s, then only its last 0.3 s:
    once it settles, the stable point catches up within a few chunks, with or without the
    partial pass; with it, it is never more than partial_ms - context_ms behind (an earlier
    cut froze the stretch before the window, and the stable point stayed 7-11 s behind until
    the utterance ended)."""
    from streamst.asr.base import CtcToken, Recognition

    def run(partial_ms):
        rec: StreamingRecognizer
        draws = iter(range(10**9, 2 * 10**9))

        def recognize(w, lang):
            end = rec._frames_start + rec._frames.shape[0]  # chunk updates end at the newest frame
            lo = end - w.shape[0]
            unstable = 40 if end < 10_000 // 60 else 5  # frames at the end that change each time
            toks = [CtcToken((lo + f) // 5 if lo + f < end - unstable else next(draws), "▁x", f, f + 5)
                    for f in range(0, w.shape[0] - 4, 5)]
            return Recognition(tuple(toks), lang, torch.zeros(w.shape[0], 4))

        cfg = StreamingASRConfig(language="zh", partial_ms=partial_ms)
        rec = StreamingRecognizer(tiny_asr, AlwaysSpeech(), cfg, recognize=recognize)
        x = (np.random.default_rng(0).standard_normal(16000 * 25) * 0.1).astype(np.float32)
        lags = []
        for i in range(0, len(x), 9600):
            rec.insert_audio(x[i : i + 9600])
            rec.process()
            lags.append((rec._frames_start + rec._frames.shape[0] - rec._utt.stable_end) * 60)
        return lags, rec.stats

    for partial_ms in (3000, None):
        lags, stats = run(partial_ms)
        settled = lags[len(lags) * 3 // 5 :]  # from 15 s on: 5 s after the tail settled
        assert max(settled) <= 1800, (partial_ms, settled)
    lags, stats = run(3000)
    # never more than partial_ms behind; once the window is longer than that, partial_ms - context_ms
    assert max(lags) <= 3000 and max(lags[5:]) <= 1800 and stats["forced_commits"] > 0, lags
    assert stats["partial_frames"] < run(None)[1]["partial_frames"]  # the partial pass saves work


def test_partial_pass_keeps_the_stable_prefix(tiny_asr, speech):
    """With agreement on and a cut partial window, stable text only grows and every text
    extends it."""
    talk, _ = read_audio(speech(ZH2, "zh"))
    x = np.concatenate([np.tile(talk, 2), np.zeros(16000, dtype=np.float32), talk])
    cfg = StreamingASRConfig(language="zh", partial_ms=1800)
    rec = StreamingRecognizer(tiny_asr, EnergyVad(), cfg)
    events = stream(rec, x)
    check_well_formed(events, rec.audio_ms)
    assert rec.stats["partial_decodes"] > 0 and rec.stats["final_decodes"] == 2
    with pytest.raises(ValueError, match="partial_ms"):
        StreamingASRConfig(partial_ms=1200, context_ms=1200, chunk_ms=600)
    # a chunk longer than partial_ms - context_ms widens the partial window instead of failing
    assert StreamingASRConfig(chunk_ms=6000, partial_ms=3000).partial_frames == (1200 + 6000) // 60
