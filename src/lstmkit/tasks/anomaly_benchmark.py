"""Our AnomalyDetector against a rolling z-score and an isolation forest, in the same run.

kdd135: the UCR anomaly archive's series 135 (InternalBleeding16, shipped with aeon): 1,200
normal training points, 7,501 test points with one labelled region of 12 points. The archive's
protocol scores one location per detector: a hit when the top-scored point lies in the region
(and, as its authors allow, within 100 points of it).
mitdb: the ECG record shipped with sktime (7,500 points, one labelled region of 352 points);
the first 2,500 points (normal) train, the other 5,000 are scored: AUC-PR, the best point-
adjusted F1 over thresholds (an oracle threshold, the same for every method), and for our
detectors the F1 of the flags of the dynamic threshold, which sees no labels.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lstmkit.tasks import metrics
from lstmkit.tasks.anomaly import AnomalyDetector

DATASETS = ("kdd135", "mitdb")


@dataclass(frozen=True)
class AnomalyData:
    name: str
    train: np.ndarray  # [n] normal
    test: np.ndarray  # [m]
    labels: np.ndarray  # [m] 0/1
    period: int  # a rough cycle length, for windows


def load_anomaly_dataset(name: str) -> AnomalyData:
    """kdd135 (aeon) or mitdb (sktime's package data, read without importing sktime)."""
    if name == "kdd135":
        from aeon.datasets import load_kdd_tsad_135

        train, _ = load_kdd_tsad_135(split="train")
        test, labels = load_kdd_tsad_135(split="test")
        return AnomalyData(name, np.asarray(train), np.asarray(test), np.asarray(labels), 64)
    if name == "mitdb":
        spec = importlib.util.find_spec("sktime")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("dataset 'mitdb' ships with sktime: pip install sktime")
        path = (
            Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "mitdb" / "mitdb.csv"
        )
        frame = pd.read_csv(path)
        values, labels = frame["data"].to_numpy(np.float64), frame["label"].to_numpy()
        return AnomalyData(name, values[:2500], values[2500:], labels[2500:], 64)
    raise ValueError(f"dataset must be one of {list(DATASETS)}, got {name!r}")


@dataclass
class Row:
    method: str
    scores: dict[str, float]
    seconds: float


@dataclass
class AnomalyResult:
    dataset: str
    rows: list[Row] = field(default_factory=list)
    detectors: dict[str, AnomalyDetector] = field(default_factory=dict)


def rolling_zscore(train: np.ndarray, test: np.ndarray, window: int) -> np.ndarray:
    """|x - mean| / std over the ``window`` points before each point (the first ones: train's)."""
    series = pd.Series(np.concatenate([train[-window:], test]))
    past = series.shift(1).rolling(window)
    z = ((series - past.mean()) / past.std().replace(0, np.nan)).abs()
    return z.fillna(0).to_numpy()[window:]


def isolation_forest(train: np.ndarray, test: np.ndarray, window: int, seed: int) -> np.ndarray:
    """scikit-learn's IsolationForest on sliding windows; a point scores its window's score."""
    from sklearn.ensemble import IsolationForest

    def windows(x):
        return np.lib.stride_tricks.sliding_window_view(x, window)

    forest = IsolationForest(n_estimators=200, random_state=seed).fit(windows(train))
    window_scores = -forest.score_samples(windows(np.concatenate([train[-window + 1 :], test])))
    return window_scores  # window ending at each test point


def evaluate(labels: np.ndarray, scores: np.ndarray, flags: np.ndarray | None) -> dict:
    out = {
        "UCR hit": float(metrics.ucr_hit(labels, scores)),
        "UCR hit ±100": float(metrics.ucr_hit(labels, scores, slack=100)),
        "AUC-PR": metrics.auc_pr(labels, scores),
        "best PA-F1": metrics.best_point_adjusted_f1(labels, scores)[0],
    }
    if flags is not None:
        out["PA-F1 (dynamic threshold)"] = metrics.point_adjusted_f1(labels, flags)
    return out


def run_anomaly_benchmark(
    data: AnomalyData,
    *,
    variant: str = "standard",
    max_steps: int = 600,
    seed: int = 0,
    say=print,
) -> AnomalyResult:
    result = AnomalyResult(data.name)
    for scorer in ("forecast", "autoencoder"):
        start = time.perf_counter()
        detector = AnomalyDetector(
            scorer=scorer, window=data.period, variant=variant, max_steps=max_steps, seed=seed
        ).fit(data.train)
        scores = detector.score(data.test)
        flags = detector.detect(data.test)
        row = Row(
            f"lstmkit {scorer} ({variant})",
            evaluate(data.labels, scores, flags),
            time.perf_counter() - start,
        )
        result.rows.append(row)
        result.detectors[scorer] = detector
        say(f"{row.method}: {row.scores} in {row.seconds:.1f} s")
    for method, function in (
        ("rolling z-score", lambda: rolling_zscore(data.train, data.test, data.period)),
        (
            "IsolationForest (scikit-learn)",
            lambda: isolation_forest(data.train, data.test, data.period, seed),
        ),
    ):
        start = time.perf_counter()
        scores = function()
        row = Row(method, evaluate(data.labels, scores, None), time.perf_counter() - start)
        result.rows.append(row)
        say(f"{row.method}: {row.scores} in {row.seconds:.1f} s")
    return result
