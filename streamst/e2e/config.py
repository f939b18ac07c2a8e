"""The e2e path's own options, and its policy over audio chunks (units are chunks)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from streamst.policy.config import PolicyConfig, default_ratio

# Typical speech rates in source units per second (characters for zh/ja/yue, words otherwise):
# the e2e wait-k schedule writes about ``chunk_s * rate * target-per-source ratio`` units a chunk.
UNITS_PER_SECOND: dict[str, float] = {"zh": 4.0, "yue": 4.5, "ja": 6.0, "ko": 3.0, "en": 2.5}

# The opt-in cost levers (``--e2e-lean``; issue 13): each utterance's final step encodes only
# the frames not frozen yet (no whole-utterance re-encode and re-prefill, for the translation
# and the transcript), 600 ms of encoder left context instead of 1.2 s, and a policy lookahead
# of 1 unit (fewer tokens decoded per chunk step). Outputs differ from the offline decode of
# each utterance, which the default keeps; with them one real-size session (Fun-ASR-Nano,
# int8) keeps up with real time on a 2-core CPU (docs/architecture.md).
E2E_LEAN: dict[str, Any] = {"final_encoding": "incremental", "context_frames": 10, "lookahead": 1}


@dataclass(frozen=True)
class E2EConfig:
    """Options of the e2e path (its chunk grid is the session's ``asr.chunk_ms``)."""

    step_tokens: int = 16  # budget of a proposal while the utterance is open
    final_tokens: int = 96  # budget once it ended (the rest of the translation)
    max_utterance_ms: int = 20_000  # an utterance this long is closed, the next opened where it stopped
    encoding: Literal["full", "incremental"] = "incremental"  # per chunk step; the final step: final_encoding
    context_frames: int = 20  # incremental encoding: left context of the new frames (1.2 s)
    # the utterance-final step: "full" re-encodes the whole utterance (what offline decoding
    # sees); "incremental" (with incremental chunk steps) encodes only the frames not yet
    # frozen, so the decoders keep every audio K/V and the transcript's stream is prefilled
    # chunk by chunk: the final step's cost no longer grows with the utterance (outputs differ)
    final_encoding: Literal["full", "incremental"] = "full"
    lookahead: int | None = None  # the policy's lookahead (units) unless set explicitly; None: the policy's
    source_text: bool | None = None  # an LLM transcript per utterance; None: only in mode e2e

    def lean(self) -> "E2EConfig":
        """These options with the opt-in cost levers (:data:`E2E_LEAN`)."""
        return replace(self, **E2E_LEAN)

    def policy_for(self, src_lang: str, tgt_lang: str, chunk_ms: int, name: str, **overrides: Any) -> PolicyConfig:
        """Policy options over audio chunks: ``k`` chunks before the first write (default 2, i.e.
        1.2 s), ``max_lag`` chunks without a write at most (4), ``ratio`` target units per chunk,
        ``lookahead`` unless ``overrides`` (a client's) set it, no predicted source continuations
        (audio cannot be predicted: the reorder-aware guard is agreement with the previous
        chunk's proposal)."""
        rate = UNITS_PER_SECOND.get(src_lang.split("-")[0], 3.0)
        ratio = round(chunk_ms / 1000 * rate * default_ratio(src_lang, tgt_lang), 3)
        base = dict(name=name, k=2, max_lag=4, ratio=ratio)
        if self.lookahead is not None:
            base["lookahead"] = self.lookahead
        base.update(overrides, continuations=0)
        base["max_lag"] = max(base["max_lag"], base["k"])
        return PolicyConfig(**base)
