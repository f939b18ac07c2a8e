"""Wait-k (Ma et al., 2019, "STACL"), over units, with a length ratio.

Classic wait-k reads ``k`` source units, then alternates one write and one read. Source
and target lengths differ (a zh character is about 0.6 English words), so the schedule
is scaled by ``ratio``, the expected number of target units per source unit:

    allowed(|x|) = 0                                  if |x| < k
                   floor((|x| - k + 1) * ratio)       otherwise

is how many target units may be committed once ``|x|`` source units were read. With
``ratio == 1`` this is exactly STACL's g(t) = k + t - 1 read before the t-th write.
The policy never writes beyond the decoder's proposal, and once the source finished
it writes the rest of the proposal with ``finished=True``.
"""

from __future__ import annotations

import math

from streamst.policy.base import Action, Policy, PolicyState, Read, Write


def waitk_allowed(n_source: int, k: int, ratio: float) -> int:
    """Target units the wait-k schedule allows after ``n_source`` source units."""
    if n_source < k:
        return 0
    # the epsilon keeps e.g. 5 * 0.6 = 2.9999999999999996 from flooring to 2
    return math.floor((n_source - k + 1) * ratio + 1e-9)


class WaitK(Policy):
    """Wait-k over units: commit what the schedule allows, at most the proposal."""

    def __init__(self, k: int, ratio: float = 1.0) -> None:
        self.k = k
        self.ratio = ratio

    def decide(self, state: PolicyState) -> Action:
        left = len(state.proposal) - len(state.target)
        if state.source_finished:
            return Write(left, finished=True)
        n = min(waitk_allowed(len(state.source), self.k, self.ratio) - len(state.target), left)
        return Write(n) if n > 0 else Read()

    def unit_budget(self, state: PolicyState) -> int | None:
        """What the schedule allows beyond the committed target, plus ``lookahead``."""
        if state.source_finished:
            return None
        allowed = waitk_allowed(len(state.source), self.k, self.ratio)
        return max(0, allowed - len(state.target)) + self.lookahead

    def __repr__(self) -> str:
        return f"WaitK(k={self.k}, ratio={self.ratio})"
