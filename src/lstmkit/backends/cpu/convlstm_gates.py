"""ConvLSTM's per-step gate math as one fused C++ pass (csrc/convlstm_gates.cpp), with autograd.

``ConvLSTMCellSpec.step`` computes the convolutions with ATen and hands the pre-activations
here when :func:`usable` says so; otherwise it runs its own ATen code, which stays the
reference this pass is tested against. The ops are ``torch.library`` custom ops with fake
implementations, so ``torch.compile`` sees through them as it does the engine's LSTM ops.

Switch: ``LSTMKIT_CONVLSTM_GATES=0`` (or ``off``, ``reference``) in the environment, read at
import, or ``with fused_gates(False):`` at run time, makes every step take the ATen path;
``LSTMKIT_NO_EXTENSION`` turns off the whole engine, this pass included.

Shapes: B batch, C hidden channels, S the spatial dims (1, 2 or 3 of them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from lstmkit.backends.cpu import DTYPES, available
from lstmkit.backends.cpu.ops import engine

ENV = "LSTMKIT_CONVLSTM_GATES"


def enabled_by_environment() -> bool:
    """False where ``LSTMKIT_CONVLSTM_GATES`` is ``0``, ``off`` or ``reference``."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "reference")


_switch = {"on": enabled_by_environment()}


@contextmanager
def fused_gates(enabled: bool) -> Iterator[None]:
    """Within the block, ConvLSTM steps use the fused pass (``True``, where usable) or never
    (``False``): the way to compare the two in one process."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    before = _switch["on"]
    _switch["on"] = enabled
    try:
        yield
    finally:
        _switch["on"] = before


def usable(pre: Tensor, c_prev: Tensor, weight_ch: Tensor | None) -> bool:
    """Whether the fused pass runs these tensors: switched on, all on the CPU in one of
    float32 / float64, and the engine built (built on first call)."""
    if not _switch["on"]:
        return False
    tensors = (pre, c_prev) if weight_ch is None else (pre, c_prev, weight_ch)
    for tensor in tensors:
        if tensor.device.type != "cpu" or tensor.dtype != pre.dtype:
            return False
    return pre.dtype in DTYPES and available()


# --------------------------------------------------------------------------- custom ops
@torch.library.custom_op("lstmkit::convlstm_gates_fwd", mutates_args=(), device_types="cpu")
def convlstm_gates_fwd(
    pre: Tensor,  # [B, 4C, *S] W*x + U*h + b, gates i, f, g, o
    c_prev: Tensor,  # [B, C, *S]
    weight_ch: Tensor | None,  # [3C] (channel) or [3C, *S] (spatial) peepholes i, f, o
    save: bool,  # keep what backward needs
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> h_t, c_t, and when ``save`` the activations [B, 4C, *S] σ(i), σ(f), tanh(g), σ(o)
    and tanh(c_t) [B, C, *S] (empty tensors otherwise)."""
    return tuple(engine().convlstm_gates_forward(pre, c_prev, weight_ch, save))


@convlstm_gates_fwd.register_fake
def _(pre, c_prev, weight_ch, save):
    def saved(like: Tensor) -> Tensor:
        return like.new_empty(like.shape if save else (0,))

    return c_prev.new_empty(c_prev.shape), c_prev.new_empty(c_prev.shape), saved(pre), saved(c_prev)


@torch.library.custom_op("lstmkit::convlstm_gates_bwd", mutates_args=(), device_types="cpu")
def convlstm_gates_bwd(
    grad_h: Tensor,  # [B, C, *S]
    grad_c: Tensor,  # [B, C, *S] dL/dc_t from outside the step
    acts: Tensor,  # [B, 4C, *S]
    tanh_c: Tensor,  # [B, C, *S]
    c_prev: Tensor,  # [B, C, *S]
    c: Tensor,  # [B, C, *S] c_t
    weight_ch: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """-> d pre [B, 4C, *S], d c_prev [B, C, *S], d weight_ch (its shape; empty without)."""
    return tuple(
        engine().convlstm_gates_backward(grad_h, grad_c, acts, tanh_c, c_prev, c, weight_ch)
    )


@convlstm_gates_bwd.register_fake
def _(grad_h, grad_c, acts, tanh_c, c_prev, c, weight_ch):
    weight_grad = c_prev.new_empty(0) if weight_ch is None else weight_ch.new_empty(weight_ch.shape)
    return acts.new_empty(acts.shape), c_prev.new_empty(c_prev.shape), weight_grad


def _setup_context(ctx, inputs, output) -> None:
    _pre, c_prev, weight_ch, _save = inputs
    _h, c, acts, tanh_c = output
    ctx.mark_non_differentiable(acts, tanh_c)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(acts, tanh_c, c_prev, c, weight_ch)


def _backward(ctx, grad_h, grad_c, _grad_acts, _grad_tanh_c):
    acts, tanh_c, c_prev, c, weight_ch = ctx.saved_tensors
    if acts.numel() == 0 and c.numel() > 0:
        raise RuntimeError("convlstm_gates: backward needs save=True in forward")
    grad_h = torch.zeros_like(c) if grad_h is None else grad_h
    grad_c = torch.zeros_like(c) if grad_c is None else grad_c
    d_pre, d_c_prev, d_weight = convlstm_gates_bwd(
        grad_h, grad_c, acts, tanh_c, c_prev, c, weight_ch
    )
    return d_pre, d_c_prev, d_weight if weight_ch is not None else None, None


convlstm_gates_fwd.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------- entry point
def convlstm_gates(
    pre: Tensor,  # [B, 4C, *S] pre-activations, gates i, f, g, o
    c_prev: Tensor,  # [B, C, *S]
    weight_ch: Tensor | None = None,  # [3C] or [3C, *S] peepholes i, f, o
) -> tuple[Tensor, Tensor]:
    """One ConvLSTM step's gates, fused: returns h_t, c_t ``[B, C, *S]``.

    i += V_i ⊙ c_{t-1}, f += V_f ⊙ c_{t-1}, c_t = σ(f) c_{t-1} + σ(i) tanh(g),
    o += V_o ⊙ c_t, h_t = σ(o) tanh(c_t), exactly as ``ConvLSTMCellSpec.step``; the V terms
    only with ``weight_ch``. Differentiable in ``pre``, ``c_prev`` and ``weight_ch``.
    """
    tracked = (pre, c_prev) if weight_ch is None else (pre, c_prev, weight_ch)
    save = torch.is_grad_enabled() and any(t.requires_grad for t in tracked)
    h, c, _acts, _tanh_c = convlstm_gates_fwd(pre, c_prev, weight_ch, save)
    return h, c


__all__ = ["ENV", "convlstm_gates", "enabled_by_environment", "fused_gates", "usable"]
