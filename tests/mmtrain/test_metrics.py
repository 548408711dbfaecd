"""mmtrain evaluator: metric formulas against hand-computed values, ties, masking, skipped users, cold-start."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mmprep.split.cold_dataset import add_cold_split
from mmtrain.data import load_data
from mmtrain.errors import TrainError
from mmtrain.evaluator import Evaluator, ranking_metrics, stable_topk
from mmtrain.per_user import per_user_path, read_per_user, write_per_user
from tests.mmtrain.helpers import (
    FixedScores,
    random_dataset,
    write_dataset,
)

L2, L3, L4, L5 = (math.log2(x) for x in (2, 3, 4, 5))


def test_metrics_hand_computed_including_fewer_positives_than_k():
    # user 0: |T| = 3, hits at ranks 1 and 3; user 1: |T| = 1 (< K), hit at rank 2; user 2: |T| = 2, no hit
    hits = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    m = ranking_metrics(hits, torch.tensor([3, 1, 2]), [2, 5], legacy_ndcg=True)
    expected = {
        "recall@2": [1 / 3, 1.0, 0.0],
        "recall@5": [2 / 3, 1.0, 0.0],
        "precision@2": [0.5, 0.5, 0.0],
        "precision@5": [0.4, 0.2, 0.0],
        "hit@2": [1.0, 1.0, 0.0],
        "hit@5": [1.0, 1.0, 0.0],
        "ndcg@2": [(1 / L2) / (1 / L2 + 1 / L3), (1 / L3) / (1 / L2), 0.0],
        "ndcg@5": [(1 / L2 + 1 / L4) / (1 / L2 + 1 / L3 + 1 / L4), (1 / L3) / (1 / L2), 0.0],
        # MAP@K = 1/min(|T|,K) * sum_k r_k * P@k
        "map@2": [(1 / 2) * 1.0, 1.0 * (1 / 2), 0.0],
        "map@5": [(1 / 3) * (1 + 2 / 3), 1.0 * (1 / 2), 0.0],
        # LATTICE: IDCG over min(K, hits in the top-5 list)
        "ndcg_lattice@2": [(1 / L2) / (1 / L2 + 1 / L3), (1 / L3) / (1 / L2), 0.0],
        "ndcg_lattice@5": [(1 / L2 + 1 / L4) / (1 / L2 + 1 / L3), (1 / L3) / (1 / L2), 0.0],
    }
    assert set(m) == set(expected)
    for name, values in expected.items():
        assert m[name].tolist() == pytest.approx(values, abs=1e-12), name


def test_lattice_ndcg_example_from_the_reference():
    # |T| = 2, one hit at rank 1: LATTICE-family NDCG 1.0, standard 1 / (1 + 1/log2 3) = 0.6131
    m = ranking_metrics(torch.tensor([[True, False]]), torch.tensor([2]), [2], legacy_ndcg=True)
    assert m["ndcg_lattice@2"].item() == 1.0
    assert m["ndcg@2"].item() == pytest.approx(0.61315, abs=1e-5)


def test_stable_topk_breaks_ties_by_lower_index():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1, 0.9], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    values, index = stable_topk(scores, 4)
    assert index.tolist() == [[1, 5, 0, 2], [0, 1, 2, 3]]
    assert torch.equal(values, torch.tensor([[0.9, 0.9, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0]]))
    gen = torch.Generator().manual_seed(0)
    many = torch.randint(0, 5, (64, 300), generator=gen).float()
    many[:, 7] = float("-inf")
    _, reference = torch.sort(many, dim=1, descending=True, stable=True)
    for k in (1, 10, 50, 300):
        assert torch.equal(stable_topk(many, k)[1], reference[:, :k])


def test_evaluator_with_ties_masking_and_short_lists(tmp_path):
    # 3 users x 6 items; user 0: train {1}, val {4}, test {3}; user 1: train {0}, val {1}, test {2, 5}
    root = write_dataset(
        tmp_path / "toy",
        {"train": [(0, 1), (1, 0)], "val": [(0, 4), (1, 1)], "test": [(0, 3), (1, 2), (1, 5)]},
        n_users=3,
        n_items=6,
    )
    data = load_data(root)
    scores = torch.tensor(
        [
            [0.5, 0.9, 0.5, 0.5, 2.0, 0.9],  # 1 (train) and 4 (val) masked -> 5, 0, 2, 3 (ties by index)
            [3.0, 2.0, 0.1, 0.2, 0.2, 0.3],  # 0 (train), 1 (val) masked -> 5, 3, 4, 2
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # user 2 has no test item: skipped
        ]
    )
    model = FixedScores(scores)
    ev = Evaluator(data, topk=[1, 3, 4, 10])
    users, top = ev.top_items(model, "test")
    assert users.tolist() == [0, 1]
    # Kmax = min(10, 6 items); masked items are listed as -1 at the end of the list
    assert top.tolist() == [[5, 0, 2, 3, -1, -1], [5, 3, 4, 2, -1, -1]]
    m = ev.evaluate(model, "test")
    assert m["n_users"] == 2
    assert m["recall@1"] == pytest.approx((0 + 1 / 2) / 2)
    assert m["recall@3"] == pytest.approx((0 + 1 / 2) / 2)
    assert m["recall@4"] == pytest.approx((1 + 1) / 2)
    assert m["precision@10"] == pytest.approx((1 / 10 + 2 / 10) / 2)
    assert m["ndcg@4"] == pytest.approx((1 / L5 + (1 / L2 + 1 / L5) / (1 / L2 + 1 / L3)) / 2)
    assert m["hit@1"] == pytest.approx(0.5)
    assert m["map@4"] == pytest.approx(((1 / 4) + (1 / 2) * (1 + 2 / 4)) / 2)
    # without masking val at test time (MMRec / LATTICE behaviour) user 0's val item 4 ranks first
    plain = Evaluator(data, topk=[1, 3], mask_val_at_test=False)
    assert plain.top_items(model, "test")[1][:, :3].tolist() == [[4, 5, 0], [1, 5, 3]]
    # validation: only train is masked; user 1's val item 1 is at rank 1, user 0's val item 4 at rank 1
    val = ev.evaluate(model, "val")
    assert val["recall@1"] == 1.0 and val["n_users"] == 2


def test_train_and_val_items_never_in_test_top_k(tmp_path):
    data = load_data(random_dataset(tmp_path / "rand", n_users=50, n_items=30))
    gen = torch.Generator().manual_seed(3)
    model = FixedScores(torch.rand(50, 30, generator=gen))
    # score every train and val pair above everything else: masking must still remove them
    model.scores[data.train.users, data.train.items] = 10.0
    model.scores[data.val.users, data.val.items] = 9.0
    users, top = Evaluator(data, topk=[10, 20]).top_items(model, "test")
    assert len(users) == 50
    rows = users.unsqueeze(1).expand_as(top)
    valid = top >= 0
    assert not data.train.contains(rows[valid], top[valid]).any()
    assert not data.val.contains(rows[valid], top[valid]).any()
    assert valid.sum(1).tolist() == [20] * 50  # 30 items - 6 train - 1 val = 23 candidates >= 20
    _, top_plain = Evaluator(data, topk=[10], mask_val_at_test=False).top_items(model, "test")
    assert data.val.contains(users, top_plain[:, 0]).all()


def test_cold_start_ranks_among_cold_items(tmp_path):
    root = random_dataset(tmp_path / "rand", n_users=80, n_items=50, per_user=8, seed=1)
    entry = add_cold_split(root, cold_ratio=0.2, seed=123)
    assert entry["cold_items"] == {"val": 5, "test": 5}
    data = load_data(root, split="cold")
    cold_test = set(data.cold_items["test"].tolist())
    assert len(cold_test) == 5 and not set(data.cold_items["val"].tolist()) & cold_test
    # cold items have no training interactions (MICRO protocol)
    assert not torch.isin(data.train.items, data.cold_items["test"]).any()
    assert set(data.test.items.tolist()) <= cold_test
    model = FixedScores(torch.rand(80, 50, generator=torch.Generator().manual_seed(0)))
    ev = Evaluator(data, topk=[3], cold_candidates="cold")
    users, top = ev.top_items(model, "test")
    assert torch.equal(users, data.test.users_with_items())
    assert set(top[top >= 0].tolist()) <= cold_test
    assert (top >= 0).sum(1).tolist() == [3] * len(users)
    # the same users ranked among all items: recall can only go down, and warm items do appear
    all_items = Evaluator(data, topk=[3], cold_candidates="all")
    _, top_all = all_items.top_items(model, "test")
    assert not set(top_all[top_all >= 0].tolist()) <= cold_test
    assert all_items.evaluate(model, "test")["recall@3"] <= ev.evaluate(model, "test")["recall@3"]
    with pytest.raises(TrainError, match="cold split set"):
        Evaluator(load_data(root), cold_candidates="cold")


def test_evaluation_is_batch_size_independent(tmp_path):
    data = load_data(random_dataset(tmp_path / "rand", n_users=70, n_items=45))
    model = FixedScores(torch.randint(0, 4, (70, 45), generator=torch.Generator().manual_seed(5)).float())
    big = Evaluator(data, topk=[5, 10], legacy_ndcg="lattice").evaluate(model, "test")
    small = Evaluator(data, topk=[5, 10], batch_size=8, legacy_ndcg="lattice").evaluate(model, "test")
    assert set(big) == set(small) and "ndcg_lattice@10" in big
    for key in big:
        assert np.isclose(big[key], small[key], rtol=0, atol=1e-12), key


def test_per_user_metrics_hand_computed_and_written_sorted(tmp_path):
    # the toy of test_evaluator_with_ties_masking_and_short_lists: test lists 5,0,2,3 (user 0, T={3}) and
    # 5,3,4,2 (user 1, T={2,5}); user 2 has no test item and gets no row
    root = write_dataset(
        tmp_path / "toy",
        {"train": [(0, 1), (1, 0)], "val": [(0, 4), (1, 1)], "test": [(0, 3), (1, 2), (1, 5)]},
        n_users=3,
        n_items=6,
    )
    data = load_data(root)
    model = FixedScores(
        torch.tensor([[0.5, 0.9, 0.5, 0.5, 2.0, 0.9], [3.0, 2.0, 0.1, 0.2, 0.2, 0.3], [0.0] * 6])
    )
    ev = Evaluator(data, topk=[1, 4])
    users, m = ev.per_user(model, "test")
    assert users.tolist() == [0, 1]
    assert m["recall@1"].tolist() == [0.0, 0.5]
    assert m["hit@1"].tolist() == [0.0, 1.0]
    assert m["recall@4"].tolist() == [1.0, 1.0]
    assert m["ndcg@4"].tolist() == pytest.approx([1 / L5, (1 / L2 + 1 / L5) / (1 / L2 + 1 / L3)], abs=1e-12)
    assert m["map@4"].tolist() == pytest.approx([1 / 4, (1 / 2) * (1 + 2 / 4)], abs=1e-12)
    assert m["precision@4"].tolist() == [0.25, 0.5]
    means = ev.evaluate(model, "test")
    for name, values in m.items():
        assert means[name] == pytest.approx(float(values.mean()), abs=1e-15), name
    # the file: sorted by user_idx even when handed unsorted, int32 users, float64 metric columns
    write_per_user(tmp_path, "test", np.array([1, 0]), {k: v.flip(0).numpy() for k, v in m.items()})
    table = pq.read_table(per_user_path(tmp_path, "test"))
    assert table.column_names[0] == "user_idx" and table.schema.field("user_idx").type == "int32"
    assert table.schema.field("ndcg@4").type == "double"
    read_users, read = read_per_user(tmp_path, "test")
    assert read_users.tolist() == [0, 1] and read["recall@1"].tolist() == [0.0, 0.5]


def test_per_user_read_errors_are_one_line(tmp_path):
    with pytest.raises(TrainError, match="test_per_user.parquet: per-user metrics missing"):
        read_per_user(tmp_path, "test")
    per_user_path(tmp_path, "val").write_bytes(b"not parquet")
    with pytest.raises(TrainError, match="val_per_user.parquet: unreadable Parquet"):
        read_per_user(tmp_path, "val")
