"""The written form of target text: full-width punctuation for zh / yue / ja (their table rows'
``fullwidth_punctuation``), applied once to every target output (simul and cascade events,
results), without ever retracting committed text."""

from __future__ import annotations

import pytest

from streamst.audio import read_audio
from streamst.languages import TABLE
from streamst.loading import Models
from streamst.mt.base import Proposal
from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.profiles import load_profile
from streamst.text import join_units, output_units, split_units

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread


def test_only_chinese_cantonese_and_japanese_write_fullwidth_marks():
    assert {c for c, lang in TABLE.items() if lang.fullwidth_punctuation} == {"zh", "yue", "ja"}
    assert all(len(lang.fullwidth_punctuation) in (0, 8) for lang in TABLE.values())


@pytest.mark.parametrize(("text", "lang", "written"), [
    ("你好,世界.好吗?", "zh", "你好，世界。好吗？"),
    ("我们用AI.版本3.5很好!", "zh", "我们用AI。版本3.5很好！"),  # a mark between digits stays
    ("10:30开会(线上);", "yue", "10:30开会（线上）；"),
    ("今日は雨です,明日は晴れ.", "ja", "今日は雨です、明日は晴れ。"),  # Japanese commas
    ("Hello, world. OK?", "en", "Hello, world. OK?"),
    ("مرحبا, عالم.", "ar", "مرحبا, عالم."),
])
def test_output_units_write_each_language_as_it_is_written(text, lang, written):
    units = output_units(split_units(text, lang), lang)
    assert join_units(units, lang) == written
    assert split_units(written, lang) == units  # what is emitted splits back into the same units
    assert output_units(units, lang) == units  # idempotent: committed units pass through unchanged


def test_a_prefix_of_the_units_is_written_as_a_prefix():
    """Each unit is written on its own, so what a policy committed never changes later."""
    units = split_units("我们用AI.版本3.5,好吗?", "zh")
    whole = output_units(units, "zh")
    for k in range(len(units) + 1):
        part = output_units(units[:k], "zh")
        assert whole[: len(part)] == part


SCRIPT = {"zh": "我们用AI,版本3.5.好吗?", "ja": "AIを使う,版本3.5.いいですか?", "de": "Wir nutzen AI, Version 3.5. OK?"}
WRITTEN = {"zh": "我们用AI，版本3.5。好吗？", "ja": "AIを使う、版本3.5。いいですか？", "de": SCRIPT["de"]}


class ScriptedStream:
    """A translation stream that continues the committed target along a fixed ASCII-punctuated
    script (as a model trained on such text would); full-width marks are one character each,
    so the committed length says where the script continues."""

    def __init__(self, tgt: str) -> None:
        self.script = SCRIPT[tgt]
        self.seen: list[str] = []

    def propose_many(self, srcs, committed, *, max_new_tokens, follow_first=False):
        self.seen.append(committed)
        rest = self.script[len(committed):]
        return [Proposal(text=committed + rest, continuation=rest, steps=1, reused_tokens=0) for _ in srcs]

    def predict_source(self, source, n, *, max_new_tokens):
        return []

    def reset(self) -> None:
        pass


class ScriptedMT:
    def __init__(self) -> None:
        self.streams: dict[str, ScriptedStream] = {}

    def open_stream(self, src, tgt, lm=None):
        return self.streams.setdefault(tgt, ScriptedStream(tgt))

    def translate(self, text, src, tgt, *, max_new_tokens=64):
        return SCRIPT[tgt]


def test_session_events_and_results_carry_the_written_form(tiny_models_root, speech):
    models = Models(load_profile(str(tiny_models_root / "profiles" / "tiny.json")), root=tiny_models_root)
    mt = ScriptedMT()
    models._cache["mt"] = mt  # the text decoder replaced by a script (the recogniser stays real)
    x, _ = read_audio(speech("Good morning everyone, the meeting starts at ten thirty.", "en", gap_ms=600))
    session = TranslationSession(models, PipelineConfig.create("en", ["zh", "ja", "de"], mode="both"))
    events = []
    for i in range(0, len(x), 9600):
        session.insert_audio(x[i: i + 9600])
        events += session.process()
    events += session.finish()
    trans = [e for e in events if e.type == "translation"]
    for tgt in ("zh", "ja", "de"):
        simul = [e for e in trans if e.language == tgt and e.mode == "simul"]
        cascade = [e for e in trans if e.language == tgt and e.mode == "cascade"]
        assert simul and cascade, tgt
        by_utt: dict[int, list] = {}
        for e in simul:
            by_utt.setdefault(e.utterance, []).append(e)
        for evs in by_utt.values():  # committed only grows, and is the emitted units joined
            units: list[str] = []
            for e in evs:
                assert e.committed.startswith(join_units(units, tgt))
                units += e.new_units
                assert e.committed == join_units(units, tgt)
                assert WRITTEN[tgt].startswith(e.committed) and WRITTEN[tgt].startswith(e.committed + e.tentative)
            assert evs[-1].final and evs[-1].committed == WRITTEN[tgt]
        assert all(e.committed == WRITTEN[tgt] and join_units(e.new_units, tgt) == WRITTEN[tgt] for e in cascade)
        # the decoder is forced to continue the written form, never the ASCII one
        seen = mt.streams[tgt].seen
        assert seen and all(WRITTEN[tgt].startswith(c) for c in seen)
    results = [r for r in session.results if r.language in ("zh", "ja")]
    assert results and all(r.simul == WRITTEN[r.language] and r.cascade == WRITTEN[r.language] for r in results)
