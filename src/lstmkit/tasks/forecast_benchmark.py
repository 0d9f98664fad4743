"""Our Forecaster against statistical baselines on the same split, in the same run.

Protocol: the last ``horizon`` steps of every series are the test window, never seen while
choosing settings. Settings (the variant, the level the windows are taken relative to: their
mean, their last value, or ``seasonal``, forecasting the change from one season earlier) are
chosen on a validation window: the ``horizon`` steps before the test window, with the model
trained on what precedes them. The chosen settings and ``standard`` are then refit on all the
training data and scored once on the test window. Baselines (statsforecast: seasonal naive,
AutoETS, AutoARIMA, Theta; statsmodels: Holt-Winters) and, where installed, other libraries'
LSTMs (neuralforecast) are fit on the same training data.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lstmkit.tasks import forecast_peers
from lstmkit.tasks.forecasting import Forecaster
from lstmkit.tasks.series_frame import ID, TARGET, TIME, Columns, as_long_frame, frequency

DATASETS = ("airline", "m1-yearly")


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame  # unique_id, ds, y
    horizon: int
    season_length: int
    name: str


def load_dataset(name: str) -> Dataset:
    """AirPassengers (144 months, last 36 held out) or M1 yearly (181 series, h=6), offline."""
    if name == "airline":
        from aeon.datasets import load_airline

        values = np.asarray(load_airline(), dtype=np.float64)
        stamps = pd.date_range("1949-01-01", periods=len(values), freq="MS")
        frame = pd.DataFrame({ID: "AirPassengers", TIME: stamps, TARGET: values})
        return Dataset(frame, horizon=36, season_length=12, name=name)
    if name == "m1-yearly":
        from aeon.datasets import load_forecasting

        raw = load_forecasting("m1_yearly_dataset")
        frames = [
            pd.DataFrame(
                {
                    ID: row.series_name,
                    TIME: pd.date_range(
                        row.start_timestamp, periods=len(row.series_value), freq="YS"
                    ),
                    TARGET: np.asarray(row.series_value, dtype=np.float64),
                }
            )
            for row in raw.itertuples()
        ]
        return Dataset(pd.concat(frames, ignore_index=True), horizon=6, season_length=1, name=name)
    raise ValueError(f"dataset must be one of {list(DATASETS)}, got {name!r}")


def csv_dataset(path: Path, columns: Columns, horizon: int, season_length: int) -> Dataset:
    frame = as_long_frame(pd.read_csv(path), columns, argument=f"--csv {path.name}")
    if pd.api.types.is_object_dtype(frame[TIME]):
        frame[TIME] = pd.to_datetime(frame[TIME])
    return Dataset(frame, horizon=horizon, season_length=season_length, name=path.stem)


def split(frame: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each series' last ``horizon`` rows apart from the rest."""
    position = frame.groupby(ID, sort=False).cumcount(ascending=False)
    return frame[position >= horizon].reset_index(drop=True), frame[position < horizon]


@dataclass
class Row:
    method: str
    scores: dict[str, float]
    seconds: float
    note: str = ""


@dataclass
class BenchmarkResult:
    dataset: str
    rows: list[Row] = field(default_factory=list)
    chosen: dict = field(default_factory=dict)
    validation: list[tuple[str, float]] = field(default_factory=list)
    forecasts: dict[str, pd.DataFrame] = field(default_factory=dict)
    model: Forecaster | None = None


def model_settings(dataset: Dataset, seed: int, max_steps: int = 500) -> dict:
    """The Forecaster's fixed settings for a dataset (the rest is chosen on validation)."""
    positive = bool((dataset.frame[TARGET] > 0).all())
    return {
        "horizon": dataset.horizon,
        "input_size": 2 * dataset.season_length
        if dataset.season_length > 1
        else 2 * dataset.horizon,
        "season_length": dataset.season_length,
        "log": positive,
        "seasonal_skip": False,
        "hidden_size": 32,
        "max_steps": max_steps,
        "seed": seed,
    }


