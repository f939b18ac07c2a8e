"""Audio input: decoding PCM frames and files, validation, streaming resampling to 16 kHz.

Everything downstream sees float32 mono samples in [-1, 1] at 16 kHz.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soxr

from streamst.errors import AudioFormatError

SAMPLE_RATE = 16000  # the pipeline's rate: every input is resampled to it (the one definition)
MIN_RATE, MAX_RATE = 8000, 192000
Encoding = Literal["pcm_s16le", "f32le"]


def decode_pcm(data: bytes, encoding: Encoding) -> np.ndarray:
    """Raw little-endian PCM bytes -> float32 samples. Rejects odd lengths and non-finite floats."""
    if encoding == "pcm_s16le":
        if len(data) % 2:
            raise AudioFormatError(f"pcm_s16le frame of {len(data)} bytes is not a whole number of samples")
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if encoding == "f32le":
        if len(data) % 4:
            raise AudioFormatError(f"f32le frame of {len(data)} bytes is not a whole number of samples")
        x = np.frombuffer(data, dtype="<f4").astype(np.float32)
        return check_samples(x)
    raise AudioFormatError(f"unknown encoding {encoding!r} (expected pcm_s16le or f32le)")


def check_samples(x: np.ndarray) -> np.ndarray:
    """Validate float samples: finite, roughly within [-1, 1] (clipped beyond)."""
    if x.size and not np.all(np.isfinite(x)):
        raise AudioFormatError("audio contains NaN or infinite samples")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 8.0:
        raise AudioFormatError(f"float samples must lie in [-1, 1]; peak is {peak:.1f} (PCM16 sent as f32le?)")
    return np.clip(x, -1.0, 1.0) if peak > 1.0 else x


def check_rate(rate: int) -> int:
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFormatError(f"sample rate {rate!r} is not supported (expected {MIN_RATE}..{MAX_RATE} Hz)")
    return rate


@dataclass
class WavInfo:
    rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def read_audio(path: str | Path, *, declared_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono at its own rate.

    ``declared_rate``, if given, must match the file's header (a mismatch means the caller
    would compute wrong timestamps). Raises :class:`AudioFormatError` with one clear line.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioFormatError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioFormatError(f"{path}: empty file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioFormatError(f"{path}: not a readable audio file ({e})") from e
    if declared_rate is not None and declared_rate != rate:
        raise AudioFormatError(f"{path}: declared sample rate {declared_rate} Hz but the file is {rate} Hz")
    check_rate(int(rate))
    if data.shape[0] == 0:
        raise AudioFormatError(f"{path}: contains no samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return check_samples(np.ascontiguousarray(mono, dtype=np.float32)), int(rate)


class StreamResampler:
    """Streaming resampler to 16 kHz: python-soxr's ``ResampleStream`` (libsoxr, the
    resampler SoX uses; state carried between calls, so chunking never changes the output
    beyond float rounding). ``flush()`` returns the filter's tail at the end of a stream."""

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE) -> None:
        self.in_rate, self.out_rate = check_rate(in_rate), out_rate
        self.identity = in_rate == out_rate
        self._stream = None if self.identity else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32",
                                                                      quality="HQ")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._stream is None or x.size == 0:
            return x
        return self._stream.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """The samples still inside the filter (call once, at the end of the stream)."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def wav_header(head: bytes) -> tuple[int, int]:
    """Parse the WAV header at the start of a byte stream with the standard ``wave`` module:
    (sample rate, offset of the PCM data). Only mono PCM16 is accepted (one clear line
    otherwise); the data chunk may continue beyond ``head``."""
    bio = io.BytesIO(head)
    try:
        with wave.open(bio, "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            offset = bio.tell()  # wave stops at the start of the data chunk's payload
    except (wave.Error, EOFError) as e:
        raise AudioFormatError(f"not a readable WAV header ({e}); send raw PCM16 or a PCM WAV") from e
    if channels != 1 or width != 2:
        raise AudioFormatError(f"WAV of {channels} channel(s), {8 * width}-bit: only mono 16-bit PCM is accepted")
    return check_rate(rate), offset


def pcm16_bytes(samples: np.ndarray) -> bytes:
    """float32 [-1, 1] -> PCM16 little-endian bytes (for clients and tests)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
