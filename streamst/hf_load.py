"""Load a transformers model (hub id or local directory) with one-line errors.

The same ``from_pretrained`` call serves a hub id (downloaded on first use) and a local
``save_pretrained`` directory; :func:`streamst.sources.is_local_source` decides which, so a
missing directory fails at once instead of being tried as a hub id. Any failure to find the
files becomes :class:`~streamst.errors.ModelNotFoundError` naming the model and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

import torch

from streamst.errors import ModelNotFoundError
from streamst.sources import local_path

T = TypeVar("T")
Dtype = Literal["auto", "float32", "bfloat16", "float16"]


def resolve_source(source: str, *, what: str, hint: str) -> str:
    """``source`` as ``from_pretrained`` should get it; a local directory must hold a config.json."""
    path = local_path(source)
    if path is None:
        return source
    if not (path / "config.json").is_file():
        detail = "does not exist" if not path.exists() else "has no config.json"
        raise ModelNotFoundError(f"{what} not found: {path} {detail}; {hint}")
    return str(path)


def load_pretrained(source: str, load: Callable[[str], T], *, what: str, hint: str) -> T:
    """Call ``load(resolved_source)`` (a ``from_pretrained`` chain), turning "files not found /
    hub unreachable" into one :class:`ModelNotFoundError` line."""
    resolved = resolve_source(source, what=what, hint=hint)
    try:
        return load(resolved)
    except OSError as e:  # hub unreachable, repo not cached, or files missing
        where = f"at {resolved}" if local_path(source) is not None else f"{source!r} is not available offline and the hub cannot be reached"
        raise ModelNotFoundError(f"{what} {where}; {hint}") from e


def resolve_dtype(dtype: Dtype, device: str) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)
