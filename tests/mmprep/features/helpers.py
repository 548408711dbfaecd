"""Helpers for the features/graph tests: tiny datasets, synthetic pictures, a tiny open_clip config, HTTP server."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from mmprep.dataset.writer import DatasetWriter, interactions_table

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_dataset(out: Path, item_ids: list[str], fields: pa.Table | None = None, name: str = "toy") -> Path:
    """A valid dataset with two users, one interaction each, and the given items."""
    n = len(item_ids)
    with DatasetWriter(out) as w:
        w.users(["u0", "u1"])
        w.items(item_ids, fields)
        table = interactions_table(np.array([0, 1]), np.array([0, min(1, n - 1)]))
        w.interactions(table)
        w.split_set("warm", {"train": table, "val": table.slice(0, 0), "test": table.slice(0, 0)})
        w.manifest.update(
            name=name, counts={"users": 2, "items": n, "interactions": 2}, features={}, graphs={}
        )
    return out


def tiny_clip_config(directory: Path) -> Path:
    """A 2-layer open_clip config (32-px images, 32-d embeddings) for fast random-weight tests."""
    path = Path(directory) / "tiny-clip-test.json"
    path.write_text(json.dumps(TINY_CLIP))
    return path


def gradient_picture(size: int = 256) -> Image.Image:
    """A smooth colour gradient with three discs."""
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.8 - 0.5 * x * y], -1)
    im = Image.fromarray((rgb * 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for cx, cy, r, c in [
        (80, 90, 40, (200, 40, 40)),
        (170, 160, 55, (240, 220, 60)),
        (120, 200, 25, (40, 90, 200)),
    ]:
        s = size / 256
        d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=c)
    return im


def stripes_picture(size: int = 256) -> Image.Image:
    """Diagonal stripes with a rectangle and a triangle."""
    y, x = np.mgrid[0:size, 0:size]
    stripes = ((x + y) // max(1, size // 16)) % 2
    im = Image.fromarray(np.where(stripes[..., None], [30, 120, 60], [220, 230, 240]).astype(np.uint8))
    d = ImageDraw.Draw(im)
    s = size / 256
    d.rectangle([60 * s, 60 * s, 190 * s, 130 * s], fill=(90, 40, 120))
    d.polygon([(30 * s, 220 * s), (128 * s, 150 * s), (230 * s, 220 * s)], fill=(250, 140, 20))
    return im


def image_bytes(im: Image.Image, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


class ImageServer:
    """An HTTP server on 127.0.0.1 serving ``{raw path: bytes}``; ``flaky[path] = n`` answers 503 n times first."""

    def __init__(self, files: dict[str, bytes], flaky: dict[str, int] | None = None):
        self.files = files
        self.flaky = dict(flaky or {})
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # the http.server API names it
                server.requests[self.path] += 1
                if server.flaky.get(self.path, 0) > 0:
                    server.flaky[self.path] -= 1
                    self.send_error(503)
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
