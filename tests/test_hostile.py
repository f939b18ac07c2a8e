"""Fuzz: hundreds of generated hostile inputs on every websocket endpoint. Each must get its
documented answer (error message + close code; or an error message after which the session
goes on, on the OpenAI endpoint; or a close from the websocket layer; or documented
tolerance), be counted in ``streamst_errors_total``, leave the server healthy, and never
put a traceback in the log. Cases: tests/hostile_cases.py (one table entry per endpoint)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from streamst.server import ServerConfig
from streamst.server.codes import ERRORS
from tests.hostile_cases import (
    ENDPOINTS,
    MAX_FRAME,
    OPENAI,
    Case,
    Close,
    Endpoint,
    Error,
    Http,
    Ok,
    RawText,
    admission_cases,
    all_cases,
)
from tests.server_util import ServerThread, metric_value, run_session

CONFIG = ServerConfig(profile="tiny", max_sessions=12, idle_timeout_s=20, start_timeout_s=20,
                      max_frame_bytes=MAX_FRAME, status_interval_s=0.5)


@pytest.fixture(scope="module")
def models(tiny_models):
    return tiny_models


def probed(ep: Endpoint, case: Case) -> bool:
    """Whether the connection must still answer the probe after the case's frames."""
    return isinstance(case.expect, Ok) or (isinstance(case.expect, Error) and not ep.closes(case.expect.code))


def run_case(srv: ServerThread, ep: Endpoint, case: Case) -> dict[str, Any]:
    """Send the case's frames (then the probe if the connection should stay); what came back."""
    msgs: list[dict[str, Any]] = []
    answered = False
    probe = probed(ep, case)
    headers = list(case.headers) or None
    try:
        with connect(srv.url(ep.path) + case.query, max_size=None, open_timeout=20, compression=None,
                     additional_headers=headers) as ws:
            try:
                for frame in case.frames:
                    if isinstance(frame, RawText):
                        ws.send(frame.data, text=True)
                    else:
                        ws.send(frame)
                if probe:
                    for frame in ep.probe:
                        ws.send(frame)
            except ConnectionClosed:
                pass  # the server closed first: read what it said
            deadline = time.monotonic() + 30
            try:
                while time.monotonic() < deadline:
                    m = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                    msgs.append(m)
                    if probe and ep.answered(m):
                        answered = True
                        break
            except (ConnectionClosed, TimeoutError):
                pass
            close = ws.close_code
    except InvalidStatus as e:
        return {"http": e.response.status_code, "msgs": [], "close": None, "answered": False, "errors": []}
    errors = [c for c in (ep.error_code(m) for m in msgs) if c is not None]
    return {"msgs": msgs, "close": close, "answered": answered, "errors": errors}


def check(ep: Endpoint, case: Case, got: dict[str, Any]) -> str | None:
    """None if the answer is the documented one, else what is wrong."""
    exp = case.expect
    if "http" in got and not isinstance(exp, Http):
        return f"handshake refused with HTTP {got['http']}"
    if isinstance(exp, Error) and not ep.closes(exp.code):  # the error, and the session goes on
        code = ep.code(exp.code)
        if got["errors"] != [code] or got["close"] is not None or not got["answered"]:
            return (f"expected {code} and the probe answered, got errors {got['errors']} close {got['close']} "
                    f"answered {got['answered']}")
    elif isinstance(exp, Error):
        code = ep.code(exp.code)
        if got["errors"] != [code] or got["close"] != ERRORS[exp.code]:
            return f"expected {code}/{ERRORS[exp.code]}, got errors {got['errors']} close {got['close']}"
    elif isinstance(exp, Close):
        if got["errors"] or got["close"] != exp.close_code:
            return f"expected close {exp.close_code}, got errors {got['errors']} close {got['close']}"
    elif isinstance(exp, Http):
        if got.get("http") != exp.status:
            return f"expected HTTP {exp.status}, got {got.get('http')} errors {got['errors']} close {got['close']}"
    elif isinstance(exp, Ok) and (got["errors"] or not got["answered"]):
        return f"expected the probe answered, got errors {got['errors']} close {got['close']} {got['msgs'][-2:]}"
    return None


def run_all(srv: ServerThread, jobs: list[tuple[Endpoint, Case]]) -> list[str]:
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda job: (job, run_case(srv, *job)), jobs, timeout=600))
    problems = []
    for (ep, case), got in results:
        wrong = check(ep, case, got)
        if wrong:
            problems.append(f"{ep.path} {case.name}: {wrong}")
    return problems


