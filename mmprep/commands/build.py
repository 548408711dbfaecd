"""``mmprep build``: a dataset from a recipe or from explicitly given raw files."""

from __future__ import annotations

from pathlib import Path

import click

from mmprep.build import ITEM_TEXT_CHOICES, BuildParams, build_dataset
from mmprep.commands.checks import at_least, ratio
from mmprep.errors import PrepError
from mmprep.progress import console
from mmprep.recipes import load_recipe
from mmprep.reuse import up_to_date
from mmprep.sources.base import SourceFiles
from mmprep.sources.spill import DEFAULT_RAM_SHARE, parse_memory_limit
from mmprep.split.warm import METHODS


def _parse_inputs(inputs: tuple[str, ...]) -> dict[str, list[Path]]:
    roles: dict[str, list[Path]] = {}
    for spec in inputs:
        role, sep, path = spec.partition("=")
        if not sep or not role or not path:
            raise PrepError(f"--input expects ROLE=PATH, got {spec!r}")
        roles.setdefault(role, []).append(Path(path))
    return roles


def _recipe_files(recipe, raw_dir: Path) -> dict[str, list[Path]]:
    roles: dict[str, list[Path]] = {}
    for f in recipe.files:
        path = raw_dir / f.name
        if not path.is_file():
            if f.optional:
                continue
            hint = (
                f" (download it: mmprep download --dataset {recipe.name} --raw-dir {raw_dir})"
                if f.url
                else ""
            )
            raise PrepError(f"raw file of recipe {recipe.name!r} not found{hint}", path)
        roles.setdefault(f.role, []).append(path)
    return roles


def _import_recipe(recipe, raw_dir: Path, out: Path, name: str, overwrite: bool) -> None:
    """Recipes with ``source: import-<format>`` describe an already-processed dataset: import it as is."""
    from mmprep.dataset.reader import load_dataset
    from mmprep.interop import IMPORTERS

    fmt = recipe.source.removeprefix("import-")
    if fmt not in IMPORTERS:
        raise PrepError(f"unknown import format {fmt!r} (known: {', '.join(IMPORTERS)})", recipe.path)
    IMPORTERS[fmt](raw_dir, out, name=name, overwrite=overwrite, **recipe.params)
    m = load_dataset(out).manifest
    c = m["counts"]
    console.print(
        f"{name}: {c['users']:,} users, {c['items']:,} items, {c['interactions']:,} interactions -> {out}"
    )
    diffs = {k: (c.get(k), v) for k, v in recipe.expected.items() if c.get(k) != v}
    if recipe.expected:
        console.print("matches the published counts" if not diffs else f"differs: {diffs}")


