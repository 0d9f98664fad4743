"""lstmkit.tasks.classification: SequenceClassifier's methods on tiny data, variable lengths
that match each series run alone, padding that changes nothing, save/load, bad input, and the
``classify`` command through a tiny Typer app."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

import lstmkit
from helpers import assert_close
from lstmkit.tasks.classification import (
    ClassifierNet,
    ClassifierNetConfig,
    MaskedBatchNorm,
    SequenceClassifier,
    as_sequences,
)

SMALL = {"hidden_size": 5, "filters": (4, 6, 4), "kernel_sizes": (8, 5, 3), "batch_size": 8}


def easy_data(n: int = 24, channels: int = 2, length: int = 12, seed: int = 0):
    """Labels "up" / "down" from the sign of channel 0's slope, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.array(["down", "up"])[np.arange(n) % 2]
    slope = np.where(labels == "up", 1.0, -1.0)[:, None] * np.linspace(-1, 1, length)
    x = rng.normal(0, 0.3, (n, channels, length))
    x[:, 0] += slope
    return x, labels


def ragged_data(n: int = 10, channels: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(channels, int(t))) for t in rng.integers(2, 15, n)]
    return x, np.arange(n) % 3


@pytest.fixture(scope="module")
def fitted() -> SequenceClassifier:
    x, y = easy_data()
    return SequenceClassifier(epochs=3, seed=0, validation_fraction=0.25, **SMALL).fit(x, y)


def test_fit_predict_proba_score_classes(fitted):
    x, y = easy_data(n=10, seed=5)
    assert fitted.classes_.tolist() == ["down", "up"]
    proba = fitted.predict_proba(x)
    assert proba.shape == (10, 2)
    assert_close("sum", torch.ones(10, dtype=torch.float64), torch.from_numpy(proba.sum(1)))
    predicted = fitted.predict(x)
    assert (predicted == fitted.classes_[proba.argmax(1)]).all()
    assert fitted.score(x, y) == pytest.approx(np.mean(predicted == y))
    assert len(fitted.history_) == 3 and {"loss", "val_loss", "val_accuracy"} <= set(
        fitted.history_[0]
    )


@pytest.mark.parametrize("arch", ["lstm-fcn", "lstm"])
def test_fit_learns_an_easy_task(arch):
    x, y = easy_data(n=32)
    model = SequenceClassifier(
        arch, epochs=25, seed=0, validation_fraction=0, lstm_dropout=0.0, learning_rate=0.01,
        **SMALL,
    ).fit(x, y)  # fmt: skip
    x_test, y_test = easy_data(n=40, seed=9)
    assert model.score(x_test, y_test) >= 0.9


def test_early_stopping_keeps_the_best_validation_epoch():
    x, y = easy_data(n=30)
    model = SequenceClassifier(epochs=30, patience=2, seed=0, **SMALL).fit(x, y)
    losses = [r["val_loss"] for r in model.history_]
    assert model.validation_loss_ == min(losses)
    assert model.best_epoch_ == int(np.argmin(losses))
    assert len(losses) <= model.best_epoch_ + 3  # stopped after 2 epochs without progress


def test_without_validation_the_lowest_training_loss_epoch_is_kept():
    x, y = easy_data(n=30)
    options = dict(validation_fraction=0, seed=0, learning_rate=0.2, **SMALL)
    model = SequenceClassifier(epochs=12, **options).fit(x, y)
    losses = [r["loss"] for r in model.history_]
    assert len(losses) == 12 and model.best_epoch_ == int(np.argmin(losses))
    assert model.best_epoch_ < 11, "pick a setting whose last epoch is not its best"
    assert np.isnan(model.validation_loss_) and np.isnan(model.validation_accuracy_)
    # the same run stopped right after that epoch holds the same weights
    shorter = SequenceClassifier(epochs=model.best_epoch_ + 1, **options).fit(x, y)
    assert np.array_equal(model.predict_proba(x), shorter.predict_proba(x))


