"""The decoder interface over an OpenAI-compatible ``/v1/completions`` server.

:class:`HttpEngine` is a :class:`~streamst.mt.decoder.DecoderEngine` whose decoders send each
prompt the stream builds as one completions request: greedy (``temperature`` 0),
``max_tokens`` = the step's budget, stopping at the model's stop ids. The prompt goes as the
same token ids the local decoder runs (``prompt`` = ids: vLLM, SGLang), or, for a prompt with
speech positions, as embeddings (``prompt_embeds``: vLLM, :mod:`streamst.mt.vllm_engine`).

The server's prefix cache takes the place of the local KV cache (a stream's consecutive steps
share the static head and the unchanged source or frozen audio), so ``keep_prefix`` and
``extend`` have nothing to do and ``cached_tokens`` is 0. The answer's token ids
(``return_token_ids``) are detokenised here with the model's own byte table, as the local
decoder does, so the text is the local decoder's whenever the ids are.

Mapped onto the server: ``decode_batch`` is ONE request with several prompts (the server
batches them; ``follow_first`` decodes every row in full: the same agreed prefix),
``sample`` with ``n`` > 1 is one request with ``n`` samples (``top_k``, ``seed``; the server's
sampler, not the local one's strings). Dropped: ``decode(draft=...)`` (the local trick saves
one forward per agreed token; a server decodes its batch every step anyway, and verifying a
draft would take a second request per step).

Calls block (streams run in the server's worker pool). Errors are
:class:`~streamst.errors.RemoteModelError` lines naming the server (the session then ends
with ``engine_unavailable``, ``docs/protocol.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Any

from streamst.errors import RemoteModelError
from streamst.mt.decoder import Decoded, StepStats
from streamst.mt.detok import ByteTable, IncrementalDetokenizer
from streamst.mt.http_client import JsonClient
from streamst.mt.prompt import PromptSegment

# segments -> the request's prompt fields ({"prompt": ids} or {"prompt_embeds": base64})
PromptFields = Callable[[Sequence[PromptSegment]], dict[str, Any]]


def token_prompt(segments: Sequence[PromptSegment]) -> dict[str, Any]:
    """Token segments as ``prompt`` ids (a token segment's keys are its ids)."""
    return {"prompt": [int(k) for s in segments for k in s.keys]}  # type: ignore[call-overload]


class HttpEngine:
    """A completions server as the decoder engine of one model (shared by all streams).

    ``on_request(seconds)`` is called after every request (the server's ``/metrics``
    engine latency).
    """

    engine_name = "http"

    def __init__(self, client: JsonClient, model: str, *, stop_ids: Collection[int], table: ByteTable,
                 prompt: PromptFields = token_prompt, on_request: Callable[[float], None] | None = None,
                 where: str = "") -> None:
        self.client, self.model = client, model
        self.stop_ids = frozenset(stop_ids)
        self.table, self.prompt = table, prompt
        self.on_request = on_request
        self.where = where or client.base_url

    def open_decoder(self, *, kv_reuse: bool = True) -> HttpDecoder:
        return HttpDecoder(self)

    def observe(self, on_request: Callable[[float], None] | None) -> None:
        self.on_request = on_request

    def batched(self, *, max_rows: int, max_wait_ms: float, name: str) -> tuple[None, HttpEngine]:
        return None, self  # the server batches across sessions itself

    def complete(self, prompts: Sequence[Sequence[PromptSegment]], *, max_tokens: int, n: int = 1,
                 sampling: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One request for ``prompts`` (each ``n`` choices); the choices in prompt order."""
        fields = [self.prompt(p) for p in prompts]
        body: dict[str, Any] = {"model": self.model, "max_tokens": max(1, max_tokens), "temperature": 0.0,
                                "stop_token_ids": sorted(self.stop_ids), "return_token_ids": True,
                                "skip_special_tokens": False, "n": n}
        for key in fields[0]:
            body[key] = fields[0][key] if len(fields) == 1 else [f[key] for f in fields]
        body.update(sampling or {})
        t0 = time.perf_counter()
        try:
            doc = self.client.post("/completions", body)
        finally:
            if self.on_request is not None:
                self.on_request(time.perf_counter() - t0)
        choices = doc.get("choices")
        if not isinstance(choices, list) or len(choices) != len(prompts) * n:
            raise RemoteModelError(f"decoder engine {self.where}: expected {len(prompts) * n} choices, "
                                   f"got {len(choices) if isinstance(choices, list) else 'none'}")
        for c in choices:
            if not isinstance(c, dict) or not isinstance(c.get("token_ids"), list):
                raise RemoteModelError(f"decoder engine {self.where}: a choice without token_ids "
                                       "(the server must support return_token_ids: vLLM >= 0.10.2)")
        choices = sorted(choices, key=lambda c: int(c.get("index", 0)))
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        for c in choices:
            c["_cached"] = int(cached or 0) // max(1, len(prompts))  # the server reports the request's total
        return choices


class HttpDecoder:
    """One stream's decoder on a completions server: holds nothing but the last stats."""

    def __init__(self, engine: HttpEngine) -> None:
        self.engine = engine
        self.last: StepStats | None = None

    @property
    def cached_tokens(self) -> int:
        return 0  # the server's prefix cache holds this stream's prompt head

    def keep_prefix(self, keys: Sequence[Hashable]) -> None:
        self.last = None

    def extend(self, segments: Sequence[PromptSegment]) -> int:
        return 0  # the next request's prefix is cached by the server when it runs it

    def decode(self, segments: Sequence[PromptSegment], *, max_new_tokens: int,
               draft: Sequence[int] = ()) -> Decoded:
        return self.decode_batch([segments], max_new_tokens=max_new_tokens)[0]

    def decode_batch(self, prompts: Sequence[Sequence[PromptSegment]], *, max_new_tokens: int,
                     follow_first: bool = False) -> list[Decoded]:
        t0 = time.perf_counter()
        choices = self.engine.complete(prompts, max_tokens=max_new_tokens)
        ms = (time.perf_counter() - t0) * 1e3
        out = [self._decoded(p, c, max_new_tokens, ms) for p, c in zip(prompts, choices)]
        self.last = out[0].stats
        return out

    def sample(self, segments: Sequence[PromptSegment], n: int, *, max_new_tokens: int,
               top_k: int, seed: int) -> list[str]:
        if n < 1:
            return []
        if n == 1:
            return [self.decode(segments, max_new_tokens=max_new_tokens).text]
        choices = self.engine.complete([segments], max_tokens=max_new_tokens, n=n,
                                       sampling={"temperature": 1.0, "top_k": top_k, "seed": seed})
        return [self._decoded(segments, c, max_new_tokens, 0.0).text for c in choices]

    def _decoded(self, segments: Sequence[PromptSegment], choice: dict[str, Any], max_new_tokens: int,
                 ms: float) -> Decoded:
        stop = self.engine.stop_ids
        ids = [int(t) for t in choice["token_ids"]]
        stopped = bool(ids) and ids[-1] in stop
        if stopped:
            ids = ids[:-1]
        ids = ids[:max_new_tokens]  # max_tokens is at least 1: a budget of 0 decodes nothing
        complete = stopped and len(ids) < max_new_tokens or (max_new_tokens == 0 and stopped)
        detok = IncrementalDetokenizer(self.engine.table)
        for t in ids:
            detok.push(t)
        n_prompt = sum(len(s.keys) for s in segments)
        steps = len(ids) + (1 if stopped else 0)
        stats = StepStats(prompt_tokens=n_prompt, reused_tokens=choice["_cached"],
                          computed_tokens=n_prompt - choice["_cached"], new_tokens=len(ids),
                          prefill_ms=ms, decode_ms=0.0, decode_forwards=max(0, steps - 1))
        return Decoded(text=detok.text, token_ids=tuple(ids), complete=complete, steps=max(1, steps), stats=stats)
