"""CI regression guard: a small decoder trained here on the reordering corpus must translate
held-out sentences (new combinations) above a calibrated chrF floor, offline and through the
simul path (oracle transcript). A change that breaks training, the prompt, decoding or the
policy driver drops it far below the floor (docs/quality.md shows it failing on a broken
decoder)."""

from __future__ import annotations

import pytest
import torch

from streamst.corpus.build import CorpusConfig, generate, items
from streamst.training import text_mt

# Calibrated on this recipe (docs/quality.md): offline chrF 89.0 and simul wait-k 3 chrF 65.4
# (training is deterministic on a given machine); the floors leave room for float differences
# between machines. A decoder broken to take the second-best token fails both.
OFFLINE_FLOOR = 80.0
SIMUL_FLOOR = 60.0


@pytest.fixture(scope="module")
def guard_model(tmp_path_factory, tiny_models_root):
    import json

    root = tmp_path_factory.mktemp("guard")
    splits = generate(CorpusConfig(train=500, dev=10, test=24, seed=5, structures=("svo", "svo-tp", "ba"),
                                  lexicon_rows=8))
    for name in ("train", "test"):
        rows = items(splits[name], name, (("zh", "en"),))
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                            encoding="utf-8")
    cfg = text_mt.TextMTConfig(arch=(64, 2), steps=1000, batch_size=16, prefix_pairs=1, seed=0, eval_limit=24)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STREAMST_MODELS", str(tiny_models_root))
        torch.set_num_threads(1)  # tiny matmuls: threads only contend
        summary = text_mt.train(root / "train.jsonl", "tiny", root / "mt", cfg, eval_manifest=root / "test.jsonl")
    return root, summary


def test_trained_decoder_translates_held_out_sentences(guard_model):
    _, summary = guard_model
    assert summary["loss_last"] < summary["loss_first"] / 4
    print(f"quality guard: offline chrF {summary['eval']['chrF']} (floor {OFFLINE_FLOOR})")
    assert summary["eval"]["chrF"] >= OFFLINE_FLOOR, summary["eval"]


def test_simul_path_keeps_most_of_it(guard_model):
    from streamst.corpus.build import read_items
    from streamst.metrics.quality import chrf
    from streamst.mt.qwen import QwenOptions, QwenTranslator
    from streamst.pipeline import PipelineConfig
    from streamst.quality.oracle import run_item

    root, _ = guard_model
    tr = QwenTranslator(str(root / "mt" / "model"), QwenOptions(local_files_only=True))
    rows = read_items(root / "test.jsonl")[:12]
    hyps = []
    for r in rows:
        times = [[300.0 * i, 300.0 * (i + 1)] for i in range(len(r["words"]))]  # a word every 300 ms
        cfg = PipelineConfig.create("zh", "en", mode="simul", policy="wait-k", k=3)
        out = run_item(tr, cfg, r["words"], times, times[-1][1])
        assert out.delays == sorted(out.delays) and len(out.delays) == len(out.prediction.split())
        hyps.append(out.prediction)
    score = chrf(hyps, [r["reference"] for r in rows])
    print(f"quality guard: simul wait-k 3 chrF {score:.2f} (floor {SIMUL_FLOOR})")
    assert score >= SIMUL_FLOOR


def test_shared_prompt_head_gives_the_per_row_loss(tiny_models_root, tmp_path):
    """The prompt head run once per batch (its K/V repeated) computes the same loss as
    running head + row for every row; the pruned loss equals the full-vocabulary one."""
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    src = tiny_models_root / "store" / "tiny" / "qwen"
    tok = AutoTokenizer.from_pretrained(src)
    base = Qwen3ForCausalLM.from_pretrained(src)
    splits = generate(CorpusConfig(train=40, dev=1, test=1, seed=2, lexicon_rows=8))
    pairs = [text_mt.Pair("zh", "en", s.text("zh"), s.text("en"), tuple(s.words("zh"))) for s in splits["train"][:6]]
    data = text_mt.Encoded(tok, text_mt.examples(pairs, 1, 0), tok.convert_tokens_to_ids("<|im_end|>"))
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(text_mt._config(base.config, (64, 2), len(data.kept)))
    batch = data.batch(list(range(len(data.rows))), 0)
    n_other = base.config.vocab_size - len(data.kept)
    shared, _ = text_mt.pruned_loss(model, *batch, n_other, shared=True)
    per_row, _ = text_mt.pruned_loss(model, *batch, n_other, shared=False)
    assert abs(float(shared) - float(per_row)) < 1e-4
    # the full model (pruned rows zero) gives the same cross-entropy over all 151,936 tokens
    text_mt.expand(model, data.kept, base.config.vocab_size, model.config).save_pretrained(tmp_path / "full")
    full = Qwen3ForCausalLM.from_pretrained(tmp_path / "full")  # as the inference code loads it
    head, ids, labels, att = batch
    full_ids = torch.cat([data.kept[head][None].expand(ids.shape[0], -1), data.kept[ids]], dim=1)
    full_att = torch.cat([torch.ones(ids.shape[0], head.numel(), dtype=att.dtype), att], dim=1)
    logits = full(input_ids=full_ids, attention_mask=full_att).logits[:, head.numel():][:, :-1]
    shifted = labels[:, 1:]
    keep = shifted != -100
    ce = torch.nn.functional.cross_entropy(logits[keep], data.kept[shifted[keep]])
    assert abs(float(ce) - float(shared)) < 1e-3