def test_standardisation_is_fitted_per_channel_on_train():
    x, y = ragged_data()
    model = SequenceClassifier(epochs=1, validation_fraction=0, seed=0, **SMALL).fit(x, y)
    steps = np.concatenate(x, axis=1)  # [C, all real steps]
    assert_close("mean", torch.from_numpy(steps.mean(1)).float(), model.net_.mean)
    assert_close("scale", torch.from_numpy(steps.std(1)).float(), model.net_.scale)


def test_seed_repeats_and_leaves_the_global_generator_alone():
    x, y = easy_data()
    state = torch.get_rng_state()
    first = SequenceClassifier(epochs=2, seed=3, **SMALL).fit(x, y).predict_proba(x)
    assert torch.equal(state, torch.get_rng_state())
    second = SequenceClassifier(epochs=2, seed=3, **SMALL).fit(x, y).predict_proba(x)
    assert np.array_equal(first, second)


@pytest.mark.parametrize(
    "arch, options",
    [("lstm-fcn", {}), ("lstm", {"bidirectional": True, "num_layers": 2}), ("lstm", {})],
    ids=["lstm-fcn", "bilstm-2layers", "lstm"],
)
def test_variable_lengths_match_each_series_alone(arch, options):
    x, y = ragged_data()
    model = SequenceClassifier(arch, epochs=2, seed=0, **{**SMALL, **options}).fit(x, y)
    assert not model.net_.config.dimension_shuffle
    together = model.predict_proba(x)
    for i, series in enumerate(x):
        alone = model.predict_proba([series])
        # the network computes in float32: compare at float32's tolerance
        expected, actual = (torch.from_numpy(p).float() for p in (alone[0], together[i]))
        assert_close(f"series {i}", expected, actual)


@pytest.mark.parametrize("arch", ["lstm-fcn", "lstm"])
@pytest.mark.parametrize("train", [True, False], ids=["train-mode", "eval-mode"])
def test_padded_steps_change_neither_outputs_nor_gradients(arch, train):
    config = ClassifierNetConfig(
        channels=3, classes=4, arch=arch, hidden_size=5, lstm_dropout=0.0, filters=(4, 6, 4),
        bidirectional=True,
    )  # fmt: skip
    net = ClassifierNet(config).train(train)
    lengths = torch.tensor([9, 4, 1, 7])
    padding = torch.arange(9) >= lengths[:, None]  # [B, T]
    x = torch.randn(4, 3, 9)
    clean = x.masked_fill(padding[:, None], 0.0)
    garbage = x.masked_fill(padding[:, None], 1e3) + torch.randn_like(x) * padding[:, None]
    results = []
    for inputs in (clean, garbage):
        logits = net(inputs, lengths)
        upstream = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
        grads = torch.autograd.grad(logits, list(net.parameters()), upstream)
        results.append((logits, grads))
    assert_close("logits", results[0][0], results[1][0])
    for (name, _), a, b in zip(net.named_parameters(), results[0][1], results[1][1], strict=True):
        assert_close(f"grad {name}", a, b)


def test_masked_batchnorm_normalises_with_real_steps_only():
    norm = MaskedBatchNorm(3, momentum=0.5)
    x = torch.randn(4, 3, 9, dtype=torch.float64)
    norm.double()
    mask = torch.arange(9) < torch.tensor([9, 4, 1, 7])[:, None]  # [B, T]
    out = norm(x, mask)  # train mode: batch statistics
    real = x.transpose(1, 2)[mask]  # [N, C]
    mean, var = real.mean(0), real.var(0, unbiased=False)
    expected = ((x - mean[:, None]) / (var[:, None] + norm.eps).sqrt()) * mask[:, None]
    assert_close("output", expected, out)
    assert_close("running_mean", 0.5 * mean, norm.running_mean)
    assert_close("running_var", 0.5 + 0.5 * real.var(0, unbiased=True), norm.running_var)


