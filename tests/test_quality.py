"""BLEU/chrF via sacrebleu, tokenizer choice, COMET guard, quality retention."""

from __future__ import annotations

import importlib.util

import pytest

from streamst.errors import UserError
from streamst.metrics.quality import bleu, bleu_tokenizer, chrf, comet, quality_report, retention

REFS = ["Blockchain is the hottest technology trend of the year.",
        "The children are playing happily in the park."]
HYPS = ["Blockchain is the hottest tech trend this year.",
        "The children are playing happily in the park."]
CASCADE = ["Blockchain is this year's hottest technology trend.",
           "The children play happily in the park."]


def test_identical_scores_100():
    assert bleu(REFS, REFS) == pytest.approx(100.0)
    assert chrf(REFS, REFS) == pytest.approx(100.0)
    assert 0 < bleu(HYPS, REFS) < 100
    with pytest.raises(ValueError):
        bleu(HYPS[:1], REFS)


def test_tokenizer_for_target_language():
    assert bleu_tokenizer("zh") == "zh"
    assert bleu_tokenizer("en") == "13a"
    assert bleu_tokenizer(None) == "13a"
    have_mecab = importlib.util.find_spec("MeCab") is not None and importlib.util.find_spec("ipadic") is not None
    assert bleu_tokenizer("ja") == ("ja-mecab" if have_mecab else "char")


def test_chinese_bleu_needs_zh_tokenizer():
    ref = ["区块链是今年最火热的科技趋势。"]
    hyp = ["区块链是今年最热门的科技趋势。"]
    # unsegmented Chinese is one "word" for 13a: no n-gram matches at all
    assert bleu(hyp, ref, tokenize="13a") == 0.0
    assert bleu(hyp, ref, tokenize="zh") > 40


def test_retention():
    assert retention(30.0, 40.0) == pytest.approx(0.75)
    assert retention(30.0, 0.0) is None


def test_report_with_references():
    q = quality_report(HYPS, references=REFS, cascade=CASCADE, tgt_lang="en")
    assert q.basis == "reference" and q.tokenize == "13a"
    assert q.retention_chrf == pytest.approx(q.chrf / q.cascade_chrf)
    assert q.retention_bleu == pytest.approx(q.bleu / q.cascade_bleu)
    assert q.agreement_chrf == pytest.approx(chrf(HYPS, CASCADE))


def test_report_without_references_is_labelled_proxy():
    q = quality_report(HYPS, references=[None, None], cascade=CASCADE, tgt_lang="en")
    assert q.basis == "cascade-agreement"
    assert "reference-free proxy" in q.note
    assert q.bleu is None and q.chrf is None
    assert q.retention_chrf == pytest.approx(chrf(HYPS, CASCADE) / 100)
    with pytest.raises(ValueError):
        quality_report(HYPS, references=None, cascade=None)


def test_comet_never_downloads(tmp_path):
    # without the package, or without a local checkpoint, a one-line UserError
    with pytest.raises(UserError, match="unbabel-comet|checkpoint"):
        comet(["源"], HYPS[:1], REFS[:1], model_path=None)
    with pytest.raises(UserError, match="unbabel-comet|checkpoint"):
        comet(["源"], HYPS[:1], REFS[:1], model_path=tmp_path / "missing.ckpt")
