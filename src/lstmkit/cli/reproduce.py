"""``lstmkit reproduce NAME``: one command per registered paper reproduction.

The commands are made from ``lstmkit.tasks.reproduce.REPRODUCTIONS``; a new reproduction
registered there shows up here with the same options (``--quick``, ``--output-dir``,
``--seed``; ``--seeds`` and ``--protocol`` for the classic-paper experiments).
``lstmkit reproduce --all [--quick]`` runs every classic-paper experiment in turn and writes
one combined table.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lstmkit.tasks.reproduce import REPRODUCTIONS, Reproduction, ReproductionResult, format_cell

console = Console()

reproduce_app = typer.Typer(
    help=(
        "Reproduce a paper's experiment at a size this machine runs, and compare with the "
        "paper's numbers. Example: lstmkit reproduce convlstm --quick"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_SEEDS_HELP = (
    "How many seeds (seed, seed+1, ...) a classic-paper experiment runs "
    "(default: 1 with --quick, else 5)."
)
_PROTOCOL_HELP = (
    "modern: Adam on minibatches; paper: the paper's online SGD, sizes and biases "
    "(where the experiment offers it)."
)


def _show(result: ReproductionResult) -> None:
    table = Table(*result.columns, title=result.title)
    for row in result.rows:
        table.add_row(*(format_cell(value) for value in row))
    console.print(table)
    for note in result.notes:
        console.print(f"- {note}", markup=False)
    for label, path in result.files.items():
        console.print(f"{label}: {path}", markup=False)
    if result.success is not None:
        console.print(f"success criterion met: {'yes' if result.success else 'no'}")
    console.print(f"wall time: {result.seconds:.0f} s")


@reproduce_app.callback(invoke_without_command=True)
def run_all(
    context: typer.Context,
    all_: bool = typer.Option(
        False, "--all", help="Run every classic-paper experiment and write one combined table."
    ),
    quick: bool = typer.Option(False, "--quick", help="With --all: the quick version of each."),
    output_dir: Path | None = typer.Option(
        None, help="With --all: where results go (default runs/reproduce; one folder each)."
    ),
    seed: int = typer.Option(0, help="With --all: the first seed."),
    seeds: int | None = typer.Option(None, min=1, help="With --all: the seeds of each."),
) -> None:
    """Reproduce a paper's experiment; --all runs the classic LSTM papers one after another."""
    if context.invoked_subcommand is not None:
        if all_:
            console.print("[red]error:[/red] --all runs every experiment: give no command name")
            raise typer.Exit(code=2)
        if quick or output_dir is not None or seeds is not None or seed != 0:
            console.print(
                "[red]error:[/red] options before the command name go with --all; put them "
                f"after it: lstmkit reproduce {context.invoked_subcommand} --quick ..."
            )
            raise typer.Exit(code=2)
        return
    if not all_:
        console.print(context.get_help())
        raise typer.Exit(code=0)
    from lstmkit.tasks.reproduce import run_classic

    base = Path("runs/reproduce") if output_dir is None else output_dir
    try:
        result = run_classic(quick=quick, output_dir=base, seed=seed, seeds=seeds, report=_show)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    _show(result)


def _command(reproduction: Reproduction):
    def command(
        quick: bool = typer.Option(False, "--quick", help="A few minutes, smaller everything."),
        output_dir: Path | None = typer.Option(
            None, help=f"Where results go (default runs/reproduce/{reproduction.name})."
        ),
        seed: int = typer.Option(0, help="Seeds the data and every model's initialisation."),
        seeds: int | None = typer.Option(None, help=_SEEDS_HELP),
        protocol: str = typer.Option(
            "modern",
            help=_PROTOCOL_HELP + f" This one offers: {', '.join(reproduction.protocols)}.",
        ),
    ) -> None:
        from lstmkit.tasks.reproduce import run

        try:
            result = run(
                reproduction.name,
                quick=quick,
                output_dir=output_dir,
                seed=seed,
                seeds=seeds,
                protocol=protocol,
            )
        except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(code=2) from None
        _show(result)

    command.__doc__ = (
        f"{reproduction.summary}\n\n{reproduction.paper}.\n\n{reproduction.description}\n\n"
        f"Example: {reproduction.example}"
    )
    return command


for _reproduction in REPRODUCTIONS.values():
    reproduce_app.command(name=_reproduction.name)(_command(_reproduction))
