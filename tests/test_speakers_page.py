"""The page with speaker labels (issue 23): a name and a colour per speaker on each
utterance card, and the captions view starts a new line where the speaker changes.
Events are fed to the page directly (headless Chromium, as tests/test_web_page.py does)."""

from __future__ import annotations

from tests.test_web_page import browser, page_url, run_page  # noqa: F401 - browser is a fixture


def test_cards_and_captions_keep_speakers_apart(browser):  # noqa: F811
    ev = ("T.h({type: 'transcript', kind: 'final', utterance: %d, text: '%s', stable_text: '%s', tokens: [],"
          " language: 'en', audio_ms: %d, start_ms: %d, end_ms: %d, speaker: %d})")
    feed = ", ".join([
        ev % (0, "hello there", "hello there", 1500, 0, 1500, 0),
        "T.tr(0, 'zh', 'simul', '你好', '', 1500, true)",
        ev % (1, "good morning", "good morning", 3500, 2000, 3500, 1),
        ev % (2, "how are you", "how are you", 5500, 4000, 5500, 1),
        ev % (3, "fine thanks", "fine thanks", 7500, 6000, 7500, 0),
    ])
    read = """JSON.stringify({
      names: T.q('.utterance .speaker').map((e) => e.textContent),
      colours: T.q('.utterance').map((e) => T.css(e, 'border-left-color')),
      source: document.querySelector('.band.source .band-text').innerText})"""
    out = run_page(browser, page_url(), feed + ", " + read)[0][0]
    assert out["names"] == ["S1", "S2", "S2", "S1"], out
    c = out["colours"]
    assert c[0] == c[3] and c[1] == c[2] and c[0] != c[1], out
    lines = out["source"].split("\n")
    # consecutive turns of one speaker share a line; a change starts a new one with its name
    assert [ln.split(":")[0] for ln in lines[-3:]] == ["S1", "S2", "S1"], out
    assert "good morning how are you" in lines[-2], out
