"""``lstmkit bench``: lstmkit's backends against torch.nn.LSTM, side by side, in one process.

For each thread count, size ``(T, B, D, H)``, variant and mode (training, inference) it times
torch.nn.LSTM (or torch.nn.GRU for ``gru``) padded and on a PackedSequence, and lstmkit on
each backend, padded and with ``lengths=``; measures torch.matmul's GFLOP/s as the ceiling
and the peak memory of a training step; and reports ms, ratios, GFLOP/s and the project's
targets as tables (rich, markdown) and JSON.

    >>> from lstmkit.bench import BenchConfig, run_benchmark
    >>> result = run_benchmark(BenchConfig(sizes=((5, 2, 3, 4),), variants=("standard",)))

Modules: ``contenders`` (what runs), ``timing``, ``flops`` (the GFLOP/s formula),
``memory`` (peak resident memory in a subprocess), ``runner`` (the loop), ``report``.
"""

from lstmkit.bench.flops import flops, forward_flops
from lstmkit.bench.options import parse_sizes, parse_threads, parse_variants
from lstmkit.bench.report import (
    default_json_path,
    markdown,
    print_tables,
    to_json,
    write_json,
    write_text,
)
from lstmkit.bench.runner import ALL_VARIANTS, SIZES, BenchConfig, BenchResult, run_benchmark

__all__ = [
    "ALL_VARIANTS",
    "SIZES",
    "BenchConfig",
    "BenchResult",
    "default_json_path",
    "flops",
    "forward_flops",
    "markdown",
    "parse_sizes",
    "parse_threads",
    "parse_variants",
    "print_tables",
    "run_benchmark",
    "to_json",
    "write_json",
    "write_text",
]
