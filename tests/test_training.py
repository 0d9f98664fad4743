"""Training: every task shape learns, TBPTT is exact, resuming is bitwise, DDP = one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import lstmkit
from helpers import assert_close
from lstmkit.training import PerStepTask, load_config, train
from lstmkit.training.tbptt import chunks, detach_state, run_chunk

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = ["trainer.progress_bar=false", "trainer.logger=none"]


class LossRecorder(pl.Callback):
    """The training loss of every step, as the LightningModule returned it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))  # what training_step returned


def config(name: str, tmp_path: Path, *overrides: str):
    return load_config(CONFIGS / name, [f"trainer.output_dir={tmp_path}", *QUIET, *overrides])


SHAPES = {
    "sequence": ("adding.yaml", ["data.train_size=512", "data.length=10", "trainer.max_epochs=3"]),
    "per_step": ("echo.yaml", ["data.train_size=256", "data.length=16", "trainer.max_epochs=3"]),
    "language_model": (
        "language_model.toml",
        ["data.train_size=4", "data.length=50", "trainer.tbptt_steps=25", "model.hidden_size=64"],
    ),
    "ctc": ("ctc.yaml", ["data.train_size=256", "trainer.max_epochs=3", "data.batch_size=16"]),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_each_task_shape_learns(shape, tmp_path):
    name, overrides = SHAPES[shape]
    recorder = LossRecorder()
    result = train(config(name, tmp_path, *overrides), callbacks=[recorder])
    losses = recorder.losses
    window = max(2, len(losses) // 5)
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    assert last < 0.9 * first, f"{shape}: loss went from {first:.4f} to {last:.4f}"
    assert result.model_path.is_file()
    assert "test_loss" in result.test_metrics


# ---------------------------------------------------------------------- truncated BPTT
def per_step_task(tbptt_steps: int) -> PerStepTask:
    net = {
        "input_size": 5,
        "output_size": 5,
        "tokens": True,
        "embedding_dim": 4,
        "hidden_size": 6,
        "variant": "peephole",
    }
    optim = {"name": "sgd", "lr": 0.1}
    return PerStepTask(net, optim, tbptt_steps)


def chunk_gradients(task: PerStepTask, batch) -> list[list[torch.Tensor]]:
    """The gradient of each chunk's loss, as the training loop would step on it."""
    grads = []
    for loss, _ in task.losses(batch):
        grads.append(torch.autograd.grad(loss, list(task.parameters())))
    return grads


def test_tbptt_with_k_at_least_T_is_full_bptt():
    torch.manual_seed(1)
    batch = {"x": torch.randint(0, 5, (3, 12)), "y": torch.randint(0, 5, (3, 12))}
    full, truncated = per_step_task(0), per_step_task(12)
    truncated.load_state_dict(full.state_dict())
    (full_grads,) = chunk_gradients(full, batch)
    (truncated_grads,) = chunk_gradients(truncated, batch)
    # the full-BPTT gradient written out by hand
    x, y = batch["x"].T, batch["y"].T
    logits, _ = full.net(x)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    manual = torch.autograd.grad(loss, list(full.parameters()))
    for name, a, b, m in zip(
        dict(full.named_parameters()), full_grads, truncated_grads, manual, strict=True
    ):
        assert_close(f"{name} (k=T vs full)", a, b)
        assert_close(f"{name} (loop vs manual)", m, a)


def test_tbptt_carries_state_across_chunks_and_cuts_gradients():
    torch.manual_seed(2)
    T, k = 12, 5
    batch = {"x": torch.randint(0, 5, (3, T)), "y": torch.randint(0, 5, (3, T))}
    task = per_step_task(k)
    grads = chunk_gradients(task, batch)
    assert len(grads) == len(chunks(T, k)) == 3
    # manual loop: state flows on, detached at every chunk boundary
    x, y = batch["x"].T, batch["y"].T
    state = None
    for span, chunk_grads in zip(chunks(T, k), grads, strict=True):
        logits, new_state = task.net(x[span], None, state)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[span].flatten())
        manual = torch.autograd.grad(loss, list(task.parameters()))
        for name, m, g in zip(dict(task.named_parameters()), manual, chunk_grads, strict=True):
            assert_close(f"{name} chunk {span}", m, g)
        state = detach_state(new_state)
    # and the forward values equal one pass over the whole stream
    _, full_state = task.net(x)
    assert_close("final h", full_state[0], state[0])


def test_resets_zero_the_state_where_a_sequence_starts():
    torch.manual_seed(3)
    net = per_step_task(4).net
    x = torch.randint(0, 5, (10, 2))  # [T, B]
    resets = torch.zeros(10, 2, dtype=torch.bool)
    resets[6, 0] = True  # stream 0 starts a new document at step 6
    with torch.no_grad():
        outputs, state = run_chunk(lambda p, s: net(x[p], None, s), slice(0, 10), None, resets)
        _, alone = net(x[6:, :1])  # the new document of stream 0, from a zero state
        whole, both = net(x)  # no resets at all
    assert_close("reset stream", alone[0][:, 0], state[0][:, 0])
    assert_close("untouched stream", both[0][:, 1], state[0][:, 1])
    assert_close("outputs before the reset", whole[:6], outputs[:6])


# ---------------------------------------------------------------------- checkpoints
def test_resume_gives_bitwise_the_same_losses(tmp_path):
    options = [
        "data.train_size=128",
        "data.length=12",
        "model.zoneout=0.1",  # randomness in training: masks must replay after the resume
        "model.recurrent_dropout=0.2",
    ]
    whole = LossRecorder()
    train(
        config("adding.yaml", tmp_path / "a", "trainer.max_epochs=4", *options), callbacks=[whole]
    )
    first = config("adding.yaml", tmp_path / "b", "trainer.max_epochs=2", *options)
    train(first)
    resumed = LossRecorder()
    second = config("adding.yaml", tmp_path / "b", "trainer.max_epochs=4", *options)
    last = tmp_path / "b" / "adding" / "checkpoints" / "last.ckpt"
    train(second, resume_from=last, callbacks=[resumed])
    half = len(whole.losses) // 2
    assert len(resumed.losses) == half
    assert resumed.losses == whole.losses[half:]  # bitwise: floats compared exactly
    a = lstmkit.load(tmp_path / "a" / "adding" / "model.safetensors")
    b = lstmkit.load(tmp_path / "b" / "adding" / "model.safetensors")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------------- distributed
def test_ddp_on_two_processes_equals_one_process_on_the_combined_batch(tmp_path):
    common = [
        "--set=data.train_size=64",
        "--set=data.length=8",
        "--set=optim.name=sgd",
        "--set=optim.lr=0.5",
        "--set=optim.grad_clip=0",
        "--set=trainer.max_epochs=2",
        *(f"--set={q}" for q in QUIET),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "lstmkit.cli.main", "train", str(CONFIGS / "adding.yaml")]
    ddp = [*cli, *common, f"--set=trainer.output_dir={tmp_path / 'ddp'}", "--set=data.batch_size=8"]
    ddp += ["--devices", "2", "--strategy", "ddp"]
    single = [
        *cli,
        *common,
        f"--set=trainer.output_dir={tmp_path / 'one'}",
        "--set=data.batch_size=16",
    ]
    for command in (ddp, single):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    two = lstmkit.load(tmp_path / "ddp" / "adding" / "model.safetensors")
    one = lstmkit.load(tmp_path / "one" / "adding" / "model.safetensors")
    for (name, p), q in zip(two.state_dict().items(), one.state_dict().values(), strict=True):
        assert_close(name, q, p, rtol=0, atol=1e-6)
