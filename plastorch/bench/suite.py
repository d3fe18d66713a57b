"""Run benchmark cases, compute medians and ratios, print the table, write JSON."""

from __future__ import annotations

import math
import os
import platform
import time
import traceback
from collections.abc import Sequence

import torch

from ..functional import compiled
from .cases import CASES
from .common import CaseSetup, Config
from .peers import PEER_NAMES, load_peer
from .targets import NOT_RUN, judge
from .timing import interleaved, ratio_interval

__all__ = [
    "ALLOCATOR_ENV",
    "allocator",
    "format_case",
    "format_markdown",
    "format_ratio",
    "format_targets",
    "machine_info",
    "run_case",
    "run_suite",
]


def machine_info(config: Config) -> dict:
    """What the numbers were measured on."""
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(config.device),
        "cuda_available": torch.cuda.is_available(),
        "compiled_kernels": _kernels(),
        "allocator": allocator(),
        "quick": config.quick,
        "load_average_start": _load(),
        "peers": {name: load_peer(name).status for name in PEER_NAMES},
        "peer_versions": {name: load_peer(name).version for name in PEER_NAMES},
    }
    if config.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(config.device)
    return info


def _kernels() -> str:
    """Whether plastorch's compiled kernels ran (they change the sparse paths' timings)."""
    if not compiled.available():
        return "off (torch kernels only)"
    return f"numba {compiled.numba.__version__}"


#: the environment that picks the allocator (a preloaded one) or sets glibc's malloc
#: tunables that decide whether freed memory goes back to the system
ALLOCATOR_ENV = (
    "LD_PRELOAD",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
)


def allocator(environ: dict[str, str] | None = None) -> str:
    """The host allocator's settings, as far as the environment sets them.

    A fresh multi-megabyte tensor costs its page faults where glibc's malloc has
    returned freed memory to the system (its default for large blocks): on one
    2-core VM a 1.6 MB tensor took ~0.55 ms instead of ~0.04 ms, which moves a
    conv step's timing more than its arithmetic does (docs/performance.md,
    "Eleventh round"). Runs compare only under the same settings.

    Examples
    --------
    >>> allocator({})
    'system malloc, defaults'
    >>> allocator({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2", "MALLOC_TRIM_THRESHOLD_": "0"})
    'LD_PRELOAD=/usr/lib/libjemalloc.so.2, MALLOC_TRIM_THRESHOLD_=0'
    """
    environ = os.environ if environ is None else environ
    settings = [f"{name}={environ[name]}" for name in ALLOCATOR_ENV if environ.get(name)]
    return ", ".join(settings) if settings else "system malloc, defaults"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_case(case, config: Config, *, check: bool = True) -> dict:
    """Build, check and time one case; return its JSON-serialisable result."""
    result: dict = {"name": case.name, "title": case.title}
    try:
        setup: CaseSetup = case.build(config)
    except Exception as error:  # noqa: BLE001 - report and go on with the other cases
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc()
        return result
    result["unit"] = setup.unit
    result["notes"] = list(setup.notes)
    if check:
        try:
            checks = setup.checks()
            result["checks"] = [
                {"name": c.name, "passed": c.passed(), "max_abs_error": c.error()} for c in checks
            ]
        except Exception as error:  # noqa: BLE001
            result["checks"] = [
                {
                    "name": "checks raised",
                    "passed": False,
                    "error": f"{type(error).__name__}: {error}",
                }
            ]
    timed = {c.name: (c.setup, c.fn) for c in setup.contenders if c.fn is not None}
    repeats = config.repeats if config.repeats is not None else setup.repeats
    timings = (
        interleaved(
            timed,
            repeats=repeats,
            warmup=config.warmup,
            device=config.device,
            shuffle=True,
            seed=config.seed,
        )
        if timed and repeats
        else {}
    )
    medians = {name: timing.median for name, timing in timings.items()}
    limit = next((c.name for c in setup.contenders if c.role == "limit"), None)
    baseline = setup.baseline or next(
        (c.name for c in setup.contenders if c.role == "plastorch"), None
    )
    rows = []
    for contender in setup.contenders:
        row = {"name": contender.name, "role": contender.role, "status": contender.status}
        if contender.name in timings:
            timing = timings[contender.name]
            row["median_s"] = timing.median
            row["low_decile_s"] = timing.low
            row["spread"] = timing.spread
            row["samples_s"] = timing.seconds
            # each ratio with its bootstrap interval over the paired rounds
            if limit in medians and contender.role != "peer":
                row["vs_limit"] = timing.median / medians[limit]
                row["vs_limit_interval"] = _interval(timing, timings[limit], 1.0, config.seed)
            if baseline in medians and contender.name != limit:
                base_items = next(c.items_per_call for c in setup.contenders if c.name == baseline)
                per_item = base_items / contender.items_per_call
                row["vs_baseline"] = timing.median / medians[baseline] * per_item
                row["vs_baseline_interval"] = _interval(
                    timing, timings[baseline], per_item, config.seed
                )
            if setup.unit == "items/s":
                row["items_per_s"] = contender.items_per_call / timing.median
        rows.append(row)
    result["contenders"] = rows
    result["limit"] = limit
    result["baseline"] = baseline
    values = dict(setup.values)
    summarize = getattr(setup, "summarize", None)
    if summarize is not None:
        values.update(summarize(medians))
    if values:
        result["values"] = values
    return result


