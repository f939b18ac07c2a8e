"""The decoder seam: what a stream asks of whatever runs its prompts.

A stream (:class:`~streamst.mt.qwen.QwenStream`, :class:`~streamst.e2e.funasr_nano.NanoStream`)
builds prompts as segments (:mod:`streamst.mt.prompt`) and hands them to its per-stream
:class:`Decoder`, opened from the model's :class:`DecoderEngine`. Three engines implement it:

* the in-process transformers decoder: :class:`~streamst.mt.kv.SegmentLM` opening
  :class:`~streamst.mt.kv.CachedDecoder` (a per-stream KV cache, reused by key prefix);
* the cross-session batched decoder: :class:`~streamst.mt.batching.BatchedLM` (the same
  ``CachedDecoder`` over a :class:`~streamst.mt.batching.ForwardBatcher` that merges the
  forwards of all sessions);
* an OpenAI-compatible ``/v1/completions`` server: :class:`~streamst.mt.openai_http.HttpEngine`
  (token prompts; with ``prompt_embeds`` for speech prompts, vLLM:
  :mod:`streamst.mt.vllm_engine`). The server's prefix cache takes the place of the local
  KV cache; ``keep_prefix`` / ``extend`` have nothing to do there.

A new engine is one module implementing these two protocols. The local decoder's forward
runner (``SegmentLM`` and its batching stand-in ``BatchedLM``) is :class:`ForwardLM`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import contextlib

    import torch
    from transformers import DynamicCache

    from streamst.mt.detok import ByteTable
    from streamst.mt.prompt import PromptSegment


@dataclass(frozen=True)
class StepStats:
    """Cost of one decode (for benchmarks and logs)."""

    prompt_tokens: int  # positions in the prompt incl. the forced committed target
    reused_tokens: int  # of which served from the KV cache (a server: its prefix cache)
    computed_tokens: int  # of which run through the model this step
    new_tokens: int  # tokens generated
    prefill_ms: float  # prompt forward up to the first token's argmax (a server: the whole request)
    decode_ms: float  # the remaining generated tokens
    draft_tokens: int = 0  # draft tokens verified in the prefill (``decode(draft=...)``)
    draft_accepted: int = 0  # of which greedy decoding agreed with (generated without a forward each)
    decode_forwards: int = 0  # one-token forwards after the prefill


@dataclass(frozen=True)
class Decoded:
    """A greedy continuation of a prompt."""

    text: str  # whole characters only
    token_ids: tuple[int, ...]
    complete: bool  # False when cut by max_new_tokens (the last word may be partial)
    steps: int  # forward passes (the prefill counts as one)
    stats: StepStats


class Decoder(Protocol):
    """One stream's decoding state over a shared engine. Not thread-safe; one per stream."""

    last: StepStats | None  # the cost of the last decode (None after keep_prefix)

    @property
    def cached_tokens(self) -> int:
        """Positions this stream holds in a cache of its own (0 when the engine keeps none)."""
        ...

    def keep_prefix(self, keys: Sequence[Hashable]) -> None:
        """Keep only cached positions matching ``keys`` (the static prompt head)."""
        ...

    def extend(self, segments: Sequence[PromptSegment]) -> int:
        """Bring the cache to the prompt ``segments`` without decoding; positions run."""
        ...

    def decode(self, segments: Sequence[PromptSegment], *, max_new_tokens: int,
               draft: Sequence[int] = ()) -> Decoded:
        """Greedy continuation of the prompt (at most ``max_new_tokens``). ``draft``: a guess
        of its first tokens that an engine may verify in the prefill (same output)."""
        ...

    def decode_batch(self, prompts: Sequence[Sequence[PromptSegment]], *, max_new_tokens: int,
                     follow_first: bool = False) -> list[Decoded]:
        """:meth:`decode` of several prompts (each result as ``decode`` gives it; with
        ``follow_first`` rows after the first may stop where they differ from it)."""
        ...

    def sample(self, segments: Sequence[PromptSegment], n: int, *, max_new_tokens: int,
               top_k: int, seed: int) -> list[str]:
        """``n`` continuations as text: greedy for ``n == 1``, else top-k samples (seeded)."""
        ...


class DecoderEngine(Protocol):
    """What runs a model's decoder for every stream: shared, no per-stream state."""

    @property
    def engine_name(self) -> str:
        """``local``, ``batched`` or the server kind (``http``, ``vllm``)."""
        ...

    def open_decoder(self, *, kv_reuse: bool = True) -> Decoder:
        """A new per-stream decoder."""
        ...

    def observe(self, on_request: Callable[[float], None] | None) -> None:
        """Call ``on_request(seconds)`` after every request to a server engine (the server's
        ``/metrics``); in-process engines make no requests."""
        ...

    def batched(self, *, max_rows: int, max_wait_ms: float, name: str) -> tuple[Any, DecoderEngine]:
        """The engine sessions of one server decode through: a local decoder returns its
        :class:`~streamst.mt.batching.ForwardBatcher` and the ``BatchedLM`` over it; an engine
        that batches by itself (a server) returns ``(None, self)``."""
        ...


class ForwardLM(Protocol):
    """The local decoder's forward runner: :class:`~streamst.mt.kv.SegmentLM` (direct) and
    :class:`~streamst.mt.batching.BatchedLM` (through the cross-session batcher)."""

    model: Any  # the transformers model (its input embedding)
    tokenizer: Any
    device: torch.device
    stop_ids: Collection[int]
    bytes: ByteTable

    def chain(self) -> contextlib.AbstractContextManager[None]: ...

    def counters(self) -> dict[str, int]: ...

    def new_cache(self) -> DynamicCache: ...

    def forward_segments(self, segments: Sequence[PromptSegment], start: int, cache: DynamicCache,
                         stop: int | None = None, *, logits: bool = True) -> torch.Tensor | None: ...

    def forward_segments_rows(self, segments: Sequence[PromptSegment], start: int, cache: DynamicCache,
                              keep: int) -> torch.Tensor: ...

    def forward_tokens(self, ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor: ...

    def forward_batch(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                      cache: DynamicCache) -> torch.Tensor: ...

    def forward_batch_tokens(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                             cache: DynamicCache) -> torch.Tensor: ...
