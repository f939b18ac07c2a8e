"""``streamst train`` from a fresh architecture with a pruned vocabulary and auxiliary CTC
(``--e2e-arch``, ``--prune-vocab``, ``--ctc-weight``): the pruned loss is the saved model's
full-vocabulary loss, the CTC head trains the encoder and leaves no trace in the saved model,
and the run's output loads with the unchanged inference code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch

from streamst.cli import main
from streamst.training.config import TrainConfig
from streamst.training.ctc import CtcUnits
from streamst.training.data import IGNORE, ExampleSet, build_examples, read_train_manifest
from streamst.training.trainer import NanoTrainer
from streamst.training.vocab import PrunedVocab


@pytest.fixture()
def manifest(spoken_manifest) -> Path:  # conftest: two spoken zh sentences
    return spoken_manifest


def test_pruned_vocab_maps_and_rejects_unknown_tokens() -> None:
    v = PrunedVocab([7, 3, 3, 151645], 151936)
    assert len(v) == 3 and v.n_other == 151936 - 3
    assert v.to_pruned(torch.tensor([[3, 7, 151645]])).tolist() == [[0, 1, 2]]
    assert v.to_pruned(torch.tensor([IGNORE, 7]), ignore=IGNORE).tolist() == [IGNORE, 1]
    with pytest.raises(ValueError, match="outside the kept"):
        v.to_pruned(torch.tensor([5]))


def test_ctc_units_number_the_transcripts_units_from_one() -> None:
    u = CtcUnits([("我们喝茶", "zh"), ("we drink tea", "en")])
    assert len(u) == 1 + 4 + 3  # blank + 4 characters + 3 words
    ids = u.encode("喝茶", "zh")
    assert len(ids) == 2 and 0 not in ids and ids != u.encode("我们", "zh")


@pytest.mark.parametrize("ctc_on", ["encoder", "adaptor"])
def test_pruned_loss_is_the_saved_models_full_vocabulary_loss(models_env, manifest, ctc_on) -> None:
    """Train-time loss with the pruned vocabulary == transformers' own loss of the expanded
    (saved) model; the CTC head's gradient reaches the encoder; the saved model has the full
    vocabulary, zero rows for pruned tokens, and none of the CTC head."""
    from streamst.e2e.funasr_nano import FunAsrNanoSpeech

    speech = FunAsrNanoSpeech(str(models_env / "store" / "tiny" / "funasr-nano"))
    items = read_train_manifest(manifest)
    names_before = set(speech.model.state_dict())
    units = CtcUnits([(it.source, it.src_lang) for it in items],
                     tokenizer=speech.tokenizer if ctc_on == "adaptor" else None)
    data = ExampleSet(speech, items, build_examples(items, 1, 0), max_target_tokens=256, im_end_id=151645,
                      units=units)
    vocab = PrunedVocab(data.token_ids() | set(units.tokens), 151936)
    cfg = TrainConfig(train=("encoder", "adaptor", "decoder"), lora_rank=0, ctc_weight=0.3, ctc_on=ctc_on)
    trainer = NanoTrainer(speech.model, cfg, vocab=vocab, ctc_classes=len(units), ctc_tokens=units.tokens)
    trainer.model.eval()
    head = trainer.ctc_tied if ctc_on == "adaptor" else trainer.ctc
    head.eval()
    batch = data.batch([0, 1])  # a whole utterance (CTC target) and its prefix pair (none)
    assert batch.ctc is not None and batch.ctc[0] and batch.ctc[1] is None
    ce, aux, n_units = trainer.objective(batch, reduction="mean")
    assert aux is not None and aux.item() > 0 and n_units == len(batch.ctc[0])
    (ce + aux).backward()
    enc = [p.grad for n, p in trainer.params if n.startswith("model.audio_tower.")]
    assert any(g is not None and g.abs().sum() > 0 for g in enc)
    head_params = [p for n, p in trainer.params if n.startswith(("ctc_head.", "ctc_tied_head."))]
    assert head_params and all(p.grad is not None for p in head_params)
    if ctc_on == "adaptor":  # the classifier is the decoder's embedding of the transcript's tokens
        emb = trainer.core.get_input_embeddings().weight
        src_rows = vocab.to_pruned(torch.tensor(units.tokens))
        assert emb.grad[src_rows].abs().sum() > 0
        src = items[0].source
        assert speech.tokenizer.decode([units.tokens[i - 1] for i in units.encode(src, "zh")]) == src
    model = trainer.merged()
    emb = model.model.language_model.embed_tokens.weight
    assert emb.shape[0] == 151936 and model.lm_head.weight is emb
    pruned = torch.ones(151936, dtype=torch.bool)
    pruned[vocab.kept] = False
    assert emb[pruned].abs().sum() == 0 and emb[vocab.kept].abs().sum() > 0
    assert set(model.state_dict()) == names_before  # no CTC head in what is saved
    samples, _ = sf.read(str(items[0].audio), dtype="float32")
    feats = torch.from_numpy(speech.features(samples))[None]
    with torch.no_grad():
        ref = model(input_ids=batch.input_ids[:1], input_features=feats,
                    input_features_mask=torch.ones(feats.shape[:2], dtype=torch.long),
                    attention_mask=batch.attention_mask[:1], labels=batch.labels[:1]).loss
        ours = trainer.loss(data.batch([0]))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_a_fresh_small_model_trains_with_ctc_and_loads(models_env, manifest, tmp_path) -> None:
    out = tmp_path / "m"
    args = ["train", str(manifest), "--profile", "tiny", "--out", str(out), "--train", "encoder,adaptor,decoder",
            "--lora-rank", "0", "--e2e-arch", "small", "--prune-vocab", "--ctc-weight", "0.3", "--steps", "3",
            "--batch-size", "2", "--prefix-pairs", "0", "--json"]
    assert main(args) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(r["ctc_loss"] > 0 for r in log)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 128 and config["text_config"]["vocab_size"] == 151936
    assert json.loads((out / "eval.json").read_text())["n"] == 2  # decoded by the inference code


def test_ctc_without_transcripts_or_encoder_is_refused(models_env, manifest, tmp_path, capsys) -> None:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    del rows[1]["source"]
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    base = ["--profile", "tiny", "--lora-rank", "0", "--steps", "1"]
    cases = [
        ([str(bare), "--out", str(tmp_path / "a"), "--train", "encoder,adaptor,decoder", "--ctc-weight", "0.3"],
         "need each utterance's transcript"),
        ([str(manifest), "--out", str(tmp_path / "b"), "--train", "adaptor,decoder", "--ctc-weight", "0.3"],
         "add encoder to --train"),
        ([str(manifest), "--out", str(tmp_path / "c"), "--train", "encoder,adaptor,decoder", "--e2e-arch", "huge"],
         "unknown architecture 'huge'"),
    ]
    for args, expect in cases:
        assert main(["train", *args, *base]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expect in err[0], err
    assert not any((tmp_path / n).exists() or (tmp_path / f"{n}.partial").exists() for n in "abc")
