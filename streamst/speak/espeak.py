"""espeak-ng as a speech engine: offline everywhere, a voice for every target language.

Runs the ``espeak-ng`` program (one process per segment, so calls from several threads are
independent) and reads its 22.05 kHz PCM16 from stdout. Mandarin uses ``cmn-latn-pinyin``,
which reads Chinese characters correctly (as the test-speech helper, :mod:`streamst.tts`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

import numpy as np

from streamst.errors import UserError
from streamst.languages import LANGUAGES
from streamst.tts import VOICES as TEST_VOICES

RATE = 22050  # espeak-ng's output rate
WPM = 175  # espeak-ng words per minute at speed 1.0 (its default)
VOICES = {**{lang: lang for lang in LANGUAGES}, **TEST_VOICES, "yue": "yue"}


class EspeakSynthesizer:
    name = "espeak-ng"
    sample_rate = RATE

    def __init__(self, voices: Mapping[str, str] | None = None, program: str = "espeak-ng") -> None:
        path = shutil.which(program)
        if path is None:
            raise UserError("the espeak-ng speech engine needs the espeak-ng program "
                            "(Debian: apt-get install espeak-ng; or set the profile's tts to another engine)")
        self.program = path
        self.voices = {**VOICES, **dict(voices or {})}

    def supports(self, language: str) -> bool:
        return language in self.voices

    def synthesize(self, text: str, language: str, *, speed: float = 1.0) -> np.ndarray:
        voice = self.voices.get(language, language)
        wpm = max(80, min(450, round(WPM * speed)))
        out = subprocess.run([self.program, "-v", voice, "-s", str(wpm), "--stdout", text],
                             check=True, capture_output=True, timeout=60).stdout
        return _wav_samples(out)


def _wav_samples(wav: bytes) -> np.ndarray:
    """The PCM16 samples of espeak-ng's stdout wav (its size fields are not filled in)."""
    at = wav.find(b"data", 12)
    if not wav.startswith(b"RIFF") or at < 0:
        raise RuntimeError("espeak-ng wrote no wav")
    raw = wav[at + 8:]
    raw = raw[: len(raw) // 2 * 2]
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
