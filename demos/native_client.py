"""Stream a WAV file to streamst over the native protocol (/ws) and print live captions.

    python demos/native_client.py talk.wav --url ws://127.0.0.1:8765/ws --src zh --tgt en [--realtime]

Needs only `websockets` and `numpy`. Protocol: docs/protocol.md.
"""

import argparse
import json
import threading
import time
import wave

from websockets.sync.client import connect

p = argparse.ArgumentParser()
p.add_argument("wav", help="mono 16-bit PCM WAV, any rate (the server resamples)")
p.add_argument("--url", default="ws://127.0.0.1:8765/ws")
p.add_argument("--token", default=None, help="the server's --token")
p.add_argument("--src", default="zh", help="source language, or auto")
p.add_argument("--tgt", default="en")
p.add_argument("--realtime", action="store_true", help="send at the pace of speech (like a microphone)")
args = p.parse_args()

with wave.open(args.wav, "rb") as w:
    assert w.getnchannels() == 1 and w.getsampwidth() == 2, "need mono 16-bit PCM"
    rate, pcm = w.getframerate(), w.readframes(w.getnframes())

headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
with connect(args.url, additional_headers=headers, max_size=None) as ws:
    ws.send(json.dumps({"type": "start", "sample_rate": rate, "src_lang": args.src, "tgt_langs": [args.tgt]}))
    print("ready:", json.loads(ws.recv())["session"])

    def send_audio():
        step = rate // 10 * 2  # 100 ms frames of PCM16
        for i in range(0, len(pcm), step):
            ws.send(pcm[i : i + step])
            if args.realtime:
                time.sleep(0.1)
        ws.send(json.dumps({"type": "end"}))

    threading.Thread(target=send_audio, daemon=True).start()
    for raw in ws:  # until the server closes after "end"
        msg = json.loads(raw)
        if msg["type"] == "translation" and msg["mode"] == "simul":
            mark = "final" if msg["final"] else "  ...  "
            print(f"[{msg['utterance']}] {mark} {msg['committed']} \033[2m{msg['tentative']}\033[0m")
        elif msg["type"] == "transcript" and msg["kind"] == "final":
            print(f"[{msg['utterance']}] source ({msg['language']}): {msg['text']}")
        elif msg["type"] == "error":
            raise SystemExit(f"error {msg['code']}: {msg['message']}")
        elif msg["type"] == "end":
            s = msg["summary"]
            print(f"done: {s['utterances']} utterance(s), {s['audio_ms']} ms of audio, "
                  f"mean latency {json.dumps(s['mean_latency_ms'])}")
            print("TRANSLATION:", " ".join(r["simul"] or "" for r in s["results"]).strip())
