"""The synthetic reordering corpus (streamst/corpus): reorder distances on hand-checked
sentences, disjoint splits, vocabulary size, manifests and word times."""

from __future__ import annotations

import json
import random

import pytest

from streamst.corpus.build import CorpusConfig, generate, items, word_times, write_corpus
from streamst.corpus.grammar import STRUCTURES, Phrase, Sentence, random_sentence, sentence, vocabulary


def _sent(structure, zh_phrases, en_order):
    return Sentence(structure, tuple(Phrase(tuple(z.split()), tuple(e.split())) for z, e in zh_phrases), tuple(en_order))


def test_monotone_sentence_has_distance_zero():
    s = _sent("svo", [("我", "I"), ("买了", "bought"), ("三 本 书", "three books")], [0, 1, 2])
    assert s.text("zh") == "我买了三本书"
    assert s.text("en") == "I bought three books"
    assert s.reorder_distance("zh") == 0 and s.reorder_distance("en") == 0


def test_time_and_place_before_the_verb():
    # 我0 昨天1 在2 学校3 买了4 三5 本6 书7 -> I bought three books at the school yesterday:
    # 昨天 (1) is written after 书 (7): 6 words; en source: bought(1) .. yesterday(7): 6
    s = _sent("svo-tp", [("我", "I"), ("昨天", "yesterday"), ("在 学校", "at the school"), ("买了", "bought"),
                         ("三 本 书", "three books")], [0, 3, 4, 2, 1])
    assert s.text("en") == "I bought three books at the school yesterday"
    assert s.reorder_distance("zh") == 6
    # en words: I0 bought1 three2 books3 at4 the5 school6 yesterday7; 昨天 comes before 买了:
    # bought (1) .. yesterday (7) = 6
    assert s.reorder_distance("en") == 6


def test_relative_clause_waits_for_its_head_noun():
    # 我0 认识了1 昨天2 晚上3 买了4 三5 本6 书7 的8 老师9: the head 老师 (9) is written
    # before the clause that starts at 昨天 (2): distance 7
    s = _sent("rc-object", [("我", "I"), ("认识了", "met"), ("昨天 晚上", "last night"), ("买了", "bought"),
                            ("三 本 书", "three books"), ("的", "that"), ("老师", "the teacher")],
              [0, 1, 6, 5, 3, 4, 2])
    assert s.text("en") == "I met the teacher that bought three books last night"
    assert s.reorder_distance("zh") == 7


def test_phrases_without_words_on_one_side_do_not_count():
    s = _sent("ba", [("我", "I"), ("把", ""), ("那 本 书", "that book"), ("卖了", "sold")], [0, 3, 2, 1])
    assert s.text("en") == "I sold that book"
    # 我0 把1 那2 本3 书4 卖了5: 把 has no English side; (那本书, 卖了) cross: 5 - 2 = 3
    assert s.reorder_distance("zh") == 3


def test_every_structure_generates_and_long_reorders_occur():
    rng = random.Random(0)
    dists = []
    for s in STRUCTURES:
        for _ in range(30):
            x = sentence(s, rng)
            assert x.text("zh") and x.text("en")
            dists.append(x.reorder_distance("zh"))
    assert min(dists) == 0
    assert max(dists) >= 10
    assert len(vocabulary("zh")) >= 500 and len(vocabulary("en")) >= 500


def test_splits_are_disjoint_and_held_out_words_are_known():
    splits = generate(CorpusConfig(train=1500, dev=40, test=60, seed=3))
    texts = {k: {s.text("zh") for s in v} | {s.text("en") for s in v} for k, v in splits.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]
    known = {lang: {w for s in splits["train"] for w in s.words(lang)} for lang in ("zh", "en")}
    for s in splits["test"] + splits["dev"]:
        for lang in ("zh", "en"):
            assert set(s.words(lang)) <= known[lang]
    assert len(splits["test"]) == 60 and len(splits["dev"]) == 40
    rows = items(splits["test"], "test", (("zh", "en"), ("en", "zh")))
    assert len(rows) == 120 and {r["src_lang"] for r in rows} == {"zh", "en"}
    for r in rows[:10]:
        assert r["reorder"] == (r["reorder_distance"] > 0)


def test_word_times_cover_the_utterance_in_order():
    times = word_times(["a", "bbb", "cc"], "en", 1200.0, lambda w: 100.0 * len(w))
    assert times[0][0] == 0 and abs(times[-1][1] - 1200.0) < 0.2
    assert [round(e - s) for s, e in times] == [200, 600, 400]


def test_written_corpus_is_spoken_with_word_times(tmp_path):
    from streamst.tts import have_tts

    if not have_tts():
        pytest.skip("espeak-ng and sox are needed to speak the corpus")
    summary = write_corpus(tmp_path / "c", CorpusConfig(train=600, dev=2, test=2, seed=1, speak=("test",)),
                           tts_cache=tmp_path / "tts")
    assert summary["splits"]["test"]["spoken"] and not summary["splits"]["train"]["spoken"]
    rows = [json.loads(x) for x in (tmp_path / "c" / "test.jsonl").read_text().splitlines()]
    assert rows and all((tmp_path / "c" / r["audio"]).is_file() for r in rows)
    for r in rows:
        assert len(r["word_times"]) == len(r["words"])
        ends = [e for _, e in r["word_times"]]
        assert ends == sorted(ends)
    train = [json.loads(x) for x in (tmp_path / "c" / "train.jsonl").read_text().splitlines()]
    assert "audio" not in train[0]


def test_random_sentences_are_deterministic_per_seed():
    a = [random_sentence(random.Random(7)).text("en") for _ in range(3)]
    b = [random_sentence(random.Random(7)).text("en") for _ in range(3)]
    assert a == b