@click.command("build")
@click.option(
    "--dataset", "dataset", help="Recipe name (recipes/datasets/NAME.yaml) or path to a recipe YAML."
)
@click.option(
    "--raw-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder holding the recipe's raw files.",
)
@click.option("--source", "source_format", help="Source format when no recipe is used (e.g. amazon2018).")
@click.option(
    "--input", "inputs", multiple=True, metavar="ROLE=PATH", help="A raw file for --source, repeatable."
)
@click.option(
    "--name", help="Dataset name in the manifest (default: the recipe name or the output folder name)."
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output dataset directory.")
@click.option(
    "--k-user",
    type=int,
    callback=at_least(0),
    help="Minimum interactions per user (iterative k-core). Recipe default, else 5.",
)
@click.option(
    "--k-item",
    type=int,
    callback=at_least(0),
    help="Minimum interactions per item (iterative k-core). Recipe default, else 5.",
)
@click.option(
    "--min-rating", type=float, help="Keep only interactions rated at least this (default: keep all)."
)
@click.option(
    "--id-order", type=click.Choice(["first", "sorted"]), help="Dense index order (docs/FORMAT.md)."
)
@click.option(
    "--item-text", type=click.Choice(ITEM_TEXT_CHOICES), help="Item text from the meta file or reviews."
)
@click.option(
    "--split", "split_method", type=click.Choice(METHODS), help="Warm split method (default random)."
)
@click.option(
    "--val-ratio",
    type=float,
    callback=ratio,
    help="Share of each user's interactions for validation (default 0.1).",
)
@click.option(
    "--test-ratio",
    type=float,
    callback=ratio,
    help="Share of each user's interactions for test (default 0.1).",
)
@click.option("--seed", type=int, help="Seed of the random split (default 123, as LATTICE/MICRO).")
@click.option(
    "--ensure-train-items/--allow-eval-only-items",
    default=None,
    help="Move one interaction of every item seen only in val/test to train (default on).",
)
@click.option(
    "--strict", is_flag=True, help="Fail on the first bad line or duplicate instead of skipping and counting."
)
@click.option(
    "--memory-limit",
    default=f"{int(DEFAULT_RAM_SHARE * 100)}%",
    show_default=True,
    metavar="SIZE",
    callback=lambda ctx, param, value: parse_memory_limit(value),
    help="Memory DuckDB may use (e.g. 4GB, 512MB, or a share of RAM such as 50%); beyond it DuckDB spills "
    "to a temporary folder next to --out, removed afterwards. Does not change the dataset.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def build_cmd(
    dataset, raw_dir, source_format, inputs, name, out, overwrite, quiet, memory_limit, **overrides
) -> None:
    """Build a dataset: parse raw dumps, dedupe, k-core, re-index, split, write Parquet + manifest.

    \b
    Examples:
      mmprep build --dataset all-beauty --raw-dir data/ --out out/all-beauty
      mmprep build --dataset sports --raw-dir ~/amazon2014 --out out/sports --split temporal
      mmprep build --source amazon2018 --input interactions=data/All_Beauty_5.json.gz \\
                   --item-text reviews --k-user 5 --k-item 5 --out out/beauty
    """
    recipe = None
    recipe_params: dict = {}
    if dataset:
        recipe = load_recipe(dataset)
        if source_format or inputs:
            raise PrepError("give either --dataset or --source/--input, not both")
        if raw_dir is None:
            raise PrepError("--dataset needs --raw-dir (the folder with the raw files)")
        roles = _recipe_files(recipe, raw_dir)
        if recipe.source.startswith("import-"):
            _import_recipe(recipe, raw_dir, out, name or recipe.name, overwrite)
            return
        source_format = recipe.source
        recipe_params = {
            **recipe.params,
            **{f"split_{k}" if k == "method" else k: v for k, v in recipe.split.items()},
        }
        name = name or recipe.name
    else:
        if not source_format or not inputs:
            raise PrepError("give --dataset NAME --raw-dir DIR, or --source FORMAT with --input ROLE=PATH")
        roles = _parse_inputs(inputs)
        from mmprep.sources import get_source

        expected = get_source(source_format).roles
        for role in roles:
            if role not in expected:
                raise PrepError(
                    f"source {source_format} has no input role {role!r} (roles: {', '.join(expected)})"
                )
        name = name or out.name
    known = set(BuildParams.__dataclass_fields__)
    unknown = set(recipe_params) - known
    if unknown:
        raise PrepError(
            f"unknown recipe parameter(s): {', '.join(sorted(unknown))}", recipe.path if recipe else None
        )
    chosen = {k: v for k, v in overrides.items() if v is not None and not (k == "strict" and not v)}
    params = BuildParams(**{**recipe_params, **chosen})
    source_files = SourceFiles(roles)
    if not overwrite and out.exists():
        if up_to_date(out, name, source_format, source_files, params):
            console.print(f"{out} is up to date (same raw files and parameters); nothing to do")
            return
        raise PrepError(
            "output already exists, built from other raw files or parameters (use --overwrite to replace it)",
            out,
        )
    manifest = build_dataset(
        name,
        source_format,
        source_files,
        params,
        out,
        overwrite=overwrite,
        quiet=quiet,
        recipe={"name": recipe.name, "path": str(recipe.path)} if recipe else None,
        memory_limit=memory_limit,
    )
    c = manifest["counts"]
    s = manifest["splits"]["warm"]["counts"]
    console.print(
        f"{name}: {c['users']:,} users, {c['items']:,} items, {c['interactions']:,} interactions "
        f"(train {s['train']:,} / val {s['val']:,} / test {s['test']:,}) -> {out}"
    )
    if manifest["skipped"]["counts"]:
        console.print(
            f"skipped: {manifest['skipped']['counts']} (see manifest.json; --strict to fail instead)"
        )
    if recipe and recipe.expected:
        diffs = {k: (c.get(k), v) for k, v in recipe.expected.items() if c.get(k) != v}
        if diffs:
            console.print(f"differs from the published counts (got, expected): {diffs}")
        else:
            console.print("matches the published counts")


COMMANDS = [build_cmd]
