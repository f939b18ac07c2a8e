"""Cross-session decoder batching (``streamst.mt.batching``) and the direct output head.

* ``run_merged`` of requests with different cache lengths, widths, masks and row counts
  gives each the logits and the cache of its own forward.
* Sessions decoding concurrently through one ``ForwardBatcher`` get exactly the greedy
  proposals (and seeded source predictions) they get alone, and their forwards do meet in
  one model call.
* The batcher fails every waiting caller when closed or when the model raises.
* ``SegmentLM(head="auto")`` gives the model's own greedy tokens.

No timing is asserted: ``streamst bench server`` and ``bench pipeline`` measure speed.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from streamst.builders.qwen import build_tiny
from streamst.mt.batching import BatchedLM, ForwardBatcher, _Request, run_merged
from streamst.mt.kv import CachedDecoder, SegmentLM
from streamst.mt.prompt import TokenSegment
from streamst.mt.qwen import QwenOptions, QwenTranslator

SOURCE = "区块链是今年最火热的科技趋势了。所有草莓的基因都由几组含七条染色体的染色体组构造而成。"

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def mt(tmp_path_factory: pytest.TempPathFactory) -> QwenTranslator:
    d: Path = tmp_path_factory.mktemp("qwen-tiny-batching")
    build_tiny(d, seed=0)
    return QwenTranslator(d, QwenOptions(local_files_only=True))


def _cache_with(lm: SegmentLM, ids: list[int], rows: int = 1):
    cache = lm.new_cache()
    if ids:
        lm.forward_segments([TokenSegment(tuple(ids))], 0, cache)
        if rows > 1:
            cache.batch_repeat_interleave(rows)
    return cache


def _kv(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]


def test_run_merged_equals_one_forward_each(mt) -> None:
    lm = mt.lm
    emb = mt.model.get_input_embeddings()
    specs = [  # (cached ids, new ids, rows)
        (list(range(300, 340)), [7], 1),
        (list(range(500, 512)), [9], 2),
        ([], list(range(600, 605)), 1),
        (list(range(700, 725)), list(range(40, 43)), 1),
    ]
    for group in (specs[:2], specs[2:], specs):  # decode steps, prefills, a mix
        reqs, refs = [], []
        for cached, new, rows in group:
            ids = torch.tensor([new] * rows)
            ref_cache = _cache_with(lm, cached, rows)
            with torch.inference_mode():
                refs.append((lm.run(ref_cache, input_ids=ids), _kv(ref_cache)))
                reqs.append(_Request(_cache_with(lm, cached, rows), emb(ids), None, None, Future()))
        with torch.inference_mode():
            outs = run_merged(lm, reqs)
        for req, out, (ref_logits, ref_kv) in zip(reqs, outs, refs):
            assert out.shape == ref_logits.shape
            torch.testing.assert_close(out, ref_logits, rtol=1e-4, atol=1e-4)
            assert torch.equal(out.argmax(-1), ref_logits.argmax(-1))
            got = _kv(req.cache)
            assert len(got) == len(ref_kv)
            for (k, v), (rk, rv) in zip(got, ref_kv):
                assert k.shape == rk.shape
                torch.testing.assert_close(k, rk, rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(v, rv, rtol=1e-4, atol=1e-4)


def _session_work(stream, i: int) -> list:
    """What one session's track does per step: predict continuations, propose with alternatives."""
    out = []
    committed = ""
    for j in range(3, 18, 5):
        src = SOURCE[i : i + j]
        conts = stream.predict_source(src, 2, max_new_tokens=4)
        props = stream.propose_many([src] + [src + c for c in conts if c], committed, max_new_tokens=6,
                                    follow_first=True)
        out.append((conts, [(p.text, p.complete) for p in props]))
        committed = props[0].text.split(" ")[0] if j > 8 else ""
    out.append(stream.propose(SOURCE[i : i + 20], committed, max_new_tokens=8).text)
    return out


def test_concurrent_sessions_through_the_batcher_decode_as_alone(mt) -> None:
    alone = [_session_work(mt.open_stream("zh", "en"), i) for i in range(4)]
    batcher = ForwardBatcher(mt.lm, max_rows=32, max_wait_ms=5000)  # waits for every open chain
    try:
        lm = BatchedLM(mt.lm, batcher)
        start = threading.Barrier(4)

        def run(i: int) -> list:
            stream = mt.open_stream("zh", "en", lm=lm)
            start.wait()
            return _session_work(stream, i)

        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(run, range(4)))
    finally:
        batcher.close()
    assert together == alone
    merged = {rows for rows in batcher.batch_rows if rows > 2}  # more rows than one session ever sends
    assert merged, batcher.batch_rows
    assert batcher.stats["requests"] > batcher.stats["calls"]


