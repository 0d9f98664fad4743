"""The ``lstmkit`` command: training, reproductions and the applications (forecast, detect,
classify, each in its own module)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lstmkit.cli.bench import bench
from lstmkit.cli.classify import classify
from lstmkit.cli.detect import detect
from lstmkit.cli.forecast import forecast
from lstmkit.cli.generate import compose, generate, lm
from lstmkit.cli.recognize import recognize
from lstmkit.cli.reproduce import reproduce_app
from lstmkit.cli.seq2seq import translate

app = typer.Typer(
    help="lstmkit: every LSTM variant; training, applications, paper reproductions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(reproduce_app, name="reproduce")
console = Console()


def fail(error: Exception) -> None:
    console.print(f"[red]error:[/red] {error}")
    raise typer.Exit(code=2)


@app.command()
def train(
    config: Path = typer.Argument(..., help="A YAML or TOML config (see configs/)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a key: --set optim.lr=0.01 (repeatable)."
    ),
    resume: Path | None = typer.Option(None, help="A Lightning checkpoint to continue from."),
    devices: int | None = typer.Option(None, help="Processes/GPUs (trainer.devices)."),
    strategy: str | None = typer.Option(None, help="e.g. ddp (trainer.strategy)."),
) -> None:
    """Train a model from CONFIG; writes checkpoints and model.safetensors under the run dir.

    Example: lstmkit train configs/adding.yaml --set trainer.max_epochs=3
    Several processes: lstmkit train configs/adding.yaml --devices 2 --strategy ddp
    """
    from lstmkit.training import load_config
    from lstmkit.training import train as run_training

    overrides = list(set_)
    if devices is not None:
        overrides.append(f"trainer.devices={devices}")
    if strategy is not None:
        overrides.append(f"trainer.strategy={strategy}")
    try:
        parsed = load_config(config, overrides)
        result = run_training(parsed, resume_from=resume)
    except (ValueError, TypeError, FileNotFoundError) as error:
        fail(error)
    _print_metrics("test", result.test_metrics)
    console.print(f"model: {result.model_path}")


@app.command()
def evaluate(
    checkpoint: Path = typer.Argument(..., help="model.safetensors or a .ckpt from a run."),
) -> None:
    """Test-split metrics of a trained model on the data its config describes.

    Example: lstmkit evaluate runs/adding/model.safetensors
    """
    from lstmkit.training import evaluate as run_evaluation

    try:
        metrics = run_evaluation(checkpoint)
    except (ValueError, TypeError, FileNotFoundError) as error:
        fail(error)
    _print_metrics("test", metrics)


@app.command()
def predict(
    checkpoint: Path = typer.Argument(..., help="model.safetensors or a .ckpt from a run."),
    input: Path = typer.Argument(..., help=".npy/.csv features [T, D] or [B, T, D]; .txt text."),
    output: Path | None = typer.Option(None, help="Write the raw outputs to this .npy file."),
) -> None:
    """Run a trained model on INPUT and print its predictions.

    Example: lstmkit predict runs/adding/model.safetensors sequence.csv
    """
    from lstmkit.cli.predict import predict_file

    try:
        lines = predict_file(checkpoint, input, output)
    except (ValueError, TypeError, FileNotFoundError) as error:
        fail(error)
    for line in lines:
        console.print(line, markup=False)


@app.command()
def variants() -> None:
    """The LSTM variants lstmkit implements, with their papers.

    Example: lstmkit variants
    """
    from lstmkit import variants as all_variants

    table = Table("variant", "paper")
    for name, paper in all_variants().items():
        table.add_row(name, paper)
    table.add_row("GRU", "Cho et al. 2014 (lstmkit.GRU; reset_after as torch.nn.GRU)")
    console.print(table)


def _print_metrics(split: str, metrics: dict[str, float]) -> None:
    table = Table("metric", "value")
    for name, value in metrics.items():
        table.add_row(name.removeprefix(f"{split}_"), f"{value:.6g}")
    console.print(table)


if __name__ == "__main__":
    app()


# the applications, each in its own module
app.command()(forecast)
app.command()(detect)
app.command()(classify)
app.command()(lm)
app.command()(generate)
app.command()(compose)
app.command()(recognize)
app.command()(translate)

# speed and memory against torch.nn.LSTM (benchmarks/speed.py runs the same)
app.command()(bench)
