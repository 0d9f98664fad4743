"""The sLSTM on the fused C++ CPU engine against the reference loop, gradients included.

Each comparison runs both backends on the same fresh random inputs and compares the output,
the final states (h, c, n, m) and the gradients of the input, every weight and every initial
state under random upstream gradients (fp32 rtol 1e-5, fp64 rtol 1e-10). Tests that need the
compiled engine skip, one by one, with the build error as the reason.
"""

from __future__ import annotations

import pytest
import torch

import lstmkit
from helpers import assert_close, grads_of
from lstmkit.backends import cpu, reference, registry
from lstmkit.cells import SLSTMCellSpec
from lstmkit.nn import sLSTM
from lstmkit.nn.xlstm import SLSTMLayer

DTYPES = {"fp32": torch.float32, "fp64": torch.float64}
FORGET_GATES = ["exp", "sigmoid"]


@pytest.fixture
def engine():
    if not cpu.available():
        pytest.skip(f"the C++ engine did not build: {cpu.build_error()}")


# --------------------------------------------------------------------------- helpers
def make_layer(D=5, H=8, heads=2, forget_gate="exp", dtype=torch.float64, *, bias=True,
               input_weights=True, scale=0.5, seed=0):  # fmt: skip
    """A cell and random parameters (leaves that require grad)."""
    if not input_weights:
        D = 4 * H
    cell = SLSTMCellSpec(D, H, heads, bias, forget_gate, input_weights)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed)
    params = {
        name: (torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_()
        for name, shape in cell.param_shapes().items()
    }
    return cell, params


def make_inputs(cell, T, B, dtype, *, state="random", rmask=False, x_scale=1.0, seed=1):
    """Input ``[T, B, D]``, initial (h, c, n, m) and maybe a recurrent-dropout mask.

    ``state="random"``: n0 >= 1 as a used memory has it; ``"zeros"``: the empty memory.
    """
    g = torch.Generator().manual_seed(seed)
    B_H = (B, cell.hidden_size)
    x = torch.randn(T, B, cell.input_size, generator=g, dtype=dtype) * x_scale
    if state == "zeros":
        states = [torch.zeros(B_H, dtype=dtype) for _ in range(4)]
    else:
        h0, c0, m0 = (torch.randn(B_H, generator=g, dtype=dtype) for _ in range(3))
        n0 = 1 + torch.rand(B_H, generator=g, dtype=dtype) * 2
        states = [h0, c0, n0, m0]
    mask = None
    if rmask:
        mask = torch.bernoulli(torch.full(B_H, 0.7, dtype=dtype), generator=g) / 0.7
    return x.requires_grad_(), tuple(s.requires_grad_() for s in states), mask


def compare_layer(cell, params, x, state, *, lengths=None, reverse=False, recurrent_mask=None):
    """cpu.run_layer against reference.run_layer: output, final states, every gradient."""
    inputs = [x, *params.values(), *state]
    names = ["x", *params, "h0", "c0", "n0", "m0"]
    results = []
    for run in (reference.run_layer, cpu.run_layer):
        y, final = run(
            cell, params, x, state, lengths=lengths, reverse=reverse, recurrent_mask=recurrent_mask
        )
        outputs = [y, *final]
        results.append((outputs, grads_of(outputs, inputs, seed=2)))
    (ref_out, ref_grads), (cpu_out, cpu_grads) = results
    for name, expected, actual in zip(["y", "h_n", "c_n", "n_n", "m_n"], ref_out, cpu_out,
                                      strict=True):  # fmt: skip
        assert_close(name, expected, actual)
    for name, expected, actual in zip(names, ref_grads, cpu_grads, strict=True):
        assert_close(f"d{name}", expected, actual)


# --------------------------------------------------------------------------- run_layer
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("heads", [1, 2, 4], ids=lambda k: f"K{k}")
@pytest.mark.parametrize("forget_gate", FORGET_GATES)
def test_layer(engine, forget_gate, heads, dtype):
    cell, params = make_layer(heads=heads, forget_gate=forget_gate, dtype=dtype)
    x, state, _ = make_inputs(cell, T=6, B=3, dtype=dtype)
    compare_layer(cell, params, x, state)


def test_layer_fp32_step_gemm_kernels(step_gemm):
    """Both kernels of the float32 per-head step GEMMs, with lengths and recurrent dropout."""
    cell, params = make_layer(heads=2, dtype=torch.float32)
    x, state, mask = make_inputs(cell, 6, 3, torch.float32, rmask=True)
    compare_layer(cell, params, x, state, lengths=torch.tensor([6, 2, 4]), recurrent_mask=mask)


# lengths (B odd, both directions), recurrent dropout, the empty memory, no bias, a cell
# without input weights (the xLSTM block's), B=1 and T=1
OPTIONS = {
    "rev-B5-lengths": dict(B=5, T=6, lengths=[1, 6, 3, 6, 2], reverse=True),
    "lengths-rmask": dict(B=3, T=5, lengths=[5, 2, 4], rmask=True),
    "zero-state-rev": dict(B=3, T=5, state="zeros", reverse=True),
    "zero-state-lengths-rmask": dict(B=3, T=5, state="zeros", lengths=[2, 5, 1], rmask=True),
    "nobias-K4": dict(B=3, T=5, layer=dict(bias=False, heads=4)),
    "no-input-weights-K4-lengths": dict(
        B=3, T=5, lengths=[3, 5, 1], reverse=True, layer=dict(input_weights=False, heads=4)
    ),
    "B1-T1": dict(B=1, T=1),
    "T1-lengths-zero-state": dict(B=3, T=1, lengths=[1, 1, 1], state="zeros", reverse=True),
}


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("case", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("forget_gate", FORGET_GATES)
def test_layer_options(engine, forget_gate, case, dtype):
    case = dict(case)
    cell, params = make_layer(forget_gate=forget_gate, dtype=dtype, **case.pop("layer", {}))
    x, state, mask = make_inputs(
        cell, case.pop("T"), case.pop("B"), dtype, state=case.pop("state", "random"),
        rmask=case.pop("rmask", False),
    )  # fmt: skip
    lengths = case.pop("lengths", None)
    lengths = None if lengths is None else torch.tensor(lengths)
    compare_layer(cell, params, x, state, lengths=lengths, recurrent_mask=mask, **case)


@pytest.mark.parametrize("forget_gate", FORGET_GATES)
def test_large_pre_activations_match(engine, forget_gate):
    """Pre-activations of size ~100 (exp overflows without the stabiliser) in float64."""
    cell, params = make_layer(forget_gate=forget_gate, scale=3.0)
    x, state, _ = make_inputs(cell, T=20, B=3, dtype=torch.float64, x_scale=30.0, state="zeros")
    compare_layer(cell, params, x, state, lengths=torch.tensor([20, 7, 13]))


def test_stabiliser_tie_splits_its_gradient_as_torch_maximum(engine):
    """m_t = max(log f + m_{t-1}, i~) with both equal: torch.maximum sends half of m_t's
    gradient to each side; the engine saves that split. Exact ties come from a cell whose
    input is its pre-activations and whose recurrent weights are zero."""
    cell, params = make_layer(H=4, heads=2, input_weights=False, bias=False)
    with torch.no_grad():
        params["weight_hh"].zero_()
    x = torch.randn(2, 2, 16, dtype=torch.float64)
    # step 0 (empty memory): m_0 = i~_0 = 0.5; step 1: log f + m_0 = 0.25 + 0.5 = i~_1
    x[0, :, :4], x[1, :, :4], x[1, :, 4:8] = 0.5, 0.75, 0.25
    x.requires_grad_()
    state = tuple(torch.zeros(2, 4, dtype=torch.float64, requires_grad=True) for _ in range(4))
    compare_layer(cell, params, x, state)


# --------------------------------------------------------------------------- modules
def compare_modules(make, x, hx=None, lengths=None, *, train=False):
    """A module with backend='cpu' against the same weights on backend='reference'."""
    results = []
    for backend in ("reference", "cpu"):
        torch.manual_seed(0)
        module = make(backend).train(train)
        xb = x.detach().clone().requires_grad_()
        hb = None if hx is None else tuple(h.detach().clone().requires_grad_() for h in hx)
        torch.manual_seed(1)  # the same dropout masks for both
        y, final = module(xb, hb, lengths=lengths)
        outputs = [y, *final]
        inputs = [xb, *(hb or ()), *module.parameters()]
        names = [
            "x",
            *(f"state{k}" for k in range(len(hb or ()))),
            *dict(module.named_parameters()),
        ]
        results.append((outputs, grads_of(outputs, inputs, seed=3), names))
    (ref_out, ref_grads, names), (cpu_out, cpu_grads, _) = results
    for k, (expected, actual) in enumerate(zip(ref_out, cpu_out, strict=True)):
        assert_close(f"output {k}", expected, actual)
    for name, expected, actual in zip(names, ref_grads, cpu_grads, strict=True):
        assert_close(f"d{name}", expected, actual)


MODULES = {
    "L1-K2": dict(num_layers=1, num_heads=2),
    "L2-K4-bi-sigmoid": dict(num_layers=2, num_heads=4, bidirectional=True, forget_gate="sigmoid"),
    "L2-K1-bi": dict(num_layers=2, bidirectional=True),
}


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("use_lengths", [False, True], ids=["padded", "lengths"])
@pytest.mark.parametrize("config", MODULES.values(), ids=MODULES.keys())
def test_module(engine, config, use_lengths, dtype):
    T, B, D, H = 6, 3, 5, 8
    x = torch.randn(T, B, D, dtype=dtype)
    lengths = torch.tensor([6, 2, 5]) if use_lengths else None

    def make(backend):
        return sLSTM(D, H, dtype=dtype, backend=backend, **config)

    compare_modules(make, x, lengths=lengths)


def test_module_initial_state_and_training_masks(engine):
    T, B, D, H = 5, 5, 4, 8
    rows = 2 * 2
    g = torch.Generator().manual_seed(4)
    hx = [torch.randn(rows, B, H, generator=g, dtype=torch.float64) for _ in range(4)]
    hx[2] = 1 + torch.rand(rows, B, H, generator=g, dtype=torch.float64)  # n0 >= 1

    def make(backend):
        return sLSTM(
            D, H, num_layers=2, bidirectional=True, num_heads=2, dropout=0.3,
            recurrent_dropout=0.25, forget_bias=1.0, backend=backend, dtype=torch.float64,
        )  # fmt: skip

    x = torch.randn(T, B, D, dtype=torch.float64)
    compare_modules(make, x, tuple(hx), lengths=torch.tensor([5, 1, 3, 4, 2]), train=True)


def run_xlstm_layer(forget_gate, backend, dtype, reference_layer, x, upstream_seed=5):
    """The xLSTM block's sLSTM layer (a cell without input weights) with ``reference_layer``'s
    weights in ``dtype``: its outputs and gradients, under float64 upstream gradients."""
    layer = SLSTMLayer(16, num_heads=4, forget_gate=forget_gate, backend=backend).to(dtype)
    layer.load_state_dict({k: v.to(dtype) for k, v in reference_layer.state_dict().items()})
    xb = x.detach().to(dtype).requires_grad_()
    y, state = layer(xb)
    outputs = [y, *state[1:]]
    g = torch.Generator().manual_seed(upstream_seed)
    upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(dtype) for o in outputs]
    grads = torch.autograd.grad(outputs, [xb, *layer.parameters()], upstream)
    names = [f"output {k}" for k in range(len(outputs))]
    names += ["dx", *(f"d{name}" for name, _ in layer.named_parameters())]
    return dict(zip(names, [*outputs, *grads], strict=True))


@pytest.mark.parametrize("forget_gate", FORGET_GATES)
def test_xlstm_slstm_layer(engine, forget_gate):
    """The xLSTM block's sLSTM layer, conv and head norm included, on both backends (float64:
    its group norm makes float32 gradients too ill-conditioned for rtol 1e-5, see below)."""
    torch.manual_seed(0)
    weights = SLSTMLayer(16, num_heads=4, forget_gate=forget_gate)
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    expected = run_xlstm_layer(forget_gate, "reference", torch.float64, weights, x)
    actual = run_xlstm_layer(forget_gate, "cpu", torch.float64, weights, x)
    for name in expected:
        assert_close(name, expected[name], actual[name])


@pytest.mark.parametrize("forget_gate", FORGET_GATES)
def test_xlstm_slstm_layer_fp32_as_accurate_as_reference(engine, forget_gate):
    """In float32 the reference itself sits up to ~1e-5 from the float64 truth in the
    gradients of the whole layer (head norm, conv), so the engine is held to the reference's
    own accuracy instead: its error against the truth is at most three times the reference's,
    plus one float32 ulp of the largest value."""
    torch.manual_seed(0)
    weights = SLSTMLayer(16, num_heads=4, forget_gate=forget_gate)
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    truth = run_xlstm_layer(forget_gate, "reference", torch.float64, weights, x)
    ref = run_xlstm_layer(forget_gate, "reference", torch.float32, weights, x)
    ours = run_xlstm_layer(forget_gate, "cpu", torch.float32, weights, x)
    for name, want in truth.items():
        ref_error = (ref[name].double() - want).abs().max()
        our_error = (ours[name].double() - want).abs().max()
        ulp = torch.finfo(torch.float32).eps * want.abs().max()
        assert our_error <= 3 * ref_error + ulp, f"{name}: {our_error:.2e} vs {ref_error:.2e}"


# --------------------------------------------------------------------------- the op
@pytest.mark.parametrize("forget_gate", FORGET_GATES)
def test_gradcheck(engine, forget_gate):
    cell, params = make_layer(D=3, H=4, heads=2, forget_gate=forget_gate)
    x, state, mask = make_inputs(cell, T=4, B=3, dtype=torch.float64, rmask=True)
    names = list(params)

    def run(x, *rest):
        p = dict(zip(names, rest[: len(names)], strict=True))
        y, final = cpu.run_layer(
            cell, p, x, tuple(rest[len(names) :]), lengths=torch.tensor([4, 2, 3]),
            reverse=True, recurrent_mask=mask,
        )  # fmt: skip
        return (y, *final)

    assert torch.autograd.gradcheck(run, (x, *params.values(), *state))


def opcheck_args(projected: bool) -> tuple:
    T, B, D, H, K = 3, 2, 5, 8, 2

    def rnd(*shape):
        return torch.randn(*shape, requires_grad=True)

    states = [rnd(B, H), rnd(B, H), (1 + torch.rand(B, H)).requires_grad_(), rnd(B, H)]
    if projected:  # no input weights, no bias, recurrent dropout, reverse, exp forget gate
        return (rnd(T, B, 4 * H), None, rnd(K, 16, 4), None, *states, None, torch.ones(B, H),
                [K, 0, 1])  # fmt: skip
    return (rnd(T, B, D), rnd(4 * H, D), rnd(K, 16, 4), rnd(4 * H), *states,
            torch.tensor([3, 1]), None, [K, 1, 0])  # fmt: skip


@pytest.mark.parametrize("projected", [False, True], ids=["weights", "projected"])
def test_opcheck(engine, projected):
    """Schema, fake (meta) shapes and autograd registration of the custom op."""
    from lstmkit.backends.cpu import slstm

    torch.library.opcheck(slstm.slstm_layer_fwd, opcheck_args(projected))


def test_two_runs_are_bitwise_equal(engine):
    cell, params = make_layer(D=8, H=32, heads=4, dtype=torch.float32)
    x, state, mask = make_inputs(cell, T=9, B=5, dtype=torch.float32, rmask=True)
    inputs = [x, *params.values(), *state]
    runs = []
    for _ in range(2):
        y, final = cpu.run_layer(
            cell, params, x, state, lengths=torch.tensor([9, 3, 1, 9, 5]), recurrent_mask=mask
        )
        runs.append([y, *final, *grads_of([y, *final], inputs)])
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first, second)


