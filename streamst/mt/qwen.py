"""Simultaneous text translation with a Qwen3 (or Qwen2.5) instruct model.

``QwenTranslator`` is loaded once per process (``QwenTranslator(source, options)``, the same
``AutoTokenizer`` / ``AutoModelForCausalLM`` path a user takes with a hub id or a local
directory) and holds no per-stream state. ``open_stream`` returns a ``QwenStream`` that owns
one utterance's KV cache (:class:`streamst.mt.kv.CachedDecoder`).

One ``propose`` step::

    <|im_start|>system\\n{instruction naming the languages}<|im_end|>\\n    <- static prefix
    <|im_start|>user\\n{source prefix}                                       <- grows at its end
    <|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n           <- fixed suffix
    {committed target}                                                      <- forced, never regenerated
    {greedy continuation ... until <|im_end|> / eos / max_new_tokens}

As the source grows at the end of the user turn, each step recomputes the last source
token(s), the new source tokens, the ~9-token suffix and the committed target; the system
prompt and the unchanged source are served from the cache. Prompt segments, the KV cache and
detokenisation live in :mod:`streamst.mt.prompt`, :mod:`streamst.mt.kv` and
:mod:`streamst.mt.detok`, shared with the end-to-end decoder (:mod:`streamst.e2e`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from streamst.errors import UserError
from streamst.hf_load import load_pretrained, resolve_dtype
from streamst.languages import LANGUAGES
from streamst.mt.base import Proposal
from streamst.mt.decoder import Decoder, DecoderEngine
from streamst.mt.kv import SegmentLM
from streamst.mt.prompt import PromptSegment, TokenSegment, encode_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

_SOURCE_SLOT = "\x00streamst-source\x00"  # placeholder split out of the rendered template


@dataclass(frozen=True)
class QwenOptions:
    """How the Qwen translator is loaded and decodes. Override with ``dataclasses.replace``."""

    # "cpu", "cuda", "cuda:1", ...
    device: str = "cpu"
    # "auto": bfloat16 on CUDA, float32 on CPU (CPU bf16 matmuls are slow without AMX).
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Reuse the KV cache of the common prompt prefix between steps. False recomputes the
    # whole prompt every step (the reference the benchmark compares against).
    kv_reuse: bool = True
    # Per-stream memory bound: at most this many source tokens (the most recent ones) and
    # committed-target tokens (the most recent ones) are fed. An utterance that long means
    # the segmenter failed to reset; the bound keeps the cache finite anyway.
    max_source_tokens: int = 512
    max_target_tokens: int = 512
    # predict_source with n > 1: top-k sampling from a generator seeded with ``seed``.
    predict_top_k: int = 20
    seed: int = 0
    # Never touch the network (transformers ``local_files_only``).
    local_files_only: bool = False
    # "int8": torch dynamic int8 quantisation of every Linear (CPU only; weights int8,
    # activations quantised per call). Changes greedy outputs slightly: `streamst bench
    # dtype` measures speed and agreement with float32.
    quantize: Literal["none", "int8"] = "none"
    # How logits are made (``SegmentLM`` ``head``): "auto" runs the decoder stack and the
    # output projection directly (a transposed copy of a small projection on CPU; same
    # logits up to rounding); "model" calls the causal LM's own forward.
    head: Literal["auto", "model"] = "auto"


class PromptBuilder:
    """ChatML translation prompts for one language pair, as segments.

    The chat template is rendered once with a placeholder for the source; the text around
    it is tokenized once (special tokens parsed). Source and target text are tokenized on
    their own with special-token strings split, so no input text can forge a control token.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, src_lang: str, tgt_lang: str):
        self.tokenizer = tokenizer
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        src, tgt = _language_name(src_lang), _language_name(tgt_lang)
        system = (
            f"You are a simultaneous interpreter. Translate the user's {src} text into {tgt}. "
            f"The {src} text may be an unfinished prefix of a sentence: translate only what "
            f"it says so far. Reply with the {tgt} translation only."
        )
        self.system = system
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": _SOURCE_SLOT},
        ]
        # enable_thinking=False: Qwen3's template then opens the assistant turn with an empty
        # think block; other templates ignore the extra variable.
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
        )
        head, tail = text.split(_SOURCE_SLOT)
        # the rendered text around the source (an HTTP backend sends the prompt as text)
        self.head_text, self.tail_text = head, tail
        self.head = TokenSegment(tuple(encode_text(tokenizer, head, special=True)))  # system + user header
        self.tail = TokenSegment(tuple(encode_text(tokenizer, tail, special=True)))  # end of user + assistant header

    def source_ids(self, source: str, cap: int) -> tuple[int, ...]:
        """Token ids of ``source``, the last ``cap`` of them."""
        ids = encode_text(self.tokenizer, source, special=False)
        return tuple(ids[-cap:]) if len(ids) > cap else tuple(ids)

    def target_ids(self, committed: str, cap: int) -> tuple[int, ...]:
        """Token ids of the committed target, the last ``cap`` of them."""
        ids = encode_text(self.tokenizer, committed, special=False)
        return tuple(ids[-cap:]) if len(ids) > cap else tuple(ids)

    def build(
        self, source: str, committed: str, *, max_source_tokens: int, max_target_tokens: int
    ) -> tuple[PromptSegment, ...]:
        """The prompt for ``source`` with the assistant turn forced to start with ``committed``.

        End-to-end mode replaces the source ``TokenSegment`` here with an encoder segment.
        """
        return (
            self.head,
            TokenSegment(self.source_ids(source, max_source_tokens)),
            self.tail,
            TokenSegment(self.target_ids(committed, max_target_tokens)),
        )


