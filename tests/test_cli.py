"""The ``lstmkit`` command (lstmkit/cli): help, ``variants``, and train -> evaluate -> predict
end to end on tiny runs in tmp_path; every user mistake exits with code 2 and one line that
starts with "error:" and says what is wrong (no traceback).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import save_file
from typer.testing import CliRunner

import lstmkit
from helpers import assert_close
from lstmkit.cli import main as cli_main
from lstmkit.cli.main import app
from lstmkit.io import read
from lstmkit.training import load_trained  # imports Lightning before any invoke captures stderr

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
COMMANDS = ["train", "evaluate", "predict", "variants"]

# tiny runs: a few batches of short sequences, one epoch, nothing but the run's own files
TINY = [
    "data.train_size=64",
    "data.val_size=32",
    "data.test_size=32",
    "data.batch_size=16",
    "data.length=10",
    "model.hidden_size=8",
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "trainer.logger=none",
]


def invoke(*args: str | Path):
    """Run ``lstmkit *args`` in-process. The CLI's console gets a fixed wide width: rich
    otherwise takes the width of whatever terminal pytest (or an xdist worker) inherited and
    folds long paths mid-word, and messages are compared whole."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_main, "console", Console(width=1000))
        return CliRunner(env={"COLUMNS": "250"}).invoke(app, [str(arg) for arg in args])


def sets(*overrides: str) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


def train(config: str, output_dir: Path, *overrides: str, options: tuple = ()):
    args = sets(f"trainer.output_dir={output_dir}", *TINY, *overrides)
    return invoke("train", CONFIGS / config, *args, *options)


def succeeded(result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.exception}"
    return result.output


def metrics(output: str) -> dict[str, str]:
    """The rows of the printed metric table, values as printed."""
    rows = re.findall(r"^│\s*(\w+)\s*│\s*(\S+)\s*│\s*$", output, flags=re.MULTILINE)
    assert rows, f"no metric table in:\n{output}"
    return dict(rows)


def assert_error(result, *parts: str) -> None:
    """Exit code 2, an "error:" line, each part in the message (wrapping ignored)."""
    text = " ".join(result.output.split())
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}\n{result.exception}"
    assert "error:" in text, text
    assert "Traceback" not in text, text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


@pytest.fixture(scope="module")
def adding(tmp_path_factory):
    """One tiny run of configs/adding.yaml (hidden_size 8), shared by the tests below."""
    output_dir = tmp_path_factory.mktemp("runs")
    output = succeeded(train("adding.yaml", output_dir))
    run = output_dir / "adding"
    return SimpleNamespace(
        output=output,
        model=run / "model.safetensors",
        last=run / "checkpoints" / "last.ckpt",
        metrics=metrics(output),
    )


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    """A tiny run of configs/echo.yaml (tokens in, one class per step, truncated BPTT)."""
    output_dir = tmp_path_factory.mktemp("runs")
    overrides = ["data.delay=3", "trainer.tbptt_steps=5", "model.embedding_dim=4"]
    succeeded(train("echo.yaml", output_dir, *overrides))
    return output_dir / "echo" / "model.safetensors"


# ---------------------------------------------------------------------- help


def test_help_lists_the_commands():
    output = succeeded(invoke("--help"))
    for command in COMMANDS:
        assert re.search(rf"^\W*{command}\s", output, flags=re.MULTILINE), command


def test_no_arguments_shows_the_help():
    result = invoke()
    assert "Usage" in result.output
    assert all(command in result.output for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_an_example(command):
    output = succeeded(invoke(command, "--help"))
    assert f"Example: lstmkit {command}" in output


def test_variants_lists_every_variant():
    output = succeeded(invoke("variants"))
    names = {
        cells[1].strip()
        for line in output.splitlines()
        if line.startswith("│") and (cells := line.split("│"))[1].strip()
    }
    assert names == {*lstmkit.variants(), "GRU"}


# ---------------------------------------------------------------------- train / evaluate


def test_train_writes_the_model_and_prints_test_metrics(adding):
    assert adding.model.is_file() and adding.last.is_file()
    assert f"model: {adding.model}" in " ".join(adding.output.split())
    assert set(adding.metrics) == {"loss", "mae"}
    net = lstmkit.load(adding.model)
    assert isinstance(net, lstmkit.SequenceNet)
    assert net.config.hidden_size == 8 and net.config.input_size == 2


@pytest.mark.parametrize("which", ["model", "last"], ids=["model.safetensors", "last.ckpt"])
def test_evaluate_prints_the_metrics_train_printed(which, adding, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = succeeded(invoke("evaluate", getattr(adding, which)))
    assert metrics(output) == adding.metrics
    assert list(tmp_path.iterdir()) == []  # evaluating writes no files


def test_resume_continues_the_same_model(adding, tmp_path):
    output_dir = tmp_path / "runs"
    resume = ("--resume", adding.last)
    result = train("adding.yaml", output_dir, "trainer.max_epochs=2", options=resume)
    assert set(metrics(succeeded(result))) == {"loss", "mae"}
    assert torch.load(output_dir / "adding/checkpoints/last.ckpt", weights_only=False)["epoch"] == 1


# ---------------------------------------------------------------------- predict


def run_net(model: Path, x: np.ndarray) -> torch.Tensor:
    """What the model computes for batch-first ``x`` (time-first out, as the net returns)."""
    net, _, _ = load_trained(model)
    with torch.no_grad():
        return net(torch.as_tensor(x).transpose(0, 1))[0]


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("sequence ", "next "))]


