"""``lstmkit.Recognizer``: unsegmented sequence recognition with a deep bidirectional LSTM + CTC.

The network reads a sequence of feature vectors (the columns of a handwritten line, the frames
of speech) through a stack of bidirectional LSTM layers (any lstmkit variant) and a linear layer
to one distribution per step over the alphabet plus CTC's blank (class 0). Training minimises
torch's ``ctc_loss`` (Graves et al. 2006): the alignment of labels to steps is never given.
Decoding is best path or prefix beam search (``lstmkit.training.ctc``), optionally with a
character language model.

Inputs: a list of ``[T, features]`` arrays (T may differ) or one array ``[n, T, features]``;
transcripts: a list of strings over the alphabet.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

import lstmkit
from lstmkit.io import load_weights, read, save
from lstmkit.training.ctc import (
    CharLM,
    best_path,
    character_error_rate,
    prefix_beam_search,
    word_error_rate,
)

NET_KIND = "RecognizerNet"
PARAMS = (  # the constructor's arguments, saved with a model
    "alphabet", "variant", "hidden_size", "num_layers", "dropout", "epochs", "batch_size",
    "learning_rate", "validation_fraction", "beam_width", "seed", "backend", "verbose",
)  # fmt: skip


@dataclass(frozen=True)
class RecognizerNetConfig:
    """Everything that rebuilds a RecognizerNet (saved beside its weights)."""

    features: int
    alphabet: str
    variant: str = "standard"  # a name from lstmkit.variants()
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    backend: str = "auto"


class RecognizerNet(nn.Module):
    """forward(x ``[T, B, F]``, lengths ``[B]``) -> log posteriors ``[T, B, 1 + len(alphabet)]``.

    Holds the per-feature standardisation fitted on the training data as buffers, so a saved
    network reads raw features. Class 0 is the blank; class k is ``alphabet[k - 1]``.
    """

    def __init__(self, config: RecognizerNetConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.features))
        self.register_buffer("scale", torch.ones(config.features))
        self.rnn = lstmkit.LSTM(
            config.features,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=True,
            dropout=config.dropout,
            variant=config.variant,
            backend=config.backend,
        )
        self.head = nn.Linear(2 * config.hidden_size, 1 + len(config.alphabet))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        x = (x - self.mean) / self.scale  # [T, B, F]
        out, _ = self.rnn(x, lengths=lengths)  # [T, B, 2H]
        return self.head(out).log_softmax(-1)  # [T, B, C]

    def to_dict(self) -> dict:
        return {"kind": NET_KIND, **asdict(self.config)}


class Recognizer:
    """Train a deep bidirectional LSTM with CTC to transcribe sequences; decode, score, save.

    Args:
        alphabet: the symbols transcripts may hold (a string of distinct characters); None: the
            characters of the training transcripts, sorted.
        variant: the LSTM cell, a name from ``lstmkit.variants()``.
        hidden_size, num_layers: units per direction and bidirectional layers.
        dropout: between LSTM layers.
        epochs: passes over the training part; the epoch with the lowest validation loss is
            kept (the last one without validation).
        batch_size, learning_rate: Adam's minibatches and step; gradients are clipped to norm 5.
        validation_fraction: share of the training sequences held out to pick the epoch.
        beam_width: the default decoder: 1 is best path, more is prefix beam search.
        seed: seeds the split, the initialisation, dropout and the batch order.
        backend: the LSTM backend (``"auto"``, ``"reference"``, ``"cpu"``).
        verbose: print one line per epoch.

    Fitted attributes: ``net_`` (a RecognizerNet), ``alphabet_``, ``history_``, ``best_epoch_``.
    """

    def __init__(
        self,
        alphabet: str | None = None,
        variant: str = "standard",
        *,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.0,
        epochs: int = 20,
        batch_size: int = 32,
        learning_rate: float = 3e-3,
        validation_fraction: float = 0.1,
        beam_width: int = 1,
        seed: int | None = None,
        backend: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.alphabet = alphabet
        self.variant = variant
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.beam_width = beam_width
        self.seed = seed
        self.backend = backend
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, X, y) -> Recognizer:
        """Train on sequences ``X`` with transcripts ``y``; returns self."""
        self._check_params()
        x = as_sequences(X)
        texts = _texts(y, len(x))
        alphabet = (
            self.alphabet if self.alphabet is not None else "".join(sorted(set("".join(texts))))
        )
        _check_alphabet(alphabet)
        labels = _encode(texts, alphabet)
        _check_alignable(x, labels)
        config = RecognizerNetConfig(
            features=x[0].shape[1],
            alphabet=alphabet,
            variant=self.variant,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            backend=self.backend,
        )
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(x))
        held = min(round(self.validation_fraction * len(x)), len(x) - 1)  # train on >= 1
        valid, train = np.sort(order[:held]), np.sort(order[held:])
        with torch.random.fork_rng(devices=[]):  # seed init and dropout, leave the caller's RNG
            torch.manual_seed(int(rng.integers(2**62)))
            self.net_ = RecognizerNet(config)
            steps = np.concatenate([x[i] for i in train]).astype(np.float64)  # [N, F]
            std = steps.std(0)
            self.net_.mean.copy_(torch.as_tensor(steps.mean(0)))
            self.net_.scale.copy_(torch.as_tensor(np.where(std > 0, std, 1.0)))
            self._train(x, labels, train, valid, rng)
        self.alphabet_ = alphabet
        return self

    def _train(self, x, labels, train: np.ndarray, valid: np.ndarray, rng) -> None:
        net = self.net_
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        best = (math.inf, -1, copy.deepcopy(net.state_dict()))
        self.history_ = []
        for epoch in range(self.epochs):
            net.train()
            total = 0.0
            for rows in _batches(rng.permutation(train), self.batch_size):
                loss = _ctc_loss(net, x, labels, rows)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                optimizer.step()
                total += loss.item() * len(rows)
            record = {"epoch": epoch, "loss": total / len(train)}
            if len(valid):
                net.eval()
                with torch.no_grad():
                    record["val_loss"] = sum(
                        _ctc_loss(net, x, labels, rows).item() * len(rows)
                        for rows in _batches(valid, 256)
                    ) / len(valid)
                if record["val_loss"] < best[0]:
                    best = (record["val_loss"], epoch, copy.deepcopy(net.state_dict()))
            self.history_.append(record)
            if self.verbose:
                print(" ".join(f"{k}={v:.4g}" for k, v in record.items()), flush=True)
        if len(valid):
            net.load_state_dict(best[2])
            self.best_epoch_ = best[1]
        else:
            self.best_epoch_ = len(self.history_) - 1
        net.eval()

    # ------------------------------------------------------------------ predict
    def log_probs(self, X) -> list[np.ndarray]:
        """Per-step log posteriors, one ``[T, 1 + len(alphabet_)]`` array per sequence."""
        x = self._checked(X)
        out = []
        with torch.no_grad():
            for rows in _batches(np.arange(len(x)), 256):
                inputs, lengths = _padded(x, rows)
                log_probs = self.net_(inputs, lengths)  # [T, B, C]
                out += [log_probs[:n, b].numpy() for b, n in enumerate(lengths.tolist())]
        return out

    def predict(
        self,
        X,
        beam_width: int | None = None,
        lm: Callable[[str, str], float] | None = None,
        alpha: float = 0.0,
        beta: float = 0.0,
    ) -> list[str]:
        """The transcript of each sequence.

        beam_width: 1 decodes by best path, more by prefix beam search; None: the estimator's.
        lm, alpha, beta: a character language model, ``lm(prefix, char)`` giving
            log P(char | prefix) for strings over ``alphabet_``; its weight; and the bonus per
            character (beam search only).
        """
        width = self.beam_width if beam_width is None else beam_width
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"beam_width must be an int >= 1, got {width!r}")
        if lm is not None and width == 1:
            raise ValueError("lm needs beam_width > 1: best path has no place for a language model")
        ids_lm = None if lm is None else _over_ids(lm, self.alphabet_)
        decoded = []
        for log_probs in self.log_probs(X):
            frames = torch.from_numpy(log_probs)[:, None]  # [T, 1, C]
            length = torch.tensor([len(log_probs)])
            if width == 1:
                ids = best_path(frames, length)[0]
            else:
                ids = prefix_beam_search(frames, length, width, lm=ids_lm, alpha=alpha, beta=beta)[
                    0
                ]
            decoded.append("".join(self.alphabet_[k - 1] for k in ids))
        return decoded

    def score(self, X, y, beam_width: int | None = None) -> dict[str, float]:
        """``{"cer": ..., "wer": ...}``: character and word error rates on ``(X, y)``."""
        self._require_fitted()
        x = self._checked(X)
        texts = _texts(y, len(x))
        decoded = self.predict(x, beam_width)
        return {
            "cer": character_error_rate(decoded, texts),
            "wer": word_error_rate(decoded, texts),
        }

    def _checked(self, X) -> list[np.ndarray]:
        self._require_fitted()
        x = as_sequences(X)
        features = self.net_.config.features
        if x[0].shape[1] != features:
            raise ValueError(
                f"X must have {features} features per step (as at fit), got {x[0].shape[1]}"
            )
        return x

    def _require_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ValueError("this Recognizer is not fitted yet: call fit(X, y) first")

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model (weights, architecture, alphabet, settings) atomically."""
        self._require_fitted()
        extra = {
            "estimator": "Recognizer",
            "params": self.get_params(),
            "best_epoch": self.best_epoch_,
        }
        return save(self.net_, path, extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recognizer:
        """A fitted Recognizer from a file ``save`` wrote."""
        config, tensors, extra = read(path)
        if config.get("kind") != NET_KIND or not extra or "params" not in extra:
            raise ValueError(f"path {path} holds an lstmkit model, but not a Recognizer")
        model = cls(**extra["params"])
        settings = {k: v for k, v in config.items() if k != "kind"}
        model.net_ = load_weights(RecognizerNet(RecognizerNetConfig(**settings)), tensors, path)
        model.net_.eval()
        model.alphabet_ = model.net_.config.alphabet
        model.best_epoch_ = extra["best_epoch"]
        model.history_ = []
        return model

    def get_params(self) -> dict:
        """The constructor's arguments, as scikit-learn estimators give them."""
        return {name: getattr(self, name) for name in PARAMS}

    def _check_params(self) -> None:
        if self.variant not in lstmkit.variants():
            raise ValueError(
                f"variant must be one of {list(lstmkit.variants())}, got {self.variant!r}"
            )
        for name in ("hidden_size", "num_layers", "epochs", "batch_size", "beam_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}"
            )


# ----------------------------------------------------------------------------- inputs
def as_sequences(X, name: str = "X") -> list[np.ndarray]:
    """One float32 ``[T, features]`` array per sequence, checked: non-empty, finite, one width."""
    if isinstance(X, np.ndarray | Tensor):
        array = np.asarray(X.detach().cpu() if isinstance(X, Tensor) else X)
        if array.ndim != 3:
            raise ValueError(
                f"{name} must be an array [n, T, features] or a list of [T, features] arrays, "
                f"got an array of shape {array.shape}"
            )
        X = list(array)
    if not isinstance(X, list | tuple):
        raise TypeError(f"{name} must be a list of [T, features] arrays, got {type(X).__name__}")
    if not X:
        raise ValueError(f"{name} must hold at least one sequence, got none")
    sequences = []
    for i, item in enumerate(X):
        try:
            array = np.asarray(item, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name}[{i}] must hold numbers: {error}") from None
        if array.ndim != 2:
            raise ValueError(f"{name}[{i}] must be a [T, features] array, got shape {array.shape}")
        if array.shape[0] == 0:
            raise ValueError(f"{name}[{i}] is empty: every sequence needs at least one step")
        if not np.isfinite(array).all():
            raise ValueError(f"{name}[{i}] holds NaN or infinite values")
        sequences.append(array)
    widths = sorted({a.shape[1] for a in sequences})
    if len(widths) > 1:
        raise ValueError(f"{name}: every sequence must have the same features, got {widths}")
    return sequences


def _texts(y, count: int) -> list[str]:
    if isinstance(y, str) or not isinstance(y, list | tuple | np.ndarray):
        raise TypeError(f"y must be a list of transcripts (strings), got {type(y).__name__}")
    texts = list(y)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"y[{i}] must be a string, got {type(text).__name__}")
        if not text:
            raise ValueError(f"y[{i}] is an empty transcript: CTC needs at least one symbol")
    if len(texts) != count:
        raise ValueError(f"y must have one transcript per sequence: {count}, got {len(texts)}")
    return texts


