"""Fun-ASR-Nano (SenseVoice SAN-M encoder -> Transformer adaptor -> Qwen3) through transformers.

``FunAsrNanoSpeech`` loads ``FunAsrNanoForConditionalGeneration`` (a hub id such as
``FunAudioLLM/Fun-ASR-Nano-2512-hf`` or a ``save_pretrained`` directory, one code path; FunASR's
own layout, as ``FunAudioLLM/Fun-ASR-MLT-Nano-2512`` is published, is converted once to that by
:mod:`streamst.e2e.funasr_layout`) and its tokenizer, and is shared by all sessions. The seam between speech and text is the model's own
``get_audio_features`` (encoder + adaptor); the projected frames enter the Qwen3 decoder as
prompt embeddings in place of the audio placeholder tokens, exactly where transformers'
``forward`` would scatter them::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n         <- static head,
    <|im_start|>user\\n{instruction, e.g. 语音翻译成英文：}                   cached per stream
    {T speech embeddings, one per 60 ms}                                     <- re-encoded per chunk
    <|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n             <- fixed suffix
    {committed target}{greedy continuation}                                  <- forced, then decoded

Features: the extractor's recipe (Kaldi fbank 80 x 25/10 ms hamming on unscaled samples,
LFR 7/6) computed with kaldi-native-fbank (:mod:`streamst.asr.features`), because
transformers' ``FunAsrNanoFeatureExtractor`` needs torchaudio, which does not load beside the
pinned CPU torch; ``tests/test_e2e.py`` checks the LFR stacking against the extractor's own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from streamst.asr.features import FeatureConfig, StreamingFeatures
from streamst.e2e.base import SpeechEmbeddings, Task
from streamst.e2e.funasr_layout import transformers_layout
from streamst.errors import UserError
from streamst.hf_load import Dtype, load_pretrained, resolve_dtype
from streamst.languages import LANGUAGES, TABLE
from streamst.mt.base import Proposal
from streamst.mt.decoder import DecoderEngine
from streamst.mt.kv import SegmentLM
from streamst.mt.prompt import PromptSegment, TokenSegment, encode_text
from streamst.sources import local_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Language names as the checkpoint's instructions spell them ("语音转写成中文：").
ZH_NAMES: dict[str, str] = {code: lang.zh for code, lang in TABLE.items() if lang.zh}
SYSTEM = "You are a helpful assistant."
_AUDIO_SLOT = "\x00streamst-audio\x00"
# Draft verification (NanoOptions.draft): an agreed draft position saves a decode forward, a
# rejected one costs a prefill row and an output-projection row (~1/4 of a forward at real size,
# int8). So the whole previous continuation (at most DRAFT_MAX) is verified while drafts agree
# at all, and a single probe token after a step where none of it agreed.
DRAFT_MAX = 32


@dataclass(frozen=True)
class NanoOptions:
    """How the end-to-end model is loaded and decodes. Override with ``dataclasses.replace``."""

    device: str = "cpu"
    dtype: Dtype = "auto"  # bfloat16 on CUDA, float32 on CPU
    kv_reuse: bool = True  # reuse the static prompt head's K/V between chunks
    max_target_tokens: int = 512  # committed-target tokens fed (the most recent ones)
    local_files_only: bool = False
    # "int8": dynamic int8 quantisation of every Linear (encoder, adaptor, decoder); CPU only
    quantize: Literal["none", "int8"] = "none"
    # verify the previous proposal of the stream as a draft in each step's prefill
    # (CachedDecoder.decode(draft=...)): the same greedy output in float (under int8 as stable as
    # KV reuse: dynamic activation scales depend on how positions are grouped), fewer forwards
    draft: bool = True


def instruction(task: Task, src_lang: str, tgt_lang: str, hotwords: Sequence[str] = ()) -> str:
    """The user-turn text before the speech: what to do with it (and hotwords to bias it)."""
    for lang in (src_lang, tgt_lang):
        if lang != "auto" and lang.split("-")[0] not in LANGUAGES:
            raise UserError(f"unsupported language {lang!r} for the end-to-end model (known: auto, {', '.join(LANGUAGES)})")
    if task == "transcribe":
        text = f"语音转写成{ZH_NAMES[src_lang]}：" if src_lang in ZH_NAMES else "语音转写："
    else:
        text = f"语音翻译成{ZH_NAMES.get(tgt_lang, LANGUAGES[tgt_lang.split('-')[0]])}："
    if hotwords:
        text = "热词列表：[" + ", ".join(hotwords) + "]\n" + text
    return text


@dataclass(frozen=True)
class AudioSegment:
    """Speech positions: precomputed projected embeddings, keyed by their encoding."""

    speech: SpeechEmbeddings

    @property
    def keys(self) -> tuple:
        key, n = self.speech.key, self.speech.embeds.shape[0]
        if self.speech.per_position:
            return tuple((key, i) for i in range(n))
        return tuple((key, n, i) for i in range(n))  # a re-encoding: every row may differ

    def embed(self, embedding: torch.nn.Module, start: int) -> torch.Tensor:
        w = embedding.weight
        return self.speech.embeds[start:].to(device=w.device, dtype=w.dtype)  # (T - start, hidden)


class SpeechPrompt:
    """ChatML prompt of one task as segments: static head, speech, fixed tail, forced target."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, task: Task, src_lang: str, tgt_lang: str,
                 hotwords: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": instruction(task, src_lang, tgt_lang, hotwords) + _AUDIO_SLOT}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
        head, tail = text.split(_AUDIO_SLOT)
        self.head = TokenSegment(tuple(encode_text(tokenizer, head, special=True)))
        self.tail = TokenSegment(tuple(encode_text(tokenizer, tail, special=True)))

    def target_ids(self, committed: str, cap: int) -> tuple[int, ...]:
        ids = encode_text(self.tokenizer, committed, special=False)
        return tuple(ids[-cap:]) if len(ids) > cap else tuple(ids)

    def build(self, speech: SpeechEmbeddings, committed: str, *, max_target_tokens: int) -> tuple[PromptSegment, ...]:
        return (self.head, AudioSegment(speech), self.tail, TokenSegment(self.target_ids(committed, max_target_tokens)))

    def input_ids(self, n_frames: int, audio_token_id: int, committed: str, *, max_target_tokens: int) -> list[int]:
        """The same prompt as token ids with ``n_frames`` audio placeholders (for ``generate``)."""
        return [*self.head.ids, *([audio_token_id] * n_frames), *self.tail.ids,
                *self.target_ids(committed, max_target_tokens)]


