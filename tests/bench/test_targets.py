"""The issue's targets judged on a run: the verdict follows the whole interval."""

import pytest

from plastorch.bench import CASES
from plastorch.bench.suite import format_markdown, format_targets
from plastorch.bench.targets import MET, MISSED, NOT_RUN, TARGETS, UNDECIDED, Target, judge

AT_MOST = Target("step <= 1.3x", "dense_step", "plastorch", "vs_limit", 1.3, True)
AT_LEAST = Target("SJ >= 50x", "dense_step", "spikingjelly", "vs_baseline", 50.0, False)


@pytest.mark.parametrize(
    ("target", "value", "interval", "verdict"),
    [
        (AT_MOST, 1.2, [1.1, 1.3], MET),  # the bound itself is allowed
        (AT_MOST, 1.29, [1.2, 1.31], UNDECIDED),  # the point meets it, the run cannot tell
        (AT_MOST, 1.35, [1.301, 1.4], MISSED),
        (AT_MOST, 1.2, None, MET),  # one round: the point alone
        (AT_LEAST, 63.0, [60.0, 67.0], MET),
        (AT_LEAST, 51.0, [47.0, 55.0], UNDECIDED),
        (AT_LEAST, 45.0, [40.0, 49.9], MISSED),
    ],
)
def test_verdict_follows_the_interval(target, value, interval, verdict):
    assert target.verdict(value, interval) == verdict


def _row(name, role, **ratios):
    return {"name": name, "role": role, "status": "ok", **ratios}


def test_judge_reads_rows_by_name_and_peers_by_name_and_version():
    report = {
        "cases": [
            {
                "name": "dense_step",
                "title": "STDP one step",
                "contenders": [
                    _row("limit: two GEMMs", "limit", vs_limit=1.0, vs_limit_interval=None),
                    _row("plastorch", "plastorch", vs_limit=1.39, vs_limit_interval=[1.31, 1.47]),
                    _row(
                        "spikingjelly 2.0.0",
                        "peer",
                        vs_baseline=63.0,
                        vs_baseline_interval=[60.0, 67.0],
                    ),
                    {"name": "bindsnet", "role": "peer", "status": "not installed"},
                ],
            }
        ]
    }
    targets = (
        AT_MOST,
        AT_LEAST,
        Target("faster than BindsNET", "dense_step", "bindsnet", "vs_baseline", 1.0, False),
        Target("window", "dense_window", "plastorch", "vs_limit", 1.3, True),
    )
    entries = judge(report, targets)
    # dense_window was not run: its target is left out
    assert [e["verdict"] for e in entries] == [MISSED, MET, NOT_RUN]
    assert entries[0]["value"] == 1.39 and entries[0]["interval"] == [1.31, 1.47]
    assert entries[2]["status"] == "not installed"
    text = format_targets(entries)
    assert "1.39x (1.31-1.47)  missed" in text and "not installed  not run" in text
    markdown = format_markdown({**report, "machine": _MACHINE, "targets": entries})
    assert "| step <= 1.3x | 1.39x (1.31-1.47) | missed |" in markdown


_MACHINE = {
    "torch": "2.13.0",
    "threads": 2,
    "device": "cpu",
    "processor": "x",
    "cpu_count": 2,
    "load_average_start": None,
}


def test_every_target_names_a_case_of_the_suite():
    names = {case.name for case in CASES}
    assert {target.case for target in TARGETS} <= names
    assert len({target.label for target in TARGETS}) == len(TARGETS)


def test_a_failed_case_leaves_its_targets_not_run():
    report = {"cases": [{"name": "dense_step", "title": "t", "error": "ValueError: x"}]}
    entries = judge(report, (AT_MOST,))
    assert entries == [
        {
            "label": "step <= 1.3x",
            "case": "dense_step",
            "row": "plastorch",
            "verdict": NOT_RUN,
            "status": "the case failed",
        }
    ]
