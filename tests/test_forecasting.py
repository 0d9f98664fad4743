"""lstmkit.tasks.forecasting.Forecaster on tiny data: every public method, bad input."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import torch

import lstmkit
from lstmkit.tasks import metrics
from lstmkit.tasks.forecasting import Forecaster, integrate_seasonal, pinball_loss

TINY = {"input_size": 6, "hidden_size": 8, "max_steps": 15, "batch_size": 16}


def monthly(n: int = 40, ids=("a", "b"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for k, name in enumerate(ids):
        t = np.arange(n)
        y = 10 + k * 5 + np.sin(2 * np.pi * t / 12) + 0.1 * rng.normal(size=n)
        stamps = pd.date_range("2000-01-01", periods=n, freq="MS")
        frames.append(pd.DataFrame({"unique_id": name, "ds": stamps, "y": y, "x": t % 12}))
    return pd.concat(frames, ignore_index=True)


def growing(n: int, ids=("a",), seed: int = 0) -> pd.DataFrame:
    """Monthly series growing 1.5 % a month with a multiplicative yearly season."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, name in enumerate(ids):
        t = np.arange(n)
        season = 1 + 0.25 * np.sin(2 * np.pi * (t + 3 * k) / 12)
        y = (50 + 20 * k) * np.exp(0.015 * t) * season * np.exp(0.01 * rng.normal(size=n))
        stamps = pd.date_range("2000-01-01", periods=n, freq="MS")
        frames.append(pd.DataFrame({"unique_id": name, "ds": stamps, "y": y}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(horizon=3, season_length=12, seasonal_skip=False, **TINY).fit(monthly())


def test_predict_gives_each_series_its_next_steps(fitted):
    forecast = fitted.predict()
    assert list(forecast.columns[:4]) == ["unique_id", "cutoff", "ds", "y_hat"]
    assert {"q0.1", "q0.5", "q0.9"} <= set(forecast.columns)
    for name in ("a", "b"):
        rows = forecast[forecast.unique_id == name]
        assert list(rows.ds) == list(pd.date_range("2003-05-01", periods=3, freq="MS"))
        assert np.array_equal(rows.y_hat, rows["q0.5"])
        assert (rows["q0.1"] <= rows["q0.5"]).all() and (rows["q0.5"] <= rows["q0.9"]).all()
    assert len(fitted.predict(2)) == 4


def test_series_input_and_custom_column_names():
    frame = monthly(ids=("a",))
    series = pd.Series(frame.y.to_numpy(), index=pd.DatetimeIndex(frame.ds), name="s")
    forecast = Forecaster(horizon=2, **TINY).fit(series).predict()
    assert list(forecast.unique_id) == ["s", "s"]
    renamed = frame.rename(columns={"unique_id": "id", "ds": "when", "y": "value"})
    model = Forecaster(horizon=2, **TINY).fit(
        renamed, id_col="id", time_col="when", target_col="value"
    )
    assert len(model.predict(df=renamed)) == 2


def test_integer_time_steps_and_variants():
    frame = monthly(ids=("a",))
    frame["ds"] = np.arange(len(frame)) * 5
    for settings in ({"variant": "peephole"}, {"cell": "gru"}, {"local_level": "last"}):
        forecast = Forecaster(horizon=2, **TINY, **settings).fit(frame).predict()
        assert list(forecast.ds) == [len(frame) * 5, len(frame) * 5 + 5]


def test_seasonal_skip_and_log_forecast_positive_values():
    forecast = Forecaster(horizon=4, season_length=4, log=True, **TINY).fit(monthly()).predict()
    assert (forecast[["y_hat", "q0.1", "q0.9"]] > 0).all().all()


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.safetensors")
    loaded = Forecaster.load(path)
    pd.testing.assert_frame_equal(loaded.predict(), fitted.predict())
    # lstmkit.load knows an estimator's file
    pd.testing.assert_frame_equal(lstmkit.load(path).predict(), fitted.predict())
    assert loaded.config == fitted.config
    with pytest.raises(ValueError, match="not a saved AnomalyDetector"):
        from lstmkit.tasks.anomaly import AnomalyDetector

        AnomalyDetector.load(path)


def test_backtest_windows_and_no_peeking(fitted):
    frame = monthly()
    backtest = fitted.backtest(frame, n_windows=2, step=2)
    assert len(backtest) == 2 * 2 * 3
    first = backtest[backtest.unique_id == "a"]
    assert list(first.cutoff.unique()) == list(frame.ds.iloc[[34, 36]])
    truth = frame.set_index(["unique_id", "ds"]).y
    keys = list(zip(backtest.unique_id, backtest.ds, strict=True))
    assert np.allclose(backtest.y, truth.loc[keys])
    changed = frame.copy()
    changed.loc[changed.ds > frame.ds.iloc[34], "y"] += 100.0  # after the first origin
    again = fitted.backtest(changed, n_windows=2, step=2)
    early = backtest.cutoff == frame.ds.iloc[34]
    assert np.allclose(again.y_hat[early], backtest.y_hat[early])
    assert not np.allclose(again.y_hat[~early], backtest.y_hat[~early])
    last = fitted.backtest(frame, start="2002-06-01", last_points_only=True)
    # origins 2002-05 .. 2003-01
    assert (last.ds >= pd.Timestamp("2002-08-01")).all() and len(last) == 2 * 9


def test_backtest_refit_trains_one_model_per_origin(fitted):
    frame = monthly()
    backtest = fitted.backtest(frame, n_windows=2, step=3, refit=True)
    assert len(backtest) == 12 and backtest.y.notna().all()


def test_errors_agree_with_metrics(fitted):
    frame = monthly()
    backtest = fitted.backtest(frame, n_windows=1)
    train = frame.groupby("unique_id").head(37)
    errors = Forecaster.errors(backtest, train, season_length=12)
    per_series = [
        metrics.mase(g.y, g.y_hat, train[train.unique_id == n].y, 12)
        for n, g in backtest.groupby("unique_id")
    ]
    assert errors["MASE"] == pytest.approx(np.mean(per_series))
    assert errors["MAE"] == pytest.approx(
        np.mean([metrics.mae(g.y, g.y_hat) for _, g in backtest.groupby("unique_id")])
    )
    assert set(errors) == {"MAE", "RMSE", "MAPE", "sMAPE", "MASE"}


def test_covariates_future_and_past():
    frame = monthly()
    frame["p"] = np.random.default_rng(0).normal(size=len(frame))
    model = Forecaster(horizon=2, futr_covariates=["x"], past_covariates=["p"], **TINY)
    model.fit(frame)
    with pytest.raises(ValueError, match="futr_df is needed"):
        model.predict()
    futr = pd.DataFrame(
        {
            "unique_id": ["a", "a", "b", "b"],
            "ds": list(pd.date_range("2003-05-01", periods=2, freq="MS")) * 2,
            "x": [4.0, 5.0, 4.0, 5.0],
        }
    )
    forecast = model.predict(futr_df=futr)
    shifted = model.predict(futr_df=futr.assign(x=[40.0, 50.0, 40.0, 50.0]))
    assert not np.allclose(forecast.y_hat, shifted.y_hat)  # the future covariate is read
    with pytest.raises(ValueError, match="futr_df must hold the 2 time stamps"):
        model.predict(futr_df=futr.iloc[:3])


def test_plot_writes_a_png(fitted, tmp_path):
    path = fitted.plot(tmp_path / "forecast.png", fitted.backtest(monthly(), n_windows=1))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"must end in \.png"):
        fitted.plot(tmp_path / "forecast.jpg")


def test_pinball_loss_matches_its_definition():
    output = torch.randn(3, 4, 2)
    target = torch.randn(3, 4)
    target[0, 0] = float("nan")
    quantiles = torch.tensor([0.2, 0.7])
    total, count = 0.0, 0
    for h in range(3):
        for b in range(4):
            if torch.isnan(target[h, b]):
                continue
            for j, q in enumerate(quantiles.tolist()):
                error = float(target[h, b] - output[h, b, j])
                total += max(q * error, (q - 1) * error)
                count += 1
    assert float(pinball_loss(output, target, quantiles)) == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("season", [1, 4])
def test_integrate_seasonal_inverts_the_seasonal_difference(season):
    path = torch.randn(season + 9, 3, 2)  # [s + H, B, Q]: a last cycle, then H steps
    changes = path[season:] - path[:-season]  # y[t] - y[t - s]
    phase = torch.arange(9) % season
    rebuilt = integrate_seasonal(changes, season) + path[:season][phase]
    assert torch.allclose(rebuilt, path[season:], atol=1e-5)


@pytest.mark.parametrize("season, log", [(12, True), (1, False)])
def test_seasonal_level_windows_round_trip(season, log):
    frame = growing(n=50, ids=("a", "b"), seed=season)
    model = Forecaster(horizon=14, input_size=12, season_length=season, log=log, max_steps=1)
    model = model.with_settings(local_level="seasonal").fit(frame)
    panel = model._panel(frame, model.scaler_, futr_df=None)
    series, cutoffs = np.array([0, 1, 1]), np.array([20, 11, 30])  # full futures
    _, target, base = model._windows(panel, series, cutoffs)  # [H, B]
    for b, (s, cutoff) in enumerate(zip(series, cutoffs, strict=True)):
        y = frame[frame.unique_id == "ab"[s]].y.to_numpy()
        scaled = ((np.log(y) if log else y) - panel.scale[s, 0]) / panel.scale[s, 1]
        future = scaled[cutoff + 1 : cutoff + 15]
        expected = future - scaled[cutoff + 1 - season : cutoff + 15 - season]
        assert np.allclose(target[:, b].numpy(), expected, atol=1e-5)
    rebuilt = integrate_seasonal(target, season) + base
    for b, (s, cutoff) in enumerate(zip(series, cutoffs, strict=True)):
        y = frame[frame.unique_id == "ab"[s]].y.to_numpy()
        scaled = ((np.log(y) if log else y) - panel.scale[s, 0]) / panel.scale[s, 1]
        assert np.allclose(rebuilt[:, b].numpy(), scaled[cutoff + 1 : cutoff + 15], atol=1e-5)


@pytest.mark.slow
def test_seasonal_level_follows_growth_that_the_last_level_misses(tmp_path):
    frame = growing(n=84, ids=("a", "b"), seed=0)
    train = frame.groupby("unique_id").head(60)
    test = frame.groupby("unique_id").tail(24)
    settings = {"horizon": 24, "input_size": 12, "season_length": 12, "log": True}
    settings |= {"seasonal_skip": False, "hidden_size": 16, "max_steps": 200}
    errors = {}
    for level in ("seasonal", "last"):
        model = Forecaster(**settings, local_level=level).fit(train)
        forecast = model.predict().merge(test, on=["unique_id", "ds"])
        errors[level] = metrics.mape(forecast.y, forecast.y_hat)
    # independently: the seasonal naive forecast repeats each series' last year
    naive = np.concatenate(
        [np.tile(g.y.to_numpy()[-12:], 2) for _, g in train.groupby("unique_id")]
    )
    ordered = test.sort_values(["unique_id", "ds"])
    naive_error = metrics.mape(ordered.y, naive)
    assert errors["seasonal"] < errors["last"] and errors["seasonal"] < naive_error / 3
    loaded = Forecaster.load(model.save(tmp_path / "m.safetensors"))
    pd.testing.assert_frame_equal(loaded.predict(), model.predict())


def _without(frame, **changes):
    frame = frame.copy()
    for key, value in changes.items():
        frame.loc[value[0], key] = value[1]
    return frame


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda f: f.iloc[:0], ValueError, "empty frame"),
        (lambda f: f.drop(columns="y"), ValueError, "must have the columns \\['y'\\]"),
        (lambda f: f.iloc[::-1], ValueError, "must increase within each series"),
        (lambda f: pd.concat([f, f.iloc[[3]]]), ValueError, "duplicated time stamps"),
        (lambda f: _without(f, y=(5, np.nan)), ValueError, "no NaNs"),
        (lambda f: f.groupby("unique_id").head(3), ValueError, "more than 3 observations"),
        (lambda f: f.drop(index=[7, 8]), ValueError, "regular time stamps"),
        (lambda f: f.y.to_numpy(), TypeError, "must be a pandas DataFrame"),
        (lambda f: f.assign(y="text"), TypeError, "must be numeric"),
    ],
    ids=[
        "empty",
        "missing-column",
        "backwards",
        "duplicated",
        "nan",
        "short",
        "gaps",
        "type",
        "text",
    ],
)
def test_fit_rejects_bad_frames(make, error, message):
    with pytest.raises(error, match=message):
        Forecaster(horizon=3, **TINY).fit(make(monthly()))


