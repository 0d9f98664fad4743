"""Our sLSTM and mLSTM layers against the official ``xlstm`` package, given the same weights.

Needs ``pip install xlstm`` (a test-only dependency; skipped without it). Its CPU paths are
``sLSTMLayer`` with ``backend="vanilla"`` and ``mLSTMLayer`` (parallel form for sequences,
``mLSTMCell.step`` for one step). Weights are random (the package initialises the recurrent
kernel to zero, which would leave the recurrence untested) and copied into ours; outputs,
final states and gradients are compared in float64.

Deliberate differences, each handled here and nowhere hidden:
- sLSTM forget gate: the package's sLSTM uses a sigmoid forget gate; ours defaults to the
  paper's exponential one, so these tests build ours with ``forget_gate="sigmoid"``.
- sLSTM weight names: the package feeds its ``fgate`` projection into the input gate and its
  ``igate`` projection into the forget gate (``i, f = fgate(x), igate(x)``); the copy follows
  the data flow, not the names.
- Norm weights: the package stores layer/group-norm gains as ``1 + w``; ours store the gain.
- mLSTM epsilon: the package adds eps = 1e-6 to the stabilised denominator, which makes its
  result depend on the stabiliser (its parallel and step forms then differ slightly); ours
  computes the paper's C q / max(|n.q|, 1) exactly. The tests call the package's functions
  with eps = 0.
- mLSTM memory orientation: the package keeps C as k v^T, ours as v k^T (the paper's), so
  states compare transposed.
"""

from __future__ import annotations

import functools

import pytest
import torch

from helpers import assert_close, grads_of
from lstmkit.cells.mlstm import mlstm_step
from lstmkit.nn.xlstm import MLSTMLayer, SLSTMLayer

xlstm = pytest.importorskip("xlstm")
mlstm_backends = pytest.importorskip("xlstm.blocks.mlstm.backends")

DTYPE = torch.float64


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Random weights at a trained network's scale: matrices N(0, 1/fan_in), vectors N(0, 0.3^2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            std = p.shape[-1] ** -0.5 if p.dim() > 1 else 0.3
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


# --------------------------------------------------------------------------- sLSTM
def _slstm_pair():
    """The package's layer with random weights and ours with the same; (theirs, ours, pairs).

    ``pairs`` lists (our parameter, their parameter, how theirs maps onto ours).
    """
    config = xlstm.sLSTMLayerConfig(
        embedding_dim=64, num_heads=4, conv1d_kernel_size=4, backend="vanilla"
    )
    theirs = xlstm.sLSTMLayer(config).to(DTYPE)
    _randomise(theirs, 0)
    ours = SLSTMLayer(64, 4, 4, forget_gate="sigmoid", dtype=DTYPE)
    cell = theirs.slstm_cell
    same = lambda t: t  # noqa: E731
    pairs = [
        (ours.conv.weight, theirs.conv1d.conv.weight, lambda t: t[:, 0, :]),
        (ours.conv.bias, theirs.conv1d.conv.bias, same),
        (ours.gate_proj[0].weight, theirs.fgate.weight, same),  # feeds the input gate
        (ours.gate_proj[1].weight, theirs.igate.weight, same),  # feeds the forget gate
        (ours.gate_proj[2].weight, theirs.zgate.weight, same),
        (ours.gate_proj[3].weight, theirs.ogate.weight, same),
        # the vanilla cell's internal layouts are ours: [heads, (i f z o) x E, E] and (i f z o) x H
        (ours.weight_hh, cell._recurrent_kernel_, same),
        (ours.bias, cell._bias_, same),
        (ours.norm_weight, theirs.group_norm.weight, lambda t: 1 + t),
    ]
    with torch.no_grad():
        for mine, their, transform in pairs:
            mine.copy_(transform(their))
    return theirs, ours, pairs


def test_slstm_layer_matches_official():
    theirs, ours, pairs = _slstm_pair()
    x = torch.randn(3, 20, 64, dtype=DTYPE, requires_grad=True)
    want, their_state = theirs(x, return_last_state=True)
    got, our_state = ours(x)
    assert_close("output", want, got)
    # their slstm_state is [4, B, H]: y, c, n, m; with the empty start both stabilise alike
    for k, name in enumerate("hcnm"):
        assert_close(f"final {name}", their_state["slstm_state"][k], our_state[1 + k])
    assert_close("conv state", their_state["conv_state"], our_state[0])

    their_params = [their for _, their, _ in pairs]
    want_grads = grads_of([want], [x, *their_params])
    got_grads = grads_of([got], [x, *(mine for mine, _, _ in pairs)])
    assert_close("dx", want_grads[0], got_grads[0])
    for k in range(len(pairs)):
        want_grad = want_grads[k + 1]
        if want_grad.dim() == 3 and want_grad.shape[1] == 1:  # their conv weight [F, 1, K]
            want_grad = want_grad[:, 0, :]  # a view-shaped gradient maps like the weight
        assert_close(f"d param {k}", want_grad, got_grads[k + 1])


