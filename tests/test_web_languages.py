"""Captions per script in headless Chromium: an Arabic target right to left, a Thai target
broken into lines only between words. Screenshots: set STREAMST_LANG_SCREENSHOTS to a folder
(docs/ keeps captions-ar.png and captions-th.png)."""

from __future__ import annotations

import os
from pathlib import Path

import asyncio
import json
import time

from tests.test_web_page import CDP, _open_tab, browser, page_url, run_page  # noqa: F401 (browser: a fixture)

SHOTS_ENV = "STREAMST_LANG_SCREENSHOTS"

ARABIC = ("مرحبا بكم في البث المباشر، سنتحدث اليوم عن أحدث التقنيات", "في العالم")
THAI = ("สวัสดีครับ วันนี้เราจะพูดถึงเทคโนโลยีบล็อกเชนซึ่งเป็นแนวโน้มเทคโนโลยีที่ร้อนแรงที่สุดของปีนี้",
        "และผลกระทบต่อเศรษฐกิจ")

MEASURE = """(() => {
  const win = document.querySelector('#room .band[data-mode="simul"] .band-window');
  const comm = win.querySelector('.committed'), tent = win.querySelector('.tentative');
  const text = comm.textContent + tent.textContent;
  // line starts: offsets whose character box sits lower than the previous one's
  const starts = [];
  let lastTop = null, offset = 0;
  for (const node of [comm.firstChild, tent.firstChild]) {
    if (!node) continue;
    for (let i = 0; i < node.length; i++, offset++) {
      const r = document.createRange();
      r.setStart(node, i); r.setEnd(node, i + 1);
      const rect = r.getClientRects()[0];
      if (!rect) continue;
      if (lastTop !== null && rect.top > lastTop + 2) starts.push(offset);
      lastTop = rect.top;
    }
  }
  const seg = new Intl.Segmenter(win.lang, {granularity: 'word'});
  const bounds = Array.from(seg.segment(text)).map((s) => s.index);
  const w = win.getBoundingClientRect(), c = comm.getClientRects()[0];
  return JSON.stringify({lang: win.lang, dir: win.dir, direction: getComputedStyle(win).direction,
    starts, bounds, firstRight: c.right, firstLeft: c.left, winRight: w.right, winLeft: w.left,
    noHScroll: T.noHScroll()});
})()"""


def _show(browser, lang: str, committed: str, tentative: str, size=(900, 600)):  # noqa: F811
    feed = f"T.tr(0, {lang!r}, 'simul', {committed!r}, {tentative!r}, 4000), 1"
    [_, out], png, log = run_page(browser, page_url(mode="simul"), feed, MEASURE, size=size, screenshot=True)
    keep = os.environ.get(SHOTS_ENV)
    if keep and png:
        Path(keep, f"captions-{lang}.png").write_bytes(png)
    return out, png, log


def test_arabic_caption_reads_right_to_left(browser):  # noqa: F811
    out, png, log = _show(browser, "ar", *ARABIC)
    assert out["lang"] == "ar" and out["dir"] == "auto" and out["direction"] == "rtl", (out, log)
    # the first line starts at the right edge of the band and is not pushed to the left one
    assert out["firstRight"] >= out["winRight"] - 2 and out["firstLeft"] > out["winLeft"] - 1, out
    assert out["noHScroll"] and png and png[:4] == b"\x89PNG"


def test_thai_caption_breaks_lines_between_words(browser):  # noqa: F811
    out, png, log = _show(browser, "th", *THAI)
    assert out["lang"] == "th" and out["direction"] == "ltr", (out, log)
    assert out["starts"], out  # the text wraps (at least two lines at this size)
    bounds = set(out["bounds"])
    assert all(s in bounds for s in out["starts"]), (out["starts"], out["bounds"])  # never inside a word
    assert out["noHScroll"] and png and png[:4] == b"\x89PNG"


PICKERS_JS = """JSON.stringify({
  src: Array.from(document.querySelectorAll('#src option')).map((o) => [o.value, o.textContent]),
  boxes: Array.from(document.querySelectorAll('input[name="tgt"]')).map((b) => [b.value, b.checked,
         b.parentElement.textContent.trim()]),
  add: Array.from(document.querySelectorAll('#tgt-add option')).map((o) => o.value),
})"""


async def _served_pickers(endpoint: str, url: str) -> dict:
    import websockets

    async with websockets.connect(endpoint, max_size=None, open_timeout=10) as ws:
        cdp = CDP(ws)
        session = await _open_tab(cdp, "about:blank")
        await cdp.call("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + 30
        while not await cdp.evaluate(session, "!!(document.body && document.body.dataset.languages === '1')"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the language pickers did not load in 30 s: {cdp.log}")
            await asyncio.sleep(0.1)  # poll interval of a deadline-bounded loop
        # choose Thai from "+ language": a checked box with its native name appears
        await cdp.evaluate(session, "(() => { const a = document.getElementById('tgt-add'); a.value = 'th';"
                                    " a.dispatchEvent(new Event('change')); return 1; })()")
        return json.loads(await cdp.evaluate(session, PICKERS_JS))


def test_served_page_pickers_come_from_the_profile(browser, tiny_models):  # noqa: F811
    from streamst.server import ServerConfig
    from tests.server_util import ServerThread

    srv = ServerThread(ServerConfig(profile="tiny", max_sessions=1), tiny_models)
    try:
        out = asyncio.run(asyncio.wait_for(_served_pickers(browser, f"http://127.0.0.1:{srv.port}/?tgt=en,ar"), 60))
    finally:
        srv.close()
    # sources: auto, then what the tiny profile's SenseVoice hears, with native names
    assert out["src"] == [["auto", "auto (detect)"], ["zh", "中文 zh"], ["yue", "粵語 yue"], ["en", "English en"],
                          ["ja", "日本語 ja"], ["ko", "한국어 ko"]], out
    boxes = {v: (checked, label) for v, checked, label in out["boxes"]}
    assert boxes["en"] == (True, "English en") and boxes["ar"] == (True, "العربية ar"), boxes  # ?tgt= wins
    assert boxes["th"] == (True, "ไทย th") and boxes["de"] == (False, "Deutsch de"), boxes
    assert "th" not in out["add"] and "vi" in out["add"] and len(out["add"]) > 60, out["add"]
