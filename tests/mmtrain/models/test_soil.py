"""SOIL: the second-order U-I edges and the interest item graphs (both variants, blockwise) against the reference
algorithm run densely per user in numpy, the side combinations, the loss, a one-line error for a missing
feature, training on a real TikTok subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtrain.data.loader import load_data
from mmtrain.data.sampler import Batch
from mmtrain.errors import TrainError
from mmtrain.experiment import build_model, make_config
from mmtrain.graph.interest import second_order_edges, unit_rows
from mmtrain.models.mgcn import attention_fusion
from tests.mmtrain.helpers import (
    model_for,
    numpy_infonce,
    numpy_ui,
    random_dataset,
    sym_knn,
    sym_norm,
    write_dataset,
)

KNN_K, KNN_I, KNN_A = 4, 3, 2


def cosines(x: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ unit.T


def sym_floor(w: np.ndarray) -> np.ndarray:
    """The reference's sparse sym Laplacian on the non-zeros of ``w``: row-sum degrees, floored at 1e-7."""
    degree = w.sum(1)
    d = np.where(degree > 0, degree, 1.0) ** -0.5 * (degree > 0)
    out = d[:, None] * w * d[None, :]
    nonzero = w != 0
    out[nonzero] = np.maximum(out[nonzero], 1e-7)
    return out


def reference_second_order(histories: dict[int, np.ndarray], sims: list[np.ndarray], variant: str, shape):
    """Dense ``S2 [M, N]``, one user at a time as in the reference (code) or as the paper variant is defined."""
    product = np.prod(sims, axis=0)
    s2 = np.zeros(shape)
    for u, items in histories.items():
        rows = product[items]
        if variant == "code":
            k = KNN_A + len(items)
            row_top = np.argsort(-rows, axis=1, kind="stable")[:, :k]
            values = np.take_along_axis(rows, row_top, 1).ravel()
            best = np.argsort(-values, kind="stable")[:k]
            np.add.at(s2[u], row_top.ravel()[best], values[best])
        else:
            score = rows.mean(0)
            score[items] = -np.inf
            best = np.argsort(-score, kind="stable")[:KNN_A]
            s2[u, best] = score[best]
    return s2


def reference_item_graphs(histories, sims, features, accumulate: bool) -> list[np.ndarray]:
    """``sym(interest_m) + sym(kNN_m)`` with the interest graph built densely per user."""
    n = sims[0].shape[0]
    interest = [np.zeros((n, n)) for _ in sims]
    for items in histories.values():
        cols = np.unique(np.concatenate([np.argsort(-s[items].sum(0), kind="stable")[:KNN_I] for s in sims]))
        block = np.ix_(items, cols)
        for graph, s in zip(interest, sims, strict=True):
            graph[block] = graph[block] + s[block] if accumulate else s[block]
    return [sym_floor(g) + sym_norm(sym_knn(x, KNN_K)) for g, x in zip(interest, features, strict=True)]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """30 users with 1 to 10 training items (unequal degrees matter to the normalisations), 25 items, random
    image (12-d) and audio (5-d) features."""
    rng = np.random.default_rng(5)
    splits: dict[str, list[tuple[int, int]]] = {"train": [], "val": [], "test": []}
    for u in range(30):
        items = rng.choice(25, int(rng.integers(1, 11)) + 2, replace=False)
        splits["train"] += [(u, int(i)) for i in items[:-2]]
        splits["val"].append((u, int(items[-2])))
        splits["test"].append((u, int(items[-1])))
    features = {"image": rng.normal(size=(25, 12)), "audio": rng.normal(size=(25, 5))}
    features = {m: x.astype(np.float32) for m, x in features.items()}
    return write_dataset(tmp_path_factory.mktemp("data") / "rand", splits, 30, 25, features)


def soil(root, *sets):
    return model_for(
        root, "soil", ("threads", 1), ("knn_k", KNN_K), ("knn_i", KNN_I), ("knn_a", KNN_A), *sets
    )


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_graphs_equal_dense_per_user_reference(small, variant):
    model, data, _ = soil(small, ("variant", variant), ("graph_block", 60))  # 2 rows of 25 items per block
    m_users, n_items = data.n_users, data.n_items
    users, items = data.train.users.numpy(), data.train.items.numpy()
    histories = {int(u): items[users == u] for u in np.unique(users)}
    features = [data.feature(m).double().numpy() for m in model.modalities]
    sims = [cosines(x) for x in features]

    s2 = reference_second_order(histories, sims, variant, (m_users, n_items))
    assert (s2 > 0).sum(1).max() > 0 and np.count_nonzero(s2) == np.count_nonzero(s2[list(histories)])
    if variant == "paper":  # exactly knn_a unseen items per user with history
        assert all((s2[u] != 0).sum() == KNN_A and not s2[u, h].any() for u, h in histories.items())
    else:  # history items (weight >= 1 from their own row) plus at most knn_a others
        assert all((s2[u, h] >= 1 - 1e-9).all() for u, h in histories.items())
    a2 = np.zeros((m_users + n_items,) * 2)
    a2[:m_users, m_users:], a2[m_users:, :m_users] = s2, s2.T
    a2 = sym_floor(a2)
    weight = 1.0 if variant == "paper" else 0.5
    expected = numpy_ui(users, items, m_users, n_items) + weight * a2
    np.testing.assert_allclose(model.adjacency.to_dense().numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        model.user_item.to_dense().numpy(), expected[:m_users, m_users:], rtol=1e-5, atol=1e-7
    )

    graphs = reference_item_graphs(histories, sims, features, accumulate=variant == "code")
    for graph, reference in zip(model.item_graphs, graphs, strict=True):
        np.testing.assert_allclose(graph.to_dense().numpy(), reference, rtol=1e-5, atol=1e-7)


