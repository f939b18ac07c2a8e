"""Server metrics in the Prometheus text format (``GET /metrics``), no dependency.

Counters and histograms are updated from the event loop and from the ASR batcher thread,
so every update and the rendering take one lock. Names are listed in docs/protocol.md.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

LATENCY_BUCKETS_MS = (250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 10000.0, 30000.0)
RETENTION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, v: float) -> None:
        self.n += 1
        self.total += v
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1

    def render(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        lab = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{lab} {self.total:.6g}", f"{name}_count{lab} {self.n}"]
        return out


class ServerMetrics:
    """Everything ``/metrics`` reports except the live gauges, which ``render`` asks for."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self._lock = threading.Lock()
        self.sessions_total: Counter[str] = Counter()  # by endpoint
        self.errors: Counter[str] = Counter()  # by error code
        self.audio_s = 0.0
        self.compute_s = 0.0
        self.coalesced_s = 0.0
        self.updates = 0
        self.latency: dict[tuple[str, str, str], _Histogram] = {}  # (metric, language, path)
        self.utterances: Counter[str] = Counter()  # closed utterances by streaming path (e2e, simul)
        self.retention = _Histogram(RETENTION_BUCKETS)
        self.batch = _Histogram(tuple(float(b) for b in BATCH_BUCKETS))

    def session_started(self, endpoint: str) -> None:
        with self._lock:
            self.sessions_total[endpoint] += 1

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def update(self, audio_samples: int, compute_ms: float) -> None:
        with self._lock:
            self.audio_s += audio_samples / 16000
            self.compute_s += compute_ms / 1000
            self.updates += 1

    def coalesced(self, samples: int) -> None:
        with self._lock:
            self.coalesced_s += samples / 16000

    def utterance(self, language: str, metrics: dict[str, float], retention: float | None,
                  path: str = "simul") -> None:
        with self._lock:
            self.utterances[path] += 1
            for name, value in metrics.items():
                key = (name, language, path)
                if key not in self.latency:
                    self.latency[key] = _Histogram(LATENCY_BUCKETS_MS)
                self.latency[key].observe(float(value))
            if retention is not None:
                self.retention.observe(float(retention))

    def asr_batch(self, size: int) -> None:
        with self._lock:
            self.batch.observe(float(size))

    def render(self, gauges: Callable[[], dict[str, float]]) -> str:
        """Prometheus text; ``gauges`` gives the live values (active sessions, lag)."""
        live = gauges()
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[str]) -> None:
            lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples])

        with self._lock:
            metric("streamst_info", "gauge", "Server build information.", [f'streamst_info{{profile="{self.profile}"}} 1'])
            metric("streamst_sessions_active", "gauge", "Sessions open now.",
                   [f"streamst_sessions_active {live['sessions_active']:g}"])
            metric("streamst_sessions_total", "counter", "Sessions accepted since start, by endpoint.",
                   [f'streamst_sessions_total{{endpoint="{e}"}} {n}' for e, n in sorted(self.sessions_total.items())]
                   or ['streamst_sessions_total{endpoint="ws"} 0'])
            metric("streamst_audio_seconds_total", "counter", "Source audio processed.",
                   [f"streamst_audio_seconds_total {self.audio_s:.6g}"])
            metric("streamst_compute_seconds_total", "counter", "Wall-clock time spent in pipeline updates.",
                   [f"streamst_compute_seconds_total {self.compute_s:.6g}"])
            rtf = self.compute_s / self.audio_s if self.audio_s else 0.0
            metric("streamst_real_time_factor", "gauge", "compute seconds / audio seconds since start (summed over sessions).",
                   [f"streamst_real_time_factor {rtf:.6g}"])
            metric("streamst_lag_ms", "gauge", "Largest lag (audio received - audio processed) over open sessions.",
                   [f"streamst_lag_ms {live['lag_ms_max']:g}"])
            metric("streamst_coalesced_audio_seconds_total", "counter",
                   "Audio that arrived during an update and was merged into the next one.",
                   [f"streamst_coalesced_audio_seconds_total {self.coalesced_s:.6g}"])
            metric("streamst_pipeline_updates_total", "counter", "Pipeline updates run.",
                   [f"streamst_pipeline_updates_total {self.updates}"])
            metric("streamst_errors_total", "counter", "Errors sent to clients, by error code.",
                   [f'streamst_errors_total{{code="{c}"}} {n}' for c, n in sorted(self.errors.items())])
            metric("streamst_utterances_total", "counter", "Utterances translated, by streaming path (e2e, simul).",
                   [f'streamst_utterances_total{{path="{p}"}} {n}' for p, n in sorted(self.utterances.items())])
            hist: list[str] = []
            for (name, lang, path), h in sorted(self.latency.items()):
                hist += h.render("streamst_utterance_latency_ms", f'metric="{name}",language="{lang}",path="{path}"')
            metric("streamst_utterance_latency_ms", "histogram",
                   "Per-utterance simultaneous latency (AL, LAAL, AL_CA, LAAL_CA) in ms.", hist)
            metric("streamst_retention_proxy", "histogram",
                   "Per-utterance chrF(simul, cascade)/100 (mode both).", self.retention.render("streamst_retention_proxy", ""))
            metric("streamst_asr_batch_size", "histogram", "Windows per batched ASR call.",
                   self.batch.render("streamst_asr_batch_size", ""))
        return "\n".join(lines) + "\n"
