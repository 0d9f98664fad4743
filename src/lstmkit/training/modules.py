"""LightningModules for the shapes of sequence learning.

- ``SequenceTargetTask``: one target per sequence (regression or classification), read from
  the last step or pooled over the steps.
- ``PerStepTask``: one target per step (sequence labelling, next-step prediction).
- ``LanguageModelTask``: next-token prediction on a continuous stream; the state is carried
  across batches and zeroed where a document starts; reports bits per character.
- ``CTCTask``: unsegmented labels through torch's CTC loss (blank = 0), with best-path CER.

All of them optimise manually so that truncated BPTT (``tbptt_steps``) is one loop written
once: each chunk of k steps is a forward, a backward and an optimiser step, and the state is
detached between chunks. Without TBPTT the whole sequence is one chunk. Batches come batch
first from the DataModule and are turned time first here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.nn.sequence_net import SequenceNet, SequenceNetConfig
from lstmkit.training.config import OptimConfig
from lstmkit.training.ctc import best_path, character_error_rate
from lstmkit.training.tbptt import State, chunks, detach_state, run_chunk


class RecurrentTask(pl.LightningModule):
    """A SequenceNet, its optimiser, and the one training loop (chunks of k steps)."""

    def __init__(
        self, net: dict, optim: dict, tbptt_steps: int = 0, context: dict | None = None
    ) -> None:
        """net: SequenceNetConfig arguments; optim: OptimConfig fields; context: what the
        run was trained on (its config and data info), kept in checkpoints."""
        super().__init__()
        self.save_hyperparameters()
        self.net = SequenceNet(SequenceNetConfig(**net))
        self.optim = OptimConfig(**optim)
        self.tbptt_steps = tbptt_steps
        self.automatic_optimization = False

    # ----------------------------------------------------------------- to override
    def losses(self, batch: dict[str, Tensor]) -> Iterator[tuple[Tensor, int]]:
        """Yield (mean loss, count) per chunk; the loop steps the optimiser after each."""
        raise NotImplementedError

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Evaluation metrics of one batch (``loss`` first); means over the batch."""
        raise NotImplementedError

    # ----------------------------------------------------------------- the loop
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        optimiser = self.optimizers()
        total, count = 0.0, 0
        for loss, n in self.losses(batch):
            optimiser.zero_grad()
            self.manual_backward(loss)
            if self.optim.grad_clip:
                self.clip_gradients(
                    optimiser,
                    gradient_clip_val=self.optim.grad_clip,
                    gradient_clip_algorithm="norm",
                )
            optimiser.step()
            total, count = total + loss.detach() * n, count + n
        mean = total / max(count, 1)
        self.log("train_loss", mean, prog_bar=True, on_step=True, on_epoch=True, batch_size=count)
        return mean

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_metrics("val", batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_metrics("test", batch)

    def _log_metrics(self, split: str, batch: dict[str, Tensor]) -> None:
        size = len(batch["x"])
        for name, value in self.metrics(batch).items():
            self.log(
                f"{split}_{name}", value, prog_bar=name == "loss", batch_size=size, sync_dist=True
            )

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitored = self.trainer.callback_metrics.get("val_loss")
            if monitored is not None:
                scheduler.step(monitored)
        else:
            scheduler.step()

    # ----------------------------------------------------------------- optimiser
    def configure_optimizers(self):
        o = self.optim
        params = self.parameters()
        if o.name == "sgd":
            optimiser = torch.optim.SGD(
                params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
            )
        elif o.name == "rmsprop":
            optimiser = torch.optim.RMSprop(
                params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
            )
        elif o.name == "adamw":
            optimiser = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            optimiser = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        if o.scheduler == "none":
            return optimiser
        if o.scheduler == "cosine":
            epochs = max(1, self.trainer.max_epochs or 1)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
        elif o.scheduler == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimiser, o.step_size, o.gamma)
        else:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=o.gamma)
        return {"optimizer": optimiser, "lr_scheduler": scheduler}

    # ----------------------------------------------------------------- determinism
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # dropout, zoneout and recurrent-dropout masks draw from torch's global generator:
        # resuming with its state makes the continued run bitwise equal to an unbroken one
        checkpoint["lstmkit_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "lstmkit_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["lstmkit_rng_state"])


def time_first(tensor: Tensor) -> Tensor:
    return tensor.transpose(0, 1)


