"""The encoder-forecaster of Shi et al. (lstmkit.tasks.convlstm), the reproduction registry
(lstmkit.tasks.reproduce) and ``lstmkit reproduce``: shapes, Shi et al.'s parameter counts,
losses against their formulas, bad input, and a tiny end-to-end run through the CLI."""

from __future__ import annotations

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from helpers import assert_close
from lstmkit.cli.main import app
from lstmkit.tasks import convlstm as task
from lstmkit.tasks import reproduce
from lstmkit.tasks.convlstm import (
    EncoderForecaster,
    ForecasterConfig,
    Splits,
    TrainPlan,
    count_parameters,
    frame_loss,
    train_model,
)


def says(*parts: str) -> str:
    return ".*".join(re.escape(part) for part in parts)


@pytest.fixture(autouse=True)
def _reference_backend(monkeypatch):
    """The FC-LSTM runs on the reference loop here: no C++ build inside these tests (the
    fused engine is checked against the reference in tests/backends)."""
    monkeypatch.setenv("LSTMKIT_BACKEND", "reference")


@pytest.mark.parametrize(
    "config",
    [
        ForecasterConfig(hidden=(4, 3), frame_size=16, kernel_size=3, state_kernel_size=1),
        ForecasterConfig(cell="fc-lstm", hidden=(6,), frame_size=8, channels=2),
    ],
    ids=["convlstm", "fc-lstm"],
)
def test_shapes_and_predictions(config):
    model = EncoderForecaster(config)
    frames = torch.rand(3, 5, config.channels, config.frame_size, config.frame_size)
    logits = model(frames, future=4)
    assert logits.shape == (3, 4, config.channels, config.frame_size, config.frame_size)
    predicted = model.predict(frames, future=2)
    assert predicted.min() > 0 and predicted.max() < 1


def test_patches_round_trip():
    model = EncoderForecaster(ForecasterConfig(hidden=(2,), frame_size=8, patch_size=4))
    frames = torch.rand(2, 3, 1, 8, 8)
    patches = model._encode_frames(frames)
    assert patches.shape == (3, 2, 16, 2, 2)
    assert torch.equal(patches[1, 0, :, 0, 1], frames[0, 1, 0, 0:4, 4:8].flatten())
    assert torch.equal(model._decode_frames(patches), frames)


@pytest.mark.parametrize(
    ("hidden", "expected"),
    [((256,), 13_524_496), ((128, 128), 10_042_896), ((128, 64, 64), 7_585_296)],
)
def test_parameter_counts_equal_shi_et_al(hidden, expected):
    """Shi et al.'s Table 1 counts at their size (64x64 frames, 4x4 patches, 5x5 kernels):
    one bias per gate, per-channel peepholes, a forecaster without input, a 1x1 readout of
    every forecaster layer's state."""
    model = EncoderForecaster(ForecasterConfig(hidden=hidden, frame_size=64))
    assert count_parameters(model) == expected


def test_losses_follow_their_formulas():
    logits = torch.randn(2, 3, 1, 4, 4, dtype=torch.float64)
    targets = torch.rand_like(logits)
    p = torch.sigmoid(logits)
    cross_entropy = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    assert_close("cross_entropy", cross_entropy, frame_loss(logits, targets))
    assert_close("mse", (p - targets).square().mean(), frame_loss(logits, targets, "mse"))
    with pytest.raises(ValueError, match=says("loss must be 'cross_entropy' or 'mse'", "'l1'")):
        frame_loss(logits, targets, "l1")


def test_bad_configs_and_frames():
    with pytest.raises(ValueError, match=says("frame_size must be a multiple of", "(4)", "30")):
        EncoderForecaster(ForecasterConfig(frame_size=30))
    with pytest.raises(ValueError, match=says("cell must be", "'gru'")):
        EncoderForecaster(ForecasterConfig(cell="gru"))
    with pytest.raises(ValueError, match=says("hidden must name at least one layer")):
        EncoderForecaster(ForecasterConfig(hidden=()))
    model = EncoderForecaster(ForecasterConfig(hidden=(2,), frame_size=8))
    with pytest.raises(ValueError, match=says("frames must be [B, T, 1, 8, 8]", "(2, 3, 1, 4, 4)")):
        model(torch.rand(2, 3, 1, 4, 4))


def test_training_lowers_the_validation_loss():
    video = (torch.rand(24, 6, 1, 8, 8) > 0.7).to(torch.uint8) * 255
    splits = Splits(video[:16], video[16:], video[16:], inputs=3)
    model = EncoderForecaster(ForecasterConfig(hidden=(4,), frame_size=8, kernel_size=3))
    before = task.evaluate(model, splits.validation, 3)["ce_per_sequence"]
    logs = []
    result = train_model(
        model, splits, TrainPlan(steps=20, batch_size=8, eval_every=10), log=logs.append
    )
    assert len(result["history"]) == 2 and len(logs) == 2
    assert result["best_val"] < before
    assert task.evaluate(model, splits.validation, 3)["ce_per_sequence"] == result["best_val"]


# ---------------------------------------------------------------------- registry and CLI


def test_registry():
    assert reproduce.get("convlstm").module == "lstmkit.tasks.convlstm"
    with pytest.raises(ValueError, match=says("reproduction must be one of", "mean 'convlstm'")):
        reproduce.get("convlstn")
    with pytest.raises(ValueError, match=says("'convlstm' is already registered")):
        reproduce.register(reproduce.get("convlstm"))


def test_reproduce_help_lists_the_papers_with_examples():
    runner = CliRunner()
    listing = runner.invoke(app, ["reproduce", "--help"])
    assert listing.exit_code == 0 and "convlstm" in listing.output
    assert "Example: lstmkit reproduce" in listing.output
    help_text = runner.invoke(app, ["reproduce", "convlstm", "--help"], terminal_width=200)
    assert help_text.exit_code == 0
    assert "Example: lstmkit reproduce convlstm --quick" in help_text.output
    assert "--quick" in help_text.output and "3670.85" in help_text.output


def test_reproduce_end_to_end_tiny(tmp_path, monkeypatch):
    """The whole command at a toy size: a table, results.json/.md and the PNG strip."""
    tiny = task.Scale(train=16, validation=8, test=8, steps=2, eval_every=1)
    monkeypatch.setattr(task, "QUICK", tiny)
    monkeypatch.setattr(
        task,
        "_models",
        lambda width: {
            "ConvLSTM 1 layer": (ForecasterConfig(hidden=(2,), kernel_size=3), 1e-3),
            "FC-LSTM 2 layers": (ForecasterConfig(cell="fc-lstm", hidden=(3, 3)), 2e-3),
        },
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["reproduce", "convlstm", "--quick", "--output-dir", str(out)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "ConvLSTM 1 layer" in result.output and "wall time" in result.output
    saved = json.loads((out / "results.json").read_text())
    assert [row[0] for row in saved["rows"]] == [
        "ConvLSTM 1 layer",
        "FC-LSTM 2 layers",
        "mean intensity",
        "perfect",
    ]
    assert "| ConvLSTM 1 layer |" in (out / "results.md").read_text()
    assert (out / "convlstm_strip.png").read_bytes()[:4] == b"\x89PNG"
