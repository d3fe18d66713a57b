"""bench.rules_matrix: one row per layer, mode and rule, each against STDP's median."""

import json

import pytest

from plastorch.bench.rules_matrix import RULES, format_table, main, run_matrix


def test_rows_hold_each_rule_against_stdp_of_the_same_group():
    rows = run_matrix(quick=True, only="Triplet")
    groups = {(row["layer"], row["mode"]) for row in rows}
    assert len(groups) == 4  # two layers, one step and a window
    chosen = {"STDP"} | {name for name in RULES if "Triplet" in name}
    for group in groups:
        in_group = {row["rule"]: row for row in rows if (row["layer"], row["mode"]) == group}
        assert set(in_group) == chosen
        stdp = in_group["STDP"]["median_ms"]
        assert in_group["STDP"]["vs_stdp"] == 1.0
        for row in in_group.values():
            assert row["median_ms"] > 0
            assert row["vs_stdp"] == pytest.approx(row["median_ms"] / stdp)
            low, high = row["vs_stdp_ci"]
            assert low <= high
    table = format_table(rows)
    assert all(name in table for name in chosen)


def test_main_writes_the_rows_as_json(tmp_path, capsys):
    path = tmp_path / "matrix.json"
    assert main(["--quick", "--rules", "Homeostasis", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())
    assert {row["rule"] for row in rows} == {"STDP", "LinearHomeostasis"}
    assert "LinearHomeostasis" in capsys.readouterr().out
