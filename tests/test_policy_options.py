"""Policies declare their options once (streamst/policy/config.py); every declared option
reaches the wire protocol's schema, the CLI flags of translate and eval, and the docs table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streamst.cli import build_parser
from streamst.commands.eval import settings_from_args
from streamst.commands.translate import policy_overrides
from streamst.policy.config import POLICY_NAMES, POLICY_OPTIONS, PolicyConfig
from streamst.server.protocol import ProtocolError, parse_text

DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def options_table() -> str:
    """The options as the Markdown table of docs/protocol.md (``start.policy``): on a new
    option, paste this function's output there."""
    rows = ["| option | type | range | default | policies | meaning |", "|---|---|---|---|---|---|"]
    for o in POLICY_OPTIONS:
        span = "true, false" if o.range is None else f"{o.range[0]:g}..{o.range[1]:g}"
        used = "all" if o.policies == POLICY_NAMES else ", ".join(o.policies)
        default = str(o.default).lower() if o.type is bool else o.default
        rows.append(f"| `{o.name}` | {o.type.__name__} | {span} | {default} | {used} | {o.help} |")
    return "\n".join(rows)


def _value(o, at: str = "lo"):
    """A value of ``o`` inside its range (the low end, or the high end)."""
    if o.range is None:
        return at == "lo"
    return o.type(o.range[0] if at == "lo" else o.range[1])


def _flag(o) -> str:
    return "--" + o.name.replace("_", "-")


def test_options_are_the_policy_config_fields() -> None:
    assert {o.name for o in POLICY_OPTIONS} == {f for f in PolicyConfig.__dataclass_fields__} - {"name"}
    assert all(o.type in (int, float, bool) and o.help for o in POLICY_OPTIONS)


@pytest.mark.parametrize("o", POLICY_OPTIONS, ids=lambda o: o.name)
def test_every_option_reaches_the_start_schema(o) -> None:
    for at in ("lo", "hi"):
        value = _value(o, at)
        extra = {"max_lag": 256} if o.name == "k" else {"k": 1} if o.name == "max_lag" else {}  # max_lag >= k
        start = parse_text(json.dumps({"type": "start", "policy": {"name": o.policies[0], o.name: value, **extra}}))
        assert dict(start.policy.overrides)[o.name] == value
    outside = ["yes"] if o.range is None else [o.range[0] - 1, o.range[1] + 1]
    for bad in outside:
        with pytest.raises(ProtocolError) as e:
            parse_text(json.dumps({"type": "start", "policy": {o.name: bad}}))
        assert e.value.code == "bad_value" and o.name in e.value.message


@pytest.mark.parametrize("o", POLICY_OPTIONS, ids=lambda o: o.name)
def test_every_option_is_a_translate_flag_and_an_eval_sweep(o) -> None:
    value = _value(o)
    flag = [_flag(o) if value is not False else "--no-" + _flag(o)[2:]] if o.range is None \
        else [_flag(o), str(value)]
    argv = ["translate", "a.wav", *flag]
    assert policy_overrides(build_parser(argv).parse_args(argv)) == {o.name: value}
    text = "true,false" if o.range is None else f"{_value(o, 'lo')},{_value(o, 'hi')}"
    argv = ["eval", "m.jsonl", "--out", "o", "--policy", o.policies[0], _flag(o), text]
    settings = settings_from_args(build_parser(argv).parse_args(argv))
    assert [p[o.name] for _, p in settings] == [_value(o, "lo"), _value(o, "hi")]


def test_the_docs_table_is_the_generated_one() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- policy-options: generated -->\n(.*?)\n<!-- /policy-options -->", docs, re.S)
    assert found and found.group(1) == options_table()
    assert all(f"| `{o.name}` |" in found.group(1) for o in POLICY_OPTIONS)