@pytest.mark.parametrize("forget_gate", FORGET_GATES)
def test_long_sequence_with_large_pre_activations_stays_finite(engine, forget_gate):
    """10,000 float32 steps with pre-activations of size ~100, forward and backward."""
    cell, params = make_layer(D=4, H=8, heads=2, forget_gate=forget_gate, dtype=torch.float32,
                              scale=1.0, seed=5)  # fmt: skip
    x, state, _ = make_inputs(cell, T=10_000, B=2, dtype=torch.float32, x_scale=50.0,
                              state="zeros")  # fmt: skip
    y, final = cpu.run_layer(cell, params, x, state)
    outputs = [y, *final]
    for k, t in enumerate(outputs):
        assert torch.isfinite(t).all(), f"output {k} has inf/NaN"
    for k, g in enumerate(grads_of(outputs, [x, *params.values(), *state])):
        assert torch.isfinite(g).all(), f"gradient {k} has inf/NaN"


# --------------------------------------------------------------------------- registry
def test_cpu_and_auto_run_the_slstm(engine, monkeypatch):
    cell = SLSTMCellSpec(3, 8, num_heads=2)
    assert cpu.supports(cell)
    assert registry.check_backend("backend", "cpu", [cell]) == "cpu"
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return reference.run_layer(*args, **kwargs)

    monkeypatch.setattr(cpu, "run_layer", spy)
    sLSTM(3, 8, num_heads=2)(torch.randn(4, 2, 3))
    assert calls, "backend='auto' did not run the sLSTM on the engine"
    calls.clear()
    sLSTM(3, 8, dtype=torch.bfloat16)(torch.randn(4, 2, 3, dtype=torch.bfloat16))
    assert not calls, "backend='auto' ran a dtype the engine does not run"


def test_cpu_refuses_zoneout_on_the_slstm(engine):
    cell, params = make_layer(dtype=torch.float32)
    x, state, _ = make_inputs(cell, T=3, B=2, dtype=torch.float32)
    with pytest.raises(ValueError, match="zoneout"):
        cpu.run_layer(cell, params, x, state, zoneout_masks=(torch.ones(3, 2, 8),))


def test_public_module_runs_on_cpu_backend(engine):
    model = lstmkit.sLSTM(4, 8, num_heads=2, backend="cpu")
    y, (h, c, n, m) = model(torch.randn(5, 3, 4))
    assert y.shape == (5, 3, 8) and h.shape == c.shape == n.shape == m.shape == (1, 3, 8)
