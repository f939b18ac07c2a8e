"""Punctuation restoration interface (the cascade's middle stage)."""

from __future__ import annotations

from typing import Protocol


class Punctuator(Protocol):
    """A loaded punctuation model shared by sessions (stateless per call)."""

    def punctuate(self, text: str) -> str:
        """Return ``text`` with punctuation restored (words/characters unchanged)."""
        ...
