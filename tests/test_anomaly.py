"""lstmkit.tasks.anomaly.AnomalyDetector on tiny data: every public method, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import lstmkit
from lstmkit.tasks.anomaly import AnomalyDetector, dynamic_threshold
from lstmkit.tasks.metrics import regions

TINY = {"window": 16, "hidden_size": 8, "latent_size": 4, "max_steps": 10, "batch_size": 16}


def wave(n: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] + np.arange(channels)[None, :] * 3
    return (np.sin(2 * np.pi * t / 20) + 0.05 * rng.normal(size=(n, channels))).squeeze()


@pytest.fixture(scope="module", params=["forecast", "autoencoder"])
def detector(request) -> AnomalyDetector:
    return AnomalyDetector(scorer=request.param, **TINY).fit(wave(300))


def test_score_and_detect_cover_every_point(detector):
    series = wave(200, seed=1)
    scores = detector.score(series)
    flags = detector.detect(series)
    assert scores.shape == (200,) and flags.shape == (200,) and flags.dtype == bool
    assert np.isfinite(scores).all() and (scores >= 0).all()


def test_save_load_round_trip(detector, tmp_path):
    loaded = AnomalyDetector.load(detector.save(tmp_path / "detector.safetensors"))
    assert type(lstmkit.load(tmp_path / "detector.safetensors")) is AnomalyDetector
    series = wave(120, seed=2)
    assert np.array_equal(loaded.score(series), detector.score(series))
    assert loaded.config == detector.config


def test_plot_writes_a_png(detector, tmp_path):
    labels = np.zeros(120, dtype=int)
    labels[50:60] = 1
    path = detector.plot(tmp_path / "anomalies.png", wave(120), labels=labels)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_channels():
    detector = AnomalyDetector(**TINY).fit(wave(200, channels=2))
    assert detector.score(wave(100, channels=2)).shape == (100,)
    with pytest.raises(ValueError, match="must have 2 channel"):
        detector.score(wave(100))


def test_dynamic_threshold_flags_the_bump_and_prunes_a_small_one():
    rng = np.random.default_rng(0)
    scores = np.abs(rng.normal(size=2000)) * 0.1
    scores[1000:1010] += 5.0
    scores[500:503] += 0.75  # above the threshold, but close to the normal scores' peak
    flags = dynamic_threshold(scores)
    assert regions(flags) == [(1000, 1010)]
    assert not dynamic_threshold(np.ones(50)).any()


def test_dynamic_threshold_keeps_every_clear_run():
    scores = np.full(1000, 0.1)
    scores[::7] = 0.12
    scores[200:205] = 5.0
    scores[700:705] = 5.5  # close peaks: pruning keeps both, as the drop after them is large
    assert regions(dynamic_threshold(scores)) == [(200, 205), (700, 705)]


@pytest.mark.parametrize(
    "series, error, message",
    [
        (np.zeros((10, 2, 2)), ValueError, "got 3 dimensions"),
        (np.r_[wave(50), np.nan], ValueError, "no NaNs"),
        (wave(10), ValueError, "at least window \\+ 1 = 17 points"),
        ("text", TypeError, "must be an array"),
    ],
    ids=["rank", "nan", "short", "type"],
)
def test_bad_input_is_named(series, error, message):
    with pytest.raises(error, match=message):
        AnomalyDetector(**TINY).fit(series)


def test_bad_settings_and_calls():
    with pytest.raises(ValueError, match="scorer must be one of"):
        AnomalyDetector(scorer="pca")
    with pytest.raises(ValueError, match="smoothing"):
        AnomalyDetector(smoothing=0)
    with pytest.raises(ValueError, match="z_range"):
        AnomalyDetector(z_range=(3, 2))
    with pytest.raises(RuntimeError, match="not fitted"):
        AnomalyDetector().score(wave(100))


@pytest.mark.slow
@pytest.mark.parametrize("scorer", ["forecast", "autoencoder"])
def test_finds_a_change_of_shape_a_threshold_on_values_misses(scorer):
    """A flat stretch stays inside the normal value range: only a model of the shape sees it."""
    detector = AnomalyDetector(scorer=scorer, window=32, max_steps=300).fit(wave(1500))
    series = wave(1000, seed=3)
    series[600:640] = series[600]  # flat at an ordinary value
    scores = detector.score(series)
    assert 590 <= int(np.argmax(scores)) < 680
