"""Translate a WAV file through streamst with the official OpenAI SDK (Realtime Translation).

    pip install openai soxr
    python demos/openai_client.py talk.wav --server 127.0.0.1:8765 --token T --language en

The same code talks to OpenAI's service when `websocket_base_url` is left out; against
streamst the api key is the server's --token (anything when it has none). The source
language is detected. Protocol: docs/protocol.md, "OpenAI Realtime Translation endpoint".
"""

import argparse
import base64
import wave

import numpy as np
import soxr
from openai import OpenAI

p = argparse.ArgumentParser()
p.add_argument("wav", help="mono 16-bit PCM WAV, any rate")
p.add_argument("--server", default="127.0.0.1:8765")
p.add_argument("--token", default="none", help="the server's --token")
p.add_argument("--language", default="en", help="target language")
args = p.parse_args()

with wave.open(args.wav, "rb") as w:
    assert w.getnchannels() == 1 and w.getsampwidth() == 2, "need mono 16-bit PCM"
    rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
audio = soxr.resample(pcm.astype(np.float32) / 32768, rate, 24000)  # the API takes 24 kHz PCM16
pcm24 = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()

client = OpenAI(api_key=args.token, base_url=f"http://{args.server}/v1", websocket_base_url=f"ws://{args.server}/v1")
with client.realtime.translations.connect(model="streamst") as conn:
    conn.session.update(session={"audio": {"output": {"language": args.language},
                                           "input": {"transcription": {"model": "sensevoice"}}}})
    chunk = 24000 * 2 // 5  # 200 ms of PCM16, the service's frame
    for i in range(0, len(pcm24), chunk):
        conn.session.input_audio_buffer.append(audio=base64.b64encode(pcm24[i : i + chunk]).decode())
    conn.session.close()  # flush: the remaining text arrives, then session.closed

    translation, source = "", ""
    for event in conn:
        if event.type == "session.output_transcript.delta":
            translation += event.delta  # append-only; the spacing is inside the deltas
            print(f"{event.elapsed_ms:>7} ms  {translation}")
        elif event.type == "session.input_transcript.delta":
            source += event.delta
        elif event.type == "error":
            print("error:", event.error.code, event.error.message)
        elif event.type == "session.closed":
            break
print("SOURCE:", source)
print("TRANSLATION:", translation)
