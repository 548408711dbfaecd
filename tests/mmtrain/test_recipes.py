"""Every registered model ships a recipe whose params and every grid value resolve to a valid configuration."""

from __future__ import annotations

import itertools

import pytest

from mmtrain.config import find_recipe, read_recipe
from mmtrain.experiment import make_config
from mmtrain.models.registry import available

MODELS = available()


def test_the_documented_models_are_registered():
    expected = {"mf", "lightgcn", "vbpr", "mmgcn", "lattice", "micro", "freedom", "bm3", "mgcn", "soil"}
    expected |= {"slmrec", "mmssl", "mdmns"}
    assert expected <= set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_recipe_resolves_with_every_grid_value(model):
    path = find_recipe(model)
    assert path is not None and path.name == f"{model}.yaml"
    recipe = read_recipe(path)
    assert recipe["model"] == model and recipe.get("source"), "a recipe names its model and its source"
    config = make_config(model)
    for key, value in (recipe.get("params") or {}).items():
        assert config[key] == pytest.approx(value) if isinstance(value, float) else config[key] == value, key
    grid = recipe.get("grid") or {}
    for key, values in grid.items():
        assert isinstance(values, list) and values, f"grid {key} must be a non-empty list"
    for combo in itertools.product(*grid.values()):
        make_config(model, sets=list(zip(grid, combo, strict=True)))
