"""The real Fun-ASR-(MLT-)Nano checkpoint format (FunASR's layout: config.yaml, model.pt with
FunASR's parameter names, the Qwen3 directory) read through the profile's ordinary loaders.

A tiny transformers-layout model is written in FunASR's layout (the inverse name mapping), put
where the hub cache keeps ``FunAudioLLM/Fun-ASR-MLT-Nano-2512`` and in a plain directory; the
``multilingual`` profile's own asr/e2e entries load it (converted once, cached), and every
output equals the transformers-layout model it came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from streamst.builders.funasr_nano import build_tiny_mlt
from streamst.e2e.funasr_layout import CHECKPOINT, is_funasr_layout, to_funasr, to_transformers, write_funasr_layout
from streamst.errors import UserError
from streamst.profiles import PACKAGED_PROFILES, build_profile, load_profile

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread

REPO_ID = "FunAudioLLM/Fun-ASR-MLT-Nano-2512"


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """(transformers-layout dir, FunASR-layout dir inside a hub cache, that cache)."""
    root = tmp_path_factory.mktemp("funasr-layout")
    hf = root / "hf"
    build_tiny_mlt(hf, 0)
    cache = root / "hub-cache"
    snap = cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / "0123abcd"
    write_funasr_layout(hf, snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0123abcd")
    return hf, snap, cache


def test_written_layout_has_the_hub_files_and_funasr_names(layouts):
    _, snap, _ = layouts
    assert is_funasr_layout(snap) and (snap / "Qwen3-0.6B" / "config.json").is_file()
    assert (snap / "Qwen3-0.6B" / "tokenizer.json").is_file() and not (snap / "config.json").exists()
    keys = set(torch.load(snap / CHECKPOINT, weights_only=True)["state_dict"])
    for name in ("audio_encoder.encoders0.0.self_attn.linear_q_k_v.weight", "audio_encoder.encoders.0.norm1.weight",
                 "audio_encoder.tp_encoders.0.self_attn.fsmn_block.weight", "audio_encoder.after_norm.weight",
                 "audio_encoder.tp_norm.bias", "audio_adaptor.linear1.weight", "audio_adaptor.blocks.0.self_attn.linear_q.bias",
                 "audio_adaptor.blocks.0.feed_forward.w_2.weight", "llm.model.embed_tokens.weight", "llm.lm_head.weight",
                 "ctc_decoder.linear1.weight"):
        assert name in keys, name
    assert not any(k.startswith("model.") for k in keys)


def test_name_mapping_round_trips_and_refuses_strangers():
    state = {"audio_encoder.encoders0.0.self_attn.linear_q_k_v.weight": torch.arange(12.0).reshape(6, 2),
             "audio_encoder.encoders.3.feed_forward.w_1.bias": torch.ones(2),
             "audio_encoder.tp_encoders.1.norm2.weight": torch.ones(2),
             "audio_encoder.after_norm.weight": torch.zeros(2), "audio_encoder.tp_norm.weight": torch.zeros(2),
             "audio_adaptor.blocks.1.self_attn.linear_out.weight": torch.eye(2),
             "llm.model.norm.weight": torch.ones(2), "ctc.ctc_lo.weight": torch.ones(2)}
    hf = to_transformers(state, num_blocks=5, tp_blocks=2)
    assert torch.equal(hf["model.audio_tower.layers.0.self_attn.k_proj.weight"], torch.arange(4.0, 8.0).reshape(2, 2))
    assert "model.audio_tower.layers.4.mlp.fc1.bias" in hf  # encoders.3 follows encoders0
    assert "model.audio_tower.layers.6.post_attention_layernorm.weight" in hf  # tp_encoders.1 after 5 blocks
    assert "model.audio_tower.layers.4.final_layernorm.weight" in hf and "model.audio_tower.layers.6.final_layernorm.weight" in hf
    assert "model.multi_modal_projector.layers.1.self_attn.o_proj.weight" in hf and "model.language_model.norm.weight" in hf
    assert not any("ctc" in k for k in hf)
    back = to_funasr(hf, num_blocks=5, tp_blocks=2)
    assert set(back) == set(state) - {"ctc.ctc_lo.weight"}
    assert all(torch.equal(back[k], state[k]) for k in back)
    assert to_transformers({"decoder.embed.weight": torch.ones(1)}, 5, 2) == {}  # not a part generation uses
    with pytest.raises(UserError, match="audio_encoder.embed.weight"):
        to_transformers({"audio_encoder.embed.weight": torch.ones(1)}, 5, 2)


def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line(layouts, tmp_path):
    from streamst.e2e.funasr_layout import convert

    _, snap, _ = layouts
    bad = tmp_path / "bad"
    shutil.copytree(snap, bad)
    state = torch.load(bad / CHECKPOINT, weights_only=True)["state_dict"]
    del state["audio_encoder.tp_norm.weight"]
    torch.save({"state_dict": state}, bad / CHECKPOINT)
    with pytest.raises(UserError, match=r"1 missing \(model.audio_tower.layers.3.final_layernorm.weight\)"):
        convert(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _profile(tmp: Path, source: str) -> Path:
    """The multilingual profile's own asr and e2e entries (source replaced only for the
    directory case), with the tiny Qwen and an energy VAD beside them."""
    raw = json.loads((PACKAGED_PROFILES / "multilingual.json").read_text(encoding="utf-8"))
    raw["name"] = "multilingual-test"
    raw["asr"]["source"] = raw["e2e"]["source"] = source
    raw["vad"] = {"kind": "energy-vad", "source": ""}
    raw["mt"] = {"kind": "qwen", "source": "store:tiny/qwen", "build": "qwen-tiny"}
    path = tmp / f"{abs(hash(source))}.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize("how", ["hub id", "directory"])
def test_profile_loads_the_funasr_layout_with_equal_outputs(layouts, tmp_path, monkeypatch, how):
    from streamst.e2e.funasr_nano import FunAsrNanoSpeech
    from streamst.asr.nano import NanoRecognizer
    from streamst.loading import Models

    hf, snap, cache = layouts
    models_root = tmp_path / "models"
    monkeypatch.setenv("STREAMST_MODELS", str(models_root))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = load_profile(str(_profile(tmp_path, REPO_ID if how == "hub id" else str(snap))))
    assert profile.e2e.source == (REPO_ID if how == "hub id" else str(snap))
    build_profile(profile, root=models_root)
    models = Models(profile, root=models_root)

    speech = models.e2e
    assert Path(speech.path).parent == models_root / "converted"
    assert json.loads((Path(speech.path) / "converted_from.json").read_text())["source"] == str(snap.resolve())
    reference = FunAsrNanoSpeech(str(hf))

    rng = np.random.default_rng(7)
    samples = (rng.standard_normal(16000) * 3000).astype(np.float32)
    feats = reference.features(samples)
    assert np.array_equal(feats, speech.features(samples))
    ours, theirs = speech.encode([feats], [("u",)])[0], reference.encode([feats], [("u",)])[0]
    assert torch.equal(ours.embeds, theirs.embeds)
    for lang in ("th", "de"):
        text = speech.generate(samples, "transcribe", lang, lang, max_new_tokens=6)
        assert text and text == reference.generate(samples, "transcribe", lang, lang, max_new_tokens=6)

    asr = models.asr  # the recogniser shares the converted e2e checkpoint
    assert asr.speech is speech
    window = feats[:12]
    mine = asr.recognize([window], "vi")[0]
    ref = NanoRecognizer(reference, profile.asr.hears).recognize([window], "vi")[0]
    assert [t.id for t in mine.tokens] == [t.id for t in ref.tokens] and mine.tokens
    assert mine.language == ref.language == "vi"

    # converted once: a second load reuses the cached directory
    stamp = (Path(speech.path) / "model.safetensors").stat().st_mtime_ns
    again = FunAsrNanoSpeech(speech.source if how == "directory" else str(snap))
    assert again.path == speech.path and (Path(again.path) / "model.safetensors").stat().st_mtime_ns == stamp


def test_vllm_export_reads_the_funasr_layout(layouts, tmp_path, monkeypatch):
    """`streamst engine start` writes the e2e decoder from a FunASR-layout checkpoint too."""
    from safetensors.torch import load_file

    from streamst.mt.vllm_engine import export_e2e_decoder

    hf, snap, _ = layouts
    monkeypatch.setenv("STREAMST_MODELS", str(tmp_path / "models"))
    out = export_e2e_decoder(snap, tmp_path / "decoder")
    ours = load_file(str(out / "model.safetensors"))
    theirs = load_file(str(hf / "model.safetensors"))
    assert torch.equal(ours["model.embed_tokens.weight"], theirs["model.language_model.embed_tokens.weight"])
    assert json.loads((out / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]


def test_the_published_config_yaml_gives_the_real_architecture(tmp_path):
    """config.yaml as Fun-ASR-Nano-2512 publishes it (its encoder, adaptor and frontend keys;
    the Qwen3-0.6B directory beside it) -> exactly the architecture of the transformers port."""
    import yaml

    from streamst.builders.funasr_nano import QWEN3_0_6B, REAL
    from streamst.e2e.funasr_layout import _arch, _llm_dir, _read_yaml

    cfg = {"model": "FunASRNano",
           "audio_encoder": "SenseVoiceEncoderSmall",
           "audio_encoder_conf": {"output_size": 512, "attention_heads": 4, "linear_units": 2048, "num_blocks": 50,
                                  "tp_blocks": 20, "kernel_size": 11, "sanm_shfit": 0, "normalize_before": True},
           "audio_adaptor": "Transformer",
           "audio_adaptor_conf": {"downsample_rate": 1, "use_low_frame_rate": True, "ffn_dim": 2048, "llm_dim": 1024,
                                  "encoder_dim": 512, "n_layer": 2},
           "llm": "Qwen3-0.6b", "llm_conf": {"hub": "hf", "init_param_path": "Qwen3-0.6B", "llm_dtype": "bf16"},
           "tokenizer_conf": {"init_param_path": "${llm_conf.init_param_path}"},
           "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                             "lfr_m": 7, "lfr_n": 6}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    (tmp_path / "Qwen3-0.6B").mkdir()
    (tmp_path / "Qwen3-0.6B" / "config.json").write_text(json.dumps(dict(QWEN3_0_6B, model_type="qwen3")))
    raw = _read_yaml(tmp_path / "config.yaml")
    arch = _arch(raw, _llm_dir(tmp_path, raw))
    assert arch["audio"] == {k: v for k, v in REAL["audio"].items() if k != "max_position_embeddings"}
    assert arch["adaptor"] == REAL["adaptor"]
    assert arch["text"]["hidden_size"] == 1024 and arch["text"]["num_hidden_layers"] == 28
