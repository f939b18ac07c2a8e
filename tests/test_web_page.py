"""End to end: the live-captioning page in headless Chromium against ``streamst serve``.

Chromium gets a fake microphone that plays an espeak-ng wav
(``--use-file-for-fake-audio-capture``), opens ``/?autostart=1&src=zh&tgt=en``, and the test
reads the DOM through the Chrome DevTools Protocol (a minimal client over the browser's
websocket, ``Runtime.evaluate``) until captions appear. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import running_server, stop_process

WEB = Path(__file__).resolve().parent.parent / "streamst" / "web"
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
TOKEN = "t0ken-for-tests"  # the page passes ?token= from its own URL to /ws
NO_CHROMIUM = "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"

# the closed network refuses anything but loopback: keep Chromium from trying
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]

# what the page shows, read in one Runtime.evaluate
PAGE_STATE_JS = """(() => {
  if (!document.body || !document.getElementById('conn')) return '';  // still loading
  const texts = (sel) => Array.from(document.querySelectorAll(sel)).map((e) => e.textContent);
  return JSON.stringify({
    state: document.body.dataset.state,
    conn: document.getElementById('conn').textContent,
    error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
    utterances: document.querySelectorAll('#captions .utterance').length,
    transcript_committed: texts('.utterance .transcript .committed'),
    transcript_tentative: texts('.utterance .transcript .tentative'),
    translation_committed: texts('.utterance .translation .committed'),
    translation_tentative: texts('.utterance .translation .tentative'),
    translation_langs: Array.from(document.querySelectorAll('.utterance .translation'))
                         .map((e) => e.dataset.language),
    al: document.getElementById('al').textContent,
    lag: document.getElementById('lag').textContent,
    level: document.getElementById('level').value,
  });
})()"""


class CDP:
    """A minimal Chrome DevTools Protocol client (flattened sessions) over ``websockets``."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.log: list[str] = []  # console messages and exceptions of the page

    async def call(self, method: str, params: dict | None = None, session: str | None = None,
                   timeout_s: float = 30.0) -> dict:
        msg_id = next(self.ids)
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"CDP {method}: no answer in {timeout_s} s")
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"CDP {method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, ev: dict) -> None:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.log.append(f"console.{p.get('type')}: {args}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.log.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")

    async def evaluate(self, session: str, expression: str):
        r = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {r['exceptionDetails']}")
        return r["result"].get("value")


def _devtools_endpoint(user_data: Path, proc: subprocess.Popen, timeout_s: float = 30.0) -> str:
    """Chromium writes ``DevToolsActivePort`` (port, browser path) once it listens."""
    f = user_data / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode}")
        if f.is_file():
            lines = f.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)  # poll interval of a deadline-bounded loop
    raise TimeoutError(f"chromium did not open its DevTools port within {timeout_s} s")


@contextlib.contextmanager
def chromium(tmp: Path, *extra: str) -> Iterator[str]:
    """Headless Chromium with a fresh profile; yields its browser DevTools websocket URL."""
    user_data = tmp / "chromium-profile"
    user_data.mkdir()
    proc = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={user_data}", "--remote-debugging-port=0",
                             *extra, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield _devtools_endpoint(user_data, proc)
    finally:
        stop_process(proc)


async def _open_tab(cdp: CDP, url: str) -> str:
    """A new tab showing ``url``; returns its (flattened) CDP session id."""
    target = await cdp.call("Target.createTarget", {"url": "about:blank"})
    attached = await cdp.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
    session = attached["sessionId"]
    await cdp.call("Runtime.enable", session=session)
    await cdp.call("Page.enable", session=session)
    await cdp.call("Page.navigate", {"url": url}, session=session)
    return session


