"""sLSTM layer speed on the CPU: lstmkit's fused engine, its reference loop, the xlstm package.

    python benchmarks/slstm_speed.py [--sizes 256,16,128 1024,8,64] [--heads 4]
        [--repeats 5] [--threads 1] [--skip xlstm] [--out benchmarks/results/slstm_speed.json]

Each size is ``T,B,E`` (steps, batch, embedding = hidden size). Three implementations of the
same layer (causal conv of kernel 4 + swish into the input and forget gates, head-wise gate
projections, the sLSTM recurrence with a sigmoid forget gate, head-wise group norm):

- ``cpu``: ``lstmkit.nn.xlstm.SLSTMLayer(backend="cpu")``, the recurrence on the C++ engine;
- ``reference``: the same module with ``backend="reference"`` (a PyTorch loop over the step);
- ``xlstm``: the official package's ``sLSTMLayer(sLSTMLayerConfig(..., backend="vanilla"))``,
  its CPU path (needs ``pip install xlstm``; skipped with a note when it is missing).

``train`` is forward + backward of ``sum(y * g)`` for a fixed random ``g``; ``infer`` is the
forward under ``torch.inference_mode()``. Each cell of the table is the median of
``--repeats`` runs after one warm-up; the implementations take turns run by run, so that a
slow phase of a shared machine hits all of them alike. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lstmkit.backends import cpu
from lstmkit.io import publish
from lstmkit.nn.xlstm import SLSTMLayer

RESULTS = Path(__file__).resolve().parent / "results" / "slstm_speed.json"


def official_layer(E: int, heads: int) -> torch.nn.Module | None:
    """The xlstm package's sLSTM layer on its CPU path, or None without the package."""
    try:
        import xlstm
    except ImportError:
        return None
    config = xlstm.sLSTMLayerConfig(
        embedding_dim=E, num_heads=heads, conv1d_kernel_size=4, backend="vanilla"
    )
    return xlstm.sLSTMLayer(config)


def runners(
    E: int, heads: int, skip: set[str]
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """name -> ``x [B, T, E] -> y [B, T, E]`` for each implementation."""
    torch.manual_seed(0)
    layers: dict[str, torch.nn.Module | None] = {
        "cpu": SLSTMLayer(E, heads, 4, forget_gate="sigmoid", backend="cpu"),
        "reference": SLSTMLayer(E, heads, 4, forget_gate="sigmoid", backend="reference"),
        "xlstm": None if "xlstm" in skip else official_layer(E, heads),
    }
    if "xlstm" not in skip and layers["xlstm"] is None:
        print("note: the xlstm package is not installed; its column is skipped")
    return {
        name: (lambda x, layer=layer: layer(x)[0] if isinstance(layer, SLSTMLayer) else layer(x))
        for name, layer in layers.items()
        if layer is not None and name not in skip
    }


def time_once(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor,
              mode: str) -> float:  # fmt: skip
    """Seconds of one forward (``infer``) or forward + backward (``train``)."""
    start = time.perf_counter()
    if mode == "infer":
        with torch.inference_mode():
            run(x)
    else:
        xg = x.detach().requires_grad_()
        y = run(xg)
        y.backward(g)
    return time.perf_counter() - start


def measure(size: tuple[int, int, int], heads: int, repeats: int, skip: set[str]) -> dict:
    """{mode: {implementation: {"median_ms", "all_ms"}}} for one size."""
    T, B, E = size
    impls = runners(E, heads, skip)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, E, generator=g)
    upstream = torch.randn(B, T, E, generator=g)
    out: dict[str, dict] = {}
    for mode in ("train", "infer"):
        times: dict[str, list[float]] = {name: [] for name in impls}
        for run in impls.values():  # warm-up (and the engine's build, on a first run)
            time_once(run, x, upstream, mode)
        for _ in range(repeats):  # take turns: one run of each per round
            for name, run in impls.items():
                times[name].append(time_once(run, x, upstream, mode) * 1e3)
        out[mode] = {
            name: {"median_ms": statistics.median(ms), "all_ms": ms} for name, ms in times.items()
        }
    return out


def parse_size(text: str) -> tuple[int, int, int]:
    try:
        T, B, E = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a size is T,B,E (three integers), got {text!r}"
        ) from None
    if min(T, B, E) < 1:
        raise argparse.ArgumentTypeError(f"T, B and E must be positive, got {text!r}")
    return T, B, E


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size,
                        default=[(256, 16, 128), (1024, 8, 64)], help="T,B,E per size")  # fmt: skip
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["cpu", "reference", "xlstm"])
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args()
    if "cpu" not in args.skip and not cpu.available():
        raise SystemExit(f"the C++ engine did not build: {cpu.build_error()}")
    torch.set_num_threads(args.threads)

    results = []
    for size in args.sizes:
        T, B, E = size
        print(f"T={T} B={B} E={E} heads={args.heads} ...", flush=True)
        results.append({"T": T, "B": B, "E": E, **measure(size, args.heads, args.repeats,
                                                          set(args.skip))})  # fmt: skip
    names = [n for n in ("cpu", "reference", "xlstm") if n not in args.skip]
    header = f"| T | B | E | mode | {' | '.join(f'{n} (ms)' for n in names)} | cpu speed-up |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in results:
        for mode in ("train", "infer"):
            ms = {n: row[mode][n]["median_ms"] for n in names if n in row[mode]}
            others = [v for n, v in ms.items() if n != "cpu"]
            speedup = " / ".join(f"{v / ms['cpu']:.1f}x" for v in others) if "cpu" in ms else ""
            cells = " | ".join(f"{ms[n]:.1f}" if n in ms else "-" for n in names)
            print(f"| {row['T']} | {row['B']} | {row['E']} | {mode} | {cells} | {speedup} |")

    record = {
        "heads": args.heads,
        "repeats": args.repeats,
        "threads": args.threads,
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
            "torch": torch.__version__,
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False, suffix=".tmp") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    publish(f.name, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
