"""SimulEval's ``instances.log``: one JSON object per line, one line per utterance.

Fields written by SimulEval 1.1.4 for speech-to-text (``Instance.summarize``):

* ``index`` (int): position of the utterance in the corpus;
* ``prediction`` (str): the hypothesis (units joined by spaces for ``word``, no spaces
  for ``char``);
* ``delays`` (list of float): ms of source audio read when each unit was emitted;
* ``elapsed`` (list of float): delays plus wall-clock ms spent (computation-aware);
* ``prediction_length`` (int): number of emitted units (= ``len(delays)``);
* ``reference`` (str or null); ``source`` (audio description, free form);
* ``source_length`` (float): source duration in ms.

``simuleval --score-only --output DIR`` reads ``DIR/instances.log`` (and ``DIR/config.yaml``
for the source/target types unless given on its command line); :func:`write_instances`
writes both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamst.errors import UserError

REQUIRED_FIELDS = ("index", "prediction", "delays", "source_length", "reference")


@dataclass(frozen=True)
class InstanceRecord:
    """One line of ``instances.log``."""

    index: int
    prediction: str
    delays: Sequence[float]
    source_length: float  # ms
    reference: str | None
    elapsed: Sequence[float] = ()
    source: Any = None
    prediction_length: int | None = None  # default: len(delays)
    extra: dict[str, Any] = field(default_factory=dict)  # other fields, kept on rewrite

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in SimulEval's order."""
        out = {
            "index": self.index,
            "prediction": self.prediction,
            "delays": list(self.delays),
            "elapsed": list(self.elapsed),
            "prediction_length": (
                len(self.delays) if self.prediction_length is None else self.prediction_length
            ),
            "reference": self.reference,
            "source": self.source,
            "source_length": self.source_length,
        }
        out.update(self.extra)
        return out


def write_instances(
    out_dir: str | Path,
    records: Iterable[InstanceRecord],
    *,
    source_type: str = "speech",
    target_type: str = "text",
) -> Path:
    """Write ``out_dir/instances.log`` and ``out_dir/config.yaml``; return the log's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "instances.log"
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
    (out / "config.yaml").write_text(
        f"source_type: {source_type}\ntarget_type: {target_type}\n", encoding="utf-8"
    )
    return path


def read_instances(path: str | Path, *, need_elapsed: bool = False) -> list[InstanceRecord]:
    """Parse an ``instances.log``; problems raise :class:`UserError` naming the line.

    Blank lines are ignored. ``need_elapsed``: every line must carry ``elapsed`` with one
    entry per delay (computation-aware scoring).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no such file: {p}")
    records: list[InstanceRecord] = []
    seen: dict[int, int] = {}
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            rec = _parse_line(line, f"{p}:{lineno}", need_elapsed)
            if rec.index in seen:
                raise UserError(f"{p}:{lineno}: index {rec.index} already on line {seen[rec.index]}")
            seen[rec.index] = lineno
            records.append(rec)
    if not records:
        raise UserError(f"{p}: no instances")
    return records


def _parse_line(line: str, where: str, need_elapsed: bool) -> InstanceRecord:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    if need_elapsed and "elapsed" not in obj:
        missing.append("elapsed")
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}")

    index = obj["index"]
    if not isinstance(index, int) or isinstance(index, bool):
        raise UserError(f"{where}: 'index' must be an integer")
    if not isinstance(obj["prediction"], str):
        raise UserError(f"{where}: 'prediction' must be a string")
    if obj["reference"] is not None and not isinstance(obj["reference"], str):
        raise UserError(f"{where}: 'reference' must be a string or null")
    delays = _numbers(obj["delays"], "delays", where)
    elapsed = _numbers(obj.get("elapsed", []), "elapsed", where)
    if need_elapsed and len(elapsed) != len(delays):
        raise UserError(f"{where}: {len(delays)} delays but {len(elapsed)} elapsed")
    src_len = obj["source_length"]
    if not _is_number(src_len) or src_len <= 0:
        raise UserError(f"{where}: 'source_length' must be a positive number of ms")
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    return InstanceRecord(
        index=index, prediction=obj["prediction"], delays=delays, source_length=src_len,
        reference=obj["reference"], elapsed=elapsed, source=obj.get("source"),
        prediction_length=obj.get("prediction_length"), extra=extra,
    )


_KNOWN = frozenset(REQUIRED_FIELDS) | {"elapsed", "source", "prediction_length"}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _numbers(value: Any, name: str, where: str) -> list[float]:
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        raise UserError(f"{where}: '{name}' must be a list of numbers")
    return value


def simuleval_scores(
    records: Sequence[InstanceRecord],
    *,
    latency_unit: str = "word",
    computation_aware: bool = False,
    tokenize: str = "13a",
    use_ref_len: bool = True,
) -> dict[str, float | None]:
    """What ``simuleval --score-only`` computes from these records, unrounded.

    Keys in SimulEval's order: ``BLEU``, then each latency metric followed by its ``_CA``
    variant when ``computation_aware``. Unlike SimulEval 1.1.4, the plain columns stay
    computation-unaware with ``computation_aware`` (SimulEval passes its flag to both).
    ``BLEU`` is ``None`` when a reference is null (SimulEval logs an error and prints 0).
    ``use_ref_len=False`` is SimulEval's ``--no-use-ref-len`` (|Y| = hypothesis length).
    """
    from streamst.metrics.latency import LATENCY_METRICS, LatencyInput, corpus_latency, reference_length
    from streamst.metrics.quality import bleu

    refs = [r.reference for r in records]
    out: dict[str, float | None] = {
        "BLEU": (
            bleu([r.prediction for r in records], [str(x) for x in refs], tokenize=tokenize)
            if all(x is not None for x in refs) else None
        )
    }
    items = [
        LatencyInput(
            delays=r.delays,
            source_length=r.source_length,
            reference_length=(
                reference_length(r.reference, latency_unit)  # type: ignore[arg-type]
                if use_ref_len and r.reference is not None else None
            ),
            elapsed=r.elapsed,
        )
        for r in records
    ]
    plain = corpus_latency(items)
    ca = corpus_latency(items, computation_aware=True) if computation_aware else {}
    for name in LATENCY_METRICS:
        out[name] = plain[name]
        if computation_aware:
            out[name + "_CA"] = ca[name + "_CA"]
    return out
