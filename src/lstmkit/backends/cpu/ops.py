"""torch.library custom ops over the C++ engine: forward, backward, fake (meta) shapes, autograd.

Custom ops (rather than a bare ``autograd.Function``) keep the engine opaque to
``torch.compile(fullgraph=True)``: the fake implementations give it every output's shape.
Eager training calls each forward op's twin instead (``layer_forward``): an
``autograd.Function`` with the same forward, ``setup_context`` and backward, without
torch.library's autograd dispatch (which fills in the long schema's defaults on every call):
0.13 ms less per training call here, an eighth of a whole T=1 training step. Its backward
calls the engine's backward function straight, not the backward op (``backward_op``), for
the same reason. Without gradients the op itself is the faster of the two.
The forward op returns its outputs *and* what its backward needs (gate activations, state
slots, ...) as plain tensors; ``setup_context`` saves the latter and marks them
non-differentiable. Weights arrive already permuted into the engine's internal gate order
(see ``lstmkit.backends.cpu``); absent pieces are None on the way in and empty tensors on the
way out (the schema has a fixed number of outputs).

Shapes: T steps, B batch, D input, H hidden, P output, G gate blocks, F = G - 1 feedback
blocks (FGR), Rin the recurrent input size.
"""

from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lstmkit.backends.cpu import _build

Tensors7 = tuple[(Tensor,) * 7]
Tensors13 = tuple[(Tensor,) * 13]
Tensors15 = tuple[(Tensor,) * 15]
# flags: [idx_i, idx_f, idx_o, coupled, peephole, fgr, act_g, act_c, act_h, reverse]
FLAG_FGR = 5


def engine():
    module = _build.load()
    if module is None:
        raise RuntimeError(f"the lstmkit C++ engine is unavailable: {_build.error()}")
    return module


