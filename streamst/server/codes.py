"""Error codes and close codes of every streamst websocket endpoint (docs/protocol.md,
"Errors and close codes"), and :class:`ProtocolError`, the one exception that carries them.

Kept apart from the message schemas so that every endpoint module (``/ws``, ``/funasr``,
the OpenAI realtime one) and the shared helpers (:mod:`~streamst.server.strict`,
:mod:`~streamst.server.guard`) import it without importing each other.
"""

from __future__ import annotations

# Close codes (RFC 6455 where one fits; 4000-4999 are application codes).
CLOSE_NORMAL = 1000  # after the ``end`` summary
CLOSE_GOING_AWAY = 1001  # server shutting down
CLOSE_UNSUPPORTED = 1003  # a binary frame before ``start``
CLOSE_INVALID = 1007  # malformed or invalid message, bad audio, wrong order
CLOSE_POLICY = 1008  # authentication / origin
CLOSE_TOO_BIG = 1009  # frame larger than the server's max frame size
CLOSE_INTERNAL = 1011  # unexpected server error
CLOSE_TRY_LATER = 1013  # server full / overloaded
CLOSE_IDLE = 4001  # no message for idle_timeout_s, or no start within start_timeout_s
CLOSE_TOO_LONG = 4002  # session longer than max_session_s
CLOSE_SLOW_CONSUMER = 4003  # the client does not read its results
CLOSE_SUPERSEDED = 4004  # the session was resumed on a newer connection (streamst.server.resume)
CLOSE_RESUME_FAILED = 4005  # a resume that cannot be honoured

# error code -> close code. Every error the server sends is one of these.
ERRORS: dict[str, int] = {
    "binary_before_start": CLOSE_UNSUPPORTED,
    "malformed_json": CLOSE_INVALID,  # not JSON, not an object, NaN literals, too deep, lone surrogates
    "unknown_type": CLOSE_INVALID,  # missing or unknown "type"
    "unknown_field": CLOSE_INVALID,  # a field this message type does not have
    "missing_field": CLOSE_INVALID,
    "bad_value": CLOSE_INVALID,  # a field of the wrong type or out of range (numbers too big, ...)
    "unsupported_version": CLOSE_INVALID,
    "bad_sample_rate": CLOSE_INVALID,
    "bad_encoding": CLOSE_INVALID,
    "bad_language": CLOSE_INVALID,
    "bad_policy": CLOSE_INVALID,  # unknown policy name, inconsistent options (max_lag < k)
    "mode_unavailable": CLOSE_INVALID,  # e.g. mode e2e on a profile without an end-to-end model
    "speech_unavailable": CLOSE_INVALID,  # start.speak on a server without a speech engine (streamst/speak)
    "speakers_unavailable": CLOSE_INVALID,  # start.speakers true on a server without speakers
    "bad_audio": CLOSE_INVALID,  # odd byte count, NaN, out-of-range floats
    "wrong_order": CLOSE_INVALID,  # start twice, a message after end, ...
    "unauthorized": CLOSE_POLICY,
    "origin_not_allowed": CLOSE_POLICY,
    "frame_too_big": CLOSE_TOO_BIG,
    "server_full": CLOSE_TRY_LATER,
    "overloaded": CLOSE_TRY_LATER,  # pending audio beyond the per-session bound
    "engine_unavailable": CLOSE_TRY_LATER,  # the decoder engine (vLLM, an MT server) failed or went away
    "idle_timeout": CLOSE_IDLE,
    "session_too_long": CLOSE_TOO_LONG,
    "slow_consumer": CLOSE_SLOW_CONSUMER,
    "shutting_down": CLOSE_GOING_AWAY,  # also: a start while the server drains
    "resume_unknown": CLOSE_RESUME_FAILED,  # no kept session for the token (ended, expired, evicted)
    "resume_gap": CLOSE_RESUME_FAILED,  # events after last_seq are no longer kept (not acknowledged in time)
    "internal_error": CLOSE_INTERNAL,
}


class ProtocolError(Exception):
    """A client mistake or a limit: becomes an ``error`` message and a close."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def close_code(self) -> int:
        return ERRORS[self.code]