async def _watch_page(endpoint: str, url: str, timeout_s: float) -> tuple[dict, dict, list[str]]:
    """Open ``url`` in a new tab and poll the page state until captions are complete.

    Returns (last state, what was seen at any poll, console log)."""
    import websockets

    async with websockets.connect(endpoint, max_size=None, open_timeout=10) as ws:
        cdp = CDP(ws)
        session = await _open_tab(cdp, url)
        seen = {"tentative": False, "latency": False, "translation": False, "transcript": False, "live": False}
        state: dict = {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            raw = await cdp.evaluate(session, PAGE_STATE_JS)
            if not raw:
                await asyncio.sleep(0.2)  # page still loading; poll interval of a bounded loop
                continue
            state = json.loads(raw)
            if state.get("error") or state.get("state") == "error":
                break
            seen["live"] |= state.get("state") == "live"
            seen["transcript"] |= any(t.strip() for t in state.get("transcript_committed", []))
            seen["translation"] |= any(t.strip() for t in state.get("translation_committed", []))
            seen["tentative"] |= any(t.strip() for t in state.get("translation_tentative", []) +
                                     state.get("transcript_tentative", []))
            seen["latency"] |= state.get("al", "–") != "–"
            if all(seen.values()):
                break
            await asyncio.sleep(0.5)  # poll interval of a deadline-bounded loop
        # stop the session through the page (sends "end"); best effort
        await cdp.evaluate(session, "window.streamst && window.streamst.stop(), 1")
        return state, seen, cdp.log


@pytest.mark.slow
def test_page_shows_live_captions(tiny_models_root, speech):
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    wav = speech("今天天气很好，我们去公园散步吧。", "zh", gap_ms=1500)
    with tempfile.TemporaryDirectory(prefix="streamst-chromium-") as tmp:
        # Chromium's fake capture device plays the wav in a loop (16, 44.1 and 48 kHz files all
        # work); the AudioContext runs at the device rate and the worklet resamples to 16 kHz
        with running_server(tiny_models_root, "--token", TOKEN) as server:
            # the page and its assets are served at /
            import urllib.request

            for name, ctype in (("", "text/html"), ("app.js", "javascript"), ("worklet.js", "javascript"),
                                ("style.css", "text/css")):
                with urllib.request.urlopen(f"{server.http}/{name}", timeout=10) as r:
                    assert r.status == 200 and ctype in r.headers.get("Content-Type", ""), name
            with chromium(Path(tmp), f"--use-file-for-fake-audio-capture={wav}") as endpoint:
                url = f"{server.http}/?autostart=1&src=zh&tgt=en&mode=simul&token={TOKEN}"
                state, seen, log = asyncio.run(asyncio.wait_for(_watch_page(endpoint, url, 150.0), 200.0))
            info = f"state={state}\nseen={seen}\nconsole={log[-20:]}\nserver log:\n{server.output()[-2000:]}"
            assert not state.get("error"), info
            assert seen["live"], info
            assert state["utterances"] >= 1, info
            assert seen["transcript"] and any(t.strip() for t in state["transcript_committed"]), info
            assert seen["translation"] and any(t.strip() for t in state["translation_committed"]), info
            assert "en" in state["translation_langs"], info
            assert seen["tentative"], info  # uncommitted words were rendered with .tentative
            assert seen["latency"], info
            assert state["lag"] != "–", info


# protocol events fed to the page through window.streamst.handle (no server, no microphone)
RENDER_JS = """(() => {
  const h = window.streamst.handle;
  for (let u = 0; u < 6; u++) {
    h({type: 'transcript', kind: 'partial', utterance: u, text: '今天天气', stable_text: '今天', tokens: [],
       language: 'zh', audio_ms: 0, start_ms: 0, end_ms: 0});
    h({type: 'translation', utterance: u, mode: 'simul', language: 'en', committed: 'Today', new_units: ['Today'],
       delays_ms: [600], elapsed_ms: [650], tentative: 'the weather', final: false, audio_ms: 1200});
  }
  h({type: 'transcript', kind: 'final', utterance: 5, text: '今天天气很好', stable_text: '今天天气很好', tokens: [],
     language: 'zh', audio_ms: 0, start_ms: 0, end_ms: 0});
  h({type: 'translation', utterance: 5, mode: 'simul', language: 'en', committed: 'Today the weather is fine',
     new_units: [], delays_ms: [], elapsed_ms: [], tentative: '', final: true, audio_ms: 2400});
  h({type: 'latency', utterance: 5, language: 'en', source_ms: 2400, metrics: {AL: 812.4, LAAL: 901.6}});
  h({type: 'status', audio_ms: 2400, processed_ms: 2000, lag_ms: 400});
  const q = (s) => Array.from(document.querySelectorAll(s));
  const u4 = document.querySelector('.utterance[data-utterance="4"]');
  const u5 = document.querySelector('.utterance[data-utterance="5"]');
  const out = {
    utterances: q('.utterance').map((e) => e.dataset.utterance),
    u4_transcript: [u4.querySelector('.transcript .committed').textContent,
                    u4.querySelector('.transcript .tentative').textContent],
    u4_translation: [u4.querySelector('.translation .committed').textContent,
                     u4.querySelector('.translation .tentative').textContent],
    u5_translation: [u5.querySelector('.translation .committed').textContent,
                     u5.querySelector('.translation .tentative').textContent],
    u5_final: u5.classList.contains('final'),
    tentative_opacity: getComputedStyle(u4.querySelector('.translation .tentative')).opacity,
    committed_opacity: getComputedStyle(u4.querySelector('.translation .committed')).opacity,
    al: document.getElementById('al').textContent, laal: document.getElementById('laal').textContent,
    lag: document.getElementById('lag').textContent,
  };
  h({type: 'error', code: 'bad_request', message: 'nope'});
  out.error = document.getElementById('error').textContent;
  out.state = document.body.dataset.state;
  return JSON.stringify(out);
})()"""


async def _render_events(endpoint: str, url: str, timeout_s: float) -> tuple[dict, list[str]]:
    import websockets

    async with websockets.connect(endpoint, max_size=None, open_timeout=10) as ws:
        cdp = CDP(ws)
        session = await _open_tab(cdp, url)
        deadline = time.monotonic() + timeout_s
        while not await cdp.evaluate(session, "!!(window.streamst && document.getElementById('conn'))"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not load in {timeout_s} s: {cdp.log}")
            await asyncio.sleep(0.1)  # poll interval of a deadline-bounded loop
        return json.loads(await cdp.evaluate(session, RENDER_JS)), cdp.log


def test_page_renders_events_and_keeps_last_utterances(tmp_path):
    """Committed / tentative rendering, latency figures, errors, and the DOM bound (?keep=3)."""
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    url = (WEB / "index.html").as_uri() + "?keep=3"
    with chromium(tmp_path) as endpoint:
        out, log = asyncio.run(asyncio.wait_for(_render_events(endpoint, url, 30.0), 60.0))
    assert out["utterances"] == ["3", "4", "5"], (out, log)
    assert out["u4_transcript"] == ["今天", "天气"]
    assert out["u4_translation"] == ["Today", " the weather"]
    assert out["u5_translation"] == ["Today the weather is fine", ""] and out["u5_final"]
    assert float(out["tentative_opacity"]) < float(out["committed_opacity"]) == 1.0
    assert (out["al"], out["laal"], out["lag"]) == ("812", "902", "400")
    assert out["error"] == "server error bad_request: nope" and out["state"] == "error"
