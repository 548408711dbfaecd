"""``mmprep graph``: item-item kNN graphs (FAISS) from a dataset's features, per modality and fused."""

from __future__ import annotations

from pathlib import Path

import click

from mmprep.errors import PrepError
from mmprep.graph.build import GraphOptions, add_graphs
from mmprep.graph.knn import GPU_LAYOUTS, INDEX_TYPES
from mmprep.progress import console


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise PrepError(f"--fuse wants comma-separated numbers, got {text!r}") from None


@click.command("graph")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--modality",
    "modalities",
    multiple=True,
    required=True,
    help="Feature modality to build a graph for (repeat for several, e.g. --modality image --modality text).",
)
@click.option(
    "--k", default=10, show_default=True, help="Neighbours per item (knn_k of LATTICE/FREEDOM/MICRO)."
)
@click.option(
    "--index",
    type=click.Choice(INDEX_TYPES),
    default="exact",
    show_default=True,
    help="exact = FAISS IndexFlatIP in query blocks; ivf / hnsw = approximate, with recall@k reported.",
)
@click.option(
    "--fuse",
    "fuse",
    default=None,
    metavar="W1,W2,...",
    help="Also write graphs/knn_fused_k<k>.parquet: top-k of sum_m w_m*cos_m, one weight per --modality.",
)
@click.option("--fused-only", is_flag=True, help="With --fuse, skip the per-modality graphs.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto searches on a GPU when present: a FAISS GPU index with faiss-gpu, else torch (exact only).",
)
@click.option(
    "--gpus",
    default=None,
    metavar="all|N",
    help="Spread the FAISS index over all (or N) GPUs (needs faiss-gpu); same graph as one GPU.",
)
@click.option(
    "--gpu-layout",
    type=click.Choice(GPU_LAYOUTS),
    default="auto",
    show_default=True,
    help="With --gpus: replicate the index on every GPU, or shard it; auto shards when it fills half a GPU.",
)
@click.option(
    "--block-size", default=4096, show_default=True, help="Query rows searched at once (bounds memory)."
)
@click.option("--nlist", type=int, default=None, help="IVF lists (default 4*sqrt(N)).")
@click.option(
    "--nprobe", type=int, default=None, help="IVF lists probed per query (default max(16, nlist/8))."
)
@click.option("--hnsw-m", type=int, default=None, help="HNSW links per node (default 32).")
@click.option("--ef-search", type=int, default=None, help="HNSW search breadth (default 128).")
@click.option(
    "--recall-sample",
    default=1000,
    show_default=True,
    help="Items checked against exact search to report recall@k of an approximate index (0 = skip).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of IVF training and of the recall sample.")
def graph_cmd(
    dataset_dir: Path,
    modalities: tuple[str, ...],
    k: int,
    index: str,
    fuse: str | None,
    fused_only: bool,
    device: str,
    gpus: str | None,
    gpu_layout: str,
    block_size: int,
    nlist: int | None,
    nprobe: int | None,
    hnsw_m: int | None,
    ef_search: int | None,
    recall_sample: int,
    seed: int,
) -> None:
    """Build cosine kNN graphs of DATASET_DIR's item features into DATASET_DIR/graphs/.

    Each item gets its k most similar items (self excluded; equal scores: lower item index first), written as
    graphs/knn_<modality>_k<k>.parquet (item_idx, neighbor_idx, score, rank). No N x N matrix is built.
    The reference models' self loop (similarity 1) is added at load time by mmtrain, not stored.

    \b
    Examples:
      mmprep graph out/baby --modality image
      mmprep graph out/baby --modality image --modality text --fuse 0.1,0.9
      mmprep graph out/big --modality image --index hnsw --k 20
      mmprep graph out/big --modality image --index ivf --device cuda --gpus all
    """
    if not dataset_dir.is_dir():
        raise PrepError("dataset directory not found", dataset_dir)
    if fused_only and fuse is None:
        raise PrepError("--fused-only needs --fuse")
    opts = GraphOptions(
        k=k,
        index=index,
        device=device,
        gpus=gpus,
        gpu_layout=gpu_layout,
        block_size=block_size,
        recall_sample=recall_sample,
        seed=seed,
        nlist=nlist,
        nprobe=nprobe,
        hnsw_m=hnsw_m,
        ef_search=ef_search,
    )
    written = add_graphs(dataset_dir, list(modalities), opts, _weights(fuse), per_modality=not fused_only)
    for path, entry in written.items():
        recall = f", recall@{k} {entry['recall_at_k']:.4f}" if "recall_at_k" in entry else ""
        console.print(
            f"{path}: {entry['rows']:,} edges, {entry['index']} on {entry['backend']}, "
            f"{entry['build_seconds']:.1f}s{recall}"
        )


COMMANDS = [graph_cmd]
