"""Decode image files in DataLoader workers and encode them in batches."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)


class ImageFiles:
    """A map-style dataset: item position -> (preprocessed tensor, decoded ok). Unreadable files give zeros."""

    def __init__(self, paths: Sequence[str | None], preprocess, shape: tuple[int, ...]):
        self.paths = list(paths)
        self.preprocess = preprocess
        self.shape = shape

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        path = self.paths[i]
        if path is not None:
            try:
                with Image.open(path) as im:
                    return self.preprocess(im.convert("RGB")), True
            except Exception as e:  # any decoder error means "no usable image"
                log.warning("%s: cannot decode image (%s: %s)", path, type(e).__name__, e)
        return torch.zeros(self.shape), False


def encode_image_batches(
    encoder, paths: Sequence[str | None], batches: list[np.ndarray], workers: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(vectors, ok)`` for each batch of item indices, decoding in ``workers`` processes."""
    from torch.utils.data import DataLoader

    if not batches:
        return
    dataset = ImageFiles(paths, encoder.preprocess, encoder.input_shape())
    loader = DataLoader(
        dataset,
        batch_sampler=[b.tolist() for b in batches],
        num_workers=workers,
        pin_memory=getattr(encoder, "device", "cpu") == "cuda",
    )
    for images, ok in loader:
        ok = ok.numpy().astype(bool)
        vectors = encoder.encode(images)
        vectors[~ok] = 0.0
        yield vectors, ok
