"""``lstmkit reproduce NAME``: one command per registered paper reproduction.

The commands are made from ``lstmkit.tasks.reproduce.REPRODUCTIONS``; a new reproduction
registered there shows up here with the same options (``--quick``, ``--output-dir``,
``--seed``).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lstmkit.tasks.reproduce import REPRODUCTIONS, Reproduction, format_cell

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


def _command(reproduction: Reproduction):
    def command(
        quick: bool = typer.Option(False, "--quick", help="A few minutes, smaller everything."),
        output_dir: Path | None = typer.Option(
            None, help=f"Where results go (default runs/reproduce/{reproduction.name})."
        ),
        seed: int = typer.Option(0, help="Seeds the data and every model's initialisation."),
    ) -> None:
        from lstmkit.tasks.reproduce import run

        try:
            result = run(reproduction.name, quick=quick, output_dir=output_dir, seed=seed)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(code=2) from None
        table = Table(*result.columns, title=result.title)
        for row in result.rows:
            table.add_row(*(format_cell(value) for value in row))
        console.print(table)
        for note in result.notes:
            console.print(f"- {note}", markup=False)
        for label, path in result.files.items():
            console.print(f"{label}: {path}", markup=False)
        console.print(f"wall time: {result.seconds:.0f} s")

    command.__doc__ = (
        f"{reproduction.summary}\n\n{reproduction.paper}.\n\n{reproduction.description}\n\n"
        f"Example: {reproduction.example}"
    )
    return command


for _reproduction in REPRODUCTIONS.values():
    reproduce_app.command(name=_reproduction.name)(_command(_reproduction))
