"""The e2e path through the websocket service: native protocol events per path, /metrics,
and a clear refusal where the profile has no end-to-end model."""

from __future__ import annotations

import json
import statistics

import pytest
from websockets.sync.client import connect

from streamst.server import ServerConfig
from streamst.text import join_units, split_units
from tests.server_util import ServerThread, expect_error, metric_value, read_wav, run_session

ZH = "区块链是今年最火热的科技趋势了。"
CFG = ServerConfig(profile="tiny", max_sessions=4, idle_timeout_s=30, status_interval_s=0.5)


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


@pytest.fixture(scope="module")
def zh_audio(speech):
    return read_wav(speech(ZH, "zh", gap_ms=700))


def test_mode_e2e_streams_events_and_metrics_count_it(models, zh_audio):
    srv = ServerThread(CFG, models)
    try:
        msgs, code = run_session(srv.url(), {"src_lang": "zh", "tgt_langs": ["en"], "mode": "all",
                                             "policy": "wait-k"}, zh_audio)
        assert code == 1000, msgs[-3:]
        assert msgs[0]["config"]["mode"] == "all"
        by_path = {m["mode"] for m in msgs if m["type"] == "translation"}
        assert by_path == {"e2e", "simul", "cascade"}
        e2e = [m for m in msgs if m["type"] == "translation" and m["mode"] == "e2e"]
        assert e2e[-1]["final"] and e2e[-1]["committed"]
        assert [m for m in msgs if m["type"] == "latency" and m["mode"] == "e2e"]
        status, _, text = srv.http("/metrics")
        assert status == 200
        assert metric_value(text, "streamst_utterances_total", path="e2e") == 1
        assert 'path="e2e"' in text and "streamst_utterance_latency_ms_bucket" in text
    finally:
        srv.close()


def test_e2e_on_a_profile_without_an_e2e_model_is_refused(models, tiny_models_root):
    from dataclasses import replace

    from streamst.loading import Models

    bare = Models(replace(models.profile, e2e=None), root=tiny_models_root)
    bare._cache.update(models._cache)  # share whatever is loaded
    srv = ServerThread(CFG, bare)
    try:
        with connect(srv.url(), open_timeout=20) as ws:
            ws.send(json.dumps({"type": "start", "src_lang": "zh", "tgt_langs": ["en"], "mode": "e2e"}))
            err = expect_error(ws, "mode_unavailable", 1007)
        assert "end-to-end" in err["message"]
    finally:
        srv.close()


def test_a_lean_server_runs_e2e_sessions_with_the_lean_levers_and_says_so(models, zh_audio):
    """``serve --e2e-lean``: every session's e2e path runs PipelineConfig.e2e_lean (incremental
    final step, 10 context frames, lookahead 1), echoed in ``ready.config.e2e``; the text path's
    policy keeps its own lookahead. ``e2e_batch_rows``: the e2e decoder's forwards go through the
    server's batcher (on CPU only when asked)."""
    from dataclasses import replace

    from streamst.e2e.config import E2E_LEAN

    for lean in (False, True):
        # the lean run also batches the e2e decoder's forwards (off by default on CPU)
        srv = ServerThread(replace(CFG, e2e_lean=lean, e2e_batch_rows=8 if lean else None), models)
        try:
            msgs, code = run_session(srv.url(), {"src_lang": "zh", "tgt_langs": ["en"], "mode": "all"}, zh_audio)
            batcher = srv.server.e2e_batcher
            assert (batcher is not None) == lean
            if lean:
                assert batcher.requests > 0 and batcher.stats["verified"] > 0  # drafts through the batcher
        finally:
            srv.close()
        assert code == 1000, msgs[-3:]
        e2e = msgs[0]["config"]["e2e"]
        assert e2e["final_encoding"] == ("incremental" if lean else "full")
        assert e2e["context_frames"] == (E2E_LEAN["context_frames"] if lean else 20)
        assert e2e["policy"]["en"]["lookahead"] == (1 if lean else 4)
        assert e2e["policy"]["en"]["continuations"] == 0
        assert msgs[0]["config"]["policy"]["en"]["lookahead"] == 4  # the simul path's
        finals = [m for m in msgs if m["type"] == "translation" and m["mode"] == "e2e" and m["final"]]
        assert finals and finals[-1]["committed"]
        # the end summary groups by (language, path): the e2e text and figures are its own
        summary = msgs[-1]["summary"]
        outputs = summary["outputs"]["en"]
        assert set(outputs) == {"simul", "cascade", "e2e"}
        assert outputs["e2e"]["text"] == join_units([u for f in finals for u in split_units(f["committed"], "en")], "en")
        for path in ("simul", "e2e"):
            lat = [m["metrics"] for m in msgs if m["type"] == "latency" and m["mode"] == path]
            assert outputs[path]["utterances"] == len(lat) > 0
            als = [m["AL"] for m in lat if "AL" in m]
            assert outputs[path]["mean_latency_ms"].get("AL") == (round(statistics.fmean(als), 1) if als else None)
        assert summary["mean_latency_ms"]["en"] == outputs["simul"]["mean_latency_ms"]  # never averaged with e2e
        assert {r["path"] for r in summary["results"]} == {"simul", "e2e"}
        assert [r["e2e"] for r in summary["results"] if r["path"] == "e2e"] == [f["committed"] for f in finals]


def test_e2e_decoder_batching_defaults_by_device():
    from dataclasses import replace

    assert CFG.e2e_rows == 0  # CPU: each session's own thread (faster at real size on a few cores)
    assert replace(CFG, device="cuda").e2e_rows == CFG.mt_batch_rows
    assert replace(CFG, device="cuda", e2e_batch_rows=0).e2e_rows == 0
    assert replace(CFG, e2e_batch_rows=4).e2e_rows == 4
    with pytest.raises(ValueError, match="e2e_batch_rows >= 0"):
        replace(CFG, e2e_batch_rows=-1)
