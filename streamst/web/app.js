// streamst live-captioning page: microphone -> AudioWorklet (16 kHz PCM16, 100 ms frames)
// -> websocket /ws (protocol v1, docs/protocol.md) -> captions with committed / tentative text.
//
// URL query: token=T (passed to /ws), autostart=1, src=zh, tgt=en[,ja], mode=simul|cascade|both,
// policy=NAME, keep=N (utterances kept on the page, default 50).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const KEEP = Math.max(1, Math.min(1000, parseInt(query.get("keep") || "50", 10) || 50));
  const PING_MS = 15000;
  const MAX_QUEUED_FRAMES = 100; // frames captured before "ready" (10 s), oldest dropped
  const CHAR_LANGS = new Set(["zh", "ja", "yue"]);

  const ui = {
    form: $("controls"), src: $("src"), mode: $("mode"), toggle: $("toggle"),
    conn: $("conn"), level: $("level"), al: $("al"), laal: $("laal"), lag: $("lag"),
    audio: $("audio"), error: $("error"), captions: $("captions"), summary: $("summary"),
  };
  const tgtBoxes = () => Array.from(document.querySelectorAll('input[name="tgt"]'));

  let session = null; // the running session, see start()

  // ---------------------------------------------------------------- helpers
  function setState(state, label) {
    document.body.dataset.state = state;
    ui.conn.textContent = label || state;
    ui.conn.className = "state-" + state;
    ui.toggle.textContent = state === "live" || state === "connecting" ? "Stop" : "Start";
    ui.toggle.disabled = state === "finishing";
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = "";
    ui.error.hidden = true;
  }

  function fmtMs(x) {
    return typeof x === "number" && isFinite(x) ? String(Math.round(x)) : "–";
  }

  function wsUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const token = query.get("token");
    return `${proto}//${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : "");
  }

  function selectedTargets() {
    return tgtBoxes().filter((b) => b.checked).map((b) => b.value);
  }

  // Apply ?src= &tgt= &mode= to the controls (unknown values are added as options).
  function applyQuery() {
    const src = query.get("src");
    if (src) {
      if (!Array.from(ui.src.options).some((o) => o.value === src)) ui.src.add(new Option(src, src));
      ui.src.value = src;
    }
    const tgt = query.get("tgt");
    if (tgt) {
      const wanted = tgt.split(",").map((s) => s.trim()).filter(Boolean);
      const fieldset = $("tgts");
      for (const lang of wanted) {
        if (!tgtBoxes().some((b) => b.value === lang)) {
          const label = document.createElement("label");
          const box = document.createElement("input");
          box.type = "checkbox"; box.name = "tgt"; box.value = lang;
          label.append(box, " " + lang);
          fieldset.append(label);
        }
      }
      for (const b of tgtBoxes()) b.checked = wanted.includes(b.value);
    }
    const mode = query.get("mode");
    if (mode) ui.mode.value = mode;
  }

  // ---------------------------------------------------------------- captions
  // One block per utterance: .transcript and one .translation per (language, mode), each
  // holding a .committed and a .tentative span. Only the last KEEP blocks stay in the DOM.
  const blocks = new Map(); // utterance index -> {el, transcript, translations: Map}

  function makeLine(cls, label) {
    const line = document.createElement("div");
    line.className = cls;
    if (label) {
      const tag = document.createElement("span");
      tag.className = "lang";
      tag.textContent = label;
      line.append(tag);
    }
    const committed = document.createElement("span");
    committed.className = "committed";
    const tentative = document.createElement("span");
    tentative.className = "tentative";
    line.append(committed, tentative);
    return { line, committed, tentative };
  }

  function block(utt) {
    let b = blocks.get(utt);
    if (b) return b;
    const el = document.createElement("article");
    el.className = "utterance";
    el.dataset.utterance = String(utt);
    const meta = document.createElement("div");
    meta.className = "meta";
    const num = document.createElement("span");
    num.textContent = "#" + utt;
    const state = document.createElement("span");
    state.className = "state";
    const lat = document.createElement("span");
    lat.className = "latency";
    meta.append(num, state, lat);
    const transcript = makeLine("transcript");
    el.append(meta, transcript.line);
    b = { el, lat, transcript, translations: new Map() };
    blocks.set(utt, b);
    // keep utterances in index order (events of an older utterance may arrive late)
    let before = null;
    for (const [k, other] of blocks) if (k > utt && (!before || k < before.k)) before = { k, el: other.el };
    ui.captions.insertBefore(el, before ? before.el : null);
    while (blocks.size > KEEP) {
      const oldest = Math.min(...blocks.keys());
      blocks.get(oldest).el.remove();
      blocks.delete(oldest);
    }
    return b;
  }

  function translationLine(b, language, mode, showMode) {
    const key = language + "/" + mode;
    let t = b.translations.get(key);
    if (!t) {
      t = makeLine("translation", showMode ? `${language} ${mode}` : language);
      t.line.dataset.language = language;
      t.line.dataset.mode = mode;
      b.el.append(t.line);
      b.translations.set(key, t);
    }
    return t;
  }

  function setText(span, text) {
    if (span.textContent !== text) span.textContent = text;
  }

  function joinTentative(committed, tentative, language) {
    if (!tentative) return "";
    if (!committed || CHAR_LANGS.has(String(language).split("-")[0])) return tentative;
    return " " + tentative;
  }

  function autoscroll(fn) {
    const c = ui.captions;
    const atBottom = c.scrollHeight - c.scrollTop - c.clientHeight < 40;
    fn();
    if (atBottom) c.scrollTop = c.scrollHeight;
  }

  function onTranscript(ev) {
    autoscroll(() => {
      const b = block(ev.utterance);
      const text = ev.text || "";
      let stable = ev.kind === "final" ? text : ev.stable_text || "";
      let rest = text.startsWith(stable) ? text.slice(stable.length) : text;
      if (ev.kind === "final") rest = "";
      setText(b.transcript.committed, stable);
      setText(b.transcript.tentative, rest);
      b.transcript.line.dataset.language = ev.language || "";
      if (ev.kind === "final") b.transcript.line.classList.add("final");
    });
  }

  function onTranslation(ev) {
    autoscroll(() => {
      const b = block(ev.utterance);
      const t = translationLine(b, ev.language, ev.mode, session && session.mode === "both");
      setText(t.committed, ev.committed || "");
      setText(t.tentative, ev.final ? "" : joinTentative(ev.committed, ev.tentative, ev.language));
      if (ev.final) t.line.classList.add("final");
      const all = Array.from(b.translations.values());
      if (all.length && all.every((x) => x.line.classList.contains("final"))) b.el.classList.add("final");
    });
  }

  function onLatency(ev) {
    const m = ev.metrics || {};
    ui.al.textContent = fmtMs(m.AL);
    ui.laal.textContent = fmtMs(m.LAAL);
    const b = blocks.get(ev.utterance);
    if (b) {
      const parts = [`${ev.language}: AL ${fmtMs(m.AL)} ms`, `LAAL ${fmtMs(m.LAAL)} ms`];
      if (typeof m.LAAL_CA === "number") parts.push(`LAAL_CA ${fmtMs(m.LAAL_CA)} ms`);
      b.lat.textContent = parts.join(" · ");
    }
  }

  function onStatus(ev) {
    ui.lag.textContent = fmtMs(ev.lag_ms);
    if (typeof ev.audio_ms === "number") ui.audio.textContent = (ev.audio_ms / 1000).toFixed(1);
  }

  function onEnd(ev) {
    const s = ev.summary || {};
    const bits = [];
    if (typeof s.audio_s === "number") bits.push(`${s.audio_s.toFixed(1)} s audio`);
    else if (typeof s.audio_ms === "number") bits.push(`${(s.audio_ms / 1000).toFixed(1)} s audio`);
    if (Array.isArray(s.utterances)) bits.push(`${s.utterances.length} utterances`);
    else if (typeof s.utterances === "number") bits.push(`${s.utterances} utterances`);
    const means = s.mean_latency_ms || {};
    for (const [lang, m] of Object.entries(means)) {
      if (m && typeof m.LAAL === "number") bits.push(`${lang} mean LAAL ${fmtMs(m.LAAL)} ms`);
    }
    ui.summary.textContent = bits.length ? "session: " + bits.join(", ") : "session ended";
  }

  function onMessage(data) {
    if (typeof data !== "string") return;
    let ev;
    try {
      ev = JSON.parse(data);
    } catch (e) {
      showError("bad message from server: " + String(data).slice(0, 200));
      return;
    }
    switch (ev.type) {
      case "ready":
        if (session) session.onReady(ev);
        break;
      case "transcript": onTranscript(ev); break;
      case "translation": onTranslation(ev); break;
      case "latency": onLatency(ev); break;
      case "status": onStatus(ev); break;
      case "pong": break;
      case "error":
        showError(`server error ${ev.code}: ${ev.message}`);
        if (session) session.failed = true;
        setState("error", "error");
        break;
      case "end":
        onEnd(ev);
        break;
      default:
        break; // unknown event types are ignored (forward compatibility)
    }
  }

  // ---------------------------------------------------------------- capture + session
  async function openMicrophone() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("microphone access needs a secure page (https:// or http://localhost)");
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule("worklet.js");
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "pcm16-capture", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { targetRate: 16000, frameMs: 100 },
    });
    source.connect(node);
    node.connect(ctx.destination); // outputs silence; keeps the node pulled by the graph
    if (ctx.state !== "running") {
      // without a user gesture (autostart) the browser may keep audio suspended: do not wait forever
      await Promise.race([ctx.resume(), new Promise((r) => setTimeout(r, 1000))]);
    }
    return { stream, ctx, source, node };
  }

  async function start() {
    clearError();
    ui.summary.textContent = "";
    const tgts = selectedTargets();
    if (!tgts.length) {
      showError("choose at least one target language");
      return;
    }
    const s = {
      mode: ui.mode.value, ws: null, mic: null, ready: false, failed: false, stopping: false,
      queue: [], ping: null, pingId: 0,
      onReady() {
        s.ready = true;
        setState("live", "live");
        for (const f of s.queue) s.ws.send(f);
        s.queue = [];
      },
    };
    session = s;
    setState("connecting", "connecting…");
    try {
      s.mic = await openMicrophone();
    } catch (e) {
      session = null;
      setState("error", "error");
      showError("microphone: " + (e && e.message ? e.message : e));
      return;
    }
    if (s.mic.ctx.state !== "running") {
      showError("the browser keeps audio suspended until you click the page");
      const ctx = s.mic.ctx;
      document.addEventListener("click", () => ctx.resume().then(clearError), { once: true });
    }
    s.mic.node.port.onmessage = (e) => {
      const { pcm, peak } = e.data;
      ui.level.value = peak;
      if (s.stopping || !s.ws) return;
      if (s.ready && s.ws.readyState === WebSocket.OPEN) {
        s.ws.send(pcm);
      } else if (s.ws.readyState <= WebSocket.OPEN) {
        s.queue.push(pcm);
        if (s.queue.length > MAX_QUEUED_FRAMES) s.queue.shift();
      }
    };

    const ws = new WebSocket(wsUrl());
    ws.binaryType = "arraybuffer";
    s.ws = ws;
    ws.onopen = () => {
      const policy = query.get("policy") || "reorder-aware";
      ws.send(JSON.stringify({
        type: "start", version: 1, sample_rate: 16000, encoding: "pcm_s16le",
        src_lang: ui.src.value, tgt_langs: tgts, mode: s.mode, policy: { name: policy }, chunk_ms: 600,
      }));
      s.ping = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping", id: ++s.pingId }));
      }, PING_MS);
    };
    ws.onmessage = (e) => onMessage(e.data);
    ws.onerror = () => {}; // always followed by onclose, which reports
    ws.onclose = (e) => {
      clearInterval(s.ping);
      stopMicrophone(s);
      if (session === s) session = null;
      if (s.failed) return; // keep the error state
      if (!s.stopping) {
        const why = e.reason ? `: ${e.reason}` : "";
        const where = wsUrl().replace(/token=[^&]*/, "token=…");
        showError(s.ready ? `connection closed (code ${e.code})${why}`
                          : `cannot connect to ${where} (code ${e.code})${why}`);
        setState("error", "closed");
      } else {
        setState("idle", "closed");
      }
    };
  }

  function stopMicrophone(s) {
    if (!s.mic) return;
    const { stream, ctx, source, node } = s.mic;
    s.mic = null;
    try { node.port.postMessage("flush"); } catch (e) { /* closed */ }
    try { source.disconnect(); node.disconnect(); } catch (e) { /* already disconnected */ }
    for (const track of stream.getTracks()) track.stop();
    ctx.close().catch(() => {});
  }

  function stop() {
    const s = session;
    if (!s) return;
    s.stopping = true;
    stopMicrophone(s);
    if (s.ws && s.ws.readyState === WebSocket.OPEN) {
      setState("finishing", "finishing…");
      s.ws.send(JSON.stringify({ type: "end" }));
      // the server answers with the remaining events, "end" and closes; bound the wait
      setTimeout(() => { if (s.ws.readyState !== WebSocket.CLOSED) s.ws.close(1000, "end timeout"); }, 30000);
    } else {
      if (s.ws) s.ws.close();
      session = null;
      setState("idle", "idle");
    }
  }

  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (session) stop(); else start();
  });
  window.addEventListener("pagehide", () => { if (session) stop(); });

  applyQuery();
  setState("idle", "idle");
  // for tests and embedding
  // handle(event) renders one protocol event object as if it came from the server
  window.streamst = { start, stop, handle: (ev) => onMessage(JSON.stringify(ev)),
                      get session() { return session; }, keep: KEEP };
  if (query.get("autostart") === "1") start();
})();
