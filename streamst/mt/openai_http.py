"""The simultaneous text decoder served by an OpenAI-compatible HTTP server.

Stateless streamst front-ends (VAD, ASR, policy) share GPU decoders run by vLLM, SGLang or
``transformers serve``: every ``propose`` is one ``POST {base_url}/completions`` (the raw
completions endpoint, no server-side chat template) whose prompt is exactly the prompt the
local decoder (:mod:`streamst.mt.qwen`) feeds its model::

    {system + user header}{source prefix}{end of user + assistant header + empty think}{committed}

rendered here with the model's own tokenizer and chat template (``PromptBuilder``, shared with
the local decoder), so the committed target really is forced: the server continues it, it
never regenerates it. Greedy (``temperature`` 0), at most ``max_tokens``, stopping at
``<|im_end|>`` (the model's end-of-turn token, and the ``stop`` strings of the options).
The server's prefix cache (vLLM ``--enable-prefix-caching``, SGLang's radix cache) takes the place of the local decoder's KV reuse: consecutive steps of a stream share
the system prompt and the source prefix. ``Proposal.reused_tokens`` is the server's
``usage.prompt_tokens_details.cached_tokens`` where it reports it (else 0) and ``steps`` is
``usage.completion_tokens`` (one forward pass per generated token, the prefill included, as
the local decoder counts).

``prompt="text"`` (default; all three servers) sends the prompt as text; the server's
tokenizer then parses control tokens in it, so the source and committed text are sent with
control-token strings (``<|im_end|>`` and the like) removed: a transcript cannot forge a turn
boundary. ``prompt="tokens"`` (vLLM, SGLang) sends the token ids instead: the same ids the
local decoder runs, control-token strings split into plain tokens as it does.

Output text: ``complete`` is False when the server stopped for length (``finish_reason``
"length"), so the pipeline drops the possibly partial last word as with the local decoder;
a character cut in the middle of its UTF-8 bytes comes back from the server as U+FFFD, which
is dropped, as the local byte-level detokeniser (:mod:`streamst.mt.detok`) drops incomplete
and invalid bytes.

Calls block (the pipeline runs model work in the server's worker pool, off the event loop).
The translator holds the tokenizer and a pool of keep-alive connections
(:class:`~streamst.mt.http_client.JsonClient`); a stream holds only its prompt builder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from streamst.errors import ModelNotFoundError, RemoteModelError, UserError
from streamst.mt.base import Proposal
from streamst.mt.completions import HttpEngine
from streamst.mt.detok import ByteTable
from streamst.mt.http_client import HttpStatusError, JsonClient
from streamst.mt.qwen import PromptBuilder

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

STOP = "<|im_end|>"
DEFAULT_API_KEY_ENV = "STREAMST_MT_API_KEY"


@dataclass(frozen=True)
class HttpOptions:
    """How the HTTP decoder reaches its server; the profile's ``mt.options`` (JSON keys =
    field names)."""

    # OpenAI-style base URL, e.g. http://127.0.0.1:8000/v1 ("/v1" is added when no path is given)
    base_url: str
    # the model name the server serves (vllm serve NAME / --served-model-name; transformers
    # serve: the model id or path it was started with)
    model: str
    # the environment variable holding the API key (sent as a Bearer token when set)
    api_key_env: str = DEFAULT_API_KEY_ENV
    # "text": prompt as text (all servers); "tokens": prompt as token ids (vLLM, SGLang)
    prompt: Literal["text", "tokens"] = "text"
    # seconds to connect, and to wait for one answer
    connect_timeout_s: float = 5.0
    timeout_s: float = 60.0
    # concurrent requests of one stream's propose_many (proposal + alternatives)
    parallel: int = 4
    # the same per-stream bounds as the local decoder (QwenOptions)
    max_source_tokens: int = 512
    max_target_tokens: int = 512
    # predict_source with n > 1: sampled on the server (temperature, top_p, seed + i)
    predict_temperature: float = 1.0
    predict_top_p: float = 0.95
    seed: int = 0
    # stop strings besides the model's own end-of-turn token (Qwen's generation_config ends
    # at <|im_end|> anyway; transformers serve spends ~1 s per request on stop strings, so
    # its profiles set "stop": [])
    stop: tuple[str, ...] = (STOP,)
    # check at load that the server is up and lists `model` (GET /models)
    check: bool = True
    # extra fields for every completions request (e.g. vLLM/SGLang {"top_k": 20}); a server
    # rejects fields it does not know (transformers serve: HTTP 422)
    extra_body: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.base_url, str) or not self.base_url:
            problems.append("base_url (http://host:port/v1) is required")
        if not isinstance(self.model, str) or not self.model:
            problems.append("model (the name the server serves) is required")
        if self.prompt not in ("text", "tokens"):
            problems.append(f"prompt must be 'text' or 'tokens', got {self.prompt!r}")
        for name in ("connect_timeout_s", "timeout_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 3600:
                problems.append(f"{name} must be a number of seconds in (0, 3600], got {v!r}")
        for name, lo in (("parallel", 1), ("max_source_tokens", 1), ("max_target_tokens", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                problems.append(f"{name} must be an integer >= {lo}, got {v!r}")
        if problems:
            raise UserError("mt openai-http options: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> HttpOptions:
        """From a profile's ``options`` object; unknown keys are an error (typos would
        otherwise be ignored silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"mt openai-http options: unknown {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(sorted(known))})")
        kw = dict(options)
        if "stop" in kw:
            if not isinstance(kw["stop"], (list, tuple)) or not all(isinstance(x, str) for x in kw["stop"]):
                raise UserError("mt openai-http options: stop must be a list of strings")
            kw["stop"] = tuple(kw["stop"])
        if "extra_body" in kw:
            if not isinstance(kw["extra_body"], Mapping):
                raise UserError("mt openai-http options: extra_body must be a JSON object")
            kw["extra_body"] = tuple(kw["extra_body"].items())
        if "base_url" not in kw or "model" not in kw:
            raise UserError("mt openai-http options: base_url and model are required "
                            '(e.g. {"base_url": "http://127.0.0.1:8000/v1", "model": "Qwen/Qwen3-0.6B"})')
        return cls(**kw)

    @property
    def url(self) -> str:
        """``base_url`` with ``/v1`` added when it names no path."""
        from urllib.parse import urlsplit

        base = self.base_url.rstrip("/")
        return base + "/v1" if urlsplit(base).path in ("", "/") else base


