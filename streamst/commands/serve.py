"""``streamst serve``: the websocket service (docs/protocol.md)."""

from __future__ import annotations

import argparse
import asyncio
import os

from streamst.commands._common import add_e2e_lean_arg, add_engine_args, add_threads_arg
from streamst.commands._speakers import add_speaker_args
from streamst.server.app import ServerConfig


def register(sub: argparse._SubParsersAction) -> None:
    d = ServerConfig()
    p = sub.add_parser("serve", help="run the websocket translation service")
    p.add_argument("--profile", default="default", help="model profile: a name (streamst models list) or a JSON file")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port, help="0: any free port")
    p.add_argument("--funasr-port", type=int, default=None, metavar="N",
                   help="also serve the FunASR protocol at the root path of port N (FunASR's default: 10095)")
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N")
    p.add_argument("--quantize", default=d.quantize, choices=("none", "int8"),
                   help="int8: dynamic int8 Linear layers in the ASR, MT and e2e models (CPU; about 2x faster at real sizes)")
    add_threads_arg(p)  # ServerConfig.threads
    add_engine_args(p)  # ServerConfig.engine, engine_url
    add_e2e_lean_arg(p)
    add_speaker_args(p, server=True)  # ServerConfig.speakers
    p.add_argument("--max-sessions", type=int, default=d.max_sessions, help="concurrent sessions (more: server_full)")
    p.add_argument("--max-frame-bytes", type=int, default=d.max_frame_bytes, help="largest websocket message")
    p.add_argument("--max-session-s", type=float, default=d.max_session_s, help="longest session (wall clock or audio)")
    p.add_argument("--idle-timeout-s", type=float, default=d.idle_timeout_s, help="close after this long without a message")
    p.add_argument("--token", default=None, help="require this bearer token (default: $STREAMST_TOKEN if set)")
    p.add_argument("--allowed-origins", nargs="*", default=[], metavar="ORIGIN",
                   help="browser origins allowed to connect (default: any)")
    p.add_argument("--workers", type=int, default=d.workers, help="inference threads (0: max-sessions)")
    p.add_argument("--mt-batch-rows", type=int, default=d.mt_batch_rows,
                   help="rows per decoder forward batched across sessions (0: no cross-session batching)")
    p.add_argument("--e2e-batch-rows", type=int, default=d.e2e_batch_rows,
                   help="the same for the e2e decoder (default: as --mt-batch-rows on a GPU, 0 on CPU)")
    p.add_argument("--no-speech", action="store_true",
                   help="the OpenAI endpoint sends text only (no session.output_audio.delta); /ws clients may still ask with start.speak")
    p.add_argument("--tts", default=None, metavar="KIND[:DIR]",
                   help="speech engine of spoken output: espeak-ng, or kokoro:DIR (default: the profile's tts, else espeak-ng)")
    add_resume_args(p, d)
    p.set_defaults(func=_run)


def add_resume_args(p: argparse.ArgumentParser, d: ServerConfig) -> None:
    """Resume, drain and the FunASR port's access (docs/protocol.md, "Resume" and "Drain")."""
    p.add_argument("--resume-grace-s", type=float, default=d.resume_grace_s,
                   help="keep a /ws session whose connection drops this long for the client to resume (0: off)")
    p.add_argument("--resume-max-sessions", type=int, default=d.resume_max_sessions,
                   help="detached sessions kept at once (the oldest ends first)")
    p.add_argument("--resume-max-mb", type=float, default=d.resume_max_bytes / 2**20,
                   help="memory of all detached sessions (event logs, pending audio)")
    p.add_argument("--drain-s", type=float, default=d.drain_s,
                   help="on SIGTERM: /healthz answers 503, new sessions are refused, open ones go on this "
                        "long, then end with their summary")
    p.add_argument("--funasr-host", default=None, metavar="ADDR",
                   help="bind address of --funasr-port (default: --host)")
    p.add_argument("--funasr-open", action="store_true",
                   help="the FunASR port takes no token (FunASR clients cannot send one); bind it to a "
                        "trusted address with --funasr-host")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        profile=args.profile, host=args.host, port=args.port, funasr_port=args.funasr_port, device=args.device,
        quantize=args.quantize, threads=args.threads, e2e_lean=args.e2e_lean,
        max_sessions=args.max_sessions, max_frame_bytes=args.max_frame_bytes, max_session_s=args.max_session_s,
        idle_timeout_s=args.idle_timeout_s, token=args.token or os.environ.get("STREAMST_TOKEN") or None,
        allowed_origins=tuple(args.allowed_origins), workers=args.workers, mt_batch_rows=args.mt_batch_rows,
        e2e_batch_rows=args.e2e_batch_rows, engine=args.engine, engine_url=args.engine_url,
        speech=not args.no_speech, tts=args.tts, speakers=args.speakers, resume_grace_s=args.resume_grace_s,
        resume_max_sessions=args.resume_max_sessions, resume_max_bytes=int(args.resume_max_mb * 2**20),
        drain_s=args.drain_s, funasr_host=args.funasr_host, funasr_open=args.funasr_open,
    )


def _run(args: argparse.Namespace) -> int:
    from streamst.server.app import Server

    try:
        cfg = config_from_args(args)
    except ValueError as e:
        from streamst.errors import UserError

        raise UserError(str(e)) from e
    asyncio.run(Server(cfg).serve_forever())
    return 0
