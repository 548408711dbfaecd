"""``mmprep features``: item feature matrices (text, image) for a dataset, resumable."""

from __future__ import annotations

from pathlib import Path

import click

from mmprep.errors import PrepError
from mmprep.features.amazon_b import DEFAULT_DIM
from mmprep.features.extract import (
    FILL_POLICIES,
    DownloadOptions,
    RunOptions,
    extract_images,
    extract_text,
    import_amazon_b,
)
from mmprep.features.ray_engine import ENGINES, RayOptions, require_ray
from mmprep.features.text import DEFAULT_FIELDS
from mmprep.progress import console


def _source(modality: str, source: str | None, image_dir: Path | None, b_file: Path | None) -> str:
    if modality == "text":
        if source not in (None, "fields"):
            raise PrepError(f"--modality text reads item fields; --source {source} is for images")
        return "fields"
    if source is not None:
        return source
    if image_dir is not None:
        return "folder"
    if b_file is not None:
        return "amazon-b"
    return "url"


def _ray_options(
    engine: str, address: str | None, workers: int, gpus_per_worker: float, source: str
) -> RayOptions | None:
    """The Ray engine's settings, or None for the local engine (where the Ray-only options are refused)."""
    if engine == "local":
        if address is not None or gpus_per_worker:
            raise PrepError("--address and --gpus-per-worker are for --engine ray")
        return None
    if source == "amazon-b":
        raise PrepError("--source amazon-b only reads a file; it runs with --engine local")
    if workers < 1 or gpus_per_worker < 0:
        raise PrepError("--engine ray needs --workers >= 1 and --gpus-per-worker >= 0")
    require_ray()
    return RayOptions(address=address, workers=workers, gpus_per_worker=gpus_per_worker)


