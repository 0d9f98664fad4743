"""Other libraries' LSTM forecasters on the same split as ours, in the same run.

``lstmkit forecast`` puts these beside our models where the library is installed
(``pip install "lstmkit[peers]"``). Each peer keeps its library's defaults; only what the task
fixes is ours: the horizon, the input window and the seeds. Like ours, a peer's forecast is the
mean of ``n_models`` networks trained with consecutive seeds.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from lstmkit.tasks.series_frame import ID, TIME, frequency

NEURALFORECAST = "neuralforecast LSTM (defaults)"


def installed() -> bool:
    """Whether the peer library (neuralforecast) can be imported here."""
    return importlib.util.find_spec("neuralforecast") is not None


def neuralforecast_lstm(
    train: pd.DataFrame,
    horizon: int,
    input_size: int,
    *,
    n_models: int = 5,
    seed: int = 0,
    max_steps: int | None = None,
) -> tuple[pd.DataFrame, float]:
    """neuralforecast's ``LSTM`` forecasts ``unique_id, ds, y_hat`` of ``train``, and seconds.

    The library's defaults stand: a two-layer encoder of 128 units, an MLP decoder, MAE loss,
    robust scaling per window, Adam at 1e-3 for 1,000 steps (``max_steps`` overrides that, for
    tests). Series shorter than the input window are padded at the start, as neuralforecast
    offers, so that every series is forecast.
    """
    from neuralforecast import NeuralForecast
    from neuralforecast.models import LSTM

    freq = frequency(train, "train")
    steps = {} if max_steps is None else {"max_steps": max_steps}
    quiet = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}
    forecasts = []
    start = time.perf_counter()
    for k in range(n_models):
        with _lightning_quiet():
            model = LSTM(
                h=horizon,
                input_size=input_size,
                start_padding_enabled=True,
                random_seed=seed + k,
                **steps,
                **quiet,
            )
            engine = NeuralForecast(models=[model], freq=freq)
            engine.fit(df=train)
            forecast = engine.predict()
        # older neuralforecast versions return the ids as the index
        forecast = forecast.reset_index() if ID not in forecast else forecast
        forecasts.append(forecast.sort_values([ID, TIME]).reset_index(drop=True))
    mean = forecasts[0][[ID, TIME]].copy()
    mean["y_hat"] = np.mean([f["LSTM"].to_numpy() for f in forecasts], axis=0)
    return mean, time.perf_counter() - start


@contextmanager
def _lightning_quiet() -> Iterator[None]:
    """Silence Lightning's per-fit banners (accelerators, seeds, tips) and warnings in a block."""
    # Lightning logs through whichever of its packages imported last (lightning.pytorch,
    # pytorch_lightning, lightning_fabric...), each with its own level: quiet them all.
    names = [name for name in logging.Logger.manager.loggerDict if "lightning" in name]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
