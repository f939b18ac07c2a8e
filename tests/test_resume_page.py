"""Headless Chromium: the page's websocket session (``streamst/web/resume.js``) survives forced
disconnects and the page shows the same captions as an uninterrupted run.

The page is served by an in-process server; its session goes through a
:class:`~streamst.netproxy.CuttingProxy` that cuts the TCP connection at random points. The
audio is given to the page's session directly (PCM16 frames, as fast as it takes them), so
that the two runs see the same audio: the microphone path is ``test_web_page.py``'s."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from streamst.audio import pcm16_bytes
from streamst.netproxy import CuttingProxy
from streamst.server import Server, ServerConfig
from tests.server_util import read_wav
from tests.test_web_page import CDP, CHROMIUM, NO_CHROMIUM, _open_tab, chromium

pytestmark = pytest.mark.usefixtures("one_thread")

ZH = ["区块链是今年最火热的科技趋势了。", "我们明天去公园散步吧。"]

# streams window.PCM (base64 PCM16 frames) through StreamstResume into the page's renderer
RUN_JS = """(() => {
  window.R = {states: [], done: false};
  const frames = window.PCM.map((b) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0)).buffer);
  const conn = window.StreamstResume.open({
    url: window.WS_URL,
    start: {type: 'start', sample_rate: 16000, src_lang: 'zh', tgt_langs: ['en'], mode: 'both'},
    onMessage: (text) => window.streamst.handle(JSON.parse(text)),
    onState: (s, d) => { R.states.push(s); if (s === 'ended' || s === 'failed') R.done = true; },
  });
  for (const f of frames) conn.sendAudio(f);
  conn.end();
  return true;
})()"""

CAPTIONS_JS = """JSON.stringify({
  done: window.R.done, states: window.R.states,
  transcripts: Array.from(document.querySelectorAll('#captions .utterance .transcript'))
                 .map((e) => e.textContent),
  translations: Array.from(document.querySelectorAll('#captions .utterance .translation'))
                  .map((e) => e.dataset.language + ':' + e.textContent),
})"""


async def _captions(endpoint: str, page: str, ws_url: str, frames: list[str]) -> dict:
    import websockets

    async with websockets.connect(endpoint, max_size=None, open_timeout=10) as ws:
        cdp = CDP(ws)
        session = await _open_tab(cdp, page)
        deadline = time.monotonic() + 30
        while not await cdp.evaluate(session, "!!(window.streamst && window.StreamstResume)"):
            assert time.monotonic() < deadline, "the page did not load"
            await asyncio.sleep(0.1)  # poll interval of a deadline-bounded loop
        await cdp.evaluate(session, f"window.PCM = {json.dumps(frames)}; window.WS_URL = {json.dumps(ws_url)}; 1")
        await cdp.evaluate(session, RUN_JS)
        deadline = time.monotonic() + 180
        while True:
            state = json.loads(await cdp.evaluate(session, CAPTIONS_JS))
            if state["done"] or time.monotonic() > deadline:
                return {**state, "log": cdp.log[-20:]}
            await asyncio.sleep(0.3)  # poll interval of a deadline-bounded loop


def test_the_page_survives_forced_disconnects_with_the_same_captions(tiny_models, speech):
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    import numpy as np

    audio = np.concatenate([read_wav(speech(t, "zh", gap_ms=700)) for t in ZH])
    frames = [base64.b64encode(pcm16_bytes(audio[i: i + 1600])).decode() for i in range(0, len(audio), 1600)]
    cfg = ServerConfig(profile="tiny", idle_timeout_s=30, status_interval_s=0.3, close_timeout_s=1.0)

    async def body(endpoint: str):
        server = Server(replace(cfg, host="127.0.0.1", port=0), tiny_models)
        await server.start()
        proxy = CuttingProxy(server.port, cuts=3, cut_bytes=(2_000, 40_000), rng=random.Random(3))
        await proxy.start()
        try:
            page = f"http://127.0.0.1:{server.port}/"
            ref = await _captions(endpoint, page, f"ws://127.0.0.1:{server.port}/ws", frames)
            got = await _captions(endpoint, page, f"ws://127.0.0.1:{proxy.port}/ws", frames)
            return ref, got, proxy.cuts
        finally:
            await proxy.close()
            await server.close()

    with tempfile.TemporaryDirectory(prefix="streamst-chromium-", ignore_cleanup_errors=True) as tmp:
        with chromium(Path(tmp)) as endpoint:
            ref, got, cuts = asyncio.run(asyncio.wait_for(body(endpoint), 400))
    info = f"ref={ref}\ngot={got}\ncuts={cuts}"
    assert ref["done"] and ref["states"][-1] == "ended" and "reconnecting" not in ref["states"], info
    assert got["done"] and got["states"][-1] == "ended", info
    assert cuts >= 1 and got["states"].count("reconnecting") == cuts, info  # shown, once per drop
    assert ref["translations"] and any(t.split(":", 1)[1].strip() for t in ref["translations"]), info
    assert got["transcripts"] == ref["transcripts"] and got["translations"] == ref["translations"], info
