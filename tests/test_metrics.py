"""lstmkit.tasks.metrics against independent references (scikit-learn, plain loops)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from lstmkit.tasks import metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(1)
    y_true = rng.uniform(1, 10, size=50)
    return y_true, y_true + rng.normal(size=50)


def test_point_errors_match_scikit_learn(pair):
    y_true, y_pred = pair
    assert metrics.mae(y_true, y_pred) == pytest.approx(sk.mean_absolute_error(y_true, y_pred))
    assert metrics.rmse(y_true, y_pred) == pytest.approx(
        np.sqrt(sk.mean_squared_error(y_true, y_pred))
    )
    assert metrics.mape(y_true, y_pred) == pytest.approx(
        100 * sk.mean_absolute_percentage_error(y_true, y_pred)
    )


def test_smape_and_mase_match_loops(pair):
    y_true, y_pred = pair
    pairs = zip(y_true, y_pred, strict=True)
    smape = 200 * np.mean([abs(a - b) / (abs(a) + abs(b)) for a, b in pairs])
    assert metrics.smape(y_true, y_pred) == pytest.approx(smape)
    train = np.random.default_rng(2).normal(size=40).cumsum()
    scale = np.mean([abs(train[t] - train[t - 4]) for t in range(4, 40)])
    expected = np.mean(np.abs(y_true - y_pred)) / scale
    assert metrics.mase(y_true, y_pred, train, season_length=4) == pytest.approx(expected)


def test_smape_of_two_zeros_is_zero():
    assert metrics.smape([0.0, 2.0], [0.0, 2.0]) == 0.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.mae([1, 2], [1]), "y_pred must have as many values"),
        (lambda: metrics.mae([], []), "at least one value"),
        (lambda: metrics.rmse([1, np.nan], [1, 2]), "finite"),
        (lambda: metrics.mape([0, 1], [1, 1]), "no zeros"),
        (lambda: metrics.mase([1], [1], [1, 2], season_length=2), "more than season_length"),
        (lambda: metrics.mase([1], [1], [3, 3, 3]), "constant"),
        (lambda: metrics.mase([1], [1], [1, 2, 3], season_length=0), "season_length"),
        (lambda: metrics.auc_pr([0, 0], [1, 2]), "at least one anomalous"),
        (lambda: metrics.auc_pr([0, 2], [1, 2]), "0 \\(normal\\) or 1"),
        (lambda: metrics.ucr_hit([0, 1], [1, 2, 3]), "scores must have as many"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_auc_pr_matches_average_precision_with_ties():
    rng = np.random.default_rng(3)
    labels = (rng.random(300) < 0.1).astype(int)
    scores = np.round(rng.random(300) + labels * 0.5, 1)  # rounding makes ties
    assert metrics.auc_pr(labels, scores) == pytest.approx(
        sk.average_precision_score(labels, scores)
    )


def _point_adjust_loop(labels, predicted):
    adjusted = list(predicted)
    t = 0
    while t < len(labels):
        if labels[t]:
            end = t
            while end < len(labels) and labels[end]:
                end += 1
            if any(predicted[t:end]):
                adjusted[t:end] = [True] * (end - t)
            t = end
        else:
            t += 1
    return np.array(adjusted, dtype=bool)


def test_point_adjusted_f1_matches_a_loop():
    rng = np.random.default_rng(4)
    labels = np.zeros(200, dtype=int)
    labels[20:40] = labels[100:103] = labels[150:190] = 1
    predicted = rng.random(200) < 0.05
    adjusted = _point_adjust_loop(labels, predicted)
    assert np.array_equal(metrics.point_adjust(labels, predicted), adjusted)
    assert metrics.point_adjusted_f1(labels, predicted) == pytest.approx(
        sk.f1_score(labels, adjusted)
    )
    best, threshold = metrics.best_point_adjusted_f1(labels, rng.random(200) + labels)
    assert 0 < best <= 1 and np.isfinite(threshold)


def test_regions_and_ucr_hit():
    labels = np.zeros(1000, dtype=int)
    labels[500:520] = 1
    assert metrics.regions(labels) == [(500, 520)]
    assert metrics.regions(np.ones(3)) == [(0, 3)]
    scores = np.zeros(1000)
    scores[510] = 1
    assert metrics.ucr_hit(labels, scores)
    scores[510], scores[560] = 0, 1
    assert not metrics.ucr_hit(labels, scores)
    assert metrics.ucr_hit(labels, scores, slack=100)
