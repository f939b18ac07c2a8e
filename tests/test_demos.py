"""Every demo in demos/ runs against a live `streamst serve --profile tiny` (one subprocess
server with the FunASR port): the three Python clients as users run them, the two pages in
headless Chromium with a fake microphone playing espeak-ng speech."""

from __future__ import annotations

import asyncio
import html.parser
import json
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.live_server import free_port, running_server

DEMOS = REPO / "demos"
ZH = "区块链是今年最火热的科技趋势了。"


@pytest.fixture(scope="module")
def live(tiny_models_root):
    funasr_port = free_port()
    with running_server(tiny_models_root, "--funasr-port", str(funasr_port)) as srv:
        srv.funasr_port = funasr_port
        yield srv


@pytest.fixture(scope="module")
def wav(speech):
    return speech(ZH, "zh", gap_ms=500)


def run_demo(name: str, *args: str) -> str:
    r = subprocess.run([sys.executable, str(DEMOS / name), *args], capture_output=True, text=True, timeout=300,
                       cwd=DEMOS.parent.parent)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


def last(stdout: str, prefix: str) -> str:
    return next(x for x in reversed(stdout.splitlines()) if x.startswith(prefix))[len(prefix):].strip()


def test_native_client(live, wav):
    assert len((DEMOS / "native_client.py").read_text().splitlines()) <= 70  # small enough to copy from
    out = run_demo("native_client.py", str(wav), "--url", live.ws, "--src", "zh", "--tgt", "en")
    assert out.startswith("ready: ") and "done: 1 utterance(s)" in out
    assert last(out, "TRANSLATION:")  # the tiny model's (meaningless) translation, non-empty


def test_openai_sdk_client(live, wav):
    pytest.importorskip("openai", reason="the openai SDK is a dev dependency: pip install -e '.[dev]'")
    out = run_demo("openai_client.py", str(wav), "--server", f"127.0.0.1:{live.port}", "--language", "en")
    assert last(out, "SOURCE:") and last(out, "TRANSLATION:")
    deltas = [x for x in out.splitlines() if x.split(" ms ")[0].strip().isdigit()]
    assert deltas and last(out, "TRANSLATION:") == deltas[-1].split(" ms  ", 1)[1].strip()


def test_funasr_client_at_the_funasr_port(live, wav):
    out = run_demo("funasr_client.py", str(wav), "--port", str(live.funasr_port))
    assert "sentence:" in out and last(out, "TEXT:")
    assert "'en':" in out  # the translation field streamst adds


class _Scripts(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script" and dict(attrs).get("src"):
            self.srcs.append(dict(attrs)["src"])


@pytest.mark.parametrize("page", ["browser.html", "obs_overlay.html"])
def test_pages_are_self_contained(page):
    parser = _Scripts()
    parser.feed((DEMOS / page).read_text())
    assert parser.srcs == ["captions.js"]  # no build step, nothing from the network
    assert (DEMOS / "captions.js").is_file()


PAGE_JS = """(() => JSON.stringify({
  state: document.body && document.body.dataset.state,
  text: Array.from(document.querySelectorAll('.committed')).map((e) => e.textContent).join('|'),
}))()"""


@pytest.mark.slow
def test_pages_show_captions_in_chromium(live, wav, tmp_path):
    from tests.test_web_page import CDP, CHROMIUM, NO_CHROMIUM, _open_tab, chromium

    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    import websockets

    server = f"ws://127.0.0.1:{live.port}"
    pages = {"overlay": f"{(DEMOS / 'obs_overlay.html').as_uri()}?server={server}&src=zh&tgt=en",
             "browser": f"{(DEMOS / 'browser.html').as_uri()}?server={server}&src=zh&tgt=en&autostart=1"}

    async def watch(endpoint: str) -> dict[str, dict]:
        async with websockets.connect(endpoint, max_size=None, open_timeout=10) as ws:
            cdp = CDP(ws)
            sessions = {name: await _open_tab(cdp, url) for name, url in pages.items()}
            seen: dict[str, dict] = {name: {} for name in pages}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(s.get("text") for s in seen.values()):
                for name, session in sessions.items():
                    state = json.loads(await cdp.evaluate(session, PAGE_JS))
                    if state.get("text") or not seen[name].get("text"):
                        seen[name] = state
                await asyncio.sleep(0.5)  # poll interval of a deadline-bounded loop
            return seen | {"log": {"console": cdp.log}}

    with chromium(tmp_path, f"--use-file-for-fake-audio-capture={wav}",
                  "--allow-file-access-from-files") as endpoint:
        seen = asyncio.run(watch(endpoint))
    for name in pages:
        assert seen[name].get("text"), (name, seen)
        assert seen[name].get("state") in ("live", "ended", "closed"), (name, seen)
