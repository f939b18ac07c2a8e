"""Helpers shared by the file-streaming commands (transcribe, translate, eval)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from streamst.audio import StreamResampler, read_audio


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="default", help="model profile: a name (streamst models list) or a JSON file")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")


def add_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-ms", type=int, default=600, help="streaming chunk (multiple of 60 ms)")
    p.add_argument("--realtime", action="store_true", help="feed audio at real-time pace")
    p.add_argument("--rate", type=int, default=None, help="declared sample rate; must match the file")
    p.add_argument("--json", action="store_true", help="one JSON event per line, then a summary")


def file_chunks(path: str | Path, chunk_ms: int, *, declared_rate: int | None = None,
                realtime: bool = False) -> Iterator[np.ndarray]:
    """Yield 16 kHz float32 chunks of ``chunk_ms`` from an audio file (resampled as needed).
    With ``realtime`` each chunk is yielded no earlier than its time in the audio."""
    samples, rate = read_audio(path, declared_rate=declared_rate)
    resample = StreamResampler(rate)
    step = rate * chunk_ms // 1000
    t0 = time.monotonic()
    for i in range(0, len(samples), step):
        if realtime:
            due = t0 + (i + step) / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing a replay, not synchronisation
        yield resample(samples[i : i + step])


def emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        sys.stdout.flush()


def stream_file(processor, chunks: Iterator[np.ndarray], handle) -> None:
    """Feed ``chunks`` to a three-verb processor (insert_audio / process / finish), passing
    the events of each step to ``handle``."""
    for chunk in chunks:
        processor.insert_audio(chunk)
        handle(processor.process())
    handle(processor.finish())
