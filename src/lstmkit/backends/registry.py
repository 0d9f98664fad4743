"""Which backend runs a layer: ``backend="auto" | "reference" | "cpu"`` on every module.

``LSTMKIT_BACKEND`` overrides the module's choice (for a whole test run or a benchmark).
Every backend has ``reference.run_layer``'s signature and returns the same tensors.

``"auto"`` runs each layer on the fused C++ engine (``cpu``) when the engine is built and
supports the cell, device and dtype, else on ``reference``. The engine is compiled on first
use; if that fails, ``"auto"`` says so in one warning and uses ``reference`` from then on.
``"cpu"`` insists: a cell, device or dtype it does not run is a ValueError naming what.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable

from torch import Tensor

from lstmkit._checks import unknown_name
from lstmkit.backends import reference

RunLayer = Callable[..., tuple]

# The backends loaded so far; "cpu" joins when its engine builds (on first use).
BACKENDS: dict[str, RunLayer] = {"reference": reference.run_layer}
CHOICES = ("auto", "reference", "cpu")
_warned: list[bool] = []


def check_backend(argument: str, name: object, cells: Iterable = ()) -> str:
    """``name`` if it is a backend choice that can run ``cells``, else a ValueError."""
    if not isinstance(name, str) or name not in CHOICES:
        raise unknown_name(argument, name, CHOICES)
    if name == "cpu":
        from lstmkit.backends import cpu

        for cell in cells:
            reason = cpu.unsupported_reason(cell)
            if reason is not None:
                raise ValueError(
                    f"{argument}='cpu' does not support {reason}; "
                    "use backend='reference' or backend='auto'"
                )
    return name


def _cpu_engine():
    """The cpu backend module if its engine is built (building it on first call), else None."""
    from lstmkit.backends import cpu

    if cpu.available():
        if "cpu" not in BACKENDS:
            BACKENDS["cpu"] = cpu.run_layer
        return cpu
    return None


def _run_cpu(cell, params, x, state, **options):
    cpu = _cpu_engine()
    if cpu is None:
        from lstmkit.backends.cpu import build_error

        raise ValueError(
            f"backend='cpu' is unavailable: its C++ engine did not build ({build_error()}); "
            "use backend='reference' or backend='auto'"
        )
    return cpu.run_layer(cell, params, x, state, **options)


def _run_auto(cell, params, x: Tensor, state, **options):
    """The fused engine where it runs this cell on these tensors, else the reference loop."""
    from lstmkit.backends import cpu

    if cpu.supports(cell) and cpu.tensors_reason(x) is None:
        if _cpu_engine() is not None:
            return cpu.run_layer(cell, params, x, state, **options)
        if not _warned:
            _warned.append(True)
            warnings.warn(
                "lstmkit: the fused C++ CPU engine could not be built, so backend='auto' runs "
                f"the slower reference loop ({cpu.build_error()})",
                RuntimeWarning,
                stacklevel=3,
            )
    return reference.run_layer(cell, params, x, state, **options)


def resolve(requested: str) -> RunLayer:
    """The layer runner for a module's ``backend`` argument (the environment wins)."""
    override = os.environ.get("LSTMKIT_BACKEND")
    name = check_backend("LSTMKIT_BACKEND", override) if override else requested
    if name == "auto":
        return _run_auto
    if name == "cpu":
        return _run_cpu
    return BACKENDS[name]
