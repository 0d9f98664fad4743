"""``lstmkit classify``: LSTM-FCN / LSTM on a UCR/UEA dataset against baselines and anchors.

The datasets ship inside aeon's wheel (nothing downloads). Each variant trains once per seed
on the default train split (a stratified share of it held out for early stopping, or none
with ``--validation-fraction 0``) and is scored on the test split; the baselines are aeon's
MiniRocket and 1-NN DTW and, on request, sktime's LSTM-FCN, run in the same process on the
same split.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Column, Table

from lstmkit.io import publish

LOADERS = {
    "GunPoint": "load_gunpoint",
    "ItalyPowerDemand": "load_italy_power_demand",
    "ArrowHead": "load_arrow_head",
    "OSULeaf": "load_osuleaf",
    "JapaneseVowels": "load_japanese_vowels",
}
# test accuracy on the default split: Karim et al.'s corrected LSTM-FCN results, HIVE-COTE 2
ANCHORS = {
    "GunPoint": {"LSTM-FCN (Karim et al., corrected)": 1.0, "HIVE-COTE 2": 1.0},
    "ItalyPowerDemand": {"LSTM-FCN (Karim et al., corrected)": 0.9621, "HIVE-COTE 2": 0.970},
    "ArrowHead": {"LSTM-FCN (Karim et al., corrected)": 0.8971, "HIVE-COTE 2": 0.869},
    "OSULeaf": {"LSTM-FCN (Karim et al., corrected)": 0.9835, "HIVE-COTE 2": 0.967},
    "JapaneseVowels": {},
}
# what each baseline's row is called; sktime's LSTM-FCN trains for --epochs, so only on request
BASELINES = {
    "minirocket": "aeon minirocket",
    "1nn-dtw": "aeon 1nn-dtw",
    "sktime-lstm-fcn": "sktime LSTM-FCN (torch)",
}
DEFAULT_BASELINES = ("minirocket", "1nn-dtw")
console = Console()


def load_dataset(name: str, split: str) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """``(X, y)`` of a dataset shipped with aeon: ``[n, C, L]`` or a list of ``[C, t]``."""
    if name not in LOADERS:
        raise ValueError(f"dataset must be one of {list(LOADERS)}, got {name!r}")
    try:
        from aeon import datasets
    except ImportError as error:
        raise ValueError(f"dataset {name} needs aeon: pip install aeon ({error})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # aeon 1.6 deprecates load_osuleaf
        return getattr(datasets, LOADERS[name])(split=split)


def run_ours(data, arch: str, variant: str, seed: int, **options) -> dict:
    """Fit one SequenceClassifier; its test accuracy, validation scores and fit time."""
    from lstmkit.tasks.classification import SequenceClassifier

    (x, y), (x_test, y_test) = data
    model = SequenceClassifier(arch, variant, seed=seed, **options)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seed": seed,
        "test_accuracy": model.score(x_test, y_test),
        "validation_accuracy": model.validation_accuracy_,
        "validation_loss": model.validation_loss_,
        "best_epoch": model.best_epoch_,
        "epochs_run": len(model.history_),
        "fit_seconds": seconds,
        "fit_cpu_seconds": cpu,  # one thread: the fair measure on a shared machine
        "model": model,
    }


def run_baseline(name: str, data, seed: int, epochs: int = 2000) -> dict:
    """One baseline, fitted on the train split and scored on the test split.

    sktime's LSTM-FCN keeps its defaults (8 LSTM units reading the series over time, dropout
    0.8, Adam at 1e-3, learning rate cut on plateaus, the last epoch's weights) but trains for
    ``epochs`` epochs, as ours do at most.
    """
    from aeon.classification.convolution_based import MiniRocketClassifier
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    (x, y), (x_test, y_test) = data
    if name == "minirocket":
        model = MiniRocketClassifier(random_state=seed, n_jobs=1)
        x, x_test = _one_length(x, x_test)
    elif name == "1nn-dtw":
        model = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw", n_jobs=1)
    elif name == "sktime-lstm-fcn":
        from sktime.classification.deep_learning.lstmfcn import LSTMFCNClassifierTorch

        model = LSTMFCNClassifierTorch(num_epochs=epochs, random_state=seed)
        x, x_test = _one_length(x, x_test)
    else:
        raise ValueError(f"baseline must be one of {list(BASELINES)} or 'none', got {name!r}")
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y)
    accuracy = float(np.mean(model.predict(x_test) == np.asarray(y_test)))
    return {
        "seed": seed,
        "test_accuracy": accuracy,
        "fit_seconds": time.perf_counter() - start,  # fit and predict
        "fit_cpu_seconds": time.process_time() - cpu,
    }


def _one_length(x, x_test) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ``[C, t]`` series of different lengths as ``[n, C, longest]`` arrays, each
    series' last step repeated (the baselines need one length; ours take ``lengths=``)."""
    if not isinstance(x, list):
        return x, x_test
    longest = max(a.shape[1] for a in [*x, *x_test])
    padded = [
        np.stack([np.pad(a, ((0, 0), (0, longest - a.shape[1])), "edge") for a in d])
        for d in (x, x_test)
    ]
    return padded[0], padded[1]


