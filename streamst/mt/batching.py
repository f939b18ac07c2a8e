"""Decoder forwards of concurrent sessions batched into one model call.

Every session decodes with its own :class:`~streamst.mt.kv.CachedDecoder` (its own KV
cache, its own greedy or sampled choices), one forward at a time. On a CPU a small model's
forward costs mostly per-call work (Python, the output projection's weight reads), nearly
the same for 1 row as for 8 (tiny Qwen3: ~7 ms for 1 row, ~15 ms for 8), so the server
runs the forwards that sessions have due at the same moment as ONE call:

* :class:`BatchedLM` is a :class:`~streamst.mt.kv.SegmentLM` stand-in handed to each
  session's decoders: its ``forward_*`` methods queue the request (the rows' new input
  embeddings, their mask and positions, and the caller's cache) and block for the logits.
* :class:`ForwardBatcher` is one thread. It takes a queued request, then waits (at most
  ``max_wait_ms``) until every open *chain* (a decode, batched decode or source prediction
  under way in some session: :meth:`ForwardBatcher.chain`) has its next forward queued, and
  runs what is queued (up to ``max_rows`` rows) in at most two model calls: the one-token
  decoding steps together, the multi-position prefills together (so a decoding row is never
  padded to a prefill's width). Each call left-pads the requests' caches to a common length
  and their new positions to a common width, with the padding masked out and explicit
  positions, then splits the grown cache back into each caller's cache.

Each row's logits are those of an unbatched forward up to float rounding of another matrix
shape (greedy tokens equal: ``tests/test_mt_batching.py``). A request alone runs on its own
cache exactly as :class:`SegmentLM` would. The queue holds at most one request per waiting
caller (each blocks on its own), so it is bounded by the server's worker threads; every
cycle serves every queued request in arrival order (up to ``max_rows`` rows, the rest in
the next cycle), so no session waits behind another's whole decode.

Cost of merging: per forward, each request's cache is copied when it is left-padded into
the merged cache, again by the model's own append (``torch.cat``, as unbatched), and once
more when the grown cache is split back: about three copies where an unbatched forward makes
one. Small next to the weights for the tiny profile; for large models on an accelerator a
paged cache would avoid it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from streamst.mt.prompt import PromptSegment, embed_segments
from streamst.requests import EMPTY, RequestQueue

if TYPE_CHECKING:
    from transformers import DynamicCache

    from streamst.mt.decoder import Decoder, ForwardLM as SegmentLM  # the in-process LM (mt/kv.py)


_WAKE = object()  # queued when a chain ends


@dataclass
class _Request:
    cache: DynamicCache
    embeds: torch.Tensor  # (B, T, hidden) new positions
    mask: torch.Tensor | None  # (B, cached + T), 0 at padding; None: every position valid
    positions: torch.Tensor | None  # (B, T); None: cached + arange(T)
    future: Future
    logits: bool = True  # False: only the cache is wanted (the future gets None)
    keep: int = 0  # > 0: the logits of each row's last ``keep`` positions (draft verification)

    @property
    def rows(self) -> int:
        return self.embeds.shape[0]

    @property
    def width(self) -> int:
        return self.embeds.shape[1]


def _layers(cache: DynamicCache) -> list:
    return list(getattr(cache, "layers", []))


def _mergeable(cache: DynamicCache) -> bool:
    """Plain growing layers only (no sliding window, quantised or offloaded layers)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in _layers(cache))


def _cached(cache: DynamicCache) -> int:
    return int(cache.get_seq_length()) if _layers(cache) else 0


