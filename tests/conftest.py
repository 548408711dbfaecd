"""Shared test fixtures: where the real data lives, and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.paths import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real datasets); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiktok(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real TikTok (MMSSL) split with its image and audio features, imported once per session through
    mmprep. Shared by the model tests: read it, never modify it."""
    from mmprep.interop import import_diffmm

    return import_diffmm(shared_data / "tiktok-mmssl", tmp_path_factory.mktemp("data") / "tiktok")
