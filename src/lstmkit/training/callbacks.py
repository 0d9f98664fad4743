"""Callbacks lstmkit adds to every run."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info


class EpochSummary(pl.Callback):
    """One line per epoch with the epoch's losses, so the log shows the loss falling
    after the progress bar has redrawn itself."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning 2 validates before this hook, so both losses of the epoch are here
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch}"]
        for name in ("train_loss_epoch", "val_loss"):
            if name in metrics:
                parts.append(f"{name.removesuffix('_epoch')} {float(metrics[name]):.4f}")
        rank_zero_info("  ".join(parts))
