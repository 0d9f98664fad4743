"""Checking and reading the long frames that forecasters take: ``unique_id, ds, y`` + covariates.

A frame holds one row per series and time step, as neuralforecast and statsforecast take it.
Every check names the problem: an empty frame, a missing column, time stamps that go
backwards or repeat within a series, gaps, NaNs in the target or in a covariate.
Time stamps are datetimes at a regular pandas frequency, or integers at a constant step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ID, TIME, TARGET = "unique_id", "ds", "y"


@dataclass(frozen=True)
class Columns:
    """The names of a frame's id, time and target columns."""

    id: str = ID
    time: str = TIME
    target: str = TARGET


def as_long_frame(
    data: pd.DataFrame | pd.Series,
    columns: Columns,
    *,
    argument: str = "df",
    covariates: tuple[str, ...] = (),
    need_target: bool = True,
) -> pd.DataFrame:
    """``data`` as a frame with columns unique_id, ds, y (+ covariates), checked and in order.

    A Series is one series: its index is the time, its name (or "series") the id.
    """
    if isinstance(data, pd.Series):
        frame = pd.DataFrame(
            {
                ID: str(data.name) if data.name is not None else "series",
                TIME: _index_times(data.index, argument),
                TARGET: data.to_numpy(),
            }
        )
    elif isinstance(data, pd.DataFrame):
        wanted = [columns.id, columns.time] + ([columns.target] if need_target else [])
        missing = [name for name in [*wanted, *covariates] if name not in data.columns]
        if missing:
            raise ValueError(
                f"{argument} must have the columns {missing} (id, time, target and covariates), "
                f"got columns {list(data.columns)}"
            )
        frame = data[[*wanted, *covariates]].rename(
            columns={columns.id: ID, columns.time: TIME, columns.target: TARGET}
        )
        frame = frame.loc[:, ~frame.columns.duplicated()]
    else:
        raise TypeError(
            f"{argument} must be a pandas DataFrame (unique_id, ds, y) or a Series, "
            f"got {type(data).__name__}"
        )
    if len(frame) == 0:
        raise ValueError(f"{argument} must hold at least one row, got an empty frame")
    frame = frame.reset_index(drop=True)
    frame[ID] = frame[ID].astype(str)
    frame[TIME] = _times(frame[TIME], argument)
    if need_target:
        frame[TARGET] = _numbers(frame[TARGET], f"{argument}'s target column", argument)
    for name in covariates:
        frame[name] = _numbers(frame[name], f"{argument}'s covariate {name!r}", argument)
    _check_order(frame, argument)
    return frame


def _index_times(index: pd.Index, argument: str) -> pd.Series:
    if isinstance(index, pd.PeriodIndex):
        return pd.Series(index.to_timestamp())
    return pd.Series(index)


def _times(times: pd.Series, argument: str) -> pd.Series:
    if isinstance(times.dtype, pd.PeriodDtype):
        return times.dt.to_timestamp()
    if pd.api.types.is_datetime64_any_dtype(times) or pd.api.types.is_integer_dtype(times):
        return times
    if pd.api.types.is_object_dtype(times) or pd.api.types.is_string_dtype(times):
        try:
            return pd.to_datetime(times)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"{argument}'s time column must hold datetimes or integers, got {times.iloc[0]!r}"
            ) from error
    raise TypeError(
        f"{argument}'s time column must hold datetimes or integers, got dtype {times.dtype}"
    )


def _numbers(values: pd.Series, what: str, argument: str) -> pd.Series:
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise TypeError(f"{what} must be numeric, got dtype {values.dtype}")
    values = values.astype(np.float64)
    if values.isna().any():
        first = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ValueError(
            f"{what} must have no NaNs, got {int(values.isna().sum())} (first at row {first}); "
            "fill or drop them before fitting"
        )
    if not np.isfinite(values.to_numpy()).all():
        raise ValueError(f"{what} must be finite, got infinity")
    return values


def _check_order(frame: pd.DataFrame, argument: str) -> None:
    """Time stamps must strictly increase within each series (rows of a series may interleave)."""
    for name, group in frame.groupby(ID, sort=False):
        times = group[TIME]
        if times.duplicated().any():
            stamp = times[times.duplicated()].iloc[0]
            raise ValueError(
                f"{argument} has duplicated time stamps: series {name!r} has {stamp} twice"
            )
        if not times.is_monotonic_increasing:
            values = times.to_numpy()
            position = int(np.flatnonzero(values[1:] < values[:-1])[0])
            raise ValueError(
                f"{argument}'s time stamps must increase within each series: series {name!r} "
                f"goes from {times.iloc[position]} back to {times.iloc[position + 1]}; "
                "sort the frame by id and time first"
            )


def frequency(frame: pd.DataFrame, argument: str = "df") -> str | int:
    """The common step of the series: a pandas frequency string, or an integer step."""
    steps: set = set()
    for name, group in frame.groupby(ID, sort=False):
        times = group[TIME]
        if len(times) < 3:
            continue
        if pd.api.types.is_integer_dtype(times):
            differences = set(np.diff(times.to_numpy()).tolist())
            if len(differences) != 1:
                raise ValueError(
                    f"{argument}'s series {name!r} must have a constant time step, "
                    f"got steps {sorted(differences)[:5]}"
                )
            steps.add(int(differences.pop()))
        else:
            inferred = pd.infer_freq(pd.DatetimeIndex(times))
            if inferred is None:
                raise ValueError(
                    f"{argument}'s series {name!r} must have regular time stamps (a pandas "
                    "frequency), got gaps or irregular steps"
                )
            steps.add(inferred)
    if not steps:
        raise ValueError(f"{argument} must have a series with at least 3 time stamps")
    if len(steps) > 1:
        raise ValueError(
            f"{argument}'s series must share one frequency, got {sorted(map(str, steps))}"
        )
    return steps.pop()


def future_times(last: object, freq: str | int, h: int) -> np.ndarray:
    """The ``h`` time stamps after ``last`` at ``freq``."""
    if isinstance(freq, int):
        return np.asarray(last) + freq * np.arange(1, h + 1)
    return pd.date_range(last, periods=h + 1, freq=freq)[1:].to_numpy()


def calendar_features(times: np.ndarray, freq: str | int) -> np.ndarray:
    """Cyclic calendar features ``[n, C]`` fit for ``freq`` (none for years and integer steps).

    Months for monthly and quarterly data; day of week and day of year for daily data; hour
    of day and day of week below a day. Each as sin and cos, so December sits next to January.
    """
    if isinstance(freq, int):
        return np.zeros((len(times), 0))
    index = pd.DatetimeIndex(times)
    days = _days_per_step(freq)
    cycles: list[tuple[np.ndarray, float]] = []
    if days >= 360:
        return np.zeros((len(times), 0))
    if days >= 28:
        cycles.append((index.month.to_numpy() - 1, 12))
    elif days >= 1:
        cycles += [(index.dayofweek.to_numpy(), 7), (index.dayofyear.to_numpy() - 1, 365.25)]
    else:
        cycles += [(index.hour.to_numpy(), 24), (index.dayofweek.to_numpy(), 7)]
    angles = [2 * np.pi * value / period for value, period in cycles]
    return np.stack([f(a) for a in angles for f in (np.sin, np.cos)], axis=1)


def _days_per_step(freq: str) -> float:
    """Days per step (months, quarters and years as their length in 2001)."""
    stamps = pd.date_range("2001-01-01", periods=2, freq=freq)
    return (stamps[1] - stamps[0]).total_seconds() / 86400
