"""``streamst bench quality``'s report: report.json, report.md (tables) and curve.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASE = "reorder-aware k=3"  # the lever rows are compared with this setting


def _f(x: Any, nd: int = 1) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def markdown(r: dict[str, Any]) -> str:
    t = r.get("training") or {}
    lines = [
        "# streamst bench quality",
        "",
        f"Path: **{r['path']}**. Model: `{r['model']}`. Held-out test items: {r['items']} "
        f"(new combinations of known words and structures; half of them with a reorder of 6+ words). "
        f"Load average at the end: {r['load_average']} (a shared 2-core box); bench wall time {r['seconds']} s.",
        "",
        f"Training: {t.get('steps')} steps in {t.get('train_seconds')} s, last loss {t.get('loss_last')}; "
        f"dev offline chrF {t.get('dev_offline_chrF')}.",
        "",
        *([f"Output projection: only the {r.get('sparse_head', {}).get('rows_kept')} token rows the model kept "
           f"(its other rows are zero, so their logits are exactly 0; see `quality/bench.py` `sparse_head`); "
           f"offline outputs identical to the full projection on {r.get('sparse_head', {}).get('same_offline_output')} "
           f"of {r.get('sparse_head', {}).get('items')} checked items. The int8 lever runs the full projection.",
           ""] if "sparse_head" in r else []),
        "How to read: chrF/BLEU against the reference; *offline* is whole-sentence greedy decoding by the same "
        "model; retention = chrF(simultaneous) / chrF(offline). AL/LAAL in seconds of source audio (SimulEval, "
        "units: English words, Chinese characters); LAAL_CA adds the processing time (measured on the loaded box). "
        "Reorder buckets: the item's longest reorder in source words.",
        "",
    ]
    dirs = sorted({d for s in r["settings"] for d in s["directions"]})
    for d in dirs:
        lines += [f"## Policies, {d}", "", "| setting | BLEU | chrF | offline chrF | retention | AL | LAAL | LAAL_CA |",
                  "|---|---|---|---|---|---|---|---|"]
        for s in r["settings"]:
            if s["group"] != "policy" or d not in s["directions"]:
                continue
            a = s["directions"][d]["all"]
            lines.append(f"| {s['name']} | {_f(a['BLEU'])} | {_f(a['chrF'])} | {_f(a['offline_chrF'])} | "
                         f"{_pct(a['retention'])} | {_f(a['AL'], 2)} | {_f(a['LAAL'], 2)} | {_f(a['LAAL_CA'], 2)} |")
        lines.append("")
        buckets = [b for b in ("0", "1-2", "3-5", "6+") if any(b in s["directions"].get(d, {}).get("buckets", {})
                                                           for s in r["settings"])]
        lines += [f"### By reorder distance, {d}: chrF / LAAL (s) / retention", "",
                  "| setting | " + " | ".join(f"{b} (n={_n(r, d, b)})" for b in buckets) + " |",
                  "|---|" + "---|" * len(buckets)]
        for s in r["settings"]:
            if s["group"] != "policy" or d not in s["directions"]:
                continue
            bk = s["directions"][d]["buckets"]
            cells = [f"{_f(bk[b]['chrF'])} / {_f(bk[b]['LAAL'], 2)} / {_pct(bk[b]['retention'])}" if b in bk else "—"
                     for b in buckets]
            lines.append(f"| {s['name']} | " + " | ".join(cells) + " |")
        lines.append("")
    lever_base = r.get("lever_base", BASE)
    lines += [f"## Speed levers: quality cost against `{lever_base}` (fp32, lookahead 4, final-length bound on)", "",
              "| lever | direction | chrF | Δ chrF | LAAL | Δ LAAL | chrF 6+ | Δ chrF 6+ |", "|---|---|---|---|---|---|---|---|"]
    base = next((s for s in r["settings"] if s["name"] == lever_base), None)
    for s in r["settings"]:
        if s["group"] != "lever":
            continue
        for d in dirs:
            a, b = s["directions"][d]["all"], base["directions"][d]["all"] if base else None
            a6 = s["directions"][d]["buckets"].get("6+")
            b6 = base["directions"][d]["buckets"].get("6+") if base else None
            lines.append(
                f"| {s['name']} ({s['lever']}) | {d} | {_f(a['chrF'])} | {_delta(a['chrF'], b and b['chrF'])} | "
                f"{_f(a['LAAL'], 2)} | {_delta(a['LAAL'], b and b['LAAL'], 2)} | {_f(a6 and a6['chrF'])} | "
                f"{_delta(a6 and a6['chrF'], b6 and b6['chrF'])} |")
    for name, why in r.get("not_measured", {}).items():
        lines.append(f"| {name} | — | not measured: {why} | | | | | |")
    lines += ["", f"![retention against LAAL]({r.get('curve', 'curve.png')})", ""]
    return "\n".join(lines)


def _n(r: dict[str, Any], d: str, b: str) -> int:
    for s in r["settings"]:
        bk = s["directions"].get(d, {}).get("buckets", {})
        if b in bk:
            return bk[b]["n"]
    return 0


def _delta(a: Any, b: Any, nd: int = 1) -> str:
    if a is None or b is None:
        return "—"
    return f"{a - b:+.{nd}f}"


def plot(r: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dirs = sorted({d for s in r["settings"] for d in s["directions"]})
    fig = Figure(figsize=(11, 4.2 * len(dirs)), dpi=100)
    FigureCanvasAgg(fig)
    families = (("wait-k", "o-", "tab:blue"), ("reorder-aware", "s-", "tab:red"), ("local-agreement", "^", "tab:green"))
    for i, d in enumerate(dirs):
        for j, bucket in enumerate(("all", "6+")):
            ax = fig.add_subplot(len(dirs), 2, 2 * i + j + 1)
            for fam, style, color in families:
                pts = []
                for s in r["settings"]:
                    if s["group"] != "policy" or s["policy"] != fam or d not in s["directions"]:
                        continue
                    if fam == "reorder-aware" and set(s["overrides"]) - {"k"}:
                        continue  # knob variants: in the tables
                    a = s["directions"][d]["all"] if bucket == "all" else s["directions"][d]["buckets"].get(bucket)
                    if a and a["LAAL"] is not None and a["retention"] is not None:
                        pts.append((a["LAAL"], 100 * a["retention"], s["name"].replace(fam, "").strip()))
                pts.sort()
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, label=fam)
                    for x, y, lab in pts:
                        ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.axhline(90, color="grey", lw=0.6, ls="--")
            ax.axvline(1.5, color="grey", lw=0.6, ls="--")
            ax.set_title(f"{d}, {'all items' if bucket == 'all' else 'reorder of 6+ source words'}")
            ax.set_xlabel("LAAL (s of source audio)")
            ax.set_ylabel("quality retention (% of offline chrF)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(str(path))


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    plot(report, out / "curve.png")