def run_benchmark(
    dataset: Dataset,
    *,
    variants: tuple[str, ...] = ("standard", "peephole", "cifg"),
    levels: tuple[str, ...] = ("mean", "last", "seasonal"),
    n_models: int = 5,
    seed: int = 0,
    max_steps: int = 500,
    peers: bool = True,
    say=print,
) -> BenchmarkResult:
    """Choose settings on validation, then score ours and the baselines on the test window.

    With ``peers``, other libraries' LSTMs that are installed (``forecast_peers``) are fit on
    the same training data with their own defaults and scored beside ours.
    """
    train, test = split(dataset.frame, dataset.horizon)
    fit_part, validation = split(train, dataset.horizon)
    long_enough = fit_part.groupby(ID)[TARGET].transform("size") > dataset.horizon
    fit_part = fit_part[long_enough]  # series too short to validate on are left out there
    validation = validation[validation[ID].isin(set(fit_part[ID]))]
    result = BenchmarkResult(dataset.name)
    base = model_settings(dataset, seed, max_steps)
    measure = "MAPE" if dataset.season_length > 1 else "sMAPE"
    scores: dict[tuple[str, str], float] = {}
    for variant in variants:
        for level in levels:
            model = Forecaster(**base, variant=variant, local_level=level, n_models=2)
            forecast = model.fit(fit_part).predict().merge(validation, on=[ID, TIME])
            scores[(variant, level)] = Forecaster.errors(forecast)[measure]
            result.validation.append((f"{variant}, level={level}", scores[(variant, level)]))
            say(f"validation {measure} {variant:>9} level={level}: {scores[(variant, level)]:.3f}")
    best_variant, best_level = min(scores, key=scores.get)
    standard_level = min(levels, key=lambda level: scores[("standard", level)])
    result.chosen = {
        "variant": best_variant,
        "local_level": best_level,
        "standard_level": standard_level,
        "measure": measure,
    }
    runs = {f"lstmkit {best_variant} (best on validation)": (best_variant, best_level)}
    runs[f"lstmkit standard (level={standard_level})"] = ("standard", standard_level)
    for k, (method, (variant, level)) in enumerate(runs.items()):
        if k > 0 and (variant, level) == (best_variant, best_level):
            result.rows.append(Row(method, result.rows[0].scores, 0.0, "same as the best"))
            continue
        start = time.perf_counter()
        model = Forecaster(**base, variant=variant, local_level=level, n_models=n_models)
        forecast = model.fit(train).predict().merge(test, on=[ID, TIME])
        seconds = time.perf_counter() - start
        result.rows.append(Row(method, score(forecast, train, dataset), seconds))
        result.forecasts[method] = forecast
        if result.model is None:
            result.model = model
        say(f"{method}: {result.rows[-1].scores} in {seconds:.1f} s")
    others = baselines(train, dataset)
    if peers and forecast_peers.installed():
        others[forecast_peers.NEURALFORECAST] = forecast_peers.neuralforecast_lstm(
            train, dataset.horizon, base["input_size"], n_models=n_models, seed=seed
        )
    elif peers:
        say('neuralforecast is not installed: no peer row (pip install "lstmkit[peers]")')
    for method, (forecast, seconds) in others.items():
        result.rows.append(
            Row(method, score(forecast.merge(test, on=[ID, TIME]), train, dataset), seconds)
        )
        say(f"{method}: {result.rows[-1].scores} in {seconds:.1f} s")
    return result


def score(forecast: pd.DataFrame, train: pd.DataFrame, dataset: Dataset) -> dict[str, float]:
    return Forecaster.errors(forecast, train, season_length=dataset.season_length)


