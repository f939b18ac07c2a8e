"""The batchers' request queue: every submitted request is answered, even across close()."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from streamst.requests import EMPTY, RequestQueue


@dataclass
class Req:
    x: int
    future: Future


def serve_until_closed(q: RequestQueue, served: list[int]) -> None:
    """A serving thread that answers one request at a time, then fails what is left."""
    while (req := q.get()) is not None:
        served.append(req.x)
        req.future.set_result(req.x * 2)
    q.fail_pending()


def test_submit_gets_its_answer_and_after_close_a_clear_error() -> None:
    q = RequestQueue("test batcher")
    served: list[int] = []
    t = threading.Thread(target=serve_until_closed, args=(q, served))
    t.start()
    assert q.submit(lambda f: Req(21, f)) == 42
    q.close()
    t.join(10)
    with pytest.raises(RuntimeError, match="test batcher is closed"):
        q.submit(lambda f: Req(1, f))
    assert served == [21]


def test_callers_racing_close_never_block() -> None:
    """Many callers submit while the queue closes: each gets a result or the closed error,
    none waits on a request nobody will answer."""
    q = RequestQueue("test batcher")
    served: list[int] = []
    t = threading.Thread(target=serve_until_closed, args=(q, served))
    t.start()
    start = threading.Barrier(9)

    def caller(i: int) -> str:
        start.wait(10)
        out = []
        for k in range(200):
            try:
                out.append(q.submit(lambda f: Req(i * 1000 + k, f)))
            except RuntimeError:
                return "closed"
        return "done"

    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(caller, i) for i in range(8)]
        start.wait(10)
        deadline = time.monotonic() + 10
        while len(served) < 50 and time.monotonic() < deadline:  # let some requests through first
            time.sleep(0.001)  # polling a counter with a deadline, not a sync point
        q.close()
        results = [f.result(timeout=20) for f in futs]  # a caller left blocking would time out here
    t.join(10)
    assert not t.is_alive() and "closed" in results


def test_get_before_a_deadline() -> None:
    q = RequestQueue("q")
    assert q.get_before(None) is EMPTY
    assert q.get_before(time.monotonic() + 0.01) is EMPTY
    q.put("wake")
    assert q.get_before(time.monotonic() + 5) == "wake"
