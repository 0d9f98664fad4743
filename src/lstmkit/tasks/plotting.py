"""PNG figures of the task estimators, written atomically (a temporary file, then renamed)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lstmkit.io import publish


def save_figure(
    path: str | os.PathLike, draw: Callable, *, width: float = 8.0, height: float = 3.0
) -> Path:
    """Draw on a new matplotlib figure with ``draw(figure)`` and write it to ``path`` as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {path.name!r}")
    if not path.parent.exists():
        raise FileNotFoundError(f"path's folder {path.parent} does not exist")
    figure = Figure(figsize=(width, height), layout="constrained")
    draw(figure)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=110)
        publish(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
