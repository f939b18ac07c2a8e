"""``python -m streamst.quality.sweep`` setting syntax."""

from __future__ import annotations

import pytest

from streamst.quality.sweep import parse_setting


def test_setting_syntax():
    assert parse_setting("wait-k") == ("wait-k", {}, {})
    assert parse_setting("reorder-aware:k=5,continuations=4,max_lag=20,stable=true,ratio=0.5,continuation_tokens=12") == (
        "reorder-aware", {"k": 5, "continuations": 4, "max_lag": 20, "stable": True, "ratio": 0.5},
        {"continuation_tokens": 12})
    with pytest.raises(ValueError):
        parse_setting("wait-k:k")
