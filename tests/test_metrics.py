"""Latency, flicker and retraction metrics on small hand-computed cases."""

from __future__ import annotations

import pytest

from streamst.metrics.latency import (
    LATENCY_METRICS,
    LatencyInput,
    average_lagging,
    average_proportion,
    computation_aware_delays,
    corpus_latency,
    differentiable_average_lagging,
    end_offset,
    flicker,
    length_adaptive_average_lagging,
    normalized_flicker,
    reference_length,
    retractions,
    start_offset,
    utterance_latency,
)

D = [100, 200, 900]  # 3 units, the last after the 800 ms source ended
X = 800


def test_registry_names_are_simuleval_names():
    assert list(LATENCY_METRICS) == ["AL", "LAAL", "DAL", "AP", "StartOffset", "EndOffset"]
    for fn in LATENCY_METRICS.values():
        assert "SimulEval" in (fn.__doc__ or "")


def test_al_with_reference():
    # gamma = 4/800, 1/gamma = 200: (100 + (200-200) + (900-400)) / 3
    assert average_lagging(D, X, 4) == pytest.approx(200.0)


def test_al_shorter_reference_and_laal():
    # ref 2: 1/gamma = 400: (100 - 200 + 100) / 3 = 0
    assert average_lagging(D, X, 2) == pytest.approx(0.0)
    # LAAL uses max(3, 2) = 3: 1/gamma = 800/3
    assert length_adaptive_average_lagging(D, X, 2) == pytest.approx((100 + (200 - 800 / 3) + (900 - 1600 / 3)) / 3)
    # with the longer reference LAAL == AL
    assert length_adaptive_average_lagging(D, X, 4) == average_lagging(D, X, 4)


def test_al_without_reference_uses_hypothesis_length():
    assert average_lagging(D, X, None) == pytest.approx((100 + (200 - 800 / 3) + (900 - 1600 / 3)) / 3)


def test_al_tau_stops_at_first_delay_reaching_source_end():
    # 1/gamma = 200; tau = 2 (800 >= 800): (0 + 600) / 2; the later units are ignored
    assert average_lagging([0, 800, 800, 800], 800, 4) == pytest.approx(300.0)
    assert average_lagging([0, 800, 5000, 9000], 800, 4) == pytest.approx(300.0)


def test_all_output_after_source_end():
    # d_1 > |X|: AL = LAAL = d_1
    assert average_lagging([900, 1000], 800, 2) == 900
    assert length_adaptive_average_lagging([900, 1000], 800, 7) == 900
    # DAL has no such rule: 1/gamma = 400; g' = 900, max(1000, 1300)
    assert differentiable_average_lagging([900, 1000], 800, 2) == pytest.approx((900 + 900) / 2)
    # exactly at the end (d_1 == |X|) is not "after": normal formula, tau = 1
    assert average_lagging([800, 800], 800, 2) == 800


def test_dal():
    # n = 3, 1/gamma = 800/3; g' = 100, max(200, 100 + 800/3), 900
    expected = (100 + (100 + 800 / 3 - 800 / 3) + (900 - 1600 / 3)) / 3
    assert differentiable_average_lagging(D, X, 4) == pytest.approx(expected)
    assert differentiable_average_lagging(D, X, 4) == differentiable_average_lagging(D, X, None)


def test_ap_offsets_single_unit():
    assert average_proportion(D, X, 4) == pytest.approx(1200 / 3200)
    assert average_proportion(D, X, None) == pytest.approx(1200 / 2400)
    assert start_offset(D, X) == 100
    assert end_offset(D, X) == 100
    one = [500]
    assert average_lagging(one, 1000) == 500
    assert length_adaptive_average_lagging(one, 1000) == 500
    assert differentiable_average_lagging(one, 1000) == 500
    assert average_proportion(one, 1000) == 0.5
    assert end_offset(one, 1000) == -500


def test_empty_and_invalid():
    for fn in LATENCY_METRICS.values():
        with pytest.raises(ValueError, match="empty"):
            fn([], 1000, 3)
        with pytest.raises(ValueError, match="source_length"):
            fn([10], 0, 3)
    with pytest.raises(ValueError, match="target length"):
        average_lagging([10, 20], 1000, 0)


def test_reference_length_counts_like_simuleval():
    assert reference_length("a b c", "word") == 3
    assert reference_length("a  b", "word") == 3  # split(" ") keeps the empty word
    assert reference_length("", "word") == 1
    assert reference_length(" 区块 链 ", "char") == 4  # inner space counts
    with pytest.raises(ValueError):
        reference_length("x", "spm")  # type: ignore[arg-type]


def test_utterance_and_corpus_latency():
    a = LatencyInput(D, X, 4, elapsed=computation_aware_delays(D, [50, 100, 300]))
    empty = LatencyInput([], 1000, 2, elapsed=[])
    assert utterance_latency(empty) is None
    u = utterance_latency(a, computation_aware=True)
    assert set(u) == {m + "_CA" for m in LATENCY_METRICS}
    # elapsed = 150, 300, 1200: (150 + 100 + 800) / 3
    assert u["AL_CA"] == pytest.approx(350.0)
    b = LatencyInput([400], 1000, None, elapsed=[450])
    corpus = corpus_latency([a, empty, b])
    assert corpus["AL"] == pytest.approx((200.0 + 400.0) / 2)  # the empty one is skipped
    assert corpus_latency([empty]) == {m: None for m in LATENCY_METRICS}
    with pytest.raises(ValueError, match="elapsed"):
        utterance_latency(LatencyInput(D, X), computation_aware=True)
    with pytest.raises(ValueError):
        computation_aware_delays([1, 2], [1])


def test_flicker_counts_erased_units():
    assert flicker(["I", "I am", "I am here"], "en") == 0
    assert flicker(["I", "I am", "I was", "I was here"], "en") == 1
    # "c" dropped, then "b" replaced by "x"
    assert flicker(["a b c", "a b", "a x c d"], "en") == 2
    # characters for zh: 块链是 erased
    assert flicker(["区块链", "区块链是", "区快"], "zh") == 3
    assert normalized_flicker(["区块链", "区块链是", "区快"], "zh") == pytest.approx(1.5)
    assert flicker([], "en") == 0 and normalized_flicker([], "en") == 0.0


def test_retractions():
    assert retractions(["", "Blockchain", "Blockchain is", "Blockchain is the"], "en") == 0
    assert retractions(["a b", "a c"], "en") == 1
    assert retractions(["区块链是", "区块链是今年"], "zh") == 0
