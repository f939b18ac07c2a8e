"""Spoken output (streamst/speak): segmentation of committed text, the bounded-lag policy,
the espeak-ng engine and the asyncio speaker, with fake engines where the engine is not the
point."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streamst.events import TranscriptEvent, TranslationEvent
from streamst.speak import OUTPUT_RATE, Segmenter, Speaker, SpeechPolicy, load_synthesizer
from streamst.speak.speaker import SpeechTrack, mix, render_offline
from streamst.speak.timeline import Timeline
from streamst.tts import have_tts


def tr(utt: int, committed: str, audio_ms: int, *, final: bool = False, lang: str = "en", mode: str = "simul",
       tentative: str = "") -> TranslationEvent:
    return TranslationEvent(utterance=utt, mode=mode, language=lang, committed=committed, new_units=(),
                            delays_ms=(), elapsed_ms=(), tentative=tentative, final=final, audio_ms=audio_ms)


def ts(utt: int, start_ms: int, audio_ms: int) -> TranscriptEvent:
    return TranscriptEvent(kind="partial", utterance=utt, text="x", stable_text="", tokens=(), language="zh",
                           audio_ms=audio_ms, start_ms=start_ms, end_ms=audio_ms)


class FakeSynth:
    """100 ms of a 200 Hz tone per character at speed 1, at 16 kHz (resampled to 24 kHz)."""

    name, sample_rate = "fake", 16000

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def supports(self, language: str) -> bool:
        return True

    def synthesize(self, text: str, language: str, *, speed: float = 1.0) -> np.ndarray:
        self.calls.append((text, speed))
        n = int(len(text) * 1600 / speed)
        return (0.3 * np.sin(2 * np.pi * 200 * np.arange(n) / 16000)).astype(np.float32)


def test_segments_are_committed_text_cut_at_clause_ends():
    seg = Segmenter(["en"], "simul")
    out = seg.feed([ts(0, 500, 1200), tr(0, "Hello there, my", 1200, tentative="friend. How")])
    assert [s.text for s in out] == ["Hello there,"]  # the tentative tail is never spoken
    assert out[0].source_ms == 500 and out[0].commit_ms == 1200  # from the utterance start
    out = seg.feed([tr(0, "Hello there, my friend. How are", 2400)])
    assert [s.text for s in out] == ["my friend."]
    assert out[0].source_ms == 1200  # from the previous segment's commit
    out = seg.feed([tr(0, "Hello there, my friend. How are you", 3000, final=True)])
    assert [s.text for s in out] == ["How are you"]  # the rest at the end of the utterance
    assert [s.index for s in out] == [2]
    # other paths and languages are not spoken; a.b and 3,5 are not clause ends
    assert seg.feed([tr(1, "Other path.", 3100, mode="cascade"), tr(1, "Andere.", 3100, lang="de")]) == []
    assert seg.feed([tr(1, "version 3,5 of a.b is", 3600)]) == []


def test_long_text_without_marks_is_cut_at_a_word_boundary():
    seg = Segmenter(["en", "zh"], "simul", max_chars=20)
    out = seg.feed([tr(0, "one two three four five six seven eight", 900)])
    assert out and all(len(s.text) <= 20 for s in out)
    assert " ".join(s.text for s in out) + " " in "one two three four five six seven eight "
    out = seg.feed([tr(0, "一二三四五六七八九十一二三四五六七八九十一二", 900, lang="zh")])
    assert [len(s.text) for s in out] == [20]


def test_policy_speeds_up_then_skips():
    p = SpeechPolicy(catch_up_ms=1000, max_speed=1.5, max_backlog_ms=5000)
    assert p.speed(0) == 1.0 and p.speed(1000) == 1.0
    assert 1.0 < p.speed(3000) < p.speed(4900) <= 1.5
    assert p.speed(5001) is None


def test_spoken_lag_stays_bounded_over_a_long_talk():
    """Text commits far faster than it can be spoken for 10 minutes: the wait of each spoken
    segment behind its ready time never passes max_backlog_ms, and the policy sped up and
    skipped instead of letting the backlog grow."""
    policy = SpeechPolicy(catch_up_ms=1000, max_backlog_ms=4000)
    track, synth = SpeechTrack(FakeSynth(), policy), None
    chunks = []
    for i in range(600):  # a 40-character segment (4 s of speech) every second
        seg = Segmenter(["en"], "simul").feed([tr(i, "x" * 39 + ".", 1000 * i, final=True)])[0]
        speed = track.plan([seg], seg.commit_ms)
        audio, ms = track.render([seg], speed) if speed else (None, 0.0)
        chunks.append(track.place([seg], seg.commit_ms, audio, speed, ms))
    spoken = [c for c in chunks if not c.skipped]
    assert max(c.start_ms - c.segment.commit_ms - c.synth_ms for c in spoken) <= policy.max_backlog_ms
    m = track.meter.summary()
    assert m["skipped"] > 0 and m["max_speed"] > 1.0 and m["segments"] == 600
    starts = [c.start_ms for c in spoken]
    assert starts == sorted(starts)  # in order, never overlapping:
    assert all(a.start_ms + a.duration_ms <= b.start_ms + 1e-6 for a, b in zip(spoken, spoken[1:]))


def test_timeline_never_overlaps():
    t = Timeline()
    assert t.place(100, 500) == 100 and t.place(200, 500) == 600 and t.place(5000, 10) == 5000


def test_speaker_speaks_in_order_off_the_loop_and_merges_when_behind():
    synth = FakeSynth()
    got = []

    async def main():
        sp = Speaker(synth, ["en"], "simul", clock=lambda: 0.0, on_chunk=got.append,
                     policy=SpeechPolicy(merge_over=2))
        task = asyncio.create_task(sp.run())
        text = "a, b, c, d, e, f"
        for i, n in enumerate((3, 6, 9, 12, 15)):  # five clauses commit before any is spoken
            sp.feed([tr(0, text[:n], 1000 + i)])
        sp.feed([tr(0, text, 1006, final=True)])
        sp.end()
        await task
        return sp

    sp = asyncio.run(main())
    assert " ".join(c.text for c in got) == "a, b, c, d, e, f"
    assert sum(c.segments for c in got) == 6 and len(got) < 6  # merged once the queue was long
    assert all(c.audio.size > 0 for c in got) and sp.meter.segments == 6


def test_render_offline_and_mix():
    chunks, meter = render_offline(FakeSynth(), [ts(0, 0, 600), tr(0, "Hi there.", 600, final=True),
                                                 tr(1, "More.", 5000, final=True)], ["en"], "simul")
    assert [c.text for c in chunks] == ["Hi there.", "More."]
    wav = mix(chunks, "en")
    assert wav.size == int(chunks[-1].start_ms * OUTPUT_RATE / 1000) + chunks[-1].audio.size
    assert meter.summary()["delay_ms"]["max"] >= 600


@pytest.mark.skipif(not have_tts(), reason="espeak-ng is not installed (.ci/run installs it)")
@pytest.mark.parametrize("lang,text", [("en", "Good morning, everyone."), ("zh", "大家早上好。")])
def test_espeak_engine_speaks_each_language(lang, text):
    synth = load_synthesizer("espeak-ng")
    slow = synth.synthesize(text, lang)
    fast = synth.synthesize(text, lang, speed=1.5)
    assert slow.dtype == np.float32 and np.sqrt(np.mean(slow ** 2)) > 0.01  # speech energy
    assert fast.size < slow.size * 0.85  # faster speech is shorter


def test_unknown_engine_is_one_line():
    from streamst.errors import UserError

    with pytest.raises(UserError, match="unknown tts kind 'nope'"):
        load_synthesizer("nope")


def test_speech_player_plays_messages_in_order_without_a_device():
    """mic --speak's player, with a stand-in for sounddevice's OutputStream (no device)."""
    import base64

    from streamst.speak.cli import SpeechPlayer

    class Stream:
        def __init__(self, **kw):
            self.kw, self.started, self.closed = kw, False, False

        def start(self):
            self.started = True

        def stop(self):
            pass

        def close(self):
            self.closed = True

    sd = type("sd", (), {"OutputStream": Stream})
    player = SpeechPlayer(sd)
    assert player._stream.kw["samplerate"] == OUTPUT_RATE and player._stream.started
    for value in (1000, 2000):
        pcm = np.full(300, value, dtype="<i2").tobytes()
        player.feed({"type": "speech", "audio": base64.b64encode(pcm).decode()})
    out = np.zeros((512, 1), np.float32)
    player._stream.kw["callback"](out, 512, None, None)
    got = np.round(out[:, 0] * 32768).astype(int)
    assert list(got[:300]) == [1000] * 300 and list(got[300:512]) == [2000] * 212
    player._stream.kw["callback"](out, 512, None, None)
    got = np.round(out[:, 0] * 32768).astype(int)
    assert list(got[:88]) == [2000] * 88 and not got[88:].any()  # then silence
    player.close()
    assert player._stream.closed


def test_engine_option_and_a_server_without_an_engine(caplog):
    from streamst.errors import UserError
    from streamst.speak.engine import parse_engine
    from streamst.speak.serving import server_synthesizer

    assert parse_engine("espeak-ng") == ("espeak-ng", "") and parse_engine("kokoro:/m/k") == ("kokoro", "/m/k")
    with pytest.raises(UserError, match="--tts: unknown engine 'piper'"):
        parse_engine("piper:/x")
    # a server whose engine cannot load speaks nothing and says why in its log (sessions get text)
    assert server_synthesizer(None, "kokoro:/no/such/dir") is None
    assert "spoken output is off" in caplog.text and "kokoro-v1.0.onnx" in caplog.text