def test_pandas_layouts_match_numpy_and_lists(fitted):
    x, _ = easy_data(n=6, channels=1, seed=4)
    univariate = SequenceClassifier(epochs=1, seed=0, **SMALL).fit(*easy_data(channels=1))
    wide = pd.DataFrame(x[:, 0, :])
    assert np.array_equal(univariate.predict_proba(wide), univariate.predict_proba(x))
    x2, _ = easy_data(n=5, seed=6)
    rows = [
        {"series": f"s{i}", "time": t, "a": x2[i, 0, t], "b": x2[i, 1, t]}
        for i in range(5)
        for t in reversed(range(12))  # out of time order on purpose
    ]
    long = pd.DataFrame(rows).set_index(["series", "time"])
    assert np.array_equal(fitted.predict_proba(long), fitted.predict_proba(x2))
    assert np.array_equal(fitted.predict_proba(list(x2)), fitted.predict_proba(x2))


def test_as_sequences_pads_and_reports_lengths():
    x, _ = ragged_data(n=4)
    padded, lengths = as_sequences(x)
    assert padded.shape == (4, 3, max(a.shape[1] for a in x))
    for i, series in enumerate(x):
        assert lengths[i] == series.shape[1]
        assert np.array_equal(padded[i, :, : lengths[i]], series.astype(np.float32))
        assert not padded[i, :, lengths[i] :].any()


@pytest.mark.parametrize("variant", ["peephole", "cifg", "gru", "fgr"])
def test_any_variant_is_the_cell(variant):
    x, y = easy_data(n=8)
    model = SequenceClassifier(variant=variant, epochs=1, seed=0, **SMALL).fit(x, y)
    assert model.predict_proba(x).shape == (8, 2)
    kind = lstmkit.GRU if variant == "gru" else lstmkit.LSTM
    assert isinstance(model.net_.rnn, kind)


@pytest.mark.parametrize("arch", ["lstm-fcn", "lstm"])
def test_save_load_round_trip(tmp_path, arch):
    x, y = ragged_data()
    model = SequenceClassifier(arch, epochs=2, seed=0, **SMALL).fit(x, y)
    path = model.save(tmp_path / "classifier.safetensors")
    loaded = SequenceClassifier.load(path)
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert np.array_equal(lstmkit.load(path).predict_proba(x), model.predict_proba(x))
    assert loaded.classes_.tolist() == model.classes_.tolist()
    assert loaded.get_params() == model.get_params()
    assert loaded.net_.config == model.net_.config
    assert loaded.validation_accuracy_ == model.validation_accuracy_
    assert [p.name for p in tmp_path.iterdir()] == ["classifier.safetensors"]  # no temporaries


def test_load_rejects_other_lstmkit_files(tmp_path):
    path = lstmkit.save(lstmkit.LSTM(2, 3), tmp_path / "lstm.safetensors")
    with pytest.raises(ValueError, match="not a SequenceClassifier"):
        SequenceClassifier.load(path)


BAD_X = [
    (np.zeros((4, 12)), ValueError, r"\[n, channels, length\].*X\[:, None, :\]"),
    (np.zeros((4, 2, 12, 1)), ValueError, r"got an array of shape \(4, 2, 12, 1\)"),
    (np.zeros((0, 2, 12)), ValueError, "at least one series"),
    ([], ValueError, "at least one series"),
    ([np.zeros(12)], ValueError, r"X\[0\] must be a \[channels, length\] array"),
    ([np.zeros((2, 5)), np.zeros((3, 5))], ValueError, "same channels"),
    ([np.zeros((2, 5)), np.zeros((2, 0))], ValueError, "series 1 has 0"),
    (np.full((4, 2, 12), np.nan), ValueError, "series 0 holds NaN"),
    (np.array([[["a"]]]), TypeError, "X must hold numbers"),
    (pd.Series([1.0, 2.0]), TypeError, "got a pandas Series"),
]


