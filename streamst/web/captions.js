// streamst caption rendering: one model of the session's utterances (from protocol v1 events,
// docs/protocol.md) and two views of it:
//   * room    -- large captions for a room or an overlay: one band per (target language, path),
//                two lines that roll, plus an optional source band;
//   * inspect -- one card per utterance with its transcript, every path's translation and its
//                latency figures.
// Paths are whatever `mode` values the events carry (e2e, simul, cascade, or new ones): nothing
// below is specific to one path except the display order.
"use strict";

window.StreamstView = (() => {
  // Units as streamst.text counts them: characters for zh/ja/yue, words found by a segmenter
  // for the scripts written without spaces (Thai, Lao, Khmer, Burmese; here the browser's
  // Intl.Segmenter), whitespace words otherwise. setLanguages() takes the server's table
  // (GET /languages); these defaults hold until then (a page opened from a file).
  const CHAR_LANGS = new Set(["zh", "ja", "yue"]);
  const SEG_LANGS = new Set(["th", "lo", "km", "my"]);
  const PATH_ORDER = ["e2e", "simul", "cascade"]; // display order; unknown paths come after
  const ROOM_HISTORY = 4; // utterances joined in a room band (only its last two lines show)
  const baseLang = (lang) => String(lang || "").split("-")[0].toLowerCase();
  const isCharLang = (lang) => CHAR_LANGS.has(baseLang(lang));
  const isSegLang = (lang) => SEG_LANGS.has(baseLang(lang));
  const noSpaces = (lang) => isCharLang(lang) || isSegLang(lang);

  function setLanguages(rows) {
    for (const r of rows || []) {
      if (r.unit === "char") CHAR_LANGS.add(r.code);
      if (r.unit === "seg") SEG_LANGS.add(r.code);
    }
  }

  function countUnits(text, lang) {
    const t = String(text || "").trim();
    if (!t) return 0;
    if (isCharLang(lang)) return Array.from(t.replace(/\s+/g, "")).length;
    if (isSegLang(lang) && window.Intl && Intl.Segmenter) {
      let n = 0;
      for (const seg of new Intl.Segmenter(baseLang(lang), { granularity: "word" }).segment(t)) if (seg.isWordLike) n++;
      return n;
    }
    return t.split(/\s+/).length;
  }

  function join(a, b, lang) {
    if (!a) return b || "";
    if (!b) return a;
    return noSpaces(lang) || /\s$/.test(a) ? a + b : a + " " + b;
  }

  // A caption's language: `lang` picks the browser's line breaking (dictionary word breaks for
  // Thai, Lao, Khmer, Burmese; CJK rules, style.css) and `dir="auto"` its direction from the
  // first strong character (Arabic, Persian, Hebrew right to left).
  function markLanguage(node, lang) {
    if (!lang || lang === "?") return;
    node.lang = baseLang(lang);
    node.dir = "auto";
  }

  function pathRank(mode) {
    const i = PATH_ORDER.indexOf(mode);
    return i < 0 ? PATH_ORDER.length : i;
  }

  // Seconds of speech not yet in committed captions, estimated from the current proposal:
  // the committed share of (committed + tentative) units covers that share of what was heard.
  function behindMs(heardMs, committedUnits, proposalUnits) {
    if (typeof heardMs !== "number" || !isFinite(heardMs)) return null;
    const heard = Math.max(0, heardMs);
    const y = Math.max(proposalUnits, committedUnits);
    return y <= 0 ? heard : heard * (1 - committedUnits / y);
  }

  function fmtS(ms, digits = 1) {
    return typeof ms === "number" && isFinite(ms) ? (ms / 1000).toFixed(digits) + " s" : "–";
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // a line of text: committed part solid, tentative part marked (not by colour alone)
  function textPair(cls) {
    const line = el("div", cls);
    const committed = el("span", "committed");
    const tentative = el("span", "tentative");
    line.append(committed, tentative);
    return { line, committed, tentative };
  }

  // speakers (protocol `speaker`: 0, 1, ...): a name and a colour each
  const SPEAKER_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  function speakerName(n) { return n === null || n === undefined ? "" : `S${n + 1}`; }
  function speakerColour(n) { return n === null || n === undefined ? "transparent" : SPEAKER_COLOURS[n % SPEAKER_COLOURS.length]; }

  function create({ room, inspect, keep = 50, onChange = () => {} }) {
    const utts = new Map(); // index -> utterance model (+ its inspect card)
    const bands = new Map(); // key -> room band
    const langOrder = []; // target languages in order of first appearance
    let live = true; // false once the session ended or failed: open utterances stop being "live"
    const lastLatency = new Map(); // "lang/mode" -> the last latency event of that path

    function utt(index) {
      let u = utts.get(index);
      if (u) return u;
      u = { index, startMs: null, audioMs: null, source: { stable: "", rest: "", final: false },
            lines: new Map(), latency: new Map(), card: null, speaker: null };
      utts.set(index, u);
      u.card = makeCard(u);
      while (utts.size > keep) {
        const oldest = Math.min(...utts.keys());
        const gone = utts.get(oldest);
        if (gone.card) gone.card.el.remove();
        utts.delete(oldest);
      }
      return u;
    }

    function lineKey(language, mode) { return `${language}/${mode}`; }

    function sortedKeys(keys) {
      return keys.slice().sort((a, b) => {
        const [la, ma] = a.split("/"), [lb, mb] = b.split("/");
        return langOrder.indexOf(la) - langOrder.indexOf(lb) || pathRank(ma) - pathRank(mb) || (ma < mb ? -1 : ma > mb);
      });
    }

    // ------------------------------------------------------------ inspect cards
    function makeCard(u) {
      const card = el("article", "utterance");
      card.dataset.utterance = String(u.index);
      const meta = el("div", "meta");
      const num = el("span", "num", "#" + u.index);
      const state = el("span", "state");
      const lat = el("span", "latency");
      const who = el("span", "speaker");
      meta.append(num, who, state, lat);
      const transcript = textPair("transcript");
      card.append(meta, transcript.line);
      // keep cards in index order (events of an older utterance may arrive late)
      let before = null;
      for (const [k, other] of utts) if (k > u.index && other.card && (!before || k < before.k)) before = { k, el: other.card.el };
      inspect.insertBefore(card, before ? before.el : null);
      return { el: card, state, lat, who, transcript, lines: new Map() };
    }

    function cardLine(u, key, line) {
      let t = u.card.lines.get(key);
      if (!t) {
        t = textPair("translation");
        const tag = el("span", "lang", `${line.language} · ${line.mode}`);
        t.line.prepend(tag);
        t.line.dataset.language = line.language;
        markLanguage(t.line, line.language);
        t.line.dataset.mode = line.mode;
        u.card.lines.set(key, t);
        // lines in path order: e2e, simul, cascade, then others
        const keys = sortedKeys(Array.from(u.card.lines.keys()));
        for (const k of keys) u.card.el.append(u.card.lines.get(k).line);
      }
      return t;
    }

    function utteranceFinal(u) {
      const lines = Array.from(u.lines.values());
      return u.source.final && lines.length > 0 && lines.every((l) => l.final);
    }

    function renderCard(u) {
      const c = u.card;
      setText(c.who, speakerName(u.speaker));
      if (u.speaker === null) delete c.el.dataset.speaker;
      else c.el.dataset.speaker = String(u.speaker);
      c.el.style.setProperty("--speaker", speakerColour(u.speaker));
      setText(c.transcript.committed, u.source.stable);
      setText(c.transcript.tentative, u.source.rest);
      for (const [key, line] of u.lines) {
        const t = cardLine(u, key, line);
        setText(t.committed, line.committed);
        setText(t.tentative, line.final ? "" : tentativeText(line));
        t.line.classList.toggle("final", line.final);
      }
      const final = utteranceFinal(u);
      const status = final ? "final" : live ? "live" : "interrupted";
      c.el.dataset.status = status;
      c.el.classList.toggle("final", final);
      setText(c.state, status === "live" ? "live…" : status);
      const parts = [];
      for (const [key, m] of u.latency) {
        const bits = [`${key}: AL ${fmtS(m.AL, 2)}`, `LAAL ${fmtS(m.LAAL, 2)}`];
        if (typeof m.LAAL_CA === "number") bits.push(`LAAL_CA ${fmtS(m.LAAL_CA, 2)}`);
        parts.push(bits.join(" · "));
      }
      if (!parts.length && !final && live) {
        for (const key of sortedKeys(Array.from(u.lines.keys()))) {
          const b = lineBehind(u, u.lines.get(key));
          if (b !== null) parts.push(`${key.replace("/", " · ")} ${fmtS(b)} behind`);
        }
      }
      setText(c.lat, parts.join("  |  "));
    }

    function tentativeText(line) {
      if (!line.tentative) return "";
      return line.committed && !noSpaces(line.language) ? " " + line.tentative : line.tentative;
    }

    function lineBehind(u, line) {
      if (line && line.final) return 0;
      if (u.startMs === null || u.audioMs === null) return null;
      const committed = line ? countUnits(line.committed, line.language) : 0;
      const proposal = line ? committed + countUnits(line.tentative, line.language) : 0;
      return behindMs(u.audioMs - u.startMs, committed, proposal);
    }

    // ------------------------------------------------------------ room bands
    function band(key, label, language, mode) {
      let b = bands.get(key);
      if (b) return b;
      const wrap = el("div", "band");
      wrap.dataset.key = key;
      if (language) wrap.dataset.language = language;
      if (mode) wrap.dataset.mode = mode;
      if (key === "source") wrap.classList.add("source");
      const head = el("div", "band-label");
      const name = el("span", "band-name", label);
      const behind = el("span", "behind");
      head.append(name, behind);
      const win = el("div", "band-window");
      const text = textPair("band-text");
      markLanguage(win, language);
      win.append(text.line);
      wrap.append(head, win);
      b = { el: wrap, behind, text };
      bands.set(key, b);
      const order = ["source", ...sortedKeys(Array.from(bands.keys()).filter((k) => k !== "source"))];
      for (const k of order) if (bands.has(k)) room.append(bands.get(k).el);
      return b;
    }

    function recent(filter) {
      return Array.from(utts.values()).filter(filter).sort((a, b) => a.index - b.index).slice(-ROOM_HISTORY);
    }

    function renderSourceBand() {
      const list = recent((u) => u.source.stable || u.source.rest);
      if (!list.length) return;
      const b = band("source", "source");
      let committed = "";
      let tentative = "";
      let prev;
      for (const u of list) {
        const lang = u.language;
        committed = turn(committed, u, prev, lang);
        prev = u;
        committed = join(committed, u.source.stable, lang);
        if (u === list[list.length - 1] && !u.source.final) tentative = u.source.rest;
      }
      setText(b.text.committed, committed);
      setText(b.text.tentative, tentative);
    }

    function renderBand(key) {
      const [language, mode] = key.split("/");
      const list = recent((u) => u.lines.has(key));
      if (!list.length) return;
      const b = band(key, `${language} · ${mode}`, language, mode);
      let committed = "";
      let prev;
      for (const u of list) {
        committed = turn(committed, u, prev, language);
        prev = u;
        committed = join(committed, u.lines.get(key).committed, language);
      }
      const last = list[list.length - 1].lines.get(key);
      setText(b.text.committed, committed);
      setText(b.text.tentative, last.final ? "" : tentativeText(last));
    }

    // live lag of each band: for the newest utterance, how far its captions are behind
    function renderBehind() {
      const newest = utts.size ? utts.get(Math.max(...utts.keys())) : null;
      const out = {};
      for (const [key, b] of bands) {
        if (key === "source") continue;
        let ms = null;
        if (newest && live) ms = lineBehind(newest, newest.lines.get(key) || null);
        out[key] = ms;
        setText(b.behind, ms === null ? "" : `${fmtS(ms)} behind`);
      }
      return out;
    }

    function changed(u) {
      if (u) renderCard(u);
      renderSourceBand();
      for (const key of bands.keys()) if (key !== "source") renderBand(key);
      const behind = renderBehind();
      const primary = sortedKeys(Object.keys(behind))[0];
      // the status bar follows the first path shown (e2e, then simul...)
      const latency = (primary && lastLatency.get(primary)) || lastLatency.get("*") || null;
      onChange({ behindMs: primary ? behind[primary] : null, primary: primary || null, lastLatency: latency,
                 utterances: utts.size });
    }

    // a new line and the speaker's name where the speaker changes (speakers on): turns stay apart
    function turn(text, u, prev, lang) {
      if (u.speaker === null || (prev && prev.speaker === u.speaker)) return text;
      return (text ? text + "\n" : "") + speakerName(u.speaker) + ": ";
    }

    function setSpeaker(u, ev) {
      if (typeof ev.speaker === "number") u.speaker = ev.speaker;
    }

    // ------------------------------------------------------------ events
    function onTranscript(ev) {
      const u = utt(ev.utterance);
      setSpeaker(u, ev);
      if (typeof ev.start_ms === "number") u.startMs = u.startMs === null ? ev.start_ms : Math.min(u.startMs, ev.start_ms);
      if (typeof ev.audio_ms === "number") u.audioMs = Math.max(u.audioMs || 0, ev.audio_ms);
      const text = ev.text || "";
      const final = ev.kind === "final";
      const stable = final ? text : ev.stable_text || "";
      u.source = { stable, rest: final ? "" : text.startsWith(stable) ? text.slice(stable.length) : text, final };
      u.language = ev.language || u.language;
      changed(u);
    }

    function onTranslation(ev) {
      const u = utt(ev.utterance);
      setSpeaker(u, ev);
      const language = String(ev.language || "?");
      const mode = String(ev.mode || "simul");
      if (!langOrder.includes(language)) langOrder.push(language);
      if (typeof ev.audio_ms === "number") u.audioMs = Math.max(u.audioMs || 0, ev.audio_ms);
      const key = lineKey(language, mode);
      u.lines.set(key, { language, mode, committed: ev.committed || "", tentative: ev.final ? "" : ev.tentative || "",
                         final: !!ev.final });
      band(key, `${language} · ${mode}`, language, mode);
      changed(u);
    }

    function onLatency(ev) {
      const u = utts.get(ev.utterance);
      if (u) setSpeaker(u, ev);
      lastLatency.set(lineKey(String(ev.language), String(ev.mode || "simul")), ev);
      lastLatency.set("*", ev);
      if (u) u.latency.set(ev.mode ? `${ev.language} ${ev.mode}` : String(ev.language), ev.metrics || {});
      changed(u);
    }

    function onStatus(ev) {
      // the speaker goes on talking between transcript events: let the open utterance's lag grow
      const newest = utts.size ? utts.get(Math.max(...utts.keys())) : null;
      if (newest && !newest.source.final && typeof ev.audio_ms === "number") {
        newest.audioMs = Math.max(newest.audioMs || 0, ev.audio_ms);
        changed(newest);
      }
    }

    function clear() {
      for (const u of utts.values()) if (u.card) u.card.el.remove();
      utts.clear();
      for (const b of bands.values()) b.el.remove();
      bands.clear();
      langOrder.length = 0;
      lastLatency.clear();
      live = true;
      changed(null);
    }

    // the session ended or failed: nothing is "live" any more
    function close() {
      live = false;
      for (const u of utts.values()) renderCard(u);
      changed(null);
    }

    return { onTranscript, onTranslation, onLatency, onStatus, clear, close,
             get size() { return utts.size; } };
  }

  return { create, behindMs, countUnits, setLanguages, fmtS, PATH_ORDER, speakerName, speakerColour };
})();
