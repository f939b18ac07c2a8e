"""Speaker turns (issue 23).

Two kinds of proof, kept apart:

* the clustering logic and the session hook's windows/labels bookkeeping, with a
  deterministic STAND-IN embedder (a tone's frequency -> a unit vector): no model;
* the end-to-end checks, which run the REAL CAM++ code path: the tiny profile's ``cam++``
  directory (FunASR ``CAMPPlus``, trained on synthetic espeak-ng voices by
  ``streamst.builders.campplus_train``, the dialogue voices held out), loaded by ``funasr.AutoModel``,
  through ``/ws`` and ``/funasr`` of a server started with ``speakers=True``.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from streamst.events import LatencyEvent, TranscriptEvent, TranslationEvent
from streamst.server import ServerConfig
from streamst.speakers.cluster import ClusterOptions, OnlineClusterer
from streamst.speakers.dialogue import VOICES, Turn, Utterance, make_dialogue, score
from streamst.speakers.embed import unit
from streamst.speakers.turns import SpeakerTurns, TurnOptions
from streamst.tts import have_tts
from tests.conftest import NO_TTS
from tests.server_util import ServerThread, run_session


# -- stand-in embedder: the clustering logic alone ----------------------------------------------
class ToneEmbedder:
    """Stand-in (no model): a window's dominant frequency, placed on a circle of 16 bins."""

    dim = 2
    threshold = 0.9

    def __init__(self) -> None:
        self.calls: list[int] = []  # windows per call

    def embed(self, windows):
        self.calls.append(len(windows))
        out = []
        for w in windows:
            f = np.abs(np.fft.rfft(w)).argmax() * 16000 / len(w)
            angle = f / 2000 * np.pi  # 0..2000 Hz over half a circle
            out.append([np.cos(angle), np.sin(angle)])
        return unit(np.array(out, dtype=np.float32))


def tone(hz: float, ms: int) -> np.ndarray:
    t = np.arange(16 * ms) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def final(utt: int, start: int, end: int) -> TranscriptEvent:
    return TranscriptEvent(kind="final", utterance=utt, text="x", stable_text="x", tokens=(), language="en",
                           audio_ms=end, start_ms=start, end_ms=end)


def test_clusterer_new_speaker_threshold_stable_labels_and_bound():
    c = OnlineClusterer(ClusterOptions(threshold=0.8, max_speakers=2, min_new_ms=500))
    a, b, d = unit(np.array([1.0, 0.0])), unit(np.array([0.0, 1.0])), unit(np.array([-1.0, 0.2]))
    assert c.assign(a, 2000) == 0
    assert c.assign(b, 2000) == 1  # cosine 0 < 0.8: a new speaker
    assert c.assign(unit(np.array([0.95, 0.1])), 2000) == 0  # close to a: speaker 0 again
    assert c.assign(d, 2000) == 1  # a third voice (cosine 0.2 to b), but at most 2 speakers: the closest one
    assert c.speakers == 2
    assert c.peek(b) == 1 and c.peek(unit(np.array([0.7, -0.7]))) is not None  # bound reached: always a label


def test_short_utterances_never_start_a_speaker_nor_move_one():
    c = OnlineClusterer(ClusterOptions(threshold=0.8, min_new_ms=700))
    a, b = unit(np.array([1.0, 0.0])), unit(np.array([0.0, 1.0]))
    assert c.assign(b, 300) == 0  # the very first one: speaker 0 (there is no other)
    assert c.assign(a, 2000) == 1
    before = [x.copy() for x in c.centroids]
    assert c.assign(unit(np.array([0.1, 1.0])), 300) in (0, 1) and c.speakers == 2
    assert all(np.array_equal(x, y) for x, y in zip(before, c.centroids))


