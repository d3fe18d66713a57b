import pytest
import torch

from plastorch.bounds import Exponential, Hard, Normalize, PowerLaw, Soft
from plastorch.functional import Update, compiled

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


# -- the compiled path (numba) and the torch path compute the same change ------------------


@pytest.fixture(params=["compiled", "torch"])
def path(request, monkeypatch):
    """Run a test on the compiled bound kernel and on the torch fallback."""
    if request.param == "compiled":
        if not compiled.available():
            pytest.skip("numba is not installed")
    else:
        monkeypatch.setattr(compiled, "_ENABLED", False)
    return request.param


def _all_bounds(lo=0.0, hi=1.0, clip=True):
    return [
        Hard(lo, hi, clip=clip),
        Soft(lo, hi, clip=clip),
        PowerLaw(lo, hi, mu=0.5, clip=clip),
        PowerLaw(lo, hi, mu=0.0, clip=clip),
        Exponential(lo, hi, beta=3.0, clip=clip),
    ]


def _torch_change(bound, weight, update, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(compiled, "_ENABLED", False)
        return bound(weight, update)


@pytest.mark.skipif(not compiled.available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("halves", ["both", "potentiation", "depression", "none"])
@pytest.mark.parametrize("clip", [True, False])
def test_compiled_change_equals_the_torch_change(dtype, halves, clip, monkeypatch):
    # weights inside and outside the range, updates small and large enough to clip
    weight = torch.rand(37, 53, dtype=dtype) * 1.4 - 0.2
    pot = torch.rand(37, 53, dtype=dtype) * torch.logspace(-3, 2, 53, dtype=dtype)
    dep = torch.rand(37, 53, dtype=dtype).flip(1) * 2.0
    update = Update(
        pot if halves in ("both", "potentiation") else None,
        dep if halves in ("both", "depression") else None,
    )
    calls = []
    original = compiled._weight_change_unchecked
    monkeypatch.setattr(
        compiled,
        "_weight_change_unchecked",
        lambda *args: calls.append(args[5]) or original(*args),
    )
    for bound in _all_bounds(clip=clip):
        actual = bound(weight, update)
        expected = _torch_change(bound, weight, update, monkeypatch)
        assert actual.dtype == dtype and actual.shape == weight.shape
        # the same operations, up to an ulp of each term: the kernel may fuse a
        # multiply-add (one rounding), and exp / pow may round differently
        up, down = bound.dependence(weight)
        terms = weight.abs() + (up * pot).abs() + (down * dep).abs()
        error = (actual - expected).abs()
        assert (error <= 4 * torch.finfo(dtype).eps * terms).all(), bound
        if isinstance(bound, Hard):  # a net change, clipped: the same bits
            torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    # (Hard without clipping has nothing to do beyond the net change)
    assert calls == [compiled.HARD] * clip + [compiled.SOFT] + [compiled.FACTORS] * 3


def test_soft_hand_values_on_both_paths(path):
    # A+ = 1 - w, A- = w + 1 on [-1, 1]: 0.5 (1 - w) - 0.25 (w + 1)
    weight = torch.tensor([[-1.0, -0.5], [0.0, 0.5]])
    update = Update(torch.full((2, 2), 0.5), torch.full((2, 2), 0.25))
    delta = Soft(-1.0, 1.0)(weight, update)
    torch.testing.assert_close(delta, torch.tensor([[1.0, 0.625], [0.25, -0.125]]))


def test_clip_pulls_weights_from_outside_the_range_and_keeps_nan(path):
    weight = torch.tensor([1.5, -0.5, 0.5, 0.5])
    update = Update(torch.tensor([0.0, 0.0, float("nan"), 0.25]), None)
    delta = Hard(0.0, 1.0)(weight, update)
    assert (weight + delta)[[0, 1, 3]].tolist() == [1.0, 0.0, 0.75]
    assert delta[2].isnan()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clipping_is_exact_on_both_paths(path, dtype):
    # the values hypothesis found (see above), in both dtypes and for every bound
    lo, hi = -3.557799753338758, 1.4422002466612418
    weight = torch.linspace(lo, hi, 5000, dtype=dtype)
    top, bottom = torch.tensor(hi, dtype=dtype), torch.tensor(lo, dtype=dtype)
    for bound in _all_bounds(lo, hi):
        for scale in (1e-2, 1e3, 1e6, 1e9):
            big = torch.full_like(weight, scale)
            for update in (Update(big, None), Update(None, big), Update(big, big.flip(0))):
                new = weight + bound(weight, update)
                assert new.max() <= top and new.min() >= bottom, (bound, scale)


def test_an_empty_weight_gets_an_empty_change(path):
    weight = torch.rand(0, 3)
    for bound in _all_bounds():
        delta = bound(weight, Update(torch.rand(0, 3), torch.rand(0, 3)))
        assert delta.shape == (0, 3)


def test_bound_falls_back_to_torch_for_other_layouts_and_dtypes(monkeypatch):
    calls = []
    monkeypatch.setattr(
        compiled, "_weight_change_unchecked", lambda *args: calls.append(args) or None
    )
    weight = torch.rand(6, 4, dtype=torch.float64)
    pot = torch.rand(6, 4, dtype=torch.float64)
    expected = (1 - weight) * pot
    # a transposed (non-contiguous) weight, a bfloat16 weight, a half of another dtype
    delta = Soft(0.0, 1.0, clip=False)(weight.t(), Update(pot.t(), None))
    torch.testing.assert_close(delta, expected.t())
    delta = Soft(0.0, 1.0, clip=False)(weight.bfloat16(), Update(pot.bfloat16(), None))
    torch.testing.assert_close(delta, expected.bfloat16(), rtol=2e-2, atol=1e-2)
    delta = Soft(0.0, 1.0, clip=False)(weight, Update(pot.float(), None))
    assert delta.dtype == torch.float64
    torch.testing.assert_close(delta, (1 - weight) * pot.float().double())
    assert calls == []


def test_a_subclass_with_its_own_dependence_is_computed_by_torch(path):
    class Half(Soft):
        def dependence(self, weight):
            return 0.5, 0.5

    weight = torch.tensor([0.25, 0.75])
    delta = Half(0.0, 1.0)(weight, Update(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.0])))
    torch.testing.assert_close(delta, torch.tensor([0.25, 0.25]))


