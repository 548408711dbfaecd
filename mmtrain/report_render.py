"""Rendering of a leaderboard dict (``mmtrain.report``) as Markdown and as a self-contained HTML page.

The HTML page works offline: inline CSS and inline SVG charts (a bar chart of the tested metric with ±std error
bars, the validation curves of the selected runs), no script, no external stylesheet, font or image.
"""

from __future__ import annotations

import html
import math
from typing import Any

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#ad494a",
    "#637939",
    "#7b4173",
)


FAMILIES = ("recall", "ndcg", "precision", "map", "hit", "ndcg_lattice")


def metric_order(names: list[str]) -> list[str]:
    """Metrics by family (Recall, NDCG, Precision, MAP, Hit, LATTICE NDCG, others), then by K."""

    def key(name: str) -> tuple[int, str, float]:
        family, _, k = name.partition("@")
        rank = FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)
        return rank, family, float(k) if k.isdigit() else 0.0

    return sorted(names, key=key)


def fmt_ms(stat: dict[str, float | None] | None, digits: int = 4) -> str:
    """``mean ± std`` (``mean`` alone for one seed; empty when unknown)."""
    if not stat or stat.get("mean") is None:
        return ""
    text = f"{stat['mean']:.{digits}f}"
    return text if stat.get("std") is None else f"{text} ± {stat['std']:.{digits}f}"


def fmt_p(p: float | None) -> str:
    return "" if p is None else f"{p:.2g}"


def fmt_rel(rel: float | None) -> str:
    return "" if rel is None else f"{rel * 100:+.1f}%"


