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
import os
import shutil
import signal
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
    behind: document.getElementById('behind').textContent,
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
                             *extra, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield _devtools_endpoint(user_data, proc)
    finally:
        stop_process(proc)
        # its helpers (renderer, crashpad handler) can outlive it and still write to the
        # profile while the caller removes it: end the whole process group too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


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
        seen = {"tentative": False, "latency": False, "translation": False, "transcript": False, "live": False,
                "behind": False}
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
            seen["behind"] |= state.get("state") == "live" and state.get("behind", "–").endswith(" s")
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
    with tempfile.TemporaryDirectory(prefix="streamst-chromium-", ignore_cleanup_errors=True) as tmp:
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
            assert seen["behind"], info  # the live lag behind the speaker was shown while live
            assert state["lag"] != "–", info


# ---------------------------------------------------------------------------------------------
# The page's rendering, driven with protocol events through window.streamst.handle (no server,
# no microphone): one Chromium for all of them, a fresh tab each.

SCREENSHOT_ENV = "STREAMST_PAGE_SCREENSHOT"  # set to a path to keep the captions screenshot (docs/)

# helpers defined in the page before each test's script
FEED_JS = """
window.T = {
  h: (ev) => window.streamst.handle(ev),
  q: (s) => Array.from(document.querySelectorAll(s)),
  css: (el, p) => getComputedStyle(el).getPropertyValue(p),
  text: (id) => document.getElementById(id).textContent,
  visible: (el) => !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden',
  noHScroll: () => document.documentElement.scrollWidth <= document.documentElement.clientWidth,
  tr: (u, lang, mode, committed, tentative, audio, final = false) => window.streamst.handle(
    {type: 'translation', utterance: u, mode, language: lang, committed, new_units: [], delays_ms: [],
     elapsed_ms: [], tentative, final, audio_ms: audio}),
  ts: (u, kind, text, stable, start, audio) => window.streamst.handle(
    {type: 'transcript', kind, utterance: u, text, stable_text: stable, tokens: [], language: 'zh',
     audio_ms: audio, start_ms: start, end_ms: audio}),
  // a session of two utterances on all three paths: the first finished, the second open
  demo() {
    T.ts(0, 'final', '区块链是今年最火热的科技趋势了', '区块链是今年最火热的科技趋势了', 300, 4000);
    for (const m of ['e2e', 'simul', 'cascade'])
      T.tr(0, 'en', m, 'Blockchain is the most trendy technology of the year.', '', 4000, true);
    T.h({type: 'latency', utterance: 0, language: 'en', source_ms: 3700,
         metrics: {AL: 1691.9, LAAL: 1701.2, AL_CA: 2882.4, LAAL_CA: 2890.1}});
    T.ts(1, 'partial', '所有草莓的基因都由几组含七条染色体的', '所有草莓的基因都由', 4800, 7200);
    T.tr(1, 'en', 'e2e', 'All genes of strawberry are', 'consist of', 7200);
    T.tr(1, 'en', 'simul', 'All strawberry genes', 'are made of', 7200);
    T.h({type: 'status', audio_ms: 7200, processed_ms: 7000, lag_ms: 200});
  },
};
true
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    with chromium(tmp_path_factory.mktemp("chromium")) as endpoint:
        yield endpoint


def page_url(**params: str) -> str:
    from urllib.parse import urlencode

    return (WEB / "index.html").as_uri() + ("?" + urlencode(params) if params else "")


async def _open_sized_tab(cdp: CDP, url: str, size: tuple[int, int]) -> str:
    """A new tab of ``size`` CSS pixels (scale 1) navigated to ``url``; its CDP session id."""
    session = await _open_tab(cdp, "about:blank")
    await cdp.call("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1],
                                                          "deviceScaleFactor": 1, "mobile": False}, session)
    await cdp.call("Page.navigate", {"url": url}, session=session)
    return session


async def _run_scripts(endpoint: str, url: str, scripts: list[str], size: tuple[int, int],
                       screenshot: bool) -> tuple[list, bytes | None, list[str]]:
    import base64

    import websockets

    async with websockets.connect(endpoint, max_size=None, open_timeout=10) as ws:
        cdp = CDP(ws)
        session = await _open_sized_tab(cdp, url, size)
        deadline = time.monotonic() + 30
        while not await cdp.evaluate(session, "!!(window.streamst && document.readyState === 'complete')"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not load in 30 s: {cdp.log}")
            await asyncio.sleep(0.1)  # poll interval of a deadline-bounded loop
        await cdp.evaluate(session, FEED_JS)
        results = []
        for js in scripts:
            raw = await cdp.evaluate(session, js)
            results.append(json.loads(raw) if isinstance(raw, str) else raw)
            # let layout observers (the caption auto-fit) run before the next script measures
            await cdp.evaluate(session, "new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))")
        png = None
        if screenshot:
            shot = await cdp.call("Page.captureScreenshot", {"format": "png"}, session)
            png = base64.b64decode(shot["data"])
        return results, png, cdp.log


def run_page(endpoint: str, url: str, *scripts: str, size=(1000, 600), screenshot=False):
    return asyncio.run(asyncio.wait_for(_run_scripts(endpoint, url, list(scripts), size, screenshot), 60.0))


def test_idle_page_says_press_start(browser):
    [out], _, log = run_page(browser, page_url(), """JSON.stringify({
      state: document.body.dataset.state, conn: T.text('conn'), toggle: T.text('toggle'),
      hint: T.visible(document.getElementById('hint')) ? T.text('hint') : null,
      hintPx: parseFloat(T.css(document.getElementById('hint'), 'font-size')),
      view: document.body.dataset.view, noHScroll: T.noHScroll()})""")
    assert out["state"] == "idle" and out["conn"] == "idle" and out["toggle"] == "Start", (out, log)
    assert out["hint"] and "Start" in out["hint"], out
    assert out["hintPx"] >= 20 and out["view"] == "captions" and out["noHScroll"], out


def test_captions_view_large_two_rolling_lines_per_path(browser, tmp_path):
    measure = """(() => {
      const bands = T.q('#room .band');
      const win = (b) => b.querySelector('.band-window');
      const lines = (b) => win(b).clientHeight / parseFloat(T.css(win(b), 'line-height'));
      const simul = document.querySelector('#room .band[data-mode="simul"]');
      const tent = simul.querySelector('.tentative'), comm = simul.querySelector('.committed');
      return JSON.stringify({
        keys: bands.map((b) => b.dataset.key),
        labels: bands.map((b) => b.querySelector('.band-name').textContent),
        lines: bands.filter((b) => !b.classList.contains('source')).map(lines),
        px: parseFloat(T.css(win(simul), 'font-size')),
        simul: [comm.textContent, tent.textContent],
        tentative: [T.css(tent, 'font-style'), T.css(tent, 'text-decoration-line'), T.css(tent, 'text-decoration-style')],
        committed: [T.css(comm, 'font-style'), T.css(comm, 'text-decoration-line')],
        fg: T.css(win(simul), 'color'), bg: T.css(document.body, 'background-color'),
        overflows: win(simul).querySelector('.band-text').offsetHeight > win(simul).clientHeight + 4,
        lastLineShown: tent.getBoundingClientRect().bottom <= win(simul).getBoundingClientRect().bottom + 1
                       && tent.getBoundingClientRect().top >= win(simul).getBoundingClientRect().top,
        allOnScreen: bands.every((b) => b.getBoundingClientRect().bottom <= document.getElementById('stage').getBoundingClientRect().bottom + 1),
        behind: T.q('#room .band:not(.source) .behind').map((e) => e.textContent),
        noHScroll: T.noHScroll(), hint: T.visible(document.getElementById('hint')),
      });
    })()"""
    more = "T.tr(1, 'en', 'simul', 'All strawberry genes are made of several groups', 'of seven chromosomes', 7800), 1"
    [_, _, out], png, log = run_page(browser, page_url(mode="all"), "T.demo(), 1", more, measure,
                                     size=(1280, 720), screenshot=True)
    assert out["keys"] == ["source", "en/e2e", "en/simul", "en/cascade"], (out, log)
    assert out["labels"] == ["source", "en · e2e", "en · simul", "en · cascade"], out
    assert all(abs(n - 2) < 0.05 for n in out["lines"]), out  # exactly two lines each
    assert out["px"] >= 32, out  # large text, even with four bands fitted on a 720 px screen
    assert out["allOnScreen"] and out["noHScroll"] and not out["hint"], out
    # the band rolls: earlier text overflows above, the newest (tentative) words stay in view
    assert out["simul"] == ["Blockchain is the most trendy technology of the year. All strawberry genes are "
                            "made of several groups", " of seven chromosomes"], out
    assert out["overflows"] and out["lastLineShown"], out
    # tentative is marked by style and decoration, not by colour alone
    assert out["tentative"] == ["italic", "underline", "dotted"], out
    assert out["committed"] == ["normal", "none"], out
    assert (out["fg"], out["bg"]) == ("rgb(255, 255, 255)", "rgb(0, 0, 0)"), out
    # live lag per path for the open utterance (3.0 s heard): e2e 5 of 7 units committed
    # (0.86 s), simul 8 of 11 (0.82 s), cascade nothing yet
    assert out["behind"] == ["0.9 s behind", "0.8 s behind", "3.0 s behind"], out
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    keep = __import__("os").environ.get(SCREENSHOT_ENV)
    if keep:
        Path(keep).write_bytes(png)


def test_font_size_theme_and_overlay(browser):
    size = "(() => parseFloat(T.css(document.querySelector('#room .band[data-mode=\"simul\"] .band-window'), 'font-size')))()"
    _, before, after, smaller, themed = run_page(
        browser, page_url(size="40"), "T.tr(0, 'en', 'simul', 'Hello', 'world', 600), 1", size,
        "document.getElementById('larger').click(), " + size,
        "document.getElementById('smaller').click(), document.getElementById('smaller').click(), " + size,
        """(() => { const t = document.getElementById('theme'); t.value = 'yellow'; t.dispatchEvent(new Event('change'));
                    return JSON.stringify([document.body.dataset.theme,
                      T.css(document.querySelector('#room .band-window'), 'color')]); })()""")[0]
    assert before == 40 and after > before and smaller < before, (before, after, smaller)
    assert themed == ["yellow", "rgb(255, 212, 0)"], themed
    out = run_page(browser, page_url(overlay="1", theme="light", size="64"), "T.demo(), 1", """JSON.stringify({
        bg: T.css(document.body, 'background-color'), html: T.css(document.documentElement, 'background-color'),
        header: T.visible(document.querySelector('header')), status: T.visible(document.getElementById('statusbar')),
        source: T.visible(document.querySelector('#room .band.source')),
        bands: T.q('#room .band').filter(T.visible).length,
        color: T.css(document.querySelector('#room .band:not(.source) .band-window'), 'color')})""")[0][1]
    assert out["bg"] == "rgba(0, 0, 0, 0)" and out["html"] == "rgba(0, 0, 0, 0)", out  # transparent
    assert not out["header"] and not out["status"] and not out["source"], out  # captions only
    assert out["bands"] == 3 and out["color"] == "rgb(0, 0, 0)", out


def test_live_lag_updates_each_event_then_per_utterance_figures(browser):
    read = "JSON.stringify([T.text('behind'), T.text('al'), T.text('laal'), T.text('laal_ca')])"
    steps = [
        "T.ts(0, 'partial', '今天', '', 1000, 2200), " + read,  # heard 1.2 s, nothing shown
        "T.tr(0, 'en', 'simul', '', 'Today the weather', 2200), " + read,
        "T.tr(0, 'en', 'simul', 'Today', 'the weather', 2800), " + read,  # 1.8 s * 2/3
        "T.tr(0, 'en', 'simul', 'Today the', 'weather', 3400), " + read,  # 2.4 s * 1/3
        "T.h({type: 'status', audio_ms: 4600, processed_ms: 4000, lag_ms: 600}), " + read,  # 3.6 s * 1/3
        "T.tr(0, 'en', 'simul', 'Today the weather is fine', '', 4800, true), " + read,
        "T.h({type: 'latency', utterance: 0, language: 'en', source_ms: 3800,"
        " metrics: {AL: 1234, LAAL: 1300, AL_CA: 1500, LAAL_CA: 1560}}), " + read,
        "T.ts(1, 'partial', '我们', '', 6000, 6600), T.tr(1, 'en', 'simul', 'We', 'go', 6600), " + read,
        "T.h({type: 'latency', utterance: 1, language: 'en', source_ms: 1500,"
        " metrics: {AL: 900, LAAL: 950, AL_CA: 1000, LAAL_CA: 1010}}), " + read,
        "JSON.stringify([document.querySelector('.utterance[data-utterance=\"0\"] .latency').textContent,"
        " document.querySelector('.utterance[data-utterance=\"1\"] .latency').textContent])",
    ]
    out = run_page(browser, page_url(), *steps)[0]
    behind = [o[0] for o in out[:-1]]
    # "–" until the first translation event names a target; then heard time × tentative share
    assert behind == ["–", "1.2 s", "1.2 s", "0.8 s", "1.2 s", "0.0 s", "0.0 s", "0.3 s", "0.3 s"], out
    assert out[6][1:] == ["1.23 s", "1.30 s", "1.56 s"], out  # the finished utterance's own figures
    assert out[8][1:] == ["0.90 s", "0.95 s", "1.01 s"], out  # the next one's: nothing accumulates
    assert out[9] == ["en: AL 1.23 s · LAAL 1.30 s · LAAL_CA 1.56 s", "en: AL 0.90 s · LAAL 0.95 s · LAAL_CA 1.01 s"]


def test_inspect_view_states_long_tokens_and_dom_bound(browser):
    long_token = "x" * 400
    out = run_page(browser, page_url(view="inspect", keep="3"), """(() => {
      for (let u = 0; u < 6; u++) {
        T.ts(u, 'partial', '今天天气', '今天', u * 3000, u * 3000 + 1200);
        T.tr(u, 'en', 'simul', 'Today', 'the weather', u * 3000 + 1200);
      }
      T.tr(5, 'en', 'e2e', 'Today it', 'is', 16200);
      T.tr(5, 'en', 'cascade', '%s', '', 16400, true);
      const u4 = document.querySelector('.utterance[data-utterance="4"]');
      const u5 = document.querySelector('.utterance[data-utterance="5"]');
      const before = {
        utterances: T.q('.utterance').map((e) => e.dataset.utterance),
        u4: [u4.querySelector('.transcript .committed').textContent, u4.querySelector('.transcript .tentative').textContent,
             u4.querySelector('.translation .committed').textContent, u4.querySelector('.translation .tentative').textContent],
        u5lines: Array.from(u5.querySelectorAll('.translation')).map((e) => [e.dataset.mode, e.querySelector('.lang').textContent]),
        states: T.q('.utterance .state').map((e) => e.textContent),
        noHScroll: T.noHScroll(), roomHidden: !T.visible(document.getElementById('room')),
      };
      T.h({type: 'error', code: 'overloaded', message: 'too much audio is waiting'});
      return JSON.stringify({before, state: document.body.dataset.state, conn: T.text('conn'),
        error: T.visible(document.getElementById('error')) ? T.text('error') : null,
        states: T.q('.utterance .state').map((e) => e.textContent), toggle: T.text('toggle')});
    })()""" % long_token, "window.streamst.setView('captions'), JSON.stringify(T.noHScroll())",
        """(() => { window.streamst.handle({type: 'end', summary: {audio_ms: 18000, utterances: 6,
             mean_latency_ms: {en: {AL: 800, LAAL: 812}}}});
           return JSON.stringify([document.body.dataset.state, T.text('conn'), T.text('summary')]); })()""")[0]
    b = out[0]["before"]
    assert b["utterances"] == ["3", "4", "5"], out  # only the last ?keep=3 stay in the DOM
    assert b["u4"] == ["今天", "天气", "Today", " the weather"], out
    assert b["u5lines"] == [["e2e", "en · e2e"], ["simul", "en · simul"], ["cascade", "en · cascade"]], out
    assert b["states"] == ["live…"] * 3 and b["noHScroll"] and b["roomHidden"], out
    assert out[0]["state"] == "error" and out[0]["conn"] == "error" and out[0]["toggle"] == "Start", out
    assert out[0]["error"] == "server error overloaded: too much audio is waiting", out
    assert out[0]["states"] == ["interrupted"] * 3, out  # no card says live… after an error
    assert out[1] is True  # the 400-character token wraps in the captions view too
    assert out[2][0] == "error", out  # an error stays an error
    [ended] = run_page(browser, page_url(), """(() => { T.demo();
        window.streamst.handle({type: 'end', summary: {audio_ms: 7200, utterances: 2,
                                mean_latency_ms: {en: {AL: 800, LAAL: 812}}}});
        return JSON.stringify([document.body.dataset.state, T.text('conn'), T.text('summary'), T.text('behind')]); })()""")[0]
    assert ended == ["ended", "ended", "session: 7.2 s audio, 2 utterances, en mean LAAL 0.81 s per utterance", "–"]
