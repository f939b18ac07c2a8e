"""One espeak-ng sentence per source language of the multilingual profile through
``streamst translate --json`` (in-process, tiny-multilingual: the 31 languages of
Fun-ASR-MLT-Nano, a tiny random stand-in), each into a target of another script.

Random weights cannot tell languages apart, so what is tested is the plumbing: every declared
language is accepted, named to the recogniser and the decoder, its transcript carries the
language, and every utterance ends with a committed translation into its target, the same
text in the final translation event and in the summary. (No golden file: the text of random
weights changes with every change of the tiny models.)"""

from __future__ import annotations

import json

import pytest

from streamst.cli import main
from streamst.languages import MLT_LANGUAGES

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread

SENTENCES = {
    "zh": "早上好，今天天气很好。",
    "en": "Good morning, the weather is nice today.",
    "yue": "早晨，今日天氣好好。",
    "ja": "おはようございます。今日はいい天気です。",
    "ko": "안녕하세요. 오늘은 날씨가 좋습니다.",
    "vi": "Chào buổi sáng, hôm nay trời đẹp.",
    "id": "Selamat pagi, cuaca hari ini cerah.",
    "th": "สวัสดีตอนเช้า วันนี้อากาศดี",
    "ms": "Selamat pagi, cuaca hari ini baik.",
    "fil": "Magandang umaga, maganda ang panahon ngayon.",  # espeak-ng reads it with the Indonesian voice
    "ar": "صباح الخير، الطقس جميل اليوم.",
    "hi": "सुप्रभात, आज मौसम अच्छा है।",
    "bg": "Добро утро, времето днес е хубаво.",
    "hr": "Dobro jutro, vrijeme je danas lijepo.",
    "cs": "Dobré ráno, dnes je hezké počasí.",
    "da": "Godmorgen, vejret er dejligt i dag.",
    "nl": "Goedemorgen, het weer is vandaag mooi.",
    "et": "Tere hommikust, täna on ilus ilm.",
    "fi": "Hyvää huomenta, tänään on kaunis sää.",
    "el": "Καλημέρα, ο καιρός είναι ωραίος σήμερα.",
    "hu": "Jó reggelt, ma szép az idő.",
    "ga": "Maidin mhaith, tá an aimsir go deas inniu.",
    "lv": "Labrīt, šodien ir jauks laiks.",
    "lt": "Labas rytas, šiandien graži diena.",
    "mt": "L-għodwa t-tajba, it-temp sabiħ illum.",
    "pl": "Dzień dobry, dziś jest ładna pogoda.",
    "pt": "Bom dia, o tempo está bom hoje.",
    "ro": "Bună dimineața, vremea este frumoasă azi.",
    "sk": "Dobré ráno, dnes je pekné počasie.",
    "sl": "Dobro jutro, danes je lepo vreme.",
    "sv": "God morgon, vädret är fint i dag.",
}
# targets of several scripts and word orders, taken in turn
TARGETS = ("en", "ar", "th", "ja", "de", "hi", "ru", "zh", "he", "ko")


def target_for(i: int, src: str) -> str:
    tgt = TARGETS[i % len(TARGETS)]
    return tgt if tgt != src else "fr"


def test_every_declared_language_has_a_sentence():
    assert tuple(SENTENCES) == MLT_LANGUAGES


@pytest.fixture(scope="module")
def cli_models(tiny_models_root):
    """``translate`` in-process on tiny-multilingual, its models loaded once for all languages."""
    from streamst.commands import translate
    from streamst.loading import Models
    from streamst.profiles import build_profile, load_profile

    profile = load_profile(str(tiny_models_root / "profiles" / "tiny-multilingual.json"))
    build_profile(profile, root=tiny_models_root)
    models = Models(profile, root=tiny_models_root)
    mp = pytest.MonkeyPatch()
    mp.setenv("STREAMST_MODELS", str(tiny_models_root))
    mp.setattr(translate, "load_models", lambda *a, **kw: models)
    yield models
    mp.undo()


@pytest.mark.parametrize("src", MLT_LANGUAGES)
def test_translate_json_per_source_language(cli_models, speech, capsys, src):
    tgt = target_for(MLT_LANGUAGES.index(src), src)
    wav = speech(SENTENCES[src], src, gap_ms=500)
    assert main(["translate", str(wav), "--profile", "tiny-multilingual", "--src", src, "--tgt", tgt, "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["src_lang"] == src and summary["tgt_langs"] == [tgt]
    transcripts = [e for e in lines if e.get("type") == "transcript"]
    assert transcripts and all(e["language"] == src for e in transcripts), transcripts[:2]
    utterances = summary["utterances"]
    assert utterances and all(u["language"] == tgt and u["source"] for u in utterances), utterances
    finals = {e["utterance"]: e["committed"] for e in lines
              if e.get("type") == "translation" and e.get("language") == tgt and e.get("final")}
    for u in utterances:  # a committed output per target, the same in the event and the summary
        assert u["simul"].strip() and finals.get(u["utterance"]) == u["simul"], (u, finals)


def test_a_language_the_profile_does_not_hear_is_refused(cli_models, speech, capsys):
    """German is written by every profile, but Fun-ASR-MLT-Nano does not hear it."""
    wav = speech(SENTENCES["en"], "en")
    assert main(["translate", str(wav), "--profile", "tiny-multilingual", "--src", "de", "--tgt", "en"]) != 0
    err = capsys.readouterr().err
    assert "does not hear 'de'" in err and "th" in err, err