@click.command("features")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--modality", type=click.Choice(["text", "image"]), required=True, help="What to encode.")
@click.option("--name", default=None, help="Output name features/<name>.npy (default: the modality).")
@click.option(
    "--source",
    type=click.Choice(["fields", "folder", "url", "amazon-b"]),
    default=None,
    help="Images: folder (--image-dir), url (items.parquet image_url or --url-file) or amazon-b (--b-file). "
    "Default: inferred from the options given (url when none).",
)
@click.option(
    "--fields",
    default=None,
    help=f"Text: comma-separated item fields, joined by spaces (default: those of {','.join(DEFAULT_FIELDS)} "
    "that the items have, else review_text; also all_categories = every category path).",
)
@click.option("--template", default=None, help='Text: e.g. "{title}. Brand: {brand}. {description}".')
@click.option(
    "--encoder",
    type=click.Choice(["sbert", "clip"]),
    default="sbert",
    show_default=True,
    help="Text: sentence-transformers, or the text tower of an open_clip model.",
)
@click.option(
    "--backbone",
    type=click.Choice(["clip", "torchvision", "timm"]),
    default="clip",
    show_default=True,
    help="Image: open_clip image tower, or a torchvision / timm classifier's penultimate layer.",
)
@click.option(
    "--model",
    default=None,
    help="Hub name or local path. Defaults: sbert sentence-transformers/all-MiniLM-L6-v2, clip ViT-B-32 "
    "(or an open_clip .json config), torchvision mobilenet_v2, timm resnet50.",
)
@click.option(
    "--pretrained",
    default=None,
    help="clip: tag (default openai), checkpoint file or none (random, seeded); torchvision: imagenet "
    "(default), a weights name, a .pth file or none; timm: hub (default, the model's pretrained tag), a "
    "checkpoint file or none.",
)
@click.option(
    "--normalize/--no-normalize", default=False, show_default=True, help="L2-normalise each vector."
)
@click.option(
    "--fill",
    type=click.Choice(FILL_POLICIES),
    default="mean",
    show_default=True,
    help="Rows of items with no text/image: mean of the present rows (MMRec) or zeros; the mask records them.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "fp16"]),
    default="auto",
    show_default=True,
    help="auto = fp16 on GPU, fp32 on CPU.",
)
@click.option("--batch-size", default=64, show_default=True, help="Items per encoder batch.")
@click.option(
    "--chunk-size",
    default=2048,
    show_default=True,
    help="Items per saved chunk; a killed run resumes from the last complete chunk.",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    help="local: image decoding processes (DataLoader workers); ray: encoder actors, each with its own copy "
    "of the model (one per GPU with --gpus-per-worker 1).",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="local: this process; ray: text building and image decoding in Ray CPU tasks, encoding on --workers "
    "model actors (pip install 'modalrec[ray]'). Same output, same resumable chunks.",
)
@click.option(
    "--address",
    default=None,
    help="ray: the cluster to join (auto, or HOST:PORT); default: start a local Ray on this machine.",
)
@click.option(
    "--gpus-per-worker",
    type=float,
    default=0.0,
    show_default=True,
    help="ray: GPUs per encoder actor (1 = one actor per GPU, 0.5 = two share one); 0 = CPU actors.",
)
@click.option("--seed", default=0, show_default=True, help="Seed for random weights (--pretrained none).")
@click.option(
    "--image-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of <item_id>.<ext>.",
)
@click.option(
    "--url-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV with item_id or asin and image_url/imUrl/url columns, instead of items.parquet image_url.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Downloaded images (default ~/.cache/modalrec/images).",
)
@click.option("--download-workers", default=16, show_default=True, help="Concurrent downloads.")
@click.option("--retries", default=3, show_default=True, help="Retries of a transient download error.")
@click.option("--timeout", default=20.0, show_default=True, help="Seconds per download attempt.")
@click.option(
    "--failure-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TSV of failed downloads (default <cache-dir>/failures.tsv).",
)
@click.option(
    "--b-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Amazon 2014 image_features_<Cat>.b.",
)
@click.option("--b-dim", default=DEFAULT_DIM, show_default=True, help="Floats per .b record.")
def features_cmd(
    dataset_dir: Path,
    modality: str,
    name: str | None,
    source: str | None,
    fields: str | None,
    template: str | None,
    encoder: str,
    backbone: str,
    model: str | None,
    pretrained: str | None,
    normalize: bool,
    fill: str,
    device: str,
    precision: str,
    batch_size: int,
    chunk_size: int,
    workers: int,
    engine: str,
    address: str | None,
    gpus_per_worker: float,
    seed: int,
    image_dir: Path | None,
    url_file: Path | None,
    cache_dir: Path | None,
    download_workers: int,
    retries: int,
    timeout: float,
    failure_log: Path | None,
    b_file: Path | None,
    b_dim: int,
) -> None:
    """Encode item text or images of DATASET_DIR into features/<name>.npy (row i = item_idx i) and a mask.

    Items with no text/image are masked out and filled (--fill). Work is saved in chunks: a run that is
    interrupted (even with kill -9) continues where it stopped when started again with the same options.

    \b
    Examples:
      mmprep features out/baby --modality text
      mmprep features out/baby --modality text --fields title,description --normalize
      mmprep features out/baby --modality image --image-dir images/
      mmprep features out/baby --modality image --source url --url-file baby_url.csv
      mmprep features out/baby --modality image --b-file image_features_Baby.b
      mmprep features out/baby --modality image --image-dir images/ --backbone torchvision --model resnet50
      mmprep features out/baby --modality image --image-dir images/ --backbone timm --model convnext_tiny
      mmprep features out/baby --modality text --encoder clip --name text_clip
      mmprep features out/baby --modality text --engine ray --workers 2
      mmprep features out/baby --modality image --image-dir images/ --engine ray --address auto --workers 8 --gpus-per-worker 1
    """
    if not dataset_dir.is_dir():
        raise PrepError("dataset directory not found", dataset_dir)
    if batch_size < 1 or chunk_size < 1:
        raise PrepError("--batch-size and --chunk-size must be >= 1")
    name = name or modality
    src = _source(modality, source, image_dir, b_file)
    ray = _ray_options(engine, address, workers, gpus_per_worker, src)
    opts = RunOptions(
        device=device,
        precision=precision,
        batch_size=batch_size,
        chunk_size=chunk_size,
        workers=workers,
        normalize=normalize,
        fill=fill,
        seed=seed,
    )
    if src == "fields":
        field_list = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
        entry = extract_text(
            dataset_dir,
            name=name,
            fields=field_list,
            template=template,
            encoder=encoder,
            model=model,
            pretrained=pretrained,
            opts=opts,
            ray=ray,
        )
    elif src == "amazon-b":
        if b_file is None:
            raise PrepError("--source amazon-b needs --b-file")
        entry = import_amazon_b(dataset_dir, b_file, name=name, dim=b_dim, fill=fill, normalize=normalize)
    else:
        download = DownloadOptions(
            url_file=url_file,
            cache_dir=cache_dir,
            workers=download_workers,
            retries=retries,
            timeout=timeout,
            failure_log=failure_log,
        )
        entry = extract_images(
            dataset_dir,
            name=name,
            source=src,
            image_dir=image_dir,
            download=download,
            backbone=backbone,
            model=model,
            pretrained=pretrained,
            opts=opts,
            ray=ray,
        )
    console.print(
        f"features/{name}.npy: d={entry['dim']}, {entry['present']:,} items with {modality}, "
        f"{entry['missing']:,} filled ({entry['fill']})"
    )


COMMANDS = [features_cmd]
