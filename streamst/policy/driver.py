"""Drive a policy with a translator: one :func:`step` per new source prefix.

Shared by the pipeline and the tests, so both run the same sequence: update the source,
get the proposal (and alternatives under predicted continuations), decide, apply.

``translate(source_units, finished) -> target units`` proposes the full target for a
source prefix. A real decoder is forced to start with the committed target (the pipeline
closes over ``state.target``); output that is not is made so with :func:`force_prefix`.
``continue_source(source_units, n) -> [continuation units, ...]`` predicts up to ``n``
continuations of the source; each ``source + continuation`` is translated as an
alternative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamst.policy.base import Action, Policy, PolicyState, Read, apply, force_prefix

Translate = Callable[[Sequence[str], bool], list[str]]
ContinueSource = Callable[[Sequence[str], int], list[list[str]]]
TranslateMany = Callable[[Sequence[Sequence[str]]], list[list[str]]]  # unfinished sources -> proposals


@dataclass(frozen=True)
class StepTrace:
    """What one step saw and did (for tests, docs tables and debugging)."""

    source: tuple[str, ...]
    finished: bool
    proposal: tuple[str, ...]
    alternatives: tuple[tuple[str, ...], ...]
    actions: tuple[Action, ...]
    new_units: tuple[str, ...]
    committed: tuple[str, ...]  # the whole committed target after the step


def step(
    policy: Policy,
    state: PolicyState,
    translate: Translate,
    source: Sequence[str],
    finished: bool = False,
    continue_source: ContinueSource | None = None,
    translate_many: TranslateMany | None = None,
) -> StepTrace:
    """Feed one source prefix (extending the previous one) and apply the policy's actions.

    The policy is asked again after each non-final write, with the same proposal, until
    it reads or finishes; the translator is called once per step (plus once per
    alternative when the policy asks for continuations and the source is unfinished).
    The continuations are predicted first; with ``translate_many`` the proposal and the
    alternatives are then translated in one call (a batched decode) instead of one each.
    """
    state.update_source(source, finished)
    conts: list[list[str]] = []
    if policy.continuations > 0 and continue_source is not None and not finished:
        conts = [list(c) for c in continue_source(state.source, policy.continuations)[: policy.continuations]]
    sources = [list(state.source)] + [state.source + c for c in conts]
    if translate_many is not None and len(sources) > 1:
        outs = translate_many(sources)  # one batched decode; the source is unfinished here
    else:
        outs = [translate(sources[0], finished)] + [translate(s, False) for s in sources[1:]]
    proposal = force_prefix(state.target, outs[0])
    alternatives = [force_prefix(state.target, alt) for alt in outs[1:]]
    state.set_proposal(proposal, alternatives)
    actions: list[Action] = []
    new: list[str] = []
    while not state.target_finished:
        action = policy.decide(state)
        actions.append(action)
        if isinstance(action, Read):
            break
        new += apply(state, action)
        if action.n == 0:  # a final write of nothing
            break
    return StepTrace(
        source=tuple(state.source),
        finished=finished,
        proposal=tuple(proposal),
        alternatives=tuple(tuple(a) for a in alternatives),
        actions=tuple(actions),
        new_units=tuple(new),
        committed=tuple(state.target),
    )


def run_policy(
    policy: Policy,
    translate: Translate,
    prefixes: Sequence[Sequence[str]],
    continue_source: ContinueSource | None = None,
    finish: bool = True,
    translate_many: TranslateMany | None = None,
) -> list[StepTrace]:
    """Run one utterance: a step per source prefix, then (``finish``) a final step with
    the last prefix and ``finished=True``. Returns one trace per step."""
    state = policy.new_state()
    traces = [step(policy, state, translate, p, False, continue_source, translate_many) for p in prefixes]
    if finish:
        last = prefixes[-1] if prefixes else []
        traces.append(step(policy, state, translate, last, True, continue_source, translate_many))
    return traces
