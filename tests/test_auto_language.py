"""src_lang "auto": each utterance's source language is SenseVoice's language ID, on the
pipeline and on every endpoint (native /ws, /funasr; the OpenAI endpoint always runs auto)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from websockets.sync.client import connect

from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.server import ServerConfig
from tests.conftest import concat_wavs
from tests.server_util import ServerThread, read_wav, run_session


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


@pytest.fixture(scope="module")
def two_utterances(speech, tmp_path_factory):
    path = concat_wavs([speech("区块链是今年最火热的科技趋势了。", "zh"), speech("The weather is nice today.", "en")],
                       tmp_path_factory.mktemp("auto") / "two.wav", silence_ms=900)
    return read_wav(path)


def test_each_utterance_translates_from_its_detected_language(models, two_utterances):
    """The tiny random model detects nothing meaningful, so the language ID is scripted:
    utterance 0 is "detected" as ja, utterance 1 as en."""
    session: TranslationSession | None = None

    def recognize(window, language):
        assert language == "auto"  # SenseVoice is asked to identify the language
        rec = models.asr.recognize([window], language)[0]
        utt = session.recognizer._utt.index if session and session.recognizer._utt else 0
        return dataclasses.replace(rec, language="ja" if utt == 0 else "en")

    session = TranslationSession(models, PipelineConfig.create("auto", ["zh"]), recognize=recognize)
    events = []
    for i in range(0, len(two_utterances), 3200):
        session.insert_audio(two_utterances[i : i + 3200])
        events += session.process()
    events += session.finish()
    finals = [e for e in events if e.type == "transcript" and e.kind == "final"]
    assert [e.language for e in finals] == ["ja", "en"], [e.language for e in finals]
    track = session.tracks[0]
    assert track.src == "en" and track.track.proposer.stream.prompt.src_lang == "en"  # the decoder prompt follows
    assert track.track.policy.k == track.session.cfg.policy_for("zh", "en").k == 2  # word-source defaults
    results = list(session.results)
    assert len(results) == 2 and all(r.simul is not None for r in results)


def test_native_and_funasr_endpoints_accept_auto(models, two_utterances):
    srv = ServerThread(ServerConfig(profile="tiny", idle_timeout_s=20), models)
    try:
        msgs, code = run_session(srv.url("/ws"), {"src_lang": "auto", "tgt_langs": ["en"]}, two_utterances[:48000])
        assert code == 1000 and msgs[0]["config"]["src_lang"] == "auto"
        assert msgs[-1]["type"] == "end"
        with connect(srv.url("/funasr")) as ws:
            ws.send(json.dumps({"mode": "2pass", "svs_lang": "auto", "wav_name": "a", "is_speaking": True}))
            ws.send((np.clip(two_utterances[:32000], -1, 1) * 32767).astype("<i2").tobytes())
            ws.send(json.dumps({"is_speaking": False, "is_end": True}))
            while not (m := json.loads(ws.recv(timeout=60))).get("is_end"):
                assert m["mode"] != "error", m
            assert m["is_final"] is True
    finally:
        srv.close()
