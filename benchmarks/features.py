"""Feature extraction throughput: text (sentence-transformers, CLIP text tower), images (open_clip, torchvision)
from JPEG files, and the Amazon ``.b`` reader.

For each encoder it measures, on synthetic inputs in a temporary dataset:
- ``end_to_end``: ``mmprep features`` as a user runs it (model load, item text / image decoding in DataLoader
  workers, batched encoding, chunked resumable writes, fill, manifest), items/s over the whole call;
- ``encode_only``: the encoder's forward pass on ready batches (the compute limit);
- images also ``decode_only``: JPEG decode + preprocessing in the DataLoader workers without encoding (the input
  limit); end to end cannot beat ``min(decode_only, encode_only)``;
- on a GPU, the mean GPU utilisation sampled with ``nvidia-smi`` during the end-to-end run.
CLIP weights are random (``pretrained=none``, offline here): the compute is that of the real checkpoint.

    python benchmarks/features.py                                     # small CPU run
    python benchmarks/features.py --device cuda --images 20000 --texts 100000 --batch-size 512 --workers 12
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_info, sgemm_gflops

WORDS = (
    "soft baby blanket cotton stroller bottle warm kitchen knife steel toy wooden red blue organic travel "
    "portable safety seat car monitor wireless pack set of two large small premium natural bamboo"
).split()


def make_dataset(root: Path, n: int, titles: list[str] | None = None) -> Path:
    """A minimal valid dataset with ``n`` items (ids i0000000...) and optional titles."""
    from mmprep.dataset.writer import DatasetWriter, interactions_table

    with DatasetWriter(root) as w:
        w.users(["u0"])
        w.items([f"i{i:07d}" for i in range(n)], pa.table({"title": titles}) if titles else None)
        table = interactions_table(np.array([0]), np.array([0]))
        w.interactions(table)
        w.split_set("warm", {"train": table, "val": table.slice(0, 0), "test": table.slice(0, 0)})
        w.manifest.update(name="bench", counts={"users": 1, "items": n, "interactions": 1}, features={})
    return root


def synthetic_titles(n: int, seed: int = 0) -> list[str]:
    """Product-like titles of 4 to 30 words (a spread of lengths, as real item text has)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 31)))) for _ in range(n)]


