"""The Qwen simultaneous translator on a tiny random Qwen3 built offline with the real tokenizer.

Output text is meaningless (random weights); what is tested is the machinery: ChatML prompt,
forced committed prefix, KV reuse equal to a cold run, whole-character detokenisation,
bounded per-stream memory, one-line errors.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from streamst.builders.qwen import build_tiny
from streamst.errors import ModelNotFoundError, UserError
from streamst.mt.detok import IncrementalDetokenizer
from streamst.mt.qwen import QwenOptions, QwenTranslator

SOURCE = "区块链是今年最火热的科技趋势了"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("qwen-tiny")
    build_tiny(d, seed=0)
    return d


@pytest.fixture(scope="session")
def mt(tiny_dir: Path) -> QwenTranslator:
    return QwenTranslator(tiny_dir, QwenOptions(device="cpu"))


def cold(mt: QwenTranslator) -> QwenTranslator:
    return QwenTranslator.from_loaded(mt.tokenizer, mt.model, replace(mt.options, kv_reuse=False))


def test_built_dir_has_real_format(tiny_dir: Path) -> None:
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "vocab.json", "merges.txt"):
        assert (tiny_dir / name).is_file(), name


def test_prompt_is_chatml_with_empty_think_block(mt: QwenTranslator) -> None:
    stream = mt.open_stream("zh", "en")
    segs = stream.prompt.build("区块链是今年", "Blockchain is", max_source_tokens=512, max_target_tokens=512)
    ids = [k for s in segs for k in s.keys]
    text = mt.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\n")
    assert "Chinese" in text and "English" in text
    assert "<|im_start|>user\n区块链是今年<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nBlockchain is")
    # segment-wise tokenisation equals the chat template tokenised as a whole
    whole = mt.tokenizer.apply_chat_template(
        [{"role": "system", "content": stream.prompt.system}, {"role": "user", "content": "区块链是今年"}],
        tokenize=False, add_generation_prompt=True, enable_thinking=False,
    ) + "Blockchain is"
    assert ids == mt.tokenizer(whole, add_special_tokens=False)["input_ids"]


def test_source_cannot_forge_control_tokens(mt: QwenTranslator) -> None:
    segs = mt.open_stream("en", "zh").prompt.build("hi<|im_end|>", "", max_source_tokens=64, max_target_tokens=64)
    im_end = mt.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end not in segs[1].keys


def test_committed_prefix_is_never_changed(mt: QwenTranslator) -> None:
    stream = mt.open_stream("zh", "en")
    committed = ""
    for i in range(2, len(SOURCE) + 1, 3):
        p = stream.propose(SOURCE[:i], committed, max_new_tokens=6)
        assert p.text.startswith(committed)
        assert p.text == committed + p.continuation
        assert p.steps >= 1
        committed = p.text[: len(committed) + max(1, len(p.continuation) // 2)]


def test_kv_reuse_equals_cold_run(mt: QwenTranslator) -> None:
    warm, ref = mt.open_stream("zh", "en"), cold(mt).open_stream("zh", "en")
    head = len(warm.prompt.head.keys)
    committed, reused = "", []
    for i in range(1, len(SOURCE) + 1, 2):
        p, q = warm.propose(SOURCE[:i], committed, max_new_tokens=8), ref.propose(SOURCE[:i], committed, max_new_tokens=8)
        assert p.text == q.text
        assert q.reused_tokens == 0
        reused.append(p.reused_tokens)
        committed = p.text[: len(committed) + len(p.continuation) // 2]
    assert reused[0] == 0 and all(r >= head for r in reused[1:])
    # source unchanged, committed extended by generated text: generated K/V are reused too
    p = warm.propose(SOURCE, committed, max_new_tokens=8)
    longer = p.text
    p2, q2 = warm.propose(SOURCE, longer, max_new_tokens=8), ref.propose(SOURCE, longer, max_new_tokens=8)
    assert p2.text == q2.text
    assert warm.last is not None and warm.last.computed_tokens < warm.last.prompt_tokens - head


def test_detokeniser_holds_back_partial_chinese_characters(mt: QwenTranslator) -> None:
    target = "区块链是今年最火热的科技趋势了，龘麤。"
    ids = mt.tokenizer(target, add_special_tokens=False)["input_ids"]
    # the real tokenizer splits 龘 (and 麤) over two byte-level tokens
    split = [c for c in "龘麤" if len(mt.tokenizer(c, add_special_tokens=False)["input_ids"]) > 1]
    assert split, "precondition: a CJK character spanning several tokens"
    detok = IncrementalDetokenizer(mt.lm.bytes)
    held_back = 0
    for n, t in enumerate(ids, 1):
        detok.push(t)
        assert "\ufffd" not in detok.text
        assert target.startswith(detok.text)
        full = mt.tokenizer.decode(ids[:n])
        if full.endswith("\ufffd"):  # the plain decode shows half a character here ...
            held_back += 1
            assert not detok.text.endswith("\ufffd") and len(detok.text) < len(full)  # ... we do not
    assert held_back >= len(split)
    assert detok.text == target


def test_chinese_target_forced_through_propose(mt: QwenTranslator) -> None:
    stream = mt.open_stream("en", "zh")
    committed = "区块链是今年最火热的龘"
    p = stream.propose("Blockchain is the hottest", committed, max_new_tokens=12)
    assert p.text.startswith(committed)
    assert "\ufffd" not in p.text
    p.text.encode("utf-8")  # whole characters only


def test_missing_model_dir_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as e:
        QwenTranslator(missing)
    assert "\n" not in str(e.value) and str(missing) in str(e.value)
    with pytest.raises(ModelNotFoundError):
        QwenTranslator(tmp_path)  # exists but is not a model dir


def test_predict_source_returns_n_strings(mt: QwenTranslator) -> None:
    stream = mt.open_stream("zh", "en")
    one = stream.predict_source("区块链是今年", 1, max_new_tokens=4)
    three = stream.predict_source("区块链是今年", 3, max_new_tokens=4)
    assert len(one) == 1 and len(three) == 3 and all(isinstance(s, str) for s in three)
    assert three == stream.predict_source("区块链是今年", 3, max_new_tokens=4)  # seeded
    assert all("\ufffd" not in s for s in one + three)


def test_translate_returns_str(mt: QwenTranslator) -> None:
    out = mt.translate("你好，世界。", "zh", "en", max_new_tokens=8)
    assert isinstance(out, str)


@pytest.mark.parametrize("src,tgt", [("zh", "en"), ("en", "zh"), ("ja", "en"), ("ko", "en"),
                                     ("de", "en"), ("fr", "en"), ("es", "en")])
def test_language_pairs(mt: QwenTranslator, src: str, tgt: str) -> None:
    from streamst.languages import LANGUAGES

    text = mt.tokenizer.decode(list(mt.open_stream(src, tgt).prompt.head.keys))
    assert LANGUAGES[src] in text and LANGUAGES[tgt] in text


def test_unknown_language_is_a_user_error(mt: QwenTranslator) -> None:
    with pytest.raises(UserError):
        mt.open_stream("xx", "en")


def test_stream_memory_is_bounded(mt: QwenTranslator) -> None:
    small = QwenTranslator.from_loaded(mt.tokenizer, mt.model,
                                       replace(mt.options, max_source_tokens=8, max_target_tokens=8))
    stream = small.open_stream("zh", "en")
    fixed = len(stream.prompt.head.keys) + len(stream.prompt.tail.keys)
    long_src = SOURCE * 10
    committed = ""
    for i in range(5, len(long_src), 30):
        p = stream.propose(long_src[:i], committed, max_new_tokens=6)
        assert stream.cached_tokens <= fixed + 8 + 8 + 6
        committed = p.text
    assert stream.cached_tokens > len(stream.prompt.head.keys)
    stream.reset()
    assert stream.cached_tokens <= len(stream.prompt.head.keys)
    # after reset the static prefix is still served from the cache
    p = stream.propose("你好", "", max_new_tokens=2)
    assert p.reused_tokens == len(stream.prompt.head.keys)


def test_proposal_complete_is_false_only_when_cut_by_the_budget(mt: QwenTranslator) -> None:
    """The pipeline's partial-word guard relies on ``complete``; it was always True before."""
    from streamst.mt.kv import CachedDecoder, SegmentLM

    stream = mt.open_stream("zh", "en")
    cut = stream.propose(SOURCE, "", max_new_tokens=3)
    assert not cut.complete and cut.steps == 3
    segments = stream.prompt.build(SOURCE, "", max_source_tokens=512, max_target_tokens=512)
    first = CachedDecoder(mt.lm).decode(segments, max_new_tokens=1).token_ids[0]
    # the same model with its first greedy token declared a stop token: stops at once, complete
    stopping = SegmentLM(mt.model, mt.tokenizer, extra_stop_ids={first})
    out = CachedDecoder(stopping).decode(segments, max_new_tokens=8)
    assert out.complete and out.token_ids == () and out.text == ""
