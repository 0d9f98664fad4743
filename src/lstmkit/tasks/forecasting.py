"""``lstmkit.Forecaster``: one global LSTM over many series, with quantile forecasts.

    >>> model = Forecaster(horizon=12, input_size=24, season_length=12, log=True)
    >>> model.fit(df)                       # long frame: unique_id, ds, y (+ covariates)
    >>> forecast = model.predict()          # unique_id, ds, y_hat, q0.1, q0.5, q0.9
    >>> errors = model.backtest(df, n_windows=3)

How a forecast is made. Each series is put on one scale (optionally its log, then its own mean
and standard deviation). A window of ``input_size`` past steps and ``horizon`` future steps runs
through the recurrent network, one step per time step (``[T = input_size + horizon, B, F]``):
past steps carry the value, future steps carry what is known ahead (calendar features, future
covariates, the seasonal naive value, the step's distance). Values are taken relative to the
window's level (its last value or its mean: the network learns changes, a learned differencing),
and with ``seasonal_skip`` the network forecasts the residual from the seasonal naive forecast.
``local_level="seasonal"`` differences by the season instead, as SARIMA's seasonal difference
(D = 1) does: the network forecasts each step's change from the same season one period earlier,
``y[t] - y[t - s]`` (in logs with ``log=True``: the year-over-year growth), and the forecast is
the last observed cycle plus those changes summed season by season; with ``season_length=1`` it
is the first difference. The head gives every future step's quantiles, trained with the pinball
loss; the point forecast is the median. ``n_models`` networks from different seeds are averaged.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

import lstmkit
from lstmkit._checks import check_positive_int, unknown_name
from lstmkit.tasks import metrics
from lstmkit.tasks.estimator_io import frame_from_json, frame_to_json, load_members, save_members
from lstmkit.tasks.series_frame import (
    ID,
    TARGET,
    TIME,
    Columns,
    as_long_frame,
    calendar_features,
    frequency,
    future_times,
)

Level = Literal["last", "mean", "seasonal", "none"]
LEVELS = ("last", "mean", "seasonal", "none")


@dataclass(frozen=True)
class ForecasterConfig:
    """Every setting of a Forecaster (saved with it)."""

    horizon: int  # steps forecast at once; predict(h) takes any h <= horizon
    input_size: int = 24  # past steps the network reads
    variant: str = "standard"  # any lstmkit variant, or cell="gru"
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)  # 0.5 is always added: the point forecast
    season_length: int = 1  # 12 for monthly data with a yearly season
    log: bool = False  # model log(y): multiplicative seasonality and growth; y must be > 0
    # values relative to the window's last value, its mean, or (seasonal) its last cycle's mean
    # with the network forecasting the change from one season earlier, y[t] - y[t - s]
    local_level: Level = "last"
    seasonal_skip: bool = True  # forecast the residual from the seasonal naive forecast
    calendar: bool = True  # cyclic calendar features from the time stamps
    futr_covariates: tuple[str, ...] = ()  # columns known in the future too (predict's futr_df)
    past_covariates: tuple[str, ...] = ()  # columns known only up to the forecast origin
    max_steps: int = 500  # optimiser steps per network
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    n_models: int = 1  # networks from seeds seed, seed + 1, ... averaged
    seed: int = 0
    backend: str = "auto"

    def __post_init__(self) -> None:
        for name in ("horizon", "input_size", "hidden_size", "num_layers", "season_length"):
            check_positive_int(name, getattr(self, name))
        for name in ("max_steps", "batch_size", "n_models"):
            check_positive_int(name, getattr(self, name))
        if self.local_level not in LEVELS:
            raise unknown_name("local_level", self.local_level, LEVELS)
        quantiles = tuple(sorted({0.5, *map(float, self.quantiles)}))
        if not all(0 < q < 1 for q in quantiles):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {self.quantiles}")
        object.__setattr__(self, "quantiles", quantiles)
        object.__setattr__(self, "futr_covariates", tuple(self.futr_covariates))
        object.__setattr__(self, "past_covariates", tuple(self.past_covariates))
        if (self.uses_season or self.seasonal_level) and self.season_length > self.input_size:
            raise ValueError(
                f"input_size must be >= season_length={self.season_length} when seasonal_skip "
                f"is on or local_level='seasonal' (the last season is read from the window), "
                f"got {self.input_size}"
            )
        shared = set(self.futr_covariates) & set(self.past_covariates)
        if shared:
            raise ValueError(f"a covariate is either future or past, got both for {sorted(shared)}")

    @property
    def uses_season(self) -> bool:
        return self.seasonal_skip and self.season_length > 1

    @property
    def seasonal_level(self) -> bool:
        """The network forecasts seasonal differences (local_level="seasonal")."""
        return self.local_level == "seasonal"


@dataclass
class _Scaler:
    """Per-series mean and standard deviation of the (log) target, and per-covariate ones."""

    series: dict[str, tuple[float, float]] = field(default_factory=dict)
    covariates: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class _Panel:
    """Series laid end to end, each as [input_size padding | observed | horizon future].

    Window gathers never cross into the previous series: the padding absorbs them.
    """

    ids: list[str]
    times: list[np.ndarray]  # observed and future time stamps per series
    start: np.ndarray  # [S] flat index of each series' first observed step
    length: np.ndarray  # [S] observed steps
    scale: np.ndarray  # [S, 2] mean and standard deviation of each series' (log) target
    value: np.ndarray  # [N] scaled target, NaN where unknown
    known: np.ndarray  # [N, F_known] calendar and future covariates, scaled, 0 where unknown
    past: np.ndarray  # [N, F_past] past covariates, scaled, 0 where unknown


class Forecaster:
    """A global LSTM forecaster with quantiles; see the module docstring.

    Arguments are ForecasterConfig's fields. After ``fit``: ``freq_`` (the series' frequency),
    ``ids_`` (the series seen), ``members_`` (the trained networks).
    """

    def __init__(self, horizon: int, **settings) -> None:
        self.config = ForecasterConfig(horizon=horizon, **settings)
        self.members_: list[lstmkit.SequenceNet] = []

    # ---------------------------------------------------------------- fit
    def fit(
        self,
        df: pd.DataFrame | pd.Series,
        *,
        id_col: str = ID,
        time_col: str = TIME,
        target_col: str = TARGET,
    ) -> Forecaster:
        """Train on every series of ``df`` (a long frame, or one Series indexed by time)."""
        config = self.config
        self.columns_ = Columns(id_col, time_col, target_col)
        frame = self._frame(df, "df")
        lengths = frame.groupby(ID, sort=False).size()
        short = lengths[lengths <= config.horizon]
        if len(short):
            raise ValueError(
                f"horizon={config.horizon} needs every series in df to have more than "
                f"{config.horizon} observations; series {short.index[0]!r} has {short.iloc[0]}"
            )
        self.freq_ = frequency(frame, "df")
        self.scaler_ = self._fit_scaler(frame)
        panel = self._panel(frame, self.scaler_, futr_df=None)
        series, cutoffs = self._training_windows(panel)
        self.members_ = [
            self._train_member(panel, series, cutoffs, config.seed + k)
            for k in range(config.n_models)
        ]
        keep = max(config.input_size, 2 * config.horizon)
        self.history_ = frame.groupby(ID, sort=False).tail(keep).reset_index(drop=True)
        self.ids_ = list(lengths.index)
        return self

    def _frame(self, df, argument: str, need_target: bool = True) -> pd.DataFrame:
        config = self.config
        covariates = config.futr_covariates + (config.past_covariates if need_target else ())
        frame = as_long_frame(
            df, self.columns_, argument=argument, covariates=covariates, need_target=need_target
        )
        if need_target and config.log and (frame[TARGET] <= 0).any():
            raise ValueError(f"{argument}'s target must be > 0 with log=True, got values <= 0")
        return frame

    def _transform(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.config.log else y

    def _fit_scaler(self, frame: pd.DataFrame) -> _Scaler:
        scaler = _Scaler()
        for name, group in frame.groupby(ID, sort=False):
            scaler.series[name] = _mean_std(self._transform(group[TARGET].to_numpy()))
        config = self.config
        for name in config.futr_covariates + config.past_covariates:
            scaler.covariates[name] = _mean_std(frame[name].to_numpy())
        return scaler

    def _series_scale(self, scaler: _Scaler, name: str, group: pd.DataFrame) -> tuple:
        """The fitted scale of a known series; a new series is scaled by its own history."""
        if name in scaler.series:
            return scaler.series[name]
        return _mean_std(self._transform(group[TARGET].to_numpy()))

    def _panel(self, frame: pd.DataFrame, scaler: _Scaler, futr_df: pd.DataFrame | None) -> _Panel:
        config = self.config
        L, H = config.input_size, config.horizon
        ids, times, starts, lengths, scales = [], [], [], [], []
        values, known, past = [], [], []
        offset = 0
        for name, group in frame.groupby(ID, sort=False):
            n = len(group)
            stamps = np.concatenate(
                [group[TIME].to_numpy(), future_times(group[TIME].iloc[-1], self.freq_, H)]
            )
            mean, std = self._series_scale(scaler, name, group)
            scales.append((mean, std))
            value = np.full(L + n + H, np.nan)
            value[L : L + n] = (self._transform(group[TARGET].to_numpy()) - mean) / std
            columns = [calendar_features(stamps, self.freq_)] if config.calendar else []
            for column in config.futr_covariates:
                column_values = np.zeros(n + H)
                column_values[:n] = group[column].to_numpy()
                if futr_df is not None:
                    ahead = futr_df[futr_df[ID] == name]
                    column_values[n : n + len(ahead)] = ahead[column].to_numpy()[:H]
                cmean, cstd = scaler.covariates[column]
                columns.append(((column_values - cmean) / cstd)[:, None])
            block = np.concatenate(columns, axis=1) if columns else np.zeros((n + H, 0))
            known.append(np.concatenate([np.zeros((L, block.shape[1])), block]))
            past_block = np.zeros((L + n + H, len(config.past_covariates)))
            for j, column in enumerate(config.past_covariates):
                cmean, cstd = scaler.covariates[column]
                past_block[L : L + n, j] = (group[column].to_numpy() - cmean) / cstd
            past.append(past_block)
            values.append(value)
            ids.append(name)
            times.append(stamps)
            starts.append(offset + L)
            lengths.append(n)
            offset += L + n + H
        return _Panel(
            ids=ids,
            times=times,
            start=np.asarray(starts),
            length=np.asarray(lengths),
            scale=np.asarray(scales, dtype=np.float64).reshape(-1, 2),
            value=np.concatenate(values),
            known=np.concatenate(known),
            past=np.concatenate(past),
        )

    def _training_windows(self, panel: _Panel) -> tuple[np.ndarray, np.ndarray]:
        """Every origin with a full input window (or as full as a short series allows)."""
        L, H = self.config.input_size, self.config.horizon
        series, cutoffs = [], []
        for s, n in enumerate(panel.length):
            first = max(min(L, n - H) - 1, 0)
            origins = np.arange(first, n - 1)  # at least one future value to learn from
            series.append(np.full(len(origins), s))
            cutoffs.append(origins)
        return np.concatenate(series), np.concatenate(cutoffs)

    def _windows(
        self, panel: _Panel, series: np.ndarray, cutoffs: np.ndarray
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Network inputs ``[T, B, F]``, targets ``[H, B]`` (NaN where unknown), base ``[H, B]``.

        The base is what the network's output is added to: the window's level plus, with
        seasonal_skip, the seasonal naive forecast's departure from it. With the seasonal level
        the base is the last observed cycle and the target each step's change from one season
        earlier; ``_forecast`` sums those changes season by season (``integrate_seasonal``).
        """
        config = self.config
        L, H, s = config.input_size, config.horizon, config.season_length
        steps = np.arange(-L + 1, H + 1)  # [T] relative to the origin
        index = panel.start[series][:, None] + cutoffs[:, None] + steps  # [B, T]
        value = panel.value[index]  # [B, T]
        is_past = steps <= 0
        observed = is_past & ~np.isnan(value)
        if config.local_level == "last":
            level = value[:, L - 1]
        elif config.local_level == "mean":
            level = np.nanmean(np.where(observed, value, np.nan), axis=1)
        elif config.seasonal_level:  # the mean of the last cycle: free of the season's phase
            level = np.nanmean(np.where(observed & (steps > -s), value, np.nan), axis=1)
        else:
            level = np.zeros(len(series))
        relative = value - level[:, None]  # [B, T]
        seasonal = np.zeros((len(series), H))  # [B, H]
        if config.uses_season or config.seasonal_level:
            same_phase = L - s + np.arange(H) % s  # window column of the last same-season value
            seasonal = np.nan_to_num(relative[:, same_phase])  # a short series: no season
        inputs = np.zeros((len(series), L + H, 5 if config.seasonal_level else 4))
        inputs[:, :, 0] = np.where(observed, relative, 0.0)
        inputs[:, :, 1] = observed
        inputs[:, L:, 2] = seasonal
        inputs[:, L:, 3] = np.arange(1, H + 1) / H
        if config.seasonal_level:
            # the changes the network is asked for: y[t] - y[t - s], within the observed window
            change = relative[:, s:] - relative[:, :-s]  # [B, T - s]
            inputs[:, s:, 4] = np.where(observed[:, s:] & ~np.isnan(change), change, 0.0)
            target = relative[:, L:] - relative[:, L - s : L + H - s]  # NaN where unknown
        else:
            target = relative[:, L:] - seasonal  # NaN beyond the series' end
        features = np.concatenate(
            [inputs, panel.known[index], panel.past[index] * is_past[None, :, None]], axis=2
        )
        base = level[:, None] + seasonal
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        return (
            as_tensor(features).transpose(0, 1),
            as_tensor(target).T.contiguous(),
            as_tensor(base).T.contiguous(),
        )

    def _network(self, features: int) -> lstmkit.SequenceNet:
        config = self.config
        return lstmkit.SequenceNet(
            lstmkit.SequenceNetConfig(
                input_size=features,
                output_size=len(config.quantiles),
                cell=config.cell,
                variant=config.variant,
                hidden_size=config.hidden_size,
                num_layers=config.num_layers,
                dropout=config.dropout,
                readout="per_step",
                backend=config.backend,
            )
        )

    def _train_member(
        self, panel: _Panel, series: np.ndarray, cutoffs: np.ndarray, seed: int
    ) -> lstmkit.SequenceNet:
        config = self.config
        rng = np.random.default_rng(seed)
        quantiles = torch.tensor(config.quantiles)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inputs, _, _ = self._windows(panel, series[:1], cutoffs[:1])
            net = self._network(inputs.shape[-1])
            optimiser = torch.optim.AdamW(
                net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
            )
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.max_steps)
            net.train()
            for _ in range(config.max_steps):
                batch = rng.integers(0, len(series), size=min(config.batch_size, len(series)))
                inputs, target, _ = self._windows(panel, series[batch], cutoffs[batch])
                output = net(inputs)[0][config.input_size :]  # [H, B, Q]
                loss = pinball_loss(output, target, quantiles)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
                schedule.step()
        net.eval()
        return net

    # ---------------------------------------------------------------- forecast
    def predict(
        self,
        h: int | None = None,
        *,
        futr_df: pd.DataFrame | None = None,
        df: pd.DataFrame | pd.Series | None = None,
    ) -> pd.DataFrame:
        """Forecast ``h`` steps (default: the horizon) after the end of each series.

        df: a new history to forecast from (default: the one fit saw); new series are scaled
        by their own history. futr_df: unique_id, ds and the future covariates for the
        ``h`` steps after each series' end (needed when the model has future covariates).
        Returns a long frame: unique_id, ds, y_hat (the median) and one column per quantile.
        """
        self._check_fitted()
        h = self._check_h(h)
        frame = self.history_ if df is None else self._frame(df, "df")
        futr = self._future_frame(frame, futr_df, h)
        panel = self._panel(frame, self.scaler_, futr)
        series = np.arange(len(panel.ids))
        return self._forecast(panel, series, panel.length - 1, h)

    def _check_fitted(self) -> None:
        if not self.members_:
            raise RuntimeError("this Forecaster is not fitted yet: call fit(df) first")

    def _check_h(self, h: int | None) -> int:
        if h is None:
            return self.config.horizon
        check_positive_int("h", h)
        if h > self.config.horizon:
            raise ValueError(
                f"h must be <= the horizon the model was trained for ({self.config.horizon}), "
                f"got {h}; fit a Forecaster with horizon={h}"
            )
        return h

    def _future_frame(self, frame: pd.DataFrame, futr_df, h: int) -> pd.DataFrame | None:
        covariates = self.config.futr_covariates
        if not covariates:
            return None
        if futr_df is None:
            raise ValueError(
                f"futr_df is needed: the model uses future covariates {list(covariates)}"
            )
        futr = self._frame(futr_df, "futr_df", need_target=False)
        for name, group in frame.groupby(ID, sort=False):
            expected = future_times(group[TIME].iloc[-1], self.freq_, h)
            got = futr.loc[futr[ID] == name, TIME].to_numpy()[:h]
            if len(got) < h or not np.array_equal(got, expected):
                raise ValueError(
                    f"futr_df must hold the {h} time stamps after the end of series {name!r} "
                    f"({expected[0]} onwards), got {len(got)} matching rows"
                )
        return futr

    @torch.no_grad()
    def _forecast(self, panel: _Panel, series: np.ndarray, cutoffs: np.ndarray, h: int):
        """Quantile forecasts from each (series, origin), back on the data's scale."""
        config = self.config
        inputs, _, base = self._windows(panel, series, cutoffs)
        outputs = torch.stack([m(inputs)[0][config.input_size :] for m in self.members_])
        quantiles = outputs.mean(0).sort(dim=-1).values  # [H, B, Q]
        if config.seasonal_level:
            quantiles = integrate_seasonal(quantiles, config.season_length)
        quantiles = quantiles + base[..., None]
        scaled = quantiles[:h].permute(1, 0, 2).double().numpy()  # [B, h, Q]
        rows = []
        for b, (s, cutoff) in enumerate(zip(series, cutoffs, strict=True)):
            name = panel.ids[s]
            mean, std = panel.scale[s]
            values = scaled[b] * std + mean
            if config.log:
                values = np.exp(values)
            block = pd.DataFrame(
                {
                    ID: name,
                    TIME: panel.times[s][cutoff + 1 : cutoff + 1 + h],
                    "y_hat": values[:, config.quantiles.index(0.5)],
                }
            )
            for j, q in enumerate(config.quantiles):
                block[f"q{q:g}"] = values[:, j]
            block.insert(1, "cutoff", panel.times[s][cutoff])
            rows.append(block)
        return pd.concat(rows, ignore_index=True)

    # ---------------------------------------------------------------- backtest
    def backtest(
        self,
        df: pd.DataFrame | pd.Series,
        *,
        h: int | None = None,
        n_windows: int = 1,
        step: int = 1,
        start: object = None,
        refit: bool = False,
        last_points_only: bool = False,
    ) -> pd.DataFrame:
        """Forecasts from rolling origins over ``df``, beside the values that came.

        Origins: the last ``n_windows`` ones ``step`` apart, the final one ``h`` steps before
        each series' end; or, with ``start`` (a time stamp), every ``step``-th origin whose
        first forecast step is at or after ``start``. ``refit`` trains a fresh model on the
        data up to each origin (slow); otherwise the fitted model forecasts from each origin.
        Returns unique_id, cutoff, ds, y, y_hat and the quantiles; ``last_points_only`` keeps
        only each forecast's h-th step.
        """
        self._check_fitted()
        h = self._check_h(h)
        check_positive_int("n_windows", n_windows)
        check_positive_int("step", step)
        frame = self._frame(df, "df")
        origins = self._origins(frame, h, n_windows, step, start)
        if refit:
            forecast = self._refit_backtest(frame, origins, h)
        else:
            forecast = self._fixed_backtest(frame, origins, h)
        actual = frame[[ID, TIME, TARGET]]
        forecast = forecast.merge(actual, on=[ID, TIME], how="left")
        columns = [ID, "cutoff", TIME, TARGET, "y_hat"]
        forecast = forecast[columns + [c for c in forecast.columns if c not in columns]]
        if last_points_only:
            forecast = forecast.groupby([ID, "cutoff"], sort=False).tail(1)
        return forecast.reset_index(drop=True)

    def _origins(self, frame, h: int, n_windows: int, step: int, start) -> dict[str, np.ndarray]:
        """Each series' origin positions (index of the last observed step)."""
        origins = {}
        for name, group in frame.groupby(ID, sort=False):
            n = len(group)
            last = n - h - 1
            if start is None:
                positions = last - step * np.arange(n_windows)[::-1]
            else:
                first_step = int(np.searchsorted(group[TIME].to_numpy(), _stamp(start, group)))
                positions = np.arange(first_step - 1, last + 1, step)
            if len(positions) == 0 or positions[0] < 0:
                raise ValueError(
                    f"df's series {name!r} has {n} observations: too few for "
                    f"{'origins from ' + str(start) if start is not None else n_windows} "
                    f"window(s) of h={h} every {step} step(s)"
                )
            origins[name] = positions
        return origins

    def _fixed_backtest(self, frame, origins, h: int) -> pd.DataFrame:
        panel = self._panel(frame, self._backtest_scaler(frame, origins), futr_df=None)
        series = np.concatenate([np.full(len(origins[i]), s) for s, i in enumerate(panel.ids)])
        cutoffs = np.concatenate([origins[i] for i in panel.ids])
        return self._forecast(panel, series, cutoffs, h)

    def _backtest_scaler(self, frame, origins) -> _Scaler:
        """Fitted scales; a series unseen at fit is scaled by its data up to its first origin."""
        scaler = _Scaler(dict(self.scaler_.series), self.scaler_.covariates)
        for name, group in frame.groupby(ID, sort=False):
            if name not in scaler.series:
                history = group[TARGET].to_numpy()[: origins[name][0] + 1]
                scaler.series[name] = _mean_std(self._transform(history))
        return scaler

    def _refit_backtest(self, frame, origins, h: int) -> pd.DataFrame:
        windows = max(len(p) for p in origins.values())
        results = []
        for k in range(windows):
            cut = {name: p[k] for name, p in origins.items() if k < len(p)}
            history = frame[
                frame.groupby(ID, sort=False).cumcount().to_numpy()
                <= frame[ID].map(cut).fillna(-1).to_numpy()
            ]
            model = Forecaster(**asdict(self.config)).fit(history)  # standard column names
            futr = None
            if self.config.futr_covariates:
                futr = pd.concat(
                    group.iloc[cut[name] + 1 : cut[name] + 1 + h]
                    for name, group in frame.groupby(ID, sort=False)
                    if name in cut
                )
            results.append(model.predict(h, futr_df=futr))
        return pd.concat(results, ignore_index=True)

    # ---------------------------------------------------------------- report
    @staticmethod
    def errors(
        forecast: pd.DataFrame,
        train: pd.DataFrame | pd.Series | None = None,
        *,
        season_length: int = 1,
        column: str = "y_hat",
    ) -> dict[str, float]:
        """MAE, RMSE, MAPE, sMAPE (and MASE given ``train``) of a backtest's ``column``.

        Each is computed per series and averaged over series (the M competitions' way);
        MASE scales by the in-sample seasonal naive error of the series in ``train``.
        """
        if TARGET not in forecast or forecast[TARGET].isna().any():
            raise ValueError("forecast must have the actual values in column 'y' (backtest's)")
        scores: dict[str, list[float]] = {name: [] for name in metrics.FORECAST_METRICS}
        history = None
        if train is not None:
            history = as_long_frame(train, Columns(), argument="train")
            scores["MASE"] = []
        for name, group in forecast.groupby(ID, sort=False):
            for metric, function in metrics.FORECAST_METRICS.items():
                if metric == "MAPE" and (group[TARGET] == 0).any():
                    continue
                scores[metric].append(function(group[TARGET], group[column]))
            if history is not None:
                past = history.loc[history[ID] == name, TARGET]
                scores["MASE"].append(
                    metrics.mase(group[TARGET], group[column], past, season_length)
                )
        return {metric: float(np.mean(v)) for metric, v in scores.items() if v}

    def plot(
        self,
        path: str | os.PathLike,
        forecast: pd.DataFrame | None = None,
        *,
        history: pd.DataFrame | pd.Series | None = None,
        ids: list[str] | None = None,
        title: str = "",
    ) -> Path:
        """A PNG of each series' history, the forecast and its widest quantile interval.

        forecast: predict's or backtest's frame (default: predict()); a ``y`` column in it is
        drawn as the actual values. At most 6 series (``ids`` picks which).
        """
        from lstmkit.tasks.plotting import save_figure

        self._check_fitted()
        forecast = self.predict() if forecast is None else forecast
        past = self.history_ if history is None else as_long_frame(history, self.columns_)
        chosen = ids or list(dict.fromkeys(forecast[ID]))[:6]
        lowest, highest = f"q{self.config.quantiles[0]:g}", f"q{self.config.quantiles[-1]:g}"

        def draw(figure):
            axes = figure.subplots(len(chosen), 1, squeeze=False)[:, 0]
            for axis, name in zip(axes, chosen, strict=True):
                seen = past[past[ID] == name]
                ahead = forecast[forecast[ID] == name]
                axis.plot(seen[TIME], seen[TARGET], color="black", lw=1, label="history")
                if TARGET in ahead:
                    axis.plot(ahead[TIME], ahead[TARGET], color="gray", lw=1, label="actual")
                axis.plot(ahead[TIME], ahead["y_hat"], color="C0", lw=1.5, label="forecast")
                if lowest in ahead and highest != lowest:
                    axis.fill_between(
                        ahead[TIME],
                        ahead[lowest],
                        ahead[highest],
                        color="C0",
                        alpha=0.25,
                        label=f"{lowest}–{highest}",
                    )
                axis.set_title(f"{title} {name}".strip(), fontsize=9)
            axes[0].legend(fontsize=8, loc="upper left")

        return save_figure(path, draw, height=2.6 * len(chosen))

    # ---------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the networks, settings, scales and the history tail to ``path`` atomically."""
        self._check_fitted()
        state = {
            "config": asdict(self.config),
            "columns": asdict(self.columns_),
            "freq": self.freq_,
            "scaler": asdict(self.scaler_),
            "history": frame_to_json(self.history_),
            "ids": self.ids_,
        }
        return save_members(path, "Forecaster", self.members_, state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Forecaster:
        """The Forecaster ``save`` wrote to ``path``."""
        state, members = load_members(path, "Forecaster")
        config = state["config"]
        model = cls(**config)
        model.members_ = [member.eval() for member in members]
        model.columns_ = Columns(**state["columns"])
        model.freq_ = state["freq"]
        scaler = state["scaler"]
        model.scaler_ = _Scaler(
            {k: tuple(v) for k, v in scaler["series"].items()},
            {k: tuple(v) for k, v in scaler["covariates"].items()},
        )
        model.history_ = frame_from_json(state["history"])
        model.ids_ = state["ids"]
        return model

    def member(self, k: int) -> Forecaster:
        """The fitted ensemble's ``k``-th network alone (seed ``seed + k``), as a Forecaster.

        It shares this model's scaling and history, so its forecasts are those of a model fit
        with ``n_models=1, seed=seed + k``: scoring each member shows the spread over seeds
        that the ensemble averages away.
        """
        self._check_fitted()
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self.members_):
            raise ValueError(f"k must be an int in 0..{len(self.members_) - 1}, got {k!r}")
        single = copy.copy(self)
        single.config = replace(self.config, n_models=1, seed=self.config.seed + k)
        single.members_ = [self.members_[k]]
        return single

    def with_settings(self, **changes) -> Forecaster:
        """An unfitted Forecaster with these settings changed."""
        return Forecaster(**asdict(replace(self.config, **changes)))

    def __repr__(self) -> str:
        config = self.config
        return (
            f"Forecaster(horizon={config.horizon}, input_size={config.input_size}, "
            f"variant={config.variant!r}, n_models={config.n_models})"
        )


