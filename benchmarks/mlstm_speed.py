"""The mLSTM's three forms (chunkwise, parallel, recurrent): time and peak memory against T.

All three compute the same function (tests/test_xlstm.py); this shows what each costs. The
memory cell alone runs (``lstmkit.cells.mlstm``: q, k, v ``[B, K, T, E]`` and the gate
pre-activations ``[B, K, T]``), so the projections every form shares do not blur the
difference.

- inference: a forward pass under ``torch.no_grad()``;
- training: forward, then backward of ``sum(h * g)`` for a fixed random ``g`` into q, k, v
  and both gates.

Time: the median of ``--repeats`` runs after a warm-up, the forms taking turns run by run
(so a slow spell of a shared machine hits all of them alike). Peak memory: one run under
``torch.profiler`` with ``profile_memory=True``; every CPU allocation and free it records,
in time order, summed to a running total whose maximum is the peak memory the call needed
above what existed before it (its inputs). The profiled run is not timed.

A form is skipped at a length where one run would take minutes or gigabytes (the parallel
form's ``[T, T]`` matrices, the recurrent form's Python loop in training); ``--max-parallel``
and ``--max-recurrent`` set those limits, and the table says "skipped".

    python benchmarks/mlstm_speed.py [--T 256 1024 4096 --B 2 --heads 4 --head-size 32
                                      --chunk 64 --repeats 5 --threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

from lstmkit.cells.mlstm import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent

RESULTS = Path(__file__).resolve().parent / "results" / "mlstm_speed.json"
FORMS = ("chunkwise", "parallel", "recurrent")
MODES = ("inference", "training")


def make_inputs(B: int, K: int, T: int, E: int, seed: int = 0) -> list[Tensor]:
    """q, k, v ``[B, K, T, E]``, input-gate pre-activations and log forget gates ``[B, K, T]``."""
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, K, T, E, generator=generator) for _ in range(3))
    i_pre = torch.randn(B, K, T, generator=generator)
    log_f = torch.nn.functional.logsigmoid(3.0 + torch.randn(B, K, T, generator=generator))
    return [q, k, v, i_pre, log_f]


def runner(form: str, mode: str, inputs: list[Tensor], chunk: int) -> Callable[[], None]:
    """One call of ``form`` in ``mode`` on ``inputs``, as a function of nothing."""
    if form == "chunkwise":

        def forward(*xs):
            return mlstm_chunkwise(*xs, chunk_size=chunk)[0]
    else:
        forward = {"parallel": mlstm_parallel, "recurrent": mlstm_recurrent}[form]
        forward = (lambda f: lambda *xs: f(*xs)[0])(forward)

    if mode == "inference":

        def call() -> None:
            with torch.no_grad():
                forward(*inputs)

        return call
    leaves = [x.detach().requires_grad_() for x in inputs]
    upstream = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(1))

    def call() -> None:
        h = forward(*leaves)
        torch.autograd.grad(h, leaves, upstream)

    return call


def peak_bytes(call: Callable[[], None]) -> int:
    """The largest running total of the CPU allocations ``call`` makes (frees subtract)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    changes: list[tuple[int, int]] = []

    def walk(event) -> None:
        fields = event.extra_fields
        if type(fields).__name__ == "_ExtraFields_Allocation" and str(fields.device) == "cpu":
            changes.append((event.start_time_ns, fields.alloc_size))
        for child in event.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    total = peak = 0
    for _, size in sorted(changes):
        total += size
        peak = max(peak, total)
    return peak


def skipped(form: str, mode: str, T: int, args: argparse.Namespace) -> str | None:
    if form == "parallel" and args.max_parallel < T:
        return f"T > {args.max_parallel}: [T, T] matrices per head"
    if form == "recurrent" and args.max_recurrent[mode] < T:
        return f"T > {args.max_recurrent[mode]}: a Python step per time step"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--B", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-size", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="0: PyTorch's default")
    parser.add_argument("--max-parallel", type=int, default=4096)
    parser.add_argument("--max-recurrent-training", type=int, default=4096)
    parser.add_argument("--max-recurrent-inference", type=int, default=4096)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.max_recurrent = {
        "training": args.max_recurrent_training,
        "inference": args.max_recurrent_inference,
    }
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for T in args.T:
        inputs = make_inputs(args.B, args.heads, T, args.head_size)
        for mode in MODES:
            calls = {}
            for form in FORMS:
                reason = skipped(form, mode, T, args)
                if reason:
                    rows.append({"form": form, "mode": mode, "T": T, "skipped": reason})
                    continue
                calls[form] = runner(form, mode, inputs, args.chunk)
                calls[form]()  # warm-up
            times: dict[str, list[float]] = {form: [] for form in calls}
            for _ in range(args.repeats):
                for form, call in calls.items():
                    start = time.perf_counter()
                    call()
                    times[form].append(time.perf_counter() - start)
            for form, call in calls.items():
                row = {
                    "form": form,
                    "mode": mode,
                    "T": T,
                    "median_ms": 1000 * statistics.median(times[form]),
                    "runs_ms": [1000 * t for t in times[form]],
                    "peak_mib": peak_bytes(call) / 2**20,
                }
                rows.append(row)
                print(_line(row), flush=True)

    print()
    print(markdown(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "mlstm_speed",
        "config": {
            "B": args.B,
            "heads": args.heads,
            "head_size": args.head_size,
            "chunk": args.chunk,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
        },
        "rows": rows,
    }
    temporary = args.json.with_name(f".{args.json.name}.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    temporary.replace(args.json)
    print(f"\nwrote {args.json}")


def _line(row: dict) -> str:
    return (
        f"{row['mode']:9s} {row['form']:9s} T={row['T']:5d}  {row['median_ms']:10.1f} ms  "
        f"{row['peak_mib']:9.1f} MiB"
    )


def markdown(rows: list[dict]) -> str:
    """One line per (mode, T): each form's median time and peak memory."""
    lines = [
        "| mode | T | " + " | ".join(f"{f} ms | {f} MiB" for f in FORMS) + " |",
        "|---|---|" + "---|---|" * len(FORMS),
    ]
    keys = sorted({(r["mode"], r["T"]) for r in rows}, key=lambda k: (MODES.index(k[0]), k[1]))
    for mode, T in keys:
        cells = []
        for form in FORMS:
            row = next(r for r in rows if (r["mode"], r["T"], r["form"]) == (mode, T, form))
            if "skipped" in row:
                cells += ["skipped", "-"]
            else:
                cells += [f"{row['median_ms']:.1f}", f"{row['peak_mib']:.1f}"]
        lines.append(f"| {mode} | {T} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
