"""``lstmkit bench``: time lstmkit's backends against torch.nn.LSTM (see lstmkit.bench)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()

_SIZES_HELP = (
    "Sizes T,B,D,H separated by ';' (e.g. '100,32,64,128;50,128,256,512'), or 'all': "
    "100,32,64,128; 200,64,128,256; 500,16,32,64; 50,128,256,512; 1000,8,16,32."
)
_VARIANTS_HELP = (
    "Variants separated by ',' (e.g. 'standard,fgr,gru'), or 'all' (see `lstmkit variants`; "
    "'gru' is lstmkit.GRU against torch.nn.GRU)."
)
_THREADS_HELP = (
    "torch thread counts to run at, separated by ',' (e.g. '1,2'); default: torch's current one."
)
_JSON_HELP = (
    "Write every run's time here (default: benchmarks/results/speed-<date>-<time>.json "
    "under the current folder)."
)


def bench(
    sizes: str = typer.Option("all", help=_SIZES_HELP),
    variants: str = typer.Option("all", help=_VARIANTS_HELP),
    repeats: int = typer.Option(5, min=1, help="Timed runs per contender; the median is shown."),
    warmup: int = typer.Option(1, min=0, help="Untimed runs per contender before timing."),
    threads: str = typer.Option("", help=_THREADS_HELP),
    reference_repeats: int | None = typer.Option(
        None, min=1, help="Timed runs of the slow reference loop (default: --repeats)."
    ),
    skip_reference_above: int | None = typer.Option(
        None, min=1, help="Do not time the reference loop at sizes with T above this."
    ),
    memory: bool = typer.Option(
        True, help="Measure the peak memory of a training step (a subprocess per size)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help=_JSON_HELP),
    markdown_path: Path | None = typer.Option(
        None, "--markdown", help="Also write the tables as markdown to this file."
    ),
    square: int = typer.Option(
        2048, min=1, help="n of the n x n GEMM that measures the machine's ceiling."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the inputs and the lengths."),
) -> None:
    """Time lstmkit's backends against torch.nn.LSTM, training and inference, side by side.

    Contenders: torch.nn.LSTM padded and on a PackedSequence (torch.nn.GRU for gru); lstmkit
    on each backend padded, and on cpu with lengths= (lengths uniform in [T/2, T]).

    Per thread count and mode it prints the median ms, ratios to torch.nn, GEMM GFLOP/s next
    to torch.matmul's, measured in the same run, the peak memory of a training step and the
    speed targets (ticked or crossed); it writes every run's time and the machine as JSON.

    Example: lstmkit bench --sizes '100,32,64,128' --variants standard,peephole,gru
    """
    from lstmkit import bench as lib

    try:
        config = lib.BenchConfig(
            sizes=lib.parse_sizes(sizes),
            variants=lib.parse_variants(variants),
            repeats=repeats,
            warmup=warmup,
            threads=lib.parse_threads(threads),
            reference_repeats=reference_repeats,
            skip_reference_above=skip_reference_above,
            memory=memory,
            square=square,
            seed=seed,
        )
        result = lib.run_benchmark(config, progress=lambda line: console.print(line, style="dim"))
    except (ValueError, TypeError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    lib.print_tables(result, console)
    written = lib.write_json(result, json_path or lib.default_json_path())
    console.print(f"json: {written}")
    if markdown_path is not None:
        console.print(f"markdown: {lib.write_text(markdown_path, lib.markdown(result))}")
