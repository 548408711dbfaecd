"""A small hand-made dataset written through mmprep's writer, for the format tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mmprep.dataset.writer import DatasetWriter, interactions_table


def write_small(out, overwrite=False, image=None):
    """3 users x 4 items, 7 interactions split 4/2/1, an ``image`` feature [4, 2] (row 2 masked out)."""
    users = np.array([0, 0, 1, 1, 2, 2, 2])
    items = np.array([0, 1, 1, 2, 0, 2, 3])
    rating = np.array([5, 4, 3, 5, 1, 2, 5], dtype=np.float32)
    ts = np.arange(7, dtype=np.int64) * 100
    label = np.array([0, 1, 0, 2, 0, 0, 1])
    with DatasetWriter(out, overwrite=overwrite) as w:
        w.users(["ua", "ub", "uc"])
        fields = pa.table({"item_id": ["i0", "i1", "i2", "i3"], "title": ["A", None, "C", "D"]})
        w.items(["i0", "i1", "i2", "i3"], fields)
        w.interactions(interactions_table(users, items, rating, ts))
        w.split_set(
            "warm",
            {
                n: interactions_table(
                    users[label == c], items[label == c], rating[label == c], ts[label == c]
                )
                for c, n in enumerate(("train", "val", "test"))
            },
        )
        feat = np.arange(8, dtype=np.float32).reshape(4, 2) if image is None else image
        w.feature("image", feat, np.array([True, True, False, True]))
        w.manifest.update(
            name="small", counts={"users": 3, "items": 4, "interactions": 7}, features={"image": {}}
        )
    return users, items, rating, ts, label
