"""Punctuation (CT-Transformer, rules) and VAD (FSMN, energy) through the real loaders.

The tiny model directories are built once per session into a temp dir and loaded by
``funasr.AutoModel`` exactly as downloaded ones are. Their weights are random (plus the
hand-set paths documented in the builders), so only properties that hold for any
weights are asserted, except where a test says it checks the builder's energy path.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from streamst.asr.fsmn_vad import FsmnVad, FsmnVadModel, FsmnVadOptions
from streamst.asr.punc import CtPunctuator, RulePunctuator, is_punct, transfer_marks
from streamst.asr.vad import SAMPLE_RATE, EnergyVad, EnergyVadOptions, Vad, VadEvent
from streamst.builders import ctpunc, fsmnvad
from streamst.errors import ModelNotFoundError

SR = SAMPLE_RATE
HINT = "run `streamst models build --profile tiny`"


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    dirs = {"punc": root / "ct-punc", "vad": root / "fsmn-vad"}
    ctpunc.build_tiny(dirs["punc"], seed=0)
    fsmnvad.build_tiny(dirs["vad"], seed=0)
    return dirs


@pytest.fixture(scope="session")
def punctuator(tiny_dirs: dict[str, Path]) -> CtPunctuator:
    return CtPunctuator.load(tiny_dirs["punc"], hint=HINT, ncpu=1)


@pytest.fixture(scope="session")
def vad_model(tiny_dirs: dict[str, Path]) -> FsmnVadModel:
    return FsmnVadModel.load(tiny_dirs["vad"], hint=HINT, ncpu=1)


def test_load_and_calls_restore_torch_threads(
    tiny_dirs: dict[str, Path], punctuator: CtPunctuator
) -> None:
    """AutoModel sets the process-wide thread count to its ncpu at load and every call."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vad_model = FsmnVadModel.load(tiny_dirs["vad"], hint=HINT, ncpu=1)
        assert torch.get_num_threads() == 2
        punctuator.punctuate("你好世界")
        FsmnVad(vad_model).accept(np.zeros(SR, dtype=np.float32))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def without_punct(s: str) -> str:
    return "".join(c for c in s if not is_punct(c))


# ---------------------------------------------------------------- builders / loading


def test_builders_registered() -> None:
    assert ctpunc.BUILDERS == {"ct-punc-tiny": ctpunc.build_tiny}
    assert fsmnvad.BUILDERS == {"fsmn-vad-tiny": fsmnvad.build_tiny}


@pytest.mark.parametrize("module", [ctpunc, fsmnvad])
def test_builder_is_deterministic(module, tmp_path: Path) -> None:
    module.build_tiny(tmp_path / "a", seed=3)
    module.build_tiny(tmp_path / "b", seed=3)
    module.build_tiny(tmp_path / "c", seed=4)
    a, b, c = (torch.load(tmp_path / d / "model.pt") for d in "abc")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    cfg_a, cfg_b = ((tmp_path / d / "config.yaml").read_bytes() for d in "ab")
    assert cfg_a == cfg_b


def test_loaded_weights_come_from_model_pt(
    tiny_dirs: dict[str, Path], punctuator: CtPunctuator, vad_model: FsmnVadModel
) -> None:
    """FunASR silently keeps random init for missing/mismatched keys: check it did not."""
    pairs = ((tiny_dirs["punc"], punctuator.auto_model), (tiny_dirs["vad"], vad_model.auto_model))
    for d, am in pairs:
        saved = torch.load(d / "model.pt")
        loaded = am.model.state_dict()
        assert saved.keys() == loaded.keys()
        assert all(torch.equal(saved[k], loaded[k].cpu()) for k in saved)
    assert type(punctuator.auto_model.model).__name__ == "CTTransformer"
    assert type(vad_model.auto_model.model).__name__ == "FsmnVADStreaming"
    assert (tiny_dirs["vad"] / "am.mvn").is_file()
    vocab = json.loads((tiny_dirs["punc"] / "tokens.json").read_text(encoding="utf-8"))
    assert "<unk>" in vocab and "的" in vocab and "hello" in vocab


