"""Load a FunASR model (hub id or local directory) through ``funasr.AutoModel``.

One code path for both: a local directory with ``config.yaml`` + ``model.pt`` is read by
``AutoModel(model=DIR)`` exactly as a hub download is. Failures become
:class:`~streamst.errors.ModelNotFoundError` with one line that names the model and says
how to get it (the caller's ``hint``).

FunASR prints notices to stdout at import and while resolving models; they are sent to
stderr here so that a CLI's stdout stays clean.

Threads: ``AutoModel`` calls ``torch.set_num_threads(ncpu)`` (process-wide) before every
``generate``. ``ncpu`` defaults to the current count, so nothing changes; with a smaller
``ncpu`` wrap calls in :func:`keep_torch_threads` so the caller's count comes back after.
For the small VAD/punctuation models one thread is fastest: measured on a busy 2-core box,
the test suite ran 19 s with one thread and 126 s with two (OpenMP waits on tiny ops).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from streamst.errors import ModelNotFoundError
from streamst.sources import is_local_source

log = logging.getLogger(__name__)

REQUIRED_FILES = ("config.yaml", "model.pt")


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count after a FunASR call changed it."""
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, to keep a wrapped error on one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_auto_model(
    source: str | Path,
    *,
    what: str,
    hint: str,
    device: str = "cpu",
    ncpu: int | None = None,
    hub: str = "ms",
    **kwargs: Any,
) -> Any:
    """Return a ``funasr.AutoModel`` for ``source`` or raise ``ModelNotFoundError``.

    Args:
        source: hub id / FunASR alias (``"fsmn-vad"``, ``"iic/..."``) or a local directory.
        what: the model's role in messages, e.g. ``"punctuation model (ct-punc)"``.
        hint: how to get it, e.g. ``"run `streamst models build --profile tiny`"``.
        device: torch device; small models run fine on CPU.
        ncpu: torch threads FunASR sets on each call (default: the current count); the
            count in effect before loading is restored afterwards.
        hub: ``"ms"`` (ModelScope) or ``"hf"``.
        **kwargs: passed to ``AutoModel`` (config overrides).
    """
    if is_local_source(source):
        path = Path(source).expanduser()
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if not path.is_dir() or missing:
            detail = "does not exist" if not path.is_dir() else f"lacks {', '.join(missing)}"
            raise ModelNotFoundError(f"{what} not found: {path} {detail}; {hint}")
        model_arg = str(path)
    else:
        model_arg = str(source)
    with contextlib.redirect_stdout(sys.stderr), keep_torch_threads():
        from funasr import AutoModel  # slow import (~10 s): deferred to first load

        try:
            return AutoModel(
                model=model_arg,
                hub=hub,
                device=device,
                ncpu=ncpu if ncpu is not None else torch.get_num_threads(),
                disable_update=True,
                disable_pbar=True,
                disable_log=True,
                log_level=kwargs.pop("log_level", "WARNING"),
                **kwargs,
            )
        except Exception as e:  # FunASR signals a failed download only by a later failure
            where = "at " + model_arg if is_local_source(source) else repr(model_arg)
            raise ModelNotFoundError(
                f"{what} {where} could not be loaded ({_first_line(e)}); {hint}"
            ) from e
