"""mmtrain data side: reading a dataset directory (only docs/FORMAT.md), split interactions, the BPR sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmformat.errors import FormatError
from mmtrain.data import BPRSampler, DatasetDir, Interactions, load_data
from mmtrain.errors import TrainError
from tests.mmtrain.helpers import (
    SHARED_DATA,
    random_dataset,
    write_dataset,
)


def test_load_hand_made_dataset(tmp_path):
    root = write_dataset(
        tmp_path / "toy",
        {"train": [(0, 0), (0, 2), (1, 1), (2, 3)], "val": [(0, 1)], "test": [(1, 2), (2, 0)]},
        n_users=4,
        n_items=5,
        features={"image": np.arange(15, dtype=np.float16).reshape(5, 3)},
    )
    data = load_data(root)
    assert (data.n_users, data.n_items) == (4, 5)  # user 3 and item 4 have no interaction
    assert data.train.users.tolist() == [0, 0, 1, 2] and data.train.items.tolist() == [0, 2, 1, 3]
    assert data.train.counts.tolist() == [2, 1, 1, 0]
    assert data.test.users_with_items().tolist() == [1, 2]
    assert data.modalities() == ["image"]
    assert data.feature("image").dtype == torch.float32 and data.feature("image")[4].tolist() == [12, 13, 14]
    assert data.feature_mask("image").all()
    with pytest.raises(FormatError, match="no 'text' features"):
        data.feature("text")
    with pytest.raises(FormatError, match="no cold splits"):
        load_data(root, split="cold")


def test_interactions_contains_and_rows():
    inter = Interactions(torch.tensor([2, 0, 0, 2, 0]), torch.tensor([1, 3, 0, 1, 2]), 3, 4)  # (2,1) twice
    assert len(inter) == 4 and inter.counts.tolist() == [3, 0, 1]
    users = torch.tensor([[0, 0], [1, 2]])
    items = torch.tensor([[3, 1], [3, 1]])
    assert inter.contains(users, items).tolist() == [[True, False], [False, True]]
    rows, items = inter.rows_of(torch.tensor([2, 1, 0]))
    assert rows.tolist() == [0, 2, 2, 2] and items.tolist() == [1, 0, 2, 3]


def test_reader_rejects_bad_datasets(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=10, n_items=12, per_user=4)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(FormatError, match="format_version 2 is not supported"):
        DatasetDir(root)
    (root / "manifest.json").write_text(
        json.dumps({**manifest, "counts": {**manifest["counts"], "items": 5}})
    )
    with pytest.raises(FormatError, match=r"splits/train.parquet:\d+: item_idx \d+ out of range \[0, 5\)"):
        load_data(root)
    with pytest.raises(FormatError, match="not a dataset directory"):
        DatasetDir(tmp_path)
    with pytest.raises(FormatError, match="dataset directory not found"):
        DatasetDir(tmp_path / "nope")


def test_reader_checks_stored_graphs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = random_dataset(tmp_path / "rand", n_users=10, n_items=6, per_user=3, features=True)
    item = np.repeat(np.arange(6), 2).astype(np.int32)
    neighbor = ((item + np.tile([1, 2], 6)) % 6).astype(np.int32)
    score = np.tile(np.array([0.9, 0.5], np.float32), 6)
    rank = np.tile(np.arange(2, dtype=np.int16), 6)
    path = root / "graphs" / "knn_image_k2.parquet"
    path.parent.mkdir()

    def write(**cols):
        base = {"item_idx": item, "neighbor_idx": neighbor, "score": score, "rank": rank}
        pq.write_table(pa.table({k: pa.array(v) for k, v in {**base, **cols}.items()}), path)

    write()
    idx, val = DatasetDir(root).read_graph(path)
    assert idx.tolist() == neighbor.reshape(6, 2).tolist() and val[:, 0].tolist() == pytest.approx([0.9] * 6)
    write(rank=np.zeros(12, np.int16))
    with pytest.raises(
        FormatError, match=r"knn_image_k2.parquet: items do not each have exactly 2 neighbours"
    ):
        DatasetDir(root).read_graph(path)
    write(score=np.where(np.arange(12) == 7, np.nan, score).astype(np.float32))
    with pytest.raises(FormatError, match=r"knn_image_k2.parquet:8: score nan is not finite"):
        DatasetDir(root).read_graph(path)
    write(neighbor_idx=np.where(np.arange(12) == 3, 6, neighbor).astype(np.int32))
    with pytest.raises(FormatError, match=r"knn_image_k2.parquet:4: neighbor_idx 6 out of range \[0, 6\)"):
        load_data(root).item_knn("image", 2, include_self=False)
    write(score=score.astype(np.float64))
    with pytest.raises(FormatError, match="column score is double, expected float"):
        DatasetDir(root).read_graph(path)


def test_sampler_never_returns_a_positive_and_is_seeded():
    # user 0 has every item but 4 as a positive: its only possible negative is 4
    users = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    items = torch.tensor([0, 1, 2, 3, 4, 0, 4])
    train = Interactions(users, items, 3, 5)
    sampler = BPRSampler(train, batch_size=3, generator=torch.Generator().manual_seed(7))
    assert len(sampler) == 3
    for _ in range(200):
        batches = list(sampler.epoch())
        u = torch.cat([b.users for b in batches])
        p = torch.cat([b.pos_items for b in batches])
        n = torch.cat([b.neg_items for b in batches])
        # every training pair exactly once per epoch
        assert sorted(zip(u.tolist(), p.tolist(), strict=True)) == sorted(
            zip(train.users.tolist(), train.items.tolist(), strict=True)
        )
        assert not train.contains(u, n).any()
        assert n[u == 0].eq(4).all()
    a = list(BPRSampler(train, 4, torch.Generator().manual_seed(1)).epoch())
    b = list(BPRSampler(train, 4, torch.Generator().manual_seed(1)).epoch())
    assert all(torch.equal(x, y) for ba, bb in zip(a, b, strict=True) for x, y in zip(ba, bb, strict=True))
    with pytest.raises(TrainError, match="user 0 has every candidate item"):
        BPRSampler(Interactions(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 2, 2), 2, torch.Generator())


def test_user_sampler_draws_distinct_users_uniformly_with_one_positive_each():
    # user 0: 6 positives, users 1 and 3: one each, user 2: none (never drawn); 8 pairs, batch 2 -> 8//2+1 = 5
    users = torch.tensor([0, 0, 0, 0, 0, 0, 1, 3])
    items = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    train = Interactions(users, items, 4, 9)
    sampler = BPRSampler(train, 2, torch.Generator().manual_seed(3), pool="all", mode="users")
    assert len(sampler) == 5
    drawn = {0: 0, 1: 0, 3: 0}
    firsts = torch.zeros(6)
    for _ in range(400):
        batches = list(sampler.epoch())
        assert len(batches) == 5
        for batch in batches:
            assert batch.users.shape == (2,) and batch.users[0] != batch.users[1]  # distinct within a batch
            assert train.contains(batch.users, batch.pos_items).all()
            assert not train.contains(batch.users, batch.neg_items).any()
            for user, pos in zip(batch.users.tolist(), batch.pos_items.tolist(), strict=True):
                drawn[user] += 1
                if user == 0:
                    firsts[pos] += 1
    # users are uniform (1/3 each of 4000 draws), not weighted by their 6:1:1 pair counts as in "pairs" mode
    assert all(abs(count / 4000 - 1 / 3) < 0.03 for count in drawn.values()), drawn
    # user 0's positive is uniform over its 6 items
    assert ((firsts / firsts.sum() - 1 / 6).abs() < 0.03).all(), firsts
    many = BPRSampler(
        train, 5, torch.Generator().manual_seed(3), mode="users"
    )  # B > 3 users: with replacement
    assert all(len(b.users) == 5 for b in many.epoch())
    with pytest.raises(TrainError, match=r"^unknown sampler 'items' \(choose pairs or users\)$"):
        BPRSampler(train, 2, torch.Generator(), mode="items")


def test_sampler_pools_on_real_tiktok(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    from mmprep.interop import import_diffmm

    data = load_data(import_diffmm(SHARED_DATA / "tiktok-mmssl", tmp_path / "tiktok"))
    assert (len(data.train), len(data.val), len(data.test)) == (59541, 3051, 6130)
    train_items = data.train.item_set()
    for pool in ("train", "all"):
        sampler = BPRSampler(data.train, 2048, torch.Generator().manual_seed(0), pool=pool)
        batches = list(sampler.epoch())
        negatives = torch.cat([b.neg_items for b in batches])
        users = torch.cat([b.users for b in batches])
        assert len(negatives) == 59541
        assert not data.train.contains(users, negatives).any()
        if pool == "train":
            assert torch.isin(negatives, train_items).all()
    # 465 items occur only in val/test: the "all" pool may draw them, the "train" pool never does
    assert data.n_items - len(train_items) == 465


def test_mmtrain_does_not_import_mmprep():
    import subprocess
    import sys

    code = (
        "import sys, mmtrain.cli, mmtrain.experiment, mmtrain.models, mmtrain.runs, mmtrain.search;"
        "mmtrain.models.available(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'mmprep'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
