"""Render ``docs/parity.md``'s table and per-model details from ``benchmarks/results/parity/*.json``.

    python benchmarks/parity/table.py            # rewrite the generated part of docs/parity.md
    python benchmarks/parity/table.py --check    # exit 1 when docs/parity.md is out of date

Only the text between the two ``parity-table`` markers is generated; the rest of docs/parity.md is written by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import PARITY_RESULTS, REPO

DOC = REPO / "docs" / "parity.md"
START, END = "<!-- parity-table:start -->", "<!-- parity-table:end -->"


def _last_evaluated(curve: list[float | None]) -> float | None:
    values = [v for v in curve if v is not None]
    return values[-1] if values else None


def _ours_cell(ours: dict[str, Any]) -> str:
    finals = [_last_evaluated(c) for c in ours.get("val_recall@20") or []]
    finals = [v for v in finals if v is not None]
    if not finals:
        return "—"
    std = statistics.stdev(finals) if len(finals) > 1 else 0.0
    return f"{statistics.mean(finals):.4f} ± {std:.4f} ({len(finals)} seeds)"


def _local(command: str) -> str:
    """A recorded command with this checkout's path shown relative to it (``out/tiktok``, not ``/home/.../out``)."""
    return command.replace(f"{REPO}/", "")


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def row(result: dict[str, Any]) -> str:
    """One table row: model | repo @ commit | shims | epochs | ours | theirs | s/epoch | verdict."""
    original, ours, theirs = result["original"], result["ours"], result["theirs"] or {}
    commit = (original.get("commit") or "")[:10]
    repo = f"[{original['repo']}](https://github.com/{original['repo']}) @ `{commit}`"
    shims = len(result["shims"])
    speed = f"{_num(ours.get('s_per_epoch'), 1)} / {_num(theirs.get('s_per_epoch'), 1)}"
    their_value = _num(_last_evaluated(theirs.get("val_recall@20") or []))
    band = result.get("theirs_seeds")
    if band:  # the original run with several seeds: its own seed, then all of them like ours
        their_value += f" (seed {band['seeds'][0]}); {_ours_cell(band)}"
    cells = [
        f"[{result['model']}](#{result['model']})",
        repo,
        f"{shims} ([list](#{result['model']}))",
        str(result["protocol"].get("epochs", "—")),
        _ours_cell(ours),
        their_value,
        speed,
        result["verdict"],
    ]
    return "| " + " | ".join(cells) + " |"


def details(result: dict[str, Any]) -> str:
    """The per-model section: commands, shims, curves side by side, and the written explanation."""
    ours, theirs = result["ours"], result["theirs"] or {}
    lines = [f"### {result['model']}", "", result["details"].strip(), ""]
    lines += ["Shims applied to the original code:", ""]
    lines += [f"- {shim}" for shim in result["shims"]] or ["- none"]
    ours_cmd, theirs_cmd = (_local(side.get("command", "")) for side in (ours, theirs))
    lines += ["", f"Ours: `{ours_cmd}`  ", f"Theirs: `{theirs_cmd}`", ""]
    curves = ours.get("val_recall@20") or []
    theirs_curve = theirs.get("val_recall@20") or []
    under = (result.get("theirs_under_ours") or {}).get("val_recall@20") or []
    band = result.get("theirs_seeds") or {}
    their_more = list(zip(band.get("seeds", [])[1:], band.get("val_recall@20", [])[1:], strict=True))
    epochs = max([len(c) for c in curves] + [len(theirs_curve)] + [0])
    if epochs:
        head = ["epoch", *[f"ours s{s}" for s in ours.get("seeds", [])], "theirs"]
        head += [f"theirs s{seed}" for seed, _ in their_more]
        if under:
            head.append("theirs, our evaluator")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for e in range(epochs):
            cells = [str(e + 1)] + [_num(c[e] if e < len(c) else None) for c in curves]
            cells.append(_num(theirs_curve[e] if e < len(theirs_curve) else None))
            cells += [_num(c[e] if e < len(c) else None) for _, c in their_more]
            if under:
                cells.append(_num(under[e] if e < len(under) else None))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def render(results: list[dict[str, Any]]) -> str:
    """The generated block: the summary table then one section per model."""
    head = (
        "| model | original @ commit | shims | epochs compared | ours val R@20 (last epoch, mean ± std) "
        "| theirs val R@20 | s/epoch ours / theirs | verdict and cause |"
    )
    lines = [START, "", head, "|---|---|---|---|---|---|---|---|"]
    lines += [row(r) for r in results]
    lines += ["", "## Per model", ""]
    lines += [details(r) for r in results]
    lines.append(END)
    return "\n".join(lines)


def load_results(folder: Path = PARITY_RESULTS) -> list[dict[str, Any]]:
    """Every result file, sorted by model name."""
    return sorted((json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda r: r["model"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/parity.md is out of date")
    args = parser.parse_args()
    text = DOC.read_text()
    if START not in text or END not in text:
        print(f"{DOC}: the {START} / {END} markers are missing", file=sys.stderr)
        return 1
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    new = before + render(load_results()) + after
    if args.check:
        return 0 if new == text else 1
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
