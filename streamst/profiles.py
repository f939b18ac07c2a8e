"""Model profiles and the local model store.

A profile (``models/profiles/NAME.json``) names the ASR, VAD, punctuation and MT models.
Each ``source`` is either a hub id (``iic/SenseVoiceSmall``, ``Qwen/Qwen3-1.7B``: downloaded
by FunASR / transformers on first use), a local directory, or ``store:REL`` — a directory
under the model store (``models/store/REL``) that ``streamst models build`` makes offline
with the builder named by ``build``. All three go through the same loading code.

The models folder is ``$STREAMST_MODELS`` if set, else the ``models/`` folder of the source
checkout (editable install), else ``~/.cache/streamst/models``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from streamst.errors import ModelNotFoundError, UserError

ROLES = ("asr", "vad", "punc", "mt", "e2e")
OPTIONAL_ROLES = ("e2e",)  # a profile may lack these; modes that need them fail clearly


def models_dir() -> Path:
    env = os.environ.get("STREAMST_MODELS")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent / "models"
    if (checkout / "profiles").is_dir():
        return checkout
    return Path.home() / ".cache" / "streamst" / "models"


@dataclass(frozen=True)
class ModelSpec:
    """One model of a profile."""

    role: str  # asr | vad | punc | mt | e2e
    kind: str  # sensevoice | qwen | ct-punc | rule-punc | fsmn-vad | energy-vad | fun-asr-nano
    source: str  # hub id, local dir, "store:REL", or "" for built-in kinds
    build: str | None = None  # builder recipe that makes a store: directory offline
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_store(self) -> bool:
        return self.source.startswith("store:")

    def resolve(self, root: Path | None = None) -> str:
        """The path or hub id handed to the loader."""
        if self.is_store:
            return str((root or models_dir()) / "store" / self.source[len("store:") :])
        return self.source

    def hint(self, profile: str) -> str:
        """How a user gets this model when it is missing."""
        if self.is_store:
            return f"run `streamst models build --profile {profile}`"
        if self.source and Path(self.source).is_absolute():
            return f"the directory {self.source} does not exist"
        return f"it is downloaded from the hub ({self.source}) on first use: needs network access"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    asr: ModelSpec
    vad: ModelSpec
    punc: ModelSpec
    mt: ModelSpec
    e2e: ModelSpec | None = None  # end-to-end speech model (mode e2e / all)

    def specs(self) -> tuple[ModelSpec, ...]:
        return tuple(s for s in (self.asr, self.vad, self.punc, self.mt, self.e2e) if s is not None)

    def spec(self, role: str) -> ModelSpec | None:
        return getattr(self, role)

    def missing(self, root: Path | None = None) -> list[ModelSpec]:
        """Store models of this profile that have not been built yet."""
        return [s for s in self.specs() if s.is_store and not Path(s.resolve(root)).is_dir()]

    def require(self, spec: ModelSpec, root: Path | None = None) -> str:
        """Resolve ``spec`` or raise one clear line saying which profile, model and how to get it."""
        where = spec.resolve(root)
        if spec.is_store and not Path(where).is_dir():
            raise ModelNotFoundError(
                f"profile '{self.name}': {spec.role} model {spec.kind} is missing at {where}; "
                f"{spec.hint(self.name)}"
            )
        return where


def list_profiles() -> list[str]:
    return sorted(p.stem for p in (models_dir() / "profiles").glob("*.json"))


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (``models/profiles/NAME.json``) or by JSON file path."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = models_dir() / "profiles" / f"{name_or_path}.json"
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
            )
            for role in ROLES
            if role in raw or role not in OPTIONAL_ROLES
        }
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise UserError(f"profile {path} is malformed: {e!r}") from e
    return Profile(name=raw.get("name", path.stem), description=raw.get("description", ""), **specs)


def builders() -> dict[str, Callable[[Path, int], None]]:
    """All offline builder recipes by name."""
    from streamst.builders import ctpunc, funasr_nano, qwen, sensevoice

    table: dict[str, Callable[[Path, int], None]] = {}
    for mod in (sensevoice, qwen, ctpunc, funasr_nano):
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
        tmp = target.with_name(target.name + ".partial")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        log(f"{spec.role}: building {spec.build} -> {target}")
        table[spec.build](tmp, seed)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        tmp.rename(target)  # a half-built directory is never mistaken for a model
        built.append(target)
    return built
