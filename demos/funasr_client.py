"""A FunASR-protocol client, as FunASR's own `funasr_wss_client.py` talks (see
demos/README.md for using that reference client itself, unchanged).

    streamst serve --profile tiny --funasr-port 10095
    python demos/funasr_client.py talk.wav --port 10095 [--tgt en]

Sends the config, PCM16 in 600 ms strides, `{"is_speaking": false, "is_end": true}`, and
waits for the server's acknowledgement (`is_end: true`). streamst adds a `translation`
field to the results.
"""

import argparse
import asyncio
import json
import wave

import websockets

p = argparse.ArgumentParser()
p.add_argument("wav", help="mono 16-bit PCM WAV")
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, default=10095)
p.add_argument("--mode", default="2pass", choices=["online", "offline", "2pass"])
p.add_argument("--tgt", default="en", help="translation target (a streamst extension)")
p.add_argument("--hotwords", default="", help='e.g. "阿里巴巴 达摩院"')
args = p.parse_args()


async def main() -> None:
    with wave.open(args.wav, "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    async with websockets.connect(f"ws://{args.host}:{args.port}", subprotocols=["binary"]) as ws:
        await ws.send(json.dumps({"mode": args.mode, "chunk_size": [5, 10, 5], "chunk_interval": 10,
                                  "audio_fs": rate, "wav_name": "demo", "wav_format": "pcm", "is_speaking": True,
                                  "hotwords": args.hotwords, "itn": True, "tgt_lang": args.tgt}))
        stride = rate * 600 // 1000 * 2
        for i in range(0, len(pcm), stride):
            await ws.send(pcm[i : i + stride])
        await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
        text = ""
        async for raw in ws:
            msg = json.loads(raw)
            if msg["mode"] in ("offline", "2pass-offline") and msg["text"]:
                text += msg["text"]
                print("sentence:", msg["text"], "| translation:", msg.get("translation"))
            elif msg["mode"] in ("online", "2pass-online"):
                print("partial:", msg["text"], "| translation so far:", msg.get("translation"))
            if msg.get("is_end"):  # the acknowledgement: everything was sent
                if not msg["is_final"]:
                    raise SystemExit(f"server failed: {msg.get('error')}")
                break
    print("TEXT:", text)


asyncio.run(main())
