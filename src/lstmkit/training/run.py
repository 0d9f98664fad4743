"""From a TrainConfig to a trained model: DataModule, LightningModule, Trainer, files.

A run writes under ``output_dir/name``: Lightning checkpoints (``checkpoints/last.ckpt``
and the best by validation loss) for resuming, the logger's files, and ``model.safetensors``
(``lstmkit.save``: weights + architecture + the training config) for use without this code.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lstmkit.io import load_weights, publish, read
from lstmkit.nn.sequence_net import SequenceNet
from lstmkit.training.callbacks import EpochSummary
from lstmkit.training.config import TrainConfig, from_dict
from lstmkit.training.datamodule import BuiltinDataModule, DataInfo
from lstmkit.training.modules import TASKS, RecurrentTask


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed over the target."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(handle)
        try:
            torch.save(checkpoint, temporary)
            publish(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    test_metrics: dict[str, float]


def net_config(config: TrainConfig, info: DataInfo) -> dict[str, Any]:
    """SequenceNetConfig arguments for this config and data."""
    m = config.model
    per_sequence = config.task == "sequence"
    return {
        "input_size": info.input_size,
        "output_size": info.output_size,
        "tokens": info.tokens,
        "embedding_dim": m.embedding_dim if info.tokens else 0,
        "cell": m.cell,
        "variant": m.variant,
        "hidden_size": m.hidden_size,
        "num_layers": m.num_layers,
        "bidirectional": m.bidirectional,
        "dropout": m.dropout,
        "proj_size": m.proj_size,
        "layer_norm": m.layer_norm,
        "zoneout": m.zoneout,
        "recurrent_dropout": m.recurrent_dropout,
        "forget_bias": m.forget_bias,
        "readout": m.readout if per_sequence else "per_step",
        "backend": m.backend,
    }


def build_task(config: TrainConfig, info: DataInfo) -> RecurrentTask:
    context = {"train_config": config.to_dict(), "data_info": asdict(info)}
    return TASKS[config.task](
        net_config(config, info), asdict(config.optim), config.trainer.tbptt_steps, context
    )


def run_dir(config: TrainConfig) -> Path:
    return Path(config.trainer.output_dir) / config.trainer.name


def build_trainer(config: TrainConfig, callbacks: list | None = None) -> pl.Trainer:
    t = config.trainer
    directory = run_dir(config)
    checkpoints = ModelCheckpoint(
        dirpath=directory / "checkpoints",
        filename="epoch{epoch}-val_loss{val_loss:.4f}",
        auto_insert_metric_name=False,
        monitor="val_loss",
        save_last=True,
        every_n_epochs=t.checkpoint_every_n_epochs,
    )
    callbacks = [checkpoints, EpochSummary(), *(callbacks or [])]
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=t.early_stopping_patience))
    if t.logger == "csv":
        logger = CSVLogger(t.output_dir, name=t.name)
    elif t.logger == "tensorboard":
        logger = TensorBoardLogger(t.output_dir, name=t.name)
    else:
        logger = False
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        callbacks=callbacks,
        logger=logger,
        enable_progress_bar=t.progress_bar,
        log_every_n_steps=t.log_every_n_steps,
        deterministic=True,
        plugins=[AtomicCheckpointIO()],
        # the DataModule shards the data itself (ShardedOrder, or a language model's streams)
        use_distributed_sampler=False,
        default_root_dir=directory,
    )


def check_resumable(checkpoint_path: str | Path, task: RecurrentTask) -> None:
    """Refuse a checkpoint that is unreadable or was trained for another model."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several kinds for truncated or foreign files
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read (corrupt or truncated?): {error}"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {str(path)!r} is not a Lightning checkpoint")
    saved = checkpoint.get("hyper_parameters", {}).get("net")
    if saved != task.hparams["net"]:
        raise ValueError(
            f"checkpoint {str(path)!r} is from another model: it was trained with "
            f"{saved}, this config builds {task.hparams['net']}"
        )


def train(
    config: TrainConfig, resume_from: str | Path | None = None, callbacks: list | None = None
) -> TrainResult:
    """Fit, test and save; ``resume_from`` continues a Lightning checkpoint exactly."""
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    data = BuiltinDataModule(config.data, config.trainer.seed)
    task = build_task(config, data.info)
    if resume_from is not None:
        check_resumable(resume_from, task)
    trainer = build_trainer(config, callbacks)
    trainer.fit(task, datamodule=data, ckpt_path=resume_from)
    results = trainer.test(task, datamodule=data, verbose=False)
    directory = run_dir(config)
    model_path = directory / "model.safetensors"
    if trainer.is_global_zero:
        task.net.save(model_path, extra=task.hparams["context"])
    metrics = {key: float(value) for key, value in (results[0] if results else {}).items()}
    return TrainResult(directory, model_path, metrics)


def load_trained(path: str | Path) -> tuple[SequenceNet, TrainConfig, DataInfo]:
    """A model saved by ``train`` (``model.safetensors``) or a Lightning checkpoint."""
    path = Path(path)
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist or is not a file")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            extra = checkpoint["hyper_parameters"]["context"]
        except Exception as error:
            raise ValueError(
                f"checkpoint {str(path)!r} is not a readable lstmkit training checkpoint: {error}"
            ) from error
        net_dict = checkpoint["hyper_parameters"]["net"]
        state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items()}
    else:
        net_dict, state, extra = read(path)
        net_dict = {k: v for k, v in net_dict.items() if k != "kind"}
        if not extra or "train_config" not in extra:
            raise ValueError(
                f"path {str(path)!r} holds a model but not the config it was trained with"
            )
    from lstmkit.nn.sequence_net import SequenceNetConfig

    net = load_weights(SequenceNet(SequenceNetConfig(**net_dict)), state, path)
    return net.eval(), from_dict(extra["train_config"]), DataInfo(**extra["data_info"])


def evaluate(path: str | Path) -> dict[str, float]:
    """Test-split metrics of a trained model, on the data its config describes."""
    net, config, _ = load_trained(path)
    data = BuiltinDataModule(config.data, config.trainer.seed)
    task = build_task(config, data.info)
    task.net.load_state_dict(net.state_dict())
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    results = trainer.test(task, datamodule=data, verbose=False)
    return {key: float(value) for key, value in results[0].items()}
