"""The language table and what is derived from it: units per script (hand-counted), AL/LAAL in
those units, per-pair policy defaults, what each profile hears and writes."""

from __future__ import annotations

import json

import pytest

from streamst.evaluation import UtteranceResult, score_direction
from streamst.languages import LANGUAGES, MLT_LANGUAGES, TABLE, pair_defaults, reorders
from streamst.policy.config import PolicyConfig
from streamst.profiles import load_profile
from streamst.text import fullwidth_punctuation, join_units, split_units

# -- the table --------------------------------------------------------------------------------


def test_table_rows_are_consistent():
    assert len(MLT_LANGUAGES) == len(set(MLT_LANGUAGES)) == 31
    for code in MLT_LANGUAGES:  # every language Fun-ASR-MLT-Nano hears has a Chinese instruction name
        assert TABLE[code].zh, code
    assert {c for c, lang in TABLE.items() if lang.rtl} >= {"ar", "fa", "he"}
    assert all(not lang.rtl or lang.script in ("Arab", "Hebr") for lang in TABLE.values())
    assert {c for c, lang in TABLE.items() if lang.unit == "seg"} == {"th", "lo", "km", "my"}
    assert LANGUAGES["de"] == "German" and TABLE["ja"].native == "日本語"


def test_pair_defaults_follow_unit_kind_and_word_order():
    assert pair_defaults("zh", "en") == {"k": 3, "max_lag": 10, "ratio": 0.625}
    assert pair_defaults("en", "zh") == {"k": 2, "max_lag": 6, "ratio": 1.6}
    # verb-final sources into SVO/VSO targets wait longer before writing anyway
    assert reorders("ja", "en") and reorders("hi", "en") and reorders("tr", "fr") and reorders("ko", "ar")
    assert pair_defaults("ja", "en")["max_lag"] == 15 and pair_defaults("ko", "en")["max_lag"] == 9
    assert pair_defaults("hi", "de")["max_lag"] == 9 and pair_defaults("tr", "en")["max_lag"] == 9
    # between verb-final languages, and from SVO sources, no extra wait
    assert not reorders("ja", "ko") and pair_defaults("ja", "ko")["max_lag"] == 10
    assert not reorders("en", "ja") and pair_defaults("en", "ja")["max_lag"] == 6
    # the policy's per-pair defaults are the table's
    for src, tgt in [("ja", "en"), ("th", "vi"), ("ar", "he"), ("fil", "zh")]:
        cfg = PolicyConfig.for_pair(src, tgt)
        assert {"k": cfg.k, "max_lag": cfg.max_lag, "ratio": cfg.ratio} == pair_defaults(src, tgt)


# -- units per script (hand-counted) ---------------------------------------------------------

THAI = "สวัสดีครับ วันนี้อากาศดีมาก"  # sawatdi | khrap | wanni | akat | dimak
THAI_UNITS = ["สวัสดี", "ครับ", "วันนี้", "อากาศ", "ดีมาก"]
JAPANESE = "今日は雨です。"  # 今 日 は 雨 で す 。
JAPANESE_UNITS = ["今", "日", "は", "雨", "で", "す", "。"]


@pytest.mark.parametrize(("text", "lang", "units"), [
    (THAI, "th", THAI_UNITS),
    ("ไทย AI 2025", "th", ["ไทย", "AI", "2025"]),  # Latin runs and digits keep their spaces
    (JAPANESE, "ja", JAPANESE_UNITS),
    ("ພາສາລາວໃນປັດຈຸບັນ", "lo", ["ພາສາລາວ", "ໃນ", "ປັດຈຸບັນ"]),  # Lao language | in | the present
    ("ខ្ញុំស្រឡាញ់ប្រទេសកម្ពុជា", "km", ["ខ្ញុំ", "ស្រឡាញ់", "ប្រទេស", "កម្ពុជា"]),  # I | love | country | Cambodia
    # Burmese (burmesenlp): I | Burmese language | speak | can | polite ending
    ("ကျွန်တော်မြန်မာစကားပြောတတ်ပါတယ်", "my", ["ကျွန်တော်", "မြန်မာစကား", "ပြော", "တတ်", "ပါတယ်"]),
    ("မင်္ဂလာပါ။ ဒီနေ့", "my", ["မင်္ဂလာပါ", "။", "ဒီနေ့"]),  # hello | . | today (kinzi kept in its word)
    ("مرحبا بالعالم", "ar", ["مرحبا", "بالعالم"]),
    ("안녕 하세요", "ko", ["안녕", "하세요"]),
])
def test_units_per_script(text, lang, units):
    assert split_units(text, lang) == units
    assert split_units(join_units(units, lang), lang) == units


