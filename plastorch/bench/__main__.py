"""``python -m plastorch.bench``: the benchmark suite (see :mod:`plastorch.bench`)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from .cases import CASES
from .common import Config
from .peers import PEER_NAMES
from .suite import format_markdown, run_suite


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m plastorch.bench",
        description="Time plastorch, the bare-arithmetic limit and the installed peers side by side.",
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, few repetitions (CI)")
    parser.add_argument("--json", metavar="PATH", help="also write the full results as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables as Markdown")
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--cases", default="all", help="comma-separated case names, or 'all'")
    parser.add_argument(
        "--peers", default=",".join(PEER_NAMES), help="comma-separated peers to time, or 'none'"
    )
    parser.add_argument(
        "--repeats", type=int, help="timed repetitions per case (default: per case)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-check", action="store_true", help="skip the correctness checks")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for case in CASES:
            print(f"{case.name:<24} {case.title}")
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    peers = () if args.peers == "none" else tuple(p for p in args.peers.split(",") if p)
    config = Config(
        quick=args.quick,
        device=device,
        repeats=args.repeats,
        warmup=args.warmup,
        peers=peers,
        seed=args.seed,
    )
    names = None if args.cases == "all" else [n for n in args.cases.split(",") if n]
    report = run_suite(config, names, check=not args.no_check)
    machine = report["machine"]
    print(
        f"torch {machine['torch']}, {machine['threads']} threads, {machine['device']}, "
        f"{machine['processor']}, compiled kernels: {machine['compiled_kernels']}, "
        f"allocator: {machine['allocator']}, "
        f"load average {machine['load_average_start']} -> "
        f"{machine['load_average_end']}, {machine['wall_seconds']:.0f} s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(report))
    failed = [
        c["name"] for case in report["cases"] for c in case.get("checks", []) if not c["passed"]
    ] + [case["name"] for case in report["cases"] if "error" in case]
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
