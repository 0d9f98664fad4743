"""``lstmkit forecast``: our Forecaster against statistical baselines, on the same split."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def forecast(
    dataset: str | None = typer.Option(
        None, help="A shipped dataset: airline (AirPassengers, h=36) or m1-yearly (h=6)."
    ),
    csv: Path | None = typer.Option(None, help="A CSV in long format instead of --dataset."),
    id_col: str = typer.Option("unique_id", help="--csv's series id column."),
    time_col: str = typer.Option("ds", help="--csv's time column (dates or integers)."),
    target_col: str = typer.Option("y", help="--csv's target column."),
    horizon: int | None = typer.Option(
        None, help="Steps held out and forecast (default: 36 airline, 6 m1-yearly, 12 CSV)."
    ),
    season_length: int | None = typer.Option(
        None, help="Steps per season for --csv (default 1: no season)."
    ),
    variant: list[str] = typer.Option(
        ["standard", "peephole", "cifg"],
        help="LSTM variants to choose from on validation (repeatable).",
    ),
    level: list[str] = typer.Option(
        ["mean", "last", "seasonal"],
        help="Levels to choose from on validation (repeatable): windows relative to their mean "
        "or last value, or seasonal (forecast the change from one season earlier; with season "
        "length 1, the change from the step before).",
    ),
    n_models: int = typer.Option(5, help="Networks (seeds) averaged in the final forecasts."),
    seed: int = typer.Option(0, help="Seed of the first network."),
    max_steps: int = typer.Option(500, help="Optimiser steps per network."),
    peers: bool = typer.Option(
        True,
        help="Also fit other libraries' LSTMs that are installed (neuralforecast's LSTM, with "
        'its defaults; pip install "lstmkit[peers]").',
    ),
    output_dir: Path | None = typer.Option(None, help="Write results.json and forecast.png here."),
) -> None:
    """Forecast the last HORIZON steps of every series; compare with seasonal naive, ETS,
    AutoARIMA and Theta (statsforecast), Holt-Winters (statsmodels) and, where installed,
    neuralforecast's LSTM, all fit in the same run.

    Settings are chosen on the HORIZON steps before the test window, never on the test window.

    Example: lstmkit forecast --dataset airline --output-dir runs/forecast-airline
    """
    from lstmkit.tasks import forecast_benchmark as bench
    from lstmkit.tasks.series_frame import Columns

    try:
        if (dataset is None) == (csv is None):
            raise ValueError("give exactly one of --dataset NAME or --csv FILE")
        if not bench.has_baseline_libraries():
            raise ValueError("the baselines need statsforecast and statsmodels: pip install them")
        if csv is not None:
            data = bench.csv_dataset(
                csv, Columns(id_col, time_col, target_col), horizon or 12, season_length or 1
            )
        else:
            data = bench.load_dataset(dataset)
            if horizon is not None:
                data = bench.Dataset(data.frame, horizon, data.season_length, data.name)
        result = bench.run_benchmark(
            data,
            variants=tuple(variant),
            levels=tuple(level),
            n_models=n_models,
            seed=seed,
            max_steps=max_steps,
            peers=peers,
            say=_say,
        )
        extra = []
        if data.name == "airline" and data.horizon == 36:
            extra = bench.darts_protocol(
                data, result.chosen, n_models=n_models, seed=seed, max_steps=max_steps
            )
    except (ValueError, TypeError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    _table(f"{data.name}: last {data.horizon} steps of each series held out", result.rows)
    if extra:
        _table("AirPassengers: 6-step forecasts from origins 1958-12 .. 1960-06", extra)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        rows = [vars(row) for row in result.rows + extra]
        (output_dir / "results.json").write_text(
            json.dumps({"dataset": data.name, "chosen": result.chosen, "rows": rows}, indent=1)
        )
        best = next(iter(result.forecasts))
        result.model.plot(
            output_dir / "forecast.png", result.forecasts[best], title=f"{data.name}:"
        )
        console.print(f"wrote {output_dir / 'results.json'} and {output_dir / 'forecast.png'}")


def _say(line: str) -> None:
    console.print(line, markup=False, style="dim")


def _table(title: str, rows) -> None:
    names = list(dict.fromkeys(name for row in rows for name in row.scores))
    table = Table("method", *names, "seconds", "note", title=title)
    for row in rows:
        table.add_row(
            row.method,
            *(f"{row.scores[n]:.3f}" if n in row.scores else "" for n in names),
            f"{row.seconds:.1f}",
            row.note,
        )
    console.print(table)