def test_blockwise_edges_do_not_depend_on_the_block_size(small):
    data = load_data(small)
    units = [unit_rows(data.feature(m)) for m in data.modalities()]
    for variant in ("paper", "code"):
        train = data.train
        pairs = (train.users, train.items, train.n_users, train.n_items)
        whole = second_order_edges(*pairs, units, KNN_A, variant)
        for block in (1, 30, 200):
            parts = second_order_edges(*pairs, units, KNN_A, variant, block)
            for a, b in zip(whole, parts, strict=True):
                torch.testing.assert_close(a, b)


def test_side_combinations(small):
    paper, _, config = soil(small)
    code, _, _ = soil(small, ("variant", "code"))
    code.load_state_dict(paper.state_dict())
    views = paper.views()
    alpha, common = attention_fusion(views, paper.query)
    content = torch.zeros_like(common)
    expected = (1 - alpha[:, :1]) * views[0] + (1 - alpha[:, 1:]) * views[1]  # paper Eq. 14
    torch.testing.assert_close(paper.combine(views, alpha, common, content), expected)
    torch.testing.assert_close(
        code.combine(views, alpha, common, content), expected / 3
    )  # code: (Mv + Mt - c)/3
    single, _, _ = soil(small, ("modalities", "image"))
    z, side, content = single.outputs()
    torch.testing.assert_close(side, single.views()[0])  # one modality: no fusion, side = M_1
    assert not hasattr(paper, "preferences") and not hasattr(
        paper, "features"
    )  # no preference gates, frozen X


def test_loss_equals_numpy(small):
    model, data, _ = soil(small, ("cl_weight", 0.3), ("cl_weight2", 0.7))
    users, pos, neg = torch.tensor([0, 3, 7, 3]), torch.tensor([1, 2, 5, 9]), torch.tensor([4, 0, 8, 11])
    with torch.no_grad():
        parts = model.loss(Batch(users, pos, neg))
        z, side, content = (t.double().numpy() for t in model.outputs())
    u, p, n = z[users.numpy()], z[data.n_users + pos.numpy()], z[data.n_users + neg.numpy()]
    bpr = np.mean(np.log1p(np.exp((u * n).sum(1) - (u * p).sum(1))))
    rows = data.n_users + pos.numpy()
    l_ii = numpy_infonce(side[rows], content[rows]) + numpy_infonce(side[users], content[users])
    l_ui = numpy_infonce(u, content[rows]) + numpy_infonce(u, side[rows])
    assert parts["bpr"].item() == pytest.approx(bpr, rel=1e-4)
    assert parts["cl_ii"].item() == pytest.approx(0.3 * l_ii, rel=1e-4)
    assert parts["cl_ui"].item() == pytest.approx(0.7 * l_ui, rel=1e-4)
    assert parts["loss"].item() == pytest.approx(bpr + 0.3 * l_ii + 0.7 * l_ui, rel=1e-4)


def test_missing_feature_is_a_one_line_error(tmp_path):
    plain = load_data(random_dataset(tmp_path / "plain", n_users=20, n_items=15))
    with pytest.raises(TrainError, match=r"model soil needs item features .*the dataset has none$") as err:
        build_model(plain, make_config("soil", sets=[("device", "cpu")]))
    assert "\n" not in str(err.value)


def test_negative_interest_degree_gives_the_floor_not_nan():
    """Signed cosines can sum below zero over a row (TikTok's audio): the original takes ``degree^-1/2`` there and
    its graph, then its loss, is NaN; ours gives that row's weights 0, floored at 1e-7."""
    from mmtrain.graph.interest import WEIGHT_FLOOR, interest_graph

    unit = unit_rows(torch.tensor([[1.0, 0.0], [-1.0, 0.1], [-0.9, -0.2], [0.0, 1.0]]))
    rows, cols = torch.tensor([0, 0, 3, 3]), torch.tensor([1, 2, 0, 3])
    graph = interest_graph(rows, cols, torch.ones(4, dtype=torch.long), unit, accumulate=True)
    dense = graph.coo.to_dense()
    cos = unit @ unit.T
    assert float(cos[0, 1] + cos[0, 2]) < 0  # row 0's degree: the original's NaN
    assert torch.isfinite(dense).all()
    assert dense[0, 1] == pytest.approx(WEIGHT_FLOOR) and dense[0, 2] == pytest.approx(WEIGHT_FLOOR)
    assert dense[3, 3] == pytest.approx(1.0)  # row 3: cosines 0 and 1, degree 1
