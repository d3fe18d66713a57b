"""check_finite: the one-pass sum test and its exact fallback."""

import pytest
import torch

from plastorch.functional.checks import check_finite


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_non_finite_entry_raises_naming_the_argument(bad, dtype):
    tensor = torch.ones(7, dtype=dtype)
    tensor[3] = bad
    with pytest.raises(ValueError, match=r"weight contains NaN or inf \(shape \(7,\)\)"):
        check_finite("weight", tensor)


def test_inf_and_minus_inf_together_raise():
    # their sum is NaN, still not finite
    with pytest.raises(ValueError):
        check_finite("x", torch.tensor([float("inf"), float("-inf"), 1.0]))


def test_finite_entries_whose_sum_overflows_pass():
    # 10 * 3e38 overflows float32 to inf: the exact test must clear it
    tensor = torch.full((10,), 3e38)
    assert not torch.isfinite(tensor.sum())
    assert check_finite("x", tensor) is tensor
    half = torch.full((4,), 60000.0, dtype=torch.float16)  # sum 240000 > 65504
    assert check_finite("x", half) is half


def test_non_float_and_empty_pass():
    assert check_finite("x", torch.tensor([1, 2])).dtype == torch.int64
    assert check_finite("x", torch.empty(0)).numel() == 0
