"""torch.autograd.gradcheck through lstmkit.LSTM / lstmkit.GRU in float64.

Every parameter, the input and every initial state are inputs of the checked function (the
weights go in through torch.func.functional_call), so each of their gradients is compared
with finite differences.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

import lstmkit
from helpers import grads_of

T, B, D, H = 3, 2, 3, 4
F64 = torch.float64


def check(module: torch.nn.Module, *, lengths=None, c_scale: float = 1.0, seeded: bool = False):
    """gradcheck ``module`` w.r.t. input, parameters and initial states; each must matter.

    ``seeded`` redraws the same training masks (zoneout, dropouts) on every call. Returns the
    checked function and its inputs, for further assertions.
    """
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    rows = module.num_layers * module.num_directions
    sizes = module.cells[0][0].state_sizes()
    states = [torch.randn(rows, B, size, dtype=F64) for size in sizes]
    if len(states) > 1:
        states[1] = states[1] * c_scale  # c0
    if len(states) > 2:
        states[2] = torch.rand_like(states[2])  # FGR gates are activations in (0, 1)
    states = [s.requires_grad_() for s in states]
    x = torch.randn(T, B, D, dtype=F64, requires_grad=True)
    n = len(params)

    def run(x, *rest):
        weights = dict(zip(names, rest[:n], strict=True))
        hx = rest[n] if len(sizes) == 1 else tuple(rest[n:])
        with torch.random.fork_rng():
            if seeded:
                torch.manual_seed(1234)
            output, final = functional_call(module, weights, (x, hx), {"lengths": lengths})
        return (output, *((final,) if isinstance(final, torch.Tensor) else final))

    inputs = (x, *params, *states)
    assert gradcheck(run, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    # gradcheck passes on a parameter that never reaches the output; rule that out.
    grads = grads_of(list(run(*inputs)), params)
    for name, grad in zip(names, grads, strict=True):
        assert grad is not None and grad.abs().max() > 0, f"{name} has no gradient"
    return run, inputs


def assert_clips(outputs: tuple[torch.Tensor, ...], clip: float) -> None:
    """The final cell state touches the clip: the clamp and its zero gradient were exercised.

    Give one sequence length 1 and a large c0, or c may have relaxed inside the clip by T.
    """
    c_n = outputs[2]
    assert c_n.abs().max() <= clip
    assert (c_n.abs() == clip).any(), "no unit clipped"


def assert_masks_active(module: torch.nn.Module, run, inputs) -> None:
    """Training masks changed the result, so gradcheck saw them."""
    trained = run(*inputs)[0]
    module.eval()
    evaluated = run(*inputs)[0]
    module.train()
    assert (trained - evaluated).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(lstmkit.variants()))
def test_lstm_variant(name):
    check(lstmkit.LSTM(D, H, variant=name, dtype=F64))


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru(reset_after):
    check(lstmkit.GRU(D, H, reset_after=reset_after, dtype=F64))


LSTM_OPTIONS = {
    "standard-proj2": dict(variant="standard", proj_size=2),
    "peephole_full-proj2": dict(variant="peephole_full", proj_size=2),
    "peephole-layer_norm": dict(variant="peephole", layer_norm=True),
    "fgr-layer_norm-proj2": dict(variant="fgr", layer_norm=True, proj_size=2),
    "cifg-hard_sigmoid-relu-identity": dict(
        variant="cifg", sigma_g="hard_sigmoid", sigma_c="relu", sigma_h="identity"
    ),
    "nig-no_bias": dict(variant="nig", bias=False),
}


@pytest.mark.parametrize("options", list(LSTM_OPTIONS.values()), ids=list(LSTM_OPTIONS))
def test_lstm_options(options):
    check(lstmkit.LSTM(D, H, dtype=F64, **options))


@pytest.mark.parametrize("name", ["standard", "peephole"])
def test_lstm_cell_clip(name):
    module = lstmkit.LSTM(D, H, variant=name, cell_clip=0.5, dtype=F64)
    # |c0| around 3 and a sequence of one step: its final c is clipped
    run, inputs = check(module, lengths=torch.tensor([1, T]), c_scale=3.0)
    assert_clips(run(*inputs), 0.5)


@pytest.mark.parametrize(
    ("name", "layers"), [("standard", 2), ("fgr", 1), ("peephole_full", 1)], ids=str
)
def test_lstm_bidirectional_lengths(name, layers):
    module = lstmkit.LSTM(D, H, num_layers=layers, bidirectional=True, variant=name, dtype=F64)
    check(module, lengths=torch.tensor([T, 2]))


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru_bidirectional_lengths_layer_norm(reset_after):
    module = lstmkit.GRU(
        D, H, bidirectional=True, reset_after=reset_after, layer_norm=True, dtype=F64
    )
    check(module, lengths=torch.tensor([2, T]))


def test_lstm_training_masks():
    """Zoneout, recurrent dropout and dropout between layers, with the same masks per call."""
    module = lstmkit.LSTM(
        D, H, num_layers=2, dropout=0.3, variant="peephole", proj_size=2,
        zoneout=(0.3, 0.2), recurrent_dropout=0.3, dtype=F64,
    ).train()  # fmt: skip
    assert_masks_active(module, *check(module, seeded=True))


def test_gru_training_masks():
    module = lstmkit.GRU(D, H, reset_after=False, zoneout=0.3, recurrent_dropout=0.3, dtype=F64)
    module.train()
    assert_masks_active(module, *check(module, seeded=True))


def test_lstm_all_options():
    module = lstmkit.LSTM(
        D, H, num_layers=2, bidirectional=True, proj_size=2, variant="fgr", layer_norm=True,
        cell_clip=0.5, forget_bias=1.0, dtype=F64,
    )  # fmt: skip
    run, inputs = check(module, lengths=torch.tensor([1, T]), c_scale=3.0)
    assert_clips(run(*inputs), 0.5)
