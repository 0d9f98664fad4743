"""lstmkit.ConvLSTM against the plain Python-loop ConvLSTM most public code uses.

The common pattern (as in the widely copied ``ConvLSTM_pytorch`` repositories): a cell that
concatenates x_t and h_{t-1} on the channels and runs one ``nn.Conv2d`` per step, a loop over
layers and steps that indexes ``x[:, t]`` and ``torch.stack``s the outputs. lstmkit instead
convolves the input of all T*B frames in one call before the loop, and per step convolves
only h_{t-1}. Both run the same weights (checked before timing); lstmkit also with its
default per-channel peepholes, which the common pattern does not have.

Inference is a forward pass under ``torch.no_grad()``; training is forward, backward and an
SGD step. Median of ``--repeats`` runs after a warm-up, in one process, the implementations
taking turns run by run (so a slow spell of a shared machine hits all of them alike); ratios
are the loop's time over lstmkit's (above 1: lstmkit is faster).

    python benchmarks/convlstm_speed.py [--size 64 --channels 16 --hidden 16 --T 10 --B 8
                                         --kernel 3 --layers 1 --repeats 9 --threads 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

import lstmkit

RESULTS = Path(__file__).resolve().parent / "results" / "convlstm_speed.json"
MODES = ("inference", "training")


class LoopCell(nn.Module):
    """One step the common way: conv(cat(x_t, h)) -> i, f, o, g."""

    def __init__(self, in_channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        gates = self.conv(torch.cat([x, h], dim=1))
        i, f, o, g = torch.split(gates, self.hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class LoopConvLSTM(nn.Module):
    """Layers of ``LoopCell``, a Python loop over steps, batch first ``[B, T, C, H, W]``."""

    def __init__(self, in_channels: int, hidden: int, kernel: int, layers: int) -> None:
        super().__init__()
        self.cells = nn.ModuleList(
            LoopCell(in_channels if k == 0 else hidden, hidden, kernel) for k in range(layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        B, T, _, H, W = x.shape
        for cell in self.cells:
            h = x.new_zeros(B, cell.hidden, H, W)
            c = torch.zeros_like(h)
            outputs = []
            for t in range(T):
                h, c = cell(x[:, t], (h, c))
                outputs.append(h)
            x = torch.stack(outputs, dim=1)
        return x


def copy_weights(loop: LoopConvLSTM, ours: lstmkit.ConvLSTM) -> None:
    """lstmkit's weight_ih and weight_hh (gates i, f, g, o) into the loop's one conv
    (input channels first, gates i, f, o, g)."""
    with torch.no_grad():
        for k, cell in enumerate(loop.cells):
            w = torch.cat([getattr(ours, f"weight_ih_l{k}"), getattr(ours, f"weight_hh_l{k}")], 1)
            bias = getattr(ours, f"bias_l{k}")
            order = [0, 1, 3, 2]  # i, f, o, g from i, f, g, o
            cell.conv.weight.copy_(torch.cat([w.chunk(4)[j] for j in order]))
            cell.conv.bias.copy_(torch.cat([bias.chunk(4)[j] for j in order]))


def timed_in_turns(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Milliseconds of ``repeats`` runs of each, after one warm-up each, taking turns."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if repeat:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = [
        ("--size", 64), ("--channels", 16), ("--hidden", 16), ("--T", 10), ("--B", 8),
        ("--kernel", 3), ("--layers", 1), ("--repeats", 9), ("--threads", 0),
    ]  # fmt: skip
    for name, default in defaults:
        parser.add_argument(name, type=int, default=default)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def ours(peephole: bool) -> lstmkit.ConvLSTM:
        torch.manual_seed(0)
        return lstmkit.ConvLSTM(
            args.channels, args.hidden, args.kernel, args.layers, batch_first=True,
            peephole=peephole, backend="reference",
        )  # fmt: skip

    plain, peephole = ours(False), ours(True)
    loop = LoopConvLSTM(args.channels, args.hidden, args.kernel, args.layers)
    copy_weights(loop, plain)
    x = torch.randn(args.B, args.T, args.channels, args.size, args.size)
    with torch.no_grad():
        difference = (loop(x) - plain(x)[0]).abs().max().item()
    assert difference < 1e-4, f"the loop and lstmkit disagree by {difference}"

    models: dict[str, tuple[nn.Module, Callable[[Tensor], Tensor]]] = {
        "python loop (common pattern)": (loop, loop),
        "lstmkit.ConvLSTM peephole=False": (plain, lambda v: plain(v)[0]),
        "lstmkit.ConvLSTM (peepholes)": (peephole, lambda v: peephole(v)[0]),
    }

    def inference(forward: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                forward(x)

        return run

    def training(module: nn.Module, forward: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        optimiser = torch.optim.SGD(module.parameters(), lr=1e-3)

        def run() -> None:
            optimiser.zero_grad()
            forward(x).square().mean().backward()
            optimiser.step()

        return run

    runs = {}
    for name, (module, forward) in models.items():
        runs[(name, "inference")] = inference(forward)
        runs[(name, "training")] = training(module, forward)
    times = timed_in_turns(runs, args.repeats)
    results = {
        name: {mode: statistics.median(times[(name, mode)]) for mode in MODES} for name in models
    }

    base = results["python loop (common pattern)"]
    print(
        f"ConvLSTM {args.size}x{args.size}, {args.channels} -> {args.hidden} channels, "
        f"T={args.T}, B={args.B}, kernel {args.kernel}, {args.layers} layer(s), "
        f"{torch.get_num_threads()} threads, median of {args.repeats} runs "
        f"(same weights: max difference {difference:.1e})"
    )
    print(f"{'implementation':<34} {'infer ms':>9} {'train ms':>9} {'infer x':>8} {'train x':>8}")
    for name, ms in results.items():
        print(
            f"{name:<34} {ms['inference']:9.1f} {ms['training']:9.1f} "
            f"{base['inference'] / ms['inference']:8.2f} {base['training'] / ms['training']:8.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    every = {f"{name} / {mode}": values for (name, mode), values in times.items()}
    record = {"args": vars(args), "median_ms": results, "all_ms": every}
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
