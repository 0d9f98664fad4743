"""Which backend runs a module: ``backend="auto" | "reference" | "cpu" | "torch"``.

``LSTMKIT_BACKEND`` overrides the module's choice (for a whole test run or a benchmark).
``reference`` and ``cpu`` run one layer-direction at a time with ``reference.run_layer``'s
signature and return the same tensors; ``torch`` takes a whole LSTM or GRU stack at once
(``torch_backend.run_stack``) and returns what the module returns.

``"auto"`` hands the whole module to ``torch`` when torch.nn.LSTM / GRU compute its math
(``standard`` LSTM or reset-after GRU, default activations, no layer_norm, zoneout,
recurrent_dropout or cell_clip), torch.compile is not tracing it (dynamo cannot trace torch's
RNN kernels), and either

* the cpu engine does not run the input's device or dtype (a GPU, bfloat16): torch's kernels
  instead of the reference loop; or
* it is an LSTM without proj_size on float32 CPU tensors, without lengths or packing: there
  torch runs oneDNN's fused LSTM, measured 0.71-1.01x the engine's time in inference and
  1.02-1.59x in training at the five sizes of ``lstmkit bench`` (docs/benchmarks.md); one
  choice per module serves both modes, and inference decides it.

Otherwise ``"auto"`` runs each layer on the fused C++ engine (``cpu``) when the engine is
built and supports the cell, device and dtype, else on ``reference``. torch's GRU, projected
LSTM and packed input have no oneDNN kernel and measured 1.1-16x the engine's time, and
float64 (no oneDNN either) is mixed (0.8-1.15x), so the engine keeps them. The engine is compiled on
first use; if that fails, ``"auto"`` says so in one warning and uses ``reference`` from then
on. ``"cpu"`` and ``"torch"`` insist: a cell, option, device or dtype they do not run is a
ValueError naming what.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from lstmkit._checks import unknown_name
from lstmkit.backends import reference

RunLayer = Callable[..., tuple]

# The layer backends loaded so far; "cpu" joins when its engine builds (on first use).
# "torch" runs whole modules, not layers (see ``use_torch``).
BACKENDS: dict[str, RunLayer] = {"reference": reference.run_layer}
CHOICES = ("auto", "reference", "cpu", "torch")
_warned: list[bool] = []


def check_backend(
    argument: str, name: object, cells: Iterable = (), *, torch_reason: str | None = None
) -> str:
    """``name`` if it is a backend choice that can run ``cells``, else a ValueError.

    ``torch_reason`` is why torch's kernels cannot compute the module (see
    ``torch_backend.unsupported_reason``), or None if they can.
    """
    if not isinstance(name, str) or name not in CHOICES:
        raise unknown_name(argument, name, CHOICES)
    if name == "torch" and torch_reason is not None:
        raise _torch_refusal(argument, torch_reason)
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


def _chosen(requested: str) -> tuple[str, str]:
    """(the argument that decides, the backend it names): the environment wins."""
    override = os.environ.get("LSTMKIT_BACKEND")
    if override:
        return "LSTMKIT_BACKEND", check_backend("LSTMKIT_BACKEND", override)
    return "backend", requested


def _torch_refusal(argument: str, reason: str) -> ValueError:
    return ValueError(
        f"{argument}='torch' runs only what torch.nn.LSTM / torch.nn.GRU compute, and they do "
        f"not support {reason}; use backend='cpu', 'reference' or 'auto'"
    )


def use_torch(
    requested: str,
    torch_reason: str | None,
    x: Tensor,
    *,
    kind: str,
    projected: bool,
    lengths: Tensor | None,
) -> bool:
    """Whether a module hands its whole stack to torch's kernels for this call.

    ``requested``: the module's ``backend``; ``torch_reason``: why torch cannot compute the
    module, or None; ``x`` ``[T, B, D]`` and ``lengths`` ``[B]`` (None for full-length
    padded input): what it runs on; ``kind``: "lstm" or "gru"; ``projected``: proj_size is
    set. ``"torch"`` insists (a module torch
    cannot compute is a ValueError); ``"auto"`` follows the rule of this module's docstring.
    """
    argument, name = _chosen(requested)
    if name == "torch":
        if torch_reason is not None:
            raise _torch_refusal(argument, torch_reason)
        return True
    if name != "auto" or torch_reason is not None:
        return False
    if torch.compiler.is_compiling():  # dynamo refuses torch's RNN kernels: a graph break
        return False
    from lstmkit.backends import cpu

    if cpu.tensors_reason(x) is not None:  # a GPU, bfloat16, ...: torch, not the Python loop
        return True
    # where torch runs oneDNN's fused LSTM: float32, no projection, no packing
    return kind == "lstm" and x.dtype == torch.float32 and not projected and lengths is None


def resolve(requested: str) -> RunLayer:
    """The layer runner for a module's ``backend`` argument (the environment wins)."""
    argument, name = _chosen(requested)
    if name == "auto":
        return _run_auto
    if name == "cpu":
        return _run_cpu
    if name == "torch":
        raise ValueError(
            f"{argument}='torch' runs whole LSTM and GRU modules (see use_torch), not one layer"
        )
    return BACKENDS[name]
