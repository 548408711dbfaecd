"""``mmprep info``: a table of counts, density, degree percentiles and coverage."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from mmprep.info import PERCENTILES, dataset_info


def _table(info: dict) -> Table:
    t = Table(title=f"{info['name']}", show_header=True, header_style="bold")
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("users", f"{info['users']:,}")
    t.add_row("items", f"{info['items']:,}")
    t.add_row("interactions", f"{info['interactions']:,}")
    t.add_row("density", f"{info['density']:.6f} (sparsity {100 * (1 - info['density']):.4f}%)")
    for who in ("user", "item"):
        d = info[f"{who}_degree"]
        pct = " / ".join(f"{d[f'p{p}']:g}" for p in PERCENTILES)
        t.add_row(f"{who} degree p{'/'.join(map(str, PERCENTILES))}", f"{pct} (mean {d['mean']:.2f})")
    for split_set, counts in info["splits"].items():
        t.add_row(
            f"{split_set} split train/val/test",
            " / ".join(f"{counts[k]:,}" for k in ("train", "val", "test")),
        )
    n = max(info["items"], 1)
    for field, present in info["item_fields"].items():
        if present:
            t.add_row(f"item {field}", f"{present:,} ({100 * present / n:.1f}%)")
    for modality, m in info["modalities"].items():
        t.add_row(
            f"feature {modality}", f"d={m['dim']}, {m['present']:,} items ({100 * m['present'] / n:.1f}%)"
        )
    return t


@click.command("info")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Print the statistics as JSON on stdout instead of a table."
)
def info_cmd(dataset_dir: Path, as_json: bool) -> None:
    """Show counts, density, degree percentiles, split sizes and modality coverage of DATASET_DIR.

    \b
    Examples:
      mmprep info out/all-beauty
      mmprep info out/baby --json > baby-stats.json
    """
    info = dataset_info(dataset_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        Console().print(_table(info))


COMMANDS = [info_cmd]