@pytest.mark.parametrize(
    "load", [CtPunctuator.load, FsmnVadModel.load], ids=["ct-punc", "fsmn-vad"]
)
def test_missing_dir_raises_one_line_with_hint(load, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as ei:
        load(tmp_path / "nope", hint=HINT)
    msg = str(ei.value)
    assert "\n" not in msg and msg.endswith(HINT) and str(tmp_path / "nope") in msg
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("model: CTTransformer\n")
    with pytest.raises(ModelNotFoundError, match="lacks model.pt"):
        load(tmp_path / "half", hint=HINT)


def test_unfetchable_hub_id_raises_with_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id goes through FunASR's download; when that fails we say how to get it."""
    import funasr.download.download_model_from_hub as hub

    def offline(*args: object, **kwargs: object) -> str:
        raise ConnectionError("no network")

    monkeypatch.setattr(hub, "get_or_download_model_dir", offline)
    hint = "download it with network access"
    with pytest.raises(ModelNotFoundError) as ei:
        CtPunctuator.load("iic/punc_ct-transformer_cn-en-common-vocab471067-large", hint=hint)
    msg = str(ei.value)
    assert "\n" not in msg and msg.endswith(hint) and "vocab471067" in msg


# ---------------------------------------------------------------- punctuation


@pytest.mark.parametrize(
    "text",
    [
        "今天天气很好我们出去玩吧",
        "hello world how are you today",
        "I like the iPhone and NASA 我们都喜欢",
        "你好，世界 这是一个测试",
        "区块链是今年最火热的科技趋势了" * 4,  # > 20 tokens: several mini-sentences
        "  leading and trailing spaces  ",
        "http://example.com 你好",  # FunASR would download a str input starting with http
        "README.md",  # or read an existing path as a file list
    ],
)
def test_ct_punctuator_keeps_characters(punctuator: CtPunctuator, text: str) -> None:
    out = punctuator.punctuate(text)
    assert isinstance(out, str)
    assert without_punct(out) == without_punct(text)
    assert punctuator.fallbacks == 0


def test_ct_punctuator_empty(punctuator: CtPunctuator) -> None:
    assert punctuator.punctuate("") == ""
    assert punctuator.punctuate("   ") == "   "


def test_transfer_marks() -> None:
    # case, spacing and the model's own capitalisation are undone; marks kept
    assert transfer_marks("hello world how are you", " Hello world, how are you.") == (
        "hello world, how are you."
    )
    assert transfer_marks("I like iPhone 我们", " I like Iphone我们。") == "I like iPhone 我们。"
    zh = "今天天气很好，我们走吧。"
    assert transfer_marks("今天天气很好我们走吧", zh) == zh
    # full-width marks after ASCII become ASCII; no mark next to existing punctuation
    assert transfer_marks("ok 好", " Ok，好。") == "ok, 好。"
    assert transfer_marks("你好，世界", "你好，，世界。") == "你好，世界。"
    assert transfer_marks("你好 。", "你好。 。") == "你好 。"
    # anything but marks/case/space differs: rejected
    assert transfer_marks("你好世界", "你好<unk>世界。") is None
    assert transfer_marks("你好世界", "你好世。") is None
    assert transfer_marks("你好", "你好呀。") is None


class _ChangingModel:
    """Stands in for an AutoModel whose output alters the words."""

    def generate(self, input: list[str]) -> list[dict]:
        return [{"text": input[0].strip().upper() + "X。"}]


def test_ct_punctuator_falls_back_when_model_changes_text() -> None:
    p = CtPunctuator(_ChangingModel())
    assert p.punctuate("你好世界") == "你好世界。"
    assert p.punctuate("hello world") == "hello world."
    assert p.fallbacks == 2


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("zh", "今天天气很好", "今天天气很好。"),
        ("ja", "ありがとう", "ありがとう。"),
        ("en", "hello world", "hello world."),
        ("de", "guten Tag", "guten Tag."),
        ("en", "is it?", "is it?"),
        ("zh", "好吗？", "好吗？"),
        ("zh", "你好，", "你好。"),
        ("en", "well,", "well."),
        ("en", "", ""),
        ("en", "done.  ", "done.  "),
        ("en", "trailing  ", "trailing.  "),
        (None, "你好", "你好。"),
        (None, "hello", "hello."),
    ],
)
def test_rule_punctuator(lang: str | None, text: str, expected: str) -> None:
    assert RulePunctuator(lang).punctuate(text) == expected


# ---------------------------------------------------------------- VAD helpers