def test_two_open_chains_meet_in_one_call(mt) -> None:
    batcher = ForwardBatcher(mt.lm, max_wait_ms=5000)
    try:
        lm = BatchedLM(mt.lm, batcher)
        both = threading.Barrier(2)

        def one(i: int) -> torch.Tensor:
            with lm.chain():
                both.wait()  # both chains are open before either forward is queued
                return lm.forward_tokens(torch.tensor([[100 + i]]), _cache_with(mt.lm, list(range(20 + i))))

        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(one, range(2)))
    finally:
        batcher.close()
    assert batcher.batch_rows == {2: 1}
    for i, logits in enumerate(got):
        with torch.inference_mode():
            ref = mt.lm.forward_tokens(torch.tensor([[100 + i]]), _cache_with(mt.lm, list(range(20 + i))))
        assert torch.equal(logits.argmax(-1), ref.argmax(-1))


def test_batcher_errors_reach_every_caller(mt) -> None:
    batcher = ForwardBatcher(mt.lm, max_wait_ms=0)
    lm = BatchedLM(mt.lm, batcher)
    bad = torch.zeros(1, 1, 7)  # wrong hidden size: the model raises
    with pytest.raises(RuntimeError):
        batcher.forward(mt.lm.new_cache(), bad)
    assert lm.forward_tokens(torch.tensor([[5]]), mt.lm.new_cache()).shape[0] == 1  # still serving
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.forward(mt.lm.new_cache(), bad)
    with pytest.raises(ValueError):
        ForwardBatcher(mt.lm, max_rows=0)


def test_max_rows_splits_a_cycle(mt) -> None:
    batcher = ForwardBatcher(mt.lm, max_rows=2, max_wait_ms=5000)
    try:
        lm = BatchedLM(mt.lm, batcher)
        all_open = threading.Barrier(3)

        def one(i: int) -> int:
            with lm.chain():
                all_open.wait()
                return int(lm.forward_tokens(torch.tensor([[50 + i]]), _cache_with(mt.lm, [1, 2, 3])).argmax())

        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(one, range(3)))
    finally:
        batcher.close()
    assert max(batcher.batch_rows) <= 2 and sum(k * v for k, v in batcher.batch_rows.items()) == 3
    with torch.inference_mode():
        ref = [int(mt.lm.forward_tokens(torch.tensor([[50 + i]]), _cache_with(mt.lm, [1, 2, 3])).argmax()) for i in range(3)]
    assert got == ref


def test_direct_head_gives_the_models_own_tokens(mt) -> None:
    own = SegmentLM(mt.model, mt.tokenizer, head="model")
    direct = SegmentLM(mt.model, mt.tokenizer, head="auto")
    assert own.head_path == "model" and direct.head_path == "decoder+head(T)"
    stream = mt.open_stream("zh", "en")
    for i in (4, 13, 27):
        prompt = stream.prompt.build(SOURCE[:i], "", max_source_tokens=512, max_target_tokens=512)
        a = CachedDecoder(own).decode(prompt, max_new_tokens=12)
        b = CachedDecoder(direct).decode(prompt, max_new_tokens=12)
        assert (a.token_ids, a.text, a.complete) == (b.token_ids, b.text, b.complete)


def test_a_long_decode_does_not_hold_up_a_short_one(mt) -> None:
    """Every cycle serves every queued request: a 3-forward chain beside a 20-forward one
    gets one forward per cycle and finishes first; all forwards of both meet in 2-row calls
    until the short one ends."""
    batcher = ForwardBatcher(mt.lm, max_wait_ms=5000)
    done: list[int] = []
    try:
        lm = BatchedLM(mt.lm, batcher)
        both = threading.Barrier(2)

        def chain(n: int) -> None:
            cache = _cache_with(mt.lm, [1, 2, 3])
            with lm.chain():
                both.wait()
                for i in range(n):
                    lm.forward_tokens(torch.tensor([[10 + i]]), cache)
            done.append(n)

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(chain, (20, 3)))
    finally:
        batcher.close()
    assert done == [3, 20]
    assert batcher.batch_rows[2] == 3 and batcher.batch_rows[1] == 17


