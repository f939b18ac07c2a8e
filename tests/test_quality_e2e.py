"""``streamst bench quality --paths e2e`` (streamst/quality/e2e.py) on the tiny profile: the
rows come from the product's session in mode e2e (the same output as ``streamst eval``'s),
each lever changes what it names, and a translate-only e2e model gets no source transcript."""

from __future__ import annotations

import json
import shutil
from argparse import Namespace
from pathlib import Path

import pytest

from streamst.quality import e2e as qe

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def translate_profile(tiny_models_root) -> Path:
    src = tiny_models_root / "profiles" / "tiny.json"
    out = tiny_models_root / "profiles" / "tiny-translate.json"
    prof = json.loads(src.read_text(encoding="utf-8"))
    prof["name"] = "tiny-translate"
    out.write_text(json.dumps(prof), encoding="utf-8")
    qe.translate_only(out)
    return out


def test_translate_only_model_has_no_source_transcript(tiny_models_root, translate_profile, monkeypatch):
    from streamst.pipeline import PipelineConfig, TranslationSession

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy="wait-k", k=1)
    both = qe._models(str(tiny_models_root / "profiles" / "tiny.json"), "none", True, 1)
    only = qe._models(str(translate_profile), "none", True, 1)
    assert TranslationSession(both, cfg).e2e.source_stream is not None  # the default: a transcript too
    assert TranslationSession(only, cfg).e2e.source_stream is None
    assert json.loads(translate_profile.read_text())["e2e"]["tasks"] == ["translate"]


def test_e2e_rows_are_the_product_path(tiny_models_root, translate_profile, tmp_path, monkeypatch):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (the corpus is spoken with it; .ci/run installs it)")
    from streamst.commands.eval import merge, read_manifest, run_one
    from streamst.corpus.build import CorpusConfig, write_corpus
    from streamst.pipeline import PipelineConfig
    from streamst.quality.bench import Setting, _rows

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    corpus = tmp_path / "corpus"
    write_corpus(corpus, CorpusConfig(train=40, dev=0, test=2, structures=("svo",), lexicon_rows=4,
                                      directions=(("zh", "en"),), speak=("test",)), tts_cache=tmp_path / "tts")
    args = Namespace(e2e_corpus=str(corpus), e2e_profile=str(translate_profile), quick=True, threads=1,
                     max_new_tokens=16, e2e_chunk_ms=600, limit=1, directions="zh-en")
    chosen = [Setting("wait-k k=1", "policy", "wait-k", {"k": 1}),
              Setting("no draft", "lever", "wait-k", {"k": 1}, draft=False, lever="draft off"),
              Setting("no final-length bound", "lever", "wait-k", {"k": 1}, final_bound=False, lever="no bound")]
    report = qe.run_e2e(args, tmp_path, lambda c: _rows(c, args), lambda m: None, chosen)
    assert [s["name"] for s in report["settings"]] == [s.name for s in chosen] and report["items"] == 1
    row = report["utterances"][0]
    for s in report["settings"]:
        a = s["directions"]["zh-en"]["all"]
        assert a["n"] == 1 and a["LAAL"] is not None and a["LAAL_CA"] >= a["LAAL"], a
        if a["offline_chrF"]:  # chrF / offline chrF (both rounded to 2 decimals in the report)
            assert a["retention"] == pytest.approx(a["chrF"] / a["offline_chrF"], abs=2e-3)
        out = row[s["name"]]
        assert out["delays"] == sorted(out["delays"]) and all(d <= out["source_ms"] for d in out["delays"])
    # the bench's stream is `streamst eval`'s: same session, same chunks, same output
    line = next(ln for ln in read_manifest(corpus / "test.jsonl") if ln.id == row["id"])
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy="wait-k", chunk_ms=600, k=1)
    results, audio_ms = run_one(qe._models(str(translate_profile), "none", True, 1), line, cfg, 600)
    ev = merge(line, results, audio_ms, "e2e")
    assert (ev.prediction.strip(), ev.delays) == (row["wait-k k=1"]["prediction"], row["wait-k k=1"]["delays"])
    # draft verification gives the same greedy output in float; the bench's no-draft model decodes without it
    assert row["no draft"]["prediction"] == row["wait-k k=1"]["prediction"]
    assert not qe._models(str(translate_profile), "none", False, 1).e2e.options.draft


