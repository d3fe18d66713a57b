import pytest
import torch

from plastorch.bounds import Exponential, Hard, Normalize, PowerLaw, Soft
from plastorch.functional import Update

W = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
POT = torch.full((4,), 0.1, dtype=torch.float64)
DEP = torch.full((4,), 0.2, dtype=torch.float64)


def test_hard_applies_update_unscaled_and_clips():
    delta = Hard(0.0, 1.0)(W, Update(POT, DEP))
    torch.testing.assert_close(W + delta, torch.tensor([0.0, 0.15, 0.4, 0.9], dtype=torch.float64))


def test_soft_scales_each_half():
    # 0.1 (1 - w) - 0.2 w
    delta = Soft(0.0, 1.0)(W, Update(POT, DEP))
    torch.testing.assert_close(delta, 0.1 * (1 - W) - 0.2 * W)
    only_ltp = Soft(-1.0, 1.0)(W, Update(POT, None))
    torch.testing.assert_close(only_ltp, 0.1 * (1 - W))


def test_power_law_hand_values():
    delta = PowerLaw(0.0, 1.0, mu=0.5)(W, Update(POT, DEP))
    expected = 0.1 * (1 - W).sqrt() - 0.2 * W.sqrt()
    torch.testing.assert_close(delta, expected)
    # mu = 0 is hard, mu = 1 is soft
    torch.testing.assert_close(
        PowerLaw(0.0, 1.0, mu=1.0)(W, Update(POT, DEP)), Soft(0.0, 1.0)(W, Update(POT, DEP))
    )


def test_exponential_hand_values():
    delta = Exponential(0.0, 1.0, beta=2.0, clip=False)(W, Update(POT, DEP))
    expected = 0.1 * torch.exp(-2.0 * W) - 0.2 * torch.exp(-2.0 * (1.0 - W))
    torch.testing.assert_close(delta, expected)


@pytest.mark.parametrize(
    "bound",
    [
        Hard(-0.5, 0.5),
        Soft(-0.5, 0.5),
        PowerLaw(-0.5, 0.5, mu=2.0),
        Exponential(-0.5, 0.5, beta=3.0),
    ],
)
def test_any_update_size_stays_in_bounds(bound):
    weight = torch.rand(50, dtype=torch.float64) - 0.5
    for scale in (1e-3, 1.0, 1e3, 1e9):
        update = Update(
            torch.rand(50, dtype=torch.float64) * scale, torch.rand(50, dtype=torch.float64) * scale
        )
        new = weight + bound(weight, update)
        assert new.min() >= -0.5 and new.max() <= 0.5


def test_bad_bound_arguments():
    with pytest.raises(ValueError, match="wmin"):
        Soft(1.0, 0.0)
    with pytest.raises(ValueError, match="mu"):
        PowerLaw(mu=-1.0)
    with pytest.raises(ValueError, match="beta"):
        Exponential(beta=float("nan"))
    with pytest.raises(ValueError, match="total"):
        Normalize(0.0)


def test_normalize_rows_sum_to_total():
    weight = torch.rand(5, 3, 2, 2, dtype=torch.float64)
    out = Normalize(7.0)(weight)
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), torch.full((5,), 7.0, dtype=torch.float64))
    # proportions within a row are kept
    torch.testing.assert_close(out[0] / out[0].sum(), weight[0] / weight[0].sum())


def test_clipping_is_exact_in_floating_point():
    # clamp(w + d) - w, added back to w, can round one ulp past the bound; found by
    # hypothesis with these values.
    lo, hi = -3.557799753338758, 1.4422002466612418
    weight = torch.linspace(lo, hi, 200, dtype=torch.float64)
    for bound in (Hard(lo, hi), Soft(lo, hi)):
        for scale in (1e3, 1e6, 1e9):
            update = Update(torch.full_like(weight, scale), None)
            assert (weight + bound(weight, update)).max() <= hi
            update = Update(None, torch.full_like(weight, scale))
            assert (weight + bound(weight, update)).min() >= lo
