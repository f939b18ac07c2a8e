"""How many decoder tokens a proposal of ``n`` target units needs (a safe over-estimate).

The policy bounds a step's proposals in target *units* (``Policy.unit_budget``: words, or
characters for zh/ja/yue); the decoder counts tokens. Qwen's byte-level BPE spends about
1.3 tokens per English word (a leading space is part of the token) and 0.7-1.0 per common
CJK character, up to 2-3 for rare ones; the factors below leave room for that, plus one
unit, because a proposal cut by the budget loses its last (maybe partial) unit.
"""

from __future__ import annotations

import math

from streamst.text import is_char_lang

TOKENS_PER_WORD = 2.0
TOKENS_PER_CHAR = 1.5


def tokens_for_units(units: int, tgt_lang: str, cap: int) -> int:
    """Token budget for ``units`` whole target units (never more than ``cap``, at least 1)."""
    per = TOKENS_PER_CHAR if is_char_lang(tgt_lang) else TOKENS_PER_WORD
    return max(1, min(cap, math.ceil((units + 1) * per) + 1))


# A translation or transcript longer than LENGTH_MARGIN times its expected length (plus
# LENGTH_SLACK units) is a runaway, never a real output: a model caught in a repetition loop,
# or one that never emits its stop token (random weights always run to the budget). The
# final step of an utterance, whose proposal is otherwise bounded only by ``max_new_tokens``,
# stops there (issue 13: a runaway decode cost one real-size session 96 forwards per utterance).
LENGTH_MARGIN = 2.0
LENGTH_SLACK = 4


def length_bound(expected_units: float) -> int:
    """The most units a whole output of ``expected_units`` expected units may have."""
    return math.ceil(max(0.0, expected_units) * LENGTH_MARGIN) + LENGTH_SLACK


def final_tokens(expected_units: float, committed_units: int, lang: str, cap: int) -> int:
    """Token budget of an utterance's final decode: what :func:`length_bound` leaves beyond
    the ``committed_units`` already written (at least one unit), never more than ``cap``."""
    return tokens_for_units(max(1, length_bound(expected_units) - committed_units), lang, cap)
