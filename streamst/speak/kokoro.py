"""Kokoro-82M as a speech engine: neural TTS on CPU through ``kokoro-onnx`` (onnxruntime).

A model directory holds the released files ``kokoro-v1.0.onnx`` and ``voices-v1.0.bin``
(from https://github.com/thewh1teagle/kokoro-onnx/releases, tag ``model-files-v1.0``);
``streamst models build`` makes a random-weight one in the same format offline
(:mod:`streamst.builders.kokoro`). kokoro-onnx phonemises with its bundled espeak-ng
library, so no G2P download is needed. Kokoro speaks en, ja, zh, es, fr, it, pt; a voice
per language (``options.voices`` in the profile overrides :data:`LANGS`).

Why Kokoro (docs/architecture.md, "Spoken output"): Apache-2.0 weights and an MIT
runtime (Piper's maintained 1.3 line is GPL-3.0), 82M parameters in one ONNX graph on
onnxruntime (no torch at run time, thread-safe sessions), and 24 kHz output, the OpenAI
rate, so no resampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from streamst.errors import ModelNotFoundError, UserError

MODEL_FILE = "kokoro-v1.0.onnx"
VOICES_FILE = "voices-v1.0.bin"
DOWNLOAD = ("download kokoro-v1.0.onnx and voices-v1.0.bin from "
            "https://github.com/thewh1teagle/kokoro-onnx/releases/tag/model-files-v1.0 into {where}")
# language -> (voice, kokoro-onnx phonemiser language)
LANGS = {"en": ("af_heart", "en-us"), "ja": ("jf_alpha", "ja"), "zh": ("zf_xiaobei", "cmn"),
         "es": ("ef_dora", "es"), "fr": ("ff_siwis", "fr-fr"), "it": ("if_sara", "it"), "pt": ("pf_dora", "pt-br")}


class KokoroSynthesizer:
    name = "kokoro"
    sample_rate = 24000

    def __init__(self, engine, voices: Mapping[str, str]) -> None:
        self.engine = engine
        known = set(engine.get_voices())
        self.langs = {lang: (voices.get(lang, voice), code) for lang, (voice, code) in LANGS.items()}
        self.langs = {lang: vc for lang, vc in self.langs.items() if vc[0] in known}

    @classmethod
    def load(cls, where: str, voices: Mapping[str, str] | None = None, hint: str = "") -> KokoroSynthesizer:
        folder = Path(where).expanduser() if where else None
        if folder is None or not (folder / MODEL_FILE).is_file() or not (folder / VOICES_FILE).is_file():
            raise ModelNotFoundError(f"the kokoro speech model is missing at {where or '(no directory given)'}: "
                                     + DOWNLOAD.format(where=where or "a directory") + (f" ({hint})" if hint else ""))
        try:
            from kokoro_onnx import Kokoro
        except ImportError as e:
            raise UserError("the kokoro speech engine needs kokoro-onnx: pip install kokoro-onnx") from e
        return cls(Kokoro(str(folder / MODEL_FILE), str(folder / VOICES_FILE)), dict(voices or {}))

    def supports(self, language: str) -> bool:
        return language in self.langs

    def synthesize(self, text: str, language: str, *, speed: float = 1.0) -> np.ndarray:
        if language not in self.langs:
            raise UserError(f"the kokoro engine has no voice for {language!r} (it speaks {', '.join(self.langs)})")
        voice, code = self.langs[language]
        audio, rate = self.engine.create(text, voice=voice, speed=float(speed), lang=code)
        if rate != self.sample_rate:  # not Kokoro's own 24 kHz: resample (no import of speak.engine, which loads us)
            import soxr

            return soxr.resample(np.asarray(audio, np.float32), rate, self.sample_rate).astype(np.float32)
        return np.asarray(audio, dtype=np.float32)
