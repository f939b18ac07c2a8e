"""The one place a session is opened, for every endpoint: the config as the server runs it
(``serve --e2e-lean``), ``mode_unavailable``, the pipeline over the server's shared models and
batchers and its runner on the server's grid (``serve --step-ms``); ``Connection.open_session``.
Endpoints see the server only as a :class:`SessionHost`: they do not import :mod:`~streamst.server.app`."""

from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from typing import Any, Protocol

from streamst.pipeline import PipelineConfig, TranslationSession
from streamst.server.config import ServerConfig
from streamst.server.metrics import ServerMetrics
from streamst.server.protocol import ProtocolError, Start
from streamst.server.worker import PostProcess, SessionRunner, UpdateHook


class SessionHost(Protocol):
    """What a connection uses of the server: its config, metrics, models and batchers."""

    config: ServerConfig
    metrics: ServerMetrics
    models: Any  # streamst.loading.Models, once the server started
    executor: Executor | None
    mt_lm: Any  # the decoders' cross-session batching (None: each session's own model)
    e2e_lm: Any
    e2e_available: bool

    def recognize(self, window: Any, language: str) -> Any: ...

    def speakers(self, wanted: bool | None = None, max_speakers: int | None = None) -> Any: ...


def open_session(host: SessionHost, cfg: PipelineConfig, *, on_update: UpdateHook,
                 postprocess: PostProcess | None = None, speakers: Any = None) -> SessionRunner:
    """Open a session with ``cfg`` on ``host`` (every endpoint): its runner (``runner.session``
    is the pipeline, ``runner.session.cfg`` the config it runs with). ``speakers``: the session's
    :class:`~streamst.speakers.turns.SpeakerTurns` (``host.speakers(...)``), or None."""
    if host.config.e2e_lean:
        cfg = cfg.e2e_lean()
    if "e2e" in cfg.paths and not host.e2e_available:
        raise ProtocolError("mode_unavailable", f"mode {cfg.mode} needs an end-to-end model; profile "
                            f"'{host.models.profile.name}' has none (use mode simul, cascade or both)")
    if "e2e" in cfg.paths and not host.models.e2e_translates:
        raise ProtocolError("mode_unavailable", host.models.e2e_transcribes_only())
    if problem := host.models.profile.source_problem(cfg.src_lang, cfg.paths):
        raise ProtocolError("bad_language", problem)  # a language the profile's recogniser / e2e model does not hear
    assert host.executor is not None, "the server is not started"
    pipeline = TranslationSession(host.models, cfg, recognize=host.recognize, mt_lm=host.mt_lm, e2e_lm=host.e2e_lm,
                                  speakers=speakers)
    return SessionRunner(pipeline, host.executor, max_pending_ms=int(host.config.max_pending_s * 1000),
                         step_ms=host.config.step_ms, on_update=on_update, postprocess=postprocess)


def native_config(start: Start) -> PipelineConfig:
    """The pipeline config of a native ``start`` message (valid: :func:`~streamst.server.protocol.parse_start`
    checked every field and the policy options against each pair)."""
    return PipelineConfig.create(start.src_lang, start.tgt_langs, mode=start.mode,  # type: ignore[arg-type]
                                 policy=start.policy.name, chunk_ms=start.chunk_ms, **dict(start.policy.overrides))


def resolved_config(start: Start, cfg: PipelineConfig) -> dict[str, Any]:
    """The configuration a session actually runs with (echoed in ``ready``)."""
    policies = {t: dataclasses.asdict(cfg.policy_for(t)) for t in cfg.tgt_langs}
    out: dict[str, Any] = {
        "sample_rate": start.sample_rate, "encoding": start.encoding, "src_lang": cfg.src_lang,
        "tgt_langs": list(cfg.tgt_langs), "mode": cfg.mode, "chunk_ms": cfg.asr.chunk_ms,
        "policy": policies, "speak": list(start.speak),
    }
    if "e2e" in cfg.paths:  # the e2e path's own policy (units: chunks) and encoding (serve --e2e-lean)
        out["e2e"] = {"final_encoding": cfg.e2e.final_encoding, "context_frames": cfg.e2e.context_frames,
                      "policy": {t: dataclasses.asdict(cfg.e2e_policy_for(t)) for t in cfg.tgt_langs}}
    return out
