"""``lstmkit.AnomalyDetector``: LSTM scores of how unexpected each point of a series is.

    >>> detector = AnomalyDetector(scorer="forecast", window=64).fit(normal)   # [n] or [n, C]
    >>> scores = detector.score(series)      # [n], higher = more anomalous
    >>> flags = detector.detect(series)      # [n] bool
    >>> detector.plot("anomalies.png", series, labels=labels)

Two scorers. ``forecast`` (Hundman et al. 2018, "Detecting spacecraft anomalies using LSTMs and
nonparametric dynamic thresholding"): an LSTM reads ``window`` past points and predicts the
next; a point's score is its exponentially smoothed absolute prediction error.
``autoencoder`` (Malhotra et al. 2016, "LSTM-based encoder-decoder for multi-sensor anomaly
detection"): an LSTM encodes a window to one vector, another rebuilds the window from it; a
point's score is its squared reconstruction error, averaged over the windows that cover it.
``detect`` flags points with Hundman et al.'s nonparametric dynamic threshold on the scores.
The detector is fit on normal data only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

import lstmkit
from lstmkit._checks import check_positive_int, unknown_name
from lstmkit.tasks.estimator_io import load_members, save_members
from lstmkit.tasks.metrics import regions

Scorer = Literal["forecast", "autoencoder"]


@dataclass(frozen=True)
class AnomalyDetectorConfig:
    """Every setting of an AnomalyDetector (saved with it)."""

    scorer: Scorer = "forecast"
    window: int = 64  # points the network reads (forecast) or rebuilds (autoencoder)
    variant: str = "standard"
    hidden_size: int = 32
    num_layers: int = 1
    latent_size: int = 16  # the autoencoder's code per window
    stride: int = 8  # autoencoder: steps between the windows that are scored
    smoothing: float = 0.05  # forecast: weight of a new error in the exponential smoothing
    z_range: tuple[float, float] = (2.0, 10.0)  # thresholds tried: mean + z * std of scores
    min_decrease: float = 0.13  # Hundman's pruning: the p of "percent decrease"
    max_steps: int = 500
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.scorer not in ("forecast", "autoencoder"):
            raise unknown_name("scorer", self.scorer, ("forecast", "autoencoder"))
        for name in ("window", "hidden_size", "num_layers", "latent_size", "stride"):
            check_positive_int(name, getattr(self, name))
        for name in ("max_steps", "batch_size"):
            check_positive_int(name, getattr(self, name))
        if self.window < 2:
            raise ValueError(f"window must be >= 2, got {self.window}")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {self.smoothing}")
        low, high = self.z_range
        if not 0 < low <= high:
            raise ValueError(
                f"z_range must be (low, high) with 0 < low <= high, got {self.z_range}"
            )
        object.__setattr__(self, "z_range", (float(low), float(high)))


class AnomalyDetector:
    """Scores points by LSTM forecast error or reconstruction error; see the module docstring.

    Arguments are AnomalyDetectorConfig's fields. After ``fit``: ``channels_``,
    ``members_`` (the trained networks).
    """

    def __init__(self, **settings) -> None:
        self.config = AnomalyDetectorConfig(**settings)
        self.members_: list[lstmkit.SequenceNet] = []

    # ---------------------------------------------------------------- fit
    def fit(self, x) -> AnomalyDetector:
        """Train on ``x``, normal data: ``[n]`` or ``[n, channels]`` (array, Series, DataFrame)."""
        series = self._series(x, "x", fitting=True)
        self.channels_ = series.shape[1]
        self.mean_ = series.mean(0)
        self.std_ = np.where(series.std(0) > 1e-8, series.std(0), 1.0)
        scaled = torch.as_tensor((series - self.mean_) / self.std_, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.members_ = self._networks()
            self._train(scaled)
        return self

    def _series(self, x, argument: str, fitting: bool = False) -> np.ndarray:
        """``x`` as a float array ``[n, C]``, checked."""
        if hasattr(x, "to_numpy"):
            x = x.to_numpy()
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        if not isinstance(x, np.ndarray | list | tuple):
            raise TypeError(
                f"{argument} must be an array [n] or [n, channels], got {type(x).__name__}"
            )
        array = np.asarray(x, dtype=np.float64)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(
                f"{argument} must be an array [n] or [n, channels], got {array.ndim} dimensions "
                f"(shape {list(array.shape)})"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"{argument} must have no NaNs or infinities")
        need = self.config.window + 1
        if len(array) < need:
            raise ValueError(
                f"{argument} must have at least window + 1 = {need} points, got {len(array)}"
            )
        if not fitting and array.shape[1] != self.channels_:
            raise ValueError(
                f"{argument} must have {self.channels_} channel(s) as at fit, got {array.shape[1]}"
            )
        return array

    def _networks(self) -> list[lstmkit.SequenceNet]:
        config = self.config
        common = {
            "variant": config.variant,
            "hidden_size": config.hidden_size,
            "num_layers": config.num_layers,
            "backend": config.backend,
        }
        config_of = lstmkit.SequenceNetConfig
        if config.scorer == "forecast":  # every step predicts the next point
            return [lstmkit.SequenceNet(config_of(self.channels_, self.channels_, **common))]
        encoder = config_of(self.channels_, config.latent_size, readout="last", **common)
        decoder = config_of(config.latent_size + 1, self.channels_, **common)
        return [lstmkit.SequenceNet(encoder), lstmkit.SequenceNet(decoder)]

    def _train(self, scaled: Tensor) -> None:
        config = self.config
        starts = np.arange(len(scaled) - config.window)  # each window has a next point after it
        rng = np.random.default_rng(config.seed)
        parameters = [p for member in self.members_ for p in member.parameters()]
        optimiser = torch.optim.Adam(parameters, lr=config.learning_rate)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.max_steps)
        for member in self.members_:
            member.train()
        for _ in range(config.max_steps):
            batch = rng.choice(starts, size=min(config.batch_size, len(starts)), replace=False)
            windows = _gather(scaled, batch, config.window + 1)  # [W + 1, B, C]
            if config.scorer == "forecast":
                loss = (self._predict_next(windows[:-1]) - windows[1:]).pow(2).mean()
            else:
                loss = (self._reconstruct(windows[:-1]) - windows[:-1]).pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimiser.step()
            schedule.step()
        for member in self.members_:
            member.eval()

    def _predict_next(self, windows: Tensor) -> Tensor:
        """``[W, B, C]`` -> each step's prediction of the point after it ``[W, B, C]``."""
        return self.members_[0](windows)[0]

    def _reconstruct(self, windows: Tensor) -> Tensor:
        """``[W, B, C]`` -> the decoder's rebuilding of the windows from their codes."""
        encoder, decoder = self.members_
        code = encoder(windows)[0]  # [B, latent]
        W, B = windows.shape[:2]
        position = torch.linspace(0, 1, W)[:, None, None].expand(W, B, 1)  # where in the window
        return decoder(torch.cat([code.expand(W, B, -1), position], dim=-1))[0]

    # ---------------------------------------------------------------- score
    @torch.no_grad()
    def score(self, x) -> np.ndarray:
        """Anomaly score of every point of ``x`` (``[n]``); the first ``window`` points of the
        forecast scorer have no prediction and score the smallest later score."""
        self._check_fitted()
        series = self._series(x, "x")
        scaled = torch.as_tensor((series - self.mean_) / self.std_, dtype=torch.float32)
        if self.config.scorer == "forecast":
            return self._forecast_scores(scaled)
        return self._reconstruction_scores(scaled)

    def _forecast_scores(self, scaled: Tensor) -> np.ndarray:
        W = self.config.window
        errors = np.zeros(len(scaled))
        for chunk in np.array_split(np.arange(len(scaled) - W), max(1, (len(scaled) - W) // 2048)):
            windows = _gather(scaled, chunk, W)  # [W, B, C]
            predicted = self._predict_next(windows)[-1]  # [B, C], for point start + W
            errors[chunk + W] = (predicted - scaled[chunk + W]).abs().mean(-1).numpy()
        smoothed = _smooth(errors[W:], self.config.smoothing)
        return np.concatenate([np.full(W, smoothed.min()), smoothed])

    def _reconstruction_scores(self, scaled: Tensor) -> np.ndarray:
        W, stride = self.config.window, self.config.stride
        starts = np.unique(np.r_[np.arange(0, len(scaled) - W + 1, stride), len(scaled) - W])
        total, count = np.zeros(len(scaled)), np.zeros(len(scaled))
        for chunk in np.array_split(starts, max(1, len(starts) // 1024)):
            windows = _gather(scaled, chunk, W)  # [W, B, C]
            error = (self._reconstruct(windows) - windows).pow(2).mean(-1).numpy()  # [W, B]
            index = chunk[None, :] + np.arange(W)[:, None]
            np.add.at(total, index, error)
            np.add.at(count, index, 1)
        return total / count

    def detect(self, x) -> np.ndarray:
        """Boolean flags ``[n]``: points in the anomalous runs the dynamic threshold finds."""
        return dynamic_threshold(
            self.score(x), z_range=self.config.z_range, min_decrease=self.config.min_decrease
        )

    def _check_fitted(self) -> None:
        if not self.members_:
            raise RuntimeError("this AnomalyDetector is not fitted yet: call fit(x) first")

    # ---------------------------------------------------------------- report
    def plot(self, path: str | os.PathLike, x, *, labels=None, title: str = "") -> Path:
        """A PNG of ``x`` (first channel) and its scores, detected runs shaded red and the
        ``labels`` (0/1 per point) shaded gray."""
        from lstmkit.tasks.plotting import save_figure

        series = self._series(x, "x")
        scores = self.score(series)
        flags = dynamic_threshold(scores, self.config.z_range, self.config.min_decrease)

        def draw(figure):
            top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
            top.plot(series[:, 0], color="black", lw=0.6)
            bottom.plot(scores, color="C0", lw=0.8)
            for axis in (top, bottom):
                if labels is not None:
                    for start, end in regions(np.asarray(labels) == 1):
                        axis.axvspan(start, end, color="gray", alpha=0.3)
                for start, end in regions(flags):
                    axis.axvspan(start, end, color="red", alpha=0.3)
            top.set_title(title or f"{self.config.scorer} scorer: red detected, gray labelled")
            bottom.set_ylabel("score")

        return save_figure(path, draw, width=10, height=4)

    # ---------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the networks, settings and data scale to ``path`` atomically."""
        self._check_fitted()
        state = {
            "config": asdict(self.config),
            "channels": self.channels_,
            "mean": self.mean_.tolist(),
            "std": self.std_.tolist(),
        }
        return save_members(path, "AnomalyDetector", self.members_, state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnomalyDetector:
        """The AnomalyDetector ``save`` wrote to ``path``."""
        state, members = load_members(path, "AnomalyDetector")
        config = state["config"]
        config["z_range"] = tuple(config["z_range"])
        detector = cls(**config)
        detector.members_ = [member.eval() for member in members]
        detector.channels_ = state["channels"]
        detector.mean_ = np.asarray(state["mean"])
        detector.std_ = np.asarray(state["std"])
        return detector

    def __repr__(self) -> str:
        config = self.config
        return (
            f"AnomalyDetector(scorer={config.scorer!r}, window={config.window}, "
            f"variant={config.variant!r})"
        )


def _gather(series: Tensor, starts: np.ndarray, length: int) -> Tensor:
    """Windows ``[length, B, C]`` of ``series [n, C]`` starting at ``starts``."""
    index = torch.as_tensor(starts)[None, :] + torch.arange(length)[:, None]
    return series[index]


def _smooth(errors: np.ndarray, weight: float) -> np.ndarray:
    """Exponentially weighted moving average, the smoothing of Hundman et al."""
    out = np.empty_like(errors)
    value = errors[0]
    for t, error in enumerate(errors):
        value = weight * error + (1 - weight) * value
        out[t] = value
    return out


def dynamic_threshold(
    scores: np.ndarray, z_range: tuple[float, float] = (2.0, 10.0), min_decrease: float = 0.13
) -> np.ndarray:
    """Hundman et al. 2018's nonparametric dynamic threshold over ``scores [n]``: flags ``[n]``.

    The threshold mean + z std (z in ``z_range``, steps of 0.5) is the one whose removal of
    the points above it lowers the mean and spread of the rest the most, relative to how many
    points and runs it flags. Runs are then pruned: sorted by their peak, with the highest
    unflagged score appended, a run stays flagged only while the drop to the next peak is at
    least ``min_decrease`` (as a fraction) at it or at a lower run.
    """
    scores = np.asarray(scores, dtype=np.float64)
    mean, std = scores.mean(), scores.std()
    if std == 0:
        return np.zeros(len(scores), dtype=bool)
    best, threshold = -np.inf, None
    for z in np.arange(z_range[0], z_range[1] + 1e-9, 0.5):
        epsilon = mean + z * std
        below = scores[scores < epsilon]
        above = scores >= epsilon
        if not above.any():
            continue
        runs = len(regions(above))
        gain = (mean - below.mean()) / mean + (std - below.std()) / std
        value = gain / (above.sum() + runs**2)
        if value > best:
            best, threshold = value, epsilon
    if threshold is None:
        return np.zeros(len(scores), dtype=bool)
    flags = scores >= threshold
    runs = regions(flags)
    peaks = np.array([scores[start:end].max() for start, end in runs])
    order = np.argsort(-peaks)
    highest_normal = scores[~flags].max() if (~flags).any() else 0.0
    sorted_peaks = np.r_[peaks[order], highest_normal]
    decrease = (sorted_peaks[:-1] - sorted_peaks[1:]) / sorted_peaks[:-1]
    # keep runs up to the last one whose drop to the next is large enough
    large = np.flatnonzero(decrease >= min_decrease)
    keep = order[: large[-1] + 1] if len(large) else []
    pruned = np.zeros(len(scores), dtype=bool)
    for k in keep:
        start, end = runs[k]
        pruned[start:end] = True
    return pruned
