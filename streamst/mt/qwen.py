"""Simultaneous translation with a Qwen3 (or Qwen2.5) instruct model and an explicit KV cache.

``QwenTranslator`` is loaded once per process (``QwenTranslator(source, options)``,
the same ``AutoTokenizer`` / ``AutoModelForCausalLM`` path a user takes with a hub id or a
local directory) and holds no per-stream state. ``open_stream`` returns a ``QwenStream``
that owns one utterance's KV cache.

One ``propose`` step::

    <|im_start|>system\\n{instruction naming the languages}<|im_end|>\\n    <- static prefix
    <|im_start|>user\\n{source prefix}                                       <- grows at its end
    <|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n           <- fixed suffix
    {committed target}                                                      <- forced, never regenerated
    {greedy continuation ... until <|im_end|> / eos / max_new_tokens}

The prompt is a tuple of *segments*, each with one hashable key per position (token ids for
text). The stream keeps the keys of every position whose K/V are in its cache; the next
step crops the cache to the longest common key prefix and runs only the rest. As the
source grows at the end of the user turn, each step recomputes the last source token(s),
the new source tokens, the ~9-token suffix and the committed target; the system prompt and
the unchanged source are served from the cache.

End-to-end hook: a ``PromptSegment`` only needs ``keys`` and ``embed(embedding, start)``;
prompts are fed to the model as ``inputs_embeds`` built from segments (``_embed``). An
encoder segment (SenseVoice states through a projector, keyed e.g. by
``("audio", utterance_id, frame)``) can replace the source ``TokenSegment`` returned by
``PromptBuilder.build`` without touching the cache or decoding logic. The projector is
not part of this module.
"""

from __future__ import annotations

import codecs
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Hashable, Literal, Protocol, Sequence

import torch

from streamst.errors import ModelNotFoundError, UserError
from streamst.languages import LANGUAGES
from streamst.mt.base import Proposal

if TYPE_CHECKING:
    from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

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


@dataclass(frozen=True)
class StepStats:
    """Cost of the last ``propose`` of a stream (for benchmarks and logs)."""

    prompt_tokens: int  # positions in the prompt incl. the forced committed target
    reused_tokens: int  # of which served from the KV cache
    computed_tokens: int  # of which run through the model this step
    new_tokens: int  # tokens generated
    prefill_ms: float  # prompt forward up to the first token's argmax
    decode_ms: float  # the remaining generated tokens


class PromptSegment(Protocol):
    """A run of prompt positions fed to the decoder as embeddings."""

    @property
    def keys(self) -> tuple[Hashable, ...]:
        """One key per position. Equal key prefixes must mean equal inputs, so that their
        cached K/V can be reused."""
        ...

    def embed(self, embedding: torch.nn.Module, start: int) -> torch.Tensor:
        """Embeddings of positions ``start:``, shape ``(len(keys) - start, hidden)``."""
        ...


@dataclass(frozen=True)
class TokenSegment:
    """Text positions: token ids embedded by the model's input embedding."""

    ids: tuple[int, ...]

    @property
    def keys(self) -> tuple[Hashable, ...]:
        return self.ids

    def embed(self, embedding: torch.nn.Module, start: int) -> torch.Tensor:
        w = embedding.weight
        ids = torch.tensor(self.ids[start:], dtype=torch.long, device=w.device)  # (T,)
        return embedding(ids)  # (T, hidden)


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
        self.head = TokenSegment(tuple(self._encode(head, special=True)))  # system + user header
        self.tail = TokenSegment(tuple(self._encode(tail, special=True)))  # end of user + assistant header

    def source_ids(self, source: str, cap: int) -> tuple[int, ...]:
        """Token ids of ``source``, the last ``cap`` of them."""
        ids = self._encode(source, special=False)
        return tuple(ids[-cap:]) if len(ids) > cap else tuple(ids)

    def target_ids(self, committed: str, cap: int) -> tuple[int, ...]:
        """Token ids of the committed target, the last ``cap`` of them."""
        ids = self._encode(committed, special=False)
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

    def _encode(self, text: str, *, special: bool) -> list[int]:
        if not text:
            return []
        return self.tokenizer(
            text, add_special_tokens=False, split_special_tokens=not special
        )["input_ids"]


