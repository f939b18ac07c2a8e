"""Reorder-aware wait-k: wait where word order forces a reorder, predict where it is safe.

The default policy. It combines three rules (see docs/policy.md for worked examples):

1. **Latency floor** (from wait-k): nothing is written before ``k`` source units were read.
2. **Guard + anticipation** (agreement): the pipeline translates the source *and* up to
   ``continuations`` model-predicted continuations of it. Target unit ``j`` is *supported*
   when it is the same at position ``j`` in the proposal and in every alternative
   proposal (and, with ``stable=True``, in the previous proposal too). The policy commits
   the longest supported prefix. This withholds units that a plausible continuation of the
   source would change (zh "今年" heard early: "this year" moves to the end once a head
   noun arrives, so the alternatives disagree there), and it commits units the source does
   not literally contain yet when every predicted future agrees (anticipation: "consist
   of" before the verb 构造 is heard). The agreed prefix is *not* capped by the wait-k
   schedule. With no alternatives (continuations 0, or the model predicted none) the
   previous proposal stands in for them (LocalAgreement-2); with neither, nothing is
   supported.
3. **max_lag** (progress): when ``max_lag`` source units were read since the last write,
   the policy writes ``max(1, allowed - |target|)`` units anyway, ``allowed`` being the
   wait-k schedule of :func:`waitk_allowed`; so no more than ``max_lag`` source units
   pass without a write while the proposal has units left, and latency cannot run away.

Every write is bounded by the proposal; once the source finished the rest of the proposal
is written with ``finished=True``.
"""

from __future__ import annotations

from streamst.policy.base import Action, Policy, PolicyState, Read, Write, common_prefix_length
from streamst.policy.waitk import waitk_allowed


def supported_length(state: PolicyState, stable: bool = False) -> int:
    """Length of the prefix of ``state.proposal`` that all evidence agrees on.

    Evidence: ``state.alternatives``, or the previous proposal when there are none;
    with ``stable`` the previous proposal is required to agree as well. Never less than
    ``len(state.target)`` (committed units are agreed by construction).
    """
    previous = state.history[-1:]
    if state.alternatives:
        evidence = state.alternatives + (previous if stable else [])
    else:
        evidence = previous
    if not evidence:
        return len(state.target)
    return max(len(state.target), common_prefix_length(state.proposal, *evidence))


class ReorderAware(Policy):
    """Wait-k floor + agreement guard with anticipation + max_lag progress bound."""

    history_size = 1

    def __init__(
        self, k: int, ratio: float, max_lag: int, continuations: int = 2, stable: bool = False
    ) -> None:
        self.k = k
        self.ratio = ratio
        self.max_lag = max_lag
        self.continuations = continuations
        self.stable = stable

    def decide(self, state: PolicyState) -> Action:
        committed = len(state.target)
        left = len(state.proposal) - committed
        if state.source_finished:
            return Write(left, finished=True)
        if len(state.source) < self.k:
            return Read()
        n = supported_length(state, self.stable) - committed
        if state.lag >= self.max_lag:
            n = max(n, 1, waitk_allowed(len(state.source), self.k, self.ratio) - committed)
        n = min(n, left)
        return Write(n) if n > 0 else Read()

    def unit_budget(self, state: PolicyState) -> int | None:
        """The wait-k schedule's units beyond the committed target (what ``max_lag`` may
        force) plus ``lookahead`` units of anticipation. Anticipation is bounded by it:
        at most ``lookahead`` units beyond the schedule (or beyond the target, when it is
        already ahead) are agreed on per step."""
        if state.source_finished:
            return None
        allowed = waitk_allowed(len(state.source), self.k, self.ratio)
        return max(0, allowed - len(state.target)) + self.lookahead

    def __repr__(self) -> str:
        return (
            f"ReorderAware(k={self.k}, ratio={self.ratio}, max_lag={self.max_lag}, "
            f"continuations={self.continuations}, stable={self.stable})"
        )