def test_lever_settings_cover_the_issue():
    names = {s.name: s for s in qe.e2e_settings()}
    assert {f"wait-k k={k}" for k in range(1, 6)} | {"local-agreement", qe.BASE} <= set(names)
    levers = [s for s in names.values() if s.group == "lever"]
    assert {(s.quantize, s.lean, s.draft, s.final_bound, s.overrides.get("lookahead")) for s in levers} == {
        ("int8", False, True, True, None), ("none", True, True, True, None), ("none", False, False, True, None),
        ("none", False, True, True, 1), ("none", False, True, True, 8), ("none", False, True, False, None)}
    assert all(s.policy == "reorder-aware" and s.overrides.get("k") == 2 for s in levers)  # all against BASE


def test_the_e2e_recipe_trains_two_stages_from_the_text_translator(tiny_models_root, tmp_path, monkeypatch):
    """:func:`ensure_e2e_model` with its stages shortened to 2 steps: stage 1 hears on the
    single-clause items only, stage 2 starts from stage 1 with the decoder of the text
    translator, the result is a translate-only profile, and a second call reuses the cache."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (the corpus is spoken with it; .ci/run installs it)")
    import torch
    from safetensors.torch import load_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from streamst.builders.funasr_nano import SMALL
    from streamst.builders.qwen import save_random
    from streamst.corpus.build import CorpusConfig, write_corpus

    monkeypatch.setenv("STREAMST_MODELS", str(tiny_models_root))
    corpus = tmp_path / "corpus"
    write_corpus(corpus, CorpusConfig(train=12, dev=0, test=0, structures=("svo", "two-clause"), lexicon_rows=4,
                                      directions=(("zh", "en"),), speak=("train", "dev")), tts_cache=tmp_path / "tts")
    mt = tmp_path / "mt"  # a stand-in for a `streamst train --task mt` folder of the small decoder's shape
    save_random(Qwen3ForCausalLM, Qwen3Config(**SMALL["text"]), torch.float32, 3, mt / "model")
    short = dict(steps=2, batch_size=2, warmup_steps=1)
    monkeypatch.setattr(qe, "E2E_STAGES", tuple({**s, **short} for s in qe.E2E_STAGES))
    profile = qe.ensure_e2e_model(tmp_path / "root", corpus, mt, lambda m: None)
    out = profile.parent
    stage1 = [json.loads(line) for line in (out / "stage1-train.jsonl").read_text().splitlines()]
    trained = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    assert stage1 and len(stage1) < len(trained) and all(r["structure"] != "two-clause" for r in stage1)
    prof = json.loads(profile.read_text())
    assert prof["e2e"]["tasks"] == ["translate"]
    assert Path(prof["e2e"]["source"]) == (out / "stage2" / "model").resolve()
    # stage 2's encoder is stage 1's (frozen); its decoder started from the text translator
    s1, s2 = (load_file(str(out / f"stage{n}" / "model" / "model.safetensors")) for n in (1, 2))
    enc = [k for k in s1 if k.startswith("model.audio_tower.")]
    assert enc and all(torch.equal(s1[k], s2[k]) for k in enc)
    text = load_file(str(mt / "model" / "model.safetensors"))
    layers = [k for k in text if k.startswith("model.layers.")]
    assert layers and all((s2["model.language_model." + k[len("model."):]] - text[k]).abs().max() < 0.05 for k in layers)
    before = (out / "stage2" / "model" / "model.safetensors").stat().st_mtime_ns
    assert qe.ensure_e2e_model(tmp_path / "root", corpus, mt, lambda m: None) == profile
    assert (out / "stage2" / "model" / "model.safetensors").stat().st_mtime_ns == before
