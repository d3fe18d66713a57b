"""Run a function on several gloo ranks spawned on 127.0.0.1, with a deadline.

Each rank is a fresh process (forked from a ``forkserver`` that imported torch
once, or spawned) that joins a process group over TCP on
a free localhost port, runs ``target()`` and reports ``("ok", result)`` or
``("error", exception type name, message)`` through a queue. The parent never
waits longer than ``deadline`` seconds: ranks still alive then are terminated
and the call fails, so a test can never hang CI.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import queue
import socket
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
import torch


class Outcome(NamedTuple):
    status: str  # "ok" or "error"
    value: object  # the result (tensors come back as tensors) or the error type name
    message: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_interface() -> str | None:
    names = {name for _, name in socket.if_nameindex()}
    return next((name for name in ("lo", "lo0") if name in names), None)


def _to_wire(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().cpu().numpy())
    if isinstance(value, dict):
        return {key: _to_wire(item) for key, item in value.items()}
    return value


def _from_wire(value):
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "tensor":
        return torch.from_numpy(np.asarray(value[1]))
    if isinstance(value, dict):
        return {key: _from_wire(item) for key, item in value.items()}
    return value


def _context():
    """Fork the ranks from one server process that imported torch once (``forkserver``);
    ``spawn`` where that is unavailable. Never a plain fork of this (threaded) process."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["torch", "torch.distributed", "plastorch"])
        return context
    return multiprocessing.get_context("spawn")


def _entry(target, rank, world_size, port, pg_timeout, results) -> None:
    interface = loopback_interface()
    if interface is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=pg_timeout),
    )
    try:
        results.put((rank, "ok", _to_wire(target()), ""))
    except BaseException as error:  # report every failure to the parent, then exit
        results.put((rank, "error", type(error).__name__, str(error)))
        return
    dist.destroy_process_group()


def run_ranks(
    target: Callable[[], object],
    world_size: int = 2,
    *,
    pg_timeout: float = 60.0,
    deadline: float = 180.0,
) -> list[Outcome]:
    """Outcome of ``target()`` on each of ``world_size`` gloo ranks (index = rank)."""
    context = _context()
    results = context.Queue()
    port = free_port()
    processes = [
        context.Process(
            target=_entry, args=(target, rank, world_size, port, pg_timeout, results), daemon=True
        )
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, Outcome] = {}
    end = time.monotonic() + deadline
    try:
        while len(outcomes) < world_size:
            remaining = end - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"ranks {sorted(set(range(world_size)) - set(outcomes))} hung")
            try:
                rank, status, value, message = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                dead = [
                    r
                    for r, p in enumerate(processes)
                    if r not in outcomes and p.exitcode not in (None, 0)
                ]
                if dead and results.empty():
                    pytest.fail(f"ranks {dead} died without reporting (exit codes)")
                continue
            outcomes[rank] = Outcome(status, _from_wire(value), message)
        for process in processes:  # every rank has reported: a short grace to exit
            process.join(timeout=min(max(end - time.monotonic(), 0.1), 5.0))
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5.0)
    return [outcomes[rank] for rank in range(world_size)]
