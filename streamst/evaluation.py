"""Report writer for ``streamst eval``: metrics per setting, tables, curve, instances.log.

The pipeline runs each setting (a policy/latency configuration) over the test set and
hands :func:`write_report` one :class:`SettingResult` per setting. Scores are computed per
setting *and translation direction* (units and BLEU tokenizer depend on the target
language). Written to ``out_dir``:

* ``report.json`` -- every figure at full precision, plus the curve's points;
* ``report.md`` -- what was run (profile, models, commit, machine), how to read the figures
  (negative AL, retention above 1), a summary table of every path and setting, then a table
  per setting (rows: directions) with BLEU, chrF, AL, LAAL, AL_CA, retention, flicker;
* ``curve.png`` -- quality retention against latency (LAAL, seconds): one line per path
  (e2e, simul, cascade...) and direction through its settings, each point labelled, with a
  legend;
* ``<setting>/<src>-<tgt>/instances.log`` (+ ``config.yaml``) -- SimulEval's format, so
  ``streamst score`` or ``simuleval --score-only --output DIR`` reproduce the latency.

Latency reference lengths are counted as SimulEval counts them
(:func:`streamst.metrics.latency.reference_length`), so the report agrees with both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from streamst.metrics.instances import InstanceRecord, write_instances
from streamst.metrics.latency import (
    LATENCY_METRICS,
    LatencyInput,
    corpus_latency,
    flicker,
    reference_length,
    retractions,
)
from streamst.metrics.quality import quality_report
from streamst.languages import unit_kind
from streamst.text import is_char_lang, split_units


@dataclass(frozen=True)
class UtteranceResult:
    """What one setting produced for one utterance.

    ``delays``: ms of source audio received when each committed unit was emitted (one per
    unit of ``prediction``). ``elapsed``: SimulEval's elapsed, i.e. delay plus wall-clock
    processing so far, per unit (``computation_aware_delays(delays_ms, elapsed_ms)`` of the
    translation events); empty when not measured. ``displays``/``committed``: the shown
    text (committed + tentative) and the committed text after each update, for flicker and
    retractions; empty when not recorded.
    """

    id: str
    src_lang: str
    tgt_lang: str
    prediction: str
    delays: Sequence[float]
    elapsed: Sequence[float]
    source_length: float  # ms
    reference: str | None
    cascade: str | None  # offline cascade translation of the same audio
    displays: Sequence[str] = ()
    committed: Sequence[str] = ()
    source: str | None = None  # audio path, copied into instances.log


@dataclass(frozen=True)
class SettingResult:
    """All utterances of one setting of one path; ``params`` (policy k, chunk size...) go to
    the report. Settings of the same ``path`` are joined by one line on the curve."""

    name: str
    utterances: Sequence[UtteranceResult]
    params: Mapping[str, Any] = field(default_factory=dict)
    path: str = "simul"  # e2e | simul | cascade | any other translation path


PATH_ORDER = ("e2e", "simul", "cascade")  # report and legend order; other paths after these


TABLE_COLUMNS = ("BLEU", "chrF", "AL", "LAAL", "AL_CA", "retention", "flicker")


def score_direction(utts: Sequence[UtteranceResult], log_dir: Path) -> dict[str, Any]:
    """All figures for one setting and direction; writes its instances.log to ``log_dir``."""
    tgt = utts[0].tgt_lang
    unit = "char" if is_char_lang(tgt) else "word"
    # Thai, Lao, Khmer, Burmese: words found by the segmenter (streamst.text), not spaces
    segmented = unit_kind(tgt) == "seg"
    items = [
        LatencyInput(
            delays=u.delays,
            source_length=u.source_length,
            reference_length=(len(split_units(u.reference, tgt)) if segmented else reference_length(u.reference, unit))
            if u.reference is not None else None,
            elapsed=u.elapsed,
        )
        for u in utts
    ]
    out: dict[str, Any] = {"n": len(utts), "latency_unit": "segmented word" if segmented else unit}
    out.update(corpus_latency(items))
    have_ca = all(len(u.elapsed) == len(u.delays) for u in utts)
    if have_ca:
        out.update(corpus_latency(items, computation_aware=True))
    else:
        out.update({m + "_CA": None for m in LATENCY_METRICS})
    out["skipped_without_output"] = sum(1 for u in utts if len(u.delays) == 0)

    cascade = [u.cascade for u in utts]
    q = quality_report(
        [u.prediction for u in utts],
        references=[u.reference for u in utts],
        cascade=[str(c) for c in cascade] if all(c is not None for c in cascade) else None,
        tgt_lang=tgt,
    )
    out.update({
        "BLEU": q.bleu, "chrF": q.chrf, "cascade_BLEU": q.cascade_bleu,
        "cascade_chrF": q.cascade_chrf, "retention": q.retention_chrf,
        "retention_BLEU": q.retention_bleu, "agreement_chrF": q.agreement_chrf,
        "quality_basis": q.basis, "quality_note": q.note, "sacrebleu_tokenizer": q.tokenize,
    })

    flick = sum(flicker(u.displays, tgt) for u in utts)
    shown = sum(len(split_units(u.displays[-1], tgt)) for u in utts if u.displays)
    out["flicker"] = flick
    out["flicker_rate"] = flick / shown if shown else 0.0
    out["retractions"] = sum(retractions(u.committed, tgt) for u in utts)

    log = write_instances(log_dir, [
        InstanceRecord(index=i, prediction=u.prediction, delays=list(u.delays),
                       source_length=u.source_length, reference=u.reference,
                       elapsed=list(u.elapsed), source=u.source, extra={"id": u.id})
        for i, u in enumerate(utts)
    ])
    ca_flag = " --computation-aware" if have_ca else ""
    out["instances_log"] = log.as_posix()
    out["rescore"] = {
        "streamst": f"streamst score {log} --latency-unit {unit} --sacrebleu-tokenizer "
                    f"{q.tokenize}{ca_flag}",
        "simuleval": f"simuleval --score-only --output {log_dir} --eval-latency-unit {unit} "
                     f"--sacrebleu-tokenizer {q.tokenize} --latency-metrics "
                     f"{' '.join(LATENCY_METRICS)}",
    }
    return out


def write_report(
    out_dir: str | Path, settings: Sequence[SettingResult], *, title: str = "streamst evaluation",
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every setting, write report.json, report.md, curve.png and the logs.

    ``meta``: what was run (profile, models, commit, machine, manifest...), recorded as is.
    Returns the report (the content of report.json).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in settings]
    if len({_safe(n) for n in names}) != len(names):
        raise ValueError(f"setting names must be unique as directory names: {names}")

    report: dict[str, Any] = {"title": title, "meta": dict(meta or {}), "settings": []}
    points = []
    rank = {p: i for i, p in enumerate(PATH_ORDER)}
    settings = sorted(settings, key=lambda s: rank.get(s.path, len(rank)))  # stable within a path
    for s in settings:
        if not s.utterances:
            raise ValueError(f"setting {s.name!r} has no utterances")
        by_dir: dict[str, list[UtteranceResult]] = {}
        for u in s.utterances:
            by_dir.setdefault(f"{u.src_lang}-{u.tgt_lang}", []).append(u)
        directions = {
            d: score_direction(utts, out / _safe(s.name) / d) for d, utts in sorted(by_dir.items())
        }
        report["settings"].append({"name": s.name, "path": s.path, "params": dict(s.params),
                                   "directions": directions})
        for d, r in directions.items():
            if r["LAAL"] is not None and r["retention"] is not None:
                points.append({"setting": s.name, "path": s.path, "direction": d, "label": f"{s.name} ({d})",
                               "AL_s": r["AL"] / 1000.0, "LAAL_s": r["LAAL"] / 1000.0,
                               "retention": r["retention"], "quality_basis": r["quality_basis"]})

    report["curve"] = {
        "path": "curve.png",
        "x": "LAAL (s)",
        "y": "quality retention: chrF(path) / chrF(offline cascade)",
        "points": points,
    }
    report["curve"]["lines"] = [{"label": label, "points": n}
                                for label, n in plot_curve(points, out / "curve.png", title=title)]
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n",
                                     encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return report


HOW_TO_READ = """\
## How to read this report

