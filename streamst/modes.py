"""The paths a session can run and the modes that name them (no model code: the CLI and the
wire protocol validate modes without importing torch)."""

from __future__ import annotations

from typing import Literal

Mode = Literal["e2e", "simul", "cascade", "both", "all"]
MODES: tuple[str, ...] = ("e2e", "simul", "cascade", "both", "all")
PATHS: tuple[str, ...] = ("e2e", "simul", "cascade")
AUTO = "auto"  # src_lang: each utterance's source language is SenseVoice's language ID
AUTO_FALLBACK = "zh"  # until (or unless) an utterance's language has been detected


def paths_of(mode: str) -> tuple[str, ...]:
    """The paths a mode runs, in the order ``e2e, simul, cascade``."""
    return {"e2e": ("e2e",), "simul": ("simul",), "cascade": ("cascade",), "both": ("simul", "cascade"),
            "all": PATHS}[mode]
