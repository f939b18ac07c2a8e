"""The speaker options of the commands that run sessions (``translate``, ``eval``, ``serve``)."""

from __future__ import annotations

import argparse
from typing import Any

from streamst.errors import UserError
from streamst.speakers.cluster import MAX_SPEAKERS_LIMIT


def add_speaker_args(p: argparse.ArgumentParser, *, server: bool = False) -> None:
    p.add_argument("--speakers", action="store_true",
                   help="label speakers (the profile's spk model, CAM++): a `speaker` on every utterance"
                        + ("; clients may still send speakers: false" if server else ""))
    if not server:
        p.add_argument("--max-speakers", type=int, default=None, metavar="N",
                       help=f"at most N speakers (1..{MAX_SPEAKERS_LIMIT}; default 8)")


def session_speakers(args: argparse.Namespace, models: Any) -> Any:
    """The session's :class:`~streamst.speakers.turns.SpeakerTurns` for ``--speakers``, else None."""
    if not getattr(args, "speakers", False):
        return None
    n = getattr(args, "max_speakers", None)
    if n is not None and not 1 <= n <= MAX_SPEAKERS_LIMIT:
        raise UserError(f"--max-speakers must be in 1..{MAX_SPEAKERS_LIMIT}, got {n}")
    if not models.has_spk:
        raise UserError(f"--speakers needs a speaker model, and profile '{models.profile.name}' has none "
                        "(add an `spk` entry, or use --profile tiny / default)")
    from streamst.speakers.turns import session_speakers as make

    return make(models.spk, n)