def write_jpegs(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` distinct JPEG pictures (a noisy colour gradient with a random rectangle), like product photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        c = rng.random((3, 3))
        rgb = np.stack([c[j, 0] + c[j, 1] * x + c[j, 2] * y for j in range(3)], -1) / 3
        rgb += 0.05 * rng.standard_normal((size, size, 3))
        a, b = sorted(rng.integers(0, size, 2))
        rgb[a:b, a:b] = rng.random(3)
        im = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
        im.save(folder / f"i{i:07d}.jpg", quality=90)


class GpuSampler:
    """Mean GPU utilisation (percent) from ``nvidia-smi`` sampled every 0.2 s while active; None without one."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.wait(0.2):
            try:
                self.samples.append(
                    float(subprocess.run(cmd, capture_output=True, text=True).stdout.split()[0])
                )
            except (OSError, ValueError, IndexError):
                return

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(float(np.mean(self.samples)), 1) if self.samples else None


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def bench_text(work: Path, n: int, encoder: str, model: str | None, args) -> dict:
    """End-to-end ``extract_text`` and encode-only throughput of one text encoder."""
    from mmprep.features.backbones import resolve_device, resolve_precision, text_encoder
    from mmprep.features.extract import RunOptions, extract_text

    titles = synthetic_titles(n, args.seed)
    root = make_dataset(work / f"text-{encoder}", n, titles)
    device = resolve_device(args.device)
    opts = RunOptions(
        device=device, batch_size=args.batch_size, chunk_size=args.chunk_size, workers=args.workers
    )
    pretrained = "none" if encoder == "clip" else None
    with GpuSampler(device == "cuda") as gpu:
        start = time.perf_counter()
        extract_text(root, encoder=encoder, model=model, pretrained=pretrained, opts=opts)
        e2e = time.perf_counter() - start
    enc = text_encoder(encoder, model, pretrained, device, resolve_precision("auto", device), 0)
    ordered = sorted(titles, key=len, reverse=True)
    enc.encode(ordered[: args.batch_size])  # warm-up
    _sync(device)
    start = time.perf_counter()
    for s in range(0, n, args.batch_size):
        enc.encode(ordered[s : s + args.batch_size])
    _sync(device)
    encode = time.perf_counter() - start
    return {
        "task": f"text/{encoder}",
        "model": enc.describe()["model"],
        "dim": enc.dim,
        "items": n,
        "end_to_end_s": round(e2e, 3),
        "end_to_end_items_per_s": round(n / e2e, 1),
        "encode_only_items_per_s": round(n / encode, 1),
        "decode_only_items_per_s": None,
        "gpu_util_mean": gpu.mean,
    }


def bench_image(work: Path, images: Path, n: int, backbone: str, model: str | None, args) -> dict:
    """End-to-end ``extract_images`` from JPEG files, decode-only and encode-only throughput of one backbone."""
    import torch
    from torch.utils.data import DataLoader

    from mmprep.features.backbones import image_encoder, resolve_device, resolve_precision
    from mmprep.features.extract import RunOptions, extract_images
    from mmprep.features.images import ImageFiles

    root = make_dataset(work / f"image-{backbone}", n)
    device = resolve_device(args.device)
    pretrained = "none" if backbone == "clip" else None
    opts = RunOptions(
        device=device, batch_size=args.batch_size, chunk_size=args.chunk_size, workers=args.workers
    )
    with GpuSampler(device == "cuda") as gpu:
        start = time.perf_counter()
        extract_images(
            root,
            source="folder",
            image_dir=images,
            backbone=backbone,
            model=model,
            pretrained=pretrained,
            opts=opts,
        )
        e2e = time.perf_counter() - start
    enc = image_encoder(backbone, model, pretrained, device, resolve_precision("auto", device), 0)
    paths = [str(images / f"i{i:07d}.jpg") for i in range(n)]
    loader = DataLoader(
        ImageFiles(paths, enc.preprocess, enc.input_shape()),
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    start = time.perf_counter()
    for _ in loader:
        pass
    decode = time.perf_counter() - start
    batch = torch.randn((args.batch_size, *enc.input_shape()))
    enc.encode(batch)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for s in range(0, n, args.batch_size):
        enc.encode(batch[: min(args.batch_size, n - s)])
    _sync(device)
    encode = time.perf_counter() - start
    return {
        "task": f"image/{backbone}",
        "model": enc.describe()["model"],
        "dim": enc.dim,
        "items": n,
        "end_to_end_s": round(e2e, 3),
        "end_to_end_items_per_s": round(n / e2e, 1),
        "encode_only_items_per_s": round(n / encode, 1),
        "decode_only_items_per_s": round(n / decode, 1),
        "gpu_util_mean": gpu.mean,
    }


def bench_amazon_b(work: Path, n_records: int, n_items: int) -> dict:
    """Streamed parsing of an ``image_features_<Cat>.b`` file of ``n_records`` 4096-d records."""
    from mmprep.features.amazon_b import read_amazon_b, record_dtype

    path = work / "image_features_Bench.b"
    rec = record_dtype(4096)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for s in range(0, n_records, 4096):
            m = min(4096, n_records - s)
            arr = np.zeros(m, dtype=rec)
            arr["asin"] = np.char.encode(
                np.char.add("B", np.char.zfill((np.arange(s, s + m)).astype(str), 9))
            )
            arr["feat"] = rng.random((m, 4096), dtype=np.float32)
            arr.tofile(f)
    ids = pa.array([f"B{i:09d}" for i in range(0, 2 * n_items, 2)])  # half the items have a record
    start = time.perf_counter()
    _, found, _ = read_amazon_b(path, ids)
    elapsed = time.perf_counter() - start
    size = path.stat().st_size
    path.unlink()
    return {
        "task": "image/amazon-b",
        "model": "reader",
        "dim": 4096,
        "items": n_records,
        "matched": int(found.sum()),
        "end_to_end_s": round(elapsed, 3),
        "end_to_end_items_per_s": round(n_records / elapsed, 1),
        "mb_per_s": round(size / elapsed / 1e6, 1),
        "encode_only_items_per_s": None,
        "decode_only_items_per_s": None,
        "gpu_util_mean": None,
    }


def machine(device: str) -> dict:
    """What the numbers were measured on, with torch (build, threads, GPU) and an sgemm calibration."""
    import torch

    return machine_info(
        numpy_sgemm_gflops=sgemm_gflops(),
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        device=device,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=256, help="items for the sentence-transformers encoder")
    p.add_argument(
        "--clip-texts", type=int, default=64, help="items for the CLIP text tower (77-token inputs)"
    )
    p.add_argument("--images", type=int, default=64, help="JPEG files for the image encoders")
    p.add_argument("--image-size", type=int, default=256, help="side of the synthetic JPEGs (pixels)")
    p.add_argument("--b-records", type=int, default=20000, help="records of the synthetic .b file (0 = skip)")
    p.add_argument(
        "--tasks",
        default="text/sbert,text/clip,image/clip,image/torchvision,image/amazon-b",
        help="comma-separated subset of text/sbert, text/clip, image/clip, image/torchvision, image/amazon-b",
    )
    p.add_argument("--clip-model", default="ViT-B-32")
    p.add_argument("--torchvision-model", default="mobilenet_v2")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=2048)
    p.add_argument("--workers", type=int, default=2, help="DataLoader decoding workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=None, help="temporary files (default: a system temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS / "features.json")
    args = p.parse_args(argv)

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the temporary files are removed
    work = Path(tempfile.mkdtemp(prefix="mmprep-bench-features-", dir=args.work_dir))
    rows = []
    header = f"{'task':<18} {'model':<24} {'dim':>5} {'items':>7} {'e2e s':>8} {'e2e/s':>8} {'encode/s':>9} {'decode/s':>9} {'GPU %':>6}"
    print(header)
    print("-" * len(header))
    try:
        images = work / "images"
        if any(t.startswith("image/") and t != "image/amazon-b" for t in tasks):
            start = time.perf_counter()
            write_jpegs(images, args.images, args.image_size, args.seed)
            print(f"(wrote {args.images} JPEGs of {args.image_size}px in {time.perf_counter() - start:.1f}s)")
        for task in tasks:
            if task == "text/sbert":
                row = bench_text(work, args.texts, "sbert", None, args)
            elif task == "text/clip":
                row = bench_text(work, args.clip_texts, "clip", args.clip_model, args)
            elif task == "image/clip":
                row = bench_image(work, images, args.images, "clip", args.clip_model, args)
            elif task == "image/torchvision":
                row = bench_image(work, images, args.images, "torchvision", args.torchvision_model, args)
            elif task == "image/amazon-b":
                if args.b_records <= 0:
                    continue
                row = bench_amazon_b(work, args.b_records, min(args.b_records, 10000))
            else:
                raise SystemExit(f"unknown task {task!r}")
            rows.append(row)

            def fmt(v, spec):
                return format(v, spec) if v is not None else "-"

            print(
                f"{row['task']:<18} {str(row['model'])[:24]:<24} {row['dim']:>5} {row['items']:>7} "
                f"{row['end_to_end_s']:>8.2f} {row['end_to_end_items_per_s']:>8.1f} "
                f"{fmt(row['encode_only_items_per_s'], '>9.1f'):>9} {fmt(row['decode_only_items_per_s'], '>9.1f'):>9} "
                f"{fmt(row['gpu_util_mean'], '>6.1f'):>6}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.write_text(
        json.dumps({"machine": machine(args.device), "args": params, "rows": rows}, indent=2) + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
