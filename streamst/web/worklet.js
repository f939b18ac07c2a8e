// AudioWorkletProcessor "pcm16-capture": mono mix -> anti-alias low-pass -> linear-interpolation
// resampling from the context rate to targetRate (16 kHz) -> PCM16 frames of frameMs (100 ms)
// posted to the main thread as {pcm: ArrayBuffer (transferred), peak: 0..1}.
// Message "flush" posts the partial frame (if any).
"use strict";

function lowpass(cutoff, taps) {
  // windowed-sinc FIR; cutoff in cycles per input sample (< 0.5)
  const h = new Float32Array(taps);
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let n = 0; n < taps; n++) {
    const x = n - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.54 - 0.46 * Math.cos((2 * Math.PI * n) / (taps - 1)); // Hamming
    h[n] = sinc * w;
    sum += h[n];
  }
  for (let n = 0; n < taps; n++) h[n] /= sum;
  return h;
}

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.outRate = o.targetRate || 16000;
    this.step = sampleRate / this.outRate; // input samples per output sample
    this.frameLen = Math.round((this.outRate * (o.frameMs || 100)) / 1000);
    this.frame = new Int16Array(this.frameLen);
    this.fill = 0;
    this.peak = 0;
    // anti-aliasing only when downsampling: cutoff at 0.49 of the output rate (7.84 kHz for 16 kHz),
    // 255 taps (transition about 0.75 kHz at 48 kHz input). The filter's output is computed only at
    // the input samples the interpolation reads (1 in 3 at 48 kHz: about 4M multiply-adds a second). A 16 kHz
    // model hears up to 8 kHz: the earlier 0.45 / 63 taps (7.2 kHz) cost the quality bench's
    // speech model 28 chrF on held-out items, this filter none (docs/quality.md)
    this.h = this.step > 1 ? lowpass((0.49 * this.outRate) / sampleRate, 255) : null;
    this.hist = this.h ? new Float32Array(this.h.length) : null; // ring buffer of inputs
    this.hpos = 0;
    this.t = 0; // position of the next output sample, in input samples from this block's start
    this.last = 0; // filtered input sample at index -1
    this.port.onmessage = (e) => {
      if (e.data === "flush") this.post(true);
    };
  }

  // the input sample x enters the filter's history; with `needed` false its output is not computed
  filter(x, needed) {
    if (!this.h) return x;
    const h = this.h, hist = this.hist, n = h.length;
    hist[this.hpos] = x;
    if (!needed) {
      this.hpos = this.hpos + 1 === n ? 0 : this.hpos + 1;
      return 0;
    }
    let acc = 0, j = this.hpos;
    for (let k = 0; k < n; k++) {
      acc += h[k] * hist[j];
      j = j === 0 ? n - 1 : j - 1;
    }
    this.hpos = this.hpos + 1 === n ? 0 : this.hpos + 1;
    return acc;
  }

  push(v) {
    const c = v < -1 ? -1 : v > 1 ? 1 : v;
    const a = c < 0 ? -c : c;
    if (a > this.peak) this.peak = a;
    this.frame[this.fill++] = c < 0 ? Math.round(c * 32768) : Math.round(c * 32767);
    if (this.fill === this.frameLen) this.post(false);
  }

  post(partial) {
    if (this.fill === 0) return;
    const pcm = partial ? this.frame.slice(0, this.fill) : this.frame;
    this.port.postMessage({ pcm: pcm.buffer, peak: this.peak }, [pcm.buffer]);
    this.frame = new Int16Array(this.frameLen);
    this.fill = 0;
    this.peak = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true; // no source connected (yet)
    const chans = input.length, n = input[0].length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < chans; c++) x += input[c][i];
      // y(i) is read when an output falls in (i - 1, i] (as y) or in (i, i + 1) (as last, with a
      // weight 1 - frac > 0); at an output exactly on i + 1, last's weight is 0
      const y = this.filter(x / chans, this.t < i + 1);
      while (this.t <= i) {
        const frac = this.t - (i - 1); // in (0, 1]
        this.push(this.last + (y - this.last) * frac);
        this.t += this.step;
      }
      this.last = y;
    }
    this.t -= n;
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
