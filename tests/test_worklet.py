"""The page's capture worklet (``streamst/web/worklet.js``) run under node with the AudioWorklet
globals stubbed: tones at 48 and 44.1 kHz resampled to 16 kHz keep their level up to 7.5 kHz
(the models hear up to 8 kHz) and tones above 8 kHz do not alias into the band."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

WORKLET = Path(__file__).resolve().parent.parent / "streamst" / "web" / "worklet.js"
NODE = shutil.which("node") or shutil.which("nodejs")

HARNESS = r"""
const fs = require("fs");
const [file, rate, freq] = [process.argv[1], +process.argv[2], +process.argv[3]];
let Proc = null;
const out = [];
globalThis.sampleRate = rate;
globalThis.AudioWorkletProcessor = class { constructor() { this.port = { postMessage: (m) => out.push(...new Int16Array(m.pcm)) }; } };
globalThis.registerProcessor = (name, cls) => { Proc = cls; };
eval(fs.readFileSync(file, "utf8"));
const p = new Proc({ processorOptions: { targetRate: 16000, frameMs: 100 } });
const n = rate;  // one second, in render quanta of 128 frames
for (let s = 0; s < n; s += 128) {
  const block = new Float32Array(Math.min(128, n - s));
  for (let i = 0; i < block.length; i++) block[i] = 0.5 * Math.sin(2 * Math.PI * freq * (s + i) / rate);
  p.process([[block]]);
}
console.log(JSON.stringify(out));
"""


def _level_db(rate: int, freq: float) -> float:
    """Output RMS (second half, past the filter's start-up) relative to the input tone's, in dB."""
    run = subprocess.run([NODE, "-e", HARNESS, str(WORKLET), str(rate), str(freq)], capture_output=True,
                         text=True, timeout=60, check=True)
    pcm = json.loads(run.stdout)
    assert 15900 <= len(pcm) <= 16000  # one second at 16 kHz (the last partial frame is not flushed)
    tail = [v / 32768 for v in pcm[len(pcm) // 2:]]
    rms = math.sqrt(sum(v * v for v in tail) / len(tail))
    return 20 * math.log10(max(rms, 1e-9) / (0.5 / math.sqrt(2)))


@pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs; .ci/run installs it)")
@pytest.mark.parametrize("rate", [48000, 44100])
def test_the_worklet_passes_the_band_a_16_khz_model_hears(rate: int) -> None:
    for freq in (1000, 5000, 7500):  # passband: within 1 dB
        assert abs(_level_db(rate, freq)) < 1.0, (rate, freq)
    for freq in (9500, 12000):  # above 8 kHz: attenuated, not folded into the band
        assert _level_db(rate, freq) < -40, (rate, freq)