* **Latency** is in ms of source audio, per utterance from its start, averaged over the test
  set (SimulEval definitions). AL: how far each word comes after an ideal interpreter who
  keeps pace with the speaker. LAAL: the same with the ideal pace set by the longer of output
  and reference. `_CA`: computation-aware, the processing time added.
* **AL below zero, or far below LAAL**: AL sets the ideal pace from the *reference* length;
  when the output is longer than the reference (tiny or untrained models ramble), its later
  words are "ahead" of that pace and AL shrinks, even below zero. That is not speed: read LAAL,
  which uses the longer of the two and cannot be lowered by long output. The curve uses LAAL.
* **Retention** = chrF(path) / chrF(offline cascade), both against the references: how much
  of the sentence-level quality a streaming path keeps. **Above 1** means the path scored
  better than the cascade on this set: the cascade is a reference system, not an upper bound
  (with random-weight models both scores are near zero and their ratio is noise). Without
  references (`*`) it is chrF(path, cascade)/100, which cannot exceed 1. The cascade itself
  is 1 by definition.
* **Flicker**: shown words later changed; **retractions**: committed words taken back (0
  by design).
"""


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md: what was run, how to read it, a summary row per path/setting/direction,
    then one table per setting."""
    lines = [f"# {report['title']}", ""]
    meta = report.get("meta") or {}
    if meta:
        lines += ["| run | |", "|---|---|"]
        for k, v in meta.items():
            if isinstance(v, Mapping):
                v = ", ".join(f"{a}: {b}" for a, b in v.items())
            lines.append(f"| {k} | {str(v).replace('|', '/')} |")
        lines.append("")
    lines += ["Full precision in report.json. `*` marks the reference-free retention proxy.", "",
              "![quality retention vs latency](curve.png)", "", "## Summary", "",
              "| path | setting | direction | n | chrF | AL | LAAL | LAAL_CA | retention |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s in report["settings"]:
        for d, r in s["directions"].items():
            lines.append(f"| {s.get('path', '')} | {s['name']} | {d} | {r['n']} | {_fmt(r['chrF'])} | "
                         f"{_fmt(r['AL'])} | {_fmt(r['LAAL'])} | {_fmt(r['LAAL_CA'])} | {_retention(r)} |")
    lines += ["", HOW_TO_READ]
    for s in report["settings"]:
        lines += [f"## {s['name']}", ""]
        head = [f"path={s['path']}"] if s.get("path") else []
        lines += [", ".join(head + [f"{k}={v}" for k, v in s["params"].items()]), ""]
        lines += ["| direction | n | " + " | ".join(TABLE_COLUMNS) + " | retractions |",
                  "|---" * (len(TABLE_COLUMNS) + 3) + "|"]
        for d, r in s["directions"].items():
            cells = [_fmt(r[c]) for c in TABLE_COLUMNS]
            cells[TABLE_COLUMNS.index("retention")] = _retention(r)
            lines.append(f"| {d} | {r['n']} | " + " | ".join(cells) + f" | {r['retractions']} |")
        lines.append("")
    return "\n".join(lines)


def _retention(r: Mapping[str, Any]) -> str:
    cell = _fmt(r["retention"])
    return cell + "*" if r["quality_basis"] != "reference" and r["retention"] is not None else cell


def plot_curve(points: Sequence[Mapping[str, Any]], path: Path, *, title: str) -> list[tuple[str, int]]:
    """Quality retention against LAAL (s): one line per (path, direction) through its
    settings in latency order, each point labelled with its setting; a legend (Agg).
    Returns the legend: (label, number of points) per line drawn."""
    fig = Figure(figsize=(7.2, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for p in points:
        groups.setdefault((str(p.get("path", "simul")), str(p["direction"])), []).append(p)
    rank = {name: i for i, name in enumerate(PATH_ORDER)}
    markers = {"e2e": "s", "simul": "o", "cascade": "*"}
    drawn: list[tuple[str, int]] = []
    for (name, direction), pts in sorted(groups.items(), key=lambda kv: (rank.get(kv[0][0], len(rank)), kv[0])):
        pts = sorted(pts, key=lambda p: p["LAAL_s"])
        xs, ys = [p["LAAL_s"] for p in pts], [p["retention"] for p in pts]
        label = f"{name} ({direction})" + (" *" if pts[0]["quality_basis"] != "reference" else "")
        ax.plot(xs, ys, marker=markers.get(name, "D"), markersize=9 if name == "cascade" else 6,
                linewidth=1.5, label=label)
        drawn.append((label, len(pts)))
        for p in pts:
            ax.annotate(p["setting"], (p["LAAL_s"], p["retention"]), textcoords="offset points",
                        xytext=(5, 5), fontsize=7)
    ax.set_xlabel("latency: LAAL (s of speech)")
    ax.set_ylabel("quality retention (path / offline cascade)")
    ax.set_title(f"{title}: quality retention vs latency", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.15)
    if points:
        ax.legend(title="path (direction)", fontsize=8, title_fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no scored settings", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return drawn


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def _safe(name: str) -> str:
    """A setting name as a directory name."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("._") or "setting"