def point_label(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "recipe"


def model_label(entry: dict[str, Any], board: dict[str, Any]) -> str:
    return entry["model"] + (" (baseline)" if entry["model"] == board["baseline"] else "")


def _ident(entry: dict[str, Any], board: dict[str, Any]) -> dict[str, str]:
    row = {"model": model_label(entry, board)}
    if len(board["datasets"]) > 1:
        row["dataset"] = str(entry["dataset"])
    return row


def main_rows(board: dict[str, Any]) -> list[dict[str, str]]:
    """The headline table: selected point, val selection metric, tested metric with marker and p, published."""
    metric, sel = board["metric"], board["selection_metric"]
    rows = []
    for e in board["models"]:
        sig = e.get("significance") or {}
        pub = ((e.get("published") or {}).get("metrics") or {}).get(metric) or {}
        row = {**_ident(e, board), "point": point_label(e["point"]), "seeds": str(e["n_seeds"])}
        row[f"val {sel}"] = fmt_ms(e["val"].get(sel))
        row[f"test {metric}"] = (fmt_ms(e["test"].get(metric)) + " " + sig.get("marker", "")).strip()
        row["p (Holm)"] = fmt_p(sig.get("p_holm"))
        row[f"published {metric}"] = "" if not pub else f"{pub['published']:.4f}"
        row["rel. diff"] = fmt_rel(pub.get("relative_diff"))
        for m in metric_order(list(e["test"])):
            if m != metric and m.split("@")[0] in ("recall", "ndcg"):
                row[f"test {m}"] = fmt_ms(e["test"][m])
        rows.append(row)
    return rows


def cost_rows(board: dict[str, Any]) -> list[dict[str, str]]:
    """Cost per model: seconds per epoch, epochs to best, epochs run, why runs stopped, peak memory."""
    rows = []
    for e in board["models"]:
        row = _ident(e, board)
        row["s/epoch"] = fmt_ms(e["seconds_per_epoch"], 2)
        row["epochs to best"] = fmt_ms(e["epochs_to_best"], 1)
        row["epochs run"] = fmt_ms(e["epochs_run"], 1)
        row["stopped by"] = ", ".join(f"{k} x{n}" for k, n in e["stop_reasons"].items())
        row["peak RSS MiB"] = fmt_ms(e["peak_memory_mib"]["rss"], 0)
        row["peak GPU MiB"] = fmt_ms(e["peak_memory_mib"]["gpu"], 0)
        rows.append(row)
    return rows


def metric_rows(board: dict[str, Any], split: str) -> list[dict[str, str]]:
    """Every metric of ``split`` (mean ± std over seeds) per model."""
    return [
        {**_ident(e, board), **{m: fmt_ms(e[split][m]) for m in metric_order(list(e[split]))}}
        for e in board["models"]
    ]


def published_rows(board: dict[str, Any]) -> list[dict[str, str]]:
    """Each published number next to our test mean and the relative difference."""
    rows = []
    for e in board["models"]:
        pub = e.get("published") or {}
        for metric, r in (pub.get("metrics") or {}).items():
            ours = "" if r["ours"] is None else f"{r['ours']:.4f}"
            rows.append(
                {
                    **_ident(e, board),
                    "metric": metric,
                    "published": f"{r['published']:.4f}",
                    "ours (test mean)": ours,
                    "rel. diff": fmt_rel(r["relative_diff"]),
                    "source": str(pub.get("source") or ""),
                }
            )
    return rows


def _columns(rows: list[dict[str, str]]) -> list[str]:
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    return columns


def md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(none)\n"
    columns = _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r.get(c, "").replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _intro(board: dict[str, Any]) -> list[str]:
    n_tests = max([(e.get("significance") or {}).get("n_tests", 0) for e in board["models"]] + [0])
    return [
        f"Dataset: {', '.join(map(str, board['datasets']))}. Per model, the grid point with the best mean "
        f"validation {board['selection_metric']} over seeds; test is reported for that point only. "
        "Values are mean ± sample std over seeds.",
        f"Significance: two-sided Wilcoxon signed-rank test of the per-user test {board['metric']} (averaged "
        f"over seeds) against {board['baseline']} on the users both evaluate, Holm-corrected across "
        f"{n_tests} models; * p < 0.05, ** p < 0.01 after Holm.",
    ]


def render_markdown(board: dict[str, Any]) -> str:
    """leaderboard.md: headline table, cost, published numbers, every val and test metric."""
    parts = [f"# Leaderboard: {board['suite']}", "", *_intro(board), "", md_table(main_rows(board))]
    parts += ["## Cost", "", md_table(cost_rows(board))]
    parts += ["## Published numbers", "", md_table(published_rows(board))]
    for split in ("test", "val"):
        parts += [f"## All {split} metrics", "", md_table(metric_rows(board, split))]
    return "\n".join(parts)


def _html_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = _columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _nice_top(value: float, n: int = 5) -> tuple[float, list[float]]:
    """An axis top >= ``value`` and its ticks at a round step (1, 2 or 5 times a power of ten)."""
    raw = max(value, 1e-12) / n
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = math.ceil(value / step - 1e-9)
    return step * count, [step * i for i in range(count + 1)]


def bar_chart_svg(board: dict[str, Any]) -> str:
    """Bars of the tested metric's test mean per model with ±std error bars and the significance marker."""
    metric = board["metric"]
    bars = [(e, e["test"].get(metric) or {}) for e in board["models"]]
    bars = [(e, s) for e, s in bars if s.get("mean") is not None]
    left, top, bottom, band = 70, 30, 110, 64
    width, height = left + band * max(len(bars), 1) + 30, 380
    plot_h = height - top - bottom
    ymax, ticks = _nice_top(max([s["mean"] + (s.get("std") or 0.0) for _, s in bars] + [1e-9]) * 1.1)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    out = [f'<svg width="{width}" height="{height}" role="img" aria-label="test {html.escape(metric)}">']
    for v in ticks:
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    for i, (e, s) in enumerate(bars):
        x = left + i * band + band * 0.15
        cx = x + band * 0.35
        colour = PALETTE[board["models"].index(e) % len(PALETTE)]
        out.append(
            f'<rect x="{x:.1f}" y="{y(s["mean"]):.1f}" width="{band * 0.7:.1f}" '
            f'height="{y(0) - y(s["mean"]):.1f}" fill="{colour}"><title>{html.escape(e["model"])}: '
            f"{html.escape(fmt_ms(s))}</title></rect>"
        )
        hi = s["mean"] + (s.get("std") or 0.0)
        if s.get("std"):
            lo = max(s["mean"] - s["std"], 0.0)
            out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" class="err"/>')
            for v in (lo, hi):
                out.append(
                    f'<line x1="{cx - 6:.1f}" x2="{cx + 6:.1f}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="err"/>'
                )
        mark = (e.get("significance") or {}).get("marker", "")
        if mark:
            out.append(f'<text x="{cx:.1f}" y="{y(hi) - 6:.1f}" text-anchor="middle">{mark}</text>')
        label = html.escape(model_label(e, board))
        out.append(
            f'<text x="{cx:.1f}" y="{y(0) + 14:.1f}" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {y(0) + 14:.1f})">{label}</text>'
        )
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{y(0):.1f}" class="axis"/>')
    out.append(f'<text x="14" y="{top + plot_h / 2:.1f}" transform="rotate(-90 14 {top + plot_h / 2:.1f})" ')
    out[-1] += f'text-anchor="middle">test {html.escape(metric)}</text>'
    out.append("</svg>")
    return "".join(out)


def curves_svg(board: dict[str, Any], curves: dict[str, list[tuple[Any, list[tuple[float, float]]]]]) -> str:
    """Validation ``selection_metric`` per epoch of every selected run (one colour per model, a line per
    seed), with a legend."""
    metric = board["selection_metric"]
    series = [
        (i, e, seed, pts) for i, e in enumerate(board["models"]) for seed, pts in curves.get(e["key"], [])
    ]
    series = [s for s in series if s[3]]
    if not series:
        return "<p>(no validation curves: metrics.csv missing)</p>"
    xs = [p[0] for s in series for p in s[3]]
    ys = [p[1] for s in series for p in s[3]]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    ymax, ticks = _nice_top(max(max(ys), 1e-9) * 1.05)
    left, top, bottom, legend = 70, 20, 50, 220
    width, height = 980, 420
    plot_w, plot_h = width - left - legend - 20, height - top - bottom

    def px(x: float) -> float:
        return left + plot_w * (x - x0) / (x1 - x0)

    def py(v: float) -> float:
        return top + plot_h * (1 - v / ymax)

    out = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="validation {html.escape(metric)}">'
    ]
    for v in ticks:
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(v):.1f}" y2="{py(v):.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    step = max(1, math.ceil((x1 - x0) / 10))
    for epoch in range(math.ceil(x0), math.floor(x1) + 1, step):
        out.append(f'<text x="{px(epoch):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{epoch}</text>')
    for i, e, seed, pts in series:
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in pts)
        out.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5">'
            f"<title>{html.escape(e['model'])} seed {html.escape(str(seed))}</title></polyline>"
        )
        if len(pts) == 1:
            x, v = pts[0]
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="{colour}"/>')
    for i, e in enumerate(board["models"]):
        ly = top + 16 * i + 8
        out.append(f'<rect x="{left + plot_w + 20}" y="{ly - 8}" width="12" height="10" ')
        out[-1] += f'fill="{PALETTE[i % len(PALETTE)]}"/>'
        out.append(f'<text x="{left + plot_w + 38}" y="{ly + 1}">{html.escape(model_label(e, board))}</text>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" class="axis"/>')
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis"/>'
    )
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">epoch</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2:.1f}" transform="rotate(-90 14 {top + plot_h / 2:.1f})" ')
    out[-1] += f'text-anchor="middle">val {html.escape(metric)}</text>'
    out.append("</svg>")
    return "".join(out)


CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1400px; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 24px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f0f0f0; }
svg text { font-size: 12px; fill: #222; }
svg .grid { stroke: #e4e4e4; }
svg .axis { stroke: #444; }
svg .err { stroke: #000; stroke-width: 1.5; }
"""


def render_html(board: dict[str, Any], curves: dict[str, list[tuple[Any, list[tuple[float, float]]]]]) -> str:
    """report.html: the tables of leaderboard.md plus the bar chart and the validation curves, self-contained."""
    title = html.escape(f"Leaderboard: {board['suite']}")
    intro = "".join(f"<p>{html.escape(p)}</p>" for p in _intro(board))
    sections = [
        f"<h1>{title}</h1>",
        intro,
        _html_table(main_rows(board)),
        f"<h2>Test {html.escape(board['metric'])} (mean ± std over seeds)</h2>",
        bar_chart_svg(board),
        f"<h2>Validation curves ({html.escape(board['selection_metric'])}, selected runs)</h2>",
        curves_svg(board, curves),
        "<h2>Cost</h2>",
        _html_table(cost_rows(board)),
        "<h2>Published numbers</h2>",
        _html_table(published_rows(board)),
    ]
    for split in ("test", "val"):
        sections += [f"<h2>All {split} metrics</h2>", _html_table(metric_rows(board, split))]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
