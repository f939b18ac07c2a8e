"""The streamst websocket service: ``streamst serve`` (docs/protocol.md).

Modules: ``codes`` (error and close codes, ``ProtocolError``), ``strict`` (strict JSON in
and out, schema validation), ``guard`` (the per-connection choke point), ``protocol``
(native messages and schemas), ``worker`` (ASR batching, session runner on a fixed chunk
grid), ``connection`` (the base connection and the native ``/ws`` protocol),
``funasr_compat`` (``/funasr``), ``metrics`` (``/metrics``), ``app`` (the :class:`Server`:
HTTP, limits, lifecycle), ``loadcheck`` (``streamst bench server``), ``soak``
(``streamst bench soak``).
"""

from streamst.server.app import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
