// streamst live-captioning page: microphone -> AudioWorklet (16 kHz PCM16, 100 ms frames)
// -> websocket /ws (protocol v1, docs/protocol.md) -> captions (captions.js renders them).
//
// URL query: token=T (passed to /ws), autostart=1, src=zh, tgt=en[,ja],
// mode=simul|e2e|cascade|both|all, policy=NAME, keep=N (utterances kept, default 50),
// view=captions|inspect, size=PX (caption text size), theme=dark|light|yellow, source=0|1,
// overlay=1 (captions only, transparent background: for OBS browser sources and video mixers),
// speak=en[,ja] (the Speak toggles: those targets are also spoken, speech.js).
//
// Page states (body[data-state]): idle -> connecting -> live -> finishing -> ended; error from
// any of them; live <-> reconnecting when the connection drops (resume.js resumes the session:
// the captions go on with nothing repeated or missing). Start is possible again from idle,
// ended and error.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const KEEP = Math.max(1, Math.min(1000, parseInt(query.get("keep") || "50", 10) || 50));
  const PING_MS = 15000;
  const SIZE_MIN = 16, SIZE_MAX = 160, SIZE_STEP = 1.15;
  const THEMES = ["dark", "light", "yellow"];
  const LABELS = { idle: "idle", connecting: "connecting…", live: "live", reconnecting: "reconnecting…",
                   finishing: "finishing…", ended: "ended", error: "error" };

  const ui = {
    form: $("controls"), src: $("src"), mode: $("mode"), toggle: $("toggle"),
    conn: $("conn"), level: $("level"), behind: $("behind"), al: $("al"), laal: $("laal"),
    laalCa: $("laal_ca"), lag: $("lag"), audio: $("audio"), error: $("error"), summary: $("summary"),
    viewCaptions: $("view-captions"), viewInspect: $("view-inspect"), smaller: $("smaller"),
    larger: $("larger"), theme: $("theme"), showSource: $("show-source"),
  };
  const tgtBoxes = () => Array.from(document.querySelectorAll('input[name="tgt"]'));
  const speakBoxes = () => Array.from(document.querySelectorAll('input[name="speak"]'));
  const speaking = (lang) => speakBoxes().some((b) => b.checked && b.value === lang);
  const speaker = window.StreamstSpeech.create(); // plays `speech` messages (speech.js)
  const fmtS = window.StreamstView.fmtS;

  let session = null; // the running session, see start()
  let bandCount = 0; // room bands on screen (refit when it changes)

  // ---------------------------------------------------------------- display settings
  // URL parameters win over what was saved in this browser; what the user changes is saved.
  // Overlay mode (an embedded source, configured by its URL) neither reads nor saves them.
  const overlay = query.get("overlay") === "1";
  const store = {
    get(k) { if (overlay) return null; try { return localStorage.getItem("streamst." + k); } catch (e) { return null; } },
    set(k, v) { if (!overlay) try { localStorage.setItem("streamst." + k, String(v)); } catch (e) { /* private mode */ } },
  };

  function setView(view, save = false) {
    view = view === "inspect" ? "inspect" : "captions";
    document.body.dataset.view = view;
    ui.viewCaptions.setAttribute("aria-pressed", String(view === "captions"));
    ui.viewInspect.setAttribute("aria-pressed", String(view === "inspect"));
    if (save) store.set("view", view);
    fit();
  }

  function setSize(px, save = false) {
    px = Math.round(Math.max(SIZE_MIN, Math.min(SIZE_MAX, px)));
    document.body.dataset.size = String(px);
    if (save) store.set("size", px);
    fit();
  }

  // The chosen size, made smaller when every band would not fit on the screen at once (three
  // paths and two languages on a projector); never larger than chosen.
  function fit() {
    const chosen = parseInt(document.body.dataset.size, 10) || defaultSize();
    const root = document.documentElement.style;
    root.setProperty("--caption-size", chosen + "px");
    const stage = $("stage"), room = $("room");
    if (document.body.dataset.view !== "captions" || !room.offsetHeight) return;
    const free = stage.clientHeight - 24; // minus the stage's padding
    // labels and gaps do not scale with the text: a few proportional steps converge
    for (let px = chosen, i = 0; i < 6 && free > 0 && room.offsetHeight > free && px > SIZE_MIN; i++) {
      px = Math.max(SIZE_MIN, Math.floor((px * free) / room.offsetHeight) - 1);
      root.setProperty("--caption-size", px + "px");
    }
  }

  function setTheme(theme, save = false) {
    theme = THEMES.includes(theme) ? theme : "dark";
    document.body.dataset.theme = theme;
    ui.theme.value = theme;
    if (save) store.set("theme", theme);
  }

  function setSourceShown(on, save = false) {
    document.body.dataset.source = on ? "1" : "0";
    ui.showSource.checked = on;
    if (save) store.set("source", on ? "1" : "0");
    fit();
  }

  function defaultSize() {
    return Math.max(28, Math.min(72, Math.round(window.innerWidth / 22)));
  }

  function applyDisplay() {
    if (overlay) document.body.dataset.overlay = "1";
    setView(query.get("view") || store.get("view") || "captions");
    setSize(parseInt(query.get("size") || store.get("size") || "", 10) || defaultSize());
    setTheme(query.get("theme") || store.get("theme") || "dark");
    const src = query.get("source") ?? store.get("source");
    setSourceShown(src === null ? !overlay : src !== "0");
  }

  // ---------------------------------------------------------------- helpers
  function setState(state, label) {
    document.body.dataset.state = state;
    ui.conn.textContent = label || LABELS[state] || state;
    ui.conn.className = "state-" + state;
    ui.toggle.textContent = ["live", "connecting", "reconnecting"].includes(state) ? "Stop" : "Start";
    ui.toggle.disabled = state === "finishing";
    if (state === "error" || state === "ended") view.close();
  }

  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = "";
    ui.error.hidden = true;
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
    if (mode) {
      if (!Array.from(ui.mode.options).some((o) => o.value === mode)) ui.mode.add(new Option(mode, mode));
      ui.mode.value = mode;
    }
  }

  // ---------------------------------------------------------------- language pickers
  // Generated from the server's profile (GET /languages: the languages it hears and writes,
  // with native names); the static options of index.html stay when that cannot be read (a
  // page opened from a file). Targets: the checked boxes, and "+ language" adds any other
  // language the profile writes.
  function targetBox(code, label) {
    const wrap = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox"; box.name = "tgt"; box.value = code;
    const name = document.createElement("span");
    name.textContent = label;
    name.lang = code; name.dir = "auto";
    wrap.append(box, " ", name);
    return wrap;
  }

  async function loadLanguages() {
    if (!/^https?:$/.test(location.protocol)) return;
    let menu;
    try {
      const r = await fetch("languages");
      if (!r.ok) return;
      menu = await r.json();
    } catch (e) { return; }
    if (!menu || !Array.isArray(menu.hears) || !Array.isArray(menu.writes)) return;
    window.StreamstView.setLanguages(menu.writes);
    const src = ui.src.value, tgts = selectedTargets();
    ui.src.replaceChildren(new Option("auto (detect)", "auto"),
      ...menu.hears.map((l) => new Option(`${l.native} ${l.code}`, l.code)));
    ui.src.value = menu.hears.some((l) => l.code === src) ? src : "auto";
    const fieldset = $("tgts");
    const shown = new Set(tgtBoxes().map((b) => b.value));
    for (const b of tgtBoxes()) {
      const l = menu.writes.find((w) => w.code === b.value);
      if (l) b.parentElement.replaceWith(targetBox(l.code, `${l.native} ${l.code}`));
      else b.parentElement.remove();
    }
    const add = document.createElement("select");
    add.id = "tgt-add";
    add.setAttribute("aria-label", "add a target language");
    add.append(new Option("+ language…", ""), ...menu.writes.filter((l) => !shown.has(l.code))
      .map((l) => new Option(`${l.native} ${l.code}`, l.code)));
    add.addEventListener("change", () => {
      const l = menu.writes.find((w) => w.code === add.value);
      if (!l) return;
      const wrap = targetBox(l.code, `${l.native} ${l.code}`);
      wrap.querySelector("input").checked = true;
      fieldset.insertBefore(wrap, add);
      add.remove(add.selectedIndex);
      add.value = "";
    });
    fieldset.append(add);
    for (const b of tgtBoxes()) b.checked = tgts.includes(b.value);
    applyQuery(); // the URL's choices win
  }

  // ---------------------------------------------------------------- captions
  const view = window.StreamstView.create({
    room: $("room"), inspect: $("captions"), keep: KEEP,
    onChange({ behindMs, lastLatency, utterances }) {
      ui.behind.textContent = fmtS(behindMs);
      const m = (lastLatency && lastLatency.metrics) || {};
      ui.al.textContent = fmtS(m.AL, 2);
      ui.laal.textContent = fmtS(m.LAAL, 2);
      ui.laalCa.textContent = fmtS(m.LAAL_CA, 2);
      document.body.dataset.empty = utterances ? "0" : "1";
      if (bandCount !== document.querySelectorAll("#room .band").length) {
        bandCount = document.querySelectorAll("#room .band").length;
        fit();
      }
    },
  });

  function onEnd(ev) {
    const s = ev.summary || {};
    const bits = [];
    if (typeof s.audio_s === "number") bits.push(`${s.audio_s.toFixed(1)} s audio`);
    else if (typeof s.audio_ms === "number") bits.push(`${(s.audio_ms / 1000).toFixed(1)} s audio`);
    if (Array.isArray(s.utterances)) bits.push(`${s.utterances.length} utterances`);
    else if (typeof s.utterances === "number") bits.push(`${s.utterances} utterances`);
    const means = s.mean_latency_ms || {};
    for (const [lang, m] of Object.entries(means)) {
      if (m && typeof m.LAAL === "number") bits.push(`${lang} mean LAAL ${fmtS(m.LAAL, 2)} per utterance`);
    }
    ui.summary.textContent = bits.length ? "session: " + bits.join(", ") : "session ended";
    if (session) session.ended = true;
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
      case "transcript": view.onTranscript(ev); break;
      case "translation": view.onTranslation(ev); break;
      case "latency": view.onLatency(ev); break;
      case "status":
        ui.lag.textContent = fmtS(ev.lag_ms);
        if (typeof ev.audio_ms === "number") ui.audio.textContent = fmtS(ev.audio_ms);
        view.onStatus(ev);
        break;
      case "speech": if (speaking(ev.language)) speaker.play(ev); break;
      case "pong": break;
      case "error":
        showError(`server error ${ev.code}: ${ev.message}`);
        if (session) session.failed = true;
        setState("error");
        break;
      case "end":
        onEnd(ev);
        if (document.body.dataset.state !== "error") setState("ended"); // an error stays visible
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
      showError("choose at least one target language (Target checkboxes above)");
      return;
    }
    view.clear(); // a new session numbers its utterances from 0 again
    const s = {
      mode: ui.mode.value, conn: null, mic: null, ready: false, failed: false, stopping: false, ended: false,
      ping: null, pingId: 0,
      onReady() {
        s.ready = true;
        setState("live");
      },
    };
    session = s;
    setState("connecting");
    try {
      s.mic = await openMicrophone();
    } catch (e) {
      session = null;
      setState("error");
      showError("microphone: " + (e && e.message ? e.message : e) +
                " (allow the microphone for this page, or check that an input device is connected)");
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
      if (s.stopping || !s.conn) return;
      s.conn.sendAudio(pcm); // kept until the server processed it; sent once the session is ready
    };

    const policy = query.get("policy") || "reorder-aware";
    s.conn = window.StreamstResume.open({
      url: wsUrl(),
      start: {
        type: "start", version: 1, sample_rate: 16000, encoding: "pcm_s16le",
        src_lang: ui.src.value, tgt_langs: tgts, mode: s.mode, policy: { name: policy }, chunk_ms: 600,
        ...(tgts.some(speaking) ? { speak: tgts.filter(speaking) } : {}),
      },
      onMessage,
      onState(state, detail) {
        if (session !== s && state !== "ended") return;
        if (state === "reconnecting") setState("reconnecting");
        else if (state === "live" && s.ready && !s.stopping) setState("live");
        else if (state === "ended" || state === "failed") closed(s, state, detail);
      },
    });
    s.ping = setInterval(() => s.conn.sendText({ type: "ping", id: ++s.pingId }), PING_MS);
  }

  function closed(s, state, detail) {
    clearInterval(s.ping);
    stopMicrophone(s);
    if (session === s) session = null;
    if (s.failed) return; // keep the error state
    if (s.ended || s.stopping) {
      setState("ended");
    } else {
      const where = wsUrl().replace(/token=[^&]*/, "token=…");
      showError(s.ready ? `connection lost (${detail || state})`
                        : `cannot connect to ${where} (${detail || state}): is \`streamst serve\` running?`);
      setState("error");
    }
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
    if (s.conn && s.ready) {
      setState("finishing");
      s.conn.end(); // the server answers with the remaining events, "end" and closes; bound the wait
      setTimeout(() => { if (s.conn.state !== "ended") { s.conn.close(); closed(s, "ended"); } }, 30000);
    } else {
      if (s.conn) s.conn.close();
      clearInterval(s.ping);
      session = null;
      setState("idle");
    }
  }

  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (session) stop(); else start();
  });
  ui.viewCaptions.addEventListener("click", () => setView("captions", true));
  ui.viewInspect.addEventListener("click", () => setView("inspect", true));
  ui.smaller.addEventListener("click", () => setSize(parseInt(document.body.dataset.size, 10) / SIZE_STEP, true));
  ui.larger.addEventListener("click", () => setSize(parseInt(document.body.dataset.size, 10) * SIZE_STEP, true));
  ui.theme.addEventListener("change", () => setTheme(ui.theme.value, true));
  ui.showSource.addEventListener("change", () => setSourceShown(ui.showSource.checked, true));
  // the stage shrinks when the status bar wraps or an error shows: refit then too
  if (window.ResizeObserver) new ResizeObserver(() => fit()).observe($("stage"));
  else window.addEventListener("resize", fit);
  window.addEventListener("pagehide", () => { if (session) stop(); });

  applyQuery();
  // one Speak toggle per target language (after ?tgt= may have added languages)
  const spoken = (query.get("speak") || "").split(",");
  for (const t of tgtBoxes()) {
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), { type: "checkbox", name: "speak", value: t.value,
                                                                 checked: spoken.includes(t.value) });
    label.append(box, " " + t.value);
    $("speak").append(label);
  }
  applyDisplay();
  setState("idle");
  document.body.dataset.empty = "1";
  const languagesLoaded = loadLanguages().finally(() => { document.body.dataset.languages = "1"; });
  // for tests and embedding: handle(event) renders one protocol event object as if it came
  // from the server
  window.streamst = { start, stop, handle: (ev) => onMessage(JSON.stringify(ev)), setView, setSize, setTheme,
                      get session() { return session; }, keep: KEEP, speech: speaker.state };
  if (query.get("autostart") === "1") languagesLoaded.finally(start);
})();