def bursts_signal(
    seconds: float, bursts: list[tuple[float, float]], seed: int = 0, kind: str = "noise"
) -> np.ndarray:
    """Seeded signal: quiet noise floor (-70 dBFS) with loud bursts (noise or sine)."""
    rng = np.random.default_rng(seed)
    x = (10 ** (-70 / 20) * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    for k, (b, e) in enumerate(bursts):
        i, j = int(b * SR), int(e * SR)
        if kind == "noise":
            x[i:j] += 0.05 * rng.standard_normal(j - i).astype(np.float32)
        else:
            t = np.arange(j - i) / SR
            x[i:j] += (0.1 * np.sin(2 * np.pi * (220 + 110 * k) * t)).astype(np.float32)
    return x


def feed(
    vad: Vad, x: np.ndarray, seed: int = 0, lo_ms: int = 100, hi_ms: int = 600
) -> tuple[list[VadEvent], list[VadEvent]]:
    """Feed ``x`` in random 100-600 ms chunks; return (events before finish, finish events)."""
    rng = np.random.default_rng(seed)
    events: list[VadEvent] = []
    i = 0
    while i < len(x):
        n = int(rng.integers(lo_ms, hi_ms + 1)) * SR // 1000
        events += vad.accept(x[i : i + n])
        i += n
    return events, vad.finish()


def assert_well_formed(events: list[VadEvent], total_ms: int) -> None:
    kinds = [e.kind for e in events]
    assert kinds == ["start", "end"] * (len(events) // 2), kinds  # alternating, closed
    ms = [e.ms for e in events]
    assert ms == sorted(ms)
    assert all(0 <= m <= total_ms for m in ms)


BURSTS = [(0.5, 2.0), (3.0, 4.2), (5.5, 8.0), (9.0, 9.6)]


# ---------------------------------------------------------------- FSMN-VAD


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fsmn_vad_events_well_formed(vad_model: FsmnVadModel, seed: int) -> None:
    x = bursts_signal(10.0, BURSTS, seed=seed, kind="noise" if seed != 1 else "sine")
    events, final = feed(FsmnVad(vad_model), x, seed=seed)
    assert_well_formed(events + final, 10_000)


def test_fsmn_vad_finish_closes_open_segment(vad_model: FsmnVadModel) -> None:
    x = bursts_signal(6.0, [(1.0, 2.0), (4.0, 6.0)])  # ends inside a burst
    vad = FsmnVad(vad_model)
    events, final = feed(vad, x)
    assert events and events[-1].kind == "start"
    assert [e.kind for e in final] == ["end"]
    assert_well_formed(events + final, 6_000)
    # finish() reset the session: stream time restarts at 0
    again, final2 = feed(vad, x)
    assert again + final2 == events + final


def test_fsmn_vad_finish_with_nothing_pending(vad_model: FsmnVadModel) -> None:
    vad = FsmnVad(vad_model, FsmnVadOptions(chunk_ms=200))
    x = bursts_signal(2.0, [(0.5, 2.0)])
    events = vad.accept(x)  # 2 s = ten whole 200 ms steps: nothing left pending
    final = vad.finish()
    assert [e.kind for e in events + final] == ["start", "end"]
    assert final[0].ms == 2000


def test_fsmn_vad_energy_path_finds_bursts(vad_model: FsmnVadModel) -> None:
    """The tiny model's hand-set loudness path: one segment per burst, padded by the
    model config's 200 ms look-back and the endpoint's look-ahead (+100..+200 ms). The
    last burst is followed by only 400 ms, less than the 800 ms endpoint: finish() ends it."""
    x = bursts_signal(10.0, BURSTS)
    events, final = feed(FsmnVad(vad_model), x)
    ev = events + final
    segs = list(zip([e.ms for e in ev[0::2]], [e.ms for e in ev[1::2]]))
    assert len(segs) == len(BURSTS)
    for (s, e), (b0, b1) in zip(segs[:-1], BURSTS[:-1]):
        assert b0 * 1000 - 350 <= s <= b0 * 1000
        assert b1 * 1000 <= e <= b1 * 1000 + 250
    assert BURSTS[-1][0] * 1000 - 350 <= segs[-1][0] <= BURSTS[-1][0] * 1000
    assert [e.kind for e in final] == ["end"] and final[0].ms == 10_000


def test_fsmn_vad_independent_of_chunking_and_reset(vad_model: FsmnVadModel) -> None:
    """Whole steps are fed whatever the chunking; the cache restart after an endpoint
    replays enough audio to be lossless here; interleaved sessions do not interact."""
    x = bursts_signal(10.0, BURSTS, seed=5)
    ref_vad = FsmnVad(vad_model, FsmnVadOptions(reset_after_end=False))
    ref = sum(feed(ref_vad, x, seed=0), [])
    assert sum(feed(FsmnVad(vad_model), x, seed=1, lo_ms=100, hi_ms=130), []) == ref
    a, b = FsmnVad(vad_model), FsmnVad(vad_model)
    ev_a: list[VadEvent] = []
    ev_b: list[VadEvent] = []
    y = bursts_signal(10.0, [(1.0, 5.0)], seed=6)
    for i in range(0, len(x), 4800):  # interleave two sessions on the shared model
        ev_a += a.accept(x[i : i + 4800])
        ev_b += b.accept(y[i : i + 4800])
    ev_a += a.finish()
    ev_b += b.finish()
    assert ev_a == ref
    assert ev_b == sum(feed(FsmnVad(vad_model), y), [])
    assert a.resets == len(BURSTS) - 1  # restarted after each endpoint but the last


@pytest.mark.parametrize("chunk_ms", [200, 600])
@pytest.mark.parametrize("end_ms", [300, 500])
def test_fsmn_vad_reset_with_short_endpoints(
    vad_model: FsmnVadModel, chunk_ms: int, end_ms: int
) -> None:
    """With endpoints shorter than the 400 ms replay, the restart re-reads only audio after
    the reported end: the same segments and ends; a start may lose part of its look-back
    (measured: at most 180 ms, 600 ms steps) but never moves earlier."""
    bursts = [(0.3, 1.0), (1.5, 2.2), (2.6, 4.0), (4.4, 4.9), (5.3, 7.0), (7.5, 8.0)]
    x = bursts_signal(10.0, bursts, seed=7)
    opts = FsmnVadOptions(chunk_ms=chunk_ms, max_end_silence_ms=end_ms)
    ref = sum(feed(FsmnVad(vad_model, replace(opts, reset_after_end=False)), x), [])
    vad = FsmnVad(vad_model, opts)
    got = sum(feed(vad, x, seed=3), [])
    assert_well_formed(got, 10_000)
    assert vad.resets >= 3
    assert [e.kind for e in got] == [e.kind for e in ref]
    for g, r in zip(got, ref):
        assert g.ms == r.ms if g.kind == "end" else r.ms <= g.ms <= r.ms + 200


def test_fsmn_vad_memory_bounded_on_long_stream(vad_model: FsmnVadModel) -> None:
    """5 minutes (150 segments), fed fast: held state stays flat with the cache restart;
    without it FunASR keeps one record per segment (the growth the restart removes)."""
    chunk = 600 * SR // 1000

    def chunk_at(k: int, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(k * chunk, (k + 1) * chunk)
        on = (t // SR) % 2 == 0  # 1 s burst, 1 s quiet
        return (on * 0.05 * rng.standard_normal(chunk)).astype(np.float32)

    def run(opts: FsmnVadOptions, n_chunks: int) -> tuple[list[int], int, int]:
        vad = FsmnVad(vad_model, opts)
        rng = np.random.default_rng(0)
        sizes, n_events, records = [], 0, 0
        for k in range(n_chunks):
            n_events += len(vad.accept(chunk_at(k, rng)))
            if k % 5 == 4:
                sizes.append(vad.held_bytes())
            if "stats" in vad.cache:
                records = max(records, len(vad.cache["stats"].output_data_buf))
        return sizes, n_events, records

    n = 500  # 300 s
    sizes, n_events, records = run(FsmnVadOptions(chunk_ms=600), n)
    assert n_events >= 2 * 145  # the stream really had ~150 segments
    assert max(sizes[len(sizes) // 2 :]) <= max(sizes[: len(sizes) // 10]) + 1024
    assert max(sizes) < 512 * 1024
    assert records <= 2

    n = 100  # 60 s without the restart
    sizes, _, records = run(FsmnVadOptions(chunk_ms=600, reset_after_end=False), n)
    assert records >= 28 and sizes[-1] > sizes[len(sizes) // 10]


# ---------------------------------------------------------------- EnergyVad (vad.py)


def test_energy_vad_finds_tone_bursts() -> None:
    bursts = [(0.5, 1.5), (2.5, 3.3), (4.3, 6.0), (7.0, 8.0)]  # 1 s silences between
    x = bursts_signal(9.0, bursts, seed=3, kind="sine")
    for pre_roll in (0, 200):
        vad = EnergyVad(EnergyVadOptions(pre_roll_ms=pre_roll))
        events, final = feed(vad, x, seed=4)
        ev = events + final
        assert_well_formed(ev, 9_000)
        segs = list(zip([e.ms for e in ev[0::2]], [e.ms for e in ev[1::2]]))
        assert len(segs) == len(bursts)
        for (s, e), (b0, b1) in zip(segs, bursts):  # the pre-roll pads both ends
            assert abs(s - (b0 * 1000 - pre_roll)) <= 100
            assert abs(e - (b1 * 1000 + pre_roll)) <= 100
