"""The benchmark's loop: for each thread count, size, variant and mode, time every contender.

``BenchConfig`` holds what to run (checked on construction); ``run_benchmark`` returns a
``BenchResult`` with every run's time, the GEMM ceilings and the peak memories.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lstmkit._checks import check_positive_int, unknown_name
from lstmkit.backends import registry
from lstmkit.bench import memory
from lstmkit.bench.contenders import (
    LENGTHS,
    MODES,
    ON_LENGTHS,
    PACKED,
    PEER,
    Run,
    Size,
    contenders,
    make_inputs,
    make_module,
)
from lstmkit.bench.flops import flops
from lstmkit.bench.timing import SQUARE, matmul_gflops, median, time_interleaved
from lstmkit.cells import VARIANTS

SIZES: tuple[Size, ...] = (
    (100, 32, 64, 128),
    (200, 64, 128, 256),
    (500, 16, 32, 64),
    (50, 128, 256, 512),
    (1000, 8, 16, 32),
)
ALL_VARIANTS = (*VARIANTS, "gru")
# the one the run can be told to skip or repeat less: it is many times slower than the rest
REFERENCE = "reference"


@dataclass(frozen=True)
class BenchConfig:
    """What ``run_benchmark`` runs; every field is checked on construction."""

    sizes: tuple[Size, ...] = SIZES
    variants: tuple[str, ...] = ALL_VARIANTS
    repeats: int = 5  # timed runs per contender, after the warm-up; the median is reported
    warmup: int = 1  # untimed runs per contender before the timed ones
    threads: tuple[int, ...] = ()  # torch thread counts to run at; () = torch's current count
    reference_repeats: int | None = None  # timed runs of the reference loop; None = repeats
    skip_reference_above: int | None = None  # no reference at sizes with a larger T
    memory: bool = True  # measure the peak memory of training (a subprocess per size)
    square: int = SQUARE  # n of the n x n @ n x n GEMM that gives the machine's ceiling
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("repeats", "warmup", "square", "seed"):
            allow_zero = name in ("warmup", "seed")
            check_positive_int(name, getattr(self, name), allow_zero=allow_zero)
        for name in ("reference_repeats", "skip_reference_above"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        if not self.sizes:
            raise ValueError("sizes must name at least one (T, B, D, H), got none")
        for size in self.sizes:
            if len(size) != 4:
                raise ValueError(f"sizes must be (T, B, D, H) groups of 4 ints, got {size!r}")
            for part, value in zip("TBDH", size, strict=True):
                check_positive_int(f"sizes' {part}", value)
        if not self.variants:
            raise ValueError("variants must name at least one variant, got none")
        for variant in self.variants:
            if variant not in ALL_VARIANTS:
                raise unknown_name("variants", variant, ALL_VARIANTS)
        for count in self.threads:
            check_positive_int("threads", count)

    def repeats_of(self, contender: str) -> int:
        if contender == REFERENCE and self.reference_repeats is not None:
            return min(self.reference_repeats, self.repeats)
        return self.repeats

    def skips_reference(self, size: Size) -> bool:
        return self.skip_reference_above is not None and size[0] > self.skip_reference_above


@dataclass
class Timing:
    """Every timed run of one contender on one case and mode (``skipped`` says why none)."""

    threads: int
    size: Size
    variant: str
    mode: str
    contender: str
    times_ms: list[float] = field(default_factory=list)
    flops: int = 0  # useful GEMM flops of one run (sum(lengths) rows for lengths runs)
    skipped: str | None = None
    shared_from: str | None = None  # times copied from this variant's row (same peer)

    @property
    def median_ms(self) -> float | None:
        return median(self.times_ms) if self.times_ms else None

    @property
    def gflops_per_s(self) -> float | None:
        ms = self.median_ms
        return self.flops / ms / 1e6 if ms else None


@dataclass
class Ceiling:
    """torch.matmul's GFLOP/s at one shape ``[m, k] @ [k, n]``."""

    threads: int
    shape: tuple[int, int, int]
    gflops_per_s: list[float]
    size: Size | None = None  # the benchmark size whose recurrent GEMM this is; None: square

    @property
    def median(self) -> float:
        return median(self.gflops_per_s)


@dataclass
class Peak:
    """Peak resident memory of one training step (``error`` says why it is missing)."""

    threads: int
    size: Size
    variant: str
    contender: str
    kib: int | None
    error: str | None = None


@dataclass
class BenchResult:
    config: BenchConfig
    threads: tuple[int, ...]
    contenders: tuple[str, ...]
    timings: list[Timing] = field(default_factory=list)
    ceilings: list[Ceiling] = field(default_factory=list)
    peaks: list[Peak] = field(default_factory=list)
    seconds: float = 0.0

    def timing(self, threads: int, size: Size, variant: str, mode: str, contender: str):
        for t in self.timings:
            if (t.threads, t.size, t.variant, t.mode, t.contender) == (
                threads, size, variant, mode, contender,
            ):  # fmt: skip
                return t
        return None

    def peak(self, threads: int, size: Size, variant: str, contender: str) -> Peak | None:
        wanted = (threads, size, peer_job(variant)[0] if contender == PEER else variant)
        for p in self.peaks:
            if (p.threads, p.size, p.variant) == wanted and p.contender == contender:
                return p
        return None

    def ceiling(self, threads: int, size: Size | None) -> Ceiling | None:
        return next((c for c in self.ceilings if (c.threads, c.size) == (threads, size)), None)