def baselines(train: pd.DataFrame, dataset: Dataset) -> dict[str, tuple[pd.DataFrame, float]]:
    """Forecasts ``unique_id, ds, y_hat`` of the statistical baselines and their fit times."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, Naive, SeasonalNaive, Theta

    s = dataset.season_length
    models = {
        "seasonal naive (statsforecast)" if s > 1 else "naive (statsforecast)": (
            SeasonalNaive(season_length=s) if s > 1 else Naive()
        ),
        "AutoETS (statsforecast)": AutoETS(season_length=s),
        "AutoARIMA (statsforecast)": AutoARIMA(season_length=s),
        "Theta (statsforecast)": Theta(season_length=s),
    }
    freq = frequency(train, "train")
    out = {}
    for method, model in models.items():
        start = time.perf_counter()
        forecast = StatsForecast(models=[model], freq=freq).forecast(df=train, h=dataset.horizon)
        forecast = forecast.reset_index() if ID not in forecast else forecast
        column = next(c for c in forecast.columns if c not in (ID, TIME))
        out[method] = (
            forecast.rename(columns={column: "y_hat"})[[ID, TIME, "y_hat"]],
            time.perf_counter() - start,
        )
    if s > 1 and (train[TARGET] > 0).all():
        out["Holt-Winters, add. trend, mult. season (statsmodels)"] = holt_winters(train, dataset)
    return out


def holt_winters(train: pd.DataFrame, dataset: Dataset) -> tuple[pd.DataFrame, float]:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    start = time.perf_counter()
    freq = frequency(train, "train")
    frames = []
    for name, group in train.groupby(ID, sort=False):
        fitted = ExponentialSmoothing(
            group[TARGET].to_numpy(),
            trend="add",
            seasonal="mul",
            seasonal_periods=dataset.season_length,
        ).fit()
        stamps = pd.date_range(group[TIME].iloc[-1], periods=dataset.horizon + 1, freq=freq)[1:]
        frames.append(
            pd.DataFrame({ID: name, TIME: stamps, "y_hat": fitted.forecast(dataset.horizon)})
        )
    return pd.concat(frames, ignore_index=True), time.perf_counter() - start


def darts_protocol(
    dataset: Dataset, chosen: dict, *, n_models: int = 5, seed: int = 0, max_steps: int = 500
) -> list[Row]:
    """AirPassengers, 6-step forecasts from every month-end 1958-12 .. 1960-06, without refit.

    The model is trained on the data through 1958-12 with the settings chosen on validation
    for the 36-month task; the MAPE is over each forecast's 6th step (1959-06 .. 1960-12).
    The note gives the MAPE of each of its networks alone (mean ± sample std over seeds), to
    compare with single runs of other libraries (benchmarks/darts_airline.py).
    AutoARIMA refits at every origin (statsforecast's cross-validation), which favours it.
    """
    frame = dataset.frame
    train = frame[frame[TIME] < pd.Timestamp("1959-01-01")]
    base = model_settings(dataset, seed, max_steps) | {"horizon": 6}
    rows = []
    settings = {(chosen["variant"], chosen["local_level"]), ("standard", chosen["standard_level"])}
    for variant, level in sorted(settings):
        start = time.perf_counter()
        model = Forecaster(**base, variant=variant, local_level=level, n_models=n_models)
        model.fit(train)
        forecast = model.backtest(frame, h=6, start="1959-01-01", last_points_only=True)
        seconds = time.perf_counter() - start
        singles = [
            Forecaster.errors(
                model.member(k).backtest(frame, h=6, start="1959-01-01", last_points_only=True)
            )["MAPE"]
            for k in range(n_models)
        ]
        spread = f" ± {np.std(singles, ddof=1):.2f}" if n_models > 1 else ""
        note = f"its {n_models} networks alone: MAPE {np.mean(singles):.2f}{spread}"
        rows.append(
            Row(f"lstmkit {variant} (level={level})", Forecaster.errors(forecast), seconds, note)
        )
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA

    start = time.perf_counter()
    cross = StatsForecast(models=[AutoARIMA(season_length=12)], freq="MS").cross_validation(
        df=frame, h=6, step_size=1, n_windows=19
    )
    cross = cross.reset_index() if ID not in cross else cross
    last = cross.groupby([ID, "cutoff"]).tail(1).rename(columns={"AutoARIMA": "y_hat"})
    rows.append(
        Row(
            "AutoARIMA, refit per origin (statsforecast)",
            Forecaster.errors(last),
            time.perf_counter() - start,
        )
    )
    return rows


def has_baseline_libraries() -> bool:
    return all(importlib.util.find_spec(name) for name in ("statsforecast", "statsmodels"))