# --------------------------------------------------------------------------- mLSTM
def _mlstm_pair():
    config = xlstm.mLSTMLayerConfig(embedding_dim=64, num_heads=4, context_length=16)
    theirs = xlstm.mLSTMLayer(config).to(DTYPE)
    _randomise(theirs, 1)
    theirs.mlstm_cell.backend_fn = functools.partial(
        mlstm_backends.parallel_stabilized_simple, eps=0.0
    )
    ours = MLSTMLayer(64, num_heads=4, proj_factor=2.0, conv_kernel_size=4, dtype=DTYPE)
    assert ours.inner_size == config._inner_embedding_dim
    cell = theirs.mlstm_cell
    same = lambda t: t  # noqa: E731
    pairs = [
        (ours.up.weight, theirs.proj_up.weight, same),
        (ours.conv.weight, theirs.conv1d.conv.weight, lambda t: t[:, 0, :]),
        (ours.conv.bias, theirs.conv1d.conv.bias, same),
        (ours.q_proj.weight, theirs.q_proj.weight, same),
        (ours.k_proj.weight, theirs.k_proj.weight, same),
        (ours.v_proj.weight, theirs.v_proj.weight, same),
        (ours.igate.weight, cell.igate.weight, same),
        (ours.igate.bias, cell.igate.bias, same),
        (ours.fgate.weight, cell.fgate.weight, same),
        (ours.fgate.bias, cell.fgate.bias, same),
        (ours.norm_weight, cell.outnorm.weight, lambda t: 1 + t),
        (ours.skip, theirs.learnable_skip, same),
        (ours.down.weight, theirs.proj_down.weight, same),
    ]
    with torch.no_grad():
        for mine, their, transform in pairs:
            mine.copy_(transform(their))
    return theirs, ours, pairs


@pytest.mark.parametrize("T", [16, 11])
@pytest.mark.parametrize("form", ["parallel", "chunkwise", "recurrent"])
def test_mlstm_layer_matches_official(T, form):
    """Their parallel form against each of our forms (chunkwise with chunks of 4)."""
    theirs, ours, pairs = _mlstm_pair()
    ours.form, ours.chunk_size = form, 4
    x = torch.randn(2, T, 64, dtype=DTYPE, requires_grad=True)
    want = theirs(x)
    got, _ = ours(x)
    assert_close("output", want, got)
    want_grads = grads_of([want], [x, *(their for _, their, _ in pairs)])
    got_grads = grads_of([got], [x, *(mine for mine, _, _ in pairs)])
    assert_close("dx", want_grads[0], got_grads[0])
    for k in range(len(pairs)):
        want_grad = want_grads[k + 1]
        if want_grad.dim() == 3 and want_grad.shape[1] == 1:  # their conv weight [F, 1, K]
            want_grad = want_grad[:, 0, :]
        assert_close(f"d param {k}", want_grad, got_grads[k + 1])


def test_mlstm_step_matches_official_states():
    """Step by step, memory included: their recurrent step (eps = 0) against ours."""
    g = torch.Generator().manual_seed(3)
    B, K, E = 2, 4, 8
    their_state = None
    ours = (
        torch.zeros(B, K, E, E, dtype=DTYPE),
        torch.zeros(B, K, E, dtype=DTYPE),
        torch.zeros(B, K, dtype=DTYPE),
    )
    for t in range(6):
        q, k, v = (torch.randn(B, K, 1, E, generator=g, dtype=DTYPE) for _ in range(3))
        i_pre = torch.randn(B, K, 1, 1, generator=g, dtype=DTYPE) * 3
        f_pre = torch.randn(B, K, 1, 1, generator=g, dtype=DTYPE) + 2
        if their_state is None:
            their_state = (
                torch.zeros(B, K, E, E, dtype=DTYPE),
                torch.zeros(B, K, E, 1, dtype=DTYPE),
                torch.zeros(B, K, 1, 1, dtype=DTYPE),
            )
        want_h, their_state = mlstm_backends.recurrent_step_stabilized_simple(
            *their_state, q.clone(), k.clone(), v.clone(), i_pre, f_pre, eps=0.0
        )
        got_h, ours = mlstm_step(
            q[:, :, 0], k[:, :, 0], v[:, :, 0], i_pre[:, :, 0, 0],
            torch.nn.functional.logsigmoid(f_pre[:, :, 0, 0]), ours,
        )  # fmt: skip
        assert_close(f"h[{t}]", want_h[:, :, 0], got_h)
        assert_close(f"C[{t}]", their_state[0].transpose(-1, -2), ours[0])
        assert_close(f"n[{t}]", their_state[1][..., 0], ours[1])
        assert_close(f"m[{t}]", their_state[2][..., 0, 0], ours[2])
