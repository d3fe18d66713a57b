"""Short version of the long-run stability check (the full one: python -m plastorch.stability)."""

import torch

from plastorch.stability import BOUNDS, RULES, long_run, main


def test_every_rule_and_bound_stays_finite_and_in_bounds():
    rows = long_run(steps=2_000, window=100, batch=2, in_features=16, out_features=8)
    assert len(rows) == len(RULES) * len(BOUNDS)
    for row in rows:
        assert row["finite"] and row["in_bounds"], row
        # the weights really moved (uniform init in [-1, 1]), so the bound was exercised
        assert row["mean_change"] > 0.05, row


def test_same_seed_is_bit_identical_on_cpu():
    a = long_run(steps=300, window=60, rules=["MSTDPET"], bounds=["Soft"], seed=3)
    b = long_run(steps=300, window=60, rules=["MSTDPET"], bounds=["Soft"], seed=3)
    c = long_run(steps=300, window=60, rules=["MSTDPET"], bounds=["Soft"], seed=4)
    assert a[0]["checksum"] == b[0]["checksum"]
    assert a[0]["checksum"] != c[0]["checksum"]


def test_cli_exit_code(capsys):
    assert main(["--steps", "100", "--window", "50"]) == 0
    assert "in_bounds" in capsys.readouterr().out
    assert torch.get_default_dtype() == torch.float32
