"""``lstmkit predict``: read an input file, run a trained model, format its predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lstmkit.data import CharVocabulary
from lstmkit.training import load_trained
from lstmkit.training.ctc import best_path


def read_input(path: Path, tokens: bool, vocabulary: str | None) -> torch.Tensor:
    """``[T, B, D]`` features or ``[T, B]`` token ids from a .npy, .csv or .txt file."""
    if not path.is_file():
        raise FileNotFoundError(f"input {str(path)!r} does not exist or is not a file")
    if path.suffix == ".txt":
        if vocabulary is None:
            raise ValueError("input .txt needs a character model; this model reads features")
        return CharVocabulary(vocabulary).encode(path.read_text(encoding="utf-8"))[:, None]
    if path.suffix == ".npy":
        array = np.load(path)
    elif path.suffix == ".csv":
        array = np.loadtxt(path, delimiter=",", ndmin=2)
    else:
        raise ValueError(f"input must be a .npy, .csv or .txt file, got {path.name!r}")
    data = torch.as_tensor(array)
    rank = 1 if tokens else 2
    if data.dim() == rank:
        data = data.unsqueeze(0)  # one sequence
    if data.dim() != rank + 1:
        raise ValueError(
            f"input must be [T{'' if tokens else ', D'}] or [B, T{'' if tokens else ', D'}], "
            f"got shape {tuple(data.shape)}"
        )
    data = data.transpose(0, 1)  # time first
    return data.long() if tokens else data.float()


def predict_file(checkpoint: Path, input: Path, output: Path | None) -> list[str]:
    net, config, info = load_trained(checkpoint)
    x = read_input(input, info.tokens, info.vocabulary)
    if not info.tokens and x.shape[-1] != info.input_size:
        raise ValueError(f"input must have {info.input_size} features per step, got {x.shape[-1]}")
    with torch.no_grad():
        outputs, _ = net(x)
    if output is not None:  # batch first, like the input file
        np.save(output, (outputs if outputs.dim() == 2 else outputs.transpose(0, 1)).numpy())
    if config.task == "sequence":
        return [f"sequence {b}: {row.tolist()}" for b, row in enumerate(outputs)]
    if config.task == "ctc":
        lengths = torch.full((x.shape[1],), x.shape[0])
        return [
            f"sequence {b}: {labels}"
            for b, labels in enumerate(best_path(outputs.log_softmax(-1), lengths))
        ]
    predicted = outputs.argmax(-1).T  # [B, T]
    if info.vocabulary is not None:
        vocabulary = CharVocabulary(info.vocabulary)
        return [f"next characters: {vocabulary.decode(row)!r}" for row in predicted]
    return [f"sequence {b}: {row.tolist()}" for b, row in enumerate(predicted)]
