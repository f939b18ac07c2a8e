"""LocalAgreement-n (Polák et al., 2022; ufal whisper_streaming), the baseline policy.

Commit the longest common prefix of the last ``n`` proposals (the current one and the
``n - 1`` before it, from ``state.history``). Until ``n`` proposals were seen nothing is
committed. There is no wait-k floor and no lag bound: latency is whatever it takes for
consecutive proposals to agree. Once the source finished the rest is written.
"""

from __future__ import annotations

from streamst.policy.base import Action, Policy, PolicyState, Read, Write, common_prefix_length


class LocalAgreement(Policy):
    """LA-n: write what the last ``n`` proposals agree on."""

    def __init__(self, n: int = 2) -> None:
        self.n = n
        self.history_size = n - 1

    def decide(self, state: PolicyState) -> Action:
        committed = len(state.target)
        if state.source_finished:
            return Write(len(state.proposal) - committed, finished=True)
        earlier = state.history[-(self.n - 1) :] if self.n > 1 else []
        if len(earlier) < self.n - 1:
            return Read()
        n = common_prefix_length(state.proposal, *earlier) - committed
        return Write(n) if n > 0 else Read()

    def __repr__(self) -> str:
        return f"LocalAgreement(n={self.n})"
