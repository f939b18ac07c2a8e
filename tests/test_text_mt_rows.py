"""``streamst train --task mt`` training rows: prefix pairs do not end the translation, and
source-continuation rows are the exact prompt ``QwenTranslator.predict_source`` samples under."""

from __future__ import annotations

import torch

from streamst.corpus.build import CorpusConfig, generate
from streamst.training import text_mt


def _data(tiny_models_root, source_lm: float):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models_root / "store" / "tiny" / "qwen")
    splits = generate(CorpusConfig(train=40, dev=1, test=1, seed=2, lexicon_rows=8))
    pairs = [text_mt.Pair("zh", "en", s.text("zh"), s.text("en"), tuple(s.words("zh"))) for s in splits["train"][:8]]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    exs = text_mt.examples(pairs, 1, 0, source_lm)
    return tok, pairs, exs, text_mt.Encoded(tok, exs, im_end), im_end


def test_prefix_pairs_do_not_end_and_whole_pairs_do(tiny_models_root):
    tok, pairs, exs, data, im_end = _data(tiny_models_root, 0.0)
    assert len(pairs) < len(exs) <= 2 * len(pairs)
    for (p, src, tgt), (_, seq, start) in zip(exs, data.rows):
        last = int(data.kept[seq[-1]])
        whole = src == p.source and tgt == p.reference
        assert (last == im_end) == whole, (src, tgt)
        assert tgt and len(seq) > start  # every row has target tokens to learn


def test_source_rows_are_the_continuation_prompt(tiny_models_root):
    from streamst.mt.prompt import encode_text

    tok, pairs, exs, data, im_end = _data(tiny_models_root, 1.0)
    lm = [i for i, (p, _, _) in enumerate(exs) if p.tgt_lang == text_mt.SOURCE_LM]
    assert len(lm) == len(pairs)  # one per source sentence
    key = ("zh", text_mt.SOURCE_LM)
    assert sorted(data.by_direction[key]) == lm
    for i in lm:
        p, src, _ = exs[i]
        _, seq, start = data.rows[i]
        # predict_source feeds tokenizer(source) with no chat template and no BOS
        plain = tok(src, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert [int(data.kept[t]) for t in seq] == plain + [im_end] == encode_text(tok, src, special=False) + [im_end]
        assert start == 1
    head, ids, labels, att = data.batch(lm[:3], 0)
    assert head.numel() == 0 and (labels[:, 0] == text_mt.IGNORE).all() and (labels[:, 1] != text_mt.IGNORE).all()
    # an empty head takes the per-row path; the loss is finite and has a gradient
    from transformers import AutoConfig, Qwen3ForCausalLM

    base = AutoConfig.from_pretrained(tiny_models_root / "store" / "tiny" / "qwen")
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(text_mt._config(base, (64, 1), len(data.kept)))
    loss, n = text_mt.pruned_loss(model, head, ids, labels, att, base.vocab_size - len(data.kept))
    loss.backward()
    assert torch.isfinite(loss) and n == int((labels[:, 1:] != text_mt.IGNORE).sum()) > 0
