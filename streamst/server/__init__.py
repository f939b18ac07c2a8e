"""The streamst websocket service: ``streamst serve`` (docs/protocol.md).

Modules: ``protocol`` (messages, errors, close codes), ``worker`` (ASR batching, session
runner), ``connection`` (the native ``/ws`` protocol), ``funasr_compat`` (``/funasr`` and
the FunASR port), ``openai_realtime`` (``/v1/realtime/translations``),
``metrics`` (``/metrics``), ``app`` (the :class:`Server`: HTTP, limits, lifecycle),
``loadcheck`` (``streamst bench server``).
"""

from streamst.server.app import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
