"""``lstmkit.save`` / ``lstmkit.load``: weights in safetensors, the architecture as JSON.

One ``.safetensors`` file holds the weights and, in its metadata, the JSON that rebuilds the
module (and optionally the training config that produced it), so a trained model loads
without the training code. Writes go to a temporary file in the same folder and are renamed
over the target only once complete: a failed save never touches an existing file.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

CONFIG_KEY = "lstmkit_config"
EXTRA_KEY = "lstmkit_extra"


class Saveable:
    """Gives a module ``.save(path, extra=None)``; it must define ``to_dict()``."""

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write weights (safetensors) and architecture (JSON) to ``path``; see lstmkit.load."""
        return save(self, path, extra)


def save(module: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``module`` (an lstmkit recurrent module, xLSTM or SequenceNet) to ``path``
    atomically."""
    if not hasattr(module, "to_dict"):
        kind = f"{type(module).__module__}.{type(module).__qualname__}"
        raise TypeError(
            f"module must be an lstmkit recurrent module, xLSTM or SequenceNet, got {kind}"
        )
    tensors, seen = {}, set()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        # tied weights (an xLSTM's embedding and head) are one tensor under two names:
        # safetensors stores tensors that share memory only as copies
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        tensors[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return write(path, tensors, module.to_dict(), extra)


def write(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict, extra: dict | None
) -> Path:
    """Write ``tensors`` with ``config`` (and ``extra``) as JSON metadata to ``path``: into a
    temporary file in the same folder, renamed over ``path`` only once complete. Every saver
    of the project (modules and task estimators) goes through here."""
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"path's folder {path.parent} does not exist")
    metadata = {CONFIG_KEY: json.dumps(config)}
    if extra is not None:
        metadata[EXTRA_KEY] = json.dumps(extra)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        publish(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def publish(temporary: str | os.PathLike, target: str | os.PathLike) -> None:
    """Give a finished temporary file ordinary permissions and rename it over ``target``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; a saved model is not secret
    os.replace(temporary, target)


def read(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], dict | None]:
    """The architecture dict, the tensors and the extra dict stored at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {path} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"path {path} is not a readable lstmkit model file (corrupt or truncated?): {error}"
        ) from error
    if CONFIG_KEY not in metadata:
        raise ValueError(f"path {path} is a safetensors file but was not written by lstmkit.save")
    extra = json.loads(metadata[EXTRA_KEY]) if EXTRA_KEY in metadata else None
    return json.loads(metadata[CONFIG_KEY]), tensors, extra


def build(config: dict) -> nn.Module:
    """A fresh module from the dict ``to_dict()`` returned."""
    from lstmkit.cells import LSTMVariant
    from lstmkit.nn import GRU, LSTM, ConvLSTM, mLSTM, sLSTM, xLSTM
    from lstmkit.nn.sequence_net import SequenceNet, SequenceNetConfig

    config = dict(config)
    kind = config.pop("kind", None)
    if kind == "SequenceNet":
        return SequenceNet(SequenceNetConfig(**config))
    if kind == "LSTM":
        if isinstance(config.get("variant"), dict):
            config["variant"] = LSTMVariant(**config["variant"])
        if isinstance(config.get("zoneout"), list):
            config["zoneout"] = tuple(config["zoneout"])
        return LSTM(**config)
    plain = {"GRU": GRU, "ConvLSTM": ConvLSTM, "sLSTM": sLSTM, "mLSTM": mLSTM, "xLSTM": xLSTM}
    if kind in plain:
        return plain[kind](**config)
    raise ValueError(
        "config kind must be 'LSTM', 'GRU', 'ConvLSTM', 'sLSTM', 'mLSTM', 'xLSTM' or "
        "'SequenceNet', "
        f"got {kind!r}"
    )


def load_weights(module: nn.Module, tensors: dict[str, torch.Tensor], path) -> nn.Module:
    """Load ``tensors`` into ``module`` (in their dtype), or say what does not fit."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshapen = [
        f"{name} has shape {list(tensors[name].shape)}, the config needs {list(t.shape)}"
        for name, t in expected.items()
        if name in tensors and tensors[name].shape != t.shape
    ]
    if missing or unexpected or misshapen:
        raise ValueError(
            f"path {path} holds weights that do not fit its own config: missing {missing}, "
            f"unexpected {unexpected}" + "".join(f"; {m}" for m in misshapen)
        )
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        module.to(dtypes.pop())  # a float64 model comes back as float64
    module.load_state_dict(tensors)
    return module


# the task estimators' file kinds -> the class whose ``load`` reads them (imported on use:
# they need pandas and more)
ESTIMATORS = {
    "Forecaster": "lstmkit.tasks.forecasting:Forecaster",
    "AnomalyDetector": "lstmkit.tasks.anomaly:AnomalyDetector",
    "SequenceClassifierNet": "lstmkit.tasks.classification:SequenceClassifier",
    "RecognizerNet": "lstmkit.tasks.recognition:Recognizer",
    "LanguageModel": "lstmkit.tasks.language_model:LanguageModel",
    "Seq2Seq": "lstmkit.tasks.seq2seq:Seq2Seq",
}


def load(path: str | os.PathLike):
    """Rebuild the module saved at ``path`` and load its weights (on the CPU); a file a task
    estimator saved (Forecaster, SequenceClassifier, ...) comes back as that estimator."""
    config, tensors, _ = read(path)
    if config.get("kind") in ESTIMATORS:
        module, name = ESTIMATORS[config["kind"]].split(":")
        return getattr(importlib.import_module(module), name).load(path)
    return load_weights(build(config), tensors, path)