def peer_job(variant: str) -> tuple[str, str]:
    """The memory job of ``variant``'s peer: one per family (nn.LSTM, nn.GRU) and size."""
    return ("gru" if variant == "gru" else "standard", PEER)


def run_benchmark(
    config: BenchConfig, progress: Callable[[str], None] | None = None
) -> BenchResult:
    """Time every contender at every size, variant and mode of ``config``."""
    if os.environ.get("LSTMKIT_BACKEND"):
        raise ValueError(
            f"LSTMKIT_BACKEND is set to {os.environ['LSTMKIT_BACKEND']!r}, which would run every "
            "lstmkit contender on that one backend; unset it to benchmark the backends"
        )
    say = progress or (lambda line: None)
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    threads = config.threads or (previous_threads,)
    result = BenchResult(config, threads, contenders("torch" in registry.CHOICES))
    # what exists now (torch, its compiler's many objects) stays put: the collections between
    # timings then scan only the benchmark's own objects (a full one takes ~0.5 s here)
    gc.freeze()
    try:
        for count in threads:
            torch.set_num_threads(count)
            _measure_ceilings(config, count, result)
            for size in config.sizes:
                for variant in config.variants:
                    case_start = time.perf_counter()
                    _time_case(config, count, size, variant, result)
                    seconds = time.perf_counter() - case_start
                    say(f"threads={count} T,B,D,H={_text(size)} {variant}: {seconds:.1f} s")
                if config.memory:
                    _measure_peaks(config, count, size, result)
                    say(f"threads={count} T,B,D,H={_text(size)}: peak memory measured")
    finally:
        torch.set_num_threads(previous_threads)
        gc.unfreeze()
    result.seconds = time.perf_counter() - start
    return result


def _text(size: Size) -> str:
    return ",".join(map(str, size))


def _measure_ceilings(config: BenchConfig, threads: int, result: BenchResult) -> None:
    """torch.matmul at a large square and at each size's recurrent GEMM [B, H] @ [H, 4H]."""
    shapes: list[tuple[tuple[int, int, int], Size | None]] = [((config.square,) * 3, None)]
    shapes += [((B, H, 4 * H), (T, B, D, H)) for T, B, D, H in config.sizes]
    for shape, size in shapes:
        gflops = matmul_gflops(*shape, repeats=config.repeats)
        result.ceilings.append(Ceiling(threads, shape, gflops, size))


def _time_case(config: BenchConfig, threads: int, size: Size, variant: str, result) -> None:
    T, B, D, H = size
    inputs = make_inputs(size, config.seed)
    # torch.nn on a PackedSequence is the slowest peer, and the same module whatever the
    # variant: it is timed with the first variant of its family and its times reused
    shared = {mode: _first_packed(result, threads, size, variant, mode) for mode in MODES}
    modules, not_built = {}, {}
    for contender in result.contenders:
        if contender == PACKED and all(shared.values()):
            continue
        if contender == REFERENCE and config.skips_reference(size):
            not_built[contender] = f"T={T} > --skip-reference-above {config.skip_reference_above}"
            continue
        try:
            modules[contender] = make_module(contender, variant, size)
        except ValueError as error:  # the backend does not run this variant
            not_built[contender] = str(error)
    for mode in MODES:
        runs, skipped = {}, dict(not_built)
        for contender, module in modules.items():
            run = Run(contender, module, inputs, mode)
            try:
                for _ in range(config.warmup):
                    run()
                if not config.warmup:
                    run.forward()  # still find out whether the backend runs this case
            except (ValueError, NotImplementedError, RuntimeError) as error:
                skipped[contender] = f"{type(error).__name__}: {error}"
                continue
            runs[contender] = run
        repeats = {contender: config.repeats_of(contender) for contender in runs}
        times = time_interleaved(runs, repeats)
        for contender in result.contenders:
            rows = int(inputs.lengths.sum()) if contender in ON_LENGTHS else T * B
            # the peer computes its own cell (standard, or the GRU), whatever the variant
            cell = peer_job(variant)[0] if contender in (PEER, PACKED) else variant
            timing = Timing(
                threads,
                size,
                variant,
                mode,
                contender,
                times_ms=times.get(contender, []),
                flops=flops(cell, mode, rows, D, H),
                skipped=skipped.get(contender),
            )
            first = shared[mode]
            if contender == PACKED and first is not None:
                timing.times_ms, timing.skipped = list(first.times_ms), first.skipped
                timing.shared_from = first.variant
            result.timings.append(timing)


def _first_packed(result: BenchResult, threads: int, size: Size, variant: str, mode: str):
    """The timing of the peer on packed input made in an earlier row of the same family."""
    family = peer_job(variant)[0]
    for timing in result.timings:
        if (
            timing.contender == PACKED
            and (timing.threads, timing.size, timing.mode) == (threads, size, mode)
            and peer_job(timing.variant)[0] == family
            and timing.shared_from is None
        ):
            return timing
    return None


def _measure_peaks(config: BenchConfig, threads: int, size: Size, result: BenchResult) -> None:
    """Peak memory of a training step of the peers and of ``cpu`` (padded and lengths)."""
    jobs: list[tuple[str, str]] = []
    for variant in config.variants:
        for job in (peer_job(variant), (variant, "cpu"), (variant, LENGTHS)):
            if job not in jobs:
                jobs.append(job)
    answers = memory.measure_in_subprocess(size, jobs, config.seed, threads)
    for (variant, contender), value in answers.items():
        if isinstance(value, int):
            result.peaks.append(Peak(threads, size, variant, contender, value))
        else:
            result.peaks.append(Peak(threads, size, variant, contender, None, value))