def test_hook_embeds_windows_as_they_complete_and_labels_every_event_of_the_utterance():
    emb = ToneEmbedder()
    turns = SpeakerTurns(emb, ClusterOptions(threshold=0.9), TurnOptions())
    audio = np.concatenate([tone(300, 4000), np.zeros(16 * 500, np.float32), tone(1200, 2000),
                            np.zeros(16 * 500, np.float32), tone(300, 1000)])
    turns.insert_audio(audio)
    partial = TranscriptEvent(kind="partial", utterance=0, text="x", stable_text="", tokens=(), language="en",
                              audio_ms=3000, start_ms=0, end_ms=3000)
    out = turns.label([partial])
    assert emb.calls == [3]  # windows 0-1.5, 0.75-2.25, 1.5-3.0 s: complete, embedded now
    assert out[0].speaker is None  # no speaker known yet: nothing provisional
    tr = TranslationEvent(utterance=0, mode="simul", language="zh", committed="y", new_units=("y",), delays_ms=(1.0,),
                          elapsed_ms=(1.0,), tentative="", final=True, audio_ms=4000)
    lat = LatencyEvent(utterance=0, language="zh", source_ms=4000.0, metrics={})
    out = turns.label([tr, final(0, 0, 4000), lat])  # the translation came before the final: same label
    assert [e.speaker for e in out] == [0, 0, 0]
    assert emb.calls == [3, 1]  # then 2.25-3.75 s; the last 0.25 s adds less than min_tail_ms: no tail window
    assert turns.label([final(1, 4500, 6500)])[0].speaker == 1
    assert turns.label([final(2, 7000, 8000)])[0].speaker == 0  # speaker 0 again, 1 s alone (one window)
    assert turns.speaker_of(type("R", (), {"path": "simul", "utterance": 1})()) == 1
    assert turns.label([final(1, 4500, 6500)])[0].speaker == 1  # a label never changes once given


def test_hook_memory_is_bounded():
    turns = SpeakerTurns(ToneEmbedder(), ClusterOptions(), TurnOptions(keep_ms=5000, idle_keep_ms=1000))
    for _ in range(200):  # 20 s without any utterance
        turns.insert_audio(tone(300, 100))
    kept = sum(x.size for _, x in turns._chunks)
    assert kept <= 16 * 1100


def test_dialogue_score_maps_labels_to_speakers():
    ref = [Turn(0, 0, 1000, "a"), Turn(1, 1500, 2500, "b"), Turn(0, 3000, 4000, "c"), Turn(1, 4500, 5500, "d")]
    perfect = [Utterance(t.start_ms, t.end_ms, 1 - t.speaker) for t in ref]  # names swapped: still perfect
    assert score(perfect, ref)["attribution"] == 1.0 and score(perfect, ref)["change_accuracy"] == 1.0
    one = [Utterance(t.start_ms, t.end_ms, 0) for t in ref]
    s = score(one, ref)
    assert s["attribution"] == 0.5 and s["change_accuracy"] == 0.0 and s["speakers_found"] == 1


# -- the real CAM++ code path --------------------------------------------------------------------
@pytest.fixture(scope="module")
def spk_server(tiny_models):
    assert tiny_models.has_spk
    srv = ServerThread(ServerConfig(profile="tiny", funasr_port=0, idle_timeout_s=30, max_sessions=2, speakers=True),
                       tiny_models)
    yield srv
    srv.close()


def final_transcripts(msgs):
    return [m for m in msgs if m.get("type") == "transcript" and m["kind"] == "final"]


def utterance_labels(msgs, ref):
    """Speaker label per reference turn: the label of the final transcript overlapping it most."""
    finals = final_transcripts(msgs)
    labels = []
    for t in ref:
        best = max(finals, key=lambda m: min(m["end_ms"], t.end_ms) - max(m["start_ms"], t.start_ms))
        labels.append(best.get("speaker"))
    return labels


