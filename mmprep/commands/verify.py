"""``mmprep verify``: check a dataset directory against docs/FORMAT.md."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mmformat.verify import verify as verify_dataset


@click.command("verify")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--no-hashes", is_flag=True, help="Skip the sha256 check of every file (faster on big datasets)."
)
def verify_cmd(dataset_dir: Path, no_hashes: bool) -> None:
    """Check that DATASET_DIR is a valid dataset (docs/FORMAT.md, "Validation"): files and checksums, the
    modalities in the manifest against the feature files, schemas, index ranges, finite features, graph shapes.

    Prints one line per problem and exits 1 if there is any (exit 2 when the manifest itself is unreadable).
    mmtrain's loader applies the same rules (both use mmformat's reader).

    \b
    Examples:
      mmprep verify out/baby
    """
    problems = verify_dataset(dataset_dir, check_hashes=not no_hashes)
    for p in problems:
        click.echo(f"{dataset_dir}: {p}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{dataset_dir}: valid (format_version 1)", err=True)


COMMANDS = [verify_cmd]
