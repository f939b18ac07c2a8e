"""The import graph of streamst/ is a DAG of layers (docs/architecture.md), read from the
source with ast (every import, also inside functions and TYPE_CHECKING blocks), and the
wire protocol and `streamst mic` load without the model code (torch, transformers)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "streamst"

# Lowest first. A module may import its own layer and the layers below, never above; the
# longest listed prefix places a module (every module must be placed).
LAYERS: tuple[tuple[str, ...], ...] = (
    # base: no model code of its own
    ("streamst", "streamst.errors", "streamst.text", "streamst.languages", "streamst.modes", "streamst.events",
     "streamst.audio", "streamst.sources", "streamst.hub", "streamst.threads", "streamst.requests", "streamst.tts",
     "streamst.testset", "streamst.hf_load", "streamst.metrics", "streamst.results", "streamst.builders",
     "streamst.profiles"),
    # models and policies
    ("streamst.asr", "streamst.mt", "streamst.e2e", "streamst.policy", "streamst.speak", "streamst.speakers"),
    ("streamst.loading",),
    # the session pipeline and its paths
    ("streamst.pipeline", "streamst.e2e.path", "streamst.track"),
    # what runs sessions: the service, evaluation, training
    ("streamst.server", "streamst.evaluation", "streamst.training", "streamst.speak.serving"),
    ("streamst.bench", "streamst.quality"),
    ("streamst.commands",),
    ("streamst.cli",),
)

# Known violations owned by other work, each with its issue; remove an entry once fixed.
ALLOWED_CYCLES: set[frozenset[str]] = {
}
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the streamst modules it imports (a name inside a module counts as the module)."""

    def owner(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "streamst"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                if base.split(".")[0] == "streamst":
                    found |= {owner(f"{base}.{a.name}") for a in node.names}
        graph[name] = found - {name}
    return graph


def layer(module: str) -> int:
    best, level = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    return level


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while (w := stack.pop()) != v:
                comp.add(w)
            if comp:
                out.append(frozenset(comp | {v}))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


GRAPH = imports(modules())


def test_every_module_has_a_layer() -> None:
    assert [m for m in GRAPH if layer(m) < 0] == [], "place each new module (or its package) in LAYERS"


def test_no_import_circle() -> None:
    assert [sorted(c) for c in cycles(GRAPH) if c not in ALLOWED_CYCLES] == []


def test_nothing_imports_upward() -> None:
    up = sorted((m, t) for m, ts in GRAPH.items() for t in ts if layer(t) > layer(m))
    assert [e for e in up if e not in ALLOWED_UPWARD] == []


def test_no_product_module_imports_the_commands() -> None:
    edge = {"streamst.commands", "streamst.cli"}
    bad = sorted((m, t) for m, ts in GRAPH.items() for t in ts
                 if t.startswith("streamst.commands") and not any(m == e or m.startswith(e + ".") for e in edge))
    assert bad == []


def test_the_checks_see_a_circle_and_an_upward_import() -> None:
    """The checks themselves: a made-up graph with both faults is caught."""
    graph = {"streamst.server.a": {"streamst.commands.x"}, "streamst.commands.x": {"streamst.server.a"}}
    assert cycles(graph) == [frozenset(graph)]
    assert layer("streamst.commands.x") > layer("streamst.server.a") > layer("streamst.pipeline")


def _without(code: str) -> None:
    """Run ``code`` in a fresh interpreter, then fail if torch or transformers got imported."""
    check = "import sys; bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad"
    proc = subprocess.run([sys.executable, "-c", f"{code}\n{check}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_protocol_imports_no_model_code() -> None:
    _without("import streamst.server.protocol, streamst.server.codes, streamst.server.strict\n"
             "from streamst.server.protocol import parse_text\n"
             "assert parse_text('{\"type\":\"start\",\"policy\":{\"name\":\"wait-k\",\"k\":3}}').policy.name == 'wait-k'")


def test_mic_builds_its_start_without_model_code(tmp_path) -> None:
    """`streamst mic --help`, and a run that builds its `start` message (then finds no server)."""
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    _without("import contextlib, io\nfrom streamst.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
             "    main(['mic', '--help'])\n"
             f"assert main(['mic', '--file', {str(wav)!r}, '--url', 'ws://127.0.0.1:9/ws']) == 1")
