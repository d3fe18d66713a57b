"""No factor a rule hands to the sparse path carries a -0.0.

The sparse scans read a factor's floats as integers (cheaper than a float compare), so a
``-0.0`` is walked as an entry: a spike factor scaled by a negative number would have
every zero of it walked, the correlation at 100 % density (a triplet window ran 5x
slower that way). Every rule, on a Linear and a Conv2d, one step and a window, with and
without a weight-dependent bound, under ``sparse_mode("sparse")``: each factor scanned
must have no ``-0.0``. (A Linear's compiled row kernel compares floats, so the Linear
cases run without the compiled kernels, through the scans.)
"""

import importlib

import pytest
import torch
from torch import nn

from plastorch import Learner
from plastorch.bench.common import Replay
from plastorch.bounds import Soft
from plastorch.functional import compiled, sparse_mode
from plastorch.rules import (
    MSTDP,
    MSTDPET,
    STDP,
    ExpSTDP,
    Kernel,
    KernelSTDP,
    LinearHomeostasis,
    TripletSTDP,
)
from plastorch.rules.kernel import exponential_window

correlate_module = importlib.import_module("plastorch.functional.correlate")

RULES = {
    "STDP": (lambda: STDP(0.01, -0.012), None),
    "STDP nearest": (lambda: STDP(0.01, -0.012, trace_mode="nearest"), None),
    "anti-STDP": (lambda: STDP(-0.01, 0.012), None),
    "MSTDP -M": (lambda: MSTDP(0.01, -0.012), -0.5),
    "MSTDP [B]": (lambda: MSTDP(0.01, -0.012), "per sample"),
    "MSTDPET": (lambda: MSTDPET(0.01, -0.012), -0.5),
    "MSTDPET [B] combined": (
        lambda: MSTDPET(0.01, -0.012, per_sample_signal=True, eligibility="combined"),
        "per sample",
    ),
    "ExpSTDP": (lambda: ExpSTDP(0.01, a_minus=0.5, x_target=0.1), None),
    "Triplet": (lambda: TripletSTDP(0.01, 0.01, 0.012, 0.012), None),
    "Triplet mixed signs": (lambda: TripletSTDP(0.01, -0.01, 0.012, -0.012), None),
    "LinearHomeostasis": (lambda: LinearHomeostasis(1e-3, 20.0), None),
    "KernelSTDP": (
        lambda: KernelSTDP(
            Kernel(
                exponential_window,
                lr_causal=0.01,
                lr_acausal=-0.012,
                tau_causal=20.0,
                tau_acausal=20.0,
            )
        ),
        None,
    ),
    "KernelSTDP two-signed": (
        lambda: KernelSTDP(lambda t: 0.01 - 0.002 * t.abs(), modulated=True),
        "per sample",
    ),
}
LAYERS = {
    "linear": (lambda: nn.Linear(30, 20, bias=False), (30,), (20,)),
    "conv": (lambda: nn.Conv2d(2, 3, 3, padding=1, bias=False), (2, 6, 6), (3, 6, 6)),
}


@pytest.fixture
def scanned(monkeypatch):
    factors = []
    for name in ("_scan_entries", "_by_column"):
        original = getattr(correlate_module, name)

        def spy(sparse_t, *args, _original=original):
            factors.append(sparse_t.detach().clone())
            return _original(sparse_t, *args)

        monkeypatch.setattr(correlate_module, name, spy)
    return factors


def negative_zeros(tensor):
    bits = tensor.reshape(-1).view(torch.int32 if tensor.element_size() == 4 else torch.int64)
    return int((bits == torch.iinfo(bits.dtype).min).sum())


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize(
    "layer_name, kernels", [("linear", False), ("conv", True), ("conv", False)]
)
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("bound", [None, "soft"])
def test_no_negative_zero_reaches_the_sparse_scan(
    monkeypatch, scanned, rule_name, layer_name, kernels, steps, bound
):
    if not kernels:
        monkeypatch.setattr(compiled, "_ENABLED", False)
    make_rule, signal = RULES[rule_name]
    make_layer, shape_in, shape_out = LAYERS[layer_name]
    layer, source = make_layer(), Replay()
    learner = Learner(
        layer,
        source,
        make_rule(),
        step_mode="single" if steps == 1 else "multi",
        bound=None if bound is None else Soft(-1.0, 1.0),
    )
    g = torch.Generator().manual_seed(0)
    lead = () if steps == 1 else (steps,)
    with sparse_mode("sparse"):
        for _ in range(3):
            pre = (torch.rand(*lead, 4, *shape_in, generator=g) < 0.2).float()
            post = (torch.rand(*lead, 4, *shape_out, generator=g) < 0.1).float()
            with torch.no_grad():
                source.value = post
                x = pre.flatten(0, 1) if (lead and layer_name == "conv") else pre
                source(layer(x))
            if signal is None:
                learner.step()
            else:
                m = torch.linspace(-1.0, 1.0, 4) if signal == "per sample" else signal
                learner.step(signal=m)
    if rule_name == "LinearHomeostasis" and layer_name == "linear":
        assert not scanned  # (a row broadcast: no correlation at all)
        return
    assert scanned, "the sparse path was not taken"
    assert [negative_zeros(f) for f in scanned] == [0] * len(scanned)
