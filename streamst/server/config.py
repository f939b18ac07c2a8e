"""The server's configuration (no model code: the endpoints and the session opener read it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ResumeOptions:
    """Bounds of the sessions kept for resume (``streamst.server.resume``)."""

    grace_s: float = 30.0  # a detached session is kept this long (0: resume off)
    max_detached: int = 64  # detached sessions kept at once; past it the oldest ends
    max_bytes: int = 64 * 1024 * 1024  # event logs + pending audio of every detached session
    log_bytes: int = 1024 * 1024  # one session's unacknowledged events

    def __post_init__(self) -> None:
        if self.grace_s < 0 or self.max_detached < 1 or self.max_bytes < self.log_bytes or self.log_bytes < 4096:
            raise ValueError("need resume grace >= 0, max_detached >= 1, 4096 <= log_bytes <= max_bytes")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server is started with (``streamst serve`` maps its flags onto this)."""

    profile: str = "default"
    host: str = "127.0.0.1"
    port: int = 8765  # 0: an ephemeral port (tests)
    funasr_port: int | None = None  # also serve FunASR at the root path of this port (FunASR: 10095)
    device: str = "cpu"
    quantize: str = "none"  # "int8": dynamic int8 Linear layers in every model (CPU)
    threads: int | None = None  # torch threads per model call on CPU (None: $STREAMST_TORCH_THREADS, else 1)
    engine: str | None = None  # "local" | "vllm" (None: the profile's engine; RuntimeOptions.engine)
    engine_url: str | None = None  # the vLLM servers of engine "vllm" (None: the profile's)
    speakers: bool = False  # speaker labels on every session's events (the profile's spk model; issue 23)
    e2e_lean: bool = False  # every session's e2e path with PipelineConfig.e2e_lean's cost levers
    max_sessions: int = 8  # concurrent websocket sessions (both endpoints); more get server_full
    max_frame_bytes: int = 256 * 1024  # one websocket message; 100 ms of 48 kHz f32 is 19 KiB
    max_session_s: float = 4 * 3600.0  # wall clock (or audio) length of one session
    idle_timeout_s: float = 60.0  # no message at all (audio, ping) for this long closes
    token: str | None = None  # bearer token required from clients when set
    allowed_origins: tuple[str, ...] = ()  # empty: any; browsers always send Origin
    ping_interval_s: float = 20.0  # websocket-level pings (non-browser keepalive)
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 2.0
    status_interval_s: float = 1.0  # period of status messages
    max_pending_s: float = 30.0  # audio waiting for inference per session before `overloaded`
    send_queue: int = 1024  # messages queued for a client: at half, reading it pauses; beyond, `slow_consumer`
    send_queue_bytes: int = 4 * 1024 * 1024  # the same bound in bytes
    slow_consumer_s: float = 15.0  # something to send and no send completed for this long: `slow_consumer`
    start_timeout_s: float = 10.0  # from the handshake to `start` (/ws) or the first audio (/funasr)
    step_ms: int = 60  # the chunk grid: audio goes to the pipeline in pieces of this, whatever the load
    write_limit: int = 256 * 1024  # bytes buffered in the transport before sends wait
    send_buffer_bytes: int = 0  # SO_SNDBUF of each client socket (0: the OS default)
    workers: int = 0  # inference threads; 0: max_sessions
    asr_batch: int = 8  # max windows per batched ASR call
    asr_batch_wait_ms: float = 5.0  # how long the batcher waits for more requests
    mt_batch_rows: int = 32  # max rows per batched decoder forward across sessions; 0: no cross-session batching
    # the same for the e2e model's decoder; None: mt_batch_rows on an accelerator, 0 on CPU (at real size
    # on a few cores one batching thread is slower than the sessions' own threads: docs/architecture.md)
    e2e_batch_rows: int | None = None
    mt_batch_wait_ms: float = 2.0  # how long the decoder batcher waits for the next forward of a decode under way
    models_root: Path | None = None  # models folder (default: $STREAMST_MODELS / models/)
    speech: bool = True  # the OpenAI endpoint speaks (session.output_audio.delta); serve --no-speech: text only
    tts: str | None = None  # speech engine "KIND" or "KIND:DIR" (serve --tts); None: the profile's tts role
    resume_grace_s: float = 30.0  # a /ws session whose connection drops is kept this long (0: no resume)
    resume_max_sessions: int = 64  # detached sessions kept at once (the oldest ends first)
    resume_max_bytes: int = 64 * 1024 * 1024  # their event logs and pending audio, in all
    resume_log_bytes: int = 1024 * 1024  # one session's unacknowledged events
    drain_s: float = 30.0  # on SIGTERM: open sessions go on this long, then end with their summary
    funasr_host: str | None = None  # the FunASR port's bind address (None: host)
    funasr_open: bool = False  # the FunASR port takes no token (FunASR clients cannot send one)

    def __post_init__(self) -> None:
        if self.max_sessions < 1 or self.max_frame_bytes < 1024 or self.idle_timeout_s <= 0 or self.max_session_s <= 0:
            raise ValueError("need max_sessions >= 1, max_frame_bytes >= 1024, positive timeouts")
        if self.send_queue < 2 or self.send_queue_bytes < 2 * self.max_frame_bytes or self.slow_consumer_s <= 0 \
                or self.start_timeout_s <= 0:
            raise ValueError("need send_queue >= 2, send_queue_bytes >= 2 * max_frame_bytes, positive timeouts")
        if self.mt_batch_rows < 0 or self.mt_batch_wait_ms < 0 or (self.e2e_batch_rows or 0) < 0:
            raise ValueError("need mt_batch_rows >= 0, e2e_batch_rows >= 0 and mt_batch_wait_ms >= 0")
        if self.step_ms < 10 or self.step_ms % 10:
            raise ValueError(f"step_ms must be a positive multiple of 10, got {self.step_ms}")
        if self.drain_s < 0:
            raise ValueError(f"drain_s must be >= 0, got {self.drain_s}")
        self.resume_options  # noqa: B018 - validates the resume bounds

    @property
    def resume_options(self) -> ResumeOptions:
        return ResumeOptions(self.resume_grace_s, self.resume_max_sessions, self.resume_max_bytes, self.resume_log_bytes)

    @property
    def e2e_rows(self) -> int:
        """Rows per batched e2e decoder forward in effect (0: none)."""
        if self.e2e_batch_rows is not None:
            return self.e2e_batch_rows
        return 0 if self.device.startswith("cpu") else self.mt_batch_rows
