"""``streamst mic``: live captions in the terminal from a microphone (or a wav) via the
websocket service (protocol v1, docs/protocol.md).

Audio is sent as 16 kHz PCM16 frames of 100 ms. Each utterance is one line rewritten in place
(committed text normal, tentative text dim); its final transcript, translation(s) and
latency are printed when it ends. Without a TTY (or with ``--plain``) nothing is rewritten:
a line is printed when new words are committed, tentative text in ``[...]``. ``--json``
prints the raw server events, one per line. Ctrl-C sends ``end`` and waits (bounded) for the
remaining events and the summary; a second Ctrl-C quits at once. A dropped connection is
resumed (``streamst.resume_client``: backoff with jitter, "reconnecting" on stderr, no caption
text repeated or missing); a drained server's session continues on a new one.

Exit codes: 0 session ended normally; 1 server error or connection failure; 2 bad input or
no audio input (sounddevice missing, no device); 130 interrupted before the summary came.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from streamst.audio import SAMPLE_RATE
from streamst.commands._common import clip_left, display_width
from streamst.errors import UserError

FRAME_MS = 100
MODES = ("simul", "cascade", "both")
NO_SOUNDDEVICE = ("sounddevice is not installed (pip install 'streamst[mic]'; "
                  "Debian: apt-get install libportaudio2), or caption a file instead: --file talk.wav")
NO_DEVICE_HINT = "caption a file instead with --file talk.wav, or pick a device: python -m sounddevice"
DIM, RESET, CLEAR_LINE = "\x1b[2m", "\x1b[0m", "\r\x1b[2K"


def register(sub: argparse._SubParsersAction) -> None:
    from streamst.policy import POLICY_NAMES

    p = sub.add_parser("mic", help="live captions from the microphone (or a wav) via a streamst server",
                       epilog="exit codes: 0 the session ended normally; 1 the server could not be reached, "
                              "refused the session or failed; 2 bad arguments or no audio input; "
                              "130 interrupted before the summary")
    p.add_argument("--url", default="ws://127.0.0.1:8765/ws", help="websocket URL of the server")
    p.add_argument("--src", default="zh", help="source language")
    p.add_argument("--tgt", default="en", help="target language(s), comma-separated")
    p.add_argument("--mode", default="simul", choices=MODES)
    p.add_argument("--policy", default="reorder-aware", choices=POLICY_NAMES)
    p.add_argument("--token", default=None, help="auth token (sent as ?token= on the URL)")
    p.add_argument("--device-index", type=int, default=None, help="input device (python -m sounddevice lists them)")
    p.add_argument("--file", default=None, help="stream this audio file instead of the microphone")
    p.add_argument("--fast", action="store_true", help="with --file: send as fast as possible, not in real time")
    p.add_argument("--chunk-ms", type=int, default=600, help="server-side streaming chunk")
    p.add_argument("--plain", action="store_true", help="no ANSI codes or in-place rewriting")
    p.add_argument("--json", action="store_true", help="print the raw server events, one JSON object per line")
    p.add_argument("--speak", action="store_true",
                   help="play the first target's spoken translation (start.speak; sounddevice output device)")
    p.add_argument("--connect-timeout", type=float, default=30.0, help="seconds to wait for the server's ready")
    p.add_argument("--end-timeout", type=float, default=60.0,
                   help="seconds to wait for the summary after the audio ends")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------ audio sources
def _frames(samples: np.ndarray, carry: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """Cut 16 kHz float samples into 100 ms PCM16 frames; returns (frames, leftover)."""
    from streamst.audio import pcm16_bytes

    x = np.concatenate([carry, samples]) if carry.size else samples
    n = SAMPLE_RATE * FRAME_MS // 1000
    whole = len(x) // n * n
    return [pcm16_bytes(x[i : i + n]) for i in range(0, whole, n)], x[whole:]


def file_source(path: str, fast: bool) -> AsyncIterator[bytes]:
    """PCM16 frames of an audio file (validated now, before any connection), in real time
    unless ``fast``."""
    from streamst.audio import StreamResampler, read_audio

    samples, rate = read_audio(path)
    resample = StreamResampler(rate)

    async def gen() -> AsyncIterator[bytes]:
        step = rate * FRAME_MS // 1000
        carry = np.zeros(0, dtype=np.float32)
        t0 = time.monotonic()
        for i in range(0, len(samples), step):
            frames, carry = _frames(resample(samples[i : i + step]), carry)
            for f in frames:
                yield f
            if not fast:
                delay = t0 + (i + step) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing a replay at real time
            else:
                await asyncio.sleep(0)
        if carry.size:
            from streamst.audio import pcm16_bytes

            yield pcm16_bytes(carry)

    return gen()


def _import_sounddevice():
    try:
        import sounddevice
    except ImportError as e:
        raise UserError(NO_SOUNDDEVICE) from e
    except OSError as e:  # the module is there but the PortAudio library is not
        raise UserError(f"{NO_SOUNDDEVICE}: {e}") from e
    return sounddevice


def mic_source(device: int | None) -> AsyncIterator[bytes]:
    """PCM16 frames from an input device (checked now, before any connection)."""
    sd = _import_sounddevice()
    try:
        info = sd.query_devices(device, kind="input")
    except Exception as e:  # PortAudioError, ValueError: no such device / no input device
        raise UserError(f"no usable audio input device ({e}); {NO_DEVICE_HINT}") from e
    try:
        sd.check_input_settings(device=device, channels=1, samplerate=SAMPLE_RATE, dtype="float32")
        rate = SAMPLE_RATE
    except Exception:
        rate = int(info["default_samplerate"])

    async def gen() -> AsyncIterator[bytes]:
        from streamst.audio import StreamResampler

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=600)  # 60 s of 100 ms blocks

        def put(block: np.ndarray) -> None:
            if queue.full():
                queue.get_nowait()  # the consumer stalled: drop the oldest audio
            queue.put_nowait(block)

        def callback(indata, frames, time_info, status) -> None:  # PortAudio thread
            loop.call_soon_threadsafe(put, indata[:, 0].copy())

        resample = StreamResampler(rate)
        carry = np.zeros(0, dtype=np.float32)
        try:
            stream = sd.InputStream(device=device, channels=1, samplerate=rate, dtype="float32",
                                    blocksize=rate * FRAME_MS // 1000, callback=callback)
        except Exception as e:
            raise UserError(f"cannot open audio input device ({e}); {NO_DEVICE_HINT}") from e
        with stream:
            while True:
                frames, carry = _frames(resample(await queue.get()), carry)
                for f in frames:
                    yield f

    return gen()


# ------------------------------------------------------------------------------ rendering
def _tail(parts: list[tuple[str, bool]], width: int) -> list[tuple[str, bool]]:
    """Keep the end of the styled ``parts`` (text, dim) within ``width`` display columns."""
    out: list[tuple[str, bool]] = []
    left = width
    for text, dim in reversed(parts):
        if display_width(text) <= left:
            out.append((text, dim))
            left -= display_width(text)
            continue
        out.append((clip_left(text, left), dim))
        break
    return list(reversed(out))


def _sep(committed: str, tentative: str) -> str:
    if not committed or not tentative or committed[-1:].isspace():
        return ""
    return "" if display_width(committed[-1]) == 2 or display_width(tentative[0]) == 2 else " "


@dataclass
class Renderer:
    out: TextIO
    tty: bool  # rewrite the live line in place with ANSI styles
    json_mode: bool = False
    live: str = ""  # the live line currently drawn (tty)
    transcripts: dict[int, tuple[str, str]] = field(default_factory=dict)  # utt -> (stable, rest)
    translations: dict[tuple[int, str, str], tuple[str, str]] = field(default_factory=dict)
    printed: dict[tuple[int, str, str], str] = field(default_factory=dict)  # plain: last committed shown
    latencies: list[dict[str, Any]] = field(default_factory=list)
    current: int | None = None
    reconnecting: bool = False

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _clear(self) -> None:
        if self.tty and self.live:
            self._write(CLEAR_LINE)
            self.live = ""

    def line(self, text: str) -> None:
        """A permanent line (the live line is redrawn below it)."""
        self._clear()
        self._write(text + "\n")
        self._draw()

    def _draw(self) -> None:
        if not self.tty or self.current is None:
            return
        utt = self.current
        parts: list[tuple[str, bool]] = []
        tr = [(k[1], v) for k, v in self.translations.items() if k[0] == utt]
        if tr:
            for n, (label, (committed, tentative)) in enumerate(tr):
                parts += [(" │ " if n else "", False), (f"{label}: {committed}", False),
                          (_sep(committed, tentative) + tentative, True)]
        elif utt in self.transcripts:
            stable, rest = self.transcripts[utt]
            parts += [(stable, False), (rest, True)]
        else:  # nothing live left for this utterance
            self.current = None
            return
        prefix = f"[{utt}] "
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        body = _tail(parts, width - display_width(prefix))
        text = prefix + "".join(f"{DIM}{t}{RESET}" if dim and t else t for t, dim in body)
        self._write(CLEAR_LINE + text)
        self.live = text

    def event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if self.json_mode:
            self._write(json.dumps(ev, ensure_ascii=False) + "\n")
            if kind == "latency":
                self.latencies.append(ev)
            return
        if kind == "transcript":
            utt, text = ev["utterance"], ev.get("text", "")
            if ev.get("kind") == "final":
                self.transcripts.pop(utt, None)
                self.line(f"[{utt}] {ev.get('language') or 'src'}: {text}")
                return
            stable = ev.get("stable_text", "")
            rest = text[len(stable):] if text.startswith(stable) else text
            self.transcripts[utt] = (stable, rest)
            if self.current is None or utt >= self.current:
                self.current = utt
            self._draw()
        elif kind == "translation":
            utt, lang = ev["utterance"], ev["language"]
            mode = ev.get("mode", "simul")
            label = lang if mode == "simul" else f"{lang} {mode}"
            key = (utt, label, mode)
            committed, tentative = ev.get("committed", ""), ev.get("tentative", "")
            if ev.get("final"):
                self.translations.pop(key, None)
                self.line(f"[{utt}] {label}: {committed}")
                return
            self.translations[key] = (committed, tentative)
            if self.current is None or utt >= self.current:
                self.current = utt
            if self.tty:
                self._draw()
            elif committed != self.printed.get(key, ""):
                self.printed[key] = committed
                shown = f"{committed}{_sep(committed, tentative)}[{tentative}]" if tentative else committed
                self.line(f"… [{utt}] {label}: {shown}")
        elif kind == "latency":
            self.latencies.append(ev)
            m = ev.get("metrics", {})
            figures = " · ".join(f"{name} {m[name]:.0f} ms" for name in ("AL", "LAAL", "AL_CA", "LAAL_CA")
                                 if isinstance(m.get(name), (int, float)))
            extra = (f" · retention {ev['retention_proxy']:.2f}"
                     if isinstance(ev.get("retention_proxy"), (int, float)) else "")
            self.line(f"[{ev['utterance']}] {ev.get('language')} latency: {figures}{extra}")
        elif kind == "end":
            self._clear()
            self.summary(ev.get("summary") or {})

    def state(self, state: str) -> None:
        """The connection's state (``streamst.resume_client``): a drop shows ``reconnecting``."""
        if state == "reconnecting":
            self._clear()
            print("streamst mic: connection lost, reconnecting…", file=sys.stderr, flush=True)
            self.reconnecting = True
        elif state == "streaming" and self.reconnecting:
            print("streamst mic: reconnected, resuming the session", file=sys.stderr, flush=True)
            self.reconnecting = False
            self._draw()

    def summary(self, summary: dict[str, Any]) -> None:
        """One line from the server's ``end`` summary (latency means computed from the
        latency events when the summary has none)."""
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        bits = []
        audio_s = summary.get("audio_s", summary["audio_ms"] / 1000 if num(summary.get("audio_ms")) else None)
        if num(audio_s):
            bits.append(f"{audio_s:.1f} s audio")
        utts = summary.get("utterances")
        n = len(utts) if isinstance(utts, list) else utts if num(utts) else None
        if n is not None:
            bits.append(f"{n} utterances")
        means = summary.get("mean_latency_ms")
        if not isinstance(means, dict):
            means = {}
            for lang in sorted({str(e.get("language")) for e in self.latencies}):
                evs = [e.get("metrics", {}) for e in self.latencies if str(e.get("language")) == lang]
                means[lang] = {name: sum(v) / len(v) for name in ("AL", "LAAL")
                               if (v := [m[name] for m in evs if num(m.get(name))])}
        for lang, m in means.items():
            if isinstance(m, dict):
                bits += [f"{lang} mean {name} {m[name]:.0f} ms" for name in ("AL", "LAAL") if num(m.get(name))]
        if num(summary.get("real_time_factor")):
            bits.append(f"RTF {summary['real_time_factor']:.2f}")
        if num(summary.get("max_lag_ms")):
            bits.append(f"max lag {summary['max_lag_ms']:.0f} ms")
        self._write("summary: " + (", ".join(bits) if bits else json.dumps(summary, ensure_ascii=False)) + "\n")


