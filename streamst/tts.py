"""Test speech from Debian's espeak-ng, converted to 16 kHz mono PCM16 by sox.

Used by tests, benchmarks and the evaluation test set; never by the service itself.
Mandarin uses the ``cmn-latn-pinyin`` voice, which reads Chinese characters correctly
(plain ``cmn`` misreads many of them).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from streamst.errors import UserError

VOICES = {"zh": "cmn-latn-pinyin", "en": "en-us", "ja": "ja", "ko": "ko", "de": "de", "fr": "fr", "es": "es",
          "fil": "id"}  # espeak-ng has no Filipino voice: the Indonesian one reads its Latin letters


def have_tts() -> bool:
    """True when espeak-ng and sox are both on PATH."""
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def _require_tools() -> None:
    if not have_tts():
        raise UserError(
            "espeak-ng and sox are needed to synthesise test speech "
            "(Debian: apt-get install espeak-ng sox)"
        )


def synthesize(text: str, lang: str, path: str | Path, *, speed: int = 150, gap_ms: int = 0,
               variant: str | None = None, pitch: int | None = None) -> Path:
    """Speak ``text`` in ``lang`` into a 16 kHz mono PCM16 wav at ``path``.

    ``gap_ms`` of silence is appended (utterance boundaries in tests). ``variant``: an
    espeak-ng voice variant (``m3``, ``f2``, ``klatt``...: ``espeak-ng --voices=variant``),
    ``pitch``: espeak-ng ``-p`` (0..99, default 50); together they make distinct synthetic
    speakers (speaker-turn tests and ``streamst bench speakers``).
    """
    _require_tools()
    voice = VOICES.get(lang, lang) + (f"+{variant}" if variant else "")
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), *(["-p", str(pitch)] if pitch is not None else []),
             "-w", str(raw), text],
            check=True, capture_output=True,
        )
        # -D: no dither, so the same text always gives the same samples (dither is random)
        cmd = ["sox", "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", str(path)]
        if gap_ms:
            cmd += ["pad", "0", f"{gap_ms / 1000:.3f}"]
        subprocess.run(cmd, check=True, capture_output=True)
    return path
