"""Fixtures shared by the model tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Step-by-step simulations of small populations: one thread avoids oversubscribing
    a shared machine (with two busy cores, two threads made these runs ~8x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