def pinball_loss(output: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """Mean quantile loss of ``output [H, B, Q]`` for ``target [H, B]``, ignoring NaN targets."""
    known = ~torch.isnan(target)
    error = torch.nan_to_num(target)[..., None] - output  # [H, B, Q]
    loss = torch.maximum(quantiles * error, (quantiles - 1) * error)
    return (loss * known[..., None]).sum() / (known.sum() * len(quantiles)).clamp(min=1)


def integrate_seasonal(changes: Tensor, season_length: int) -> Tensor:
    """Seasonal changes ``[H, ...]`` summed season by season: ``out[k] = changes[k] + out[k - s]``.

    The inverse of the seasonal difference: a step more than one season ahead adds its change
    to the forecast of the same season one period earlier. Quantiles are summed as they are
    (each quantile's path), so the bands widen with the horizon.
    """
    out = changes.clone()
    for k in range(season_length, len(out)):
        out[k] += out[k - season_length]
    return out


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    std = float(np.std(values))
    return float(np.mean(values)), (std if std > 1e-8 else 1.0)  # a constant series: unit scale


def _stamp(start: object, group: pd.DataFrame):
    """``start`` in the type of the group's time stamps."""
    if pd.api.types.is_integer_dtype(group[TIME]):
        return int(start)
    return np.datetime64(pd.Timestamp(start))
