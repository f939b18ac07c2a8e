"""Training at scale, checked small: ``streamst train`` under ``torchrun`` (2 CPU processes on
gloo, loopback) computes the same losses as one process on the same global batch, and resumes
a run checkpointed by one process; ``--grad-checkpointing`` gives the same loss and gradients
(and really recomputes layers); ``--bf16`` runs on CPU; ``--eval-every`` logs the eval loss."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamst.training import recipe
from streamst.training.config import TrainConfig
from streamst.training.data import ExampleSet, build_examples, read_train_manifest
from streamst.training.distributed import World
from streamst.training.trainer import LOG, NanoTrainer, read_log

pytest.importorskip("peft", reason="peft is not installed (pip install 'streamst[train]'; .ci/run installs it)")

# 2 sentences x (whole + 1 prefix pair) = 4 examples: one global batch of 4 a step, 2 per process
ARGS = ["--steps", "4", "--batch-size", "4", "--prefix-pairs", "1", "--checkpoint-every", "2", "--eval-every", "2"]
CONFIG = TrainConfig(steps=4, batch_size=4, prefix_pairs=1, checkpoint_every=2, eval_every=2, eval_max_new_tokens=8)


@pytest.fixture()
def manifest(spoken_manifest) -> Path:  # conftest: two spoken zh sentences
    return spoken_manifest


@pytest.fixture()
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun worker (OMP_NUM_THREADS=1)
    yield
    torch.set_num_threads(n)


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m streamst.cli train ...`` (loopback rendezvous)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "streamst.cli", "train", *args, "--json"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_same_log(one: list[dict], two: list[dict]) -> None:
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for a, b in zip(one, two):
        assert b["tokens"] == a["tokens"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5), (a, b)
        assert ("eval_loss" in a) == ("eval_loss" in b)
        if "eval_loss" in a:
            assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-4, abs=1e-5), (a, b)


def test_two_processes_on_gloo_match_one_and_resume(models_env, manifest, tmp_path, one_thread) -> None:
    one = recipe.run(recipe.plan(manifest, "tiny", tmp_path / "one", CONFIG), CONFIG)
    log1 = read_log(one.out / LOG)
    assert [r["step"] for r in log1 if "eval_loss" in r] == [2, 4]  # --eval-every 2
    assert len({r["loss"] for r in log1}) == 4  # the weights change between steps: a real comparison

    # the same run in 2 processes: each computes half of every global batch
    torchrun([str(manifest), "--profile", "tiny", "--out", str(tmp_path / "two"), *ARGS], tmp_path)
    assert_same_log(log1, read_log(tmp_path / "two" / LOG))
    assert (tmp_path / "two" / "profile.json").is_file() and (tmp_path / "two" / "eval.json").is_file()

    # one process checkpoints at step 2 and is interrupted at step 3; 2 processes resume it
    class CtrlC(KeyboardInterrupt):
        pass

    def interrupt(rec) -> None:
        if rec.step == 3:
            raise CtrlC

    with pytest.raises(CtrlC):
        recipe.run(recipe.plan(manifest, "tiny", tmp_path / "res", CONFIG), CONFIG, on_step=interrupt)
    assert [r["step"] for r in read_log(tmp_path / "res.partial" / LOG)] == [1, 2, 3]
    torchrun([str(manifest), "--profile", "tiny", "--out", str(tmp_path / "res"), *ARGS, "--resume"], tmp_path)
    assert_same_log(log1, read_log(tmp_path / "res" / LOG))
    assert not (tmp_path / "res.partial").exists()


def _trainer_and_batch(models_env, manifest, config: TrainConfig):
    from streamst.e2e.funasr_nano import FunAsrNanoSpeech

    speech = FunAsrNanoSpeech(str(models_env / "store" / "tiny" / "funasr-nano"))
    items = read_train_manifest(manifest)
    trainer = NanoTrainer(speech.model, config)
    data = ExampleSet(speech, items, build_examples(items, 1, 0), max_target_tokens=256, im_end_id=151645,
                      encoder=trainer.frozen_encoder if trainer.encoder_frozen else None)
    return trainer, data.batch([0, 1, 2, 3]), data


def test_grad_checkpointing_gives_the_same_loss_and_gradients(models_env, manifest, one_thread) -> None:
    out = {}
    for ckpt in (False, True):
        config = TrainConfig(train=("encoder", "adaptor", "decoder"), lora_rank=0, grad_checkpointing=ckpt)
        trainer, batch, _ = _trainer_and_batch(models_env, manifest, config)
        calls = []
        # hooks on a layer stay outside its checkpoint, but its sub-modules start again in backward
        # (pre-hooks: the recomputation stops early, once it has what backward needs)
        for layer in (trainer.core.language_model.layers[0].mlp, trainer.core.audio_tower.layers[0].mlp):
            layer.register_forward_pre_hook(lambda m, i: calls.append(type(m).__name__))
        torch.manual_seed(0)  # the same dropout masks in both runs (checkpointing replays them)
        loss = trainer.loss(batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.params if p.grad is not None}
        out[ckpt] = (loss.item(), grads, len(calls))
    (l0, g0, c0), (l1, g1, c1) = out[False], out[True]
    assert c0 == 2 and c1 == 4, (c0, c1)  # with checkpointing each layer runs again in backward
    assert l1 == pytest.approx(l0, rel=1e-6)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for n in g0:
        assert torch.allclose(g0[n], g1[n], rtol=1e-4, atol=1e-6), n


def test_bf16_autocast_trains_on_cpu(models_env, manifest, tmp_path) -> None:
    """One example (bf16 matmuls are emulated on most CPUs: slow)."""
    import contextlib

    from streamst.e2e.funasr_nano import FunAsrNanoSpeech

    speech = FunAsrNanoSpeech(str(models_env / "store" / "tiny" / "funasr-nano"))
    items = read_train_manifest(manifest)[:1]
    trainer = NanoTrainer(speech.model, TrainConfig(bf16=True, batch_size=1))
    data = ExampleSet(speech, items, build_examples(items, 0, 0), max_target_tokens=256, im_end_id=151645,
                      encoder=trainer.frozen_encoder)
    batch = data.batch([0])
    with torch.no_grad():
        bf16 = trainer.loss(batch).item()
        autocast, trainer._autocast = trainer._autocast, contextlib.nullcontext
        fp32 = trainer.loss(batch).item()
        trainer._autocast = autocast
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=0.03)  # autocast is on; bf16 rounding only
    records = trainer.run(data, total=2, work=tmp_path)  # forward, backward and step under bf16 autocast
    assert len(records) == 2 and all(torch.isfinite(torch.tensor(r.loss)) for r in records)
    assert records[0].loss == pytest.approx(bf16, rel=1e-5) and records[1].loss < records[0].loss
    assert [r["step"] for r in read_log(tmp_path / LOG)] == [1, 2]


def test_world_shares_cover_a_batch_once() -> None:
    batch = list(range(7))
    for size in (1, 2, 3, 8):
        shares = [World(r, size).share(batch) for r in range(size)]
        assert sum(shares, []) == batch and max(map(len, shares)) - min(map(len, shares)) <= 1


def test_bench_train_step_counts_flops_per_utterance(capsys) -> None:
    """`streamst bench train-step` (the source of docs/training.md's GPU-hour estimate): the
    FLOPs it counts are the step's, so two utterances cost twice one."""
    import json

    from streamst.cli import main

    out = []
    for batch in (1, 2):
        assert main(["bench", "train-step", "--arch", "tiny", "--batch", str(batch), "--steps", "1",
                     "--clip-seconds", "2", "--json"]) == 0
        out.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    one, two = out
    assert one["trainable_params"] > 0 and one["step_gflop"] > 0 and one["encoder_gflop_per_example"] > 0
    assert two["step_gflop"] == pytest.approx(2 * one["step_gflop"], rel=0.02)
    assert one["step_seconds_median"] > 0 and one["sequence_tokens"] == one["prompt_and_audio_tokens"] + 20