def test_no_space_scripts_join_without_spaces():
    assert join_units(THAI_UNITS, "th") == "สวัสดีครับวันนี้อากาศดีมาก"
    assert join_units(["ไทย", "AI", "model"], "th") == "ไทยAI model"
    assert join_units(["hello", "world"], "de") == "hello world"


def test_fullwidth_punctuation_for_cjk_only():
    assert fullwidth_punctuation("你好, 世界. 好吗?", "zh") == "你好，世界。好吗？"
    # a decimal point stays; units join as outputs join them, without spaces around CJK characters
    assert fullwidth_punctuation("版本 3.5 很好!", "zh") == "版本3.5很好！"
    assert fullwidth_punctuation("Hello, world.", "en") == "Hello, world."


def _result(tgt: str, prediction: str, delays: list[float], reference: str) -> UtteranceResult:
    return UtteranceResult(id="u", src_lang="en", tgt_lang=tgt, prediction=prediction, delays=delays, elapsed=[],
                           source_length=3000.0, reference=reference, cascade=None)


def test_al_laal_in_thai_words(tmp_path):
    """5 Thai words (hand-counted), two written at 1 s and three at 2 s of a 3 s utterance;
    reference of 5 words: gamma = 5/3000, AL = (1000 + 400 + 800 + 200 - 400) / 5 = 400 ms.
    Counting the unspaced reference as 1 word (whitespace split) would give AL 1000 ms."""
    delays = [1000.0, 1000.0, 2000.0, 2000.0, 2000.0]
    assert len(split_units(THAI, "th")) == len(delays)
    out = score_direction([_result("th", THAI, delays, reference="สวัสดีครับวันนี้อากาศดีมาก")], tmp_path)
    assert out["latency_unit"] == "segmented word"
    assert out["AL"] == pytest.approx(400.0) and out["LAAL"] == pytest.approx(400.0)


def test_al_laal_in_japanese_characters(tmp_path):
    """7 Japanese units (6 characters and "。"), written at 500, 500, 1000, 1000, 1500, 2500,
    2500 ms of 3 s; reference 今日は晴れです。 is 8 characters: AL uses gamma = 8/3000 (375 ms
    per unit): (500 + 125 + 250 - 125 - 0 + 625 + 250) / 7 = 232.14 ms; LAAL uses max(7, 8) too."""
    delays = [500.0, 500.0, 1000.0, 1000.0, 1500.0, 2500.0, 2500.0]
    assert len(split_units(JAPANESE, "ja")) == len(delays)
    out = score_direction([_result("ja", JAPANESE, delays, reference="今日は晴れです。")], tmp_path)
    assert out["latency_unit"] == "char"
    assert out["AL"] == pytest.approx(1625 / 7) and out["LAAL"] == pytest.approx(1625 / 7)


# -- profiles: heard and written -------------------------------------------------------------


def test_profiles_declare_what_they_hear():
    tiny, ml = load_profile("tiny"), load_profile("multilingual")
    assert tiny.hears(("simul",)) == ("zh", "yue", "en", "ja", "ko")  # SenseVoice, table order
    assert set(ml.hears(("simul", "e2e"))) == set(MLT_LANGUAGES)
    assert ml.asr.kind == "fun-asr-nano" and ml.asr.source == "FunAudioLLM/Fun-ASR-MLT-Nano-2512"
    assert load_profile("tiny-multilingual").hears(("simul",)) == ml.hears(("simul",))
    assert "de" in tiny.writes() and "th" in ml.writes()
    problem = tiny.source_problem("th", ("simul",))
    assert problem and "does not hear 'th'" in problem and "zh, yue, en, ja, ko" in problem
    assert tiny.source_problem("auto", ("simul", "e2e")) is None and ml.source_problem("th", ("e2e",)) is None


def test_models_list_json_shows_heard_and_written(capsys):
    from streamst.cli import main

    assert main(["models", "list", "--json"]) == 0
    rows = {r["profile"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows["multilingual"]["hears"]) == 31 and "th" in rows["multilingual"]["hears"]
    assert rows["tiny"]["hears"] == ["zh", "yue", "en", "ja", "ko"]
    assert {"code": "ar", "native": "العربية", "rtl": True} in rows["tiny"]["writes"]


def test_docs_table_shows_what_each_profile_hears():
    from pathlib import Path

    from streamst.profiles import PACKAGED_PROFILES

    doc = (Path(__file__).resolve().parent.parent / "docs" / "languages.md").read_text(encoding="utf-8")
    for path in PACKAGED_PROFILES.glob("*.json"):
        prof = load_profile(path.stem)
        e2e = ", ".join(prof.hears(("e2e",))) if prof.e2e else "—"
        row = f"| `{prof.name}` | {', '.join(prof.hears(('simul',)))} | {e2e} | all {len(prof.writes())} of the table |"
        assert row in doc, row
    for code, lang in TABLE.items():
        assert f"| `{code}` | {lang.name} | {lang.native} |" in doc, code
