"""Greedy decoding over prompt segments with an explicit, reusable KV cache.

``SegmentLM`` wraps a loaded causal LM (Qwen3ForCausalLM, or the text side of
FunAsrNanoForConditionalGeneration) that is fed :mod:`streamst.mt.prompt` segments as
``inputs_embeds``; it is shared by all sessions and holds no per-stream state.
``CachedDecoder`` is one stream's cache: the keys of every position whose K/V it holds.
Each :meth:`CachedDecoder.decode` crops the cache to the longest common key prefix with the
new prompt, runs only the rest, then decodes greedily until a stop token or the budget::

    prompt keys:  [static head .........][changing part ......][forced target]
    cache:        [reused ..............][recomputed this step ..............] + new tokens

The output is identical to a cold run on the whole prompt (``kv_reuse=False``); only the
cost differs (``StepStats``). ``decode(draft=...)`` also runs a guessed continuation (the
previous step's proposal) in the prefill forward and keeps the prefix greedy decoding agrees
with, so agreed tokens cost a prefill position instead of a forward each; same output.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from collections.abc import Collection, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from streamst.mt.decoder import Decoded, ForwardLM, StepStats
from streamst.mt.detok import ByteTable, IncrementalDetokenizer
from streamst.mt.head import project_rows
from streamst.mt.prompt import PromptSegment, TokenSegment, common_prefix, embed_segments

if TYPE_CHECKING:
    from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase


# Model types whose causal-LM forward is ``lm_head(decoder(...))`` with nothing in between
# (no logit scaling or soft-capping), so SegmentLM may run the two itself.
PLAIN_HEAD_TYPES = frozenset({"qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "llama", "mistral"})
# "auto" keeps a transposed copy of the output projection on CPU up to this size.
HEAD_COPY_MAX_BYTES = 256 * 2**20

HeadMode = Literal["model", "auto"]


class SegmentLM:
    """A loaded causal LM that takes prompts as segments (shared, stateless).

    ``model`` must accept ``inputs_embeds``/``input_ids`` with a cache and ``logits_to_keep``
    and expose ``get_input_embeddings()`` (every transformers causal LM does).

    ``head``: ``"model"`` calls the model's own forward. ``"auto"`` (for the plain decoders
    of :data:`PLAIN_HEAD_TYPES`) runs the decoder stack and the output projection itself:
    the last position's hidden state times the projection, skipping the causal-LM
    wrapper's per-call work; on CPU, when the projection is at most
    :data:`HEAD_COPY_MAX_BYTES`, it multiplies by a transposed contiguous copy of it
    (``(hidden, vocab)``): with one to a few rows MKL's matrix-vector path over the
    ``(vocab, hidden)`` layout reads the 151k short rows about twice as slowly (measured:
    hidden 64, 7.7 vs 3.4 ms per row). Same logits up to float rounding.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, device: str = "cpu",
                 extra_stop_ids: Collection[int] = (), head: HeadMode = "model") -> None:
        self.model, self.tokenizer = model, tokenizer
        self.device = torch.device(device)
        self.stop_ids = frozenset(stop_ids(tokenizer, model) | set(extra_stop_ids))
        self.bytes = ByteTable(tokenizer)
        params = inspect.signature(model.forward).parameters
        # transformers >= 5.2x names it ``cache`` (``past_key_values`` deprecated); older: past_key_values
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._decoder: torch.nn.Module | None = None  # set: run decoder + projection here
        self._head_kw = self._cache_kw
        self._proj: torch.nn.Linear | None = None
        self._proj_t: torch.Tensor | None = None  # (hidden, vocab) copy, or None: use _proj
        self._proj_np = None  # float32 numpy view of _proj_t: multiplied through numpy's BLAS (mt/head.py)
        if head == "auto":
            self._setup_head()
        # cost counters for benchmarks (approximate under threads: plain int updates)
        self._forwards = self._rows = self._positions = 0

    def _setup_head(self) -> None:
        model = self.model
        if getattr(model.config, "model_type", None) not in PLAIN_HEAD_TYPES:
            return
        get_decoder = getattr(model, "get_decoder", None)
        decoder = get_decoder() if get_decoder is not None else None
        proj = model.get_output_embeddings()
        if decoder is None or type(proj) is not torch.nn.Linear:  # e.g. int8-quantised: the model's own path
            return
        params = inspect.signature(decoder.forward).parameters
        if "inputs_embeds" not in params:
            return
        self._decoder, self._proj = decoder, proj
        self._head_kw = "cache" if "cache" in params else "past_key_values"
        w = proj.weight
        if self.device.type == "cpu" and w.numel() * w.element_size() <= HEAD_COPY_MAX_BYTES:
            self._proj_t = w.detach().t().contiguous()  # (hidden, vocab)
            if self._proj_t.dtype == torch.float32:
                self._proj_np = self._proj_t.numpy()

    @property
    def head_path(self) -> str:
        """How logits are made: ``model`` (its forward), ``decoder+head``, ``decoder+head(T)``."""
        if self._decoder is None:
            return "model"
        return "decoder+head(T)" if self._proj_t is not None else "decoder+head"

    def chain(self) -> contextlib.AbstractContextManager[None]:
        """A sequence of dependent forwards (one decode); a batching stand-in
        (:class:`streamst.mt.batching.BatchedLM`) waits for its next forward. No-op here."""
        return contextlib.nullcontext()

    def counters(self) -> dict[str, int]:
        """Forward calls, batch rows and input positions run so far (all streams)."""
        return {"forwards": self._forwards, "rows": self._rows, "positions": self._positions}

    def _count(self, batch: int, positions: int) -> None:
        self._forwards += 1
        self._rows += batch
        self._positions += positions

    def run(self, cache: DynamicCache, *, keep: int = 0, **inputs: torch.Tensor) -> torch.Tensor:
        """One forward appending to ``cache``; the logits of each row's last position, ``(B, vocab)``
        float32, or with ``keep`` > 0 of its last ``keep`` positions, ``(B, keep, vocab)``.
        ``inputs``: ``input_ids`` or ``inputs_embeds``, optionally ``attention_mask`` and
        ``position_ids`` (the model's keyword arguments)."""
        if self._decoder is None:
            out = self.model(**inputs, use_cache=True, logits_to_keep=max(1, keep), **{self._cache_kw: cache})
            return out.logits[:, -keep:, :].float() if keep else out.logits[:, -1, :].float()
        return self.project(self.hidden(cache, keep=keep, **inputs))

    @property
    def splits_head(self) -> bool:
        """Whether :meth:`hidden` and :meth:`project` may be called apart (``head="auto"``
        on a plain decoder): a batcher then projects the rows of several forwards at once."""
        return self._decoder is not None

    def hidden(self, cache: DynamicCache, *, keep: int = 0, **inputs: torch.Tensor) -> torch.Tensor:
        """The decoder stack only (appending to ``cache``): each row's last hidden state
        ``(B, hidden)``, or with ``keep`` > 0 its last ``keep`` ones ``(B, keep, hidden)``."""
        assert self._decoder is not None, "hidden() needs head='auto' on a plain decoder (splits_head)"
        hidden = self._decoder(**inputs, use_cache=True, **{self._head_kw: cache}).last_hidden_state
        return hidden[:, -keep:, :] if keep else hidden[:, -1, :]

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output projection of hidden states ``(..., hidden)``: logits ``(..., vocab)`` float32."""
        assert self._proj is not None, "project() needs head='auto' on a plain decoder (splits_head)"
        if self._proj_np is not None:
            logits = project_rows(hidden, self._proj_np)  # (..., hidden) @ (hidden, vocab), numpy's BLAS
        elif self._proj_t is not None:
            logits = hidden @ self._proj_t  # (..., hidden) @ (hidden, vocab)
        else:
            return self._proj(hidden).float()
        if self._proj.bias is not None:
            logits = logits + self._proj.bias
        return logits.float()  # (..., vocab)

    @torch.inference_mode()
    def forward_segments(self, segments: Sequence[PromptSegment], start: int, cache: DynamicCache,
                         stop: int | None = None, *, logits: bool = True) -> torch.Tensor | None:
        """Run prompt positions ``start:stop`` through the model, appending to ``cache``.

        Returns the logits of the last position run, shape ``(1, vocab)``; ``logits=False``:
        None (only the cache is wanted; the output projection is skipped where it can be).
        """
        embeds = embed_segments(segments, start, self.model.get_input_embeddings())  # (T, hidden)
        if stop is not None:
            embeds = embeds[: stop - start]
        self._count(1, embeds.shape[0])
        if not logits and self.splits_head:
            self.hidden(cache, inputs_embeds=embeds.unsqueeze(0))
            return None
        out = self.run(cache, inputs_embeds=embeds.unsqueeze(0))  # (1, T, hidden) in
        return out if logits else None

    @torch.inference_mode()
    def forward_segments_rows(self, segments: Sequence[PromptSegment], start: int, cache: DynamicCache,
                              keep: int) -> torch.Tensor:
        """As :meth:`forward_segments`, returning the logits of the last ``keep`` positions run,
        ``(keep, vocab)`` (the prompt's end and a draft after it, verified in one forward)."""
        embeds = embed_segments(segments, start, self.model.get_input_embeddings())  # (T, hidden)
        self._count(1, embeds.shape[0])
        return self.run(cache, keep=keep, inputs_embeds=embeds.unsqueeze(0))[0]  # (keep, vocab)

    @torch.inference_mode()
    def forward_tokens(self, ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """One decoding step: ``ids`` of shape ``(B, 1)``; returns logits ``(B, vocab)``."""
        self._count(ids.shape[0], ids.numel())
        return self.run(cache, input_ids=ids)

    @torch.inference_mode()
    def forward_batch(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                      cache: DynamicCache) -> torch.Tensor:
        """Rows of different lengths in one call: ``embeds`` ``(B, T, hidden)``, left-padded;
        ``mask`` ``(B, cached + T)`` (0 at padding); ``positions`` ``(B, T)``. Returns the
        logits of each row's last position, ``(B, vocab)``."""
        self._count(embeds.shape[0], int(mask[:, -embeds.shape[1]:].sum()))
        return self.run(cache, inputs_embeds=embeds, attention_mask=mask, position_ids=positions)

    @torch.inference_mode()
    def forward_batch_tokens(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                             cache: DynamicCache) -> torch.Tensor:
        """One decoding step of a padded batch: ``ids``/``positions`` ``(B, 1)``."""
        self._count(ids.shape[0], ids.numel())
        return self.run(cache, input_ids=ids, attention_mask=mask, position_ids=positions)

    def new_cache(self) -> DynamicCache:
        """An empty KV cache; per layer K/V grow as ``(B, kv_heads, T, head_dim)``."""
        from transformers import DynamicCache

        return DynamicCache()

    # -- the decoder engine (streamst.mt.decoder.DecoderEngine) ---------------------------
    engine_name = "local"

    def open_decoder(self, *, kv_reuse: bool = True, lm: ForwardLM | None = None) -> CachedDecoder:
        """A stream's decoder over this model, or over ``lm`` (a batching stand-in for it)."""
        return CachedDecoder(lm if lm is not None else self, kv_reuse=kv_reuse)

    def observe(self, on_request: Any) -> None:
        """In-process: no engine requests to observe."""

    def batched(self, *, max_rows: int, max_wait_ms: float, name: str) -> tuple[Any, Any]:
        """A :class:`~streamst.mt.batching.ForwardBatcher` over this model and the
        ``BatchedLM`` engine that sessions decode through (one per server)."""
        from streamst.mt.batching import BatchedLM, ForwardBatcher

        batcher = ForwardBatcher(self, max_rows=max_rows, max_wait_ms=max_wait_ms, name=name)
        return batcher, BatchedLM(self, batcher)


class CachedDecoder:
    """One stream's KV cache over a :class:`SegmentLM`, and the keys it holds.

    Not thread-safe; one per stream. Memory is bounded by the longest prompt the caller
    builds plus ``max_new_tokens``.
    """

    def __init__(self, lm: ForwardLM, *, kv_reuse: bool = True) -> None:
        self.lm, self.kv_reuse = lm, kv_reuse
        self._cache: DynamicCache | None = None
        self._keys: list[Hashable] = []  # key of every position whose K/V is in _cache
        self.last: StepStats | None = None

    @property
    def cached_tokens(self) -> int:
        """Number of positions currently held in the KV cache."""
        return len(self._keys)

    def keep_prefix(self, keys: Sequence[Hashable]) -> None:
        """Keep only the cached positions that match ``keys`` (e.g. the static prompt head);
        drop everything when caching is off or the cache does not start with them."""
        n = len(keys)
        if self._cache is None or not self.kv_reuse or common_prefix(self._keys, keys) < n:
            self._cache, self._keys = None, []
        else:
            self._crop(n)
        self.last = None

    @torch.inference_mode()
    def extend(self, segments: Sequence[PromptSegment]) -> int:
        """Bring the cache to exactly the prompt ``segments`` (reusing its common prefix),
        decoding nothing; returns the positions run. A no-op without KV reuse."""
        if not self.kv_reuse:
            return 0
        keys = [k for s in segments for k in s.keys]
        if self._cache is None:
            self._cache, self._keys = self.lm.new_cache(), []
        reuse = common_prefix(self._keys, keys)
        self._crop(reuse)
        if reuse < len(keys):
            with self.lm.chain():
                self.lm.forward_segments(segments, reuse, self._cache)
            self._keys = keys
        return len(keys) - reuse

    def decode(self, segments: Sequence[PromptSegment], *, max_new_tokens: int,
               draft: Sequence[int] = ()) -> Decoded:
        """Greedy continuation of the prompt ``segments`` (at most ``max_new_tokens``).

        ``draft``: a guess of the continuation's first tokens (e.g. the previous step's
        proposal). They are run in the prefill forward after the prompt; greedy decoding keeps
        the longest prefix of them that equals its own argmax at each position, then goes on
        one forward per token from there. The result is the greedy continuation without a
        draft (equal up to the float rounding of a longer prefill, as with KV reuse); a good
        draft saves one forward per agreed token, a bad one costs its positions in the prefill.
        """
        # the last budgeted token is never run (as without a draft): verify at most max - 1
        draft = tuple(draft)[: max(0, max_new_tokens - 1)]
        with self.lm.chain():
            return self._decode(segments, max_new_tokens, draft)

    @torch.inference_mode()
    def _decode(self, segments: Sequence[PromptSegment], max_new_tokens: int, draft: tuple[int, ...] = ()) -> Decoded:
        lm = self.lm
        detok = IncrementalDetokenizer(lm.bytes)
        ids: list[int] = []
        t0 = time.perf_counter()
        if draft:
            keys, reuse = self._reuse([*segments, TokenSegment(draft)])
            n = len(keys) - len(draft)  # prompt positions
            reuse = min(reuse, n - 1)  # the prompt's last position is run: its logits give token 1
            self._crop(reuse)
            rows = lm.forward_segments_rows([*segments, TokenSegment(draft)], reuse, self._cache, len(draft) + 1)
            pred = rows.argmax(-1).tolist()  # pred[i]: greedy token after prompt + draft[:i]
            m = 0
            while m < len(draft) and pred[m] == draft[m] and draft[m] not in lm.stop_ids:
                m += 1
            for t in draft[:m]:
                detok.push(t)
                ids.append(t)
            self._keys = list(keys)
            self._crop(n + m)  # drop the K/V of the rejected draft positions
            nxt = pred[m]
            keys = keys[:n]
        else:
            keys, reuse = self._reuse(segments)
            logits = lm.forward_segments(segments, reuse, self._cache)  # (1, vocab)
            self._keys = list(keys)
            nxt = int(logits.argmax(-1))
            m = 0
        t1 = time.perf_counter()

        steps = 1
        while nxt not in lm.stop_ids and len(ids) < max_new_tokens:
            detok.push(nxt)
            ids.append(nxt)
            if len(ids) == max_new_tokens:
                break
            logits = lm.forward_tokens(torch.tensor([[nxt]], device=lm.device), self._cache)  # (1, vocab)
            self._keys.append(nxt)
            steps += 1
            nxt = int(logits.argmax(-1))
        t2 = time.perf_counter()
        complete = nxt in lm.stop_ids  # False: cut by the budget, the last word may be partial
        if not self.kv_reuse:
            self._cache, self._keys = None, []
        self.last = StepStats(
            prompt_tokens=len(keys), reused_tokens=reuse, computed_tokens=len(keys) - reuse,
            new_tokens=len(ids), prefill_ms=(t1 - t0) * 1e3, decode_ms=(t2 - t1) * 1e3,
            draft_tokens=len(draft), draft_accepted=m, decode_forwards=steps - 1,
        )
        return Decoded(text=detok.text, token_ids=tuple(ids), complete=complete, steps=steps, stats=self.last)

    def decode_batch(self, prompts: Sequence[Sequence[PromptSegment]], *, max_new_tokens: int,
                     follow_first: bool = False) -> list[Decoded]:
        """Greedy continuations of several prompts in one batched decode.

        Every forward runs all rows at once, so the weights (for a small model mostly the
        151k-row output projection) are read once per step instead of once per row. The
        prompts' common key prefix is computed once, batch 1, in this stream's cache (which
        keeps just that prefix afterwards, for the next step); the rest of each prompt is
        left-padded into one batched prefill with explicit positions and a padding mask,
        then all rows decode together until each stops or the budget ends. Each result is
        the one :meth:`decode` would give for that prompt (greedy; equal in float32 up to
        the rounding of a different matrix shape, checked by the tests).

        ``follow_first``: rows after the first are only needed where they agree with it (the
        reorder-aware policy's alternatives: it commits the prefix they all share). Such a
        row stops at the first token where it differs from row 0; that token is kept (so
        the caller's drop of a cut row's last, partial unit leaves exactly the agreed whole
        units) and the row is marked incomplete. The agreed prefix is then the same as with
        full decodes, unless two rows spell the same word with different tokens.
        """
        if len(prompts) == 1:
            return [self.decode(prompts[0], max_new_tokens=max_new_tokens)]
        with self.lm.chain():
            return self._decode_batch(prompts, max_new_tokens, follow_first)

    @torch.inference_mode()
    def _decode_batch(self, prompts: Sequence[Sequence[PromptSegment]], max_new_tokens: int,
                      follow_first: bool) -> list[Decoded]:
        lm = self.lm
        keys = [[k for s in segs for k in s.keys] for segs in prompts]
        shared = min(len(k) for k in keys) - 1  # every row keeps >= 1 position to run
        for k in keys[1:]:
            shared = min(shared, common_prefix(keys[0], k))
        if not self.kv_reuse or self._cache is None:
            self._cache, self._keys = lm.new_cache(), []
        reuse = min(common_prefix(self._keys, keys[0]), shared)
        self._crop(reuse)
        t0 = time.perf_counter()
        emb = lm.model.get_input_embeddings()
        if shared > reuse:  # the common prefix, once, into this stream's cache
            lm.forward_segments(prompts[0], reuse, self._cache, stop=shared, logits=False)  # cache only
        self._keys = list(keys[0][:shared])
        cache = copy.deepcopy(self._cache) if shared else lm.new_cache()
        b = len(prompts)
        if shared:
            cache.batch_repeat_interleave(b)
        rests = [embed_segments(segs, shared, emb) for segs in prompts]  # (T_i, hidden)
        width = max(r.shape[0] for r in rests)
        hidden = rests[0].shape[1]
        embeds = rests[0].new_zeros(b, width, hidden)
        mask = torch.zeros(b, shared + width, dtype=torch.long, device=lm.device)
        mask[:, :shared] = 1
        positions = torch.zeros(b, width, dtype=torch.long, device=lm.device)
        for i, r in enumerate(rests):
            n = r.shape[0]
            embeds[i, width - n :] = r
            mask[i, shared + width - n :] = 1
            positions[i, width - n :] = torch.arange(shared, shared + n, device=lm.device)
        logits = lm.forward_batch(embeds, mask, positions, cache)  # (B, vocab)
        nxt = logits.argmax(-1)  # (B,)
        t1 = time.perf_counter()
        pos = positions[:, -1:]  # (B, 1) last position of each row
        detoks = [IncrementalDetokenizer(lm.bytes) for _ in prompts]
        ids: list[list[int]] = [[] for _ in prompts]
        done = [False] * b
        stopped = [False] * b  # ended by a stop token (else by the budget)
        steps = 1
        alive = list(range(b))  # original row of each batch row still decoding
        while True:
            toks = nxt.tolist()
            first = toks[0] if alive[0] == 0 else None  # row 0's token this step
            for i, t in zip(alive, toks):
                if follow_first and i and t != first and t not in lm.stop_ids:
                    done[i] = True  # diverged from row 0: keep the token, mark the row cut
                    if len(ids[i]) < max_new_tokens:
                        detoks[i].push(t)
                        ids[i].append(t)
                elif t in lm.stop_ids:
                    done[i] = stopped[i] = True
                elif len(ids[i]) >= max_new_tokens:
                    done[i] = True
                else:
                    detoks[i].push(t)
                    ids[i].append(t)
                    done[i] = len(ids[i]) >= max_new_tokens
            keep = [j for j, i in enumerate(alive) if not done[i]]
            if not keep:
                break
            if len(keep) < len(alive):  # drop finished rows: each row costs a full forward
                sel = torch.tensor(keep, device=lm.device)
                cache.batch_select_indices(sel)
                mask, pos, nxt = mask[sel], pos[sel], nxt[sel]
                alive = [alive[j] for j in keep]
            pos = pos + 1
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
            logits = lm.forward_batch_tokens(nxt.unsqueeze(-1), mask, pos, cache)
            steps += 1
            nxt = logits.argmax(-1)
        t2 = time.perf_counter()
        out = []
        for i in range(b):
            stats = StepStats(prompt_tokens=len(keys[i]), reused_tokens=reuse, computed_tokens=len(keys[i]) - reuse,
                              new_tokens=len(ids[i]), prefill_ms=(t1 - t0) * 1e3, decode_ms=(t2 - t1) * 1e3,
                              decode_forwards=steps - 1)
            out.append(Decoded(text=detoks[i].text, token_ids=tuple(ids[i]), complete=stopped[i], steps=steps,
                               stats=stats))
        if not self.kv_reuse:
            self._cache, self._keys = None, []
        self.last = out[0].stats
        return out

    def sample(self, segments: Sequence[PromptSegment], n: int, *, max_new_tokens: int,
               top_k: int, seed: int) -> list[str]:
        """``n`` continuations of the prompt as text: greedy for ``n == 1``; else top-k sampling
        from a generator seeded with ``seed`` (reproducible; duplicates kept: their multiplicity
        is the model's confidence). The prompt's common prefix with this cache is reused."""
        if n < 1:
            return []
        with self.lm.chain():
            return self._sample(segments, n, max_new_tokens, top_k, seed)

    @torch.inference_mode()
    def _sample(self, segments: Sequence[PromptSegment], n: int, max_new_tokens: int, top_k: int,
                seed: int) -> list[str]:
        lm = self.lm
        logits, cache = self.prefill(segments)  # (1, vocab)
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.expand(n, -1)  # (n, vocab)
        gen = torch.Generator(device=logits.device).manual_seed(seed)
        detoks = [IncrementalDetokenizer(lm.bytes) for _ in range(n)]
        done = torch.zeros(n, dtype=torch.bool, device=logits.device)
        stop = torch.tensor(sorted(lm.stop_ids), device=logits.device)
        for step in range(max_new_tokens):
            if n == 1:
                nxt = logits.argmax(-1)  # (1,)
            else:
                top, idx = logits.topk(top_k, dim=-1)  # (n, k)
                pick = torch.multinomial(top.softmax(-1), 1, generator=gen)  # (n, 1)
                nxt = idx.gather(-1, pick).squeeze(-1)  # (n,)
            done |= torch.isin(nxt, stop)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    detoks[i].push(t)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            logits = lm.forward_tokens(nxt.unsqueeze(-1), cache)  # (n, vocab)
        return [d.text for d in detoks]

    @torch.inference_mode()
    def prefill(self, segments: Sequence[PromptSegment]) -> tuple[torch.Tensor, DynamicCache]:
        """Run the prompt (reusing the cached common prefix) and return the last position's
        logits ``(1, vocab)`` and a *copy* of the cache to continue from (e.g. sampling
        several rows), leaving this decoder's cache at exactly the prompt."""
        lm = self.lm
        keys, reuse = self._reuse(segments)
        logits = lm.forward_segments(segments, reuse, self._cache)
        self._keys = keys
        cache = copy.deepcopy(self._cache)
        if not self.kv_reuse:
            self._cache, self._keys = None, []
        return logits, cache

    def _reuse(self, segments: Sequence[PromptSegment]) -> tuple[list[Hashable], int]:
        """The prompt's keys, and how many leading positions the cache serves (cropped to
        that); at least one position is left to run: its logits give the first new token."""
        keys = [k for s in segments for k in s.keys]
        if not self.kv_reuse or self._cache is None:
            self._cache, self._keys = self.lm.new_cache(), []
        reuse = min(common_prefix(self._keys, keys), len(keys) - 1)
        self._crop(reuse)
        return keys, reuse

    def _crop(self, length: int) -> None:
        """Drop cached positions beyond ``length``."""
        extra = len(self._keys) - length
        if extra > 0 and self._cache is not None:
            if length == 0:
                self._cache = self.lm.new_cache()
            else:
                self._cache.crop(-extra)  # negative: remove that many (transformers 4.x and 5.x)
            del self._keys[length:]


def stop_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> set[int]:
    """Ids that end the assistant turn: <|im_end|>, the tokenizer's and the model's eos."""
    ids: set[int] = set()
    for tid in (tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id):
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    configs = [getattr(model, "generation_config", None), model.config, getattr(model.config, "text_config", None)]
    for cfg in configs:
        eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    return ids
