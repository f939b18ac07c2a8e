"""Real-time levers of the end-to-end path that must not change its output.

``CachedDecoder.decode(draft=...)`` verifies a guessed continuation (the previous step's
proposal) in the prefill forward; the result must be the plain greedy continuation token for
token, whatever the draft (right, partly right, wrong, with a stop token). The e2e path with
the draft on (``NanoOptions.draft``) must emit exactly what it emits with it off.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamst.builders.funasr_nano import build_tiny
from streamst.e2e.funasr_nano import FunAsrNanoSpeech, SpeechPrompt
from streamst.events import TranslationEvent
from streamst.mt.kv import CachedDecoder
from streamst.pipeline import PipelineConfig
from tests.test_e2e import SENTENCE, WholeStreamVad, open_e2e

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nano(tmp_path_factory) -> FunAsrNanoSpeech:
    d: Path = tmp_path_factory.mktemp("funasr-nano-rt")
    build_tiny(d, seed=0)
    return FunAsrNanoSpeech(str(d))


@pytest.fixture(scope="module")
def utterance(speech) -> np.ndarray:
    x, rate = sf.read(str(speech(SENTENCE, "zh")), dtype="float32")
    assert rate == 16000
    return x


def _segments(nano, utterance, seconds: float, committed: str = ""):
    prompt = SpeechPrompt(nano.tokenizer, "translate", "zh", "en")
    [speech] = nano.encode([nano.features(utterance[: int(16000 * seconds)])], [("u", seconds)])
    return prompt.build(speech, committed, max_target_tokens=512)


def test_draft_verification_gives_the_plain_greedy_continuation(nano, utterance) -> None:
    segs = _segments(nano, utterance, 1.2)
    plain = CachedDecoder(nano.lm, kv_reuse=False).decode(segs, max_new_tokens=8)
    assert len(plain.token_ids) == 8  # random weights: runs to the budget
    ref = plain.token_ids
    stop = min(nano.lm.stop_ids)
    drafts = {
        "exact": ref, "longer": ref + ref, "half": ref[:4], "wrong-first": (ref[0] + 1, *ref[1:]),
        "wrong-middle": (*ref[:3], ref[3] + 1, *ref[4:]), "stop": (*ref[:2], stop), "empty": (),
    }
    for name, draft in drafts.items():
        dec = CachedDecoder(nano.lm)
        out = dec.decode(segs, max_new_tokens=8, draft=draft)
        assert out.token_ids == ref and out.text == plain.text and out.complete == plain.complete, name
        agreed = 0
        while agreed < min(len(draft), 7) and draft[agreed] == ref[agreed]:
            agreed += 1
        if name == "stop":
            agreed = 2
        assert out.stats.draft_accepted == agreed, name
        assert out.steps == 1 + 8 - 1 - agreed, name  # one forward per token not agreed (the last is never run)
        # the cache holds exactly prompt + the tokens run: a next decode reusing it equals a cold one
        longer = _segments(nano, utterance, 1.2, committed=plain.text)
        again = dec.decode(longer, max_new_tokens=4, draft=draft[8:])
        cold = CachedDecoder(nano.lm, kv_reuse=False).decode(longer, max_new_tokens=4)
        assert again.token_ids == cold.token_ids, name
        assert again.stats.reused_tokens > len(segs[0].ids), name


def _run(nano, utterance, *, draft: bool, policy: str):
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy=policy, chunk_ms=600)
    cfg = replace(cfg, e2e=replace(cfg.e2e, step_tokens=6, final_tokens=10, source_text=False))
    old = nano.options
    nano.options = replace(old, draft=draft)
    try:
        results: deque = deque()
        path = open_e2e(nano, WholeStreamVad(), cfg, clock=lambda: 0.0, results=results)
        events, accepted = [], 0
        for i in range(0, len(utterance), 1600):
            path.insert_audio(utterance[i : i + 1600])
            events += path.process()
            last = path.streams[0].last
            accepted += last.draft_accepted if last is not None else 0
        events += path.finish()
    finally:
        nano.options = old
    out = [(e.committed, e.new_units, e.tentative, e.final) for e in events if isinstance(e, TranslationEvent)]
    return out, [r.e2e for r in results], accepted


@pytest.mark.parametrize("policy", ["wait-k", "reorder-aware"])
def test_e2e_path_with_the_draft_emits_exactly_what_it_emits_without(nano, utterance, policy) -> None:
    plain, plain_results, none = _run(nano, utterance, draft=False, policy=policy)
    drafted, drafted_results, accepted = _run(nano, utterance, draft=True, policy=policy)
    assert none == 0
    assert drafted == plain and drafted_results == plain_results
    if policy == "wait-k":  # the tiny random model's proposals agree across chunks under wait-k
        assert accepted > 0  # the previous proposal did save forwards


def _run_final_incremental(nano, utterance, *, kv_reuse: bool):
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy="wait-k", chunk_ms=600)
    cfg = replace(cfg, e2e=replace(cfg.e2e, step_tokens=4, final_tokens=6, source_text=True, final_encoding="incremental"))
    old = nano.options
    nano.options = replace(old, kv_reuse=kv_reuse)
    try:
        results: deque = deque()
        path = open_e2e(nano, WholeStreamVad(), cfg, clock=lambda: 0.0, results=results)
        events = []
        for i in range(0, len(utterance), 1600):
            path.insert_audio(utterance[i : i + 1600])
            events += path.process()
        events += path.finish()
    finally:
        nano.options = old
    out = [(type(e).__name__, getattr(e, "committed", None), getattr(e, "text", None)) for e in events]
    return out, [(r.e2e, r.source) for r in results], path


def test_incremental_final_step_reuses_every_audio_kv_and_equals_cold_prefills(nano, utterance) -> None:
    """``final_encoding=incremental``: the final step encodes only the unfrozen frames and the
    transcript's stream was prefilled chunk by chunk; both equal cold full prefills of the same
    embeddings (``kv_reuse=False``), and the transcript reuses the prefetched audio K/V."""
    warm, warm_results, path = _run_final_incremental(nano, utterance, kv_reuse=True)
    cold, cold_results, _ = _run_final_incremental(nano, utterance, kv_reuse=False)
    assert warm == cold and warm_results == cold_results
    assert warm_results[0][1]  # a transcript was made
    source = path.source_stream.last
    head = len(path.source_stream.prompt.head.ids)
    frames = len(utterance) * 1000 // 16000 // 60
    assert source.reused_tokens > head + frames - 15  # all audio but the last chunk's frames
    assert source.computed_tokens < 40  # new frames + tail, not the utterance


def test_session_bench_runs_a_whole_session_and_the_draft_changes_nothing(nano, utterance) -> None:
    """`bench e2e-session` drives TranslationSession (energy VAD, e2e path, transcript); with the
    draft on, the session's translations are the same as with it off."""
    from streamst.bench.e2e_session import run_session

    audio = np.concatenate([np.zeros(8000, np.float32), utterance, np.zeros(16000, np.float32)])
    base = run_session(nano, audio, final_tokens=6)
    draft = run_session(nano, audio, final_tokens=6, draft=True)
    assert base["utterances"] >= 1 and base["chunk_steps"] >= 3 and base["decodes"] > base["chunk_steps"]
    assert base["draft_tokens"] == 0 and draft["draft_tokens"] > 0
    assert draft["e2e"] == base["e2e"] and any(base["e2e"])
    assert base["rtf_cpu"] > 0 and base["encoder_frames"] >= 10 * base["chunk_steps"]  # 600 ms = 10 new frames a step


