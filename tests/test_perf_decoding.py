"""The speed levers of issue 13 keep what they must keep.

* ``CachedDecoder.decode_batch`` gives each prompt exactly the greedy decode that
  ``decode`` gives it alone (tiny Qwen3, float32), and with ``follow_first`` the same agreed
  unit prefix while the first row stays identical.
* The pipeline's batched proposal + alternatives give the same committed text, delays and
  tentative captions as one ``propose`` each.
* The policies' unit budgets bound what a step decodes, and the pipeline never proposes
  more than the budget.
* Thread pinning and the driver's batched path.

No timing is asserted here: speed is measured by ``streamst bench pipeline|asr|mt``.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest
import torch

from streamst.builders.qwen import build_tiny
from streamst.mt.budget import LENGTH_MARGIN, LENGTH_SLACK, final_tokens, length_bound, tokens_for_units
from streamst.mt.kv import CachedDecoder, SegmentLM
from streamst.mt.qwen import QwenOptions, QwenTranslator
from streamst.policy import PolicyConfig, PolicyState, common_prefix_length, make_policy, run_policy
from streamst.text import split_units

SOURCE = "区块链是今年最火热的科技趋势了。所有草莓的基因都由几组含七条染色体的染色体组构造而成。"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def mt(tmp_path_factory: pytest.TempPathFactory) -> QwenTranslator:
    d: Path = tmp_path_factory.mktemp("qwen-tiny-perf")
    build_tiny(d, seed=0)
    return QwenTranslator(d, QwenOptions(local_files_only=True))


def _prompts(stream, prefix: str, committed: str, conts=("", "最火", "的技术")):
    return [stream.prompt.build(prefix + c, committed, max_source_tokens=512, max_target_tokens=512) for c in conts]


@pytest.mark.parametrize("committed", ["", "Block chain is"])
def test_decode_batch_equals_one_decode_per_prompt(mt, committed) -> None:
    stream = mt.open_stream("zh", "en")
    for i in range(3, 31, 9):
        prompts = _prompts(stream, SOURCE[:i], committed)
        ref = [CachedDecoder(mt.lm, kv_reuse=False).decode(p, max_new_tokens=10) for p in prompts]
        got = stream.decoder.decode_batch(prompts, max_new_tokens=10)
        assert [(d.token_ids, d.text, d.complete) for d in got] == [(d.token_ids, d.text, d.complete) for d in ref]
        # the stream's cache keeps the common prefix for the next step (system prompt + source)
        assert 0 < stream.decoder.cached_tokens < min(len([k for s in p for k in s.keys]) for p in prompts)


def test_decode_batch_stops_rows_by_stop_token_and_budget(mt) -> None:
    stream = mt.open_stream("zh", "en")
    prompts = _prompts(stream, SOURCE[:9], "")
    first = [CachedDecoder(mt.lm).decode(p, max_new_tokens=1).token_ids[0] for p in prompts]
    stopping = SegmentLM(mt.model, mt.tokenizer, extra_stop_ids={first[1]})  # row 1 stops at once
    out = CachedDecoder(stopping).decode_batch(prompts, max_new_tokens=5)
    ref = [CachedDecoder(stopping).decode(p, max_new_tokens=5) for p in prompts]
    assert out[1].token_ids == () and out[1].complete
    assert [(d.token_ids, d.complete) for d in out] == [(d.token_ids, d.complete) for d in ref]


def _units(committed: str, text: str, complete: bool) -> list[str]:
    units = split_units(committed + text, "en")
    base = len(split_units(committed, "en"))
    return units[:-1] if not complete and len(units) > base else units


@pytest.mark.parametrize("conts", [("", "最火", "的技术"), ("", "", "")])
def test_follow_first_keeps_the_agreed_prefix(mt, conts) -> None:
    """Rows after the first stop where they leave it; the agreed whole units are unchanged.
    With identical prompts nothing diverges and every row decodes to the budget."""
    stream = mt.open_stream("zh", "en")
    for i, committed in ((6, ""), (15, "Block chain"), (24, "x")):
        prompts = _prompts(stream, SOURCE[:i], committed, conts)
        full = stream.decoder.decode_batch(prompts, max_new_tokens=10)
        fol = stream.decoder.decode_batch(prompts, max_new_tokens=10, follow_first=True)
        assert fol[0] == full[0] or (fol[0].token_ids, fol[0].text) == (full[0].token_ids, full[0].text)
        agreed = [common_prefix_length(*[_units(committed, d.text, d.complete) for d in out]) for out in (full, fol)]
        assert agreed[0] == agreed[1]
        if len(set(conts)) == 1:
            assert all(d.token_ids == full[0].token_ids for d in fol)
        else:
            assert sum(len(d.token_ids) for d in fol) <= sum(len(d.token_ids) for d in full)


def test_tokens_for_units() -> None:
    assert tokens_for_units(4, "en", 48) == 11  # (4 + 1) * 2 + 1
    assert tokens_for_units(4, "zh", 48) == 9  # ceil(5 * 1.5) + 1
    assert tokens_for_units(100, "en", 48) == 48
    assert tokens_for_units(0, "en", 48) >= 1


class _CountingSpeech:
    """A speech model stand-in: 60 ms frames of 2 features; records each encode's frames."""

    frame_ms = 60

    def __init__(self) -> None:
        self.encoded: list[tuple[tuple, int]] = []  # (key, frames) per encode call

    def features(self, samples):
        return torch.zeros(len(samples) // 960, 2).numpy()

    def encode(self, features, keys):
        from streamst.e2e.base import SpeechEmbeddings

        self.encoded += [(k, f.shape[0]) for f, k in zip(features, keys)]
        return [SpeechEmbeddings(torch.zeros(f.shape[0], 2), k) for f, k in zip(features, keys)]

    def open_stream(self, task, src_lang, tgt_lang, *, hotwords=(), lm=None):
        from streamst.mt.base import Proposal

        return types.SimpleNamespace(propose=lambda speech, committed, max_new_tokens: Proposal(committed, "", 1, 0),
                                     reset=lambda: None, extend=lambda speech: None)


def test_the_e2e_lean_config_changes_what_the_e2e_path_encodes() -> None:
    """``--e2e-lean``: the final step encodes only the frames not frozen yet, with 10 frames of
    left context (the default re-encodes the whole utterance), and the policy looks 1 unit
    ahead unless the client set its own lookahead; the text path is untouched."""
    from collections import deque

    from streamst.asr.vad import AlwaysSpeech
    from streamst.errors import UserError
    from streamst.loading import RuntimeOptions
    from streamst.pipeline import PipelineConfig
    from tests.test_e2e import open_e2e

    with pytest.raises(UserError, match="threads must be an integer >= 0"):
        RuntimeOptions(threads=-2)
    cfg = PipelineConfig.create("zh", ["en", "ja"], mode="all", k=4)
    windows = {}
    for name, c in (("default", cfg), ("lean", cfg.e2e_lean())):
        model = _CountingSpeech()
        path = open_e2e(model, AlwaysSpeech(), c, clock=lambda: 0.0, results=deque())
        for i in range(0, 16000 * 3 + 800, 1600):
            path.insert_audio(torch.zeros(1600).numpy())
            path.process()
        path.finish()
        windows[name] = model.encoded
    full = [n for k, n in windows["default"] if k[0] == "e2e"]
    assert len(full) == 1 and full[0] == (16000 * 3 + 800 + 1600 - 800) // 960  # the final step: the whole utterance
    assert all(k[0] == "e2e-window" for k, _ in windows["lean"])  # every step, the final one too
    assert max(n for _, n in windows["lean"]) == 10 + 10  # 600 ms of new frames + 10 of context
    assert max(n for k, n in windows["default"] if k[0] == "e2e-window") == 20 + 10  # 20 frames of context
    for tgt in ("en", "ja"):
        assert cfg.e2e_lean().e2e_policy_for(tgt).lookahead == 1 and cfg.e2e_policy_for(tgt).lookahead == 4
        assert cfg.e2e_lean().policy_for(tgt) == cfg.policy_for(tgt)  # the text path is untouched
    explicit = PipelineConfig.create("zh", "en", mode="e2e", lookahead=3).e2e_lean()
    assert explicit.e2e_policy_for("en").lookahead == 3  # a client's own lookahead wins


def test_final_length_bound() -> None:
    assert length_bound(10) == 10 * LENGTH_MARGIN + LENGTH_SLACK
    assert length_bound(0) == LENGTH_SLACK and length_bound(-3) == LENGTH_SLACK
    assert final_tokens(10, 0, "en", 256) == tokens_for_units(length_bound(10), "en", 256)
    assert final_tokens(10, 5, "en", 256) == tokens_for_units(length_bound(10) - 5, "en", 256)
    assert final_tokens(1, 100, "zh", 256) == tokens_for_units(1, "zh", 256)  # past the bound: one unit
    assert final_tokens(1000, 0, "en", 96) == 96  # never above the cap


def test_final_steps_stop_at_the_length_bound(tiny_models_root, speech) -> None:
    """A model that never emits its stop token (random weights) no longer decodes every
    utterance's final translation, transcript and cascade sentence to the caps (96, 48, 256
    tokens): each final decode gets what the length bound leaves for its input's length."""
    from streamst.audio import read_audio
    from streamst.e2e.config import UNITS_PER_SECOND
    from streamst.loading import Models
    from streamst.pipeline import CASCADE_MAX_TOKENS, PipelineConfig, TranslationSession
    from streamst.profiles import load_profile

    models = Models(load_profile(str(tiny_models_root / "profiles" / "tiny.json")), root=tiny_models_root)
    x, _ = read_audio(speech("今天天气很好", "zh", gap_ms=600))
    config = PipelineConfig.create("zh", "en", mode="all")
    config = dataclasses.replace(config, e2e=dataclasses.replace(config.e2e, source_text=True))
    session = TranslationSession(models, config)
    e2e, text = session.e2e, session.tracks[0]
    track = text.track
    seen: dict[str, list] = {"e2e": [], "transcript": [], "cascade": [], "simul": []}

    def spy(name, obj, attr, record):
        original = getattr(obj, attr)

        def wrapper(*a, **kw):
            out = original(*a, **kw)
            record(out, *a, **kw)
            return out
        setattr(obj, attr, wrapper)

    e2e_track = e2e.tracks[0]
    spy("e2e", e2e.streams[0], "propose", lambda out, speech, committed, max_new_tokens: seen["e2e"].append(
        (e2e_track.state.source_finished, len(e2e_track.state.source), len(e2e_track.state.target), max_new_tokens, out)))
    spy("transcript", e2e.source_stream, "propose", lambda out, speech, committed, max_new_tokens: seen["transcript"].append(
        (speech.embeds.shape[0], max_new_tokens, out)))
    spy("simul", track.proposer.stream, "propose_many", lambda out, sources, committed, max_new_tokens, follow_first:
        seen["simul"].append((track.state.source_finished, len(track.state.source), len(track.state.target), max_new_tokens)))

    class Mt:  # the cascade's sentence translation
        def __getattr__(self, name):
            return getattr(models.mt, name)

        def translate(self, source, src, tgt, *, max_new_tokens=256):
            out = models.mt.translate(source, src, tgt, max_new_tokens=max_new_tokens)
            seen["cascade"].append((max_new_tokens, out))
            return out

    session.models = types.SimpleNamespace(mt=Mt(), punc=models.punc, asr=models.asr)
    for i in range(0, len(x), 9600):
        session.insert_audio(x[i : i + 9600])
        session.process()
    session.finish()

    finals = [f for f in seen["e2e"] if f[0]]
    assert finals, seen
    for _, chunks, committed, budget, out in finals:
        assert budget == final_tokens(chunks * e2e_track.ratio, committed, "en", config.e2e.final_tokens)
        assert budget < config.e2e.final_tokens
        assert out.steps - 1 <= budget and not out.complete  # random weights: it ran to the bound
    [(frames, budget, out)] = seen["transcript"]
    rate = 0.06 * UNITS_PER_SECOND["zh"]  # source units per 60 ms speech frame
    bounds = [final_tokens(n * rate, 0, "zh", config.e2e.final_tokens) for n in (frames - 1, frames + 1)]
    assert bounds[0] <= budget <= bounds[1] < config.e2e.final_tokens
    assert seen["cascade"], seen
    for budget, _ in seen["cascade"]:
        assert budget < CASCADE_MAX_TOKENS
    simul_finals = [f for f in seen["simul"] if f[0]]
    assert simul_finals, seen
    for _, units, committed, budget in simul_finals:
        assert budget == final_tokens(units * track.ratio, committed, "en", config.max_new_tokens)
    # a client's low schedule ratio must not shrink the bound below the pair's typical length
    slow = TranslationSession(models, PipelineConfig.create("zh", "en", mode="all", ratio=0.05))
    assert slow.tracks[0].track.ratio == track.ratio == 0.625
    assert slow.e2e.tracks[0].ratio == e2e_track.ratio > slow.e2e.tracks[0].policy.ratio


def test_unit_budgets_follow_the_schedule_and_end_unbounded() -> None:
    cfg = PolicyConfig.for_pair("zh", "en", lookahead=3)  # k=3, ratio 0.625
    for name in ("wait-k", "reorder-aware", "local-agreement"):
        policy = make_policy(PolicyConfig.for_pair("zh", "en", name=name, lookahead=3))
        state = policy.new_state()
        state.update_source(list("区块链是今年最火"))  # 8 units: wait-k allows floor(6 * 0.625) = 3
        expected = 3 + 3 if name != "local-agreement" else 3
        assert policy.unit_budget(state) == expected
        state.target = ["Blockchain", "is", "the", "most"]  # ahead of the schedule: lookahead only
        assert policy.unit_budget(state) == 3
        state.update_source(list("区块链是今年最火"), finished=True)
        assert policy.unit_budget(state) is None
    assert make_policy(cfg).lookahead == 3
    with pytest.raises(ValueError, match="lookahead"):
        PolicyConfig(lookahead=0)


def _scripted():
    table = {
        "区块链": "Blockchain", "区块链是": "Blockchain is", "区块链是今年": "Blockchain is this year",
        "区块链是今年最火": "Blockchain is the most trendy", "区块链是今年最火热的": "Blockchain is the most trendy of the year",
    }

    def translate(units, finished):
        return split_units(table.get("".join(units), " ".join(units)), "en")

    def cont(units, n):
        return [["最"], ["的"]][:n]

    return translate, cont


def test_driver_translate_many_gives_the_same_traces() -> None:
    translate, cont = _scripted()
    calls: list[int] = []

    def many(sources):
        calls.append(len(sources))
        return [translate(s, False) for s in sources]

    policy = make_policy(PolicyConfig.for_pair("zh", "en"))
    prefixes = [list("区块链"), list("区块链是"), list("区块链是今年"), list("区块链是今年最火"), list("区块链是今年最火热的")]
    one = run_policy(policy, translate, prefixes, cont)
    batched = run_policy(policy, translate, prefixes, cont, translate_many=many)
    assert one == batched
    assert calls == [3] * len(prefixes)  # proposal + 2 alternatives per unfinished step, one call


def test_pipeline_batched_alternatives_match_sequential(tiny_models_root, speech) -> None:
    """Same committed text, delays and tentative captions with and without batching."""
    from streamst.audio import read_audio
    from streamst.loading import Models
    from streamst.pipeline import PipelineConfig, TranslationSession
    from streamst.profiles import load_profile

    models = Models(load_profile(str(tiny_models_root / "profiles" / "tiny.json")), root=tiny_models_root)
    x, _ = read_audio(speech("区块链是今年最火热的科技趋势了", "zh", gap_ms=600))
    config = PipelineConfig.create("zh", "en")
    results = []
    for batched in (True, False):
        session = TranslationSession(models, config)
        if not batched:
            for text in session.tracks:  # a stream without batching: one propose each
                stream = text.track.proposer.stream
                stream.propose_many = lambda srcs, committed, *, max_new_tokens, follow_first=False, one=stream.propose_many: [
                    one([x], committed, max_new_tokens=max_new_tokens)[0] for x in srcs]
        for i in range(0, len(x), 9600):
            session.insert_audio(x[i : i + 9600])
            session.process()
        session.finish()
        results.append([(r.simul, r.delays_ms, r.displays, r.commits) for r in session.results])
    assert results[0] and results[0] == results[1]


def test_pipeline_proposals_stay_within_the_budget(tiny_models_root, speech) -> None:
    from streamst.audio import read_audio
    from streamst.loading import Models
    from streamst.pipeline import PipelineConfig, TranslationSession
    from streamst.profiles import load_profile

    models = Models(load_profile(str(tiny_models_root / "profiles" / "tiny.json")), root=tiny_models_root)
    x, _ = read_audio(speech("区块链是今年最火热的科技趋势了", "zh", gap_ms=600))
    config = PipelineConfig.create("zh", "en", lookahead=2)
    session = TranslationSession(models, config)
    track = session.tracks[0].track
    seen: list[tuple[int, int]] = []
    original = track._propose_many

    def spy(sources, finished=False):
        outs = original(sources, finished)
        budget = None if finished else track.policy.unit_budget(track.state)
        if budget is not None:
            seen.extend((len(o) - len(track.state.target), budget) for o in outs)
        return outs

    track._propose_many = spy  # type: ignore[method-assign]
    for i in range(0, len(x), 9600):
        session.insert_audio(x[i : i + 9600])
        session.process()
    session.finish()
    assert seen and all(n <= b for n, b in seen)


def test_pin_torch_threads(monkeypatch) -> None:
    from streamst import threads

    n = torch.get_num_threads()
    try:
        monkeypatch.setenv(threads.ENV, "1")
        assert threads.pin_torch_threads("cpu") == 1
        torch.set_num_threads(2)
        assert threads.pin_torch_threads("cuda") == 2  # GPU runs are left alone
        monkeypatch.setenv(threads.ENV, "x")
        with pytest.raises(ValueError, match=threads.ENV):
            threads.pin_torch_threads("cpu")
        monkeypatch.setenv(threads.ENV, "0")
        assert threads.pin_torch_threads("cpu") == 2  # 0: torch's own setting stays
        monkeypatch.setenv(threads.ENV, "1")
        assert threads.pin_torch_threads("cpu", 2) == 2  # --threads / RuntimeOptions.threads win
        with pytest.raises(ValueError, match="threads must be an integer >= 0"):
            threads.pin_torch_threads("cpu", -1)
    finally:
        torch.set_num_threads(n)


def test_state_budget_default_is_lookahead() -> None:
    state = PolicyState()
    state.update_source(["a"])
    policy = make_policy(PolicyConfig(name="local-agreement", lookahead=5))
    assert policy.unit_budget(state) == 5


def test_predict_source_with_the_stream_cache_matches_a_cold_run(mt) -> None:
    stream = mt.open_stream("zh", "en")
    for i in range(2, 30, 5):
        for n in (1, 2):
            assert stream.predict_source(SOURCE[:i], n, max_new_tokens=5) == mt.predict_source(SOURCE[:i], n, max_new_tokens=5)
    assert stream._predict.cached_tokens > 0
    stream.reset()
    assert stream._predict.cached_tokens == 0
