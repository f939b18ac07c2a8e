"""The speech-synthesis interface and the engine kinds a profile's ``tts`` role may name.

A profile entry ``"tts": {"kind": "espeak-ng"}`` (no source: the system's espeak-ng) or
``"tts": {"kind": "kokoro", "source": DIR}`` (a Kokoro ONNX model directory) selects the
engine; ``options.voices`` maps a target language to a voice of the engine. Without a
``tts`` entry the engine is espeak-ng. Engines are shared by every session (thread-safe:
each call is independent) and return float32 mono samples at their own ``sample_rate``;
:func:`to_output` brings them to the output format (24 kHz, the OpenAI rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streamst.errors import UserError

OUTPUT_RATE = 24000  # every spoken chunk leaves the server as PCM16 mono at this rate


@runtime_checkable
class Synthesizer(Protocol):
    """Text to speech for one engine (shared by sessions; no per-call state)."""

    name: str  # engine kind, e.g. "espeak-ng"
    sample_rate: int  # rate of what synthesize returns

    def supports(self, language: str) -> bool:
        """Whether this engine has a voice for ``language``."""
        ...

    def synthesize(self, text: str, language: str, *, speed: float = 1.0) -> np.ndarray:
        """Speak ``text`` in ``language``; ``speed`` > 1 speaks faster. Blocking (call it
        from a worker thread); returns float32 mono samples at ``sample_rate``."""
        ...


def to_output(samples: np.ndarray, rate: int) -> np.ndarray:
    """Float32 mono at ``rate`` -> float32 mono at :data:`OUTPUT_RATE`."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if rate == OUTPUT_RATE or x.size == 0:
        return x
    import soxr

    return soxr.resample(x, rate, OUTPUT_RATE).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    """Float32 samples -> little-endian PCM16 bytes."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _espeak(where: str, options: Mapping[str, Any], hint: str) -> Synthesizer:
    from streamst.speak.espeak import EspeakSynthesizer

    return EspeakSynthesizer(voices=options.get("voices", {}))


def _kokoro(where: str, options: Mapping[str, Any], hint: str) -> Synthesizer:
    from streamst.speak.kokoro import KokoroSynthesizer

    return KokoroSynthesizer.load(where, voices=options.get("voices", {}), hint=hint)


# kind -> factory(where, the profile entry's options, how to get the model)
KINDS = {"espeak-ng": _espeak, "kokoro": _kokoro}


def load_synthesizer(kind: str, where: str = "", options: Mapping[str, Any] | None = None,
                     hint: str = "") -> Synthesizer:
    """The engine ``kind`` loaded from ``where`` (a directory; empty for espeak-ng)."""
    factory = KINDS.get(kind)
    if factory is None:
        raise UserError(f"unknown tts kind {kind!r} (known: {', '.join(KINDS)})")
    return factory(where, options or {}, hint)


def parse_engine(value: str) -> tuple[str, str]:
    """``KIND`` or ``KIND:DIR`` (the ``--tts`` option) -> (kind, source)."""
    kind, _, source = value.partition(":")
    if kind not in KINDS:
        raise UserError(f"--tts: unknown engine {kind!r} (known: {', '.join(KINDS)}; KIND or KIND:DIR)")
    return kind, source