def test_predict_npy_prints_one_line_per_sequence_and_writes_outputs(adding, tmp_path):
    x = np.random.default_rng(0).random((3, 10, 2), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npy"
    lines = lines_of(
        succeeded(invoke("predict", adding.model, tmp_path / "x.npy", "--output", out))
    )
    saved = np.load(out)
    assert saved.shape == (3, 1)
    assert_close("predictions", run_net(adding.model, x), torch.from_numpy(saved))
    assert len(lines) == 3
    for b, line in enumerate(lines):
        prefix, _, values = line.partition(": ")
        assert prefix == f"sequence {b}"
        assert ast.literal_eval(values) == saved[b].tolist()


def test_predict_csv_is_one_sequence(adding, tmp_path):
    x = np.random.default_rng(1).random((7, 2))
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    out = tmp_path / "out.npy"
    lines = lines_of(
        succeeded(invoke("predict", adding.model, tmp_path / "x.csv", "--output", out))
    )
    assert len(lines) == 1 and lines[0].startswith("sequence 0: ")
    assert np.load(out).shape == (1, 1)
    expected = run_net(adding.model, x[None].astype(np.float32))
    assert_close("prediction", expected, torch.from_numpy(np.load(out)))


def test_predict_from_the_checkpoint_equals_the_model_file(adding, tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(2).random((2, 5, 2), dtype=np.float32))
    from_model = lines_of(succeeded(invoke("predict", adding.model, tmp_path / "x.npy")))
    from_checkpoint = lines_of(succeeded(invoke("predict", adding.last, tmp_path / "x.npy")))
    assert from_model == from_checkpoint and len(from_model) == 2


def test_predict_tokens_per_step(echo, tmp_path):
    B, T = 2, 9
    x = np.random.default_rng(0).integers(0, 8, size=(B, T))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npy"
    lines = lines_of(succeeded(invoke("predict", echo, tmp_path / "x.npy", "--output", out)))
    assert len(lines) == B
    logits = run_net(echo, x)  # [T, B, 8]
    for b, line in enumerate(lines):
        prefix, _, values = line.partition(": ")
        assert prefix == f"sequence {b}"
        assert ast.literal_eval(values) == logits[:, b].argmax(-1).tolist()
    assert sorted(np.load(out).shape) == sorted((B, T, 8))


def test_predict_output_is_batch_first_like_the_input(echo, tmp_path):
    B, T = 2, 9
    np.save(tmp_path / "x.npy", np.zeros((B, T), dtype=np.int64))
    out = tmp_path / "out.npy"
    succeeded(invoke("predict", echo, tmp_path / "x.npy", "--output", out))
    assert np.load(out).shape == (B, T, 8)


def test_language_model_predicts_the_next_character_of_a_txt(tmp_path):
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "cells"]
    rng = np.random.default_rng(0)
    corpus = "\n".join(" ".join(rng.choice(words, 8)) for _ in range(60))
    (tmp_path / "corpus.txt").write_text(corpus, encoding="utf-8")
    output_dir = tmp_path / "runs"
    args = sets(
        f"trainer.output_dir={output_dir}",
        f"data.path={tmp_path / 'corpus.txt'}",  # split 90/5/5 by the config's sizes
        "data.batch_size=4",
        "data.length=12",
        "model.hidden_size=8",
        "model.embedding_dim=4",
        "trainer.tbptt_steps=6",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "trainer.logger=none",
    )
    assert set(metrics(succeeded(invoke("train", CONFIGS / "language_model.toml", *args)))) == {
        "loss",
        "accuracy",
        "bits_per_char",
    }
    model = output_dir / "language_model" / "model.safetensors"
    text = "the lazy fox"
    (tmp_path / "prompt.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "out.npy"
    lines = lines_of(succeeded(invoke("predict", model, tmp_path / "prompt.txt", "--output", out)))
    assert len(lines) == 1 and lines[0].startswith("next characters: ")
    predicted = ast.literal_eval(lines[0].removeprefix("next characters: "))
    assert len(predicted) == len(text) and set(predicted) <= set(corpus)
    assert sorted(np.load(out).shape) == sorted((len(text), 1, len(set(corpus))))

    (tmp_path / "unknown.txt").write_text("the §", encoding="utf-8")
    assert_error(invoke("predict", model, tmp_path / "unknown.txt"), "characters", "§")


def test_text_too_short_for_its_splits(tmp_path):
    (tmp_path / "corpus.txt").write_text("abc def ghi\n" * 40, encoding="utf-8")  # 480 chars
    # val and test get 5% each: 24 characters, 3 per stream, fewer than data.length + 1
    args = sets(
        f"trainer.output_dir={tmp_path / 'runs'}",
        f"data.path={tmp_path / 'corpus.txt'}",
        "data.batch_size=8",
        "data.length=16",
        "model.hidden_size=4",
        "model.embedding_dim=2",
        "trainer.tbptt_steps=0",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "trainer.logger=none",
    )
    assert_error(invoke("train", CONFIGS / "language_model.toml", *args), "data.length")


# ---------------------------------------------------------------------- errors


def test_unknown_config_key(tmp_path):
    result = train("adding.yaml", tmp_path, "optim.lrr=0.1")
    assert_error(result, "unknown config key 'optim.lrr'", "valid keys")
    assert list(tmp_path.iterdir()) == []


def test_wrong_type_in_an_override(tmp_path):
    assert_error(train("adding.yaml", tmp_path, "model.hidden_size=big"), "model.hidden_size")


def test_unknown_variant_names_the_closest(tmp_path):
    result = train("adding.yaml", tmp_path, "model.variant=peephol")
    assert_error(result, "variant", "'peephol'", "did you mean 'peephole'")


def test_malformed_set(tmp_path):
    result = invoke("train", CONFIGS / "adding.yaml", "--set", "optim.lr")
    assert_error(result, "--set must be key=value", "'optim.lr'")


def test_missing_config_file(tmp_path):
    path = tmp_path / "absent.yaml"
    assert_error(invoke("train", path), str(path), "does not exist")


def test_evaluate_missing_file(tmp_path):
    path = tmp_path / "absent.safetensors"
    assert_error(invoke("evaluate", path), str(path), "does not exist")


def test_evaluate_missing_checkpoint(tmp_path):
    path = tmp_path / "absent.ckpt"
    assert_error(invoke("evaluate", path), str(path), "does not exist")


def test_evaluate_corrupt_model_file(adding, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(adding.model.read_bytes()[:100])
    assert_error(invoke("evaluate", path), str(path), "corrupt or truncated")


def test_evaluate_corrupt_checkpoint(adding, tmp_path):
    path = tmp_path / "last.ckpt"
    data = adding.last.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_error(invoke("evaluate", path), str(path), "not a readable lstmkit training checkpoint")


def test_evaluate_model_saved_without_a_training_config(tmp_path):
    path = lstmkit.save(lstmkit.LSTM(2, 4), tmp_path / "plain.safetensors")
    assert_error(invoke("evaluate", path), "not the config it was trained with")


def test_evaluate_model_whose_weights_do_not_fit(adding, tmp_path):
    config, tensors, extra = read(adding.model)
    tensors["head.weight"] = torch.zeros(1, 9)
    path = tmp_path / "model.safetensors"
    metadata = {"lstmkit_config": json.dumps(config)}
    metadata["lstmkit_extra"] = json.dumps(extra)
    save_file(tensors, str(path), metadata=metadata)
    assert_error(invoke("evaluate", path), str(path), "head.weight")


def test_predict_wrong_feature_count(adding, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 5, 3), dtype=np.float32))
    result = invoke("predict", adding.model, tmp_path / "x.npy")
    assert_error(result, "input must have 2 features per step, got 3")


