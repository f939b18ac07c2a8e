"""From a profile to loaded, shared models.

``Models`` loads each role lazily, once per process, and is shared by every session; it
holds no per-session state. Per-session objects (VAD state, recognisers, translation
streams) are made from it by ``new_vad()`` and the pipeline.
"""

from __future__ import annotations

import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

from streamst.asr.vad import EnergyVad, Vad
from streamst.errors import UserError
from streamst.profiles import ModelSpec, Profile, load_profile


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "cpu"  # cpu | cuda | cuda:N


@dataclass
class Models:
    """Lazily loaded models of one profile (thread-safe loading)."""

    profile: Profile
    options: RuntimeOptions = RuntimeOptions()
    root: Path | None = None  # models folder (default: profiles.models_dir())
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.profile.check_available(self.root)  # every missing model in one line, before any loading

    @classmethod
    def from_profile(cls, name: str, options: RuntimeOptions = RuntimeOptions()) -> "Models":
        return cls(load_profile(name), options)

    def _get(self, role: str, make) -> Any:
        with self._lock:
            if role not in self._cache:
                self._cache[role] = make()
            return self._cache[role]

    def _where(self, spec: ModelSpec) -> str:
        return self.profile.require(spec, self.root)

    @property
    def asr(self):
        """The shared SenseVoice model."""

        def make():
            from streamst.asr.sensevoice import SenseVoiceASR, SenseVoiceOptions

            spec = self.profile.asr
            if spec.kind != "sensevoice":
                raise UserError(f"profile '{self.profile.name}': unknown asr kind {spec.kind!r}")
            return SenseVoiceASR(self._where(spec), SenseVoiceOptions(device=self.options.device),
                                 hint=spec.hint(self.profile.name))

        return self._get("asr", make)

    def new_vad(self) -> Vad:
        """A fresh per-session VAD (state is per session; a VAD model is shared)."""
        spec = self.profile.vad
        if spec.kind == "energy-vad":
            return EnergyVad()
        if spec.kind == "fsmn-vad":
            from streamst.asr.fsmn_vad import FsmnVad, FsmnVadModel

            model = self._get("vad", lambda: FsmnVadModel.load(self._where(spec), hint=spec.hint(self.profile.name),
                                                               device=self.options.device))
            return FsmnVad(model)
        raise UserError(f"profile '{self.profile.name}': unknown vad kind {spec.kind!r}")

    @property
    def punc(self):
        """The shared punctuation model (cascade path)."""

        def make():
            from streamst.asr.punc import CtPunctuator, RulePunctuator

            spec = self.profile.punc
            if spec.kind == "rule-punc":
                return RulePunctuator()
            if spec.kind == "ct-punc":
                return CtPunctuator.load(self._where(spec), hint=spec.hint(self.profile.name), device=self.options.device)
            raise UserError(f"profile '{self.profile.name}': unknown punc kind {spec.kind!r}")

        return self._get("punc", make)

    @property
    def mt(self):
        """The shared translation model."""

        def make():
            from streamst.mt.qwen import QwenOptions, QwenTranslator

            spec = self.profile.mt
            if spec.kind != "qwen":
                raise UserError(f"profile '{self.profile.name}': unknown mt kind {spec.kind!r}")
            return QwenTranslator(self._where(spec), QwenOptions(device=self.options.device),
                                  hint=spec.hint(self.profile.name))

        return self._get("mt", make)