def _interval(timing, reference, factor: float, seed: int) -> list[float] | None:
    """:func:`~plastorch.bench.timing.ratio_interval` of two contenders' rounds, times
    ``factor`` (``None`` for one round, and for a contender against itself)."""
    if timing is reference:
        return None
    bounds = ratio_interval(timing.seconds, reference.seconds, seed=seed)
    return None if bounds is None else [bound * factor for bound in bounds]


def run_suite(
    config: Config, names: Sequence[str] | None = None, *, check: bool = True, echo=print
) -> dict:
    """Run the cases named (all by default; only ``Case.quick`` ones in quick mode)."""
    selected = [
        case
        for case in CASES
        if (names is None or case.name in names)
        and (names is not None or not config.quick or case.quick)
    ]
    unknown = set(names or ()) - {case.name for case in CASES}
    if unknown:
        raise ValueError(f"unknown cases {sorted(unknown)}; choose from {[c.name for c in CASES]}")
    report = {"machine": machine_info(config), "cases": []}
    start = time.perf_counter()
    for case in selected:
        result = run_case(case, config, check=check)
        report["cases"].append(result)
        if echo is not None:
            echo(format_case(result))
    report["machine"]["load_average_end"] = _load()
    report["machine"]["wall_seconds"] = time.perf_counter() - start
    if not config.quick:  # (quick shapes are not the targets' shapes)
        report["targets"] = judge(report)
        if echo is not None:
            echo(format_targets(report["targets"]))
    return report


def _time(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds * 1e6:.0f} us"


def format_ratio(value: float | None, interval: Sequence[float] | None = None) -> str:
    """``1.32x``, with the bootstrap interval when there is one: ``1.32x (1.27-1.38)``.

    Examples
    --------
    >>> format_ratio(1.3214, (1.2711, 1.3849)), format_ratio(65.4), format_ratio(None)
    ('1.32x (1.27-1.38)', '65x', '')
    """
    if value is None or math.isnan(value):
        return ""
    digits = ".2f" if value < 10 else ".0f"  # the interval's digits follow the ratio's
    text = f"{value:{digits}}x"
    if interval is None:
        return text
    return f"{text} ({interval[0]:{digits}}-{interval[1]:{digits}})"


def _limit_ratio(row: dict) -> str:
    return format_ratio(row.get("vs_limit"), row.get("vs_limit_interval"))


def _baseline_ratio(row: dict) -> str:
    return format_ratio(row.get("vs_baseline"), row.get("vs_baseline_interval"))


