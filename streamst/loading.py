"""From a profile to loaded, shared models.

``Models`` loads each role lazily, once per process, and is shared by every session; it
holds no per-session state. Per-session objects (VAD state, recognisers, translation
streams) are made from it by ``new_vad()`` and the pipeline.
"""

from __future__ import annotations

import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

from streamst.asr.vad import EnergyVad, Vad
from streamst.errors import UserError
from streamst.profiles import ModelSpec, Profile, load_profile


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "cpu"  # cpu | cuda | cuda:N
    asr_quantize: str = "none"  # none | int8: SenseVoiceOptions.quantize (CPU; issue 13)


@dataclass
class Models:
    """Lazily loaded models of one profile (thread-safe loading)."""

    profile: Profile
    options: RuntimeOptions = RuntimeOptions()
    root: Path | None = None  # models folder (default: profiles.models_dir())
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        from streamst.threads import pin_torch_threads

        self.profile.check_available(self.root)  # every missing model in one line, before any loading
        pin_torch_threads(self.options.device)  # one torch thread per model call on CPU (streamst/threads.py)

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

    def _load(self, role: str) -> Any:
        """The shared model of ``role``, made by the factory its kind names in ``KINDS``."""
        spec = self.profile.spec(role)
        if spec is None:
            self.require((role,))
            raise UserError(f"profile '{self.profile.name}' has no {role} model")
        factory = KINDS.get(role, {}).get(spec.kind)
        if factory is None:
            known = ", ".join(KINDS.get(role, {})) or "none"
            raise UserError(f"profile '{self.profile.name}': unknown {role} kind {spec.kind!r} (known: {known})")
        where = self._where(spec) if spec.source else ""
        return self._get(role, lambda: factory(where, self.options, spec.hint(self.profile.name)))

    @property
    def asr(self):
        """The shared streaming-ASR recogniser (:class:`~streamst.asr.base.Recognizer`)."""
        return self._load("asr")

    def new_vad(self) -> Vad:
        """A fresh per-session VAD (state is per session; a VAD model is shared)."""
        spec = self.profile.vad
        if spec.kind == "energy-vad":
            return EnergyVad()
        if spec.kind == "fsmn-vad":
            from streamst.asr.fsmn_vad import FsmnVad

            return FsmnVad(self._load("vad"))
        raise UserError(f"profile '{self.profile.name}': unknown vad kind {spec.kind!r}")

    @property
    def punc(self):
        """The shared punctuation model (cascade path)."""
        return self._load("punc")

    @property
    def mt(self):
        """The shared text translation model (:class:`~streamst.mt.base.Translator`)."""
        return self._load("mt")

    @property
    def e2e(self):
        """The shared end-to-end speech model (:class:`~streamst.e2e.base.SpeechModel`)."""
        return self._load("e2e")

    @property
    def has_e2e(self) -> bool:
        return self.profile.e2e is not None

    def require(self, paths) -> None:
        """Raise one :class:`UserError` line if the profile lacks a model the paths need."""
        if "e2e" in paths and self.profile.e2e is None:
            raise UserError(f"mode e2e needs an end-to-end model, and profile '{self.profile.name}' has none "
                            "(add an `e2e` entry to the profile, or use --profile tiny / default)")


# -- one factory per (role, kind): a new model is one new file plus one line here ------------

def _sensevoice(where: str, o: RuntimeOptions, hint: str):
    from streamst.asr.sensevoice import SenseVoiceASR, SenseVoiceOptions

    return SenseVoiceASR(where, SenseVoiceOptions(device=o.device, quantize=o.asr_quantize), hint=hint)


def _fsmn_vad(where: str, o: RuntimeOptions, hint: str):
    from streamst.asr.fsmn_vad import FsmnVadModel

    return FsmnVadModel.load(where, hint=hint, device=o.device)


def _ct_punc(where: str, o: RuntimeOptions, hint: str):
    from streamst.asr.punc import CtPunctuator

    return CtPunctuator.load(where, hint=hint, device=o.device)


def _rule_punc(where: str, o: RuntimeOptions, hint: str):
    from streamst.asr.punc import RulePunctuator

    return RulePunctuator()


def _qwen(where: str, o: RuntimeOptions, hint: str):
    from streamst.mt.qwen import QwenOptions, QwenTranslator

    return QwenTranslator(where, QwenOptions(device=o.device), hint=hint)


def _funasr_nano(where: str, o: RuntimeOptions, hint: str):
    from streamst.e2e.funasr_nano import FunAsrNanoSpeech, NanoOptions

    return FunAsrNanoSpeech(where, NanoOptions(device=o.device), hint=hint)


KINDS: dict[str, dict[str, Callable[[str, RuntimeOptions, str], Any]]] = {
    "asr": {"sensevoice": _sensevoice},
    "vad": {"fsmn-vad": _fsmn_vad},
    "punc": {"ct-punc": _ct_punc, "rule-punc": _rule_punc},
    "mt": {"qwen": _qwen},
    "e2e": {"fun-asr-nano": _funasr_nano},
}
