"""Schemas and file names of the dataset format, version 1. The single source of truth for docs/FORMAT.md."""

from __future__ import annotations

import re

import pyarrow as pa

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
USERS = "users.parquet"
ITEMS = "items.parquet"
INTERACTIONS = "interactions.parquet"
SPLIT_NAMES = ("train", "val", "test")
SPLIT_SETS = {"warm": "splits", "cold": "cold"}
COLD_ITEMS = "cold/cold_items.parquet"
FEATURES_DIR = "features"
GRAPHS_DIR = "graphs"

USER_SCHEMA = pa.schema([("user_idx", pa.int32()), ("user_id", pa.string())])
ITEM_TEXT_FIELDS = ("title", "brand", "categories", "description", "image_url", "review_text")
ITEM_SCHEMA = pa.schema(
    [
        ("item_idx", pa.int32()),
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("brand", pa.string()),
        ("categories", pa.list_(pa.string())),
        ("description", pa.string()),
        ("image_url", pa.string()),
        ("review_text", pa.string()),
    ]
)
INTERACTION_SCHEMA = pa.schema(
    [
        ("user_idx", pa.int32()),
        ("item_idx", pa.int32()),
        ("rating", pa.float32()),
        ("timestamp", pa.int64()),
    ]
)
COLD_ITEM_SCHEMA = pa.schema([("item_idx", pa.int32()), ("role", pa.string())])
COLD_ROLES = ("val", "test")
GRAPH_SCHEMA = pa.schema(
    [
        ("item_idx", pa.int32()),
        ("neighbor_idx", pa.int32()),
        ("score", pa.float32()),
        ("rank", pa.int16()),
    ]
)
GRAPH_FILE = re.compile(r"knn_([a-z0-9_]+)_k(\d+)\.parquet")


def split_path(split_set: str, split: str) -> str:
    """Relative path of one split file, e.g. ``splits/train.parquet`` or ``cold/test.parquet``."""
    return f"{SPLIT_SETS[split_set]}/{split}.parquet"


def feature_path(modality: str) -> str:
    return f"{FEATURES_DIR}/{modality}.npy"


def mask_path(modality: str) -> str:
    return f"{FEATURES_DIR}/{modality}.mask.npy"


def graph_path(name: str, k: int) -> str:
    """Relative path of a kNN graph file, e.g. ``graphs/knn_image_k10.parquet``."""
    return f"{GRAPHS_DIR}/knn_{name}_k{k}.parquet"