@pytest.mark.parametrize("bad, error, message", BAD_X)
def test_bad_X_is_named_in_fit_and_predict(fitted, bad, error, message):
    with pytest.raises(error, match=message):
        fitted.predict(bad)
    with pytest.raises(error, match=message):
        SequenceClassifier(**SMALL).fit(bad, np.arange(len(bad)) % 2)


def test_bad_labels_and_channel_counts(fitted):
    x, y = easy_data(n=6)
    with pytest.raises(ValueError, match="labels unseen at fit: \\['sideways'\\]"):
        fitted.score(x, np.array(["up", "down", "sideways", "up", "up", "up"]))
    with pytest.raises(ValueError, match="one label per series: 6, got 5"):
        fitted.score(x, y[:5])
    with pytest.raises(ValueError, match="X must have 2 channels \\(as at fit\\), got 3"):
        fitted.predict(np.zeros((2, 3, 12)))
    with pytest.raises(ValueError, match="one label per series: 6, got 4"):
        SequenceClassifier(**SMALL).fit(x, y[:4])
    with pytest.raises(ValueError, match="y holds NaN"):
        SequenceClassifier(**SMALL).fit(x, np.array([0, 1, np.nan, 0, 1, 0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        SequenceClassifier(**SMALL).fit(x, np.zeros(6))
    with pytest.raises(ValueError, match="y must be a 1-D"):
        SequenceClassifier(**SMALL).fit(x, np.zeros((6, 1)))


def test_shuffle_needs_one_length():
    x, y = easy_data(n=8)
    model = SequenceClassifier(epochs=1, seed=0, **SMALL).fit(x, y)
    assert model.net_.config.dimension_shuffle
    with pytest.raises(ValueError, match="series of length 12 \\(as at fit"):
        model.predict(x[:, :, :10])
    with pytest.raises(ValueError, match="dimension_shuffle=True needs"):
        SequenceClassifier(dimension_shuffle=True, **SMALL).fit(*ragged_data())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"arch": "fcn"}, "arch must be"),
        ({"variant": "nope"}, "variant must be one of"),
        ({"epochs": 0}, "epochs must be an int >= 1"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
        ({"filters": (4, 4)}, "filters and kernel_sizes"),
    ],
)
def test_bad_settings_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        SequenceClassifier(**options).fit(*easy_data(n=6))


def test_not_fitted():
    with pytest.raises(ValueError, match="not fitted yet"):
        SequenceClassifier().predict(np.zeros((1, 1, 5)))


# ------------------------------------------------------------------ the classify command
def classify_app() -> typer.Typer:
    from lstmkit.cli.classify import classify

    app = typer.Typer(add_completion=False)
    app.command()(classify)
    app.command("other")(lambda: None)  # two commands: the command name stays on the line
    return app


