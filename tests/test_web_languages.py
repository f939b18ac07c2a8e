"""Captions per script in headless Chromium: an Arabic target right to left, a Thai target
broken into lines only between words. Screenshots: set STREAMST_LANG_SCREENSHOTS to a folder
(docs/ keeps captions-ar.png and captions-th.png)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.test_web_page import browser, page_url, run_page  # noqa: F401 (browser: a fixture)

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
