"""Error measures of forecasts and of anomaly scores, on plain numpy arrays.

Forecasts: MAE, RMSE, MAPE and sMAPE (both in percent, as the M competitions and the published
AirPassengers numbers print them) and MASE (Hyndman & Koehler 2006: the error scaled by the
in-sample error of the seasonal naive forecast). Anomalies: point-adjusted F1 (Xu et al. 2018:
a labelled region counts as found when any of its points is flagged), the area under the
precision-recall curve, and the UCR archive's hit (the top-scored point lies in the region).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype=np.float64).ravel()
    pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if true.shape != pred.shape:
        raise ValueError(
            f"y_pred must have as many values as y_true ({true.size}), got {pred.size}"
        )
    if true.size == 0:
        raise ValueError("y_true must hold at least one value, got an empty array")
    if not (np.isfinite(true).all() and np.isfinite(pred).all()):
        raise ValueError("y_true and y_pred must be finite, got NaN or infinity")
    return true, pred


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error."""
    true, pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(true - pred)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error."""
    true, pred = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((true - pred) ** 2)))


def mape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute percentage error, in percent; y_true must have no zeros."""
    true, pred = _pair(y_true, y_pred)
    if np.any(true == 0):
        raise ValueError("y_true must have no zeros for MAPE (it divides by them); use sMAPE")
    return float(100.0 * np.mean(np.abs((true - pred) / true)))


def smape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Symmetric MAPE in percent (0 to 200), as the M3/M4 competitions: 200|e| / (|y| + |ŷ|)."""
    true, pred = _pair(y_true, y_pred)
    denominator = np.abs(true) + np.abs(pred)
    ratio = np.divide(
        np.abs(true - pred), denominator, out=np.zeros_like(true), where=denominator > 0
    )  # both zero: a perfect forecast of zero
    return float(200.0 * np.mean(ratio))


def mase(y_true: ArrayLike, y_pred: ArrayLike, y_train: ArrayLike, season_length: int = 1) -> float:
    """Mean absolute scaled error: MAE over the in-sample MAE of the seasonal naive forecast."""
    true, pred = _pair(y_true, y_pred)
    if not isinstance(season_length, int) or season_length < 1:
        raise ValueError(f"season_length must be an int >= 1, got {season_length!r}")
    train = np.asarray(y_train, dtype=np.float64).ravel()
    if train.size <= season_length:
        raise ValueError(
            f"y_train must have more than season_length={season_length} values, got {train.size}"
        )
    scale = np.mean(np.abs(train[season_length:] - train[:-season_length]))
    if scale == 0:
        raise ValueError("y_train is constant at the season lag: MASE's denominator is zero")
    return float(np.mean(np.abs(true - pred)) / scale)


FORECAST_METRICS = {"MAE": mae, "RMSE": rmse, "MAPE": mape, "sMAPE": smape}


def _labels_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    label = np.asarray(labels).ravel()
    score = np.asarray(scores, dtype=np.float64).ravel()
    if label.shape != score.shape:
        raise ValueError(
            f"scores must have as many values as labels ({label.size}), got {score.size}"
        )
    if not np.isin(label, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    if not label.any():
        raise ValueError("labels must mark at least one anomalous point, got none")
    return label.astype(bool), score


def regions(flags: ArrayLike) -> list[tuple[int, int]]:
    """The runs of True in ``flags`` as (start, end) with end exclusive."""
    flag = np.asarray(flags, dtype=bool).ravel().astype(np.int8)
    edges = np.diff(np.concatenate([[0], flag, [0]]))
    starts, ends = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
    return list(zip(starts, ends, strict=True))


def point_adjust(labels: ArrayLike, predicted: ArrayLike) -> np.ndarray:
    """Predictions where a labelled region flagged at any point counts as flagged throughout."""
    label = np.asarray(labels).ravel().astype(bool)
    adjusted = np.asarray(predicted).ravel().astype(bool).copy()
    for start, end in regions(label):
        if adjusted[start:end].any():
            adjusted[start:end] = True
    return adjusted


def f1(labels: ArrayLike, predicted: ArrayLike) -> float:
    """F1 of boolean predictions against 0/1 labels (0 when nothing is flagged)."""
    label = np.asarray(labels).ravel().astype(bool)
    pred = np.asarray(predicted).ravel().astype(bool)
    true_positive = np.sum(label & pred)
    if true_positive == 0:
        return 0.0
    precision = true_positive / pred.sum()
    recall = true_positive / label.sum()
    return float(2 * precision * recall / (precision + recall))


def point_adjusted_f1(labels: ArrayLike, predicted: ArrayLike) -> float:
    """F1 after point adjustment (Xu et al. 2018)."""
    return f1(labels, point_adjust(labels, predicted))


def best_point_adjusted_f1(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """The best point-adjusted F1 over thresholds at the scores' quantiles, and that threshold."""
    label, score = _labels_scores(labels, scores)
    best = (0.0, float(score.max()))
    for threshold in np.unique(np.quantile(score, np.linspace(0.5, 0.999, 200))):
        value = point_adjusted_f1(label, score >= threshold)
        if value > best[0]:
            best = (value, float(threshold))
    return best


def auc_pr(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the precision-recall curve (average precision, no interpolation)."""
    label, score = _labels_scores(labels, scores)
    order = np.argsort(-score, kind="stable")
    ranked, ranked_scores = label[order], score[order]
    # one point per distinct score: tied points enter together
    last_of_tie = np.r_[ranked_scores[1:] != ranked_scores[:-1], True]
    true_positives = np.cumsum(ranked)[last_of_tie]
    flagged = (np.arange(1, label.size + 1))[last_of_tie]
    precision = true_positives / flagged
    recall = true_positives / label.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ucr_hit(labels: ArrayLike, scores: ArrayLike, slack: int = 0) -> bool:
    """The UCR anomaly archive's test: the top-scored point lies in a labelled region.

    The archive (Wu & Keogh 2021) scores a detector by one location per series; its authors
    also accept a location up to 100 points outside the region (``slack=100``).
    """
    label, score = _labels_scores(labels, scores)
    top = int(np.argmax(score))
    return any(start - slack <= top < end + slack for start, end in regions(label))
