"""The per-session speaker hook: a ``speaker`` on every utterance-level event.

:class:`SpeakerTurns` is called by :class:`~streamst.pipeline.TranslationSession` (so in the
session's worker thread, never on the event loop): ``insert_audio`` with every piece of
audio, ``label(events)`` with the events of every step.

* Utterances are the ones the events name: a transcript event gives the utterance's span
  (``start_ms`` .. ``end_ms``). While an utterance grows, each complete window of
  ``window_ms`` (hop ``shift_ms``: 1.5 s / 0.75 s, FunASR's ``sv_chunk``) is embedded as
  soon as its audio is there, so a long utterance costs a few windows per second and its
  final step only the tail window. The utterance's embedding is the normalised mean of its
  windows'; an utterance shorter than one window is embedded whole. Each window loses its
  quiet edges first (the VAD's pre-roll and end silence).
* At the utterance's final transcript its embedding goes to the session's
  :class:`~streamst.speakers.cluster.OnlineClusterer`, whose label is then on the final
  transcript and every later (and same-step) event of that utterance: its translations and
  latency. Before that, events carry the provisional label (the speaker the windows so far
  are closest to, when one is close enough), which the final label may change.
* The events of the e2e path are labelled from its own transcript events (mode ``e2e``);
  without them (mode ``all``, where the e2e path emits no transcript) they carry none.
  Every utterance the VAD found is labelled, with or without text.

Memory is bounded: audio is kept from the oldest window not yet embedded (at most
``keep_ms``), and the labels of the last ``max_utterances`` utterances.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from streamst.events import Event, TranscriptEvent
from streamst.speakers.cluster import ClusterOptions, OnlineClusterer
from streamst.speakers.embed import Embedder, unit

__all__ = ["SpeakerTurns", "TurnOptions", "session_speakers"]

SR_MS = 16  # samples per ms at 16 kHz
MIN_WINDOW_MS = 200  # shorter windows (after trimming quiet edges) are not embedded
QUIET_DBFS = -50.0  # frames quieter than this at a window's edges are trimmed


@dataclass(frozen=True)
class TurnOptions:
    window_ms: int = 1500  # one embedding window (FunASR sv_chunk seg_dur)
    shift_ms: int = 750  # hop between windows (FunASR sv_chunk seg_shift)
    min_tail_ms: int = 300  # at the end of an utterance, a last window only if it adds this much
    idle_keep_ms: int = 5_000  # audio kept while no utterance is open (its start may lie back)
    keep_ms: int = 30_000  # audio kept at most
    max_utterances: int = 256  # utterance labels remembered

    def __post_init__(self) -> None:
        if not 0 < self.shift_ms <= self.window_ms <= self.keep_ms:
            raise ValueError("need 0 < shift_ms <= window_ms <= keep_ms")


@dataclass
class _Open:
    """An utterance under way."""

    start_ms: int
    end_ms: int
    next_ms: int  # start of the next window to embed
    sum: np.ndarray | None = None  # sum of the window embeddings so far
    n: int = 0
    covered_ms: int = 0  # end of the last window embedded


def voiced(x: np.ndarray) -> np.ndarray:
    """``x`` without its quiet edges (10 ms frames below ``QUIET_DBFS``): an utterance's span
    includes the VAD's pre-roll and end silence, which would otherwise weigh in the window's
    statistics (digital silence most of all)."""
    n = x.size // 160
    if n == 0:
        return x[:0]
    rms = np.sqrt(np.mean(x[: n * 160].reshape(n, 160) ** 2, axis=1))
    loud = np.flatnonzero(rms >= 10 ** (QUIET_DBFS / 20))
    return x[loud[0] * 160: (loud[-1] + 1) * 160] if loud.size else x[:0]


def _key(ev: Event) -> tuple[str, int]:
    if isinstance(ev, TranscriptEvent):
        return ev.path, ev.utterance
    return ("e2e" if ev.mode == "e2e" else "asr"), ev.utterance


class SpeakerTurns:
    """One session's speaker labelling (not thread-safe: the session's one caller)."""

    def __init__(self, embedder: Embedder, cluster: ClusterOptions = ClusterOptions(),
                 options: TurnOptions = TurnOptions()) -> None:
        self.embedder, self.options = embedder, options
        self.clusterer = OnlineClusterer(cluster)
        self._chunks: list[tuple[int, np.ndarray]] = []  # (first sample index, samples)
        self._received = 0  # samples inserted so far
        self._open: dict[tuple[str, int], _Open] = {}
        self._labels: OrderedDict[tuple[str, int], int | None] = OrderedDict()
        self.windows = 0  # windows embedded (diagnostics, bench)
        self.utterances = 0  # utterances labelled

    def speaker_of(self, result) -> int | None:
        """The label of an :class:`~streamst.results.UtteranceResult` of this session (None:
        none, or forgotten)."""
        return self._labels.get(("e2e" if result.path == "e2e" else "asr", result.utterance))

    def summary(self, results) -> dict:
        """Speakers found and each utterance's label (one row per utterance, first path's
        results), for reports (``translate``/``eval --speakers``)."""
        rows: dict[tuple[str, int], dict] = {}
        for r in results:
            key = ("e2e" if r.path == "e2e" else "asr", r.utterance)
            rows.setdefault(key, {"utterance": r.utterance, "start_ms": r.start_ms, "end_ms": r.end_ms,
                                  "speaker": self.speaker_of(r)})
        return {"speakers": self.clusterer.speakers, "utterances": list(rows.values())}

    # -- audio ------------------------------------------------------------------------------
    def insert_audio(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append((self._received, np.asarray(samples, dtype=np.float32)))
            self._received += samples.size
        self._trim()

    def _trim(self) -> None:
        o = self.options
        keep = min((u.next_ms for u in self._open.values()), default=self._received // SR_MS - o.idle_keep_ms)
        keep = max(keep, self._received // SR_MS - o.keep_ms) * SR_MS
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= keep:
            self._chunks.pop(0)

    def audio(self, start_ms: int, end_ms: int) -> np.ndarray:
        """The session's audio in ``[start_ms, end_ms)`` that is still kept."""
        a, b = start_ms * SR_MS, end_ms * SR_MS
        parts = [x[max(0, a - s): max(0, b - s)] for s, x in self._chunks if s < b and s + x.size > a]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    # -- events -----------------------------------------------------------------------------
    def label(self, events: list[Event]) -> list[Event]:
        """``events`` with ``speaker`` set where known (same order, same events)."""
        if not events:
            return events
        provisional: dict[tuple[str, int], int | None] = {}
        finals: list[tuple[tuple[str, int], TranscriptEvent]] = []
        for ev in events:
            if not isinstance(ev, TranscriptEvent) or _key(ev) in self._labels:
                continue
            key = _key(ev)
            u = self._open.get(key)
            if u is None:
                u = self._open[key] = _Open(ev.start_ms, ev.end_ms, ev.start_ms)
            u.end_ms = max(u.end_ms, ev.end_ms)
            if ev.kind == "final":
                finals.append((key, ev))
        final_keys = {k for k, _ in finals}
        self._embed_windows(final_keys)
        for key, u in self._open.items():
            if key not in final_keys and u.n:
                provisional[key] = self.clusterer.peek(unit(u.sum / u.n))
        for key, ev in finals:
            u = self._open.pop(key)
            label = None
            if u.n:
                label = self.clusterer.assign(unit(u.sum / u.n), u.end_ms - u.start_ms)
                self.utterances += 1
            self._labels[key] = label
            while len(self._labels) > self.options.max_utterances:
                self._labels.popitem(last=False)
        self._trim()
        out: list[Event] = []
        for ev in events:
            key = _key(ev)
            spk = self._labels[key] if key in self._labels else provisional.get(key)
            out.append(replace(ev, speaker=spk) if spk is not None else ev)
        return out

    def _embed_windows(self, final_keys: set[tuple[str, int]]) -> None:
        """Embed every complete window of the open utterances (and the tail window of those
        that ended), all in one call."""
        o = self.options
        todo: list[tuple[_Open, np.ndarray, int]] = []
        for key, u in self._open.items():
            while u.next_ms + o.window_ms <= u.end_ms:
                todo.append((u, self.audio(u.next_ms, u.next_ms + o.window_ms), u.next_ms + o.window_ms))
                u.next_ms += o.shift_ms
            if key in final_keys:
                mine = [end for v, _, end in todo if v is u]
                done = max([u.covered_ms, *mine])
                if not (u.n or mine) or u.end_ms - done >= o.min_tail_ms:
                    start = max(u.start_ms, u.end_ms - o.window_ms)
                    todo.append((u, self.audio(start, u.end_ms), u.end_ms))
        todo = [(u, voiced(x), end) for u, x, end in todo]
        todo = [t for t in todo if t[1].size >= MIN_WINDOW_MS * SR_MS]  # silence, audio trimmed away, or a blip
        if not todo:
            return
        embs = self.embedder.embed([t[1] for t in todo])
        self.windows += len(todo)
        for (u, _, end), e in zip(todo, embs):
            u.sum = e.copy() if u.sum is None else u.sum + e
            u.n += 1
            u.covered_ms = max(u.covered_ms, end)


def session_speakers(embedder: Embedder, max_speakers: int | None = None) -> SpeakerTurns:
    """A session's speaker labelling with the model's threshold and the client's bound."""
    cluster = ClusterOptions(threshold=float(getattr(embedder, "threshold", ClusterOptions.threshold)))
    if max_speakers is not None:
        cluster = replace(cluster, max_speakers=max_speakers)
    return SpeakerTurns(embedder, cluster)
