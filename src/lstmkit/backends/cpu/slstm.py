"""The sLSTM on the C++ engine (csrc/slstm*.cpp): torch.library ops with fake shapes and autograd.

The engine keeps every gate vector head-major (``[K, 4, E]`` per batch row, see csrc/slstm.h),
so ``run_slstm`` permutes the rows of ``weight_ih`` and ``bias`` from the cell's gate-major
``[4, K, E]`` order; autograd carries the permutation back to their gradients. An input that
is the projection already (a cell without input weights) stays gate-major: the engine
permutes it while copying it into its buffer. With one head both orders are the same.

Shapes: T steps, B batch, D input, H hidden, K heads, E = H / K.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.backends.cpu.ops import (
    backward_op,
    eager_twin,
    engine,
    gradient_like,
    layer_forward,
)
from lstmkit.cells.slstm import SLSTMCellSpec

Tensors8 = tuple[(Tensor,) * 8]
Tensors10 = tuple[(Tensor,) * 10]
SLSTM_SAVED = 5  # activations, aux (max split, d log f), h slots, c slots, n slots


def _forward(
    x: Tensor,  # [T, B, D], or the input projection [T, B, 4H] (gate-major) without weight_ih
    weight_ih: Tensor | None,  # [4H, D] head-major rows
    weight_hh: Tensor,  # [K, 4E, E]
    bias: Tensor | None,  # [4H] head-major
    h0: Tensor,  # [B, H]
    c0: Tensor,
    n0: Tensor,
    m0: Tensor,
    lengths: Tensor | None,  # [B] int64
    recurrent_mask: Tensor | None,  # [B, H]
    flags: list[int],  # [num_heads, sigmoid forget gate, reverse]
) -> Tensors10:
    """-> y, h_n, c_n, n_n, m_n, then the SLSTM_SAVED tensors backward needs."""
    out = engine().slstm_forward(
        x, weight_ih, weight_hh, bias, h0, c0, n0, m0, lengths, recurrent_mask, flags
    )
    return tuple(out)


slstm_layer_fwd = torch.library.custom_op(
    "lstmkit::slstm_layer_fwd", _forward, mutates_args=(), device_types="cpu"
)


@slstm_layer_fwd.register_fake
def _(x, weight_ih, weight_hh, bias, h0, c0, n0, m0, lengths, recurrent_mask, flags):
    T, B, _ = x.shape
    H = h0.shape[1]
    new = x.new_empty
    return (
        new(T, B, H), new(B, H), new(B, H), new(B, H), new(B, H),
        new(T, B, 4 * H), new(T, B, 2 * H), new(T + 1, B, H), new(T + 1, B, H),
        new(T + 1, B, H),
    )  # fmt: skip


def _backward_engine(
    grad_y: Tensor,
    grad_h_n: Tensor,
    grad_c_n: Tensor,
    grad_n_n: Tensor,
    grad_m_n: Tensor,
    x: Tensor,
    weight_ih: Tensor | None,
    weight_hh: Tensor,
    has_bias: bool,
    lengths: Tensor | None,
    recurrent_mask: Tensor | None,
    saved: list[Tensor],
    flags: list[int],
) -> Tensors8:
    """-> dx, dW_ih, dW_hh, dbias, dh0, dc0, dn0, dm0 (empty when absent; dW_ih and dbias
    head-major)."""
    out = engine().slstm_backward(
        grad_y, grad_h_n, grad_c_n, grad_n_n, grad_m_n, x, weight_ih, weight_hh, has_bias,
        lengths, recurrent_mask, saved, flags,
    )  # fmt: skip
    return tuple(out)


slstm_layer_bwd = torch.library.custom_op(
    "lstmkit::slstm_layer_bwd", _backward_engine, mutates_args=(), device_types="cpu"
)


@slstm_layer_bwd.register_fake
def _(grad_y, grad_h_n, grad_c_n, grad_n_n, grad_m_n, x, weight_ih, weight_hh, has_bias,
      lengths, recurrent_mask, saved, flags):  # fmt: skip
    def like(t: Tensor | None) -> Tensor:
        return gradient_like(t, x)

    H = grad_h_n.shape[1]
    return (
        like(x), like(weight_ih), like(weight_hh), x.new_empty(4 * H if has_bias else 0),
        like(grad_h_n), like(grad_h_n), like(grad_h_n), like(grad_h_n),
    )  # fmt: skip


def _setup_context(ctx, inputs, output) -> None:
    x, weight_ih, weight_hh, bias, _h0, _c0, _n0, _m0, lengths, recurrent_mask, flags = inputs
    saved = output[5:]
    ctx.mark_non_differentiable(*saved)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, weight_ih, weight_hh, lengths, recurrent_mask, *saved)
    ctx.flags, ctx.has_bias = flags, bias is not None


def _backward(ctx, grad_y, grad_h_n, grad_c_n, grad_n_n, grad_m_n, *_saved_grads):
    x, weight_ih, weight_hh, lengths, recurrent_mask, *saved = ctx.saved_tensors
    hs = saved[2]
    grads = [
        torch.zeros_like(like) if grad is None else grad
        for grad, like in zip(
            (grad_y, grad_h_n, grad_c_n, grad_n_n, grad_m_n),
            (hs[1:], hs[0], hs[0], hs[0], hs[0]),
            strict=True,
        )
    ]
    run = backward_op(ctx, slstm_layer_bwd, _backward_engine)
    dx, dw_ih, dw_hh, dbias, dh0, dc0, dn0, dm0 = run(
        *grads, x, weight_ih, weight_hh, ctx.has_bias, lengths, recurrent_mask, saved, ctx.flags
    )
    return (
        dx, dw_ih if weight_ih is not None else None, dw_hh, dbias if ctx.has_bias else None,
        dh0, dc0, dn0, dm0, None, None, None,
    )  # fmt: skip


slstm_layer_eager = eager_twin(slstm_layer_fwd, _forward, _setup_context, _backward)


def _head_major(tensor: Tensor, heads: int) -> Tensor:
    """The last dim's gate-major ``[4, K, E]`` layout as head-major ``[K, 4, E]``."""
    if heads == 1:
        return tensor
    *lead, size = tensor.shape
    blocks = tensor.reshape(*lead, 4, heads, size // (4 * heads))
    return blocks.transpose(-3, -2).reshape(*lead, size)


def run_slstm(
    cell: SLSTMCellSpec,
    params: dict[str, Tensor],
    x: Tensor,  # [T, B, D]
    state: tuple[Tensor, ...],  # h, c, n, m: each [B, H]
    lengths: Tensor | None,
    reverse: bool,
    recurrent_mask: Tensor | None,  # [B, H]
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One sLSTM layer-direction on the engine; see ``reference.run_layer``."""
    K = cell.num_heads
    bias = _head_major(params["bias"], K) if cell.bias else None
    weight_ih = None
    if cell.input_weights:  # weight_ih [4H, D]: its rows are the gate vector
        weight_ih = _head_major(params["weight_ih"].T, K).T
    flags = [K, int(cell.forget_gate == "sigmoid"), int(reverse)]
    y, h_n, c_n, n_n, m_n, *_ = layer_forward(slstm_layer_fwd, slstm_layer_eager)(
        x, weight_ih, params["weight_hh"], bias, *state, lengths, recurrent_mask, flags
    )
    return y, (h_n, c_n, n_n, m_n)