def test_a_step_and_a_prefill_share_one_projection(mt) -> None:
    """A cycle holding a one-token step and a prefill runs the decoder stack twice (a step
    is not padded to a prefill's width) but the output projection once, for both rows; a
    cache-only prefill (``logits=False``) gets None and no projection row."""
    batcher = ForwardBatcher(mt.lm, max_wait_ms=5000)
    emb = mt.model.get_input_embeddings()
    try:
        lm = BatchedLM(mt.lm, batcher)
        all_open = threading.Barrier(3)

        def one(i: int):
            cache = _cache_with(mt.lm, list(range(30 + i)))
            ids = [[70]] if i == 0 else [[80, 81, 82]]
            with lm.chain():
                all_open.wait()
                with torch.inference_mode():
                    out = batcher.forward(cache, emb(torch.tensor(ids)), logits=i != 2)
            return out, _kv(cache)

        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(one, range(3)))
    finally:
        batcher.close()
    assert batcher.batch_rows == {1: 1, 2: 1} and batcher.projections == 1
    assert got[2][0] is None
    for i, (logits, kv) in enumerate(got):
        ref_cache = _cache_with(mt.lm, list(range(30 + i)))
        ids = [[70]] if i == 0 else [[80, 81, 82]]
        with torch.inference_mode():
            ref = mt.lm.run(ref_cache, input_ids=torch.tensor(ids))
        if logits is not None:
            torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
            assert torch.equal(logits.argmax(-1), ref.argmax(-1))
        for (k, v), (rk, rv) in zip(kv, _kv(ref_cache)):
            torch.testing.assert_close(k, rk, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(v, rv, rtol=1e-4, atol=1e-4)


def test_cache_only_prefill_leaves_the_same_cache(mt) -> None:
    segs = [TokenSegment(tuple(range(200, 230)))]
    with_logits, cache_only = mt.lm.new_cache(), mt.lm.new_cache()
    with torch.inference_mode():
        assert mt.lm.forward_segments(segs, 0, with_logits).shape == (1, mt.model.config.vocab_size)
        assert mt.lm.forward_segments(segs, 0, cache_only, logits=False) is None
    for (k, v), (rk, rv) in zip(_kv(cache_only), _kv(with_logits)):
        assert torch.equal(k, rk) and torch.equal(v, rv)


def test_numpy_head_matches_torch(mt, monkeypatch) -> None:
    """The direct head multiplies through numpy's BLAS (streamst/mt/head.py): the same logits
    as the model's own projection up to rounding, for every row count a decoder runs."""
    from streamst.threads import ENV, blas_threads, pin_torch_threads

    lm = SegmentLM(mt.model, mt.tokenizer, head="auto")
    assert lm._proj_np is not None  # noqa: SLF001 - the path under test
    torch.manual_seed(0)
    for rows in (1, 3, 8, 17):
        hidden = torch.randn(rows, mt.model.config.hidden_size)
        with torch.inference_mode():
            ref = mt.model.get_output_embeddings()(hidden)
            got = lm.project(hidden)
        assert got.dtype == torch.float32 and got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
        assert torch.equal(got.argmax(-1), ref.argmax(-1))
    monkeypatch.setenv(ENV, "1")
    pin_torch_threads("cpu")
    assert blas_threads() and all(n == 1 for n in blas_threads())  # one BLAS thread per call, like torch


def test_run_merged_keeps_each_requests_last_positions(mt) -> None:
    """Prefills that want the logits of their last ``keep`` positions (draft verification)
    merged into one forward: each gets what its own forward gives, from its own positions."""
    lm = mt.lm
    emb = mt.model.get_input_embeddings()
    specs = [(list(range(300, 340)), list(range(40, 45)), 3), (list(range(500, 512)), list(range(60, 62)), 2),
             ([], list(range(600, 604)), 4), (list(range(800, 810)), [70], 1),
             (list(range(900, 905)), list(range(80, 83)), 0)]  # (cached ids, new ids, keep); 0: the last position
    reqs, refs = [], []
    for cached, new, keep in specs:
        ids = torch.tensor([new])
        ref_cache = _cache_with(lm, cached)
        with torch.inference_mode():
            refs.append(lm.run(ref_cache, keep=keep, input_ids=ids).reshape(-1, lm.model.config.vocab_size))  # (keep|1, vocab)
            reqs.append(_Request(_cache_with(lm, cached), emb(ids), None, None, Future(), keep=keep))
    with torch.inference_mode():
        outs = run_merged(lm, reqs, fn=lm.hidden)
    for out, ref, (_, _, keep) in zip(outs, refs, specs):
        assert out.shape == ((1, keep, mt.model.config.hidden_size) if keep else (1, mt.model.config.hidden_size))
        logits = lm.project(out.reshape(-1, out.shape[-1]))
        torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
        assert torch.equal(logits.argmax(-1), ref.argmax(-1))
    batcher = ForwardBatcher(lm)
    try:
        with pytest.raises(ValueError, match="keep must be from 0 to the 2 new positions"):
            batcher.forward(lm.new_cache(), emb(torch.tensor([[1, 2]])), keep=3)
    finally:
        batcher.close()
