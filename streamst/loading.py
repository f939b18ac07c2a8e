"""From a profile to loaded, shared models.

``Models`` loads each role lazily, once per process, and is shared by every session; it
holds no per-session state. Per-session objects (VAD state, recognisers, translation
streams) are made from it by ``new_vad()`` and the pipeline.
"""

from __future__ import annotations

import threading
from pathlib import Path
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Callable

from streamst.asr.vad import EnergyVad, Vad
from streamst.errors import UserError
from streamst.profiles import ModelSpec, Profile, load_profile


QUANTIZE = ("none", "int8")
ENGINES = ("local", "vllm")


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = "cpu"  # cpu | cuda | cuda:N
    # "int8": dynamic int8 Linear layers in the ASR, MT and e2e models (CPU only; about 2x
    # faster at real sizes, greedy output checked against float32 by `streamst bench dtype`)
    quantize: str = "none"
    # torch intra-op threads per model call on CPU (None: STREAMST_TORCH_THREADS, else 1; 0:
    # torch's own default). 1 suits a server of many sessions; one real-size session on an
    # otherwise idle machine runs faster with every core (streamst/threads.py)
    threads: int | None = None
    # what runs the MT and e2e decoders: "local" (in-process transformers) or "vllm" (the
    # vLLM servers listed in engine_url, comma-separated; `streamst engine start` prints it)
    engine: str = "local"
    engine_url: str = ""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "vllm" and not self.engine_url:
            raise UserError("--engine vllm needs --engine-url URL (printed by `streamst engine start --profile P`)")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 0):
            raise UserError(f"threads must be an integer >= 0, got {self.threads!r}")
        if self.quantize not in QUANTIZE:
            raise UserError(f"quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        if self.quantize == "int8" and not self.device.startswith("cpu"):
            raise UserError("--quantize int8 is a CPU option (torch dynamic quantisation); on a GPU use bfloat16")


def engine_options(profile: Profile, engine: str | None, engine_url: str | None) -> dict[str, str]:
    """``RuntimeOptions`` engine fields: the command line's, else the profile's."""
    return {"engine": engine or profile.engine, "engine_url": engine_url or profile.engine_url}


@dataclass
class Models:
    """Lazily loaded models of one profile (thread-safe loading)."""

    profile: Profile
    options: RuntimeOptions = RuntimeOptions()
    root: Path | None = None  # models folder (default: profiles.models_dir())
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)  # re-entrant: the asr may load the e2e model

    def __post_init__(self) -> None:
        from streamst.threads import pin_torch_threads

        self.profile.check_available(self.root)  # every missing model in one line, before any loading
        pin_torch_threads(self.options.device, self.options.threads)  # one per model call by default (streamst/threads.py)

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
        opts = dict(spec.options)
        if role == "asr":  # what the recogniser hears (its language ID chooses among them)
            opts["languages"] = spec.hears
        e2e = self.profile.e2e
        if role == "asr" and spec.kind == "fun-asr-nano" and e2e is not None and (e2e.kind, e2e.source) == (spec.kind, spec.source):
            opts["speech"] = lambda: self.e2e  # the same checkpoint as the e2e model: loaded once, shared
        return self._get(role, lambda: factory(where, self.options, spec.hint(self.profile.name), opts))

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
    def tts(self):
        """The shared speech engine of spoken output (:class:`~streamst.speak.engine.Synthesizer`):
        the profile's ``tts`` entry, else espeak-ng."""
        from streamst.speak.engine import load_synthesizer

        spec = self.profile.tts
        if spec is None:
            return self._get("tts", lambda: load_synthesizer("espeak-ng"))
        where = self._where(spec) if spec.source else ""
        return self._get("tts", lambda: load_synthesizer(spec.kind, where, spec.options, spec.hint(self.profile.name)))

    @property
    def spk(self):
        """The shared speaker-embedding model (:class:`~streamst.speakers.embed.Embedder`)."""
        return self._load("spk")

    @property
    def has_spk(self) -> bool:
        return self.profile.spk is not None

    @property
    def has_e2e(self) -> bool:
        return self.profile.e2e is not None

    def require(self, paths) -> None:
        """Raise one :class:`UserError` line if the profile lacks a model the paths need."""
        if "e2e" in paths and self.profile.e2e is None:
            raise UserError(f"mode e2e needs an end-to-end model, and profile '{self.profile.name}' has none "
                            "(add an `e2e` entry to the profile, or use --profile tiny / default)")
        if "e2e" in paths and not self.e2e_translates:
            raise UserError(self.e2e_transcribes_only())

    @property
    def e2e_translates(self) -> bool:
        """The profile's e2e model was trained to translate (its ``tasks``), not only to transcribe."""
        return self.profile.e2e is not None and "translate" in self.profile.e2e.tasks

    def e2e_transcribes_only(self) -> str:
        """The one-line refusal of a translating mode on a transcription-only e2e model."""
        spec = self.profile.e2e
        return (f"profile '{self.profile.name}': its e2e model {spec.source} transcribes only (tasks: "
                f"{', '.join(spec.tasks)}), so mode e2e would caption a transcript, not a translation; use mode "
                "simul, cascade or both, or fine-tune it for translation with `streamst train`")


