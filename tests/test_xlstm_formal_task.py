"""The xLSTM synthetic reproductions (lstmkit.tasks.papers.xlstm_formal): the models' shapes,
the last-step head, and both reproductions end to end at a tiny size through the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from helpers import assert_close
from lstmkit.cli.main import app
from lstmkit.data.formal_languages import TASKS
from lstmkit.tasks import reproduce
from lstmkit.tasks.papers import xlstm_formal as task
from lstmkit.tasks.papers.xlstm_formal import MODELS, Plan, SequenceModel, train_formal


@pytest.fixture(autouse=True)
def _reference_backend(monkeypatch):
    """The LSTM runs on the reference loop here: no C++ build inside these tests."""
    monkeypatch.setenv("LSTMKIT_BACKEND", "reference")


@pytest.mark.parametrize("kind", MODELS)
def test_models_classify_from_the_last_step(kind):
    model = SequenceModel(kind, vocab_size=8, num_classes=5, width=8)
    tokens = torch.randint(0, 8, (3, 11))
    every = model(tokens)
    assert every.shape == (3, 11, 5)
    assert_close("last step", every[:, -1], model.classify_last(tokens))
    # causal: the last step's logits of a prefix do not see the steps after it
    assert_close("prefix", every[:, 6], model.classify_last(tokens[:, :7]), atol=1e-5)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        SequenceModel("GRU", 8, 5, 8)


@pytest.mark.parametrize("every_step", [False, True])
def test_training_lowers_the_loss_on_short_parity(every_step):
    """A few steps on lengths 2..3 of parity: the loss falls from ~log 2."""
    torch.manual_seed(0)
    model = SequenceModel("LSTM", 2, 2, width=16)
    plan = Plan(steps=150, batch_size=32, lr=1e-2, warmup=1, weight_decay=0.0)
    trained = train_formal(
        model, TASKS["parity"], plan, (2, 3), torch.Generator().manual_seed(0), every_step
    )
    assert trained["final_loss"] < 0.3


def _tiny(monkeypatch):
    monkeypatch.setattr(
        task,
        "FORMAL_QUICK",
        replace(
            task.FORMAL_QUICK,
            width=8,
            steps=2,
            batch_size=4,
            test_lengths=(40, 41),
            test_batch=3,
            check_lengths=(5,),
            tasks=("parity", "modular_arithmetic"),
        ),
    )
    monkeypatch.setattr(
        task,
        "MQAR_QUICK",
        replace(
            task.MQAR_QUICK,
            width=8,
            steps=2,
            batch_size=4,
            vocab_size=17,
            test_size=5,
            settings=((12, 2),),
        ),
    )


def test_formal_reproduction_end_to_end(monkeypatch, tmp_path):
    _tiny(monkeypatch)
    result = CliRunner().invoke(
        app, ["reproduce", "xlstm-formal", "--quick", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "results.json").read_text())
    models = [row[0] for row in saved["rows"]]
    for kind in ("LSTM", "sLSTM", "xLSTM[1:1]"):
        assert f"{kind} (published)" in models and f"{kind} (lstmkit)" in models
    assert "Transformer (published)" in models
    ours = next(row for row in saved["rows"] if row[0] == "sLSTM (lstmkit)")
    columns = saved["columns"]
    assert ours[columns.index("cycle nav")] == "-"  # not run in this tiny run
    assert -100 <= ours[columns.index("parity")] <= 100
    assert (
        "| sLSTM (published) | 32.5 | 100 | 27.7 | 100 | Walker |"
        in (tmp_path / "results.md").read_text()
    )
    details = json.loads((tmp_path / "details.json").read_text())
    run = details["runs"]["LSTM / modular_arithmetic"]
    assert 0 <= run["test_accuracy"] <= 1
    expected = 100 * (run["test_accuracy"] - 0.2) / 0.8
    assert run["test_scaled"] == pytest.approx(expected)


def test_mqar_reproduction_end_to_end(monkeypatch, tmp_path):
    _tiny(monkeypatch)
    result = reproduce.run("xlstm-mqar", quick=True, output_dir=tmp_path)
    assert [row[0] for row in result.rows] == ["LSTM", "mLSTM"]
    assert all(0 <= row[4] <= 100 for row in result.rows)
    assert (tmp_path / "results.md").read_text().startswith("# Multi-Query")
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == result.rows