def test_bad_settings_and_calls(fitted):
    with pytest.raises(ValueError, match="h must be <= the horizon"):
        fitted.predict(4)
    with pytest.raises(ValueError, match="too few"):
        fitted.backtest(monthly(), n_windows=40)
    with pytest.raises(ValueError, match="> 0 with log=True"):
        Forecaster(horizon=2, log=True, **TINY).fit(monthly().assign(y=-1.0))
    with pytest.raises(RuntimeError, match="not fitted"):
        Forecaster(horizon=2).predict()
    with pytest.raises(ValueError, match="local_level must be one of"):
        Forecaster(horizon=2, local_level="median")
    with pytest.raises(ValueError, match="quantiles must lie"):
        Forecaster(horizon=2, quantiles=(0.1, 1.5))
    with pytest.raises(ValueError, match="input_size must be >= season_length"):
        Forecaster(horizon=2, input_size=6, season_length=12)
    with pytest.raises(ValueError, match="local_level='seasonal'"):
        Forecaster(horizon=2, input_size=6, season_length=12, local_level="seasonal")
    with pytest.raises(TypeError, match="horizon must be an int"):
        Forecaster(horizon=2.5)


@pytest.mark.slow
def test_learns_a_seasonal_series_better_than_the_seasonal_naive_forecast():
    frame = monthly(n=120, ids=("a", "b", "c"))
    train = frame.groupby("unique_id").head(108)
    test = frame.groupby("unique_id").tail(12)
    model = Forecaster(horizon=12, input_size=24, season_length=12, max_steps=300).fit(train)
    forecast = model.predict().merge(test, on=["unique_id", "ds"])
    naive = np.concatenate([g.y.to_numpy()[-12:] for _, g in train.groupby("unique_id")])
    ordered = forecast.sort_values(["unique_id", "ds"])
    assert metrics.mae(ordered.y, ordered.y_hat) < metrics.mae(ordered.y, naive)


