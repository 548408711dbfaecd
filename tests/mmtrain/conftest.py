"""Fixtures of the mmtrain tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_torch_state():
    """mmtrain sets process-wide torch state (threads, deterministic algorithms); undo it after each test so
    the rest of the suite runs as it would alone. Autouse for every mmtrain test."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