class SequenceTargetTask(RecurrentTask):
    """One target per sequence: ``loss="mse"`` (targets ``[B, O]``) or ``"cross_entropy"``."""

    def __init__(self, *args, loss: str = "mse", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if loss not in ("mse", "cross_entropy"):
            raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
        self.loss_name = loss

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        prediction, _ = self.net(time_first(batch["x"]), batch.get("lengths"))
        if self.loss_name == "mse":
            return F.mse_loss(prediction, batch["y"]), prediction
        return F.cross_entropy(prediction, batch["y"]), prediction

    def losses(self, batch):
        loss, _ = self._loss(batch)
        yield loss, len(batch["x"])

    def metrics(self, batch):
        loss, prediction = self._loss(batch)
        if self.loss_name == "mse":
            return {"loss": loss, "mae": (prediction - batch["y"]).abs().mean()}
        accuracy = (prediction.argmax(-1) == batch["y"]).float().mean()
        return {"loss": loss, "accuracy": accuracy}


class PerStepTask(RecurrentTask):
    """One class target per step (``-100`` is ignored), trained in chunks of k steps."""

    def _chunk_loss(self, x: Tensor, y: Tensor, span: slice, state: State, resets=None):
        """Summed cross-entropy over ``span``, the number of counted targets, the new state."""
        logits, state = run_chunk(lambda part, s: self.net(x[part], None, s), span, state, resets)
        loss = F.cross_entropy(logits.flatten(0, 1), y[span].flatten(), reduction="sum")
        counted = int((y[span] != -100).sum())
        return loss, counted, logits, state

    def _stream(self, batch) -> tuple[Tensor, Tensor, Tensor | None]:
        resets = batch.get("resets")
        return time_first(batch["x"]), time_first(batch["y"]), None if resets is None else resets.T

    def _initial_state(self) -> State:
        return None

    def _final_state(self, state: State) -> None:
        """What to keep after a batch (a language model keeps its stream's state)."""

    def losses(self, batch):
        x, y, resets = self._stream(batch)
        state = self._initial_state()
        for span in chunks(len(x), self.tbptt_steps):
            loss, counted, _, state = self._chunk_loss(x, y, span, state, resets)
            yield loss / max(counted, 1), counted
            state = detach_state(state)
        self._final_state(state)

    def metrics(self, batch):
        x, y, resets = self._stream(batch)
        loss, counted, logits, state = self._chunk_loss(
            x, y, slice(0, len(x)), self._initial_state(), resets
        )
        self._final_state(detach_state(state))
        mask = y != -100
        correct = ((logits.argmax(-1) == y) & mask).sum()
        return {"loss": loss / max(counted, 1), "accuracy": correct / mask.sum().clamp(min=1)}


class LanguageModelTask(PerStepTask):
    """Next-token prediction on B parallel streams; the state runs on across batches."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stream_state: State = None

    def _initial_state(self) -> State:
        return self.stream_state

    def _final_state(self, state: State) -> None:
        self.stream_state = state

    def on_train_epoch_start(self) -> None:
        self.stream_state = None

    def on_validation_epoch_start(self) -> None:
        self.saved_train_state, self.stream_state = self.stream_state, None

    def on_validation_epoch_end(self) -> None:
        self.stream_state = self.saved_train_state

    def on_test_epoch_start(self) -> None:
        self.stream_state = None

    def metrics(self, batch):
        values = super().metrics(batch)
        values["bits_per_char"] = values["loss"] / math.log(2)
        return values


class CTCTask(RecurrentTask):
    """Frames ``[B, T, D]`` with ``lengths``, labels ``[B, L]`` with ``label_lengths``."""

    def _log_probs(self, batch) -> Tensor:
        logits, _ = self.net(time_first(batch["x"]), batch["lengths"])
        return logits.log_softmax(-1)  # [T, B, C], blank = 0

    def _loss(self, batch, log_probs: Tensor) -> Tensor:
        return F.ctc_loss(
            log_probs, batch["labels"], batch["lengths"], batch["label_lengths"], blank=0
        )

    def losses(self, batch):
        yield self._loss(batch, self._log_probs(batch)), len(batch["x"])

    def metrics(self, batch):
        log_probs = self._log_probs(batch)
        decoded = best_path(log_probs, batch["lengths"])
        truth = [
            row[:n].tolist() for row, n in zip(batch["labels"], batch["label_lengths"], strict=True)
        ]
        cer = character_error_rate(decoded, truth)
        return {"loss": self._loss(batch, log_probs), "cer": torch.tensor(cer)}


TASKS: dict[str, type[RecurrentTask]] = {
    "sequence": SequenceTargetTask,
    "per_step": PerStepTask,
    "language_model": LanguageModelTask,
    "ctc": CTCTask,
}
