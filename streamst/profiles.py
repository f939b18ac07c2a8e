"""Model profiles and the local model store.

A profile (``NAME.json``) names the ASR, VAD, punctuation and MT models. The profiles that
ship with streamst are package data (``streamst/data/profiles/``); a profile of the same
name in ``<models folder>/profiles/`` replaces one of them, and a JSON path works too.
Each ``source`` is either a hub id (``iic/SenseVoiceSmall``, ``Qwen/Qwen3-1.7B``: downloaded
by FunASR (ModelScope) / transformers (Hugging Face) on first use, loaded from the local
hub cache when it is there, :mod:`streamst.hub`), a local directory, or ``store:REL`` — a
directory under the model store (``<models folder>/store/REL``) that
``streamst models build`` makes offline with the builder named by ``build``. All go
through the same loading code.

The models folder is ``$STREAMST_MODELS`` if set, else the ``models/`` folder of a source
checkout (editable install), else ``~/.cache/streamst/models``.

:meth:`Profile.check_available` runs before any model is loaded: a profile that needs a
model which is neither here nor downloadable now (offline setting, or the hub does not
answer within 2 s) fails at once with one line naming every such model and how to get it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

from streamst import hub as hubs
from streamst.errors import ModelNotFoundError, UserError
from streamst.languages import HEARS_BY_KIND, TABLE

ROLES = ("asr", "vad", "punc", "mt", "e2e", "tts", "spk")
# a profile may lack these; modes that need them fail clearly (no tts: the espeak-ng engine)
OPTIONAL_ROLES = ("e2e", "tts", "spk")
OPTIONAL_USE = {"e2e": " (mode e2e)", "tts": " (spoken output)", "spk": " (speakers)"}  # what needs an optional role
PACKAGED_PROFILES = Path(__file__).resolve().parent / "data" / "profiles"
# Which hub a kind's loader downloads from (FunASR's AutoModel defaults to ModelScope).
HUB_OF_KIND = {"sensevoice": hubs.MODELSCOPE, "fsmn-vad": hubs.MODELSCOPE, "ct-punc": hubs.MODELSCOPE,
               "cam++": hubs.MODELSCOPE}


def models_dir() -> Path:
    env = os.environ.get("STREAMST_MODELS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "streamst").is_dir():  # a source checkout
        return repo / "models"
    return Path.home() / ".cache" / "streamst" / "models"


@dataclass(frozen=True)
class ModelSpec:
    """One model of a profile."""

    role: str  # asr | vad | punc | mt | e2e | tts | spk
    kind: str  # sensevoice | qwen | ct-punc | rule-punc | fsmn-vad | energy-vad | fun-asr-nano | cam++ | espeak-ng | kokoro
    source: str  # hub id, local dir, "store:REL", or "" for built-in kinds
    build: str | None = None  # builder recipe that makes a store: directory offline
    options: dict[str, Any] = field(default_factory=dict)
    languages: tuple[str, ...] = ()  # languages the model hears ("languages" of the entry); () = its kind's

    @property
    def hears(self) -> tuple[str, ...]:
        """Source languages this model recognises: the profile entry's ``languages``, else the
        defaults of its kind (:data:`streamst.languages.HEARS_BY_KIND`); () for text models."""
        return self.languages or HEARS_BY_KIND.get(self.kind, ())
    # what an e2e model was trained to do: "transcribe" and/or "translate" (the public
    # Fun-ASR-Nano only transcribes; a model from `streamst train` also translates)
    tasks: tuple[str, ...] = ("transcribe", "translate")

    @property
    def is_store(self) -> bool:
        return self.source.startswith("store:")

    @property
    def is_path(self) -> bool:
        s = self.source
        return bool(s) and (os.path.isabs(s) or s.startswith(("~", "./", "../")) or os.path.isdir(s))

    @property
    def hub(self) -> hubs.Hub | None:
        """The hub a hub id is downloaded from; None for store, path and built-in sources."""
        if not self.source or self.is_store or self.is_path:
            return None
        return hubs.HUBS[HUB_OF_KIND.get(self.kind, hubs.HF)]

    def present(self, root: Path | None = None) -> bool:
        """Here without network: built-in, a built store model, an existing directory, or a
        hub id in the local hub cache."""
        if not self.source:
            return True
        if self.hub is not None:
            return self.hub.cached(self.source) is not None
        return Path(self.resolve(root)).expanduser().is_dir()

    def resolve(self, root: Path | None = None) -> str:
        """The path or hub id handed to the loader."""
        if self.is_store:
            return str((root or models_dir()) / "store" / self.source[len("store:") :])
        return self.source

    def hint(self, profile: str) -> str:
        """How a user gets this model when it is missing."""
        if self.is_store:
            return f"run `streamst models build --profile {profile}`"
        if self.hub is None:
            return f"the directory {self.source} does not exist"
        return f"{self.hub.title}: fetched on first use, or `{self.hub.download_hint(self.source)}`"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    asr: ModelSpec
    vad: ModelSpec
    punc: ModelSpec
    mt: ModelSpec
    e2e: ModelSpec | None = None  # end-to-end speech model (mode e2e / all)
    # what runs the MT / e2e decoders unless --engine says: "local" or "vllm" at engine_url
    # (profile JSON: "engine": {"kind": "vllm", "url": "http://127.0.0.1:8100/v1,http://127.0.0.1:8101/v1"})
    engine: str = "local"
    engine_url: str = ""
    tts: ModelSpec | None = None  # speech engine of spoken output (streamst/speak); None: espeak-ng
    spk: ModelSpec | None = None  # speaker embedding model (speaker labels: serve --speakers)

    def hears(self, paths: Sequence[str] = ("simul", "cascade", "e2e")) -> tuple[str, ...]:
        """Source languages every model used by ``paths`` hears (simul/cascade: the ASR, e2e:
        the end-to-end model), in table order."""
        roles = {"e2e" if p == "e2e" else "asr" for p in paths}
        specs = [s for s in (self.spec(r) for r in sorted(roles)) if s is not None]
        heard = set.intersection(*(set(s.hears) for s in specs)) if specs else set()
        return tuple(code for code in TABLE if code in heard)

    def writes(self) -> tuple[str, ...]:
        """Target languages the profile's translation models write: every language of the table
        (Qwen3 writes 119 languages and dialects; the table holds those streamst has units,
        scripts and policy defaults for)."""
        return tuple(TABLE)

    def language_menu(self) -> dict[str, Any]:
        """What the page's language pickers show (``GET /languages``): the languages heard per
        path and written, each with its native name, direction and unit kind."""

        def rows(codes: Sequence[str]) -> list[dict[str, Any]]:
            return [{"code": c, "name": TABLE[c].name, "native": TABLE[c].native, "rtl": TABLE[c].rtl,
                     "unit": TABLE[c].unit} for c in codes]

        return {"profile": self.name, "hears": rows(self.hears(("simul",))),
                "hears_e2e": rows(self.hears(("e2e",))) if self.e2e is not None else [], "writes": rows(self.writes())}

    def source_problem(self, src_lang: str, paths: Sequence[str]) -> str | None:
        """Why ``src_lang`` cannot be heard on ``paths`` with this profile (None: it can;
        ``auto`` always can: the recogniser identifies the language per utterance)."""
        if src_lang == "auto":
            return None
        heard = self.hears(paths)
        if src_lang in heard:
            return None
        return (f"profile '{self.name}' does not hear {src_lang!r} on path(s) {', '.join(paths)}; "
                f"it hears: auto, {', '.join(heard)}")

    def specs(self) -> tuple[ModelSpec, ...]:
        return tuple(s for s in (self.asr, self.vad, self.punc, self.mt, self.e2e, self.tts, self.spk) if s is not None)

    def spec(self, role: str) -> ModelSpec | None:
        return getattr(self, role)

    def missing(self, root: Path | None = None) -> list[ModelSpec]:
        """Models of this profile that are not here: store models not built, directories that
        do not exist, hub ids absent from the local hub caches."""
        return [s for s in self.specs() if not s.present(root)]

    def require(self, spec: ModelSpec, root: Path | None = None) -> str:
        """Resolve ``spec`` to what the loader gets (a hub id in the local cache resolves to
        its cached directory, so loading needs no network), or raise one clear line saying
        which profile, model and how to get it."""
        where = spec.resolve(root)
        if spec.hub is not None:
            cached = spec.hub.cached(spec.source)
            if cached is not None:
                return str(cached)
            if spec.hub.offline():
                raise self.unavailable([spec], f"{spec.hub.offline_vars[0]} is set")
            return where
        if spec.source and not Path(where).expanduser().is_dir():
            raise ModelNotFoundError(
                f"profile '{self.name}': {spec.role} model {spec.kind} is missing at {where}; "
                f"{spec.hint(self.name)}"
            )
        return where

    def check_available(self, root: Path | None = None, *, probe=hubs.reachable, timeout_s: float = 2.0) -> None:
        """Fail now, in one line naming every model that cannot be had, when a model of the
        profile is neither here nor downloadable (offline setting, or its hub does not answer
        within ``timeout_s``). Hub models that can still be downloaded pass. Models of
        optional roles (``e2e``) do not fail the check alone (only the modes that use them
        need them, and they fail when loaded), but are named with the others."""
        missing = self.missing(root)
        if not missing:
            return
        local = [s for s in missing if s.hub is None]
        remote = [s for s in missing if s.hub is not None]
        why = []
        blocked = [s for s in remote if s.hub.offline()]  # type: ignore[union-attr]
        if blocked:
            why.append(", ".join(sorted({f"{s.hub.offline_vars[0]} is set" for s in blocked})))  # type: ignore[union-attr]
        ask = sorted({s.hub.endpoint() for s in remote if s not in blocked})  # type: ignore[union-attr]
        answers = probe(ask, timeout_s) if ask else {}
        down = [e for e in ask if not answers.get(e)]
        if down:
            why.append(f"no answer from {', '.join(down)} within {timeout_s:g} s")
            blocked += [s for s in remote if s not in blocked and s.hub.endpoint() in down]  # type: ignore[union-attr]
        unavailable = local + blocked
        if any(spec.role not in OPTIONAL_ROLES for spec in unavailable):
            raise self.unavailable(unavailable, "; ".join(why))

    def unavailable(self, specs: list[ModelSpec], why: str) -> ModelNotFoundError:
        """One line: every model of ``specs`` with how to get it, and why it cannot be fetched now."""
        names = "; ".join(f"{s.role}{OPTIONAL_USE.get(s.role, '')} {s.source} "
                          f"({s.hint(self.name)})" for s in specs)
        offline = f" Offline ({why}): download them where there is network, or point the profile at local directories." if why else ""
        return ModelNotFoundError(f"profile '{self.name}' needs {len(specs)} model(s) that are not here: {names}.{offline}")


def _profile_dirs() -> tuple[Path, ...]:
    return (models_dir() / "profiles", PACKAGED_PROFILES)  # the user's first: same names replace ours


def list_profiles() -> list[str]:
    return sorted({p.stem for d in _profile_dirs() for p in d.glob("*.json")})


TASKS = ("transcribe", "translate")


def _tasks(value: Any) -> tuple[str, ...]:
    tasks = tuple(value) if isinstance(value, list | tuple) else ()
    if not tasks or any(t not in TASKS for t in tasks):
        raise TypeError(f"tasks must be a non-empty list from {list(TASKS)}, got {value!r}")
    return tasks


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (``<models folder>/profiles/NAME.json``, else the packaged
    ``streamst/data/profiles/NAME.json``) or by JSON file path."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = next((d / f"{name_or_path}.json" for d in _profile_dirs() if (d / f"{name_or_path}.json").is_file()),
                    PACKAGED_PROFILES / f"{name_or_path}.json")
    if not path.is_file():
        known = ", ".join(list_profiles()) or "none"
        raise UserError(f"unknown profile '{name_or_path}' (known: {known})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        specs = {
            role: ModelSpec(
                role=role,
                kind=raw[role]["kind"],
                source=raw[role].get("source", ""),
                build=raw[role].get("build"),
                options=raw[role].get("options", {}),
                languages=tuple(raw[role].get("languages", ())),
                tasks=_tasks(raw[role].get("tasks", TASKS)),
            )
            for role in ROLES
            if role in raw or role not in OPTIONAL_ROLES
        }
        engine = raw.get("engine") or {}
        engine_kw = {"engine": str(engine.get("kind", "local")), "engine_url": str(engine.get("url", ""))}
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise UserError(f"profile {path} is malformed: {e!r}") from e
    return Profile(name=raw.get("name", path.stem), description=raw.get("description", ""), **engine_kw, **specs)


def builders() -> dict[str, Callable[[Path, int], None]]:
    """All offline builder recipes by name."""
    from streamst.builders import campplus, ctpunc, funasr_nano, kokoro, qwen, sensevoice

    table: dict[str, Callable[[Path, int], None]] = {}
    for mod in (sensevoice, qwen, ctpunc, funasr_nano, kokoro, campplus):
        table.update(mod.BUILDERS)
    return table


def build_profile(profile: Profile, *, force: bool = False, seed: int = 0, root: Path | None = None,
                  log: Callable[[str], None] = lambda s: None) -> list[Path]:
    """Build every ``store:`` model of ``profile`` that is missing (or all with ``force``)."""
    table = builders()
    built: list[Path] = []
    for spec in profile.specs():
        if not spec.is_store:
            continue
        target = Path(spec.resolve(root))
        if target.is_dir() and not force:
            log(f"{spec.role}: {target} exists")
            continue
        if spec.build not in table:
            raise UserError(f"profile '{profile.name}': no builder '{spec.build}' for {spec.role}")
        log(f"{spec.role}: building {spec.build} -> {target}")
        build_model(spec.build, target, seed, table)
        built.append(target)
    return built


def build_model(build: str, target: Path, seed: int = 0,
                table: dict[str, Callable[[Path, int], None]] | None = None) -> Path:
    """Build the model of builder ``build`` into ``target`` (replacing it): written to
    ``target.partial`` and renamed, so a half-built directory is never mistaken for a model."""
    import shutil

    table = table if table is not None else builders()
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    table[build](tmp, seed)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target
