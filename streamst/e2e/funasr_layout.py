"""Fun-ASR-Nano checkpoints in FunASR's own layout, read by the transformers loader.

The hubs publish Fun-ASR-Nano-2512 and Fun-ASR-MLT-Nano-2512 as FunASR writes them::

    config.yaml        model: FunASRNano; audio_encoder_conf (SenseVoiceEncoderSmall: output_size,
                       attention_heads, linear_units, num_blocks, tp_blocks, kernel_size),
                       audio_adaptor_conf (Transformer: downsample_rate, ffn_dim, llm_dim, n_layer,
                       attention_heads, default 8), llm_conf.init_param_path (the Qwen3 directory,
                       relative to the model directory), frontend_conf (fbank and LFR)
    model.pt           one torch state dict (bare, or under "state_dict" / "model") with FunASR's
                       parameter names: audio_encoder.*, audio_adaptor.*, llm.model.*, llm.lm_head.*,
                       and the CTC branch (ctc_decoder.*, ctc.*) the generation model does not use
    Qwen3-0.6B/        the LLM's config.json, generation_config.json and tokenizer files

:func:`transformers_layout` turns such a directory into what
``FunAsrNanoForConditionalGeneration.from_pretrained`` reads (``config.json``,
``model.safetensors``, tokenizer and processor files), once, into a cached directory under the
models folder (``converted/NAME-DIGEST``, the digest of the checkpoint's path, size and time), and
returns it; a directory already in the transformers layout is returned as it is. Every loader of
the model (the e2e model, the recogniser of asr kind ``fun-asr-nano``, the vLLM export) calls it,
so a profile may name either layout by hub id or directory.

The parameter names map one to one (:func:`to_transformers`), except the SAN-M encoder's fused
``linear_q_k_v``, which is split into ``q_proj``/``k_proj``/``v_proj`` (rows in that order), and
the encoder's two closing norms (``after_norm``, ``tp_norm``), which transformers keeps as the
``final_layernorm`` of the last transcription block and the last timestamp block.
:func:`to_funasr` is the inverse; tests build a FunASR-layout directory from a tiny transformers
model with it (:func:`write_funasr_layout`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

from streamst.errors import UserError

CONFIG_YAML, CHECKPOINT = "config.yaml", "model.pt"
# the parts of FunASRNano that generation uses; anything else (the CTC branch: ctc_decoder.*,
# ctc.*) is trained beside the LLM and skipped
MODULES = ("audio_encoder.", "audio_adaptor.", "llm.")
# inside one encoder or adaptor block: FunASR name -> transformers name
_BLOCK = (
    ("norm1.", "input_layernorm."),
    ("norm2.", "post_attention_layernorm."),
    ("self_attn.linear_q.", "self_attn.q_proj."),
    ("self_attn.linear_k.", "self_attn.k_proj."),
    ("self_attn.linear_v.", "self_attn.v_proj."),
    ("self_attn.linear_out.", "self_attn.o_proj."),
    ("self_attn.fsmn_block.", "self_attn.fsmn.conv."),
    ("feed_forward.w_1.", "mlp.fc1."),
    ("feed_forward.w_2.", "mlp.fc2."),
)
_FUSED = "self_attn.linear_q_k_v."
_TOWER, _PROJ = "model.audio_tower.layers.", "model.multi_modal_projector."
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "generation_config.json")


def is_funasr_layout(path: Path) -> bool:
    return (path / CONFIG_YAML).is_file() and (path / CHECKPOINT).is_file() and not (path / "config.json").is_file()


# -- parameter names ------------------------------------------------------------------------

def _block(rest: str) -> str:
    for old, new in _BLOCK:
        if rest.startswith(old):
            return new + rest[len(old):]
    raise KeyError(rest)


def to_transformers(state: Mapping[str, torch.Tensor], num_blocks: int, tp_blocks: int) -> dict[str, torch.Tensor]:
    """FunASR's state dict -> ``FunAsrNanoForConditionalGeneration``'s (``num_blocks``
    transcription blocks, ``encoders0`` included, and ``tp_blocks`` timestamp blocks)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(MODULES):
            continue
        try:
            if key.startswith("llm.model."):
                out["model.language_model." + key[len("llm.model."):]] = value
            elif key.startswith("llm.lm_head."):
                out["lm_head." + key[len("llm.lm_head."):]] = value
            elif m := re.match(r"audio_adaptor\.linear([12])\.(.+)", key):
                out[f"{_PROJ}linear_{m[1]}.{m[2]}"] = value
            elif m := re.match(r"audio_adaptor\.blocks\.(\d+)\.(.+)", key):
                out[f"{_PROJ}layers.{m[1]}.{_block(m[2])}"] = value
            elif m := re.match(r"audio_encoder\.(after_norm|tp_norm)\.(.+)", key):
                layer = num_blocks - 1 if m[1] == "after_norm" else num_blocks + tp_blocks - 1
                out[f"{_TOWER}{layer}.final_layernorm.{m[2]}"] = value
            elif m := re.match(r"audio_encoder\.(encoders0|encoders|tp_encoders)\.(\d+)\.(.+)", key):
                layer = {"encoders0": 0, "encoders": 1, "tp_encoders": num_blocks}[m[1]] + int(m[2])
                prefix = f"{_TOWER}{layer}."
                if m[3].startswith(_FUSED):  # rows: q, k, v
                    for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                        out[f"{prefix}self_attn.{name}_proj.{m[3][len(_FUSED):]}"] = part.contiguous()
                else:
                    out[prefix + _block(m[3])] = value
            else:
                raise KeyError(key)
        except KeyError:
            raise UserError(f"FunASR checkpoint parameter {key!r} has no place in Fun-ASR-Nano "
                            "(not a FunASRNano model.pt?)") from None
    return out


