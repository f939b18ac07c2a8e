"""A screenshot of the captions page captioning real speech through a running ``streamst serve``.

    python -m tests.page_screenshot --profile RUN/profile.json --models MODELS_ROOT \\
        --wav a.wav --wav b.wav --out docs/page-captions.png [--mode e2e] [--src zh --tgt en]

The wavs (16 kHz, e.g. held-out test items of ``streamst corpus``) are joined with 2 s of
silence after each and played once by Chromium's fake microphone
(``--use-file-for-fake-audio-capture=WAV%noloop``) into the page at
``/?autostart=1&mode=...``, served by ``streamst serve --profile PROFILE`` on loopback (the
helpers of ``tests/test_web_page.py``). Once every utterance has a committed translation and
nothing is tentative, once the whole file has played (or the deadline passes), the page is captured at 1280x720. Prints what
the page shows as one JSON line. Not a test: docs/quality.md says how docs/page-captions.png
was made with it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import concat_wavs
from tests.live_server import running_server
from tests.test_web_page import CDP, CHROMIUM, NO_CHROMIUM, PAGE_STATE_JS, TOKEN, _open_sized_tab, chromium

SIZE = (1280, 720)


async def _capture(endpoint: str, url: str, utterances: int, timeout_s: float, play_s: float) -> tuple[dict, bytes]:
    import websockets

    async with websockets.connect(endpoint, max_size=None, open_timeout=10) as ws:
        cdp = CDP(ws)
        session = await _open_sized_tab(cdp, url, SIZE)
        state: dict = {}
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            raw = await cdp.evaluate(session, PAGE_STATE_JS)
            state = json.loads(raw) if raw else {}
            if state.get("error"):
                break
            done = [t for t in state.get("translation_committed", []) if t.strip()]
            pending = [t for t in state.get("translation_tentative", []) if t.strip()]
            # the whole file has played (the fake microphone runs in real time) and every
            # utterance's caption is committed with nothing tentative left
            if time.monotonic() - started >= play_s and len(done) >= utterances and not pending:
                break
            await asyncio.sleep(0.5)  # poll interval of a deadline-bounded loop
        await asyncio.sleep(1.0)  # the caption band's fit/scroll settles
        shot = await cdp.call("Page.captureScreenshot", {"format": "png"}, session)
        return state, base64.b64decode(shot["data"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.page_screenshot", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True)
    p.add_argument("--models", required=True, help="STREAMST_MODELS root of the profile's store: models")
    p.add_argument("--wav", action="append", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="e2e")
    p.add_argument("--src", default="zh")
    p.add_argument("--tgt", default="en")
    p.add_argument("--query", default="source=0", help="more page query parameters (default %(default)s)")
    p.add_argument("--timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    if CHROMIUM is None:
        print(NO_CHROMIUM, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="streamst-shot-", ignore_cleanup_errors=True) as tmp:
        wav = concat_wavs([Path(w) for w in args.wav], Path(tmp) / "speech.wav", silence_ms=2000)
        with running_server(Path(args.models), "--token", TOKEN, profile=args.profile) as server, \
                chromium(Path(tmp), f"--use-file-for-fake-audio-capture={wav}%noloop") as endpoint:
            url = (f"{server.http}/?autostart=1&src={args.src}&tgt={args.tgt}&mode={args.mode}&token={TOKEN}"
                   + (f"&{args.query}" if args.query else ""))
            import soundfile as sf

            play_s = sf.info(str(wav)).duration + 1.0
            state, png = asyncio.run(asyncio.wait_for(_capture(endpoint, url, len(args.wav), args.timeout, play_s),
                                                      args.timeout + 30))
    Path(args.out).write_bytes(png)
    print(json.dumps({"out": args.out, "load_average": os.getloadavg(), **state}, ensure_ascii=False))
    return 0 if not state.get("error") else 1


if __name__ == "__main__":
    sys.exit(main())
