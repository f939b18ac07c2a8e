"""The page's Speak toggles in headless Chromium: `speech` messages of a toggled language are
decoded and scheduled in order on a running AudioContext; others are not played."""

from __future__ import annotations

import base64
import json

import numpy as np

from tests.test_web_page import browser, page_url, run_page  # noqa: F401 - the module's Chromium fixture


def speech_message(lang: str, segment: int, part: int, ms: int = 300) -> dict:
    t = np.arange(24 * ms) / 24000
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    return {"type": "speech", "language": lang, "segment": segment, "segments": 1, "utterance": 0,
            "text": "hello", "skipped": False, "part": part, "parts": 2, "sample_rate": 24000, "channels": 1,
            "format": "pcm16", "audio": base64.b64encode(pcm).decode()}


def test_speak_toggle_plays_speech_in_order(browser):  # noqa: F811 - the imported fixture
    msgs = [speech_message("en", 0, 0), speech_message("en", 0, 1), speech_message("ja", 0, 0),
            speech_message("en", 1, 0, ms=500), {**speech_message("en", 2, 0), "audio": "", "skipped": True}]
    feed = "".join(f"window.streamst.handle({json.dumps(m)});" for m in msgs)
    (boxes, state, later), _, log = run_page(
        browser, page_url(speak="en", tgt="en,ja"),
        "JSON.stringify(Array.from(document.querySelectorAll('input[name=speak]:checked')).map((b) => b.value))",
        feed + "JSON.stringify(window.streamst.speech())",
        # 200 ms later (the audio clock runs on its own thread)
        "(() => { const t = performance.now(); while (performance.now() - t < 200); "
        "return JSON.stringify(window.streamst.speech()); })()")
    assert boxes == ["en"], log
    assert state["context"] == "running", (state, log)  # Chromium runs audio without a gesture here (test flag)
    assert state["scheduled"] == 3 and abs(state["seconds"] - 1.1) < 0.01, state  # en only; the skipped one is silent
    assert state["ordered"] and state["ahead_s"] > 0.5, state  # queued back to back, still ahead of the clock
    assert later["ahead_s"] < state["ahead_s"], later  # and playing