def to_funasr(state: Mapping[str, torch.Tensor], num_blocks: int, tp_blocks: int) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_transformers` (the CTC branch aside)."""
    back = {new: old for old, new in _BLOCK}
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}

    def block(rest: str) -> str:
        head = next(new for new in back if rest.startswith(new))
        return back[head] + rest[len(head):]

    for key, value in state.items():
        if key.startswith("model.language_model."):
            out["llm.model." + key[len("model.language_model."):]] = value
        elif key.startswith("lm_head."):
            out["llm." + key] = value
        elif m := re.match(r"model\.multi_modal_projector\.linear_([12])\.(.+)", key):
            out[f"audio_adaptor.linear{m[1]}.{m[2]}"] = value
        elif m := re.match(r"model\.multi_modal_projector\.layers\.(\d+)\.(.+)", key):
            out[f"audio_adaptor.blocks.{m[1]}.{block(m[2])}"] = value
        elif m := re.match(r"model\.audio_tower\.layers\.(\d+)\.(.+)", key):
            layer, rest = int(m[1]), m[2]
            if rest.startswith("final_layernorm."):
                norm = "after_norm" if layer == num_blocks - 1 else "tp_norm"
                out[f"audio_encoder.{norm}.{rest[len('final_layernorm.'):]}"] = value
                continue
            prefix = ("audio_encoder.encoders0.0." if layer == 0 else f"audio_encoder.encoders.{layer - 1}."
                      if layer < num_blocks else f"audio_encoder.tp_encoders.{layer - num_blocks}.")
            if q := re.match(r"self_attn\.([qkv])_proj\.(.+)", rest):
                fused.setdefault(f"{prefix}{_FUSED}{q[2]}", {})[q[1]] = value
            else:
                out[prefix + block(rest)] = value
        else:
            raise KeyError(key)
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


# -- directories ----------------------------------------------------------------------------

def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not readable YAML ({e})") from e


def _arch(cfg: dict, llm_dir: Path) -> dict:
    """The architecture table of :func:`streamst.builders.funasr_nano.nano_config` from a
    FunASR config.yaml and the Qwen3 config.json beside it."""
    enc, ada, fe = cfg.get("audio_encoder_conf") or {}, cfg.get("audio_adaptor_conf") or {}, cfg.get("frontend_conf") or {}
    if cfg.get("model", "FunASRNano") != "FunASRNano":
        raise UserError(f"config.yaml names model {cfg.get('model')!r}, not FunASRNano (Fun-ASR-Nano)")
    text = json.loads((llm_dir / "config.json").read_text(encoding="utf-8"))
    text.pop("architectures", None)
    text.pop("transformers_version", None)
    llm_dim = int(text["hidden_size"])
    blocks, tp = int(enc.get("num_blocks", 50)), int(enc.get("tp_blocks", 20))
    return dict(
        audio=dict(num_mel_bins=int(fe.get("n_mels", 80)), hidden_size=int(enc.get("output_size", 512)),
                   num_attention_heads=int(enc.get("attention_heads", 4)),
                   intermediate_size=int(enc.get("linear_units", 2048)), num_hidden_layers=blocks + tp,
                   num_timestamp_prediction_layers=tp, num_stacked_frames=int(fe.get("lfr_m", 7)),
                   fsmn_kernel_size=int(enc.get("kernel_size", 11))),
        adaptor=dict(hidden_size=llm_dim, num_attention_heads=int(ada.get("attention_heads", 8)),
                     intermediate_size=llm_dim // 4, num_hidden_layers=int(ada.get("n_layer", 2)),
                     projector_hidden_size=int(ada.get("ffn_dim", 2048))),
        text=text,
        initializer_range=float(text.get("initializer_range", 0.02)),
    )


def _preprocessor(cfg: dict) -> dict:
    from streamst.builders.funasr_nano import FEATURE_EXTRACTOR

    fe = cfg.get("frontend_conf") or {}
    return dict(FEATURE_EXTRACTOR, feature_size=int(fe.get("n_mels", 80)), sampling_rate=int(fe.get("fs", 16000)),
                frame_length=fe.get("frame_length", 25), frame_shift=fe.get("frame_shift", 10),
                num_frames_lfr=int(fe.get("lfr_m", 7)), stride_lfr=int(fe.get("lfr_n", 6)),
                window=str(fe.get("window", "hamming")))


def _llm_dir(src: Path, cfg: dict) -> Path:
    rel = str((cfg.get("llm_conf") or {}).get("init_param_path") or "Qwen3-0.6B")
    here = src / rel if not os.path.isabs(rel) else Path(rel)
    if not (here / "config.json").is_file():
        here = src / Path(rel).name  # an absolute path of the machine that trained it
    if not (here / "config.json").is_file():
        raise UserError(f"{src}: the LLM directory {rel!r} of config.yaml (llm_conf.init_param_path) "
                        "with its config.json is missing")
    return here


def _digest(src: Path) -> str:
    st = (src / CHECKPOINT).stat()
    h = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
    h.update((src / CONFIG_YAML).read_bytes())
    return h.hexdigest()[:16]


def converted_dir(src: Path, root: Path | None = None) -> Path:
    """Where the transformers layout of the FunASR-layout directory ``src`` is cached."""
    from streamst.profiles import models_dir

    name = next((p.split("--")[-1] for p in src.resolve().parts if p.startswith("models--")), src.name)
    return (root or models_dir()) / "converted" / f"{name}-{_digest(src)}"


def transformers_layout(source: str, *, root: Path | None = None, log=lambda s: None) -> str:
    """``source`` as the transformers loader should get it: a FunASR-layout directory is
    converted once (cached) and the converted directory returned; anything else as it is."""
    from streamst.sources import local_path

    src = local_path(source)
    if src is None:  # a hub id not in the local cache (a cached one arrives as its directory)
        src = _download_funasr_layout(source)
    if src is None or not is_funasr_layout(src):
        return source
    out = converted_dir(src, root)
    if (out / "config.json").is_file():
        return str(out)
    log(f"converting {src} from FunASR's layout to {out}")
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert(src, tmp)
        try:
            tmp.rename(out)  # atomic: a half-written conversion is never loaded
        except OSError:  # another process finished first
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def _download_funasr_layout(repo_id: str) -> Path | None:
    """The downloaded snapshot of hub repo ``repo_id`` when it holds FunASR's layout (a
    ``config.yaml`` and no ``config.json``); None for any other repo, offline, or no answer
    (transformers then loads the id itself, or says why it cannot)."""
    from streamst import hub as hubs

    if hubs.HUBS[hubs.HF].offline():
        return None
    try:
        import huggingface_hub as hf

        if not hf.file_exists(repo_id, CONFIG_YAML) or hf.file_exists(repo_id, "config.json"):
            return None
        return Path(hf.snapshot_download(repo_id))
    except Exception:  # noqa: BLE001 - unreachable hub, unknown repo: the ordinary loader reports it
        return None


def convert(src: Path, out: Path) -> None:
    """Write the transformers layout of the FunASR-layout directory ``src`` to ``out``."""
    from safetensors.torch import save_file

    from streamst.builders.funasr_nano import nano_config

    cfg = _read_yaml(src / CONFIG_YAML)
    llm = _llm_dir(src, cfg)
    arch = _arch(cfg, llm)
    raw = torch.load(src / CHECKPOINT, map_location="cpu", weights_only=True)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict", raw.get("model")), dict):
        raw = raw.get("state_dict", raw.get("model"))
    state = to_transformers(raw, arch["audio"]["num_hidden_layers"] - arch["audio"]["num_timestamp_prediction_layers"],
                            arch["audio"]["num_timestamp_prediction_layers"])
    config = nano_config(arch, torch.float32)
    if "lm_head.weight" not in state and "model.language_model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.language_model.embed_tokens.weight"]  # tied, stored once
    _check_complete(state, config, src)
    dtype = state["model.language_model.embed_tokens.weight"].dtype
    config.dtype = dtype
    seen: set[int] = set()
    for key, value in state.items():  # safetensors stores no shared tensors (tied embeddings)
        ptr = value.untyped_storage().data_ptr()
        state[key] = value.clone().contiguous() if ptr in seen else value.contiguous()
        seen.add(ptr)
    out.mkdir(parents=True)
    config.save_pretrained(out)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in _TOKENIZER_FILES:
        if (llm / name).is_file():
            shutil.copyfile(llm / name, out / name)
    (out / "preprocessor_config.json").write_text(json.dumps(_preprocessor(cfg), indent=2) + "\n", encoding="utf-8")
    from streamst.builders.funasr_nano import AUDIO_TOKEN

    processor = {"processor_class": "FunAsrNanoProcessor", "audio_token": AUDIO_TOKEN}
    (out / "processor_config.json").write_text(json.dumps(processor, indent=2) + "\n", encoding="utf-8")
    (out / "converted_from.json").write_text(json.dumps({"source": str(src.resolve()), "layout": "funasr"}) + "\n",
                                             encoding="utf-8")


def _check_complete(state: Mapping[str, torch.Tensor], config, src: Path) -> None:
    """Every parameter the model has, of its shape, is in ``state`` (transformers would
    otherwise initialise the missing ones at random and only warn)."""
    from transformers import FunAsrNanoForConditionalGeneration

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in FunAsrNanoForConditionalGeneration(config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or wrong:
        what = "; ".join(x for x in (f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else "",
                                     f"{len(wrong)} of another shape than config.yaml says ({', '.join(wrong[:3])})"
                                     if wrong else "") if x)
        raise UserError(f"{src / CHECKPOINT} does not fit its config.yaml as Fun-ASR-Nano: parameters {what}")


def write_funasr_layout(hf_dir: Path, out: Path, *, llm_name: str = "Qwen3-0.6B") -> None:
    """Write a transformers-layout Fun-ASR-Nano directory in FunASR's layout (``config.yaml``,
    ``model.pt`` with FunASR's names and a small stand-in of the CTC branch, the Qwen3
    directory): how tests make the hub's format offline from a tiny model."""
    import yaml
    from safetensors.torch import load_file

    hf_dir, out = Path(hf_dir), Path(out)
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    audio, ada, text = config["audio_config"], config["adaptor_config"], config["text_config"]
    pre = json.loads((hf_dir / "preprocessor_config.json").read_text(encoding="utf-8"))
    tp = int(audio["num_timestamp_prediction_layers"])
    blocks = int(audio["num_hidden_layers"]) - tp
    state = load_file(str(hf_dir / "model.safetensors"))
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.language_model.embed_tokens.weight"]
    funasr = to_funasr(state, blocks, tp)
    d = int(audio["hidden_size"])
    gen = torch.Generator().manual_seed(0)
    funasr["ctc_decoder.linear1.weight"] = torch.randn(d, d, generator=gen)
    funasr["ctc.ctc_lo.weight"] = torch.randn(8, d, generator=gen)
    yaml_cfg = {
        "model": "FunASRNano",
        "model_conf": {"lsm_weight": 0.1, "length_normalized_loss": True},
        "audio_encoder": "SenseVoiceEncoderSmall",
        "audio_encoder_conf": {"output_size": d, "attention_heads": int(audio["num_attention_heads"]),
                               "linear_units": int(audio["intermediate_size"]), "num_blocks": blocks,
                               "tp_blocks": tp, "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
                               "attention_dropout_rate": 0.1, "input_layer": "pe",
                               "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
                               "kernel_size": int(audio["fsmn_kernel_size"]), "sanm_shfit": 0,
                               "selfattention_layer_type": "sanm", "freeze": True},
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {"downsample_rate": 1, "use_low_frame_rate": True,
                               "ffn_dim": int(ada["projector_hidden_size"]), "llm_dim": int(ada["hidden_size"]),
                               "encoder_dim": d, "n_layer": int(ada["num_hidden_layers"]),
                               "attention_heads": int(ada["num_attention_heads"]), "freeze": True},
        "llm": "Qwen3-0.6b",
        "llm_conf": {"hub": "hf", "freeze": True, "llm_dtype": "bf16", "init_param_path": llm_name, "use_lora": False},
        "ctc_decoder": "Transformer",
        "detach_ctc_decoder": True,
        "ctc_decoder_conf": {"downsample_rate": 1, "ffn_dim": 2 * d, "llm_dim": d, "encoder_dim": d, "n_layer": 1},
        "frontend": "WavFrontend",
        "frontend_conf": {"fs": pre["sampling_rate"], "window": pre["window"], "n_mels": pre["feature_size"],
                          "frame_length": pre["frame_length"], "frame_shift": pre["frame_shift"],
                          "lfr_m": pre["num_frames_lfr"], "lfr_n": pre["stride_lfr"], "cmvn_file": None},
        "tokenizer": "HuggingfaceTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "init_param_path": llm_name},
    }
    llm = out / llm_name
    llm.mkdir(parents=True)
    (out / CONFIG_YAML).write_text(yaml.safe_dump(yaml_cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    torch.save({"state_dict": funasr}, out / CHECKPOINT)
    (out / "configuration.json").write_text(json.dumps({"framework": "pytorch", "task": "auto-speech-recognition",
                                                        "model": {"type": "funasr"}}) + "\n", encoding="utf-8")
    qwen = dict(text, architectures=["Qwen3ForCausalLM"], model_type="qwen3")
    (llm / "config.json").write_text(json.dumps(qwen, indent=2) + "\n", encoding="utf-8")
    for name in _TOKENIZER_FILES:
        if (hf_dir / name).is_file():
            shutil.copyfile(hf_dir / name, llm / name)
