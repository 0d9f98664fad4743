"""Training time (forward + backward) of the fused C++ CPU backend against torch.nn.LSTM and the
reference loop, per variant, median of several runs after one warm-up.

    python benchmarks/cpu_backend.py [--T 200 --B 64 --D 128 --H 256 --repeats 5]
        [--variants standard peephole gru] [--no-reference] [--json out.json]

Prints a table; ``--json`` also writes the numbers. Timings on a busy machine are noise: run
it alone (two OpenMP threads on two cores slow down many times when a third process runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

import lstmkit
from lstmkit.backends import cpu


def train_step_ms(run: Callable[[], torch.Tensor], repeats: int) -> float:
    """Median milliseconds of forward + backward (the first run warms up)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        y = run()
        y.backward(torch.ones_like(y))
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [("--T", 200), ("--B", 64), ("--D", 128), ("--H", 256), ("--repeats", 5)]:
        parser.add_argument(name, type=int, default=default)
    parser.add_argument("--variants", nargs="+", default=["standard", "peephole"])
    parser.add_argument("--no-reference", action="store_true", help="skip the slow reference")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if not cpu.available():
        raise SystemExit(f"the C++ engine did not build: {cpu.build_error()}")

    torch.manual_seed(0)
    x = torch.randn(args.T, args.B, args.D, requires_grad=True)
    peers = {"lstm": torch.nn.LSTM(args.D, args.H), "gru": torch.nn.GRU(args.D, args.H)}
    results = {}
    for variant in args.variants:
        family = "gru" if variant == "gru" else "lstm"
        row = {"torch": train_step_ms(lambda f=family: peers[f](x)[0], args.repeats)}
        for backend in ("cpu", "reference"):
            if backend == "reference" and args.no_reference:
                continue
            if family == "gru":
                module = lstmkit.GRU(args.D, args.H, backend=backend)
            else:
                module = lstmkit.LSTM(args.D, args.H, variant=variant, backend=backend)
            repeats = args.repeats if backend == "cpu" else max(1, args.repeats // 2)
            row[backend] = train_step_ms(lambda m=module: m(x)[0], repeats)
        results[variant] = row

    print(
        f"T={args.T} B={args.B} D={args.D} H={args.H}, {torch.get_num_threads()} threads, "
        f"training step (fwd+bwd) ms, median of {args.repeats}"
    )
    header = f"{'variant':<14} {'torch.nn':>9} {'cpu':>9} {'reference':>10} {'cpu/torch':>10}"
    print(header + f" {'ref/cpu':>8}")
    for variant, row in results.items():
        ref = row.get("reference")
        ref_text = f"{ref:10.1f}" if ref else f"{'-':>10}"
        speedup = f"{ref / row['cpu']:8.2f}" if ref else f"{'-':>8}"
        print(
            f"{variant:<14} {row['torch']:9.1f} {row['cpu']:9.1f} {ref_text} "
            f"{row['cpu'] / row['torch']:10.2f} {speedup}"
        )
    if args.json:
        config = {k: getattr(args, k) for k in ("T", "B", "D", "H", "repeats")}
        with open(args.json, "w") as f:
            json.dump({"config": config, "ms": results}, f, indent=2)


if __name__ == "__main__":
    main()
