"""``mmprep cold-start``: add the MICRO item cold-start split set (``cold/``) to a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from mmprep.errors import PrepError
from mmprep.progress import console
from mmprep.split.cold_dataset import add_cold_split


@click.command("cold-start")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--cold-ratio", default=0.2, show_default=True, help="Share of items made cold (half val, half test)."
)
@click.option("--seed", default=123, show_default=True, help="Seed of the cold item draw (MICRO uses 123).")
def cold_start_cmd(dataset_dir: Path, cold_ratio: float, seed: int) -> None:
    """Add the MICRO item cold-start splits to DATASET_DIR (written to DATASET_DIR/cold/).

    Cold items get no training interactions; every interaction of a val-cold (test-cold) item is in
    cold/val.parquet (cold/test.parquet). Re-running replaces the previous cold split atomically.

    \b
    Examples:
      mmprep cold-start out/baby
      mmprep cold-start out/baby --cold-ratio 0.2 --seed 123
      mmtrain run --model micro --dataset out/baby --split cold
    """
    if not dataset_dir.is_dir():
        raise PrepError("dataset directory not found", dataset_dir)
    entry = add_cold_split(dataset_dir, cold_ratio, seed)
    c = entry["counts"]
    console.print(
        f"cold items: {entry['cold_items']['val']:,} val + {entry['cold_items']['test']:,} test; "
        f"interactions train {c['train']:,} / val {c['val']:,} / test {c['test']:,} -> {dataset_dir}/cold"
    )


COMMANDS = [cold_start_cmd]
