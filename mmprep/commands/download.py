"""``mmprep download``: fetch the raw files a dataset recipe names."""

from __future__ import annotations

from pathlib import Path

import click

from mmprep.download import download_recipe
from mmprep.progress import console
from mmprep.recipes import load_recipe, recipe_names


@click.command("download")
@click.option(
    "--dataset", required=True, help=f"Recipe name ({', '.join(recipe_names())}) or a recipe YAML path."
)
@click.option(
    "--raw-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Where to put them."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def download_cmd(dataset: str, raw_dir: Path, quiet: bool) -> None:
    """Download the raw files of a dataset recipe into RAW_DIR (resumes partial downloads, checks sha256).

    Fails with a one-line message when offline; files already present are checked, not fetched again.

    \b
    Examples:
      mmprep download --dataset sports --raw-dir ~/raw/amazon2014
      mmprep build --dataset sports --raw-dir ~/raw/amazon2014 --out out/sports
    """
    recipe = load_recipe(dataset)
    for f, status in download_recipe(recipe, raw_dir, quiet=quiet):
        console.print(f"{f.name}: {status}")


COMMANDS = [download_cmd]