def expected_counts(jobs: list[tuple[Endpoint, Case]]) -> Counter:
    """Errors each code should have counted in ``streamst_errors_total`` (the endpoint's codes)."""
    return Counter(ep.code(case.expect.code) for ep, case in jobs if isinstance(case.expect, Error))


def no_tracebacks(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()[:200]}" for r in caplog.records
            if r.exc_info or "Traceback" in r.getMessage()]


def test_every_hostile_input_gets_its_documented_answer(models, caplog):
    caplog.set_level(logging.INFO)
    jobs = [(ep, case) for ep in ENDPOINTS.values() for case in all_cases(ep)]
    assert len(jobs) >= 300, len(jobs)
    srv = ServerThread(CONFIG, models)
    try:
        t0 = time.monotonic()
        problems = run_all(srv, jobs)
        elapsed = time.monotonic() - t0
        assert not problems, f"{len(problems)} of {len(jobs)} inputs got another answer:\n" + "\n".join(problems[:40])
        assert srv.wait_sessions(0, timeout=20) == 0
        status, _, body = srv.http("/healthz")
        assert status == 200 and json.loads(body)["ok"] is True
        _, _, metrics = srv.http("/metrics")
        want = expected_counts(jobs)
        own = {code for ep in ENDPOINTS.values() for code in (*ep.codes.values(), *ep.goes_on)}
        for code in (*ERRORS, *sorted(own)):  # every error counted once, and nothing else (no internal_error)
            assert metric_value(metrics, "streamst_errors_total", code=code) == want.get(code, 0), code
        # still serving real sessions afterwards
        noise = (np.random.default_rng(0).standard_normal(16000) * 0.05).astype(np.float32)
        msgs, close = run_session(srv.url(), {"src_lang": "zh", "tgt_langs": ["en"]}, noise)
        assert close == 1000 and msgs[-1]["type"] == "end"
    finally:
        srv.close()
    bad = no_tracebacks(caplog)
    assert not bad, bad
    n_errors = sum(want.values())
    print(f"\nfuzz: {len(jobs)} inputs on {len(ENDPOINTS)} endpoints in {elapsed:.1f} s; documented answers "
          f"{len(jobs)} ({n_errors} errors, {sum(isinstance(c.expect, Close) for _, c in jobs)} websocket-layer "
          f"closes, {sum(isinstance(c.expect, Ok) for _, c in jobs)} tolerated); tracebacks 0")


def test_connect_time_refusals_in_each_endpoints_shape(models, caplog):
    caplog.set_level(logging.INFO)
    from dataclasses import replace

    srv = ServerThread(replace(CONFIG, token="s3cret", allowed_origins=("http://good.example",)), models)
    jobs = [(ep, case) for ep in ENDPOINTS.values() for case in admission_cases()]
    assert OPENAI in ENDPOINTS.values()
    try:
        problems = run_all(srv, jobs)
        assert not problems, "\n".join(problems)
        _, _, metrics = srv.http("/metrics")
        want = expected_counts(jobs)
        for code in ("unauthorized", "origin_not_allowed"):
            assert metric_value(metrics, "streamst_errors_total", code=code) == want[code]
        # the OpenAI endpoint refuses with an OpenAI error event (invalid_request_error), then 1008
        got = run_case(srv, OPENAI, Case("no token", (), Error("unauthorized")))
        assert [m["type"] for m in got["msgs"]] == ["error"] and got["close"] == 1008, got
        assert got["msgs"][0]["error"]["type"] == "invalid_request_error", got
    finally:
        srv.close()
    assert not no_tracebacks(caplog)


def test_server_full_in_each_endpoints_shape(models):
    from dataclasses import replace

    srv = ServerThread(replace(CONFIG, max_sessions=1), models)
    try:
        with connect(srv.url()) as first:
            first.send(json.dumps({"type": "ping", "id": 1}))
            assert json.loads(first.recv(timeout=10))["type"] == "pong"
            for ep in ENDPOINTS.values():
                got = run_case(srv, ep, Case("full", (), Error("server_full")))
                assert check(ep, Case("full", (), Error("server_full")), got) is None, (ep.path, got)
                if ep is OPENAI:  # OpenAI's shape: an error event, error.type server_error
                    assert [m["type"] for m in got["msgs"]] == ["error"], got
                    assert got["msgs"][0]["error"]["type"] == "server_error", got
    finally:
        srv.close()
