"""The choke point of every connection: any exception becomes a documented error.

Every coroutine a connection runs (the handler, the session runner, the ticker) is awaited
through :func:`guarded`. Whatever escapes it is classified by :func:`classify`:

* :class:`~streamst.server.codes.ProtocolError`: itself (a client mistake or a limit);
* ``ConnectionClosed``: the client went away; nothing to send;
* :class:`~streamst.errors.AudioFormatError`: ``bad_audio``;
* :class:`~streamst.errors.RemoteModelError`: ``engine_unavailable`` (vLLM or an MT server failed);
* anything else is a bug: ``internal_error`` (1011).

The connection's ``fail`` then sends the endpoint's error message and closes with the
code's close code, and counts it in ``streamst_errors_total{code}``. :func:`log_failure`
writes ONE log line per failure (the traceback only at debug level), so hostile input
never fills the log with tracebacks. An endpoint module needs only
``await guarded(coro, on_error)`` (or ``watch(task, on_error)`` for a background task)
with its own ``on_error``; :class:`Connection`
(:mod:`streamst.server.connection`) does it for every subclass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from streamst.errors import AudioFormatError, RemoteModelError
from streamst.server.codes import ProtocolError

log = logging.getLogger("streamst.server")


def classify(exc: BaseException) -> ProtocolError | None:
    """The documented error for an exception; ``None`` when the client is gone."""
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, ConnectionClosed):
        return None
    if isinstance(exc, AudioFormatError):
        return ProtocolError("bad_audio", str(exc))
    if isinstance(exc, RemoteModelError):  # the decoder engine failed or is gone (its own line)
        return ProtocolError("engine_unavailable", f"decoder engine unavailable: {exc}; the session ended")
    return ProtocolError("internal_error", f"internal error ({type(exc).__name__}); the session ended")


def log_failure(session: str, err: ProtocolError, exc: BaseException | None = None) -> None:
    """One line per failure; a bug's traceback only at debug level."""
    if err.code == "internal_error" and exc is not None and not isinstance(exc, ProtocolError):
        log.error("session %s: internal_error: %s: %s", session, type(exc).__name__, str(exc)[:300])
        log.debug("session %s: traceback", session, exc_info=exc)
    else:
        log.info("session %s: %s (%s)", session, err.code, err.message[:300])


def watch(task: asyncio.Task, on_error: Callable[[ProtocolError, BaseException], None]) -> asyncio.Task:
    """Hand an exception that ends ``task`` (not cancellation) to ``on_error`` as an error."""

    def done(t: asyncio.Task) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        err = classify(exc) if exc is not None else None
        if err is not None and exc is not None:
            on_error(err, exc)

    task.add_done_callback(done)
    return task


async def guarded(coro: Awaitable[Any], on_error: Callable[[ProtocolError, BaseException], None]) -> None:
    """Await ``coro``; hand any exception (not cancellation) to ``on_error`` as an error."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the one place every exception is turned into an answer
        err = classify(exc)
        if err is not None:
            on_error(err, exc)
