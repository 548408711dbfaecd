"""Features on Ray Data: items/s of ``mmprep features --modality text`` with the local engine and with Ray
(1 and 2 encoder actors), MiniLM on MovieLens-100k titles repeated to ``--texts`` items.

Each configuration runs on a fresh copy of the dataset, end to end as a user runs it (model loads, text
building, batched encoding, chunk writes, fill, manifest); a local Ray is started once before the Ray rows
(its start-up time is reported apart). ``steady items/s`` is measured between the first and the last chunk
saved, so it leaves out the model and actor start-up. Every Ray row also records whether its ``text.npy`` is
byte-identical to the local engine's. Results are written after each row.

    python benchmarks/features_ray.py                                   # CPU: local, ray 1 and 2 CPU actors
    python benchmarks/features_ray.py --device cuda --address auto --gpus-per-worker 1 --configs local,ray:1,ray:8 \\
        --texts 200000 --batch-size 512 --chunk-size 8192
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, SHARED, machine_info
from features import make_dataset

U_ITEM = SHARED / "movielens-100k" / "u.item"


def movielens_titles(n: int) -> list[str]:
    """The 1,682 MovieLens-100k titles, repeated in order to ``n`` items."""
    table = pacsv.read_csv(
        U_ITEM,
        parse_options=pacsv.ParseOptions(delimiter="|", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={"title": pa.string()}),
    )
    titles = table.column("title").to_pylist()
    return [titles[i % len(titles)] for i in range(n)]


def run_config(work: Path, titles: list[str], config: str, args) -> tuple[dict, Path]:
    """One end-to-end extraction; returns its row and the dataset directory."""
    from mmprep.features.chunked import ChunkStore
    from mmprep.features.extract import RunOptions, extract_text
    from mmprep.features.ray_engine import RayOptions

    engine, _, workers = config.partition(":")
    ray = None
    if engine == "ray":
        ray = RayOptions(
            address=args.address, workers=int(workers or 1), gpus_per_worker=args.gpus_per_worker
        )
    root = make_dataset(work / config.replace(":", "-"), len(titles), titles)
    saves: list[tuple[float, int]] = []
    original = ChunkStore.save

    def timed_save(self, chunk, vectors, ok):  # when each chunk lands, for the steady-state rate
        original(self, chunk, vectors, ok)
        saves.append((time.perf_counter(), len(vectors)))

    ChunkStore.save = timed_save
    opts = RunOptions(device=args.device, batch_size=args.batch_size, chunk_size=args.chunk_size)
    try:
        start = time.perf_counter()
        entry = extract_text(root, fields=["title"], opts=opts, ray=ray)
        seconds = time.perf_counter() - start
    finally:
        ChunkStore.save = original
    steady = None
    if len(saves) > 1:
        steady = sum(n for _, n in saves[1:]) / (saves[-1][0] - saves[0][0])
    row = {
        "config": config,
        "engine": engine,
        "workers": int(workers) if workers else None,
        "gpus_per_worker": args.gpus_per_worker if ray else None,
        "items": len(titles),
        "chunks": len(saves),
        "seconds": round(seconds, 2),
        "items_per_s": round(len(titles) / seconds, 1),
        "first_chunk_s": round(saves[0][0] - start, 2) if saves else None,
        "steady_items_per_s": round(steady, 1) if steady else None,
        "model": entry["model"],
        "dim": entry["dim"],
    }
    return row, root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=5046, help="items (MovieLens titles, 3 copies by default)")
    p.add_argument(
        "--configs", default="local,ray:1,ray:2", help="local and/or ray:<workers>, comma-separated"
    )
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=512)
    p.add_argument("--address", default=None, help="Ray cluster (auto, HOST:PORT); default: a local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "features-ray.json")
    args = p.parse_args(argv)

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    titles = movielens_titles(args.texts)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mmprep-bench-features-ray-", dir=args.work_dir))
    result = {
        "machine": machine_info(
            ray_memory_monitor_refresh_ms=os.environ.get("RAY_memory_monitor_refresh_ms"),
        ),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": [],
    }
    header = f"{'config':<8} {'items':>6} {'seconds':>8} {'items/s':>8} {'1st chunk s':>11} {'steady/s':>9} {'same bytes':>10}"
    print(header)
    print("-" * len(header))
    local_bytes = None
    try:
        for config in configs:
            if config.startswith("ray") and "ray_init_s" not in result:
                import ray

                start = time.perf_counter()
                kwargs = (
                    {"address": args.address}
                    if args.address
                    else {"address": "local", "num_cpus": args.num_cpus}
                )
                ray.init(**kwargs, include_dashboard=False, configure_logging=False, log_to_driver=False)
                result["ray_init_s"] = round(time.perf_counter() - start, 2)
                result["ray_resources"] = ray.cluster_resources()
                print(f"(ray.init: {result['ray_init_s']} s, {result['ray_resources']})")
            row, root = run_config(work, titles, config, args)
            data = (root / "features" / "text.npy").read_bytes()
            if config == "local":
                local_bytes = data
            row["identical_to_local"] = None if local_bytes is None else data == local_bytes
            row["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
            result["rows"].append(row)
            shutil.rmtree(root, ignore_errors=True)
            same = "-" if row["identical_to_local"] is None else str(row["identical_to_local"])
            print(
                f"{config:<8} {row['items']:>6} {row['seconds']:>8.1f} {row['items_per_s']:>8.1f} "
                f"{row['first_chunk_s'] or 0:>11.1f} {row['steady_items_per_s'] or 0:>9.1f} {same:>10}",
                flush=True,
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if "ray" in sys.modules:
            sys.modules["ray"].shutdown()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