@pytest.mark.skipif(not have_tts(), reason=NO_TTS)
def test_two_voice_dialogue_through_ws_gives_two_stable_labels(spk_server):
    audio, ref = make_dialogue([0, 1, 0, 1], VOICES[:2])
    msgs, code = run_session(spk_server.url(), {"src_lang": "en", "tgt_langs": ["zh"], "mode": "simul"}, audio)
    assert code == 1000, msgs[-3:]
    labels = utterance_labels(msgs, ref)
    assert None not in labels, final_transcripts(msgs)
    assert labels[0] == labels[2] and labels[1] == labels[3] and labels[0] != labels[1], labels
    assert len({m["speaker"] for m in final_transcripts(msgs)}) == 2
    # every utterance-level event of a labelled utterance carries its label
    by_utt = {m["utterance"]: m["speaker"] for m in final_transcripts(msgs)}
    done = [m for m in msgs if m.get("type") in ("translation", "latency") and (m.get("final") or m["type"] == "latency")]
    assert done and all(m.get("speaker") == by_utt[m["utterance"]] for m in done)


@pytest.mark.skipif(not have_tts(), reason=NO_TTS)
def test_one_voice_file_gives_one_label_and_clients_may_opt_out(spk_server):
    audio, ref = make_dialogue([0, 0, 0], VOICES[:1])
    msgs, code = run_session(spk_server.url(), {"src_lang": "en", "tgt_langs": ["zh"]}, audio)
    assert code == 1000
    assert len(final_transcripts(msgs)) >= 2 and {m.get("speaker") for m in final_transcripts(msgs)} == {0}
    msgs, code = run_session(spk_server.url(), {"src_lang": "en", "tgt_langs": ["zh"], "speakers": False}, audio)
    assert code == 1000 and all("speaker" not in m for m in msgs if m.get("type") in ("transcript", "translation"))


@pytest.mark.skipif(not have_tts(), reason=NO_TTS)
def test_funasr_reference_client_completes_2pass_with_speakers_on(spk_server):
    from streamst.audio import pcm16_bytes
    from tests.test_funasr_port import reference_like_client

    audio, _ = make_dialogue([0, 1], VOICES[:2])
    port = spk_server.server.bound_funasr_port
    got = asyncio.run(reference_like_client(f"ws://127.0.0.1:{port}", [("dlg", pcm16_bytes(audio))]))
    msgs = got["dlg"]
    assert msgs[-1]["is_end"] is True and msgs[-1]["is_final"] is True
    sents = [s for m in msgs if m["mode"] == "2pass-offline" for s in m.get("stamp_sents", [])]
    assert sents and all(isinstance(s["spk"], int) for s in sents), sents
    json.dumps(msgs)  # plain JSON throughout


def test_speakers_refused_on_a_server_without_them(tiny_models):
    from websockets.sync.client import connect

    from tests.server_util import expect_error

    srv = ServerThread(ServerConfig(profile="tiny", idle_timeout_s=20, max_sessions=1), tiny_models)
    try:
        with connect(srv.url(), open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start", "src_lang": "en", "tgt_langs": ["zh"], "speakers": True}))
            expect_error(ws, "speakers_unavailable", 1007)
    finally:
        srv.close()


def test_start_speaker_fields_are_parsed_strictly():
    from streamst.server.protocol import ProtocolError, parse_text

    s = parse_text(json.dumps({"type": "start", "src_lang": "en", "tgt_langs": ["zh"], "speakers": True,
                               "max_speakers": 3}))
    assert s.speakers is True and s.max_speakers == 3
    assert s.to_message()["max_speakers"] == 3 and "speakers" not in parse_text('{"type": "start"}').to_message()
    for bad in ({"max_speakers": 0}, {"max_speakers": 17}, {"speakers": "yes"}):
        try:
            parse_text(json.dumps({"type": "start", **bad}))
        except ProtocolError as e:
            assert e.code == "bad_value", (bad, e.code)
        else:
            raise AssertionError(f"accepted {bad}")
