"""``streamst engine start``: the profile's decoders on vLLM servers (``--engine vllm``).

Writes vLLM-ready decoder directories (the MT model as it is; the e2e model's Qwen3 decoder
as a plain Qwen3 checkpoint), starts one vLLM OpenAI-compatible server per decoder (ports
``--port`` and ``--port + 1``), waits until they are healthy, prints the ``--engine-url`` to
give ``serve`` / ``translate`` / ``eval`` / ``bench``, and runs until interrupted (then stops
them). Missing or failing vLLM: one line and exit code 2. A server that dies later is one line
on stderr; the others keep serving (their sessions go on); when none is left, exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engine", help="decoder engines (vLLM) for --engine vllm")
    esub = p.add_subparsers(dest="engine_command", required=True, metavar="ACTION")
    s = esub.add_parser("start", help="start the profile's decoders on vLLM and print the engine URL")
    s.add_argument("--profile", default="default", help="model profile: a name or a JSON file")
    s.add_argument("--port", type=int, default=8100, help="the MT decoder's port; the e2e decoder's is PORT + 1")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    s.add_argument("--dtype", default="auto", help="vLLM --dtype (auto, float32, bfloat16, float16)")
    s.add_argument("--decoders", default="mt,e2e", help="which decoders to serve (comma-separated: mt, e2e)")
    s.add_argument("--vllm-python", default=None,
                   help="the python that has vLLM (default: $STREAMST_VLLM_PYTHON, else this one)")
    s.add_argument("--out", type=Path, default=None,
                   help="where the decoder directories and logs go (default: MODELS/engine/PROFILE)")
    s.add_argument("--max-model-len", type=int, default=4096)
    s.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for vLLM to become healthy")
    s.add_argument("vllm_args", nargs="*", help="extra vLLM server arguments (after --)")
    s.set_defaults(func=_start)


def _start(args: argparse.Namespace) -> int:
    from streamst.errors import UserError
    from streamst.mt import vllm_engine as ve
    from streamst.profiles import load_profile, models_dir

    python = ve.vllm_python(args.vllm_python)
    version = ve.check_vllm(python)
    profile = load_profile(args.profile)
    roles = [r.strip() for r in args.decoders.split(",") if r.strip()]
    for r in roles:
        if r not in ve.SERVED:
            raise UserError(f"--decoders: unknown decoder {r!r} (known: {', '.join(ve.SERVED)})")
    out = args.out or models_dir() / "engine" / profile.name
    out.mkdir(parents=True, exist_ok=True)
    dirs: dict[str, Path] = {}
    for role in roles:
        spec = profile.spec(role)
        if spec is None:
            raise UserError(f"profile '{profile.name}' has no {role} model to serve")
        if (role, spec.kind) not in (("mt", "qwen"), ("e2e", "fun-asr-nano")):
            raise UserError(f"profile '{profile.name}': {role} kind {spec.kind!r} has no vLLM route")
        where = profile.require(spec)
        if role == "mt":
            dirs[role] = Path(where)
        else:
            target = out / "e2e-decoder"
            if not (target / "config.json").is_file():
                print(f"engine: writing the e2e decoder as a Qwen3 checkpoint to {target}", file=sys.stderr)
                ve.export_e2e_decoder(where, target)
            dirs[role] = target
    procs: list[tuple[str, subprocess.Popen, str, Path]] = []

    def stop(*_a) -> None:
        for _, proc, _, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _, _ in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *_a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for i, role in enumerate(roles):
            port = args.port + i
            log = out / f"vllm-{role}.log"
            cmd = ve.server_command(python, dirs[role], ve.SERVED[role], port=port, host=args.host, dtype=args.dtype,
                                    max_model_len=args.max_model_len, extra=args.vllm_args)
            with open(log, "wb") as fh:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=ve.server_env(args.device))
            procs.append((role, proc, f"http://{args.host}:{port}/v1", log))
        for role, proc, url, log in procs:
            ve.wait_healthy(url.removesuffix("/v1"), proc, log, timeout_s=args.timeout)
            print(f"engine: {role} decoder {ve.SERVED[role]} on {url} (vLLM {version}, pid {proc.pid}, log {log})",
                  flush=True)
        print(f"engine url: {','.join(url for _, _, url, _ in procs)}", flush=True)
        running = list(procs)
        while running:  # until interrupted, or until every server exits (the others keep serving)
            for item in list(running):
                role, proc, url, log = item
                try:
                    code = proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    continue
                running.remove(item)
                print(f"engine: the {role} decoder's vLLM exited with code {code}: {ve.last_error(log)}",
                      file=sys.stderr, flush=True)
        raise UserError("every vLLM server exited")
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