class OpenAIHttpTranslator:
    """A :class:`~streamst.mt.base.Translator` whose model runs on an OpenAI-compatible server.

    ``tokenizer``: the model's tokenizer (the chat template and token counts are computed
    here); ``load(source, options)`` loads it from a directory or hub id (only tokenizer
    files are needed, not weights).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, options: HttpOptions):
        self.tokenizer, self.options = tokenizer, options
        self.name = f"{options.model} @ {options.url}"
        self.special = tuple(sorted({t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
                                     if getattr(t, "special", False)}, key=len, reverse=True))
        api_key = os.environ.get(options.api_key_env) or None
        self.client = JsonClient(options.url, api_key=api_key, timeout_s=options.timeout_s,
                                 connect_timeout_s=options.connect_timeout_s)
        if options.check:
            self.check_server()
        # the decoder seam (streamst.mt.decoder): this server batches across sessions itself
        self.engine = HttpEngine(self.client, options.model, stop_ids=_stop_ids(tokenizer), table=ByteTable(tokenizer))

    @classmethod
    def load(cls, source: str, options: HttpOptions, *, hint: str = "") -> OpenAIHttpTranslator:
        """The tokenizer from ``source`` (directory or hub id), then the server check."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise ModelNotFoundError(f"tokenizer of the HTTP MT model not found at {source!r}; "
                                     f"{hint or 'point the profile mt source at the model directory or hub id'}") from e
        return cls(tokenizer, options)

    def check_server(self) -> None:
        """One line when the server is down or does not serve ``options.model``."""
        models = self.client.get("/models")
        data = models.get("data")
        names = [m.get("id") for m in (data if isinstance(data, list) else []) if isinstance(m, dict)]
        if names and self.options.model not in names:
            raise RemoteModelError(f"MT server {self.options.url} does not serve model {self.options.model!r} "
                                   f"(it serves: {', '.join(map(str, names))}); set the profile's mt.options.model")

    def open_stream(self, src_lang: str, tgt_lang: str) -> OpenAIHttpStream:
        return OpenAIHttpStream(self, PromptBuilder(self.tokenizer, src_lang, tgt_lang))

    def translate(self, source: str, src_lang: str, tgt_lang: str, *, max_new_tokens: int = 256) -> str:
        """Whole-sentence translation with the same prompt (the cascade's offline reference)."""
        return self.open_stream(src_lang, tgt_lang).propose(source, "", max_new_tokens=max_new_tokens).text

    def close(self) -> None:
        self.client.close()

    # -- requests -------------------------------------------------------------------------

    def complete(self, prompt: str | list[int], *, max_tokens: int, temperature: float = 0.0,
                 top_p: float | None = None, seed: int | None = None) -> tuple[str, bool, dict[str, Any]]:
        """One ``/completions`` request: (text without broken characters, stopped before the
        budget, usage)."""
        body: dict[str, Any] = {"model": self.options.model, "prompt": prompt, "max_tokens": max_tokens,
                                "temperature": temperature}
        if self.options.stop:
            body["stop"] = list(self.options.stop)
        if top_p is not None:
            body["top_p"] = top_p
        if seed is not None:
            body["seed"] = seed
        body.update(self.options.extra_body)
        try:
            doc = self.client.post("/completions", body)
        except HttpStatusError as e:
            raise self._explain(e) from e
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) \
                or not isinstance(choices[0].get("text"), str):
            raise RemoteModelError(f"MT server {self.options.url}: a completions answer without choices[0].text")
        choice = choices[0]
        text = choice["text"].replace("\ufffd", "")  # half a character at a cut (or invalid bytes)
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
        return text, choice.get("finish_reason") != "length", usage

    def _explain(self, e: HttpStatusError) -> RemoteModelError:
        """A wrong model name gets its own line (servers say it as 400 or 404)."""
        if e.status in (400, 404) and "model" in e.detail.lower():
            return RemoteModelError(f"MT server {self.options.url} does not serve model {self.options.model!r}: "
                                    f"{e.detail}; set the profile's mt.options.model")
        if e.status in (401, 403):
            return RemoteModelError(f"MT server {self.options.url} refused the request (HTTP {e.status}: {e.detail}); "
                                    f"set the API key in ${self.options.api_key_env}")
        if e.status == 404:
            return RemoteModelError(f"MT server {self.options.url} has no /completions endpoint (HTTP 404: {e.detail}); "
                                    "streamst needs the raw completions API (vLLM, SGLang, transformers serve have it)")
        return e

    def clean(self, text: str) -> str:
        """``text`` without control-token strings (prompt="text": the server would parse them)."""
        for s in self.special:
            if s in text:
                text = text.replace(s, "")
        return text

    def ids(self, text: str) -> list[int]:
        """Token ids of plain text, control-token strings split (as the local decoder does)."""
        if not text:
            return []
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


