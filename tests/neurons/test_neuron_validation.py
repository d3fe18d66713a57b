"""Bad constructor arguments raise errors that name the argument and the value."""

import math

import pytest
import torch

from plastorch.neurons import LIF, AdaptiveLIF, Izhikevich

RS = dict(a=0.02, b=0.2, c=-65.0, d=8.0)


def build(cls, **kwargs):
    if cls is Izhikevich:
        return cls(3, **{**RS, **kwargs})
    return cls(3, **kwargs)


@pytest.mark.parametrize("cls", [LIF, AdaptiveLIF, Izhikevich])
@pytest.mark.parametrize(
    ("argument", "value"), [("dt", 0.0), ("dt", -1.0), ("step_mode", "double")]
)
def test_common_arguments(cls, argument, value):
    with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
        build(cls, **{argument: value})


@pytest.mark.parametrize("cls", [LIF, AdaptiveLIF, Izhikevich])
@pytest.mark.parametrize("shape", [0, (2, 0), (), -3])
def test_bad_shape(cls, shape):
    with pytest.raises(ValueError, match="shape"):
        cls(shape, **(RS if cls is Izhikevich else {}))


@pytest.mark.parametrize("cls", [LIF, AdaptiveLIF])
@pytest.mark.parametrize(
    ("argument", "value"),
    [("tau_mem", 0.0), ("tau_mem", -10.0), ("tau_mem", math.inf), ("refractory", -1.0)],
)
def test_lif_arguments(cls, argument, value):
    with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
        cls(3, **{argument: value})


def test_nan_is_rejected():
    with pytest.raises(ValueError, match="tau_mem.*nan"):
        LIF(3, tau_mem=math.nan)


@pytest.mark.parametrize(("argument", "value"), [("tau_theta", 0.0), ("theta_plus", -0.05)])
def test_adaptive_arguments(argument, value):
    with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
        AdaptiveLIF(3, **{argument: value})


def test_reset_must_be_below_threshold():
    with pytest.raises(ValueError, match="v_reset.*-50.0.*v_threshold.*-52.0"):
        LIF(3, v_reset=-50.0)


@pytest.mark.parametrize(("argument", "value"), [("a", 0.0), ("a", -0.02), ("c", 30.0)])
def test_izhikevich_arguments(argument, value):
    with pytest.raises(ValueError, match=rf"{argument}.*{value!r}"):
        Izhikevich(3, **{**RS, argument: value})


def test_non_numbers_are_type_errors():
    with pytest.raises(TypeError, match="tau_mem"):
        LIF(3, tau_mem="100")
    with pytest.raises(TypeError, match="dt"):
        LIF(3, dt=None)


def test_step_mode_is_validated_on_assignment_too():
    lif = LIF(3)
    with pytest.raises(ValueError, match="step_mode.*'batch'"):
        lif.step_mode = "batch"
    assert lif.step_mode == "single"


def test_empty_time_window_is_rejected():
    with pytest.raises(ValueError, match="T = 0"):
        LIF(3, step_mode="multi")(torch.zeros(0, 2, 3))