@pytest.mark.skipif(not compiled.available(), reason="numba is not installed")
def test_weight_change_names_bad_arguments():
    weight = torch.rand(3, 4)
    with pytest.raises(ValueError, match="potentiation"):
        compiled.weight_change(weight, torch.rand(4, 3), None, 0.0, 1.0)
    with pytest.raises(TypeError, match="depression"):
        compiled.weight_change(weight, None, torch.rand(3, 4).double(), 0.0, 1.0)
    with pytest.raises(TypeError, match="weight"):
        compiled.weight_change(weight.t(), None, None, 0.0, 1.0)
    with pytest.raises(ValueError, match="dependence"):
        compiled.weight_change(weight, None, None, 0.0, 1.0, dependence=7)
    with pytest.raises(ValueError, match="factors"):
        compiled.weight_change(weight, None, None, 0.0, 1.0, dependence=compiled.FACTORS)
    with pytest.raises(ValueError, match=r"factors\[1\]"):
        compiled.weight_change(
            weight,
            None,
            None,
            0.0,
            1.0,
            dependence=compiled.FACTORS,
            factors=(weight, weight[:2]),
        )


@pytest.mark.skipif(not compiled.available(), reason="numba is not installed")
def test_a_bound_kernel_that_does_not_compile_falls_back_to_torch(monkeypatch):
    class NeverCompiled:  # a numba dispatcher whose compilation fails
        signatures = []

        def __call__(self, *args):
            raise RuntimeError("LLVM is unhappy")

    monkeypatch.setattr(compiled, "_weight_change", NeverCompiled())
    monkeypatch.setattr(compiled, "_ENABLED", True)
    weight = torch.tensor([0.25, 0.75, 0.5])
    update = Update(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 0.5, 2.0]))
    with pytest.warns(UserWarning, match="did not compile"):
        delta = Soft(0.0, 1.0)(weight, update)
    # 0.75 (LTP), 0.25 - 0.375, and the clip of 0.5 - 1.0 to -0.5
    torch.testing.assert_close(delta, torch.tensor([0.75, -0.125, -0.5]))
    assert not compiled.available()  # switched off for the rest of the process
