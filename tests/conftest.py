"""Fixtures shared by the test files."""
import pytest, torch


@pytest.fixture
def float64():
    "float64 as the default dtype and seed 0 for one test (the oracle comparisons need float64), restored after."
    old = torch.get_default_dtype(); torch.set_default_dtype(torch.float64); torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)