class ForwardBatcher:
    """One thread running every session's decoder forwards, batching concurrent ones."""

    def __init__(self, lm: SegmentLM, *, max_rows: int = 32, max_wait_ms: float = 2.0, name: str = "decoder") -> None:
        if max_rows < 1 or max_wait_ms < 0:
            raise ValueError("need max_rows >= 1 and max_wait_ms >= 0")
        self.lm, self.max_rows, self.max_wait = lm, max_rows, max_wait_ms / 1000.0
        self.batch_rows: Counter[int] = Counter()  # rows per model call -> calls
        self.requests = 0
        self.busy_s = 0.0  # time spent in model calls
        self.projections = 0  # output projections run (one per cycle when the model splits its head)
        self.verified = 0  # requests for several positions' logits (draft verification)
        self._requests = RequestQueue(f"{name} batcher")
        self._held: list[_Request] = []  # taken from the queue but over max_rows: first next cycle
        self._open = 0  # chains under way
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"streamst-{name}-batcher", daemon=True)
        self._thread.start()

    # -- callers (session worker threads) ------------------------------------------------------
    @contextlib.contextmanager
    def chain(self) -> Iterator[None]:
        """Mark a sequence of forwards (one decode) under way: the batcher waits for its next
        forward (up to ``max_wait_ms``) before running a batch without it."""
        with self._lock:
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
            self._requests.put(_WAKE)  # a batcher waiting for this chain's next forward stops waiting

    def forward(self, cache: DynamicCache, embeds: torch.Tensor, mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, *, logits: bool = True, keep: int = 0) -> torch.Tensor | None:
        """Blocking: run ``embeds`` ``(B, T, hidden)`` after ``cache`` (appended to, as
        :meth:`SegmentLM.run` does); the logits of each row's last position, ``(B, vocab)``
        (``logits=False``: None, and the output projection is skipped for these rows;
        ``keep`` > 0: of its last ``keep`` positions, ``(B, keep, vocab)``)."""
        if not 0 <= keep <= embeds.shape[1]:
            raise ValueError(f"keep must be from 0 to the {embeds.shape[1]} new positions, got {keep}")
        return self._requests.submit(lambda fut: _Request(cache, embeds, mask, positions, fut, logits, keep))

    def close(self) -> None:
        self._requests.close()
        self._thread.join(timeout=10)

    @property
    def stats(self) -> dict[str, float]:
        calls = sum(self.batch_rows.values())
        rows = sum(k * v for k, v in self.batch_rows.items())
        return {"calls": calls, "requests": self.requests, "rows": rows, "busy_s": round(self.busy_s, 3),
                "projections": self.projections, "verified": self.verified,
                "mean_rows": rows / calls if calls else 0.0, "max_rows": max(self.batch_rows, default=0)}

    # -- the batching thread -------------------------------------------------------------------
    def _collect(self) -> list[_Request] | None:
        """The next cycle's requests (None: closed)."""
        batch, self._held = self._held, []
        while not batch:
            first = self._requests.get()
            if first is None:
                return None
            if first is not _WAKE:
                batch = [first]
        deadline = time.monotonic() + self.max_wait
        rows = sum(r.rows for r in batch)
        while rows < self.max_rows:
            with self._lock:
                expected = self._open
            # every chain under way has its forward queued: take only what is there
            req = self._requests.get_before(None if len(batch) >= expected else deadline)
            if req is EMPTY:
                break
            if req is _WAKE:  # a chain ended: look at the open count again
                continue
            if req is None:
                self._requests.put(None)  # close after this cycle (closed: nothing follows it)
                break
            if rows + req.rows > self.max_rows:
                self._held.append(req)
                break
            batch.append(req)
            rows += req.rows
        return batch

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                break
            self.requests += len(batch)
            self.verified += sum(1 for r in batch if r.keep)
            t0 = time.perf_counter()
            self._serve(batch)
            self.busy_s += time.perf_counter() - t0
        self._requests.fail_pending(self._held)

    def _serve(self, batch: list[_Request]) -> None:
        """One cycle: the decoder stack of the one-token steps together, of the prefills
        together; then, when the model allows it (``SegmentLM.splits_head``), ONE output
        projection for every row of the cycle that wants logits (on the tiny CPU profile
        the projection is most of a forward and costs about the same for 1 row as for 8)."""
        split = self.lm.splits_head
        fn = self.lm.hidden if split else self.lm.run
        done: list[tuple[_Request, torch.Tensor]] = []  # request -> its rows' hidden states (split) or logits
        try:
            with torch.inference_mode():
                # one-token steps; prefills; prefills that want several positions' logits (drafts):
                # a row is never padded to a wider group's width, nor projected at positions it
                # does not need
                groups = ([r for r in batch if r.width == 1 and not r.keep],
                          [r for r in batch if r.width > 1 and not r.keep], [r for r in batch if r.keep])
                for group in groups:
                    together = [r for r in group if _mergeable(r.cache)]
                    alone = [r for r in group if not _mergeable(r.cache)]
                    if len(together) == 1:
                        alone, together = together + alone, []
                    for r in alone:
                        self._count([r])
                        done.append((r, fn(r.cache, keep=r.keep, **_inputs(r))))
                    if together:
                        self._count(together)
                        done.extend(zip(together, run_merged(self.lm, together, fn=fn)))
                if split:
                    wanted = [(r, h) for r, h in done if r.logits]
                    if wanted:
                        self.projections += 1
                        flat = [h.reshape(-1, h.shape[-1]) for _, h in wanted]  # (rows [* keep], hidden)
                        logits = self.lm.project(torch.cat(flat))  # (all rows, vocab)
                        row = 0
                        for (r, h), f in zip(wanted, flat):
                            r.future.set_result(logits[row : row + f.shape[0]].reshape(*h.shape[:-1], -1))
                            row += f.shape[0]
                    for r, _ in done:
                        if not r.logits:
                            r.future.set_result(None)
                else:
                    for r, out in done:
                        r.future.set_result(out if r.logits else None)
        except BaseException as e:  # noqa: BLE001 - handed to every caller, none is lost
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(e)

    def _count(self, reqs: Sequence[_Request]) -> None:
        rows = sum(r.rows for r in reqs)
        self.batch_rows[rows] += 1
        self.lm._count(rows, sum(_valid_new(r) for r in reqs))  # noqa: SLF001 - the shared cost counters


