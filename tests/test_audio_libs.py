"""The kept libraries behind audio.py and the terminal client: soxr streaming resampling,
`wave` headers, wcwidth display width."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from streamst.audio import StreamResampler, wav_header
from streamst.errors import AudioFormatError


@pytest.mark.parametrize("rate", [8000, 24000, 44100, 48000])
def test_streaming_resampler_is_chunking_invariant_and_keeps_a_tone(rate):
    t = np.arange(rate * 2) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    whole = StreamResampler(rate)
    ref = np.concatenate([whole(x), whole.flush()])
    r = StreamResampler(rate)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, x.size), 40, replace=False))
    parts = [r(p) for p in np.split(x, cuts)] + [r.flush()]
    got = np.concatenate(parts)
    assert abs(got.size - 32000) <= 1 and got.size == ref.size
    np.testing.assert_allclose(got, ref, atol=1e-5)  # chunking changes nothing
    spectrum = np.abs(np.fft.rfft(got[4000:20000]))
    assert abs(np.argmax(spectrum) - 440) <= 2  # 1 Hz bins: the tone is still 440 Hz


def test_identity_rate_passes_samples_through():
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    r = StreamResampler(16000)
    assert r(x) is not None and np.array_equal(r(x), x) and r.flush().size == 0


def _wav(rate=8000, channels=1, width=2, frames=10) -> bytes:
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(channels), w.setsampwidth(width), w.setframerate(rate)
        w.writeframes(b"\x01\x00" * (frames * channels * width // 2))
    return b.getvalue()


def test_wav_header_gives_rate_and_data_offset():
    data = _wav(8000, frames=100)
    rate, offset = wav_header(data[:60])  # only the start of the stream has arrived
    assert (rate, offset) == (8000, 44) and data[offset:offset + 2] == b"\x01\x00"
    for bad in (_wav(channels=2), _wav(width=1), b"RIFF\x00\x00\x00\x00WAVEjunk"):
        with pytest.raises(AudioFormatError):
            wav_header(bad)


def test_display_width_uses_wcwidth():
    from streamst.commands._common import display_width as _width

    assert _width("区块链") == 6 and _width("abc") == 3
    assert _width("e\u0301") == 1  # a combining accent takes no column
    assert _width("a\x07b") == 2  # control characters take none either