class OpenAIHttpStream:
    """One session's stream: the prompt builder of its language pair. The KV state lives in
    the server's prefix cache, so ``reset`` has nothing to drop."""

    def __init__(self, translator: OpenAIHttpTranslator, prompt: PromptBuilder):
        self.translator, self.prompt = translator, prompt
        self.options = translator.options

    def reset(self) -> None:
        """Nothing per utterance is kept here."""

    def render(self, source: str, committed: str) -> str | list[int]:
        """The prompt of one step, as text or as token ids (``options.prompt``)."""
        o, t = self.options, self.translator
        if o.prompt == "tokens":
            segments = self.prompt.build(source, committed, max_source_tokens=o.max_source_tokens,
                                         max_target_tokens=o.max_target_tokens)
            return [int(i) for s in segments for i in s.ids]  # type: ignore[attr-defined]
        return (self.prompt.head_text + self._capped(t.clean(source), o.max_source_tokens)
                + self.prompt.tail_text + self._capped(t.clean(committed), o.max_target_tokens))

    def _capped(self, text: str, cap: int) -> str:
        """The text of the last ``cap`` tokens of ``text`` (the local decoder's bound)."""
        ids = self.translator.ids(text)
        return text if len(ids) <= cap else self.translator.tokenizer.decode(ids[-cap:])

    def propose(self, source: str, committed: str, *, max_new_tokens: int = 64) -> Proposal:
        """The server's greedy continuation of ``committed`` for the source prefix; the
        committed text is forced (part of the prompt), so ``text`` starts with it."""
        text, complete, usage = self.translator.complete(self.render(source, committed), max_tokens=max_new_tokens)
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return Proposal(text=committed + text, continuation=text, steps=int(usage.get("completion_tokens") or 0),
                        reused_tokens=int(cached or 0), complete=complete)

    def propose_many(self, sources: list[str], committed: str, *, max_new_tokens: int = 64,
                     follow_first: bool = False) -> list[Proposal]:
        """``propose`` for several source prefixes as concurrent requests (the server batches
        them). ``follow_first`` is accepted for the interface; each row is decoded in full,
        which gives the policy the same agreement."""
        return self._concurrently(lambda s: self.propose(s, committed, max_new_tokens=max_new_tokens), sources)

    def _concurrently(self, fn, items: list) -> list:
        """``[fn(x) for x in items]``, up to ``parallel`` requests in flight, results in order."""
        if len(items) <= 1 or self.options.parallel == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.options.parallel, len(items))) as pool:
            return list(pool.map(fn, items))

    def predict_source(self, source: str, n: int, *, max_new_tokens: int = 8) -> list[str]:
        """``n`` continuations of the plain source text (no chat template): greedy for
        ``n == 1`` (the local decoder's result), else ``n`` sampled requests, concurrent as in
        ``propose_many`` (seeds ``seed .. seed + n - 1``; not the local top-k sampler's strings)."""
        if n < 1:
            return []
        o, t = self.options, self.translator
        if o.prompt == "tokens":
            ids = t.ids(source)[-o.max_source_tokens:]
            prompt: str | list[int] = ids or [_bos_id(t.tokenizer)]
        else:
            prompt = self._capped(t.clean(source), o.max_source_tokens) or (t.tokenizer.bos_token or "<|endoftext|>")
        if n == 1:
            return [t.complete(prompt, max_tokens=max_new_tokens)[0]]
        return self._concurrently(lambda i: t.complete(prompt, max_tokens=max_new_tokens, temperature=o.predict_temperature,
                                                       top_p=o.predict_top_p, seed=o.seed + i)[0], list(range(n)))


def _stop_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids = {tokenizer.convert_tokens_to_ids(STOP), tokenizer.eos_token_id}
    return {int(i) for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id}


def _bos_id(tokenizer: PreTrainedTokenizerBase) -> int:
    tid = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id
    return int(tid) if tid is not None else 0