class QwenTranslator:
    """A loaded Qwen instruct model shared by all sessions (no per-stream state).

    ``QwenTranslator(source, options, hint=...)`` loads ``source``: a hub id
    (``Qwen/Qwen3-1.7B``) or a local ``save_pretrained`` directory, through
    ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` as a user would. A missing
    directory, or a hub id neither cached nor reachable, raises
    :class:`~streamst.errors.ModelNotFoundError` with one line naming the model and how to
    get it (``hint``, from the profile).
    """

    def __init__(self, source: str | Path, options: QwenOptions = QwenOptions(), *, hint: str = ""):
        tokenizer, model = _load(str(source), options, hint)
        self._setup(tokenizer, model, options, str(source))

    @classmethod
    def from_loaded(
        cls, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, options: QwenOptions = QwenOptions()
    ) -> QwenTranslator:
        """Wrap an already loaded tokenizer/model (e.g. the same weights with other options)."""
        self = cls.__new__(cls)
        self._setup(tokenizer, model, options, getattr(model, "name_or_path", "qwen"))
        return self

    def _setup(self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, options: QwenOptions, name: str) -> None:
        self.tokenizer, self.model, self.options, self.name = tokenizer, model, options, name
        self.lm = SegmentLM(model, tokenizer, options.device, head=options.head)
        self.engine: DecoderEngine = self.lm  # what runs the streams' decoders (vLLM: mt/vllm_engine.py)

    def open_stream(self, src_lang: str, tgt_lang: str, *, lm: DecoderEngine | None = None) -> QwenStream:
        """A new per-session decoding state for ``src_lang`` -> ``tgt_lang``. ``lm``: the engine
        that runs its decoder (default: ``self.engine``; the server passes a
        :class:`~streamst.mt.batching.BatchedLM` of the same model, batching sessions)."""
        return QwenStream(self, PromptBuilder(self.tokenizer, src_lang, tgt_lang), lm=lm)

    def translate(self, source: str, src_lang: str, tgt_lang: str, *, max_new_tokens: int = 256) -> str:
        """Whole-sentence translation with the same prompt (the cascade's offline reference)."""
        return self.open_stream(src_lang, tgt_lang).propose(source, "", max_new_tokens=max_new_tokens).text

    def predict_source(self, source: str, n: int, *, max_new_tokens: int = 8,
                       decoder: Decoder | None = None) -> list[str]:
        """``n`` continuations of ``source`` as plain text (no chat template).

        ``n == 1``: greedy. ``n > 1``: top-k sampling (``options.predict_top_k``) from a
        generator seeded with ``options.seed``, so results are reproducible; duplicates
        are kept (their multiplicity is the model's confidence). Each string holds whole
        characters only. ``decoder``: a stream's decoder to reuse the source prefix from
        (the results are the same as without).
        """
        if n < 1:
            return []
        o = self.options
        ids = self.tokenizer(source, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = ids[-o.max_source_tokens :] or [self._bos_id()]
        dec = decoder if decoder is not None else self.engine.open_decoder(kv_reuse=False)
        return dec.sample([TokenSegment(tuple(ids))], n, max_new_tokens=max_new_tokens, top_k=o.predict_top_k,
                          seed=o.seed)

    def _bos_id(self) -> int:
        tid = self.tokenizer.bos_token_id
        if tid is None:
            tid = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return int(tid)


class QwenStream:
    """One session's simultaneous decoding state: a KV cache and the keys it holds.

    Not thread-safe; one stream per session. Memory is bounded by the token caps of
    :class:`QwenOptions` plus ``max_new_tokens``; ``reset()`` crops the cache back to the
    static system-prompt prefix at each utterance boundary.
    """

    def __init__(self, translator: QwenTranslator, prompt: PromptBuilder, *, lm: DecoderEngine | None = None):
        self.translator, self.prompt = translator, prompt
        self.options = translator.options
        engine = lm or translator.engine
        self.decoder = engine.open_decoder(kv_reuse=self.options.kv_reuse)
        self._predict = engine.open_decoder(kv_reuse=self.options.kv_reuse)  # plain-source prompts

    @property
    def cached_tokens(self) -> int:
        """Number of positions currently held in the KV cache."""
        return self.decoder.cached_tokens

    @property
    def last(self):
        """:class:`~streamst.mt.kv.StepStats` of the last ``propose`` (None after reset)."""
        return self.decoder.last

    def reset(self) -> None:
        """Forget the utterance: keep only the static prefix (system prompt + user header)."""
        self.decoder.keep_prefix(self.prompt.head.keys)
        self._predict.keep_prefix(())

    def propose(self, source: str, committed: str, *, max_new_tokens: int = 64) -> Proposal:
        """Greedy continuation of ``committed`` as the translation of the source prefix.

        The committed target is forced (fed as prompt), never regenerated, so
        ``proposal.text`` always starts with ``committed``; ``complete`` is False when
        ``max_new_tokens`` cut the continuation (its last word may be partial).
        """
        return self.propose_many([source], committed, max_new_tokens=max_new_tokens)[0]  # one row: decode()

    def propose_many(self, sources: list[str], committed: str, *, max_new_tokens: int = 64,
                     follow_first: bool = False) -> list[Proposal]:
        """``propose`` for several source prefixes (the reorder-aware policy's proposal and
        its alternatives) in one batched decode (:meth:`CachedDecoder.decode_batch`): the
        same proposals as one ``propose`` each, in one forward per token for all of them.
        ``follow_first``: the later ones stop where they first differ from the first (only
        their agreement with it is needed); see ``decode_batch``."""
        o = self.options
        prompts = [self.prompt.build(src, committed, max_source_tokens=o.max_source_tokens,
                                     max_target_tokens=o.max_target_tokens) for src in sources]
        outs = self.decoder.decode_batch(prompts, max_new_tokens=max_new_tokens, follow_first=follow_first)
        return [Proposal(text=committed + d.text, continuation=d.text, steps=d.steps,
                         reused_tokens=d.stats.reused_tokens, complete=d.complete) for d in outs]

    def predict_source(self, source: str, n: int, *, max_new_tokens: int = 8) -> list[str]:
        """The model's own ``n`` guesses of how the source continues (see the translator);
        the growing source's prefix is served from this stream's second cache."""
        return self.translator.predict_source(source, n, max_new_tokens=max_new_tokens, decoder=self._predict)


def _load(source: str, options: QwenOptions, hint: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """``from_pretrained`` of tokenizer and model, with one-line errors for missing models."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    how = hint or (
        "build it with `streamst models build --profile tiny`, or download the real model with "
        f"`huggingface-cli download {source} --local-dir DIR`"
    )
    lfo = options.local_files_only

    def load(src: str):
        # the config first: an unreachable hub fails after one round of retries, not three
        config = AutoConfig.from_pretrained(src, local_files_only=lfo)
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=lfo)
        model = AutoModelForCausalLM.from_pretrained(src, config=config, dtype=resolve_dtype(options.dtype, options.device),
                                                     local_files_only=lfo)
        return tokenizer, model

    tokenizer, model = load_pretrained(source, load, what="Qwen model", hint=how)
    model.to(options.device).eval()
    if options.quantize == "int8":
        model = quantize_int8(model, options.device)
    return tokenizer, model


def quantize_int8(model: PreTrainedModel, device: str = "cpu") -> PreTrainedModel:
    """Dynamic int8 quantisation of the model's Linear layers (in place; CPU only)."""
    import warnings

    if not device.startswith("cpu"):
        raise UserError("quantize='int8' is a CPU option (torch dynamic quantisation)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that it moves to torchao
        torch.ao.quantization.quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def _language_name(code: str) -> str:
    name = LANGUAGES.get(code.split("-")[0].lower())
    if name is None:
        raise UserError(f"unsupported language {code!r} for the Qwen translator (known: {', '.join(LANGUAGES)})")
    return name
