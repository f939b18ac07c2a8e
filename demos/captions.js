// A minimal streamst caption client for web pages: microphone -> websocket /ws (protocol v1,
// docs/protocol.md) -> captions. No build step: include it with <script src="captions.js">.
//
// The AudioContext is opened at 16 kHz (the browser resamples the microphone); if the browser
// keeps its own rate, that rate is announced in "start" and the server resamples.
"use strict";

function streamstCaptions({ server, token, src = "zh", tgt = "en", onCaptions, onState }) {
  const url = new URL("/ws", server);
  if (token) url.searchParams.set("token", token); // browsers cannot set an Authorization header
  const utterances = new Map(); // utterance -> {source, committed, tentative, final}
  let ws, ctx, stream, node, ping;

  function caption(n) {
    if (!utterances.has(n)) utterances.set(n, { source: "", committed: "", tentative: "", final: false });
    return utterances.get(n);
  }

  function onMessage(msg) {
    if (msg.type === "ready") onState("live");
    else if (msg.type === "transcript") caption(msg.utterance).source = msg.text;
    else if (msg.type === "translation" && msg.mode === "simul") {
      Object.assign(caption(msg.utterance), { committed: msg.committed, tentative: msg.tentative, final: msg.final });
    } else if (msg.type === "error") onState("error", msg.code + ": " + msg.message);
    else if (msg.type === "end") onState("ended");
    if (msg.type === "transcript" || msg.type === "translation") {
      while (utterances.size > 20) utterances.delete(utterances.keys().next().value); // bounded
      onCaptions(Array.from(utterances.values()));
    }
  }

  async function start() {
    onState("connecting");
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    ctx = new AudioContext({ sampleRate: 16000 });
    const input = ctx.createMediaStreamSource(stream);
    node = ctx.createScriptProcessor(2048, 1, 1); // about 128 ms per frame at 16 kHz
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "start", sample_rate: ctx.sampleRate, encoding: "pcm_s16le",
                               src_lang: src, tgt_langs: [tgt] }));
      ping = setInterval(() => ws.send(JSON.stringify({ type: "ping" })), 15000); // app-level keepalive
    };
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    ws.onclose = (e) => { stop(); onState(e.code === 1000 ? "ended" : "closed", "closed " + e.code); };
    node.onaudioprocess = (e) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const x = e.inputBuffer.getChannelData(0);
      const pcm = new Int16Array(x.length);
      for (let i = 0; i < x.length; i++) pcm[i] = Math.max(-1, Math.min(1, x[i])) * 32767;
      ws.send(pcm.buffer);
    };
    input.connect(node);
    node.connect(ctx.destination); // a ScriptProcessor runs only when connected; it outputs silence
  }

  function stop() {
    clearInterval(ping);
    if (node) node.disconnect();
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (ctx && ctx.state !== "closed") ctx.close();
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" })); // flush, then close
  }

  return { start, stop };
}