def test_session_bench_runs_concurrent_sessions_batched_and_not(nano, utterance) -> None:
    """``bench e2e-session --sessions N``: N sessions at once through one batcher (or each
    alone) give the same translations as one session (float32) and report the batching."""
    from streamst.bench.e2e_session import run_session, run_sessions

    audio = np.concatenate([utterance, np.zeros(16000, np.float32)])
    one = run_session(nano, audio, final_tokens=6, draft=True)
    old = nano.options
    batched = run_sessions(nano, audio, 2, batch=True, final_tokens=6, draft=True)
    alone = run_sessions(nano, audio, 2, batch=False, final_tokens=6, draft=True)
    assert nano.options == old  # restored
    assert batched["e2e"] == alone["e2e"] == [one["e2e"]] * 2 and any(one["e2e"])
    assert batched["decoder_batches"]["requests"] > batched["decoder_batches"]["calls"] > 0  # rows met
    assert "decoder_batches" not in alone
    assert batched["cpu_s_per_audio_s"] > 0 and batched["rtf_wall"] > 0


def _run_path(nano, audio, *, lm=None, start=None):
    """One e2e session (wait-k, draft on, transcript on) over ``audio``; its translation events
    and results. ``lm``: the decoder forwards' runner (a BatchedLM: sessions batched)."""
    cfg = PipelineConfig.create("zh", "en", mode="e2e", policy="wait-k", chunk_ms=600)
    cfg = replace(cfg, e2e=replace(cfg.e2e, step_tokens=6, final_tokens=10, source_text=True))
    results: deque = deque()
    path = open_e2e(nano, WholeStreamVad(), cfg, clock=lambda: 0.0, results=results, lm=lm)
    if start is not None:
        start.wait()
    events = []
    for i in range(0, len(audio), 1600):
        path.insert_audio(audio[i : i + 1600])
        events += path.process()
    events += path.finish()
    out = [(e.committed, e.new_units, e.tentative, e.final) for e in events if isinstance(e, TranslationEvent)]
    return out, [(r.e2e, r.source) for r in results]


def test_concurrent_e2e_sessions_through_the_batcher_decode_as_alone(nano, utterance) -> None:
    """The server batches the e2e decoder's forwards across sessions (one ForwardBatcher per
    decoder): three sessions decoding at once (draft verification included: multi-position
    logits through the batcher) emit exactly what each emits alone, and their forwards met."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from streamst.mt.batching import BatchedLM, ForwardBatcher

    audios = [utterance, utterance[8000:], np.concatenate([utterance[:24000], utterance])]
    alone = [_run_path(nano, a) for a in audios]
    batcher = ForwardBatcher(nano.lm, max_rows=32, max_wait_ms=5000, name="e2e")  # waits for every open chain
    try:
        lm = BatchedLM(nano.lm, batcher)
        start = threading.Barrier(len(audios))
        with ThreadPoolExecutor(len(audios)) as pool:
            together = list(pool.map(lambda a: _run_path(nano, a, lm=lm, start=start), audios))
    finally:
        batcher.close()
    assert together == alone
    assert any(rows > 1 for rows in batcher.batch_rows), batcher.batch_rows
    assert batcher.stats["verified"] > 0  # drafts were verified through the batcher
