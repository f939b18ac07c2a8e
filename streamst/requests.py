"""The queue between the threads that call a shared model and the one thread that serves them.

Both batchers (:class:`~streamst.server.worker.AsrBatcher` for the ASR,
:class:`~streamst.mt.batching.ForwardBatcher` for the decoder) work the same way: a caller
queues a request carrying a :class:`~concurrent.futures.Future` and blocks on it; one thread
takes requests, batches what arrives close together and answers each future. This module
owns what they share:

* ``submit`` and ``close`` hold one lock, so a request is either queued before the closing
  ``None`` (and answered, by the thread or by :meth:`RequestQueue.fail_pending`) or refused
  at once: no caller can block forever on a queue nobody serves any more.
* :meth:`RequestQueue.get_before` is the "next request, until a deadline" step of every
  batching loop.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

EMPTY = object()  # get_before: nothing arrived before the deadline


class RequestQueue:
    """Requests (objects with a ``future``), ``None`` once closed, and any wake-up markers."""

    def __init__(self, what: str) -> None:
        self.what = what  # for the error: "<what> is closed"
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self.closed = False

    def submit(self, make: Callable[[Future], Any]) -> Any:
        """Blocking: queue ``make(future)`` and wait for its result (raised if it failed)."""
        fut: Future = Future()
        with self._lock:
            if self.closed:
                raise RuntimeError(f"{self.what} is closed")
            self._queue.put(make(fut))
        return fut.result()

    def put(self, item: Any) -> None:
        """Queue a marker (not a request), e.g. a wake-up for the serving thread."""
        self._queue.put(item)

    def close(self) -> None:
        """Refuse new requests; the serving thread finds ``None`` after every queued one."""
        with self._lock:
            self.closed = True
            self._queue.put(None)

    def get(self) -> Any:
        """The next item, waiting as long as it takes."""
        return self._queue.get()

    def get_before(self, deadline: float | None) -> Any:
        """The next item if one arrives before ``deadline`` (``time.monotonic()``; None: only
        what is queued now), else :data:`EMPTY`."""
        try:
            if deadline is None:
                return self._queue.get_nowait()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return EMPTY
            return self._queue.get(timeout=remaining)
        except queue.Empty:
            return EMPTY

    def fail_pending(self, held: Iterable[Any] = ()) -> None:
        """After the serving loop ended: fail ``held`` and every request still queued."""
        err = RuntimeError(f"{self.what} is closed")
        for item in held:
            item.future.set_exception(err)
        while (item := self.get_before(None)) is not EMPTY:
            if hasattr(item, "future"):
                item.future.set_exception(err)
