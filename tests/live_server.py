"""Run ``streamst serve`` as a subprocess on a free loopback port for end-to-end tests.

Bounded everywhere: the health poll has a deadline and the process is always killed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CLI = "import sys; from streamst.cli import main; sys.exit(main())"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll ``url`` every 0.2 s until it answers 200, the deadline passes or ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} answered:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.2)  # poll interval of a deadline-bounded loop
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise TimeoutError(f"{url} did not answer within {timeout_s} s ({last}):\n{tail}")


@dataclass
class LiveServer:
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)


@contextlib.contextmanager
def running_server(models_root: Path, *extra: str, profile: str = "tiny",
                   startup_s: float = 180.0) -> Iterator[LiveServer]:
    """``streamst serve --profile tiny`` with ``STREAMST_MODELS=models_root``; yields once
    ``/healthz`` answers 200."""
    port = free_port()
    env = dict(os.environ, STREAMST_MODELS=str(models_root), PYTHONUNBUFFERED="1")
    env.pop("STREAMST_TOKEN", None)  # auth only where a test asks for it (--token)
    with tempfile.TemporaryDirectory(prefix="streamst-serve-") as tmp:
        log = Path(tmp) / "server.log"
        cmd = [sys.executable, "-c", CLI, "serve", "--profile", profile, "--host", "127.0.0.1",
               "--port", str(port), *extra]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", startup_s, proc, log)
            yield LiveServer(port, proc, log)
        finally:
            stop_process(proc)
