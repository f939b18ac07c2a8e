"""The shipped bilingual test set and its synthesised manifest."""

from __future__ import annotations

import json
import unicodedata

import pytest

from streamst import tts
from streamst.testset import TESTSET_PATH, load_testset, synthesize_testset

FIELDS = {"id", "src_lang", "tgt_lang", "source", "reference", "reorder"}


def test_file_is_valid():
    rows = [json.loads(line) for line in TESTSET_PATH.read_text(encoding="utf-8").splitlines()]
    assert all(set(r) == FIELDS for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(isinstance(r["reorder"], bool) and r["source"].strip() and r["reference"].strip()
               for r in rows)
    zh_en = [r for r in rows if (r["src_lang"], r["tgt_lang"]) == ("zh", "en")]
    en_zh = [r for r in rows if (r["src_lang"], r["tgt_lang"]) == ("en", "zh")]
    assert len(zh_en) >= 40 and len(en_zh) >= 20
    assert len(zh_en) + len(en_zh) == len(rows)
    assert sum(r["reorder"] for r in rows) >= 15
    assert any(not r["reorder"] for r in zh_en)  # a control subset too
    for r in zh_en:
        hanzi = [c for c in r["source"] if not unicodedata.category(c).startswith("P")]
        assert 8 <= len(hanzi) <= 25, r["id"]
        assert r["reference"].isascii(), r["id"]
    for r in en_zh:
        assert r["source"].isascii() and not r["reference"].isascii(), r["id"]


def test_load_filters():
    assert len(load_testset(["zh"])) == len(load_testset(["zh-en"]))
    assert {p.pair for p in load_testset(["en-zh"])} == {"en-zh"}
    two = load_testset(limit=1)
    assert [p.pair for p in two] == ["zh-en", "en-zh"]
    with pytest.raises(ValueError, match="fr-de"):
        load_testset(["fr-de"])


@pytest.mark.skipif(not tts.have_tts(), reason="espeak-ng and sox are needed (apt-get install espeak-ng sox)")
def test_synthesize_two_lines(tmp_path):
    import soundfile as sf

    manifest = synthesize_testset(tmp_path / "ts", limit=1)
    assert manifest.name == "manifest.jsonl"
    entries = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert len(entries) == 2
    for e in entries:
        assert {"audio", "source", "reference", "src_lang", "tgt_lang", "id", "reorder"} <= set(e)
        wav = manifest.parent / e["audio"]
        assert not e["audio"].startswith("/") and wav.is_file()
        info = sf.info(wav)
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 1.0
