// streamst: one /ws session over as many websocket connections as it takes (docs/protocol.md,
// "Resume"); the page's side of streamst/resume_client.py.
//
//   const conn = StreamstResume.open({url, start, onMessage(text), onState(state)});
//   conn.sendAudio(pcm16ArrayBuffer); conn.end(); conn.close();
//
// * Every numbered server message (seq) is handed to onMessage exactly once, in order; after a
//   resume the server may repeat some: those at or below the last seq are skipped. Others
//   (status, pong, error) are handed on as they come. Acks every 16 messages.
// * Audio is kept from the server's status.processed_samples on and re-sent after a resume
//   from resumed.audio_samples (frames queued while reconnecting are kept too, bounded).
// * A close without end or error: state "reconnecting", retries with exponential backoff and
//   full jitter (100 ms doubling to 5 s, 10 attempts), then "resume" with the token of ready.
//   A start refused while a server drains (shutting_down before ready) is retried the same way.
// States: connecting, live, reconnecting, ended, failed (onState(state, detail)).
"use strict";

(() => {
  const ACK_EVERY = 16;
  const MAX_KEPT_SAMPLES = 16000 * 120; // audio kept for re-sending (2 min); the oldest goes first
  const BACKOFF = { base: 100, max: 5000, attempts: 10 };

  function open({ url, start, onMessage, onState = () => {} }) {
    const c = {
      ws: null, token: null, lastSeq: 0, state: "connecting", failures: 0, timer: null,
      kept: [], // [{at, pcm}] frames from the first unprocessed sample on (at: input sample)
      total: 0, // input samples given by sendAudio
      endWanted: false, done: false, live: false,
    };

    function setState(state, detail) {
      if (state === c.state) return;
      c.state = state;
      onState(state, detail);
    }

    function trim(upTo) { // the server processed everything before input sample upTo
      while (c.kept.length && c.kept[0].at + c.kept[0].pcm.byteLength / 2 <= upTo) c.kept.shift();
      while (c.kept.length && c.total - c.kept[0].at > MAX_KEPT_SAMPLES) c.kept.shift();
    }

    function sendFrom(from) { // every kept frame from input sample `from` on
      for (const f of c.kept) {
        const n = f.pcm.byteLength / 2;
        if (f.at + n <= from) continue;
        c.ws.send(f.at >= from ? f.pcm : f.pcm.slice((from - f.at) * 2));
      }
      if (c.endWanted) c.ws.send(JSON.stringify({ type: "end" }));
    }

    function connect() {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      c.ws = ws;
      c.live = false;
      ws.onopen = () => {
        ws.send(JSON.stringify(c.token ? { type: "resume", token: c.token, last_seq: c.lastSeq } : start));
      };
      ws.onmessage = (e) => {
        if (ws !== c.ws || typeof e.data !== "string") return;
        let ev;
        try { ev = JSON.parse(e.data); } catch (err) { onMessage(e.data); return; }
        if (ev.type === "resumed") {
          c.live = true; c.failures = 0;
          setState("live");
          sendFrom(ev.audio_samples);
          return;
        }
        if (ev.type === "error" && ev.code === "shutting_down" && !c.token) {
          retry(); // a draining server refused the start: another instance, or after its restart
          return;
        }
        if (ev.type === "status" && typeof ev.processed_samples === "number") trim(ev.processed_samples);
        if (typeof ev.seq === "number") {
          if (ev.seq <= c.lastSeq) return; // already delivered before the drop
          c.lastSeq = ev.seq;
          if (ev.seq % ACK_EVERY === 0) ws.send(JSON.stringify({ type: "ack", seq: ev.seq }));
        }
        if (ev.type === "ready") {
          c.token = ev.resume ? ev.resume.token : null;
          c.live = true; c.failures = 0;
          setState("live");
          sendFrom(0);
        }
        if (ev.type === "end") c.done = true;
        if (ev.type === "error") { c.done = true; setState("failed", ev.code); }
        onMessage(e.data);
        if (ev.type === "end") setState("ended");
      };
      ws.onerror = () => {}; // always followed by onclose
      ws.onclose = (e) => {
        if (ws !== c.ws || c.done) return;
        if (c.closed) { setState("ended"); return; }
        if (!c.token && c.failures === 0) { // the first connection failed: nothing to resume
          c.done = true;
          setState("failed", `closed ${e.code} ${e.reason || ""}`.trim());
          return;
        }
        retry();
      };
    }

    function retry() {
      const ws = c.ws;
      c.ws = null;
      if (ws) { ws.onclose = null; try { ws.close(); } catch (err) { /* closed */ } }
      c.failures += 1;
      if (c.failures > BACKOFF.attempts) {
        c.done = true;
        setState("failed", "unreachable");
        return;
      }
      setState("reconnecting");
      const delay = Math.random() * Math.min(BACKOFF.max, BACKOFF.base * 2 ** (c.failures - 1));
      c.timer = setTimeout(connect, delay);
    }

    connect();
    return {
      get state() { return c.state; },
      get lastSeq() { return c.lastSeq; },
      sendAudio(pcm) {
        if (c.done || c.endWanted) return;
        c.kept.push({ at: c.total, pcm });
        c.total += pcm.byteLength / 2;
        trim(0);
        if (c.live && c.ws && c.ws.readyState === WebSocket.OPEN) {
          c.ws.send(pcm);
        }
      },
      sendText(obj) { if (c.live && c.ws && c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(obj)); },
      end() {
        c.endWanted = true;
        if (c.live && c.ws && c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify({ type: "end" }));
      },
      close() {
        c.closed = true; c.done = true;
        clearTimeout(c.timer);
        if (c.ws) c.ws.close();
      },
    };
  }

  window.StreamstResume = { open };
})();