# ------------------------------------------------------------------------------ session
class ServerError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "token"] + [("token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def stream(args: argparse.Namespace, source: AsyncIterator[bytes], render: Renderer,
                 stop: asyncio.Event) -> bool:
    """Run one session, reconnecting and resuming after a drop (``streamst.resume_client``).
    Returns True when the server's ``end`` (summary) arrived."""
    from streamst.resume_client import ReconnectOptions, ResumingClient, SessionFailed
    from streamst.server.protocol import PolicySpec, Start

    tgts = [t.strip() for t in args.tgt.split(",") if t.strip()]
    start = Start(sample_rate=SAMPLE_RATE, src_lang=args.src, tgt_langs=tuple(tgts), mode=args.mode,
                  policy=PolicySpec(args.policy), chunk_ms=args.chunk_ms,
                  speak=tuple(tgts[:1]) if getattr(args, "speak", False) else ()).to_message()
    player = None  # streamst.speak.cli.SpeechPlayer with --speak
    if start.get("speak"):
        from streamst.speak.cli import SpeechPlayer

        player = SpeechPlayer(_import_sounddevice())

    def on_event(ev: dict) -> None:
        if ev.get("type") == "speech":  # spoken output: played, shown only with --json
            if player is not None:
                player.feed(ev)
            if not render.json_mode:
                return
        render.event(ev)

    source_done = asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        """The source until it ends or Ctrl-C (then the client sends ``end``)."""
        stopped = asyncio.ensure_future(stop.wait())
        it = source.__aiter__()
        try:
            while True:
                nxt = asyncio.ensure_future(it.__anext__())
                await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():  # Ctrl-C
                    nxt.cancel()
                    break
                try:
                    yield nxt.result()
                except StopAsyncIteration:
                    break
        finally:
            stopped.cancel()
            source_done.set()

    client = ResumingClient(with_token(args.url, args.token), start, on_event=on_event, on_state=render.state,
                            options=ReconnectOptions(open_timeout_s=args.connect_timeout, fail_first=True))
    session = asyncio.ensure_future(client.run(frames()))
    done = asyncio.ensure_future(source_done.wait())
    try:
        await asyncio.wait({session, done}, return_when=asyncio.FIRST_COMPLETED)
        if not session.done():  # all audio given: the rest of the events and the summary are due
            try:
                await asyncio.wait_for(asyncio.shield(session), args.end_timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no summary from the server within {args.end_timeout:.0f} s "
                                   "of the end of the audio") from None
        session.result()
        return True
    except SessionFailed as e:
        if e.code in ("connect", "unreachable"):
            raise ConnectionError(e.message) from None
        raise ServerError(e.code, e.message) from None
    finally:
        for task in (session, done):
            task.cancel()
        await asyncio.gather(session, done, return_exceptions=True)
        if player is not None:
            player.close()


def run(args: argparse.Namespace) -> int:
    if args.fast and not args.file:
        raise UserError("--fast needs --file")
    if not [t for t in args.tgt.split(",") if t.strip()]:
        raise UserError("--tgt needs at least one language")
    # check the audio input before connecting (one line, exit 2)
    source = file_source(args.file, args.fast) if args.file else mic_source(args.device_index)
    render = Renderer(sys.stdout, tty=sys.stdout.isatty() and not args.plain and not args.json,
                      json_mode=args.json)
    return asyncio.run(_main(args, source, render))


async def _main(args: argparse.Namespace, source: AsyncIterator[bytes], render: Renderer) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        if interrupted:  # second Ctrl-C: give up now
            main_task.cancel()
            return
        interrupted = True
        print("\nstopping: waiting for the last captions (Ctrl-C again to quit)", file=sys.stderr)
        stop.set()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
        pass
    try:
        ended = await stream(args, source, render, stop)
    except ServerError as e:
        render._clear()
        print(f"streamst mic: server error {e.code}: {e.message}", file=sys.stderr)
        return 1
    except (ConnectionError, TimeoutError, asyncio.TimeoutError) as e:
        render._clear()
        print(f"streamst mic: error: {e or 'timed out'}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        render._clear()
        return 130
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass
    if not ended:
        if interrupted:
            return 130
        render._clear()
        print("streamst mic: error: the server closed the connection before the summary", file=sys.stderr)
        return 1
    return 0