def _over_ids(lm: Callable[[str, str], float], alphabet: str) -> CharLM:
    """The decoder's hook (class ids) from a language model over characters."""

    def over_ids(prefix: tuple[int, ...], symbol: int) -> float:
        return lm("".join(alphabet[k - 1] for k in prefix), alphabet[symbol - 1])

    return over_ids


def _check_alphabet(alphabet: str) -> None:
    if not isinstance(alphabet, str) or not alphabet:
        raise ValueError(f"alphabet must be a non-empty string, got {alphabet!r}")
    if len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet must not repeat characters, got {alphabet!r}")


def _encode(texts: list[str], alphabet: str) -> list[list[int]]:
    """Class ids (1..len(alphabet); 0 is the blank) of each transcript."""
    index = {c: k + 1 for k, c in enumerate(alphabet)}
    labels = []
    for i, text in enumerate(texts):
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(
                f"y[{i}] = {text!r} holds characters outside the alphabet {alphabet!r}: {unknown}"
            )
        labels.append([index[c] for c in text])
    return labels


def _check_alignable(x: list[np.ndarray], labels: list[list[int]]) -> None:
    """CTC needs a step per label plus a blank between equal neighbours, or the loss is inf."""
    for i, (steps, label) in enumerate(zip(x, labels, strict=True)):
        needed = len(label) + sum(a == b for a, b in pairwise(label))
        if len(steps) < needed:
            raise ValueError(
                f"y[{i}] has {len(label)} symbols and needs at least {needed} steps of X[{i}] "
                f"(a blank between repeated symbols), but X[{i}] has {len(steps)}"
            )


# ----------------------------------------------------------------------------- batches
def _batches(rows: np.ndarray, size: int) -> list[np.ndarray]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _padded(x: list[np.ndarray], rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """Sequences ``rows`` zero-padded to ``[T_max, B, F]`` and their lengths ``[B]``."""
    lengths = torch.tensor([len(x[i]) for i in rows])
    batch = torch.zeros(int(lengths.max()), len(rows), x[0].shape[1])
    for b, i in enumerate(rows):
        batch[: len(x[i]), b] = torch.from_numpy(x[i])
    return batch, lengths


def _ctc_loss(net: RecognizerNet, x, labels: list[list[int]], rows: np.ndarray) -> Tensor:
    inputs, lengths = _padded(x, rows)
    targets = torch.tensor([k for i in rows for k in labels[i]])  # concatenated: [sum L]
    target_lengths = torch.tensor([len(labels[i]) for i in rows])
    return F.ctc_loss(net(inputs, lengths), targets, lengths, target_lengths, blank=0)
