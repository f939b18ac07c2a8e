"""Policy options (one frozen dataclass), per-language-pair defaults, and the factory.

``PolicyConfig.for_pair("zh", "en")`` gives the defaults for a pair; override fields with
keyword arguments or ``dataclasses.replace``. ``make_policy(config)`` builds the policy.

Each option field is declared with :func:`option` (the range a client or a flag may set, a
help line, the policies that use it); :data:`POLICY_OPTIONS` reads them back, and from it
come the wire protocol's ``start.policy`` schema, the policy flags of ``translate`` and
``eval`` and the options table of docs/protocol.md (made by tests/test_policy_options.py).
A new option is one field here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

from streamst.policy.base import Policy
from streamst.policy.local_agreement import LocalAgreement
from streamst.policy.reorder import ReorderAware
from streamst.policy.waitk import WaitK
from streamst.languages import default_ratio, pair_defaults  # noqa: F401 (default_ratio re-exported)

PolicyName = Literal["wait-k", "reorder-aware", "local-agreement"]
POLICY_NAMES: tuple[str, ...] = get_args(PolicyName)

# The ratio of a pair (expected target units per source unit: zh->en 0.625, en->zh 1.6,
# ja->en 0.455) and the other per-pair defaults come from the language table
# (streamst.languages.pair_defaults); tune per domain with ``ratio=``.


def option(default: Any, lo: float | None, hi: float | None, help: str, *policies: str) -> Any:
    """A declared policy option: its default, the range users may set (None: a boolean), a
    help line and the policies that read it (none named: every policy)."""
    return field(default=default, metadata={"range": None if lo is None else (lo, hi), "help": help,
                                            "policies": policies or POLICY_NAMES})


@dataclass(frozen=True)
class PolicyOption:
    name: str
    type: type  # int, float or bool
    default: Any
    range: tuple[float, float] | None
    help: str
    policies: tuple[str, ...]


@dataclass(frozen=True)
class PolicyConfig:
    """Options of the simultaneous policy. Units are source units unless said otherwise."""

    name: PolicyName = "reorder-aware"
    k: int = option(3, 1, 64, "wait-k lag in source units", "wait-k", "reorder-aware")
    """Source units read before the first write (the wait-k latency floor). 3 zh
    characters is about two words, i.e. ~0.6 s of speech."""
    ratio: float = option(1.0, 0.05, 20.0, "target units per source unit", "wait-k", "reorder-aware")
    """Expected target units per source unit; scales the wait-k schedule
    (``for_pair`` sets it, e.g. 0.625 English words per Chinese character)."""
    max_lag: int = option(10, 1, 256, "forced-progress bound (source units; >= k)", "reorder-aware")
    """reorder-aware: write per the wait-k schedule anyway once this many source units
    were read without a write (10 zh characters is about 2 s of speech)."""
    la_n: int = option(2, 2, 8, "local-agreement n", "local-agreement")
    """local-agreement: how many consecutive proposals must agree (LA-2 as in
    whisper_streaming)."""
    continuations: int = option(2, 0, 8, "predicted source continuations", "reorder-aware")
    """reorder-aware: predicted source continuations translated as alternatives."""
    stable: bool = option(False, None, None, "also agree with the previous proposal", "reorder-aware")
    """reorder-aware: also require agreement with the previous proposal (slower, safer)."""
    lookahead: int = option(4, 1, 64, "target units decoded beyond what a step may commit")
    """Target units decoded per step beyond what the wait-k schedule allows (beyond the
    committed target for local-agreement): the room for anticipation and agreement, and
    the tentative caption's length. Proposals stop there instead of translating the whole
    prefix (``Policy.unit_budget``); the final step of an utterance is never bounded."""

    def __post_init__(self) -> None:
        problems = []
        if self.name not in POLICY_NAMES:
            problems.append(f"name must be one of {', '.join(POLICY_NAMES)}, got {self.name!r}")
        if not isinstance(self.k, int) or self.k < 1:
            problems.append(f"k must be an integer >= 1, got {self.k!r}")
        if not self.ratio > 0:
            problems.append(f"ratio must be > 0 (target units per source unit), got {self.ratio!r}")
        if not isinstance(self.max_lag, int) or (isinstance(self.k, int) and self.max_lag < self.k):
            problems.append(f"max_lag must be an integer >= k ({self.k!r}), got {self.max_lag!r}")
        if not isinstance(self.la_n, int) or not 2 <= self.la_n <= 8:
            problems.append(f"la_n must be an integer from 2 to 8, got {self.la_n!r}")
        if not isinstance(self.continuations, int) or not 0 <= self.continuations <= 8:
            problems.append(f"continuations must be an integer from 0 to 8, got {self.continuations!r}")
        if not isinstance(self.lookahead, int) or not 1 <= self.lookahead <= 64:
            problems.append(f"lookahead must be an integer from 1 to 64, got {self.lookahead!r}")
        if problems:
            raise ValueError("invalid policy config: " + "; ".join(problems))

    @classmethod
    def for_pair(cls, src_lang: str, tgt_lang: str, **overrides: Any) -> PolicyConfig:
        """Defaults for translating ``src_lang`` into ``tgt_lang``, then ``overrides``.

        From the language table (:func:`streamst.languages.pair_defaults`): character sources
        (zh/ja/yue) wait k=3 characters with max_lag=10, word sources k=2 words with
        max_lag=6 (both about 0.6 s and 2 s of speech); a verb-final source into a target
        that is not (ja->en, hi->en, tr->de) may wait 1.5 times as long before it writes.
        """
        base = cls(**pair_defaults(src_lang, tgt_lang))  # type: ignore[arg-type]
        return dataclasses.replace(base, **overrides)


POLICY_OPTIONS: tuple[PolicyOption, ...] = tuple(
    PolicyOption(f.name, get_type_hints(PolicyConfig)[f.name], f.default, f.metadata["range"], f.metadata["help"],
                 f.metadata["policies"])
    for f in dataclasses.fields(PolicyConfig) if "help" in f.metadata)


def make_policy(config: PolicyConfig) -> Policy:
    """Build the policy named by ``config``."""
    policy: Policy
    if config.name == "wait-k":
        policy = WaitK(config.k, config.ratio)
    elif config.name == "local-agreement":
        policy = LocalAgreement(config.la_n)
    else:
        policy = ReorderAware(config.k, config.ratio, config.max_lag, config.continuations, config.stable)
    policy.lookahead = config.lookahead
    return policy
