"""Server metrics for ``GET /metrics``, exposed with ``prometheus_client`` (text format 0.0.4).

One :class:`~prometheus_client.CollectorRegistry` per :class:`ServerMetrics` (per server),
never the process-wide default registry, so several servers in one process (tests) keep
their own figures. ``prometheus_client`` metrics are thread-safe: the event loop and the
ASR batcher thread update them directly. Names are listed in docs/protocol.md; counters
are declared without ``_total`` (the library appends it; it also exports the standard
``_created`` series). Values are printed as floats (``2.0``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS_MS = (250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 10000.0, 30000.0)
RETENTION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
ENGINE_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Live(Collector):
    """Gauges read at scrape time from the server (sessions open, largest lag)."""

    def __init__(self) -> None:
        self.gauges: Callable[[], dict[str, float]] = lambda: {"sessions_active": 0, "lag_ms_max": 0}

    def collect(self):
        live = self.gauges()
        yield GaugeMetricFamily("streamst_sessions_active", "Sessions open now.", value=live["sessions_active"])
        yield GaugeMetricFamily("streamst_lag_ms", "Largest lag (audio received - audio processed) over open sessions.",
                                value=live["lag_ms_max"])


class ServerMetrics:
    """Everything ``/metrics`` reports; ``render`` asks the server for the live gauges."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self._lock = threading.Lock()  # the two totals behind the real-time factor gauge
        self._audio_total = self._compute_total = 0.0
        self.registry = reg = CollectorRegistry(auto_describe=True)
        info = Gauge("streamst_info", "Server build information.", ["profile"], registry=reg)
        info.labels(profile=profile).set(1)
        self._live = _Live()
        reg.register(self._live)
        self.sessions_total = Counter("streamst_sessions", "Sessions accepted since start, by endpoint.",
                                      ["endpoint"], registry=reg)
        self.audio_s = Counter("streamst_audio_seconds", "Source audio processed.", registry=reg)
        self.compute_s = Counter("streamst_compute_seconds", "Wall-clock time spent in pipeline updates.", registry=reg)
        Gauge("streamst_real_time_factor", "compute seconds / audio seconds since start (summed over sessions).",
              registry=reg).set_function(self._rtf)
        self.coalesced_s = Counter("streamst_coalesced_audio_seconds",
                                   "Audio that arrived during a pipeline step and was processed in a later one.",
                                   registry=reg)
        self.updates = Counter("streamst_pipeline_updates", "Pipeline updates (worker steps) run.", registry=reg)
        self.errors = Counter("streamst_errors", "Errors sent to clients, by error code.", ["code"], registry=reg)
        self.utterances = Counter("streamst_utterances", "Utterances translated, by streaming path (e2e, simul).",
                                  ["path"], registry=reg)
        self.latency = Histogram("streamst_utterance_latency_ms",
                                 "Per-utterance simultaneous latency (AL, LAAL, AL_CA, LAAL_CA) in ms.",
                                 ["metric", "language", "path"], buckets=LATENCY_BUCKETS_MS, registry=reg)
        self.retention = Histogram("streamst_retention_proxy", "Per-utterance chrF(simul, cascade)/100 (mode both).",
                                   buckets=RETENTION_BUCKETS, registry=reg)
        self.batch = Histogram("streamst_asr_batch_size", "Windows per batched ASR call.",
                               buckets=tuple(float(b) for b in BATCH_BUCKETS), registry=reg)
        self.engine_s = Histogram("streamst_engine_request_seconds",
                                  "Requests to the decoder engine (vLLM, an MT server), by decoder (mt, e2e).",
                                  ["decoder"], buckets=ENGINE_BUCKETS_S, registry=reg)
        self.sessions_total.labels(endpoint="ws")  # present (at 0) before the first session
        from streamst.speak.serving import SpeechMetrics

        self.speech = SpeechMetrics(reg)  # spoken output (streamst/speak)

    def _rtf(self) -> float:
        with self._lock:
            return self._compute_total / self._audio_total if self._audio_total else 0.0

    def session_started(self, endpoint: str) -> None:
        self.sessions_total.labels(endpoint=endpoint).inc()

    def error(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    def error_count(self, code: str) -> float:
        """Errors sent so far with ``code`` (tests, benchmarks)."""
        value = self.registry.get_sample_value("streamst_errors_total", {"code": code})
        return value or 0.0

    def update(self, audio_samples: int, compute_ms: float) -> None:
        self.audio_s.inc(audio_samples / 16000)
        self.compute_s.inc(compute_ms / 1000)
        self.updates.inc()
        with self._lock:
            self._audio_total += audio_samples / 16000
            self._compute_total += compute_ms / 1000

    def coalesced(self, samples: int) -> None:
        self.coalesced_s.inc(samples / 16000)

    def utterance(self, language: str, metrics: dict[str, float], retention: float | None,
                  path: str = "simul") -> None:
        self.utterances.labels(path=path).inc()
        for name, value in metrics.items():
            self.latency.labels(metric=name, language=language, path=path).observe(float(value))
        if retention is not None:
            self.retention.observe(float(retention))

    def engine_request(self, decoder: str, seconds: float) -> None:
        self.engine_s.labels(decoder=decoder).observe(seconds)

    def asr_batch(self, size: int) -> None:
        self.batch.observe(float(size))

    def render(self, gauges: Callable[[], dict[str, float]]) -> str:
        """Prometheus text; ``gauges`` gives the live values (active sessions, lag)."""
        self._live.gauges = gauges
        return generate_latest(self.registry).decode("utf-8")