def test_predict_wrong_rank(adding, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 2, 5, 2), dtype=np.float32))
    result = invoke("predict", adding.model, tmp_path / "x.npy")
    assert_error(result, "[T, D] or [B, T, D]", "(2, 2, 5, 2)")


def test_predict_txt_on_a_feature_model(adding, tmp_path):
    (tmp_path / "x.txt").write_text("hello", encoding="utf-8")
    assert_error(invoke("predict", adding.model, tmp_path / "x.txt"), "needs a character model")


def test_predict_unsupported_suffix(adding, tmp_path):
    (tmp_path / "x.json").write_text("[]", encoding="utf-8")
    assert_error(invoke("predict", adding.model, tmp_path / "x.json"), ".npy, .csv or .txt")


def test_predict_missing_input(adding, tmp_path):
    path = tmp_path / "absent.npy"
    assert_error(invoke("predict", adding.model, path), str(path), "does not exist")


def test_resume_from_another_model(adding, tmp_path):
    output_dir = tmp_path / "runs"
    resume = ("--resume", adding.last)
    result = train("adding.yaml", output_dir, "model.hidden_size=16", options=resume)
    trained, built = "'hidden_size': 8", "'hidden_size': 16"
    assert_error(result, str(adding.last), "from another model", trained, built)
    assert not output_dir.exists()  # refused before anything was written


def test_resume_from_a_missing_checkpoint(tmp_path):
    path = tmp_path / "absent.ckpt"
    result = train("adding.yaml", tmp_path / "runs", options=("--resume", path))
    assert_error(result, str(path), "does not exist")


def test_resume_from_a_model_file_is_refused(adding, tmp_path):
    copy = tmp_path / "model.ckpt"
    shutil.copyfile(adding.model, copy)
    result = train("adding.yaml", tmp_path / "runs", options=("--resume", copy))
    assert_error(result, str(copy), "cannot be read")
