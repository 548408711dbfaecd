"""``mmprep import`` and ``mmprep export``: datasets in the MMRec, LATTICE/MICRO and DiffMM/MMSSL layouts."""

from __future__ import annotations

from pathlib import Path

import click

from mmformat.layout import SPLIT_SETS
from mmprep.dataset.reader import load_dataset
from mmprep.errors import PrepError
from mmprep.interop import EXPORTERS, FORMATS, IMPORTERS
from mmprep.progress import console, stage

_FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(FORMATS),
    help="mmrec (<name>.inter), lattice (train/val/test.json), diffmm (trnMat/valMat/tstMat.pkl).",
)


@click.command("import")
@_FORMAT_OPTION
@click.argument("src_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Dataset directory to create.")
@click.option("--name", default=None, help="Dataset name in the manifest (default: from the source).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option(
    "--val-file",
    default=None,
    help="diffmm: validation pickle in SRC_DIR (default valMat.pkl, else the one *valid*.pkl).",
)
@click.option("--inter-file", default=None, help="mmrec: the .inter file in SRC_DIR (default: the only one).")
def import_cmd(
    fmt: str,
    src_dir: Path,
    out: Path,
    name: str | None,
    overwrite: bool,
    val_file: str | None,
    inter_file: str | None,
) -> None:
    """Import an already-split dataset from SRC_DIR into our format at --out.

    The train/val/test splits and item indices are kept exactly as imported. Where they break our warm
    guarantees (users without a training item, items only in val/test) the counts are reported in
    manifest.json under splits.warm.violations. Features (<modality>_feat.npy) are stored as float32.
    Pickles (diffmm) are loaded with a restricted unpickler; pickles from untrusted sources are unsafe.

    \b
    Examples:
      mmprep import --format diffmm data/tiktok --out out/tiktok
      mmprep import --format diffmm data/sports --val-file sports_valid.pkl --out out/sports
      mmprep import --format lattice data/baby --out out/baby-lattice --name baby
      mmprep import --format mmrec data/baby --inter-file baby.inter --out out/baby-mmrec
    """
    if val_file and fmt != "diffmm":
        raise PrepError("--val-file only applies to --format diffmm")
    if inter_file and fmt != "mmrec":
        raise PrepError("--inter-file only applies to --format mmrec")
    extra = (
        {"val_file": val_file} if fmt == "diffmm" else {"inter_file": inter_file} if fmt == "mmrec" else {}
    )
    with stage(f"import {fmt} {src_dir}"):
        IMPORTERS[fmt](src_dir, out, name=name, overwrite=overwrite, **extra)
    ds = load_dataset(out)
    warm = ds.manifest["splits"]["warm"]
    c = warm["counts"]
    console.print(
        f"{ds.name}: {ds.n_users:,} users x {ds.n_items:,} items, train {c['train']:,} / val {c['val']:,} / "
        f"test {c['test']:,}; features: {', '.join(ds.modalities()) or 'none'} -> {out}"
    )
    violations = {k: v for k, v in warm["violations"].items() if v}
    if violations:
        found = ", ".join(f"{k} {v:,}" for k, v in violations.items())
        console.print(f"note: imported splits break the warm guarantees ({found}); kept as is")


@click.command("export")
@_FORMAT_OPTION
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory to write.")
@click.option(
    "--split-set",
    type=click.Choice(tuple(SPLIT_SETS)),
    default="warm",
    show_default=True,
    help="Which splits to export: warm (splits/) or cold (cold/).",
)
@click.option("--name", default=None, help="mmrec: base name of the .inter file (default: the dataset name).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def export_cmd(
    fmt: str, dataset_dir: Path, out: Path, split_set: str, name: str | None, overwrite: bool
) -> None:
    """Export DATASET_DIR in another repository's layout, so its code runs on our splits and features.

    \b
    Files written to --out:
      mmrec    <name>.inter (x_label 0/1/2), u_id_mapping.csv, i_id_mapping.csv, *_feat.npy
      lattice  5-core/{train,val,test}.json, 5-core/user-item-dict.json, 5-core/item_list.txt,
               5-core/user_list.txt, train_mat (pickled CSR), *_feat.npy
      diffmm   trnMat.pkl, valMat.pkl, tstMat.pkl (coo float64, values 1.0), *_feat.npy

    \b
    Examples:
      mmprep export --format mmrec out/baby --out mmrec/data/baby
      mmprep export --format lattice out/baby --split-set cold --out lattice/data/baby
      mmprep export --format diffmm out/tiktok --out DiffMM/Datasets/tiktok
    """
    if name and fmt != "mmrec":
        raise PrepError("--name only applies to --format mmrec")
    if not dataset_dir.is_dir():
        raise PrepError("dataset directory not found", dataset_dir)
    with stage(f"export {fmt} {dataset_dir}"):
        extra = {"name": name} if fmt == "mmrec" else {}
        EXPORTERS[fmt](dataset_dir, out, split_set=split_set, overwrite=overwrite, **extra)
    console.print(f"{split_set} splits of {dataset_dir} exported as {fmt} -> {out}")


COMMANDS = [import_cmd, export_cmd]
