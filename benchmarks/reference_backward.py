"""Backward/forward time of the reference loop against the per-step indexing trap.

A loop that reads ``gx[t]`` from one big tensor makes every step's backward write a full
zero-filled ``[T, B, 4H]`` gradient: O(T^2). The reference backend walks ``unbind`` views and
``stack``s outputs instead. This script times, in one process, median of several runs:
torch.nn.LSTM, lstmkit's reference backend, and the naive indexing loop, forward and backward.

    python benchmarks/reference_backward.py [--T 200 --B 64 --D 128 --H 256 --repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import lstmkit


def naive_indexing_loop(module: lstmkit.LSTM, x: torch.Tensor) -> torch.Tensor:
    """The trap: index the projected input per step and write outputs into a tensor."""
    cell, params = module.cells[0][0], module.layer_params(0, 0)
    gx = cell.input_projection(params, x)
    T, B = x.shape[:2]
    state = (x.new_zeros(B, module.hidden_size), x.new_zeros(B, module.hidden_size))
    out = x.new_zeros(T, B, module.hidden_size)
    for t in range(T):
        y, state = cell.step(params, gx[t], state)
        out[t] = y
    return out


def time_fwd_bwd(run: Callable[[], torch.Tensor], repeats: int) -> tuple[float, float]:
    forward, backward = [], []
    for _ in range(repeats + 1):  # the first run warms up
        start = time.perf_counter()
        y = run()
        mid = time.perf_counter()
        y.backward(torch.ones_like(y))
        end = time.perf_counter()
        forward.append(mid - start)
        backward.append(end - mid)
    return statistics.median(forward[1:]) * 1e3, statistics.median(backward[1:]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [("--T", 200), ("--B", 64), ("--D", 128), ("--H", 256), ("--repeats", 5)]:
        parser.add_argument(name, type=int, default=default)
    args = parser.parse_args()
    torch.manual_seed(0)
    peer = torch.nn.LSTM(args.D, args.H)
    module = lstmkit.LSTM.from_torch(peer, backend="reference")
    x = torch.randn(args.T, args.B, args.D, requires_grad=True)
    runs = {
        "torch.nn.LSTM": lambda: peer(x)[0],
        "lstmkit reference": lambda: module(x)[0],
        "naive x[t] loop": lambda: naive_indexing_loop(module, x),
    }
    print(f"T={args.T} B={args.B} D={args.D} H={args.H}, median of {args.repeats} runs")
    print(f"{'implementation':<20} {'forward ms':>11} {'backward ms':>12} {'bwd/fwd':>8}")
    for name, run in runs.items():
        fwd, bwd = time_fwd_bwd(run, args.repeats)
        print(f"{name:<20} {fwd:11.1f} {bwd:12.1f} {bwd / fwd:8.2f}")


if __name__ == "__main__":
    main()
