"""Saving the task estimators (Forecaster, AnomalyDetector): networks + the estimator's state.

One ``.safetensors`` file holds every member network's weights (``member{k}.<name>``); its
metadata holds the estimator's kind, its settings and what it learned besides weights
(scalers, the tail of the history) as JSON. Written to a temporary file and renamed, as
``lstmkit.save`` does, so a failed save never leaves half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

import lstmkit
from lstmkit.io import read, write


def save_members(
    path: str | os.PathLike, kind: str, members: list[lstmkit.SequenceNet], state: dict
) -> Path:
    """Write ``members`` and ``state`` (JSON-able) for an estimator of ``kind`` to ``path``."""
    tensors = {
        f"member{k}.{name}": tensor.detach().cpu().contiguous()
        for k, member in enumerate(members)
        for name, tensor in member.state_dict().items()
    }
    config = {"kind": kind, "members": [member.to_dict() for member in members]}
    return write(path, tensors, config, state)


def load_members(path: str | os.PathLike, kind: str) -> tuple[dict, list[lstmkit.SequenceNet]]:
    """The state and the member networks that ``save_members`` wrote for ``kind``."""
    config, tensors, state = read(path)
    if config.get("kind") != kind:
        raise ValueError(f"path {path} holds a {config.get('kind')!r}, not a saved {kind}")
    members = []
    for k, member_config in enumerate(config["members"]):
        settings = dict(member_config)
        settings.pop("kind")
        member = lstmkit.SequenceNet(lstmkit.SequenceNetConfig(**settings))
        prefix = f"member{k}."
        member.load_state_dict(
            {name[len(prefix) :]: t for name, t in tensors.items() if name.startswith(prefix)}
        )
        members.append(member)
    return state or {}, members


def frame_to_json(frame: pd.DataFrame) -> dict:
    """A frame as JSON-able columns; datetimes as integer nanoseconds (exact round trip)."""
    columns = {}
    datetimes = []
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_datetime64_any_dtype(values):
            datetimes.append(name)
            values = values.astype("datetime64[ns]").astype(np.int64)
        columns[name] = values.tolist()
    return {"columns": columns, "datetimes": datetimes}


def frame_from_json(data: dict) -> pd.DataFrame:
    frame = pd.DataFrame(data["columns"])
    for name in data["datetimes"]:
        frame[name] = pd.to_datetime(frame[name].astype(np.int64), unit="ns")
    return frame