def test_classify_command_writes_results(tmp_path, monkeypatch):
    from lstmkit.cli import classify as command

    tiny = {"train": easy_data(n=12, channels=1), "test": easy_data(n=8, channels=1, seed=3)}
    monkeypatch.setattr(command, "load_dataset", lambda name, split: tiny[split])
    result = CliRunner().invoke(classify_app(), [
        "classify", "--dataset", "GunPoint", "--variant", "standard", "--variant", "cifg",
        "--seeds", "2", "--epochs", "1", "--hidden-size", "4", "--baseline", "none",
        "--output-dir", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["ours"]) == {"standard", "cifg"}
    runs = results["ours"]["cifg"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    accuracies = [r["test_accuracy"] for r in runs]
    assert results["ours"]["cifg"]["test_accuracy"] == pytest.approx(np.mean(accuracies))
    assert results["ours"]["cifg"]["test_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert results["anchors"]["HIVE-COTE 2"] == 1.0
    assert "HIVE-COTE 2" in result.output
    loaded = SequenceClassifier.load(tmp_path / "out" / "lstm-fcn-cifg.safetensors")
    assert loaded.variant == "cifg"
    assert loaded.score(*tiny["test"]) == runs[0]["test_accuracy"]  # seed 0's model is saved


def test_classify_command_without_validation_marks_no_variant(tmp_path, monkeypatch):
    from lstmkit.cli import classify as command

    tiny = {"train": easy_data(n=12, channels=1), "test": easy_data(n=8, channels=1, seed=3)}
    monkeypatch.setattr(command, "load_dataset", lambda name, split: tiny[split])
    result = CliRunner().invoke(classify_app(), [
        "classify", "--variant", "standard", "--variant", "cifg", "--seeds", "2",
        "--epochs", "3", "--hidden-size", "4", "--baseline", "none",
        "--validation-fraction", "0", "--output-dir", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["best_variant_on_validation"] is None
    assert results["options"]["validation_fraction"] == 0
    summary = results["ours"]["standard"]
    assert [run["epochs_run"] for run in summary["runs"]] == [3, 3]
    assert math.isnan(summary["validation_accuracy"]) and math.isnan(summary["validation_loss"])
    accuracies = [run["test_accuracy"] for run in summary["runs"]]
    assert summary["test_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert "—" in result.output and "*" not in result.output


def test_sktime_lstm_fcn_baseline_trains_for_the_epochs_asked(tmp_path, monkeypatch):
    from sktime.classification.deep_learning.lstmfcn import LSTMFCNClassifierTorch

    from lstmkit.cli import classify as command

    epochs_seen = []
    original_fit = LSTMFCNClassifierTorch.fit

    def fit(self, x, y):
        epochs_seen.append(self.num_epochs)
        assert isinstance(x, np.ndarray) and x.ndim == 3  # ragged input padded to one length
        return original_fit(self, x, y)

    monkeypatch.setattr(LSTMFCNClassifierTorch, "fit", fit)
    x, y = easy_data(n=16, channels=2, length=10)
    ragged = [series[:, : 6 + k % 5] for k, series in enumerate(x)]
    data = {"train": (ragged[:10], y[:10]), "test": (ragged[10:], y[10:])}
    monkeypatch.setattr(command, "load_dataset", lambda name, split: data[split])
    result = CliRunner().invoke(classify_app(), [
        "classify", "--seeds", "2", "--epochs", "3", "--hidden-size", "4",
        "--baseline", "sktime-lstm-fcn", "--output-dir", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert epochs_seen == [3, 3]
    summary = json.loads((tmp_path / "out" / "results.json").read_text())["baselines"]
    runs = summary["sktime-lstm-fcn"]["runs"]
    assert [run["seed"] for run in runs] == [0, 1]
    assert all(0 <= run["test_accuracy"] <= 1 for run in runs)
    assert "sktime LSTM-FCN" in result.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--dataset", "Nope"], "dataset must be one of"),
        (["--baseline", "svm"], "baseline must be one of"),
    ],
)
def test_classify_command_names_bad_options(tmp_path, arguments, message):
    app = classify_app()
    result = CliRunner().invoke(app, ["classify", *arguments, "--output-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output


@pytest.mark.slow
def test_classify_command_on_real_data_with_baselines(tmp_path):
    pytest.importorskip("aeon")
    result = CliRunner().invoke(classify_app(), [
        "classify", "--dataset", "JapaneseVowels", "--seeds", "1", "--epochs", "1",
        "--hidden-size", "4", "--output-dir", str(tmp_path),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    baselines = json.loads((tmp_path / "results.json").read_text())["baselines"]
    assert baselines["1nn-dtw"]["test_accuracy"] > 0.8  # the padded MiniRocket input too
    assert baselines["minirocket"]["test_accuracy"] > 0.8