def eager_twin(op, forward: Callable, setup_context: Callable, backward: Callable) -> Callable:
    """Register ``setup_context`` and ``backward`` as ``op``'s autograd, and return the same
    three as an ``autograd.Function``'s ``apply``: what eager code calls (see the module
    docstring); ``layer_forward`` picks between the two."""
    op.register_autograd(backward, setup_context=setup_context)

    class EagerTwin(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            output = forward(*inputs)
            setup_context(ctx, inputs, output)
            ctx.eager_twin = True  # backward_op: call the engine's backward straight
            return output

    # the engine's backward has no derivative of its own: a second one raises, clearly
    EagerTwin.backward = staticmethod(once_differentiable(backward))
    EagerTwin.__name__ = EagerTwin.__qualname__ = f"Eager_{op._name.split('::')[-1]}"
    return EagerTwin.apply


def backward_op(ctx, op, run: Callable) -> Callable:
    """What a backward calls: under the eager twin the engine function ``run`` itself (as the
    twin skips torch.library's per-call work going forward, this skips it coming back), else
    the backward ``op``, which torch.compile traces through its fake implementation."""
    return run if getattr(ctx, "eager_twin", False) else op


def layer_forward(op, eager: Callable) -> Callable:
    """The eager twin when autograd records outside torch.compile; the custom op otherwise
    (torch.compile sees the op and its fake shapes)."""
    if torch.compiler.is_compiling() or not torch.is_grad_enabled():
        return op
    return eager


def gradient_like(t: Tensor | None, x: Tensor) -> Tensor:
    """A fake backward's gradient for input ``t``: its shape, or empty where ``t`` is absent
    (the engine returns an empty tensor for an absent input)."""
    return x.new_empty(0) if t is None else t.new_empty(t.shape)


# --------------------------------------------------------------------------- LSTM
LSTM_SAVED = 11  # acts, h slots, c slots, sigma_h(c), c raw, hh, a slots, 4 of layer norm


def _lstm_forward(
    x: Tensor,  # [T, B, D], or the input projection [T, B, G*H] when weight_ih is None
    weight_ih: Tensor | None,  # [G*H, D]
    weight_hh: Tensor,  # [R*H, Rin]
    bias: Tensor | None,  # [G*H]: b_ih + b_hh, folded
    weight_ch: Tensor | None,  # [(G-1)*H] diagonal peepholes
    weight_gg: Tensor | None,  # [F*H, F*H] gate recurrence
    weight_hr: Tensor | None,  # [P, H] projection
    ln_hh_weight: Tensor | None,  # [R*H] layer-norm gain of the recurrent product
    ln_c_weight: Tensor | None,  # [H] layer-norm gain and shift of c before sigma_h
    ln_c_bias: Tensor | None,  # [H]
    h0: Tensor,  # [B, P]
    c0: Tensor,  # [B, H]
    a0: Tensor | None,  # [B, F*H] FGR gate state
    lengths: Tensor | None,  # [B] int64
    zoneout_h: Tensor | None,  # [T, B, P]
    zoneout_c: Tensor | None,  # [T, B, H]
    zoneout_a: Tensor | None,  # [T, B, F*H]
    recurrent_mask: Tensor | None,  # [B, Rin]
    flags: list[int],
    cell_clip: float,
) -> Tensors15:
    """-> y, h_n, c_n, a_n, then the LSTM_SAVED tensors backward needs."""
    out = engine().lstm_forward(
        x, weight_ih, weight_hh, bias, weight_ch, weight_gg, weight_hr, ln_hh_weight,
        ln_c_weight, ln_c_bias, h0, c0, a0, lengths, zoneout_h, zoneout_c, zoneout_a,
        recurrent_mask, flags, cell_clip,
    )  # fmt: skip
    return tuple(out)


lstm_layer_fwd = torch.library.custom_op(
    "lstmkit::lstm_layer_fwd", _lstm_forward, mutates_args=(), device_types="cpu"
)


@lstm_layer_fwd.register_fake
def _(x, weight_ih, weight_hh, bias, weight_ch, weight_gg, weight_hr, ln_hh_weight,
      ln_c_weight, ln_c_bias, h0, c0, a0, lengths, zoneout_h, zoneout_c, zoneout_a,
      recurrent_mask, flags, cell_clip):  # fmt: skip
    T, B, _ = x.shape
    P, H = h0.shape[1], c0.shape[1]
    GH = x.shape[2] if weight_ih is None else weight_ih.shape[0]
    RH = weight_hh.shape[0]
    FH = GH - H if flags[FLAG_FGR] else 0
    need_craw = cell_clip > 0 or zoneout_c is not None
    # FGR's gate state has slots of its own only under zoneout or lengths; else a0 alone
    a_slots = T + 1 if zoneout_a is not None or lengths is not None else 1

    def new(*shape: int, present: bool = True) -> Tensor:
        return x.new_empty(shape if present else (0,))

    lnh, lnc = ln_hh_weight is not None, ln_c_weight is not None
    return (
        new(T, B, P), new(B, P), new(B, H), new(B, FH, present=FH > 0),
        new(T, B, GH), new(T + 1, B, P), new(T + 1, B, H), new(T, B, H),
        new(T, B, H, present=need_craw), new(T, B, H, present=weight_hr is not None),
        new(a_slots, B, FH, present=FH > 0), new(T, B, RH, present=lnh),
        new(T, B, RH // H, present=lnh), new(T, B, H, present=lnc), new(T, B, present=lnc),
    )  # fmt: skip


def _lstm_backward_engine(
    grad_y: Tensor,
    grad_h_n: Tensor,
    grad_c_n: Tensor,
    grad_a_n: Tensor | None,
    x: Tensor,
    weight_ih: Tensor | None,
    weight_hh: Tensor,
    has_bias: bool,
    weight_ch: Tensor | None,
    weight_gg: Tensor | None,
    weight_hr: Tensor | None,
    ln_hh_weight: Tensor | None,
    ln_c_weight: Tensor | None,
    lengths: Tensor | None,
    zoneout_h: Tensor | None,
    zoneout_c: Tensor | None,
    zoneout_a: Tensor | None,
    recurrent_mask: Tensor | None,
    saved: list[Tensor],
    flags: list[int],
    cell_clip: float,
) -> Tensors13:
    """-> dx, dW_ih, dW_hh, dbias, dW_ch, dW_gg, dW_hr, d ln_hh_weight, d ln_c_weight,
    d ln_c_bias, dh0, dc0, da0 (empty when absent)."""
    out = engine().lstm_backward(
        grad_y, grad_h_n, grad_c_n, grad_a_n, x, weight_ih, weight_hh, has_bias, weight_ch,
        weight_gg, weight_hr, ln_hh_weight, ln_c_weight, lengths, zoneout_h, zoneout_c,
        zoneout_a, recurrent_mask, saved, flags, cell_clip,
    )  # fmt: skip
    return tuple(out)


lstm_layer_bwd = torch.library.custom_op(
    "lstmkit::lstm_layer_bwd", _lstm_backward_engine, mutates_args=(), device_types="cpu"
)


@lstm_layer_bwd.register_fake
def _(grad_y, grad_h_n, grad_c_n, grad_a_n, x, weight_ih, weight_hh, has_bias, weight_ch,
      weight_gg, weight_hr, ln_hh_weight, ln_c_weight, lengths, zoneout_h, zoneout_c, zoneout_a,
      recurrent_mask, saved, flags, cell_clip):  # fmt: skip
    def like(t: Tensor | None) -> Tensor:
        return gradient_like(t, x)

    GH = saved[0].shape[2]
    return (
        like(x), like(weight_ih), like(weight_hh), x.new_empty(GH if has_bias else 0),
        like(weight_ch), like(weight_gg), like(weight_hr), like(ln_hh_weight),
        like(ln_c_weight), like(ln_c_weight), like(grad_h_n), like(grad_c_n), like(grad_a_n),
    )  # fmt: skip


def _lstm_setup_context(ctx, inputs, output) -> None:
    (x, weight_ih, weight_hh, bias, weight_ch, weight_gg, weight_hr, ln_hh_weight, ln_c_weight,
     ln_c_bias, _h0, _c0, a0, lengths, zoneout_h, zoneout_c, zoneout_a, recurrent_mask, flags,
     cell_clip) = inputs  # fmt: skip
    saved = output[4:]
    ctx.mark_non_differentiable(*saved)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(
        x, weight_ih, weight_hh, weight_ch, weight_gg, weight_hr, ln_hh_weight, ln_c_weight,
        lengths, zoneout_h, zoneout_c, zoneout_a, recurrent_mask, *saved,
    )  # fmt: skip
    ctx.flags, ctx.cell_clip = flags, cell_clip
    ctx.has_bias, ctx.has_a0 = bias is not None, a0 is not None
    ctx.has_ln_c_bias = ln_c_bias is not None


def _zeros_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def _lstm_backward(ctx, grad_y, grad_h_n, grad_c_n, grad_a_n, *_saved_grads):
    inputs, saved = ctx.saved_tensors[:-LSTM_SAVED], ctx.saved_tensors[-LSTM_SAVED:]
    x, weight_ih, weight_hh, weight_ch, weight_gg, weight_hr, ln_hh_w, ln_c_w, *rest = inputs
    lengths, zoneout_h, zoneout_c, zoneout_a, recurrent_mask = rest
    h_slots, c_slots, a_slots = saved[1], saved[2], saved[6]
    grad_y = _zeros_if_none(grad_y, x.new_empty(*x.shape[:2], h_slots.shape[2]))
    grad_h_n = _zeros_if_none(grad_h_n, h_slots[0])
    grad_c_n = _zeros_if_none(grad_c_n, c_slots[0])
    grad_a_n = _zeros_if_none(grad_a_n, a_slots[0]) if ctx.has_a0 else None
    grads = backward_op(ctx, lstm_layer_bwd, _lstm_backward_engine)(
        grad_y, grad_h_n, grad_c_n, grad_a_n, x, weight_ih, weight_hh, ctx.has_bias, weight_ch,
        weight_gg, weight_hr, ln_hh_w, ln_c_w, lengths, zoneout_h, zoneout_c, zoneout_a,
        recurrent_mask, list(saved), ctx.flags, ctx.cell_clip,
    )  # fmt: skip
    dx, dw_ih, dw_hh, dbias, dw_ch, dw_gg, dw_hr, dln_hh_w, dln_c_w, dln_c_b, dh0, dc0, da0 = grads

    def opt(grad: Tensor, present: bool) -> Tensor | None:
        return grad if present else None

    return (
        dx, opt(dw_ih, weight_ih is not None), dw_hh, opt(dbias, ctx.has_bias),
        opt(dw_ch, weight_ch is not None), opt(dw_gg, weight_gg is not None),
        opt(dw_hr, weight_hr is not None), opt(dln_hh_w, ln_hh_w is not None),
        opt(dln_c_w, ln_c_w is not None), opt(dln_c_b, ctx.has_ln_c_bias), dh0, dc0,
        opt(da0, ctx.has_a0), None, None, None, None, None, None, None,
    )  # fmt: skip


lstm_layer_eager = eager_twin(lstm_layer_fwd, _lstm_forward, _lstm_setup_context, _lstm_backward)


# --------------------------------------------------------------------------- GRU
GRU_SAVED = 5  # activations r, z, n; h slots; aux; layer-norm normalised products, 1/std


def _gru_forward(
    x: Tensor,  # [T, B, D], or the input projection [T, B, 3H] when weight_ih is None
    weight_ih: Tensor | None,  # [3H, D]
    weight_hh: Tensor,  # [3H, H]
    bias: Tensor | None,  # [3H]: every bias that only adds, folded
    bias_hn: Tensor | None,  # [H]: b_hn of the reset-after form
    ln_hh_weight: Tensor | None,  # [3H] layer-norm gains of the recurrent products
    h0: Tensor,  # [B, H]
    lengths: Tensor | None,  # [B] int64
    zoneout_h: Tensor | None,  # [T, B, H]
    recurrent_mask: Tensor | None,  # [B, H]
    flags: list[int],  # [reset_after, reverse]
) -> Tensors7:
    """-> y, h_n, then the GRU_SAVED tensors backward needs."""
    out = engine().gru_forward(
        x, weight_ih, weight_hh, bias, bias_hn, ln_hh_weight, h0, lengths, zoneout_h,
        recurrent_mask, flags,
    )  # fmt: skip
    return tuple(out)


gru_layer_fwd = torch.library.custom_op(
    "lstmkit::gru_layer_fwd", _gru_forward, mutates_args=(), device_types="cpu"
)


@gru_layer_fwd.register_fake
def _(x, weight_ih, weight_hh, bias, bias_hn, ln_hh_weight, h0, lengths, zoneout_h,
      recurrent_mask, flags):  # fmt: skip
    T, B, _ = x.shape
    H = h0.shape[1]
    new = x.new_empty
    ln = ln_hh_weight is not None
    return (
        new(T, B, H), new(B, H), new(T, B, 3 * H), new(T + 1, B, H), new(T, B, H),
        new(T, B, 3 * H) if ln else new(0), new(T, B, 3) if ln else new(0),
    )  # fmt: skip


def _gru_backward_engine(
    grad_y: Tensor,
    grad_h_n: Tensor,
    x: Tensor,
    weight_ih: Tensor | None,
    weight_hh: Tensor,
    has_bias: bool,
    has_bias_hn: bool,
    ln_hh_weight: Tensor | None,
    lengths: Tensor | None,
    zoneout_h: Tensor | None,
    recurrent_mask: Tensor | None,
    saved: list[Tensor],
    flags: list[int],
) -> Tensors7:
    """-> dx, dW_ih, dW_hh, dbias, db_hn, d ln_hh_weight, dh0 (empty when absent)."""
    out = engine().gru_backward(
        grad_y, grad_h_n, x, weight_ih, weight_hh, has_bias, has_bias_hn, ln_hh_weight, lengths,
        zoneout_h, recurrent_mask, saved, flags,
    )  # fmt: skip
    return tuple(out)


gru_layer_bwd = torch.library.custom_op(
    "lstmkit::gru_layer_bwd", _gru_backward_engine, mutates_args=(), device_types="cpu"
)


@gru_layer_bwd.register_fake
def _(grad_y, grad_h_n, x, weight_ih, weight_hh, has_bias, has_bias_hn, ln_hh_weight, lengths,
      zoneout_h, recurrent_mask, saved, flags):  # fmt: skip
    def like(t: Tensor | None) -> Tensor:
        return gradient_like(t, x)

    H = grad_h_n.shape[1]
    return (
        like(x), like(weight_ih), like(weight_hh), x.new_empty(3 * H if has_bias else 0),
        x.new_empty(H if has_bias_hn else 0), like(ln_hh_weight), like(grad_h_n),
    )  # fmt: skip


def _gru_setup_context(ctx, inputs, output) -> None:
    (x, weight_ih, weight_hh, bias, bias_hn, ln_hh_weight, _h0, lengths, zoneout_h,
     recurrent_mask, flags) = inputs  # fmt: skip
    saved = output[2:]
    ctx.mark_non_differentiable(*saved)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(
        x, weight_ih, weight_hh, ln_hh_weight, lengths, zoneout_h, recurrent_mask, *saved
    )
    ctx.flags = flags
    ctx.has_bias, ctx.has_bias_hn = bias is not None, bias_hn is not None


def _gru_backward(ctx, grad_y, grad_h_n, *_saved_grads):
    inputs, saved = ctx.saved_tensors[:-GRU_SAVED], ctx.saved_tensors[-GRU_SAVED:]
    x, weight_ih, weight_hh, ln_hh_weight, lengths, zoneout_h, recurrent_mask = inputs
    grad_y = _zeros_if_none(grad_y, saved[2])
    grad_h_n = _zeros_if_none(grad_h_n, saved[1][0])
    run = backward_op(ctx, gru_layer_bwd, _gru_backward_engine)
    dx, dw_ih, dw_hh, dbias, db_hn, dln, dh0 = run(
        grad_y, grad_h_n, x, weight_ih, weight_hh, ctx.has_bias, ctx.has_bias_hn, ln_hh_weight,
        lengths, zoneout_h, recurrent_mask, list(saved), ctx.flags,
    )  # fmt: skip
    return (
        dx, dw_ih if weight_ih is not None else None, dw_hh, dbias if ctx.has_bias else None,
        db_hn if ctx.has_bias_hn else None, dln if ln_hh_weight is not None else None, dh0,
        None, None, None, None,
    )  # fmt: skip


gru_layer_eager = eager_twin(gru_layer_fwd, _gru_forward, _gru_setup_context, _gru_backward)
