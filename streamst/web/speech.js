// streamst page: spoken output. Plays the server's `speech` messages (docs/protocol.md,
// "speech": base64 PCM16 mono, 24 kHz) in order per language on one AudioContext: each
// piece is scheduled right after the previous one of its language (never overlapping),
// or now if speech had run dry. The page asks for speech with the Speak toggles (start.speak)
// and a toggle switched off during a session silences its language from the next piece on.
"use strict";

window.StreamstSpeech = (() => {
  const LEAD_S = 0.05; // scheduling margin ahead of the audio clock

  function decode(b64) {
    const bin = atob(b64);
    const n = bin.length >> 1;
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
      if (v >= 32768) v -= 65536;
      out[i] = v / 32768;
    }
    return out;
  }

  function create() {
    let ctx = null;
    const next = {}; // language -> audio-clock time where its speech scheduled so far ends
    let scheduled = 0, seconds = 0, lastStart = -1, ordered = true;

    function context(rate) {
      if (!ctx) ctx = new AudioContext({ sampleRate: rate });
      if (ctx.state === "suspended") ctx.resume().catch(() => {});
      return ctx;
    }

    function play(ev) {
      if (!ev.audio) return false; // a skipped segment: nothing to play
      const pcm = decode(ev.audio);
      if (!pcm.length) return false;
      const c = context(ev.sample_rate || 24000);
      const buf = c.createBuffer(1, pcm.length, ev.sample_rate || 24000);
      buf.getChannelData(0).set(pcm);
      const src = c.createBufferSource();
      src.buffer = buf;
      src.connect(c.destination);
      const at = Math.max(c.currentTime + LEAD_S, next[ev.language] || 0);
      src.start(at);
      next[ev.language] = at + buf.duration;
      ordered = ordered && at >= lastStart;
      lastStart = at;
      scheduled += 1;
      seconds += buf.duration;
      return true;
    }

    function close() {
      if (ctx) ctx.close().catch(() => {});
      ctx = null;
      for (const k of Object.keys(next)) delete next[k];
    }

    // for tests and the status line: what has been scheduled
    function state() {
      return { context: ctx ? ctx.state : "none", scheduled, seconds, ordered,
               ahead_s: ctx ? Math.max(0, ...Object.values(next), 0) - ctx.currentTime : 0 };
    }

    return { play, close, state };
  }

  return { create };
})();
