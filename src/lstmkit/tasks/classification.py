"""``lstmkit.SequenceClassifier``: time-series classification in the scikit-learn style.

Two architectures, any lstmkit LSTM variant (or ``"gru"``) as the recurrent cell:

- ``"lstm-fcn"`` (Karim et al. 2018): an LSTM branch (after the "dimension shuffle": a series
  of C channels and L steps is read as C steps of L features) beside a fully convolutional
  branch (three Conv1d-BatchNorm-ReLU blocks, global average pooling); their features are
  concatenated for a linear softmax head.
- ``"lstm"``: a (bidirectional, stacked) LSTM over time whose final states feed the head.

Inputs are numpy arrays ``[n, channels, length]``, lists of ``[channels, t]`` arrays whose
lengths differ, or pandas (``as_sequences`` lists the layouts). Series of different lengths
are padded to a batch and run with ``lengths=``; the convolutional branch zeroes and ignores
the padded steps (BatchNorm statistics and the average pool included), so a padded series
gets exactly the output it gets alone.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError  # a ValueError, as scikit-learn raises
from torch import Tensor, nn
from torch.nn import functional as F

import lstmkit
from lstmkit.io import load_weights, read, save

Arch = Literal["lstm-fcn", "lstm"]
NET_KIND = "SequenceClassifierNet"


# ----------------------------------------------------------------------------- the network
@dataclass(frozen=True)
class ClassifierNetConfig:
    """Everything that rebuilds a ClassifierNet (saved beside its weights)."""

    channels: int
    classes: int
    arch: Arch = "lstm-fcn"
    variant: str = "standard"  # a name from lstmkit.variants(), or "gru"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dimension_shuffle: bool = False
    length: int = 0  # steps per series; the LSTM's input size under dimension_shuffle
    lstm_dropout: float = 0.8
    filters: tuple[int, ...] = (128, 256, 128)
    kernel_sizes: tuple[int, ...] = (8, 5, 3)
    backend: str = "auto"

    @classmethod
    def from_dict(cls, config: dict) -> ClassifierNetConfig:
        config = {k: v for k, v in config.items() if k != "kind"}
        for name in ("filters", "kernel_sizes"):  # JSON gives lists back
            config[name] = tuple(config[name])
        return cls(**config)


class MaskedBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the real steps only: padding changes neither statistics nor output."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # x [B, C, T]
        if mask is None:
            return super().forward(x)
        steps = x.transpose(1, 2)  # [B, T, C]
        out = torch.zeros_like(steps)
        out[mask] = super().forward(steps[mask])  # [N real steps, C]
        return out.transpose(1, 2)


class ClassifierNet(nn.Module):
    """forward(x ``[B, C, T]``, lengths ``[B]`` | None) -> logits ``[B, classes]``.

    Holds the per-channel standardisation fitted on the training data as buffers, so a saved
    network classifies raw series.
    """

    def __init__(self, config: ClassifierNetConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.channels))
        self.register_buffer("scale", torch.ones(config.channels))
        rnn_input = config.length if config.dimension_shuffle else config.channels
        common = {
            "num_layers": config.num_layers,
            "bidirectional": config.bidirectional,
            "backend": config.backend,
        }
        if config.variant == "gru":
            self.rnn: nn.Module = lstmkit.GRU(rnn_input, config.hidden_size, **common)
        else:
            self.rnn = lstmkit.LSTM(rnn_input, config.hidden_size, variant=config.variant, **common)
        self.dropout = nn.Dropout(config.lstm_dropout)
        features = config.hidden_size * (2 if config.bidirectional else 1)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        if config.arch == "lstm-fcn":
            sizes = (config.channels, *config.filters)
            for inputs, outputs, kernel in zip(
                sizes[:-1], sizes[1:], config.kernel_sizes, strict=True
            ):
                self.convs.append(nn.Conv1d(inputs, outputs, kernel))
                self.norms.append(MaskedBatchNorm(outputs))
            features += config.filters[-1]
        self.head = nn.Linear(features, config.classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        steps = x.shape[-1]  # x [B, C, T]
        mask = None if lengths is None else torch.arange(steps, device=x.device) < lengths[:, None]
        x = (x - self.mean[:, None]) / self.scale[:, None]  # [B, C, T]
        if mask is not None:
            x = x * mask[:, None]  # padded steps are exact zeros from here on
        parts = [self.dropout(self._recurrent(x, lengths))]
        if len(self.convs):
            parts.append(self._convolutional(x, mask))
        return self.head(torch.cat(parts, dim=-1))

    def _recurrent(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """The last layer's final state(s) of each series: ``[B, directions * H]``."""
        if self.config.dimension_shuffle:
            _, state = self.rnn(x.permute(1, 0, 2))  # C steps of T features: [C, B, T]
        else:
            _, state = self.rnn(x.permute(2, 0, 1), lengths=lengths)  # [T, B, C]
        h_n = state if isinstance(state, Tensor) else state[0]  # the GRU returns h_n alone
        directions = 2 if self.config.bidirectional else 1
        return torch.cat(list(h_n[-directions:]), dim=-1)

    def _convolutional(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Conv-BN-ReLU blocks, then the mean over each series' real steps: ``[B, F]``."""
        for conv, norm in zip(self.convs, self.norms, strict=True):
            # zeroing the padded steps after each block makes the next "same" convolution see
            # what it sees at the end of a lone series: zeros
            kernel = conv.kernel_size[0]  # "same" padding, asymmetric for even kernels
            x = F.relu(norm(conv(F.pad(x, ((kernel - 1) // 2, kernel // 2))), mask))  # [B, F, T]
            if mask is not None:
                x = x * mask[:, None]
        if mask is None:
            return x.mean(-1)
        return x.sum(-1) / mask.sum(-1, keepdim=True)

    def to_dict(self) -> dict:
        return {"kind": NET_KIND, **asdict(self.config)}


# ----------------------------------------------------------------------------- the inputs
def as_sequences(X, name: str = "X") -> tuple[np.ndarray, np.ndarray]:
    """``(padded [n, channels, T] float32, lengths [n] int64)`` from any accepted layout.

    Accepted: a numpy array ``[n, channels, length]``; a list or tuple of ``[channels, t]``
    arrays (t may differ); a pandas DataFrame with one row per series and one column per
    step (univariate, equal length, as UCR files); a pandas DataFrame with a two-level index
    ``(series, time)`` and one column per channel (aeon's "pd-multiindex"; lengths may differ,
    rows are put in time order within each series).
    """
    arrays = _as_arrays(X, name)
    if not arrays:
        raise ValueError(f"{name} must hold at least one series, got an empty input")
    channels = {a.shape[0] for a in arrays}
    if len(channels) > 1:
        raise ValueError(
            f"{name}: every series must have the same channels, got {sorted(channels)}"
        )
    lengths = np.array([a.shape[1] for a in arrays], dtype=np.int64)
    if lengths.min() < 1:
        where = int(np.argmin(lengths))
        raise ValueError(f"{name}: every series needs at least one step, series {where} has 0")
    padded = np.zeros((len(arrays), channels.pop(), lengths.max()), dtype=np.float32)
    for i, array in enumerate(arrays):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: series {i} holds NaN or infinite values")
        padded[i, :, : array.shape[1]] = array
    return padded, lengths


def _as_arrays(X, name: str) -> list[np.ndarray]:
    """One float ``[channels, t]`` array per series."""
    if _is_pandas(X):
        return _arrays_from_pandas(X, name)
    if isinstance(X, list | tuple):
        arrays = [_numeric(a, f"{name}[{i}]") for i, a in enumerate(X)]
        for i, array in enumerate(arrays):
            if array.ndim != 2:
                raise ValueError(
                    f"{name}[{i}] must be a [channels, length] array, got shape {array.shape}"
                )
        return arrays
    array = _numeric(X, name)
    if array.ndim != 3:
        hint = "; for univariate series [n, length] use X[:, None, :]" if array.ndim == 2 else ""
        raise ValueError(
            f"{name} must be an array [n, channels, length] or a list of [channels, length] "
            f"arrays, got an array of shape {array.shape}{hint}"
        )
    return list(array)


def _numeric(value, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must hold numbers, got {type(value).__name__}: {error}") from None
    return array


def _is_pandas(X) -> bool:
    return type(X).__module__.split(".")[0] == "pandas"


def _arrays_from_pandas(X, name: str) -> list[np.ndarray]:
    import pandas as pd

    if isinstance(X, pd.Series):
        raise TypeError(f"{name} must be a DataFrame (one row per series), got a pandas Series")
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(X).__name__}")
    if X.index.nlevels == 1:  # wide: a row per series, a column per step
        return [row[None, :] for row in _numeric(X.to_numpy(), name)]
    if X.index.nlevels != 2:
        raise ValueError(
            f"{name} must have a one-level index (a row per series) or a two-level index "
            f"(series, time), got {X.index.nlevels} levels"
        )
    frame = X.sort_index(level=1, sort_remaining=False, kind="stable")
    order = pd.unique(X.index.get_level_values(0))  # series in the order they first appear
    groups = frame.groupby(level=0, sort=False)
    return [_numeric(groups.get_group(key).to_numpy(), f"{name}[{key!r}]").T for key in order]


# ----------------------------------------------------------------------------- the estimator
class SequenceClassifier(ClassifierMixin, BaseEstimator):
    """Classify whole sequences with LSTM-FCN or a (Bi)LSTM; scikit-learn's interface.

    Args:
        arch: ``"lstm-fcn"`` (Karim et al. 2018) or ``"lstm"``.
        variant: the recurrent cell: a name from ``lstmkit.variants()`` or ``"gru"``.
        hidden_size, num_layers, bidirectional: the recurrent branch.
        dimension_shuffle: read C channels of L steps as C steps of L features (lstm-fcn
            only, equal lengths only). None: on for lstm-fcn on equal-length data.
        lstm_dropout: dropout on the recurrent features (0.8 in the paper).
        filters, kernel_sizes: the convolutional blocks of lstm-fcn.
        epochs: at most this many passes over the training part.
        batch_size, learning_rate, weight_decay: Adam's minibatches and step.
        validation_fraction: share of the training data held out (stratified) to pick the
            best epoch and stop early; 0 trains all ``epochs`` on all the data and keeps the
            epoch of the lowest training loss (Karim et al.'s rule).
        patience: epochs without a better validation loss before stopping.
        seed: seeds the split, the initialisation, dropout and the batch order.
        backend: the LSTM backend (``"auto"``, ``"reference"``, ``"cpu"``).
        verbose: print one line per epoch.

    Fitted attributes: ``classes_``, ``n_channels_``, ``net_`` (a ClassifierNet),
    ``history_`` (per-epoch losses), ``best_epoch_``, ``validation_accuracy_``,
    ``validation_loss_`` (NaN without validation).
    """

    def __init__(
        self,
        arch: Arch = "lstm-fcn",
        variant: str = "standard",
        *,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dimension_shuffle: bool | None = None,
        lstm_dropout: float = 0.8,
        filters: tuple[int, ...] = (128, 256, 128),
        kernel_sizes: tuple[int, ...] = (8, 5, 3),
        epochs: int = 300,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        validation_fraction: float = 0.2,
        patience: int = 50,
        seed: int | None = None,
        backend: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.arch = arch
        self.variant = variant
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dimension_shuffle = dimension_shuffle
        self.lstm_dropout = lstm_dropout
        self.filters = filters
        self.kernel_sizes = kernel_sizes
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.seed = seed
        self.backend = backend
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, X, y) -> SequenceClassifier:
        """Train on series ``X`` with labels ``y`` (any sortable labels); returns self."""
        self._check_params()
        x, lengths = as_sequences(X)
        labels = _labels(y, len(x))
        classes, targets = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y must hold at least 2 classes, got only {classes.tolist()}")
        equal = bool((lengths == lengths[0]).all())
        shuffle = self.arch == "lstm-fcn" and equal
        if self.dimension_shuffle is not None:
            shuffle = self.dimension_shuffle
        if shuffle and (self.arch != "lstm-fcn" or not equal):
            raise ValueError(
                "dimension_shuffle=True needs arch='lstm-fcn' and series of one length, got "
                f"arch={self.arch!r} and lengths {lengths.min()}..{lengths.max()}"
            )
        self.classes_ = classes
        self.n_channels_ = x.shape[1]
        config = ClassifierNetConfig(
            channels=x.shape[1],
            classes=len(classes),
            arch=self.arch,
            variant=self.variant,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            dimension_shuffle=shuffle,
            length=int(lengths[0]) if shuffle else 0,
            lstm_dropout=self.lstm_dropout,
            filters=tuple(self.filters),
            kernel_sizes=tuple(self.kernel_sizes),
            backend=self.backend,
        )
        rng = np.random.default_rng(self.seed)
        train, valid = _split(targets, self.validation_fraction, rng)
        with torch.random.fork_rng(devices=[]):  # seed init and dropout, leave the caller's RNG
            torch.manual_seed(int(rng.integers(2**62)))
            self.net_ = ClassifierNet(config)
            _fit_standardisation(self.net_, x[train], lengths[train])
            self._train(x, lengths, torch.as_tensor(targets), train, valid, rng)
        return self

    def _train(self, x, lengths, targets: Tensor, train, valid, rng) -> None:
        net = self.net_
        optimizer = torch.optim.Adam(
            net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        # Karim et al. cut the rate by 2^(1/3) when the training loss stalls, down to 1e-4
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5 ** (1 / 3), patience=max(1, self.patience // 3),
            min_lr=min(1e-4, self.learning_rate),
        )  # fmt: skip
        # (the watched loss, its epoch, the weights then, that epoch's record)
        best = (math.inf, -1, copy.deepcopy(net.state_dict()), {})
        self.history_ = []
        for epoch in range(self.epochs):
            net.train()
            total = 0.0
            for batch in _batches(rng.permutation(train), self.batch_size):
                inputs, batch_lengths = _tensors(x, lengths, batch)
                loss = F.cross_entropy(net(inputs, batch_lengths), targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            record = {"epoch": epoch, "loss": total / len(train)}
            plateau.step(record["loss"])
            if len(valid):
                logits = self._logits(x, lengths, valid)
                record["val_loss"] = F.cross_entropy(logits, targets[valid]).item()
                record["val_accuracy"] = (logits.argmax(-1) == targets[valid]).float().mean().item()
            # without a validation part, the epoch of the lowest training loss (Karim et al.'s
            # checkpoint rule); the test data never takes part
            watched = record["val_loss"] if len(valid) else record["loss"]
            if watched < best[0]:
                best = (watched, epoch, copy.deepcopy(net.state_dict()), record)
            self.history_.append(record)
            if self.verbose:
                print(" ".join(f"{k}={v:.4g}" for k, v in record.items()), flush=True)
            if len(valid) and epoch - best[1] >= self.patience:
                break
        net.load_state_dict(best[2])
        self.best_epoch_ = best[1]
        self.validation_loss_ = best[3].get("val_loss", math.nan)
        self.validation_accuracy_ = best[3].get("val_accuracy", math.nan)
        net.eval()

    def _logits(self, x: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> Tensor:
        """Evaluation-mode logits ``[len(rows), classes]``, in batches."""
        self.net_.eval()
        with torch.no_grad():
            return torch.cat(
                [
                    self.net_(*_tensors(x, lengths, batch))
                    for batch in _batches(rows, max(self.batch_size, 256))
                ]
            )

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``[n, len(classes_)]``, columns in the order of ``classes_``."""
        x, lengths = self._checked(X)
        logits = self._logits(x, lengths, np.arange(len(x)))
        return logits.double().softmax(-1).numpy()  # float64: rows sum to 1 closely

    def predict(self, X) -> np.ndarray:
        """The most probable class of each series: ``[n]`` labels from ``classes_``."""
        best = self.predict_proba(X).argmax(-1)
        return self.classes_[best]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy on ``(X, y)``; every label in ``y`` must be one seen at fit."""
        self._require_fitted()
        labels = _labels(y, None)
        unseen = sorted(set(labels.tolist()) - set(self.classes_.tolist()), key=str)
        if unseen:
            raise ValueError(
                f"y holds labels unseen at fit: {unseen[:10]}; the classes are "
                f"{self.classes_.tolist()}"
            )
        predicted = self.predict(X)
        if len(labels) != len(predicted):
            raise ValueError(
                f"y must have one label per series: {len(predicted)}, got {len(labels)}"
            )
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        return float(np.average(predicted == labels, weights=weights))

    def _checked(self, X) -> tuple[np.ndarray, np.ndarray]:
        self._require_fitted()
        x, lengths = as_sequences(X)
        if x.shape[1] != self.n_channels_:
            raise ValueError(
                f"X must have {self.n_channels_} channels (as at fit), got {x.shape[1]}"
            )
        config = self.net_.config
        if config.dimension_shuffle and (lengths != config.length).any():
            raise ValueError(
                f"X must have series of length {config.length} (as at fit: the dimension "
                f"shuffle reads the length as features), got lengths {sorted(set(lengths))[:5]}"
            )
        return x, lengths

    def _require_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this SequenceClassifier is not fitted yet: call fit(X, y) first")

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model (weights, architecture, classes, settings) atomically."""
        self._require_fitted()
        if self.classes_.dtype.kind not in "iubU":
            raise TypeError(
                f"save needs int, bool or str labels, got classes of dtype {self.classes_.dtype}"
            )
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()}
        extra = {
            "estimator": "SequenceClassifier",
            "params": params,
            "classes": self.classes_.tolist(),
            "best_epoch": self.best_epoch_,
            "validation_accuracy": _json_float(self.validation_accuracy_),
            "validation_loss": _json_float(self.validation_loss_),
        }
        return save(self.net_, path, extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SequenceClassifier:
        """A fitted SequenceClassifier from a file ``save`` wrote."""
        config, tensors, extra = read(path)
        if config.get("kind") != NET_KIND or not extra or "params" not in extra:
            raise ValueError(f"path {path} holds an lstmkit model, but not a SequenceClassifier")
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in extra["params"].items()}
        model = cls(**params)
        model.net_ = load_weights(
            ClassifierNet(ClassifierNetConfig.from_dict(config)), tensors, path
        )
        model.net_.eval()
        model.classes_ = np.asarray(extra["classes"])
        model.n_channels_ = model.net_.config.channels
        model.best_epoch_ = extra["best_epoch"]
        model.validation_accuracy_ = _float(extra["validation_accuracy"])
        model.validation_loss_ = _float(extra["validation_loss"])
        model.history_ = []
        return model

    def _check_params(self) -> None:
        if self.arch not in ("lstm-fcn", "lstm"):
            raise ValueError(f"arch must be 'lstm-fcn' or 'lstm', got {self.arch!r}")
        if self.variant != "gru" and self.variant not in lstmkit.variants():
            raise ValueError(
                f"variant must be one of {[*lstmkit.variants(), 'gru']}, got {self.variant!r}"
            )
        for name in ("hidden_size", "num_layers", "epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0 <= self.lstm_dropout < 1:
            raise ValueError(f"lstm_dropout must be in [0, 1), got {self.lstm_dropout!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}"
            )
        if len(self.filters) != len(self.kernel_sizes) or not self.filters:
            raise ValueError(
                "filters and kernel_sizes must be non-empty and of one length, got "
                f"{self.filters!r} and {self.kernel_sizes!r}"
            )


# ----------------------------------------------------------------------------- helpers
def _labels(y, count: int | None) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be a 1-D sequence of labels, got shape {labels.shape}")
    if count is not None and len(labels) != count:
        raise ValueError(f"y must have one label per series: {count}, got {len(labels)}")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise ValueError("y holds NaN labels")
    if labels.dtype == object and all(isinstance(label, str) for label in labels):
        labels = labels.astype(str)  # pandas keeps strings as objects
    return labels


def _split(targets: np.ndarray, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(train, validation)`` row indices: ``fraction`` of each class held out."""
    train, valid = [], []
    for label in np.unique(targets):
        rows = rng.permutation(np.flatnonzero(targets == label))
        held = round(fraction * len(rows)) if len(rows) > 1 else 0
        valid.append(rows[:held])
        train.append(rows[held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(valid))


def _fit_standardisation(net: ClassifierNet, x: np.ndarray, lengths: np.ndarray) -> None:
    """Per-channel mean and standard deviation over the real steps of the training series."""
    mask = np.arange(x.shape[2]) < lengths[:, None]  # [n, T]
    steps = x.transpose(0, 2, 1)[mask].astype(np.float64)  # [N, C]
    std = steps.std(0)
    net.mean.copy_(torch.as_tensor(steps.mean(0)))
    net.scale.copy_(torch.as_tensor(np.where(std > 0, std, 1.0)))


def _batches(rows: np.ndarray, size: int) -> list[np.ndarray]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _tensors(x: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> tuple[Tensor, Tensor | None]:
    """A batch cut to its longest series; lengths only where they differ from that."""
    longest = int(lengths[rows].max())
    batch = torch.from_numpy(x[rows, :, :longest])
    if (lengths[rows] == longest).all():
        return batch, None
    return batch, torch.from_numpy(lengths[rows])


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)
