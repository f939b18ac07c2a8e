"""The server and the profile's languages: a source the profile does not hear is refused with
bad_language naming what it hears; GET /languages gives the page's pickers."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from streamst.server import ServerConfig
from tests.server_util import ServerThread, expect_error


@pytest.fixture(scope="module")
def server(tiny_models):
    srv = ServerThread(ServerConfig(profile="tiny", max_sessions=2, idle_timeout_s=20), tiny_models)
    yield srv
    srv.close()


@pytest.mark.parametrize(("start", "needle"), [
    ({"src_lang": "th", "tgt_langs": ["en"]}, "does not hear 'th' on path(s) simul; it hears: auto, zh, yue, en, ja, ko"),
    # SenseVoice hears ko, the tiny Fun-ASR-Nano (mode e2e) does not
    ({"src_lang": "ko", "tgt_langs": ["en"], "mode": "all"}, "does not hear 'ko' on path(s) e2e, simul, cascade"),
])
def test_a_source_the_profile_does_not_hear_is_refused(server, start, needle):
    with connect(server.url()) as ws:
        ws.send(json.dumps({"type": "start", **start}))
        err = expect_error(ws, "bad_language", 1007)
    assert needle in err["message"], err


def test_any_table_target_is_accepted(server):
    with connect(server.url()) as ws:
        ws.send(json.dumps({"type": "start", "src_lang": "en", "tgt_langs": ["th", "ar", "hi"]}))
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready" and ready["config"]["tgt_langs"] == ["th", "ar", "hi"], ready
        assert ready["config"]["policy"]["hi"]["ratio"] == 1.0  # per-pair defaults from the table


def test_languages_endpoint_lists_heard_and_written_with_native_names(server):
    status, ctype, body = server.http("/languages")
    assert status == 200 and ctype.startswith("application/json")
    menu = json.loads(body)
    assert menu["profile"] == "tiny"
    assert [r["code"] for r in menu["hears"]] == ["zh", "yue", "en", "ja", "ko"]
    assert [r["code"] for r in menu["hears_e2e"]] == ["zh", "yue", "en", "ja"]
    rows = {r["code"]: r for r in menu["writes"]}
    assert rows["ar"] == {"code": "ar", "name": "Arabic", "native": "العربية", "rtl": True, "unit": "word"}
    assert rows["th"]["unit"] == "seg" and rows["ja"]["native"] == "日本語"