class IncrementalDetokenizer:
    """Byte-level BPE ids -> text, emitting only whole characters.

    Each token maps to bytes (GPT-2 byte alphabet); a UTF-8 incremental decoder turns the
    byte stream into text and holds back a trailing incomplete character until the token
    that completes it arrives, so output never ends in half a character (a CJK character
    is often split over two tokens). Invalid byte sequences (only a broken or random
    model emits them) are dropped, never shown as U+FFFD. Special tokens are skipped.
    """

    def __init__(self, table: ByteTable):
        self._table = table
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self.text = ""

    def push(self, token_id: int) -> str:
        """Feed one token; return the newly completed text (may be empty)."""
        piece = self._utf8.decode(self._table.bytes_of(token_id))
        self.text += piece
        return piece


class QwenTranslator:
    """A loaded Qwen instruct model shared by all sessions (no per-stream state).

    ``QwenTranslator(source, options, hint=...)`` loads ``source``: a hub id
    (``Qwen/Qwen3-1.7B``) or a local ``save_pretrained`` directory, through
    ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` as a user would. A missing
    directory, or a hub id neither cached nor reachable, raises :class:`ModelNotFoundError`
    with one line naming the model and how to get it (``hint``, from the profile).
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
        self.device = torch.device(options.device)
        self.stop_ids = _stop_ids(tokenizer, model)
        self.bytes = ByteTable(tokenizer)

    def open_stream(self, src_lang: str, tgt_lang: str) -> QwenStream:
        """A new per-session decoding state for ``src_lang`` -> ``tgt_lang``."""
        return QwenStream(self, PromptBuilder(self.tokenizer, src_lang, tgt_lang))

    def translate(self, source: str, src_lang: str, tgt_lang: str, *, max_new_tokens: int = 256) -> str:
        """Whole-sentence translation with the same prompt (the cascade's offline reference)."""
        return self.open_stream(src_lang, tgt_lang).propose(source, "", max_new_tokens=max_new_tokens).text

    # -- model calls (shared, stateless) ------------------------------------------------

    @torch.inference_mode()
    def forward_segments(
        self, segments: Sequence[PromptSegment], start: int, cache: DynamicCache
    ) -> torch.Tensor:
        """Run prompt positions ``start:`` through the model, appending to ``cache``.

        Returns the logits of the last position, shape ``(1, vocab)``.
        """
        embeds = _embed(segments, start, self.model.get_input_embeddings())  # (T, hidden)
        out = self.model(
            inputs_embeds=embeds.unsqueeze(0),  # (1, T, hidden)
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float()  # (1, vocab)

    @torch.inference_mode()
    def forward_tokens(self, ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """One decoding step: ``ids`` of shape ``(B, 1)``; returns logits ``(B, vocab)``."""
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float()

    def new_cache(self) -> DynamicCache:
        """An empty KV cache; per layer K/V grow as ``(B, kv_heads, T, head_dim)``."""
        from transformers import DynamicCache

        return DynamicCache()

    @torch.inference_mode()
    def predict_source(self, source: str, n: int, *, max_new_tokens: int = 8) -> list[str]:
        """``n`` continuations of ``source`` as plain text (no chat template).

        ``n == 1``: greedy. ``n > 1``: top-k sampling (``options.predict_top_k``) from a
        generator seeded with ``options.seed``, so results are reproducible; duplicates
        are kept (their multiplicity is the model's confidence). Each string holds whole
        characters only.
        """
        if n < 1:
            return []
        o = self.options
        ids = self.tokenizer(source, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = ids[-o.max_source_tokens :] or [self._bos_id()]
        cache = self.new_cache()
        logits = self.forward_segments([TokenSegment(tuple(ids))], 0, cache)  # (1, vocab)
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.expand(n, -1)  # (n, vocab)
        gen = torch.Generator(device=logits.device).manual_seed(o.seed)
        detoks = [IncrementalDetokenizer(self.bytes) for _ in range(n)]
        done = torch.zeros(n, dtype=torch.bool, device=logits.device)
        stop = torch.tensor(sorted(self.stop_ids), device=logits.device)
        for step in range(max_new_tokens):
            if n == 1:
                nxt = logits.argmax(-1)  # (1,)
            else:
                top, idx = logits.topk(o.predict_top_k, dim=-1)  # (n, k)
                pick = torch.multinomial(top.softmax(-1), 1, generator=gen)  # (n, 1)
                nxt = idx.gather(-1, pick).squeeze(-1)  # (n,)
            done |= torch.isin(nxt, stop)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    detoks[i].push(t)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            logits = self.forward_tokens(nxt.unsqueeze(-1), cache)  # (n, vocab)
        return [d.text for d in detoks]

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

    def __init__(self, translator: QwenTranslator, prompt: PromptBuilder):
        self.translator, self.prompt = translator, prompt
        self.options = translator.options
        self._cache: DynamicCache | None = None
        self._keys: list[Hashable] = []  # key of every position whose K/V is in _cache
        self.last: StepStats | None = None

    @property
    def cached_tokens(self) -> int:
        """Number of positions currently held in the KV cache."""
        return len(self._keys)

    def reset(self) -> None:
        """Forget the utterance: keep only the static prefix (system prompt + user header)."""
        keep = len(self.prompt.head.ids)
        if self._cache is None or not self.options.kv_reuse or _common_prefix(self._keys, self.prompt.head.keys) < keep:
            self._cache, self._keys = None, []
        else:
            self._crop(keep)
        self.last = None

    def propose(self, source: str, committed: str, *, max_new_tokens: int = 64) -> Proposal:
        """Greedy continuation of ``committed`` as the translation of the source prefix.

        The committed target is forced (fed as prompt), never regenerated, so
        ``proposal.text`` always starts with ``committed``.
        """
        t = self.translator
        o = self.options
        segments = self.prompt.build(
            source, committed, max_source_tokens=o.max_source_tokens, max_target_tokens=o.max_target_tokens
        )
        keys = [k for s in segments for k in s.keys]
        if not o.kv_reuse or self._cache is None:
            self._cache, self._keys = t.new_cache(), []
        # keep at least one position to run: its logits give the first new token
        reuse = min(_common_prefix(self._keys, keys), len(keys) - 1)
        self._crop(reuse)

        t0 = time.perf_counter()
        logits = t.forward_segments(segments, reuse, self._cache)  # (1, vocab)
        self._keys = keys
        nxt = int(logits.argmax(-1))
        t1 = time.perf_counter()

        detok = IncrementalDetokenizer(t.bytes)
        steps, new = 1, 0
        while nxt not in t.stop_ids and new < max_new_tokens:
            detok.push(nxt)
            new += 1
            if new == max_new_tokens:
                break
            ids = torch.tensor([[nxt]], device=t.device)  # (1, 1)
            logits = t.forward_tokens(ids, self._cache)  # (1, vocab)
            self._keys.append(nxt)
            steps += 1
            nxt = int(logits.argmax(-1))
        t2 = time.perf_counter()
        if not o.kv_reuse:
            self._cache, self._keys = None, []

        self.last = StepStats(
            prompt_tokens=len(keys),
            reused_tokens=reuse,
            computed_tokens=len(keys) - reuse,
            new_tokens=new,
            prefill_ms=(t1 - t0) * 1e3,
            decode_ms=(t2 - t1) * 1e3,
        )
        return Proposal(
            text=committed + detok.text, continuation=detok.text, steps=steps, reused_tokens=reuse
        )

    def predict_source(self, source: str, n: int, *, max_new_tokens: int = 8) -> list[str]:
        """The model's own ``n`` guesses of how the source continues (see the translator)."""
        return self.translator.predict_source(source, n, max_new_tokens=max_new_tokens)

    def _crop(self, length: int) -> None:
        """Drop cached positions beyond ``length``."""
        extra = len(self._keys) - length
        if extra > 0 and self._cache is not None:
            if length == 0:
                self._cache = self.translator.new_cache()
            else:
                self._cache.crop(-extra)  # negative: remove that many (transformers 4.x and 5.x)
            del self._keys[length:]


def _load(source: str, options: QwenOptions, hint: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """``from_pretrained`` of tokenizer and model, with one-line errors for missing models."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    how = hint or (
        "build it with `streamst models build --profile tiny`, or download the real model with "
        "`huggingface-cli download Qwen/Qwen3-1.7B --local-dir DIR`"
    )
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"Qwen model not found at {path} (no config.json); {how}")
        source = str(path)
    elif _looks_like_path(source):
        raise ModelNotFoundError(f"Qwen model not found at {path}; {how}")
    try:
        # the config first: an unreachable hub fails after one round of retries, not three
        config = AutoConfig.from_pretrained(source, local_files_only=options.local_files_only)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=options.local_files_only)
        model = AutoModelForCausalLM.from_pretrained(
            source, config=config, dtype=_resolve_dtype(options), local_files_only=options.local_files_only
        )
    except OSError as e:  # hub unreachable, repo not cached, or files missing
        raise ModelNotFoundError(
            f"Qwen model {source!r} is not available offline and the hub cannot be reached; "
            + (hint or f"fetch it on a connected machine with `huggingface-cli download {source}`")
        ) from e
    model.to(options.device).eval()
    return tokenizer, model


# -- helpers -----------------------------------------------------------------------------


def _embed(segments: Sequence[PromptSegment], start: int, embedding: torch.nn.Module) -> torch.Tensor:
    """Input embeddings of prompt positions ``start:`` across segments, ``(T, hidden)``."""
    parts: list[torch.Tensor] = []
    offset = 0
    for seg in segments:
        n = len(seg.keys)
        if offset + n > start and n:
            parts.append(seg.embed(embedding, max(0, start - offset)))
        offset += n
    return torch.cat(parts, dim=0)


def _common_prefix(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _language_name(code: str) -> str:
    name = LANGUAGES.get(code.split("-")[0].lower())
    if name is None:
        raise UserError(f"unsupported language {code!r} for the Qwen translator (known: {', '.join(LANGUAGES)})")
    return name


def _looks_like_path(source: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (``./x``, ``/x``, ``a/b/c``) is a path."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or os.sep != "/" and os.sep in source


def _resolve_dtype(options: QwenOptions) -> torch.dtype:
    if options.dtype == "auto":
        return torch.bfloat16 if options.device.startswith("cuda") else torch.float32
    return getattr(torch, options.dtype)


def _stop_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> frozenset[int]:
    """Ids that end the assistant turn: <|im_end|>, the tokenizer's and the model's eos."""
    ids: set[int] = set()
    for tid in (tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id):
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    for cfg in (getattr(model, "generation_config", None), model.config):
        eos = getattr(cfg, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    return frozenset(ids)


class ByteTable:
    """Token id -> the bytes it stands for (byte-level BPE), memoised."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self._tok = tokenizer
        self._decoder = {c: b for b, c in _bytes_to_unicode().items()}
        self._special = {
            i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)
        }
        self._added = {i: t.content for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
        self._memo: dict[int, bytes] = {}

    def bytes_of(self, token_id: int) -> bytes:
        b = self._memo.get(token_id)
        if b is None:
            if token_id in self._special:
                b = b""
            elif token_id in self._added:
                b = self._added[token_id].encode("utf-8")
            else:
                piece = self._tok.convert_ids_to_tokens(token_id)
                if piece is None:  # padding rows of the embedding beyond the tokenizer
                    b = b""
                else:
                    dec = self._decoder
                    b = bytes(dec[c] for c in piece if c in dec)
            self._memo[token_id] = b
        return b


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))
