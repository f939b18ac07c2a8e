"""Model hubs as seen from this machine, without importing torch, transformers or FunASR:
where a hub id is in the local caches, whether offline mode is set, whether a hub answers.

* Hugging Face (transformers ``from_pretrained``): cache ``$HF_HUB_CACHE``, else
  ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub`` (``models--ORG--NAME/snapshots/REV``);
  offline when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to 1/true/yes/on;
  endpoint ``$HF_ENDPOINT``.
* ModelScope (FunASR ``AutoModel``'s default hub): cache ``$MODELSCOPE_CACHE``, else
  ``~/.cache/modelscope`` (the SDK's layouts: ``hub/models/ORG/NAME``, ``hub/ORG/NAME``,
  ``models/ORG/NAME``, ``models/ORG--NAME/snapshots/REV``, flat ``ORG/NAME``; dots in NAME
  may be stored as ``___``); offline when ``MODELSCOPE_OFFLINE`` is set; endpoint
  ``$MODELSCOPE_ENDPOINT`` or ``https://$MODELSCOPE_DOMAIN``.

A cached model counts only with its weights (an interrupted download does not).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HF = "huggingface"
MODELSCOPE = "modelscope"
_TRUE = ("1", "true", "yes", "on")
WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.onnx", "*.gguf")


@dataclass(frozen=True)
class Hub:
    name: str  # HF | MODELSCOPE
    title: str  # for messages
    offline_vars: tuple[str, ...]
    default_endpoint: str

    def offline(self) -> bool:
        """The user's offline setting for this hub."""
        return any(os.environ.get(v, "").strip().lower() in _TRUE for v in self.offline_vars)

    def endpoint(self) -> str:
        if self.name == HF:
            return os.environ.get("HF_ENDPOINT") or self.default_endpoint
        if os.environ.get("MODELSCOPE_ENDPOINT"):
            return os.environ["MODELSCOPE_ENDPOINT"]
        domain = os.environ.get("MODELSCOPE_DOMAIN", "").strip()
        return f"https://{domain}" if domain else self.default_endpoint

    def download_hint(self, repo_id: str) -> str:
        if self.name == HF:
            return f"hf download {repo_id}"
        return f"modelscope download --model {repo_id}"

    def cached(self, repo_id: str) -> Path | None:
        """The local directory of ``repo_id`` with its weights, or None."""
        candidates = _hf_candidates(repo_id) if self.name == HF else _ms_candidates(repo_id)
        for path in candidates:
            if path.is_dir() and _has_weights(path):
                return path
        return None


HUBS: dict[str, Hub] = {
    HF: Hub(HF, "Hugging Face", ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"), "https://huggingface.co"),
    MODELSCOPE: Hub(MODELSCOPE, "ModelScope", ("MODELSCOPE_OFFLINE",), "https://www.modelscope.cn"),
}


def _has_weights(path: Path) -> bool:
    return any(next(path.glob(pattern), None) is not None for pattern in WEIGHTS)


def _hf_candidates(repo_id: str) -> list[Path]:
    if os.environ.get("HF_HUB_CACHE"):
        root = Path(os.environ["HF_HUB_CACHE"]).expanduser()
    elif os.environ.get("HF_HOME"):
        root = Path(os.environ["HF_HOME"]).expanduser() / "hub"
    else:
        root = Path.home() / ".cache" / "huggingface" / "hub"
    snapshots = root / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return []
    ref = snapshots.parent / "refs" / "main"
    first = [snapshots / ref.read_text().strip()] if ref.is_file() else []
    return first + sorted(p for p in snapshots.iterdir() if p.is_dir())


def _ms_candidates(repo_id: str) -> list[Path]:
    if "/" not in repo_id:
        return []
    env = os.environ.get("MODELSCOPE_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "modelscope"
    owner, name = repo_id.split("/", 1)
    out: list[Path] = []
    for n in dict.fromkeys((name, name.replace(".", "___"))):
        out += [root / "hub" / "models" / owner / n, root / "hub" / owner / n, root / "models" / owner / n,
                root / owner / n]
    snapshots = root / "models" / f"{owner}--{name}" / "snapshots"
    if snapshots.is_dir():
        out += sorted(p for p in snapshots.iterdir() if p.is_dir())
    return out


def _target(endpoint: str) -> tuple[str, int]:
    """Host and port a connection to ``endpoint`` goes to (the HTTPS proxy if one is set)."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy if proxy and endpoint.startswith("https") else endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.hostname or "", port


def reachable(endpoints: list[str], timeout_s: float = 2.0) -> dict[str, bool]:
    """TCP-connect to each endpoint (or its proxy) in parallel, all within ``timeout_s``
    (name resolution included: a probe still running at the deadline counts as unreachable)."""
    result = {e: False for e in endpoints}

    def probe(endpoint: str) -> None:
        host, port = _target(endpoint)
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result[endpoint] = True
        except (OSError, ValueError):
            pass

    threads = [threading.Thread(target=probe, args=(e,), daemon=True) for e in endpoints]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    return dict(result)