def classify(
    dataset: str = typer.Option("GunPoint", help=f"One of {', '.join(LOADERS)}."),
    arch: str = typer.Option("lstm-fcn", help="lstm-fcn (Karim et al. 2018) or lstm."),
    variant: list[str] = typer.Option(
        ["standard"],
        help="LSTM variant(s) as the cell (repeatable; see `lstmkit variants`, or gru). The "
        "table marks the one with the best mean validation accuracy.",
    ),
    seeds: int = typer.Option(5, min=1, help="Train each variant with seeds 0..N-1."),
    epochs: int = typer.Option(300, min=1, help="Most epochs per run (early stopping)."),
    patience: int = typer.Option(100, min=1, help="Epochs without a better validation loss."),
    validation_fraction: float = typer.Option(
        0.2,
        min=0.0,
        max=0.99,
        help="Share of the train split held out for early stopping. 0: every epoch on all "
        "of it, keeping the epoch of the lowest training loss (Karim et al.'s protocol); no "
        "variant is then marked best.",
    ),
    hidden_size: int = typer.Option(64, min=1, help="LSTM units."),
    batch_size: int = typer.Option(128, min=1, help="Minibatch size."),
    bidirectional: bool = typer.Option(False, help="A bidirectional LSTM branch."),
    baseline: list[str] = typer.Option(
        list(DEFAULT_BASELINES),
        help="Baselines run beside (repeatable): minirocket, 1nn-dtw (aeon), sktime-lstm-fcn "
        "(sktime's LSTM-FCN, for --epochs epochs), or none.",
    ),
    output_dir: Path = typer.Option(
        Path("runs/classify"), help="Writes results.json and seed 0's model per variant here."
    ),
) -> None:
    """Train on DATASET's train split; print test accuracy (mean ± std over seeds) beside
    baselines computed in the same run and published results.

    Example: lstmkit classify --dataset GunPoint --variant standard --variant cifg --seeds 5
    """
    try:
        results = _run(
            dataset, arch, variant, seeds, baseline, output_dir,
            epochs=epochs, patience=patience, hidden_size=hidden_size,
            batch_size=batch_size, bidirectional=bidirectional,
            validation_fraction=validation_fraction,
        )  # fmt: skip
    except (ValueError, TypeError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    _print(results)
    console.print(f"results: {output_dir / 'results.json'}")


def _run(dataset, arch, variants, seeds, baselines, output_dir: Path, **options) -> dict:
    baselines = [] if baselines == ["none"] else baselines
    for name in baselines:
        if name not in BASELINES:
            raise ValueError(f"baseline must be one of {list(BASELINES)} or 'none', got {name!r}")
    if not output_dir.parent.exists():
        raise FileNotFoundError(f"output_dir's folder {output_dir.parent} does not exist")
    output_dir.mkdir(exist_ok=True)
    data = (load_dataset(dataset, "train"), load_dataset(dataset, "test"))
    torch.set_num_threads(1)  # small models: more threads only contend on a shared machine
    ours = {}
    for name in variants:
        runs = []
        for seed in range(seeds):
            run = run_ours(data, arch, name, seed, **options)
            model = run.pop("model")
            if seed == 0:
                model.save(output_dir / f"{arch}-{name}.safetensors")
            console.print(
                f"{dataset} {arch} {name} seed {seed}: test {run['test_accuracy']:.4f}, "
                f"validation {run['validation_accuracy']:.4f}, {run['fit_cpu_seconds']:.1f} CPU s, "
                f"{run['fit_seconds']:.1f} s wall",
                markup=False,
            )
            runs.append(run)
        ours[name] = _summary(runs)
    best = None
    if options.get("validation_fraction", 0.2) > 0:
        best = max(
            ours, key=lambda v: (ours[v]["validation_accuracy"], -ours[v]["validation_loss"])
        )
    others = {}
    for name in baselines:
        # 1-NN DTW has no randomness: one run says it all
        runs = [
            run_baseline(name, data, seed, options["epochs"])
            for seed in range(1 if name == "1nn-dtw" else seeds)
        ]
        others[name] = _summary(runs)
    results = {
        "dataset": dataset,
        "arch": arch,
        "options": {**options, "seeds": seeds},
        "ours": ours,
        "best_variant_on_validation": best,
        "baselines": others,
        "anchors": ANCHORS[dataset],
    }
    _write_json(output_dir / "results.json", results)
    return results


def _summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation of every numeric field, and the runs themselves."""
    summary: dict = {"runs": runs}
    for key in ("test_accuracy", "validation_accuracy", "validation_loss"):
        if not any(key in r for r in runs):
            continue
        values = [r[key] for r in runs if key in r and not math.isnan(r[key])]
        summary[key] = statistics.fmean(values) if values else math.nan  # NaN: no validation
        summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    for key in ("fit_seconds", "fit_cpu_seconds"):
        summary[f"median_{key}"] = statistics.median(r[key] for r in runs)
    return summary


def _print(results: dict) -> None:
    columns = ("test accuracy", "validation accuracy", "median fit CPU s")
    table = Table(Column("model", no_wrap=True), *columns, title=(
        f"{results['dataset']}: test accuracy, mean ± std over {results['options']['seeds']} "
        "seeds"
    ))  # fmt: skip
    for name, summary in results["ours"].items():
        mark = " *" if name == results["best_variant_on_validation"] else ""
        table.add_row(
            f"ours: {results['arch']} {name}{mark}",
            _mean_std(summary, "test_accuracy"),
            _mean_std(summary, "validation_accuracy"),
            f"{summary['median_fit_cpu_seconds']:.1f}",
        )
    for name, summary in results["baselines"].items():
        table.add_row(
            BASELINES[name],
            _mean_std(summary, "test_accuracy"),
            "",
            f"{summary['median_fit_cpu_seconds']:.1f}",
        )
    for name, value in results["anchors"].items():
        table.add_row(f"published: {name}", f"{value:.4f}", "", "")
    console.print(table)
    if results["best_variant_on_validation"] is not None:
        console.print(
            "* best mean validation accuracy (the test split plays no part in the choice)"
        )


def _mean_std(summary: dict, key: str) -> str:
    if math.isnan(summary[key]):  # no validation part
        return "—"
    return f"{summary[key]:.4f} ± {summary[f'{key}_std']:.4f}"


def _write_json(path: Path, value: dict) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(value, file, indent=2, default=str)
        publish(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