def _bytes(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def format_case(result: dict) -> str:
    """The case as a text table."""
    lines = [f"== {result['name']}: {result['title']}"]
    if "error" in result:
        lines.append(f"   ERROR {result['error']}")
        return "\n".join(lines)
    for note in result.get("notes", []):
        lines.append(f"   ({note})")
    rows = result.get("contenders", [])
    if rows:
        baseline = result.get("baseline") or "plastorch"
        lines.append(
            f"   {'contender':<44} {'median':>10} {'vs limit (95% CI)':>19} "
            f"{'vs ' + baseline[:22] + ' (95% CI)':>34}  status"
        )
        for row in rows:
            median = _time(row["median_s"]) if "median_s" in row else "-"
            if "items_per_s" in row:
                median = f"{row['items_per_s']:.3g}/s"
            status = "" if row["status"] == "ok" else row["status"]
            lines.append(
                f"   {row['name'][:44]:<44} {median:>10} {_limit_ratio(row):>19} "
                f"{_baseline_ratio(row):>34}  {status}"
            )
    for name, value in result.get("values", {}).items():
        text = _bytes(value) if "bytes" in name else f"{value:.3g}"
        lines.append(f"   {name:<70} {text:>12}")
    checks = result.get("checks")
    if checks is not None:
        passed = sum(c["passed"] for c in checks)
        worst = max((c.get("max_abs_error", 0.0) for c in checks), default=0.0)
        lines.append(f"   checks: {passed}/{len(checks)} passed (max abs error {worst:.2g})")
        for c in checks:
            if not c["passed"]:
                lines.append(f"   FAILED {c['name']} {c.get('error', c.get('max_abs_error'))}")
    return "\n".join(lines)


def _target_value(entry: dict) -> str:
    if entry["verdict"] == NOT_RUN:
        return entry.get("status", "")
    return format_ratio(entry["value"], entry.get("interval"))


def format_targets(entries: list[dict]) -> str:
    """The verdicts of :func:`~plastorch.bench.targets.judge` as a text table."""
    lines = ["== targets, judged on each ratio's 95% CI"]
    for entry in entries:
        lines.append(f"   {entry['label']:<52} {_target_value(entry):>22}  {entry['verdict']}")
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The whole report as Markdown tables (one per case), for docs/performance.md."""
    machine = report["machine"]
    lines = [
        f"torch {machine['torch']}, {machine['threads']} threads, {machine['device']} "
        f"({machine['processor']}, {machine['cpu_count']} cores), compiled kernels: "
        f"{machine.get('compiled_kernels')}, allocator: {machine.get('allocator')}, load average "
        f"{machine['load_average_start']} -> {machine.get('load_average_end')}",
        "",
    ]
    for result in report["cases"]:
        lines.append(f"**{result['name']}**: {result['title']}")
        lines.append("")
        if "error" in result:
            lines += [f"error: {result['error']}", ""]
            continue
        rows = result.get("contenders", [])
        if rows:
            baseline = result.get("baseline") or "plastorch"
            throughput = result.get("unit") == "items/s"
            lines.append(
                f"| contender | {'samples/s' if throughput else 'median'} | vs limit (95% CI) | "
                f"vs {baseline} (95% CI) |"
            )
            lines.append("| --- | --- | --- | --- |")
            for row in rows:
                if "items_per_s" in row:
                    value = f"{row['items_per_s']:.3g}"
                elif "median_s" in row:
                    value = _time(row["median_s"])
                else:
                    value = row["status"]
                lines.append(
                    f"| {row['name']} | {value} | {_limit_ratio(row)} | {_baseline_ratio(row)} |"
                )
        values = result.get("values", {})
        if values:
            lines += ["", "| quantity | value |", "| --- | --- |"]
            for name, value in values.items():
                text = _bytes(value) if "bytes" in name else f"{value:.3g}"
                lines.append(f"| {name} | {text} |")
        checks = result.get("checks")
        if checks:
            passed = sum(c["passed"] for c in checks)
            lines += ["", f"checks: {passed}/{len(checks)} passed"]
        lines.append("")
    if report.get("targets"):
        lines += ["**targets**, judged on each ratio's 95% CI", ""]
        lines += ["| target | this run | verdict |", "| --- | --- | --- |"]
        for entry in report["targets"]:
            lines.append(f"| {entry['label']} | {_target_value(entry)} | {entry['verdict']} |")
        lines.append("")
    return "\n".join(lines)