class FunAsrNanoSpeech:
    """A loaded Fun-ASR-Nano shared by all sessions (no per-stream state)."""

    frame_ms = 60

    def __init__(self, source: str | Path, options: NanoOptions = NanoOptions(), *, hint: str = "") -> None:
        self.options = options
        self.source = str(source)
        # FunASR's own layout (config.yaml + model.pt, as the hubs publish Fun-ASR-(MLT-)Nano-2512)
        # is converted once to a cached transformers-layout directory (e2e/funasr_layout.py)
        self.path = transformers_layout(self.source)
        self.tokenizer, self.model = _load(self.path, options, hint)
        self.lm = SegmentLM(self.model, self.tokenizer, options.device)
        self.engine: DecoderEngine = self.lm  # what runs the streams' decoders (vLLM: mt/vllm_engine.py)
        self.audio_token_id = int(self.model.config.audio_token_id)
        self.feature_config = _feature_config(self.path)
        self.hidden_size = int(self.model.config.text_config.hidden_size)

    # -- shared, stateless model calls ----------------------------------------------------
    def features(self, samples: np.ndarray) -> np.ndarray:
        """Kaldi fbank + LFR of a whole 16 kHz utterance, ``(T, 560)``, T = ceil(frames / 6)."""
        ident = (np.zeros(self.feature_config.dim, np.float32), np.ones(self.feature_config.dim, np.float32))
        feats = StreamingFeatures(ident, self.feature_config)
        parts = [feats.accept(np.asarray(samples, dtype=np.float32)), feats.finish()]
        return np.concatenate(parts) if any(p.shape[0] for p in parts) else np.zeros((0, self.feature_config.dim), np.float32)

    @torch.inference_mode()
    def encode(self, features: Sequence[np.ndarray], keys: Sequence[tuple]) -> list[SpeechEmbeddings]:
        """Batched encoder + adaptor (``get_audio_features``): one ``(T_i, hidden)`` per input."""
        if not features:
            return []
        lengths = [f.shape[0] for f in features]
        tmax, dim = max(lengths), features[0].shape[1]
        dev = self.lm.device
        x = torch.zeros(len(features), tmax, dim)  # (B, T, 560)
        mask = torch.zeros(len(features), tmax, dtype=torch.long)  # (B, T)
        for b, f in enumerate(features):
            x[b, : f.shape[0]] = torch.from_numpy(f)
            mask[b, : f.shape[0]] = 1
        out = self.model.get_audio_features(x.to(dev, self.model.dtype), mask.to(dev), return_dict=True)
        flat = out.pooler_output  # (sum T_i, hidden): valid positions only, batch-major
        chunks = torch.split(flat, lengths)
        return [SpeechEmbeddings(c, tuple(k)) for c, k in zip(chunks, keys)]

    def open_stream(self, task: Task, src_lang: str, tgt_lang: str, *, hotwords: Sequence[str] = (),
                    lm: DecoderEngine | None = None) -> NanoStream:
        """A per-session stream; ``lm``: the engine that runs its decoder (default:
        ``self.engine``; the server passes a :class:`~streamst.mt.batching.BatchedLM`)."""
        return NanoStream(self, SpeechPrompt(self.tokenizer, task, src_lang, tgt_lang, hotwords), lm=lm)

    @torch.inference_mode()
    def generate(self, samples: np.ndarray, task: Task, src_lang: str, tgt_lang: str, *, committed: str = "",
                 max_new_tokens: int = 128, hotwords: Sequence[str] = ()) -> str:
        """Offline reference: transformers' own ``generate`` on the whole utterance (audio
        placeholders in ``input_ids`` replaced by ``get_audio_features`` inside ``forward``),
        greedy, the target forced to start with ``committed``. Returns the continuation."""
        prompt = SpeechPrompt(self.tokenizer, task, src_lang, tgt_lang, hotwords)
        feats = self.features(samples)
        ids = prompt.input_ids(feats.shape[0], self.audio_token_id, committed,
                               max_target_tokens=self.options.max_target_tokens)
        dev = self.lm.device
        out = self.model.generate(
            input_ids=torch.tensor([ids], device=dev),
            input_features=torch.from_numpy(feats)[None].to(dev, self.model.dtype),
            input_features_mask=torch.ones(1, feats.shape[0], dtype=torch.long, device=dev),
            max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(self.lm.stop_ids),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = [t for t in out[0, len(ids):].tolist() if t not in self.lm.stop_ids]
        from streamst.mt.detok import IncrementalDetokenizer

        detok = IncrementalDetokenizer(self.lm.bytes)
        for t in new:
            detok.push(t)
        return detok.text


class NanoStream:
    """One session's decoding state for one task: a KV cache whose static head survives
    every chunk and utterance. Not thread-safe; one per session and task."""

    def __init__(self, model: FunAsrNanoSpeech, prompt: SpeechPrompt, *, lm: DecoderEngine | None = None) -> None:
        self.model, self.prompt = model, prompt
        self.decoder = (lm or model.engine).open_decoder(kv_reuse=model.options.kv_reuse)
        self._previous: tuple[int, ...] | None = None  # target + continuation ids of the last proposal
        self._draft_len = DRAFT_MAX  # adaptive: how many draft tokens the next step verifies

    @property
    def last(self):
        return self.decoder.last

    def reset(self) -> None:
        self.decoder.keep_prefix(self.prompt.head.keys)
        self._previous = None

    def extend(self, speech: SpeechEmbeddings) -> None:
        self.decoder.extend((self.prompt.head, AudioSegment(speech)))

    def propose(self, speech: SpeechEmbeddings, committed: str, *, max_new_tokens: int = 64) -> Proposal:
        segments = self.prompt.build(speech, committed, max_target_tokens=self.model.options.max_target_tokens)
        target = segments[-1].ids
        draft: tuple[int, ...] = ()
        prev = self._previous
        if self.model.options.draft and prev is not None and prev[: len(target)] == target:
            draft = prev[len(target):][: self._draft_len]  # the last proposal beyond what is now committed
        out = self.decoder.decode(segments, max_new_tokens=max_new_tokens, draft=draft)
        self._previous = (*target, *out.token_ids)
        offered, agreed = out.stats.draft_tokens, out.stats.draft_accepted
        if offered:  # some agreement: verify all of the next draft; none: probe with one token
            self._draft_len = DRAFT_MAX if agreed else 1
        return Proposal(text=committed + out.text, continuation=out.text, steps=out.steps,
                        reused_tokens=out.stats.reused_tokens, complete=out.complete)


def _feature_config(source: str) -> FeatureConfig:
    """LFR parameters from the directory's ``preprocessor_config.json`` (defaults otherwise)."""
    cfg = FeatureConfig(sample_scale=1.0)
    path = local_path(source)
    pre = path / "preprocessor_config.json" if path is not None else None
    if pre is not None and pre.is_file():
        raw = json.loads(pre.read_text(encoding="utf-8"))
        cfg = FeatureConfig(n_mels=int(raw.get("feature_size", 80)), frame_length_ms=float(raw.get("frame_length", 25)),
                            frame_shift_ms=float(raw.get("frame_shift", 10)), window=str(raw.get("window", "hamming")),
                            lfr_m=int(raw.get("num_frames_lfr", 7)), lfr_n=int(raw.get("stride_lfr", 6)), sample_scale=1.0)
    return cfg


def _load(source: str, options: NanoOptions, hint: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    from transformers import AutoConfig, AutoTokenizer, FunAsrNanoForConditionalGeneration

    how = hint or ("build one with `streamst models build --profile tiny`, or download the real model with "
                   f"`huggingface-cli download {source} --local-dir DIR`")
    lfo = options.local_files_only

    def load(src: str):
        config = AutoConfig.from_pretrained(src, local_files_only=lfo)
        if getattr(config, "model_type", None) != "fun_asr_nano":
            raise UserError(f"{src} is a {config.model_type!r} model, not fun_asr_nano (Fun-ASR-Nano)")
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=lfo)
        model = FunAsrNanoForConditionalGeneration.from_pretrained(
            src, config=config, dtype=resolve_dtype(options.dtype, options.device), local_files_only=lfo)
        return tokenizer, model

    tokenizer, model = load_pretrained(source, load, what="Fun-ASR-Nano model", hint=how)
    adaptor = model.config.adaptor_config
    if getattr(adaptor, "_attn_implementation", None) is None:  # transformers leaves this sub-config unset
        adaptor._attn_implementation = model.config._attn_implementation  # (the adaptor then warns and runs eager)
    model.to(options.device).eval()
    if options.quantize == "int8":
        from streamst.mt.qwen import quantize_int8

        model = quantize_int8(model, options.device)
    return tokenizer, model
