"""The benchmark suite in --quick mode: every case builds, every correctness check passes.

Nothing here asserts anything about speed; the checks compare plastorch's update
with a bare-arithmetic reference computed on the same inputs.
"""

import json

import pytest
import torch

from plastorch.bench import CASES, Config, run_case, run_suite
from plastorch.bench.__main__ import main
from plastorch.bench.suite import ALLOCATOR_ENV, allocator, format_case, format_ratio
from plastorch.bench.targets import TARGETS, find_row

QUICK = Config(quick=True, repeats=1, warmup=0, peers=())


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_builds_checks_and_runs(case):
    torch.set_num_threads(2)
    result = run_case(case, QUICK)
    assert "error" not in result, result.get("traceback")
    for check in result.get("checks", []):
        assert check["passed"], check
    for row in result.get("contenders", []):
        if row["status"] == "ok":
            assert len(row["samples_s"]) == 1 and row["median_s"] > 0.0
        else:
            assert "median_s" not in row  # a contender that cannot run is reported, not timed
    json.dumps(result)  # the --json output is plain data
    for target in TARGETS:  # every target's row is one this case builds
        if target.case == case.name:
            assert find_row(result, target.row) is not None, target
    text = format_case(result)
    assert text.startswith(f"== {case.name}: ")


def test_stdp_cases_check_all_three_paths():
    result = run_case(CASES[0], QUICK)
    names = [check["name"] for check in result["checks"]]
    assert names == [
        f"Learner.step() on the {mode} path == bare-arithmetic STDP"
        for mode in ("auto", "sparse", "dense")
    ] + ["step floor (bare torch) == bare-arithmetic STDP"]
    roles = {row["name"]: row["role"] for row in result["contenders"]}
    assert roles["limit: two GEMMs"] == "limit"
    assert roles["plastorch"] == roles["plastorch, dense path"] == "plastorch"
    assert roles["floor: the step's semantics in bare torch"] == "floor"


@pytest.mark.parametrize("name", ["conv2d_2_32", "mstdpet_window"])
def test_floor_rows_are_timed_against_the_limit(name):
    result = run_case(next(case for case in CASES if case.name == name), QUICK)
    floors = [row for row in result["contenders"] if row["role"] == "floor"]
    # MSTDP-ET has one floor per eligibility layout (split, combined)
    assert len(floors) == (2 if name == "mstdpet_window" else 1)
    for floor in floors:
        assert floor["status"] == "ok"
        assert floor["vs_limit"] > 0.0 and floor["vs_baseline"] > 0.0


def test_ratios_carry_their_bootstrap_interval_over_the_rounds():
    config = Config(quick=True, repeats=4, warmup=0, peers=())
    result = run_case(CASES[0], config)
    rows = {row["name"]: row for row in result["contenders"]}
    assert "vs_limit_interval" in rows["limit: two GEMMs"]
    assert rows["limit: two GEMMs"]["vs_limit_interval"] is None  # itself
    assert rows["plastorch"]["vs_baseline_interval"] is None  # the baseline itself
    row = rows["plastorch, dense path"]
    for key in ("vs_limit", "vs_baseline"):
        low, high = row[f"{key}_interval"]
        assert 0.0 < low <= high
        # a ratio of medians of resampled rounds lies between the extreme per-round ratios
        reference = rows["limit: two GEMMs" if key == "vs_limit" else "plastorch"]["samples_s"]
        per_round = [a / b for a, b in zip(row["samples_s"], reference)]
        assert min(per_round) * (1 - 1e-12) <= low and high <= max(per_round) * (1 + 1e-12)
    text = format_case(result)
    assert format_ratio(row["vs_limit"], row["vs_limit_interval"]) in text
    assert format_ratio(1.3214, (1.2711, 1.3849)) == "1.32x (1.27-1.38)"
    assert format_ratio(65.4, (59.6, 70.2)) == "65x (60-70)"


def test_peers_without_library_get_a_status_row():
    result = run_case(CASES[0], QUICK)  # peers=() -> skipped
    peers = [row for row in result["contenders"] if row["role"] == "peer"]
    assert [row["name"].split()[0] for row in peers] == ["spikingjelly", "bindsnet", "inferno"]
    assert all("median_s" not in row for row in peers)


def test_cli_list_and_json(tmp_path, capsys):
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(case.name in listed for case in CASES)
    out = tmp_path / "bench.json"
    markdown = tmp_path / "bench.md"
    args = ["--quick", "--cases", "dense_step", "--peers", "none", "--repeats", "1"]
    code = main(args + ["--json", str(out), "--markdown", str(markdown)])
    assert code == 0
    table = markdown.read_text()
    assert "| limit: two GEMMs |" in table and "checks: 4/4 passed" in table
    report = json.loads(out.read_text())
    assert [case["name"] for case in report["cases"]] == ["dense_step"]
    assert report["machine"]["threads"] == 2
    assert report["machine"]["allocator"] in table
    assert report["machine"]["device"] == "cpu"


def test_unknown_case_is_rejected():
    with pytest.raises(ValueError, match="unknown cases"):
        run_suite(QUICK, ["no_such_case"], echo=None)


def test_cuda_request_without_cuda_fails_cleanly(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["--device", "cuda", "--quick", "--cases", "dense_step"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_allocator_names_the_settings_that_change_large_allocations(monkeypatch):
    for name in ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    assert allocator() == "system malloc, defaults"
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "33554432")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4000000000")
    monkeypatch.setenv("LD_PRELOAD", "")  # empty: not a setting
    assert allocator() == "MALLOC_MMAP_THRESHOLD_=33554432, MALLOC_TRIM_THRESHOLD_=4000000000"
