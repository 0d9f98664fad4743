"""Build and load the C++ engine (csrc/) once, with torch's JIT extension builder.

The build is cached under ``$LSTMKIT_CACHE`` (default ``~/.cache/lstmkit``) in a folder named
by a hash of the sources, the torch version and the flags, so it compiles once per machine and
version and a changed source never loads a stale library. Nothing is downloaded. When there is
no compiler, no ninja, or the build fails, :func:`load` returns None and :func:`error` says why;
``import lstmkit`` always works and the registry falls back to the reference backend.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

import torch

SOURCES = (
    "activations.h",
    "common.h",
    "lstm.h",
    "gru.h",
    "gemm.cpp",
    "workspace.cpp",
    "reduce.cpp",
    "lstm_forward.cpp",
    "lstm_backward.cpp",
    "gru_forward.cpp",
    "gru_backward.cpp",
    "slstm.h",
    "slstm_forward.cpp",
    "slstm_backward.cpp",
    "convlstm_gates.cpp",
    "bindings.cpp",
)
# No -march=native: the hot loops are multi-versioned in the source instead. OpenMP makes
# at::parallel_for (an inline template) parallel; libgomp resolves to the one torch loaded.
CFLAGS = ("-O3", "-fopenmp") if sys.platform.startswith("linux") else ("-O3",)
LDFLAGS = ("-fopenmp",) if sys.platform.startswith("linux") else ()

_lock = threading.Lock()
_state: dict[str, object] = {}


def source_dir() -> Path:
    """``csrc/`` at the repository root (this file is src/lstmkit/backends/cpu/_build.py)."""
    return Path(__file__).resolve().parents[4] / "csrc"


def cache_dir() -> Path:
    root = os.environ.get("LSTMKIT_CACHE") or Path.home() / ".cache" / "lstmkit"
    return Path(root)


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(f"{torch.__version__} {sys.version} {CFLAGS} {LDFLAGS}".encode())
    return digest.hexdigest()[:16]


def _build() -> ModuleType:
    from torch.utils.cpp_extension import load as load_extension

    folder = source_dir()
    paths = [folder / name for name in SOURCES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"C++ sources not found: {', '.join(missing)}")
    tag = _digest(paths)
    build_dir = cache_dir() / f"ext-{tag}"
    build_dir.mkdir(parents=True, exist_ok=True)
    return load_extension(
        name=f"lstmkit_cpu_{tag}",
        sources=[str(p) for p in paths if p.suffix == ".cpp"],
        extra_cflags=list(CFLAGS),
        extra_ldflags=list(LDFLAGS),
        build_directory=str(build_dir),
        verbose=False,
    )


def load() -> ModuleType | None:
    """The compiled engine, building it on first use; None if it cannot be built."""
    if "module" in _state:
        return _state["module"]  # type: ignore[return-value]
    with _lock:
        if "module" not in _state:
            if os.environ.get("LSTMKIT_NO_EXTENSION"):
                module, reason = None, "LSTMKIT_NO_EXTENSION is set"
            else:
                try:
                    module, reason = _build(), None
                except Exception as exc:  # no compiler, no ninja, a compile error, ...
                    message = f"{type(exc).__name__}: {exc}".strip()
                    if len(message) > 2000:  # a compiler log: its end says what failed
                        message = message[:300] + " ... " + message[-1500:]
                    module, reason = None, message
            _state["module"], _state["error"] = module, reason
    return _state["module"]  # type: ignore[return-value]


def error() -> str | None:
    """Why :func:`load` returned None (None when it has not failed)."""
    load()
    return _state.get("error")  # type: ignore[return-value]
