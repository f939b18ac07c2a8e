"""The policy contract: one state object per stream, two actions, one abstract method.

Modelled on SimulEval's agents: a policy looks at a :class:`PolicyState` and answers
:class:`Read` (wait for more source) or :class:`Write` (commit the next ``n`` units of the
decoder's current proposal). Policies hold no per-stream data and never call a model: the
pipeline (or :mod:`streamst.policy.driver`) fills the state with the stable source, the
decoder's proposal and, when the policy asks for them, proposals under model-predicted
continuations of the source; then it calls :meth:`Policy.decide` and :func:`apply`.

Units are those of :mod:`streamst.text`: characters for zh/ja/yue, words otherwise.
Committed target units are never retracted; :func:`apply` is the only place that commits.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class PolicyState:
    """Everything a policy may look at, for the current utterance of one stream.

    One object per stream, created by :meth:`Policy.new_state` and :meth:`reset` at every
    utterance boundary. Updated only through :meth:`update_source`, :meth:`set_proposal`
    and :func:`apply`, which check the invariants:

    * ``source`` only grows (it holds *stable* ASR units, which never change);
    * ``target`` only grows and is always a prefix of ``proposal`` and of every alternative.
    """

    source: list[str] = field(default_factory=list)
    """Stable source units of the current utterance heard so far."""
    source_finished: bool = False
    """The utterance ended: no more source units will come."""
    target: list[str] = field(default_factory=list)
    """Committed target units (never retracted)."""
    target_finished: bool = False
    """A ``Write(finished=True)`` was applied: the utterance's translation is complete."""
    proposal: list[str] = field(default_factory=list)
    """The decoder's full proposed target for the current source; starts with ``target``."""
    alternatives: list[list[str]] = field(default_factory=list)
    """Proposals for ``source`` + model-predicted continuations of it (may be empty)."""
    history: list[list[str]] = field(default_factory=list)
    """Earlier proposals of this utterance, oldest first, at most ``max_history``."""
    source_at_write: int = 0
    """``len(source)`` when units were last committed (0 before the first write);
    ``len(source) - source_at_write`` is the lag that ``max_lag`` bounds."""
    max_history: int = 4
    """Bound on ``history`` (kept across :meth:`reset`)."""

    @property
    def lag(self) -> int:
        """Source units read since the last write (or since the utterance began)."""
        return len(self.source) - self.source_at_write

    def reset(self) -> None:
        """Start a new utterance: forget source, target, proposals and history."""
        self.source = []
        self.source_finished = False
        self.target = []
        self.target_finished = False
        self.proposal = []
        self.alternatives = []
        self.history = []
        self.source_at_write = 0

    def update_source(self, units: Sequence[str], finished: bool = False) -> None:
        """Replace the source by ``units``, which must extend the current source."""
        units = list(units)
        if units[: len(self.source)] != self.source:
            raise ValueError("stable source units changed: the new source must extend the old one")
        if self.source_finished and (len(units) > len(self.source) or not finished):
            raise ValueError("the utterance already finished; call reset() first")
        self.source = units
        self.source_finished = finished

    def set_proposal(self, proposal: Sequence[str], alternatives: Sequence[Sequence[str]] = ()) -> None:
        """Install the decoder's proposal (and alternatives) for the current source.

        The previous proposal, if any, moves to ``history``. Every proposal must start
        with the committed ``target`` (use :func:`force_prefix` on free-running output).
        """
        proposal = list(proposal)
        alts = [list(a) for a in alternatives]
        for p in (proposal, *alts):
            if p[: len(self.target)] != self.target:
                raise ValueError("a proposal must start with the committed target")
        if self.proposal:
            self.history.append(self.proposal)
            del self.history[: max(0, len(self.history) - self.max_history)]
        self.proposal = proposal
        self.alternatives = alts


@dataclass(frozen=True)
class Read:
    """Wait for more source before writing."""


@dataclass(frozen=True)
class Write:
    """Commit the next ``n`` units of ``state.proposal`` beyond ``state.target``.

    ``finished=True`` ends the utterance's translation (only when the source finished).
    ``n`` may be 0 only together with ``finished=True``.
    """

    n: int
    finished: bool = False


Action = Read | Write


class Policy(abc.ABC):
    """A simultaneous read/write policy over units. Stateless: all state is in
    :class:`PolicyState`, so one policy object may serve any number of streams."""

    continuations: int = 0
    """How many predicted source continuations the pipeline should translate into
    ``state.alternatives`` before each decision (0: leave them empty)."""
    history_size: int = 1
    """How many earlier proposals the policy needs in ``state.history``."""
    agreement_only: bool = True
    """The policy looks at ``state.alternatives`` only through their common prefix with
    ``state.proposal``, so a decoder may stop each alternative where it first differs
    (the pipeline then decodes them in one batch that follows the proposal)."""
    lookahead: int = 4
    """Target units beyond what the policy may commit by its schedule that are worth
    decoding (agreement evidence, anticipation, the tentative caption); see
    :meth:`unit_budget`. Set from ``PolicyConfig.lookahead``."""

    @abc.abstractmethod
    def decide(self, state: PolicyState) -> Action:
        """Read or write, given the current state. Must not modify ``state``."""

    def unit_budget(self, state: PolicyState) -> int | None:
        """How many target units beyond ``state.target`` this step's proposals need.

        A proposal longer than this cannot change the decision (the policy never commits
        more than ``unit_budget`` new units on the step) and only lengthens the tentative
        caption, so the decoder may stop there. ``None``: no bound (the source finished:
        the rest of the translation is written). The default is ``lookahead`` units; a
        scheduled policy adds what its schedule allows (:class:`WaitK`,
        :class:`ReorderAware`).
        """
        if state.source_finished:
            return None
        return self.lookahead

    def new_state(self) -> PolicyState:
        """A fresh per-stream state whose history bound suits this policy."""
        return PolicyState(max_history=max(1, self.history_size))


def apply(state: PolicyState, action: Action) -> list[str]:
    """Apply ``action`` to ``state`` and return the units it committed (maybe none).

    Raises ValueError for a write beyond the proposal, a negative or empty non-final
    write, or ``finished=True`` before the source finished.
    """
    if isinstance(action, Read):
        return []
    start = len(state.target)
    if action.n < 0 or (action.n == 0 and not action.finished):
        raise ValueError(f"invalid write of {action.n} units")
    if start + action.n > len(state.proposal):
        raise ValueError(
            f"write of {action.n} units exceeds the proposal ({len(state.proposal) - start} left)"
        )
    if action.finished and not state.source_finished:
        raise ValueError("finished=True before the source finished")
    new = state.proposal[start : start + action.n]
    state.target.extend(new)
    if new:
        state.source_at_write = len(state.source)
    state.target_finished = action.finished
    return new


def common_prefix_length(first: Sequence[str], *others: Sequence[str]) -> int:
    """Length of the longest common prefix of all the given unit sequences."""
    n = len(first)
    for other in others:
        n = min(n, len(other))
        for i in range(n):
            if first[i] != other[i]:
                n = i
                break
    return n


def force_prefix(target: Sequence[str], units: Sequence[str]) -> list[str]:
    """``units`` with its first ``len(target)`` units replaced by ``target``.

    What a decoder forced to start with the committed target would propose, for
    translators (scripted tables, free-running models) that ignore the committed target.
    """
    return list(target) + list(units[len(target) :])