def test_neuralforecast_peer_averages_its_seeds_and_forecasts_every_series():
    from lstmkit.tasks import forecast_peers

    # series "b" is shorter than the input window: neuralforecast pads it at the start
    frame = pd.concat([monthly(n=30, ids=("a",)), monthly(n=8, ids=("b",), seed=1)])
    train = frame[["unique_id", "ds", "y"]]
    peer = functools.partial(forecast_peers.neuralforecast_lstm, train, 3, 12, max_steps=3)
    both, seconds = peer(n_models=2, seed=4)
    assert seconds > 0 and list(both.columns) == ["unique_id", "ds", "y_hat"]
    for name, group in train.groupby("unique_id"):
        after = pd.date_range(group.ds.max(), periods=4, freq="MS")[1:]
        assert list(both[both.unique_id == name].ds) == list(after)
    first, _ = peer(n_models=1, seed=4)
    second, _ = peer(n_models=1, seed=5)
    assert np.isfinite(both.y_hat).all()
    assert not np.allclose(first.y_hat, second.y_hat)  # the seeds give different networks
    np.testing.assert_allclose(both.y_hat, (first.y_hat + second.y_hat) / 2, rtol=1e-6)


def test_forecast_command_prints_ours_against_the_baselines(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from lstmkit.cli.forecast import forecast
    from lstmkit.tasks import forecast_peers

    # the peer's 1,000 default steps would dominate the test: 2 steps show the row is there
    few_steps = functools.partial(forecast_peers.neuralforecast_lstm, max_steps=2)
    monkeypatch.setattr(forecast_peers, "neuralforecast_lstm", few_steps)

    app = typer.Typer()
    app.command()(forecast)
    app.command("other")(lambda: None)  # two commands: typer keeps the subcommand name
    csv = tmp_path / "series.csv"
    monthly(n=30).rename(columns={"unique_id": "id"}).to_csv(csv, index=False)
    arguments = ["forecast", "--csv", str(csv), "--id-col", "id", "--horizon", "3"]
    arguments += ["--season-length", "12", "--variant", "standard", "--n-models", "1"]
    arguments += ["--max-steps", "3", "--output-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    for method in ("lstmkit standard", "seasonal naive", "AutoETS", "AutoARIMA", "Theta"):
        assert method in result.output
    assert "neuralforecast LSTM" in result.output
    assert (tmp_path / "out" / "forecast.png").is_file()
    without = CliRunner().invoke(app, [*arguments, "--no-peers"])
    assert without.exit_code == 0 and "neuralforecast" not in without.output
    bad = CliRunner().invoke(app, ["forecast", "--dataset", "airline", "--csv", str(csv)])
    assert bad.exit_code == 2 and "exactly one of" in bad.output


def test_member_is_the_model_fit_alone_with_its_seed():
    frame = monthly(n=30)
    ensemble = Forecaster(horizon=3, **TINY, n_models=2, seed=3).fit(frame)
    alone = Forecaster(horizon=3, **TINY, n_models=1, seed=4).fit(frame)
    second = ensemble.member(1)
    assert second.config.seed == 4 and len(second.members_) == 1
    pd.testing.assert_frame_equal(second.predict(), alone.predict())
    first = ensemble.member(0).predict()
    assert not np.allclose(first.y_hat, alone.predict().y_hat)
    assert len(ensemble.members_) == 2  # the ensemble itself is left whole
    for bad in (2, -1, 1.0, True):
        with pytest.raises(ValueError, match=r"k must be an int in 0\.\.1"):
            ensemble.member(bad)
    with pytest.raises(RuntimeError, match="not fitted"):
        Forecaster(horizon=3).member(0)
