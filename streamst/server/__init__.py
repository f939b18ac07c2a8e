"""The streamst websocket service: ``streamst serve`` (docs/protocol.md).

Modules: ``codes`` (error and close codes, ``ProtocolError``), ``strict`` (strict JSON in
and out, schema validation), ``guard`` (the per-connection choke point), ``protocol``
(native messages and schemas), ``config`` (``ServerConfig``), ``session`` (the one session
opener), ``worker`` (ASR batching, session runner on a fixed chunk grid), ``connection``
(the base connection and the native ``/ws`` protocol), ``funasr_compat`` (``/funasr`` and the
FunASR port), ``openai_realtime`` (``/v1/realtime/translations``), ``metrics`` (``/metrics``), ``app`` (the :class:`Server`:
HTTP, limits, lifecycle). Its benchmarks live in :mod:`streamst.bench`.

``Server`` is imported on first use: the protocol modules load without the models (torch).
"""

from typing import Any

__all__ = ["Server", "ServerConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from streamst.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
