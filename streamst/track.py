"""One simultaneous track: one stream into one target language under a READ/WRITE policy.

A :class:`Track` owns the policy state, the unit -> token budget, the events and the utterance
result, and each committed unit's ``delay`` (ms of source audio read, SimulEval ``delays``) and
``elapsed`` (delay + the processing time spent on its utterance so far: SimulEval's ``elapsed``,
each instance on its own clock, so later utterances' ``_CA`` figures do not grow by the compute
of earlier ones). A path feeds it source units (words, characters or chunk names); it decodes
with the path's :class:`Proposer`.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence, Sequence
from typing import Literal, Protocol

from streamst.events import LatencyEvent, TranslationEvent
from streamst.mt.base import Proposal
from streamst.mt.budget import final_tokens, tokens_for_units
from streamst.policy import PolicyConfig, PolicyState, force_prefix, make_policy, step
from streamst.results import UtteranceResult, utterance_metrics
from streamst.text import join_units, output_units, split_units

class Proposer(Protocol):
    """What a track decodes with: target proposals for source prefixes, the committed target forced."""

    def propose_many(self, sources: Sequence[Sequence[str]], committed: str, *, max_new_tokens: int,
                     follow_first: bool = False) -> list[Proposal]:
        """One proposal per source prefix (units), batched where the decoder can; ``follow_first``:
        later ones may stop where they first differ from the first."""
        ...

    def continuations(self, source: Sequence[str], n: int) -> list[list[str]]:
        """Up to ``n`` predicted continuations of the source (units); ``[]`` if it cannot."""
        ...

    def reset(self) -> None:
        """Forget the utterance (a new one begins)."""
        ...


class Track:
    """Policy state, token budgets, latency bookkeeping, events and results of one target
    language of one path. ``clock()``: the session's processing time so far (ms)."""

    def __init__(self, path: Literal["simul", "e2e"], tgt_lang: str, policy: PolicyConfig, typical_ratio: float,
                 proposer: Proposer | None, *, step_tokens: int, final_tokens: int, clock: Callable[[], float],
                 results: MutableSequence[UtteranceResult]) -> None:
        self.path, self.tgt = path, tgt_lang
        self.step_tokens, self.final_tokens = step_tokens, final_tokens
        self.clock, self.results = clock, results
        self.current: UtteranceResult | None = None
        self.tentative = ""
        self.compute_base = 0.0  # clock() when the current utterance began
        self.use(policy, typical_ratio, proposer)

    def use(self, policy: PolicyConfig, typical_ratio: float, proposer: Proposer | None) -> None:
        """Policy, fresh state and proposer (None: no simultaneous output). ``typical_ratio``: the
        pair's target units per source unit; the final step's length bound takes it, or the
        policy's schedule ratio when larger (a low one must not cut text)."""
        self.ratio, self.proposer = max(policy.ratio, typical_ratio), proposer
        self.policy = make_policy(policy)
        self.state: PolicyState = self.policy.new_state()

    def begin(self, utterance: int, start_ms: int, base: float | None = None) -> None:
        """A new utterance; ``base``: the processing time it starts from (default: now)."""
        self.state.reset()
        if self.proposer is not None:
            self.proposer.reset()
        self.tentative = ""
        self.compute_base = self.clock() if base is None else base
        self.current = UtteranceResult(utterance, self.tgt, start_ms, start_ms, "", path=self.path)

    def step(self, source: Sequence[str], finished: bool, delay_ms: float, audio_ms: int) -> list[TranslationEvent]:
        """One policy step over the source units read so far (``delay_ms`` of audio)."""
        cur, state = self.current, self.state
        assert cur is not None and self.proposer is not None
        trace = step(self.policy, state, lambda s, fin: self._propose_many([s], fin)[0], source, finished,
                     self.proposer.continuations, self._propose_many)
        tentative = "" if finished else join_units(state.proposal[len(state.target):], self.tgt)
        ev = self.event(self.path, join_units(state.target, self.tgt), trace.new_units, delay_ms, audio_ms,
                        tentative, finished)
        cur.delays_ms += ev.delays_ms
        cur.elapsed_ms += ev.elapsed_ms
        cur.displays.append(" ".join(x for x in (ev.committed, tentative) if x))
        cur.commits.append(ev.committed)
        if finished:
            setattr(cur, self.path, ev.committed)
        elif not ev.new_units and tentative == self.tentative:
            return []
        self.tentative = tentative
        return [ev]

    def event(self, mode: Literal["simul", "e2e", "cascade"], committed: str, new: Sequence[str], delay_ms: float,
              audio_ms: int, tentative: str = "", final: bool = True) -> TranslationEvent:
        """A translation event of the current utterance: ``new`` units committed now, at ``delay_ms``."""
        assert self.current is not None
        delay = float(delay_ms)
        elapsed = delay + self.clock() - self.compute_base
        return TranslationEvent(utterance=self.current.utterance, mode=mode, language=self.tgt, committed=committed,
                                new_units=tuple(new), delays_ms=(delay,) * len(new), elapsed_ms=(elapsed,) * len(new),
                                tentative=tentative, final=final, audio_ms=audio_ms)

    def close(self, end_ms: int, source: str, retention_proxy: float | None = None) -> LatencyEvent:
        """The utterance's latency figures (delays relative to its start); its result kept."""
        cur = self.current
        assert cur is not None
        cur.end_ms, cur.source, cur.retention_proxy = end_ms, source, retention_proxy
        cur.metrics = utterance_metrics(cur)
        self.results.append(cur)
        self.current = None
        return LatencyEvent(utterance=cur.utterance, language=self.tgt, source_ms=max(1.0, float(end_ms - cur.start_ms)),
                            metrics=cur.metrics, retention_proxy=retention_proxy, mode=self.path)

    def _propose_many(self, sources: Sequence[Sequence[str]], finished: bool = False) -> list[list[str]]:
        """Target units proposed for source prefixes (proposal + alternatives) within the budget."""
        assert self.proposer is not None
        target = self.state.target
        # perf: decode only what the policy may commit on this step (+ lookahead); see docs/policy.md
        budget = None if finished else self.policy.unit_budget(self.state)
        max_new = self.final_tokens if finished else self.step_tokens
        if budget is not None:
            max_new = tokens_for_units(budget, self.tgt, max_new)
        elif finished:  # the rest of the translation, bounded against a runaway decode (mt/budget.py)
            max_new = final_tokens(len(sources[0]) * self.ratio, len(target), self.tgt, max_new)
        props = self.proposer.propose_many(sources, join_units(target, self.tgt), max_new_tokens=max_new,
                                           follow_first=self.policy.agreement_only)
        outs = []
        for prop in props:
            out = split_units(prop.text, self.tgt)
            if not finished and not prop.complete and len(out) > len(target):
                out = out[:-1]  # cut by the budget: the last unit may be a partial word
            out = output_units(out, self.tgt)  # the target's written form (full-width marks: text.py)
            if budget is not None:
                out = out[: len(target) + budget]
            outs.append(force_prefix(target, out))
        return outs
