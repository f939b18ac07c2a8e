"""The streamst websocket service: ``streamst serve`` (docs/protocol.md; its modules and their
layers: docs/architecture.md). ``Server`` is imported on first use, so that the protocol
modules load without the models (torch)."""

from typing import Any

__all__ = ["Server", "ServerConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from streamst.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
