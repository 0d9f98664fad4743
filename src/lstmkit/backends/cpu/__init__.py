"""The ``cpu`` backend: fused C++ forward and backward loops (csrc/), same contract as reference.

``run_layer`` has ``reference.run_layer``'s signature and returns the same tensors (to
rounding). It turns a cell into flags for the engine and its parameters into the engine's
internal gate order (the gates other than g in i, f, o order, then g), so that every block a
GEMM reads is a prefix of a row; autograd carries the permutation back to the gradients.

The sLSTM has its own loop in the engine (``slstm.py`` here, csrc/slstm.h).

``supports(cell)`` says whether the engine runs a cell; ``unsupported_reason`` says why not.
The extension is compiled on first use (see ``_build``); ``available()`` tries that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.backends.cpu import _build
from lstmkit.cells import CellSpec, GRUCellSpec, LSTMCellSpec, SLSTMCellSpec

# the engine's activation ids (csrc/activations.h)
ACTIVATION_IDS = {"sigmoid": 0, "tanh": 1, "identity": 2, "relu": 3, "hard_sigmoid": 4}
DTYPES = (torch.float32, torch.float64)


@torch.compiler.assume_constant_result  # torch.compile runs it once, eagerly, and keeps it
def available() -> bool:
    """Whether the C++ engine is built and loaded (builds it on first call)."""
    return _build.load() is not None


def empty_cache() -> None:
    """Free the engine's cache of recycled buffers (up to ``LSTMKIT_WORKSPACE_MB``, 1024 by
    default, of memory that large saved activations come back to between calls)."""
    module = _build.load()
    if module is not None:
        module.empty_workspace_cache()


@contextmanager
def step_gemm(kernel: str) -> Iterator[None]:
    """Run the loops' per-step float32 GEMMs on ``kernel`` inside the block: ``"brgemm"``
    (oneDNN's micro-kernel through torch, the default where torch has it) or ``"aten"``
    (at::mm; float64 always). Both give the same results to rounding; this exists so tests
    can check each and benchmarks can compare them. ``LSTMKIT_STEP_GEMM=aten`` sets the
    default."""
    module = _build.load()
    if module is None:
        raise RuntimeError(f"the C++ engine is not available: {_build.error()}")
    before = module.set_step_gemm(kernel)
    try:
        yield
    finally:
        module.set_step_gemm(before)


def build_error() -> str | None:
    """Why the engine could not be built, or None."""
    return _build.error()


def unsupported_reason(cell: CellSpec) -> str | None:
    """None if the engine runs ``cell``, else the option it does not support."""
    if isinstance(cell, LSTMCellSpec):
        for slot, name in zip(("sigma_g", "sigma_c", "sigma_h"), cell.activations, strict=True):
            if name not in ACTIVATION_IDS:
                return f"{slot}={name!r}"
        return None
    if isinstance(cell, GRUCellSpec | SLSTMCellSpec):
        return None
    return f"cells of type {type(cell).__name__}"


def supports(cell: CellSpec) -> bool:
    return unsupported_reason(cell) is None


def tensors_reason(x: Tensor) -> str | None:
    """None if the engine runs on ``x``'s device and dtype, else what is wrong."""
    if x.device.type != "cpu":
        return f"a tensor on {x.device} (it runs on CPU tensors)"
    if x.dtype not in DTYPES:
        return f"dtype {x.dtype} (it runs float32 and float64)"
    return None


# --------------------------------------------------------------------------- LSTM
@dataclass(frozen=True)
class _LSTMLayout:
    perm: tuple[int, ...] | None  # internal block j is user block perm[j]; None: identity
    recurrent_all: bool  # every gate block reads the recurrent product (not full peephole)
    flags: tuple[int, ...]  # all but the trailing ``reverse`` flag


def _lstm_layout(cell: LSTMCellSpec) -> _LSTMLayout:
    v = cell.variant
    internal = [gate for gate in v.gates if gate != "g"] + ["g"]
    perm = tuple(v.gates.index(gate) for gate in internal)

    def index(gate: str) -> int:
        return internal.index(gate) if gate in internal else -1

    peephole = {"none": 0, "diagonal": 1, "full": 2}[v.peephole]
    act_g, act_c, act_h = (ACTIVATION_IDS[name] for name in cell.activations)
    flags = (index("i"), index("f"), index("o"), int(v.coupled), peephole,
             int(bool(v.feedback_gates)), act_g, act_c, act_h)  # fmt: skip
    identity = perm == tuple(range(len(perm)))
    return _LSTMLayout(None if identity else perm, v.peephole != "full", flags)


def _permute(tensor: Tensor, perm: tuple[int, ...] | None, hidden: int) -> Tensor:
    """Reorder the gate blocks (dim 0, ``hidden`` rows each) of a fused weight or bias."""
    if perm is None:
        return tensor
    return torch.cat([tensor.narrow(0, j * hidden, hidden) for j in perm])


def _run_lstm(cell, params, x, state, lengths, reverse, zoneout_masks, recurrent_mask):
    from lstmkit.backends.cpu.ops import layer_forward, lstm_layer_eager, lstm_layer_fwd

    layout, H = _lstm_layout(cell), cell.hidden_size

    def internal(name: str, recurrent: bool = False) -> Tensor:
        """A fused parameter in the engine's gate order (recurrent ones without g for the
        full peephole are in that order already)."""
        if recurrent and not layout.recurrent_all:
            return params[name]
        return _permute(params[name], layout.perm, H)

    w_ih, bias, ln = internal("weight_ih"), None, {}
    if cell.bias:  # b_hh adds to the first R internal blocks: fold it into the input side
        b_hh = internal("bias_hh", recurrent=True)
        bias = _pad_add(internal("bias_ih"), b_hh)
    if cell.layer_norm:
        # the input side is layer-normalised per gate over all steps at once here (one GEMM);
        # the engine gets the projection, and the recurrent shift joins its bias
        shift = internal("ln_hh_bias", recurrent=True)
        projection = {
            "weight_ih": w_ih,
            "ln_ih_weight": internal("ln_ih_weight"),
            "ln_ih_bias": internal("ln_ih_bias"),
        }
        if cell.bias:
            projection["bias_ih"] = _pad_add(bias, shift)
        x = cell.input_projection(projection, x)
        if not cell.bias:
            x = x + _pad_add(torch.zeros_like(x[0, 0]), shift)
        w_ih = bias = None
        ln = {
            "ln_hh_weight": internal("ln_hh_weight", recurrent=True),
            "ln_c_weight": params["ln_c_weight"],
            "ln_c_bias": params["ln_c_bias"],
        }
    w_hh = internal("weight_hh", recurrent=True)
    masks = (*(zoneout_masks or ()), None, None, None)
    fgr = layout.flags[5]
    y, h_n, c_n, a_n, *_ = layer_forward(lstm_layer_fwd, lstm_layer_eager)(
        x, w_ih, w_hh, bias, params.get("weight_ch"), params.get("weight_gg"),
        params.get("weight_hr"), ln.get("ln_hh_weight"), ln.get("ln_c_weight"),
        ln.get("ln_c_bias"), state[0], state[1], state[2] if fgr else None, lengths, masks[0],
        masks[1], masks[2] if fgr else None, recurrent_mask, [*layout.flags, int(reverse)],
        float(cell.cell_clip or 0.0),
    )  # fmt: skip
    return y, ((h_n, c_n, a_n) if fgr else (h_n, c_n))


def _pad_add(full: Tensor, prefix: Tensor) -> Tensor:
    """``full`` with ``prefix`` added to its first ``len(prefix)`` entries."""
    if prefix.shape[0] == full.shape[0]:
        return full + prefix
    n = prefix.shape[0]
    return torch.cat([full[:n] + prefix, full[n:]])


# --------------------------------------------------------------------------- GRU
def _run_gru(cell, params, x, state, lengths, reverse, zoneout_masks, recurrent_mask):
    from lstmkit.backends.cpu.ops import gru_layer_eager, gru_layer_fwd, layer_forward

    H = cell.hidden_size
    w_ih, bias, bias_hn, ln_w = params["weight_ih"], None, None, None
    # recurrent shifts that only add join the input side; r multiplies b_hn in reset-after
    shift = None
    if cell.bias:
        shift = params["bias_hh"]
    if cell.layer_norm:
        ln_shift = params["ln_hh_bias"]
        shift = ln_shift if shift is None else shift + ln_shift
    if shift is not None and cell.reset_after:
        shift, bias_hn = torch.cat([shift[: 2 * H], shift.new_zeros(H)]), shift[2 * H :]
    if cell.layer_norm:  # Python projects and normalises the input side, all steps at once
        projection = {k: params[k] for k in ("weight_ih", "ln_ih_weight", "ln_ih_bias")}
        if cell.bias:
            projection["bias_ih"] = params["bias_ih"] + shift
        x = cell.input_projection(projection, x)
        if not cell.bias:
            x = x + shift
        w_ih, ln_w = None, params["ln_hh_weight"]
    elif cell.bias:
        bias = params["bias_ih"] + shift
    zoneout_h = zoneout_masks[0] if zoneout_masks else None
    y, h_n, *_ = layer_forward(gru_layer_fwd, gru_layer_eager)(
        x, w_ih, params["weight_hh"], bias, bias_hn, ln_w, state[0], lengths, zoneout_h,
        recurrent_mask, [int(cell.reset_after), int(reverse)],
    )  # fmt: skip
    return y, (h_n,)


# --------------------------------------------------------------------------- entry point
def run_layer(
    cell: CellSpec,
    params: dict[str, Tensor],
    x: Tensor,  # [T, B, D]
    state: tuple[Tensor, ...],  # the cell's states, each [B, size]
    *,
    lengths: Tensor | None = None,  # [B] int64, 1 <= lengths <= T
    reverse: bool = False,
    zoneout_masks: tuple[Tensor | None, ...] | None = None,  # per state: [T, B, size] or None
    recurrent_mask: Tensor | None = None,  # [B, cell.recurrent_input_size]
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run one layer in one direction on the C++ engine; see ``reference.run_layer``.

    Raises ValueError for a cell, device or dtype the engine does not run.
    """
    reason = unsupported_reason(cell) or tensors_reason(x)
    if reason is not None:
        raise ValueError(f"backend='cpu' does not support {reason}; use backend='reference'")
    if lengths is not None:
        lengths = lengths.to(device=x.device, dtype=torch.int64)
    dtype = x.dtype
    if zoneout_masks is not None:
        zoneout_masks = tuple(None if m is None else m.to(dtype) for m in zoneout_masks)
    if recurrent_mask is not None:
        recurrent_mask = recurrent_mask.to(dtype)
    if isinstance(cell, LSTMCellSpec):
        return _run_lstm(cell, params, x, state, lengths, reverse, zoneout_masks, recurrent_mask)
    if isinstance(cell, SLSTMCellSpec):
        if any(mask is not None for mask in zoneout_masks or ()):
            raise ValueError("backend='cpu' does not run zoneout on the sLSTM (it has none)")
        from lstmkit.backends.cpu.slstm import run_slstm

        return run_slstm(cell, params, x, state, lengths, reverse, recurrent_mask)
    return _run_gru(cell, params, x, state, lengths, reverse, zoneout_masks, recurrent_mask)


__all__ = [
    "available",
    "build_error",
    "empty_cache",
    "run_layer",
    "supports",
    "unsupported_reason",
]
