"""One rule for where a model comes from: a local directory or a hub id.

Every loader (FunASR ``AutoModel``, transformers ``from_pretrained``) asks
:func:`is_local_source` first, so ``./dir``, ``/abs/dir``, ``~/dir`` and any existing path are
read from disk (and a missing one fails at once with the profile's hint), while ``owner/name``
or a FunASR alias (``fsmn-vad``) goes to the hub through the library's own download path.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_local_source(source: str | Path) -> bool:
    """True when ``source`` names a filesystem path rather than a hub id or alias.

    Paths are ``Path`` objects, absolute, ``~``/``.``-prefixed, existing on disk, or with
    more than one ``/`` (hub ids are ``name`` or ``owner/name``).
    """
    if isinstance(source, Path):
        return True
    s = str(source)
    return (
        os.path.isabs(s)
        or s.startswith(("~", "./", "../"))
        or s == "."
        or s.count("/") > 1
        or (os.sep != "/" and os.sep in s)
        or os.path.exists(s)
    )


def local_path(source: str | Path) -> Path | None:
    """The expanded path when ``source`` is local, else ``None`` (a hub id)."""
    return Path(source).expanduser() if is_local_source(source) else None
