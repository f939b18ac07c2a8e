"""Errors with a message meant for the user (CLI: one line + exit code; server: close code)."""


class UserError(Exception):
    """Bad input or a missing prerequisite, explained in one line."""

    exit_code = 2


class AudioFormatError(UserError):
    """Audio that cannot be decoded or has an invalid format."""


class ModelNotFoundError(UserError):
    """A model of a profile is not present locally and cannot be fetched."""

    exit_code = 3


class RemoteModelError(UserError):
    """A model server (an OpenAI-compatible MT backend) cannot be reached, does not serve the
    model, or refused a request; one line naming the server and what went wrong."""

    exit_code = 1  # as `streamst mic` when its server cannot be reached