def _valid_new(r: _Request) -> int:
    return int(r.mask[:, -r.width :].sum()) if r.mask is not None else r.rows * r.width


def _inputs(r: _Request) -> dict[str, torch.Tensor]:
    out = {"inputs_embeds": r.embeds}
    if r.mask is not None:
        out["attention_mask"] = r.mask
    if r.positions is not None:
        out["position_ids"] = r.positions
    return out


def run_merged(lm: SegmentLM, reqs: Sequence[_Request], *, fn=None) -> list[torch.Tensor]:
    """One forward of several requests (each with its own cache): caches left-padded to a
    common length ``C``, new positions left-padded to a common width ``T``::

        row of request i:  [pad C - c_i][cache_i][pad T - t_i][new_i]

    Returns each request's logits ``(B_i, vocab)`` (``fn=lm.hidden``: its last hidden states
    ``(B_i, hidden)``; default ``lm.run``); each request's cache is replaced by its own rows
    of the grown cache without the padding (``cache_i + new_i``)."""
    from transformers import DynamicCache

    lens = [_cached(r.cache) for r in reqs]
    c, t = max(lens), max(r.width for r in reqs)
    b = sum(r.rows for r in reqs)
    ref = next((r.cache for r, n in zip(reqs, lens) if n), None)
    n_layers = len(_layers(ref)) if ref is not None else 0
    first = reqs[0].embeds
    embeds = first.new_zeros(b, t, first.shape[-1])
    mask = torch.zeros(b, c + t, dtype=torch.long, device=first.device)
    positions = torch.zeros(b, t, dtype=torch.long, device=first.device)
    row = 0
    for r, n in zip(reqs, lens):
        rows = slice(row, row + r.rows)
        embeds[rows, t - r.width :] = r.embeds
        own = r.mask if r.mask is not None else torch.ones(r.rows, n + r.width, dtype=torch.long, device=first.device)
        mask[rows, c - n : c] = own[:, :n]
        mask[rows, c + t - r.width :] = own[:, n:]
        pos = r.positions if r.positions is not None else torch.arange(n, n + r.width, device=first.device).expand(r.rows, -1)
        positions[rows, t - r.width :] = pos
        row += r.rows
    cache = DynamicCache()
    if c:
        data = []
        for layer in range(n_layers):
            k_ref, v_ref = ref.layers[layer].keys, ref.layers[layer].values
            ks, vs = [], []
            for r, n in zip(reqs, lens):
                k_pad = k_ref.new_zeros(r.rows, k_ref.shape[1], c - n, k_ref.shape[3])
                v_pad = v_ref.new_zeros(r.rows, v_ref.shape[1], c - n, v_ref.shape[3])
                if n:
                    ks.append(torch.cat([k_pad, r.cache.layers[layer].keys], dim=2))
                    vs.append(torch.cat([v_pad, r.cache.layers[layer].values], dim=2))
                else:
                    ks.append(k_pad)
                    vs.append(v_pad)
            data.append((torch.cat(ks), torch.cat(vs)))  # (B, kv_heads, C, head_dim)
        cache = DynamicCache(ddp_cache_data=data)
    fn = fn or lm.run
    keep = max(r.keep for r in reqs)  # rows are right-aligned: each row's last positions are its own
    logits = fn(cache, keep=keep, inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
    # (B, vocab) or (B, hidden); with keep: (B, keep, vocab) or (B, keep, hidden)
    out = []
    row = 0
    for r, n in zip(reqs, lens):
        rows = slice(row, row + r.rows)
        data = []
        for layer in cache.layers:
            k, v = layer.keys[rows], layer.values[rows]  # (B_i, kv_heads, C + T, head_dim)
            if r.width == t:
                data.append((k[:, :, c - n :].contiguous(), v[:, :, c - n :].contiguous()))
            else:
                data.append((torch.cat([k[:, :, c - n : c], k[:, :, c + t - r.width :]], dim=2),
                             torch.cat([v[:, :, c - n : c], v[:, :, c + t - r.width :]], dim=2)))
        r.cache.layers = DynamicCache(ddp_cache_data=data).layers
        out.append(logits[rows] if not keep else logits[rows, -r.keep :] if r.keep else logits[rows, -1])
        row += r.rows
    return out


class BatchedLM:
    """A :class:`SegmentLM` whose forwards run through a :class:`ForwardBatcher`.

    Shares the wrapped model's tokenizer, stop ids, byte table and counters; one per
    server (it holds no per-stream state). Hand it to :meth:`QwenTranslator.open_stream`.
    """

    def __init__(self, lm: SegmentLM, batcher: ForwardBatcher) -> None:
        self.base, self.batcher = lm, batcher
        self.model, self.tokenizer, self.device = lm.model, lm.tokenizer, lm.device
        self.stop_ids, self.bytes = lm.stop_ids, lm.bytes

    def counters(self) -> dict[str, int]:
        return self.base.counters()

    # -- the decoder engine (streamst.mt.decoder.DecoderEngine) ---------------------------
    engine_name = "batched"

    def open_decoder(self, *, kv_reuse: bool = True) -> Decoder:
        return self.base.open_decoder(kv_reuse=kv_reuse, lm=self)  # its CachedDecoder, forwards through us

    def observe(self, on_request) -> None:
        """In-process: no engine requests to observe."""

    def batched(self, *, max_rows: int, max_wait_ms: float, name: str) -> tuple[ForwardBatcher, BatchedLM]:
        return self.batcher, self  # already batched

    def new_cache(self) -> DynamicCache:
        return self.base.new_cache()

    def chain(self) -> contextlib.AbstractContextManager[None]:
        return self.batcher.chain()

    def _embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)  # (B, T, hidden)

    @torch.inference_mode()
    def forward_segments(self, segments: Sequence[PromptSegment], start: int, cache: DynamicCache,
                         stop: int | None = None, *, logits: bool = True) -> torch.Tensor | None:
        embeds = embed_segments(segments, start, self.model.get_input_embeddings())  # (T, hidden)
        if stop is not None:
            embeds = embeds[: stop - start]
        return self.batcher.forward(cache, embeds.unsqueeze(0), logits=logits)

    @torch.inference_mode()
    def forward_segments_rows(self, segments: Sequence[PromptSegment], start: int, cache: DynamicCache,
                              keep: int) -> torch.Tensor:
        """The logits of the last ``keep`` positions run, ``(keep, vocab)`` (a draft verified in
        the prefill: :meth:`CachedDecoder.decode`)."""
        embeds = embed_segments(segments, start, self.model.get_input_embeddings())  # (T, hidden)
        return self.batcher.forward(cache, embeds.unsqueeze(0), keep=keep)[0]

    @torch.inference_mode()
    def forward_tokens(self, ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        return self.batcher.forward(cache, self._embed_ids(ids))

    @torch.inference_mode()
    def forward_batch(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                      cache: DynamicCache) -> torch.Tensor:
        return self.batcher.forward(cache, embeds, mask, positions)

    @torch.inference_mode()
    def forward_batch_tokens(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                             cache: DynamicCache) -> torch.Tensor:
        return self.batcher.forward(cache, self._embed_ids(ids), mask, positions)
