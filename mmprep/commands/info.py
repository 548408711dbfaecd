"""``mmprep info``: a table of counts, density, degree percentiles and coverage."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mmprep.info import PERCENTILES, dataset_info


def _rows(info: dict) -> list[tuple[str, str]]:
    """The table's ``(what, value)`` rows."""
    rows = [
        ("users", f"{info['users']:,}"),
        ("items", f"{info['items']:,}"),
        ("interactions", f"{info['interactions']:,}"),
        ("density", f"{info['density']:.6f} (sparsity {100 * (1 - info['density']):.4f}%)"),
    ]
    for who in ("user", "item"):
        d = info[f"{who}_degree"]
        pct = " / ".join(f"{d[f'p{p}']:g}" for p in PERCENTILES)
        rows.append((f"{who} degree p{'/'.join(map(str, PERCENTILES))}", f"{pct} (mean {d['mean']:.2f})"))
    for split_set, counts in info["splits"].items():
        rows.append(
            (
                f"{split_set} split train/val/test",
                " / ".join(f"{counts[k]:,}" for k in ("train", "val", "test")),
            )
        )
    n = max(info["items"], 1)
    for field, present in info["item_fields"].items():
        if present:
            rows.append((f"item {field}", f"{present:,} ({100 * present / n:.1f}%)"))
    for modality, m in info["modalities"].items():
        rows.append(
            (f"feature {modality}", f"d={m['dim']}, {m['present']:,} items ({100 * m['present'] / n:.1f}%)")
        )
    for path, g in info["graphs"].items():
        edges = "?" if g["edges"] is None else f"{g['edges']:,}"
        rows.append((f"graph {g['modality']}", f"k={g['k']}, {edges} edges ({path})"))
    return rows


def _table(info: dict) -> str:
    """A two-column plain-text table: the dataset name, then one aligned row per statistic."""
    rows = _rows(info)
    width = max(len(what) for what, _ in rows)
    return "\n".join([info["name"], *(f"  {what:<{width}}  {value}" for what, value in rows)])


@click.command("info")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Print the statistics as JSON on stdout instead of a table."
)
def info_cmd(dataset_dir: Path, as_json: bool) -> None:
    """Show counts, density, degree percentiles, split sizes, modality coverage and kNN graphs of DATASET_DIR.

    \b
    Examples:
      mmprep info out/all-beauty
      mmprep info out/baby --json > baby-stats.json
    """
    info = dataset_info(dataset_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(_table(info))


COMMANDS = [info_cmd]
