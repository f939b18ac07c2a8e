"""Policies through the real policy code, driven by scripted translators.

A scripted translator is a table: source prefix -> proposed translation, and source
prefix -> predicted *full* sources (the model's continuations of the prefix), whose
translations are in the same table. Every lookup is strict (KeyError on a gap), so a
test cannot silently run on a source the table does not cover.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from streamst.policy import (
    LocalAgreement,
    PolicyConfig,
    PolicyState,
    Read,
    ReorderAware,
    StepTrace,
    WaitK,
    Write,
    apply,
    make_policy,
    run_policy,
    step,
    waitk_allowed,
)
from streamst.text import join_units, split_units


class Scripted:
    """A translator and source predictor playing back tables (zh source, en target)."""

    def __init__(self, translations: dict[str, str], predictions: dict[str, list[str]]) -> None:
        self.translations = translations
        self.predictions = predictions
        self.calls: list[tuple[str, bool]] = []

    def translate(self, source: Sequence[str], finished: bool) -> list[str]:
        text = join_units(list(source), "zh")
        self.calls.append((text, finished))
        return split_units(self.translations[text], "en")

    def continue_source(self, source: Sequence[str], n: int) -> list[list[str]]:
        text = join_units(list(source), "zh")
        predicted = self.predictions[text][:n]
        assert all(p.startswith(text) and p != text for p in predicted), "table error"
        return [split_units(p[len(text) :], "zh") for p in predicted]


def prefixes(text: str, cuts: Sequence[int] | None = None) -> list[list[str]]:
    """Source prefixes of ``text``: every character, or up to each of ``cuts``."""
    units = split_units(text, "zh")
    ends = cuts if cuts is not None else range(1, len(units) + 1)
    return [units[:end] for end in ends]


def committed(trace: StepTrace) -> str:
    return " ".join(trace.committed)


def assert_never_retracted(traces: list[StepTrace]) -> None:
    for before, after in zip(traces, traces[1:]):
        assert after.committed[: len(before.committed)] == before.committed


def by_source(traces: list[StepTrace]) -> dict[str, str]:
    """Committed target after each unfinished step, keyed by the source heard."""
    return {"".join(t.source): committed(t) for t in traces if not t.finished}


# --- BRIEF example 1: waiting for a long-range reorder (zh -> en) -------------------------

BLOCKCHAIN = "区块链是今年最火热的科技趋势了"
BLOCKCHAIN_OFFLINE = "Blockchain is the most trendy technology of the year."

BLOCKCHAIN_TRANSLATIONS = {
    "区": "District",
    "区块": "Block",
    "区块链": "Blockchain",
    "区块链是": "Blockchain is",
    "区块链是今": "Blockchain is this",
    "区块链是今年": "Blockchain is this year",
    "区块链是今年最": "Blockchain is this year's most",
    "区块链是今年最火": "Blockchain is the most trendy",
    "区块链是今年最火热": "Blockchain is the most trendy this year",
    "区块链是今年最火热的": "Blockchain is the most trendy of this year",
    "区块链是今年最火热的科": "Blockchain is the most trendy science of this year",
    "区块链是今年最火热的科技": "Blockchain is the most trendy technology of the year",
    "区块链是今年最火热的科技趋": "Blockchain is the most trendy technology of the year",
    "区块链是今年最火热的科技趋势": "Blockchain is the most trendy technology trend of the year",
    "区块链是今年最火热的科技趋势了": BLOCKCHAIN_OFFLINE,
    # sources that only the predictor proposes
    "区域": "Region",
    "区块的": "The block's",
    "区块链技术": "Blockchain technology",
    "区块链是一种": "Blockchain is a",
    "区块链是今天": "Blockchain is today",
    "区块链是今年的": "Blockchain is this year's",
    "区块链是今年最大": "Blockchain is the biggest this year",
    "区块链是今年最火的技术": "Blockchain is the most trendy technology this year",
    "区块链是今年最火热的话题": "Blockchain is the most trendy topic of the year.",
    "区块链是今年最火热的科学": "Blockchain is the most trendy science of the year",
    "区块链是今年最火热的科技产品": "Blockchain is the most trendy technology product of the year",
    "区块链是今年最火热的科技趋势和应用": "Blockchain is the most trendy technology and application of the year",
    "区块链是今年最火热的科技趋势了。": BLOCKCHAIN_OFFLINE,
}

BLOCKCHAIN_PREDICTIONS = {
    "区": ["区块", "区域"],
    "区块": ["区块链", "区块的"],
    "区块链": ["区块链是", "区块链技术"],
    "区块链是": ["区块链是一种", "区块链是今年"],
    "区块链是今": ["区块链是今年", "区块链是今天"],
    "区块链是今年": ["区块链是今年最火", "区块链是今年的"],
    "区块链是今年最": ["区块链是今年最火", "区块链是今年最大"],
    "区块链是今年最火": ["区块链是今年最火热", "区块链是今年最火的技术"],
    "区块链是今年最火热": ["区块链是今年最火热的", "区块链是今年最火热的话题"],
    "区块链是今年最火热的": ["区块链是今年最火热的科技", "区块链是今年最火热的话题"],
    "区块链是今年最火热的科": ["区块链是今年最火热的科技", "区块链是今年最火热的科学"],
    "区块链是今年最火热的科技": ["区块链是今年最火热的科技趋势", "区块链是今年最火热的科技产品"],
    "区块链是今年最火热的科技趋": ["区块链是今年最火热的科技趋势", "区块链是今年最火热的科技趋势了"],
    "区块链是今年最火热的科技趋势": ["区块链是今年最火热的科技趋势了", "区块链是今年最火热的科技趋势和应用"],
    "区块链是今年最火热的科技趋势了": ["区块链是今年最火热的科技趋势了。"],
}


def run_blockchain(config: PolicyConfig) -> tuple[list[StepTrace], Scripted]:
    scripted = Scripted(BLOCKCHAIN_TRANSLATIONS, BLOCKCHAIN_PREDICTIONS)
    traces = run_policy(make_policy(config), scripted.translate, prefixes(BLOCKCHAIN), scripted.continue_source)
    return traces, scripted


def test_reorder_aware_waits_for_the_head_noun_and_matches_the_offline_translation() -> None:
    traces, _ = run_blockchain(PolicyConfig.for_pair("zh", "en"))
    assert_never_retracted(traces)
    out = by_source(traces)
    # the BRIEF's table, row by row
    assert out["区块链是今年"] == "Blockchain is"
    assert out["区块链是今年最火"] == "Blockchain is the most trendy"
    assert out[BLOCKCHAIN] == BLOCKCHAIN_OFFLINE
    assert committed(traces[-1]) == BLOCKCHAIN_OFFLINE
    assert traces[-1].actions[-1] == Write(0, finished=True)
    # "this year" is heard at character 6 but never committed right after "is"
    for t in traces:
        assert "this" not in t.committed
        assert t.committed[2:3] not in (("this",), ("year",))


def test_reorder_aware_anticipates_beyond_the_wait_k_schedule() -> None:
    config = PolicyConfig.for_pair("zh", "en")
    traces, _ = run_blockchain(config)
    after_8 = next(t for t in traces if len(t.source) == 8)
    # wait-k with the same k and ratio would allow only 3 words after 8 characters
    assert waitk_allowed(8, config.k, config.ratio) == 3
    assert len(after_8.committed) == 5


def test_reorder_aware_respects_the_wait_k_floor() -> None:
    traces, _ = run_blockchain(PolicyConfig.for_pair("zh", "en", k=4))
    out = by_source(traces)
    # with k=3 "Blockchain" is agreed on after 区块链; with k=4 it must wait a character
    assert out["区块链"] == ""
    assert out["区块链是"] == "Blockchain is"
    assert committed(traces[-1]) == BLOCKCHAIN_OFFLINE


def test_stable_option_also_requires_the_previous_proposal_to_agree() -> None:
    traces, _ = run_blockchain(PolicyConfig.for_pair("zh", "en", stable=True))
    out = by_source(traces)
    # the proposal after 区块链是今年最 said "this year's most": "the most trendy" waits a step
    assert out["区块链是今年最火"] == "Blockchain is"
    assert out["区块链是今年最火热"] == "Blockchain is the most trendy"
    assert committed(traces[-1]) == BLOCKCHAIN_OFFLINE
    assert_never_retracted(traces)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_plain_wait_k_commits_this_year_early(k: int) -> None:
    traces, _ = run_blockchain(PolicyConfig.for_pair("zh", "en", name="wait-k", k=k))
    assert_never_retracted(traces)
    early = [t for t in traces if len(t.source) <= 8 and t.committed[2:3] == ("this",)]
    assert early, "wait-k was expected to commit 'this' right after 'is'"
    assert committed(traces[-1]) != BLOCKCHAIN_OFFLINE


def test_wait_k_asks_for_no_alternatives() -> None:
    traces, scripted = run_blockchain(PolicyConfig.for_pair("zh", "en", name="wait-k"))
    assert all(t.alternatives == () for t in traces)
    assert len(scripted.calls) == len(traces)


# --- BRIEF example 2: predicting from context ----------------------------------------------

STRAWBERRY = "所有草莓的基因都由几组含七条染色体的染色体组构造"
HEARD = "所有草莓的基因都由几组含七条染色体的"
STRAWBERRY_OFFLINE = "All genes of strawberry are consist of genomes containing seven chromosomes."

STRAWBERRY_TRANSLATIONS = {
    "所有": "All",
    "所有草莓的": "All strawberry's",
    "所有草莓的基因": "All genes of strawberry",
    "所有草莓的基因都由": "All genes of strawberry are by",
    "所有草莓的基因都由几组含七条": "All genes of strawberry are consist of several groups containing seven",
    HEARD: "All genes of strawberry are consist of several groups of seven chromosomes",
    HEARD + "染色体组": "All genes of strawberry are consist of chromosome sets containing seven chromosomes",
    STRAWBERRY: STRAWBERRY_OFFLINE,
    # sources that only the predictor proposes
    "所有草莓的叶子": "All leaves of strawberry",
    "所有草莓的基因都": "All genes of strawberry are",
    "所有草莓的基因组": "All genomes of strawberry",
    "所有草莓的基因都由几组": "All genes of strawberry are consist of several groups",
    "所有草莓的基因都由父母遗传": "All genes of strawberry are inherited from parents",
    "所有草莓的基因都由几组含七条链构成": "All genes of strawberry are made of several groups of seven strands",
    HEARD + "单倍体组成": "All genes of strawberry are consist of haploid sets containing seven chromosomes",
    HEARD + "染色体组成": "All genes of strawberry are consist of several chromosome sets of seven chromosomes",
    STRAWBERRY + "。": STRAWBERRY_OFFLINE,
}

STRAWBERRY_PREDICTIONS = {
    "所有": ["所有草莓的", "所有草莓的叶子"],
    "所有草莓的": ["所有草莓的基因", "所有草莓的叶子"],
    "所有草莓的基因": ["所有草莓的基因都", "所有草莓的基因组"],
    "所有草莓的基因都由": ["所有草莓的基因都由几组", "所有草莓的基因都由父母遗传"],
    "所有草莓的基因都由几组含七条": [HEARD, "所有草莓的基因都由几组含七条链构成"],
    # the model predicts the continuation that actually comes (染色体组构造)
    HEARD: [STRAWBERRY, HEARD + "单倍体组成"],
    HEARD + "染色体组": [STRAWBERRY, HEARD + "染色体组成"],
    STRAWBERRY: [STRAWBERRY + "。"],
}

STRAWBERRY_CUTS = [2, 5, 7, 9, 14, 18, 22, 24]  # the stable source grows a word or so at a time


def test_reorder_aware_predicts_consist_of_before_the_verb_arrives() -> None:
    scripted = Scripted(STRAWBERRY_TRANSLATIONS, STRAWBERRY_PREDICTIONS)
    policy = make_policy(PolicyConfig.for_pair("zh", "en"))
    traces = run_policy(policy, scripted.translate, prefixes(STRAWBERRY, STRAWBERRY_CUTS), scripted.continue_source)
    assert_never_retracted(traces)
    out = by_source(traces)
    assert out[HEARD] == "All genes of strawberry are consist of"
    first = next(t for t in traces if "consist" in t.committed)
    assert "构" not in "".join(first.source)  # committed before the verb 构造 (consist of) was heard
    assert out[HEARD + "染色体组"] == "All genes of strawberry are consist of"
    assert out[STRAWBERRY] == STRAWBERRY_OFFLINE
    assert committed(traces[-1]) == STRAWBERRY_OFFLINE


# --- invariants and bounds ----------------------------------------------------------------


def churning(source: Sequence[str], finished: bool) -> list[str]:
    """A translator whose proposal changes at every position whenever the source grows."""
    return [f"w{len(source)}.{i}" for i in range(len(source))]


@pytest.mark.parametrize("max_lag", [3, 5, 10])
def test_max_lag_forces_progress(max_lag: int) -> None:
    config = PolicyConfig(k=2, ratio=0.5, max_lag=max_lag, continuations=0)
    units = [f"s{i}" for i in range(40)]
    traces = run_policy(make_policy(config), churning, [units[: i + 1] for i in range(40)])
    assert_never_retracted(traces)
    last_write = 0
    for t in traces[:-1]:
        if t.new_units:
            last_write = len(t.source)
        assert len(t.source) - last_write < max_lag, "read max_lag units without writing"
    # when forced, it catches up with the wait-k schedule
    assert len(traces[-2].committed) >= waitk_allowed(40 - max_lag + 1, 2, 0.5)


def test_without_max_lag_the_churning_translator_gets_nothing_until_the_end() -> None:
    policy = ReorderAware(k=2, ratio=0.5, max_lag=10_000, continuations=0)
    units = [f"s{i}" for i in range(40)]
    traces = run_policy(policy, churning, [units[: i + 1] for i in range(40)])
    assert all(t.committed == () for t in traces[:-1])
    assert len(traces[-1].committed) == 40


def test_reorder_aware_commits_nothing_without_evidence() -> None:
    """First proposal, no alternatives, no history: nothing is supported yet."""
    policy = ReorderAware(k=1, ratio=1.0, max_lag=5, continuations=0)
    state = policy.new_state()
    trace = step(policy, state, lambda s, f: ["a", "b"], ["x"])
    assert trace.actions == (Read(),)
    trace = step(policy, state, lambda s, f: ["a", "c"], ["x", "y"])
    assert trace.committed == ("a",)  # LA-2 fallback: agrees with the previous proposal


@pytest.mark.parametrize(
    ("n_source", "k", "ratio", "allowed"),
    [(0, 1, 1.0, 0), (2, 3, 1.0, 0), (3, 3, 1.0, 1), (7, 3, 1.0, 5), (8, 3, 0.625, 3), (6, 1, 0.6, 3)],
)
def test_waitk_schedule(n_source: int, k: int, ratio: float, allowed: int) -> None:
    assert waitk_allowed(n_source, k, ratio) == allowed


def test_wait_k_with_k_larger_than_the_source_waits_for_the_end() -> None:
    source = ["a", "b", "c"]
    traces = run_policy(WaitK(k=5), lambda s, f: ["X", "Y", "Z"][: len(s)], [source[:1], source[:2], source])
    assert [t.committed for t in traces[:-1]] == [(), (), ()]
    assert traces[-1].committed == ("X", "Y", "Z")
    assert traces[-1].actions == (Write(3, finished=True),)


def test_wait_k_never_writes_beyond_the_proposal() -> None:
    traces = run_policy(WaitK(k=1, ratio=2.0), lambda s, f: ["only"], [["a"], ["a", "b"], ["a", "b", "c"]])
    assert [t.committed for t in traces] == [("only",)] * 4
    assert traces[1].actions == (Read(),)


def test_wait_k_with_an_empty_proposal_reads() -> None:
    policy = WaitK(k=1)
    state = policy.new_state()
    assert step(policy, state, lambda s, f: [], ["a", "b"]).actions == (Read(),)


def test_finished_with_nothing_to_write_ends_the_utterance() -> None:
    for policy in (WaitK(k=2), ReorderAware(k=2, ratio=1.0, max_lag=4), LocalAgreement(2)):
        traces = run_policy(policy, lambda s, f: [], [[]])
        assert traces[-1].actions == (Write(0, finished=True),)
        assert traces[-1].committed == ()


def test_state_reset_and_invariants() -> None:
    policy = WaitK(k=1)
    state = policy.new_state()
    step(policy, state, lambda s, f: ["A", "B"], ["a", "b"])
    assert state.target == ["A", "B"] and state.source_at_write == 2
    with pytest.raises(ValueError, match="extend"):
        state.update_source(["z"])
    with pytest.raises(ValueError, match="start with the committed target"):
        state.set_proposal(["X", "B"])
    with pytest.raises(ValueError, match="exceeds the proposal"):
        apply(state, Write(1))
    with pytest.raises(ValueError, match="before the source finished"):
        apply(state, Write(0, finished=True))
    step(policy, state, lambda s, f: ["A", "B"], ["a", "b"], finished=True)
    assert state.target_finished
    state.reset()
    assert state == PolicyState(max_history=state.max_history)


def test_history_is_bounded() -> None:
    policy = LocalAgreement(3)
    state = policy.new_state()
    for i in range(1, 20):
        step(policy, state, lambda s, f: list(s), [str(j) for j in range(i)])
    assert len(state.history) == 2


# --- LocalAgreement --------------------------------------------------------------------------


def test_local_agreement_2_commits_what_two_consecutive_proposals_share() -> None:
    proposals = {1: ["I"], 2: ["I", "am"], 3: ["I", "was", "here"], 4: ["I", "was", "there"], 5: ["I", "was", "there", "."]}
    traces = run_policy(LocalAgreement(2), lambda s, f: proposals[len(s)], [["x"] * i for i in range(1, 6)])
    assert [committed(t) for t in traces] == ["", "I", "I", "I was", "I was there", "I was there ."]
    assert_never_retracted(traces)


def test_local_agreement_3_needs_three_proposals() -> None:
    traces = run_policy(LocalAgreement(3), lambda s, f: ["same"], [["x"] * i for i in range(1, 4)], finish=False)
    assert [committed(t) for t in traces] == ["", "", "same"]


# --- configuration -------------------------------------------------------------------------


def test_make_policy_builds_each_policy() -> None:
    assert isinstance(make_policy(PolicyConfig()), ReorderAware)
    assert isinstance(make_policy(PolicyConfig(name="wait-k")), WaitK)
    la = make_policy(PolicyConfig(name="local-agreement", la_n=3))
    assert isinstance(la, LocalAgreement) and la.n == 3 and la.continuations == 0
    assert make_policy(PolicyConfig(continuations=3)).continuations == 3


def test_pair_defaults() -> None:
    zh_en = PolicyConfig.for_pair("zh", "en")
    assert (zh_en.k, zh_en.max_lag, zh_en.ratio) == (3, 10, 0.625)
    en_zh = PolicyConfig.for_pair("en", "zh", k=3)
    assert (en_zh.k, en_zh.max_lag, en_zh.ratio) == (3, 6, 1.6)
    assert PolicyConfig.for_pair("de", "fr").ratio == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "wait-x"}, "name must be one of wait-k, reorder-aware, local-agreement"),
        ({"k": 0}, "k must be an integer >= 1"),
        ({"ratio": 0}, "ratio must be > 0"),
        ({"ratio": -1.5}, "ratio must be > 0"),
        ({"k": 5, "max_lag": 4}, "max_lag must be an integer >= k"),
        ({"la_n": 1}, "la_n must be an integer from 2 to 8"),
        ({"continuations": -1}, "continuations must be an integer from 0 to 8"),
    ],
)
def test_invalid_configs_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]


def test_invalid_override_in_for_pair_raises() -> None:
    with pytest.raises(ValueError, match="invalid policy config: k must be"):
        PolicyConfig.for_pair("zh", "en", k=-1)
