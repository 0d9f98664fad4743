"""Wall-clock timing: interleaved rounds, and the machine's GEMM ceiling measured alongside.

Contenders of one case run in rounds, each contender once per round, so that a change in the
machine's load (it is shared) falls on all of them alike rather than on whichever ran last.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch

SQUARE = 2048  # the large square GEMM: 17 GFLOP, far beyond any cache


def time_ms(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def time_interleaved(
    runs: dict[str, Callable[[], None]], repeats: dict[str, int]
) -> dict[str, list[float]]:
    """Milliseconds of each run of each callable (warmed up already), in rounds.

    ``repeats[name]`` says how many rounds ``name`` joins (the first ones). The garbage
    collector is off meanwhile (as in ``timeit``): a full collection costs a large fraction
    of a second once torch's compiler is imported, and would land inside some timed run.
    Tensors and autograd graphs are freed by reference counting regardless.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(max(repeats.values(), default=0)):
            for name, run in runs.items():
                if round_ < repeats[name]:
                    times[name].append(time_ms(run))
    finally:
        if was_enabled:
            gc.enable()
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def matmul_gflops(m: int, k: int, n: int, repeats: int, min_ms: float = 20.0) -> list[float]:
    """GFLOP/s of ``torch.matmul`` of ``[m, k] @ [k, n]`` (fp32), one value per repeat.

    A small product takes microseconds, so each timed run loops it until it lasts ``min_ms``.
    """
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    start = time.perf_counter()
    torch.matmul(a, b, out=out)  # warm-up, and a first estimate of one product's time
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(1, int(min_ms / 1e3 / once))
    results = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            torch.matmul(a, b, out=out)
        seconds = time.perf_counter() - start
        results.append(2 * m * k * n * loops / seconds / 1e9)
    return results