# -- one factory per (role, kind): a new model is one new file plus one line here ------------
# factory(where, runtime options, hint, the profile entry's "options" object) -> shared model

def _sensevoice(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.asr.sensevoice import SenseVoiceASR, SenseVoiceOptions

    return SenseVoiceASR(where, SenseVoiceOptions(device=o.device, quantize=o.quantize), hint=hint)


def _funasr_nano_asr(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.asr.nano import NanoRecognizer

    speech = opts["speech"]() if "speech" in opts else _funasr_nano(where, o, hint, opts)
    return NanoRecognizer(speech, opts.get("languages", ()))


def _fsmn_vad(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.asr.fsmn_vad import FsmnVadModel

    return FsmnVadModel.load(where, hint=hint, device=o.device)


def _ct_punc(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.asr.punc import CtPunctuator

    return CtPunctuator.load(where, hint=hint, device=o.device)


def _rule_punc(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.asr.punc import RulePunctuator

    return RulePunctuator()


def _qwen(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.mt.qwen import QwenOptions, QwenTranslator

    return _on_engine(QwenTranslator(where, QwenOptions(device=o.device, quantize=o.quantize), hint=hint), "mt", o)


def _openai_http(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.mt.openai_http import HttpOptions, OpenAIHttpTranslator

    # `where`: the model's tokenizer (directory or hub id); the model itself runs on the server
    return OpenAIHttpTranslator.load(where, HttpOptions.from_mapping(opts), hint=hint)


def _funasr_nano(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.e2e.funasr_nano import FunAsrNanoSpeech, NanoOptions

    return _on_engine(FunAsrNanoSpeech(where, NanoOptions(device=o.device, quantize=o.quantize), hint=hint), "e2e", o)


def _on_engine(model: Any, role: str, o: RuntimeOptions) -> Any:
    """``model`` decoding on the runtime's engine (``vllm``: the server that serves ``role``)."""
    if o.engine == "vllm":
        from streamst.mt.vllm_engine import attach

        attach(model, role, o.engine_url)
    return model


def _campplus(where: str, o: RuntimeOptions, hint: str, opts: Mapping[str, Any]):
    from streamst.speakers.embed import CamPlusEmbedder

    threshold = opts.get("threshold")  # else the model directory's speaker.json, else the default
    return CamPlusEmbedder.load(where, hint=hint, device=o.device,
                                threshold=float(threshold) if threshold is not None else None)


KINDS: dict[str, dict[str, Callable[[str, RuntimeOptions, str, Mapping[str, Any]], Any]]] = {
    "asr": {"sensevoice": _sensevoice, "fun-asr-nano": _funasr_nano_asr},
    "vad": {"fsmn-vad": _fsmn_vad},
    "punc": {"ct-punc": _ct_punc, "rule-punc": _rule_punc},
    "mt": {"qwen": _qwen, "openai-http": _openai_http},
    "e2e": {"fun-asr-nano": _funasr_nano},
    "spk": {"cam++": _campplus},
}
