"""xLSTM: the sLSTM and mLSTM cells, the three mLSTM forms, modules, blocks and stacks.

The recurrent mLSTM form and the sLSTM step are the oracles; the parallel and chunkwise forms
are compared with the recurrent one (outputs, final states, every gradient, initial state
included) under random upstream gradients. tests/test_xlstm_official.py compares with the
``xlstm`` package.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lstmkit
from helpers import assert_close, grads_of
from lstmkit.backends.reference import run_layer
from lstmkit.cells import MLSTMCellSpec, SLSTMCellSpec
from lstmkit.cells.mlstm import (
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_recurrent,
    mlstm_sequence,
)
from lstmkit.nn import mLSTM, sLSTM, xLSTM
from lstmkit.nn.xlstm import parse_blocks


def mlstm_inputs(B, K, T, E, dtype, *, with_state=True, gate_scale=1.0, generator=None):
    """Random q, k, v, gate pre-activations and (optionally) a random initial state."""
    g = generator or torch.Generator().manual_seed(1)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale + shift).requires_grad_()

    q, k, v = rnd(B, K, T, E), rnd(B, K, T, E), rnd(B, K, T, E)
    i_pre = rnd(B, K, T, scale=gate_scale)
    f_pre = rnd(B, K, T, scale=gate_scale, shift=2.0)
    state = None
    if with_state:
        state = (rnd(B, K, E, E), rnd(B, K, E), rnd(B, K, scale=0.5))
    return q, k, v, i_pre, f_pre, state


FORMS = {
    "parallel": lambda *a: mlstm_parallel(*a),
    "chunkwise": lambda *a: mlstm_chunkwise(*a, chunk_size=8),
}


# --------------------------------------------------------------------------- mLSTM forms
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("T", [1, 7, 8, 19, 33])
@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_mlstm_forms_match_recurrent_fp32(form, T, forget_gate):
    """Outputs, final (C, n, m) and all gradients agree with the step-by-step form to 1e-5."""
    q, k, v, i_pre, f_pre, state = mlstm_inputs(2, 3, T, 8, torch.float32)
    leaves = [q, k, v, i_pre, f_pre, *state]

    def log_f():  # a fresh graph per form, so each can be differentiated on its own
        if forget_gate == "sigmoid":
            return F.logsigmoid(f_pre)
        # exp(f~) with f~ around -0.2: mostly a decay. Where f~ > 0 lets the memory grow for
        # many steps, float32 gradients of the forms differ by more than 1e-5 from rounding
        # alone; test_mlstm_forms_fp64 covers that regime at 1e-10.
        return f_pre * 0.1 - 0.4

    want_h, want_state = mlstm_recurrent(q, k, v, i_pre, log_f(), state)
    got_h, got_state = FORMS[form](q, k, v, i_pre, log_f(), state)
    outputs = ["h", "C", "n", "m"]
    for name, want, got in zip(outputs, [want_h, *want_state], [got_h, *got_state], strict=True):
        assert_close(name, want, got, rtol=1e-5, atol=1e-5)
    want_grads = grads_of([want_h, *want_state], leaves)
    got_grads = grads_of([got_h, *got_state], leaves)
    names = ["dq", "dk", "dv", "di", "df", "dC0", "dn0", "dm0"]
    for name, want, got in zip(names, want_grads, got_grads, strict=True):
        assert_close(name, want, got, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("start", ["zero", "random"])
def test_mlstm_forms_fp64(start):
    """fp64, exponential forget gates that also grow the memory (f~ ~ N(0.5, 1)), and
    sigmoid ones: outputs, states and gradients agree at fp64 precision."""
    q, k, v, i_pre, f_pre, state = mlstm_inputs(
        2, 2, 21, 4, torch.float64, with_state=start == "random"
    )
    leaves = [q, k, v, i_pre, f_pre] + ([] if state is None else list(state))
    for log_f in (lambda: f_pre - 1.5, lambda: F.logsigmoid(f_pre)):
        want_h, want_state = mlstm_recurrent(q, k, v, i_pre, log_f(), state)
        want_grads = grads_of([want_h, *want_state], leaves)
        for got_h, got_state in (
            mlstm_parallel(q, k, v, i_pre, log_f(), state),
            mlstm_chunkwise(q, k, v, i_pre, log_f(), state, chunk_size=5),
        ):
            assert_close("h", want_h, got_h)
            for name, want, got in zip("Cnm", want_state, got_state, strict=True):
                assert_close(name, want, got)
            got_grads = grads_of([got_h, *got_state], leaves)
            for index, (want, got) in enumerate(zip(want_grads, got_grads, strict=True)):
                assert_close(f"gradient {index}", want, got)


@pytest.mark.parametrize("form", ["recurrent", "parallel", "chunkwise"])
def test_mlstm_lengths_equal_separate_runs(form):
    """With lengths, each sequence's outputs and final state equal running it alone."""
    q, k, v, i_pre, f_pre, state = mlstm_inputs(3, 2, 11, 4, torch.float64)
    log_f = F.logsigmoid(f_pre)
    lengths = torch.tensor([11, 4, 7])
    h, final = mlstm_sequence(
        q, k, v, i_pre, log_f, state, form=form, chunk_size=3, lengths=lengths
    )
    for b, n in enumerate(lengths.tolist()):
        one = [t[b : b + 1, :, :n] for t in (q, k, v, i_pre, log_f)]
        h_b, state_b = mlstm_recurrent(*one, tuple(s[b : b + 1] for s in state))
        assert_close(f"h[{b}]", h_b[0], h[b, :, :n])
        assert torch.all(h[b, :, n:] == 0)
        for name, want, got in zip("Cnm", state_b, final, strict=True):
            assert_close(f"{name}[{b}]", want[0], got[b])


def test_mlstm_dispatcher_picks_by_length():
    q, k, v, i_pre, f_pre, state = mlstm_inputs(1, 1, 40, 4, torch.float64)
    log_f = F.logsigmoid(f_pre)
    want, _ = mlstm_recurrent(q, k, v, i_pre, log_f, state)
    for chunk_size in (8, 64):  # chunkwise (40 > 8) and parallel (40 <= 64)
        got, _ = mlstm_sequence(q, k, v, i_pre, log_f, state, chunk_size=chunk_size)
        assert_close("h", want, got)
    with pytest.raises(ValueError, match="form"):
        mlstm_sequence(q, k, v, i_pre, log_f, form="quadratic")


# --------------------------------------------------------------------------- gradcheck
def test_slstm_cell_gradcheck():
    cell = SLSTMCellSpec(3, 4, num_heads=2)
    g = torch.Generator().manual_seed(2)
    params = {
        name: torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
        for name, shape in cell.param_shapes().items()
    }
    x = torch.randn(5, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    # a non-empty start state, so the max in m is exercised from the first step
    h0, c0 = (torch.randn(2, 4, generator=g, dtype=torch.float64) for _ in range(2))
    n0 = torch.rand(2, 4, generator=g, dtype=torch.float64) + 0.5
    m0 = torch.randn(2, 4, generator=g, dtype=torch.float64)
    names = list(params)

    def run(x, *values):
        out, state = run_layer(cell, dict(zip(names, values, strict=True)), x, (h0, c0, n0, m0))
        return out, *state

    assert torch.autograd.gradcheck(run, (x, *params.values()))


def test_slstm_cell_gradcheck_sigmoid_from_zero_state():
    cell = SLSTMCellSpec(3, 4, num_heads=1, forget_gate="sigmoid")
    g = torch.Generator().manual_seed(3)
    params = [
        torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
        for shape in cell.param_shapes().values()
    ]
    x = torch.randn(4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    zeros = tuple(torch.zeros(2, 4, dtype=torch.float64) for _ in range(4))

    def run(x, *values):
        out, state = run_layer(cell, dict(zip(cell.param_shapes(), values, strict=True)), x, zeros)
        return out, *state

    assert torch.autograd.gradcheck(run, (x, *params))


@pytest.mark.parametrize("form", ["recurrent", "parallel", "chunkwise"])
def test_mlstm_gradcheck(form):
    q, k, v, i_pre, f_pre, state = mlstm_inputs(1, 2, 6, 3, torch.float64)
    run = {
        "recurrent": mlstm_recurrent,
        "parallel": mlstm_parallel,
        "chunkwise": lambda *a: mlstm_chunkwise(*a, chunk_size=4),
    }[form]

    def fn(q, k, v, i_pre, f_pre, C0, n0, m0):
        h, (C, n, m) = run(q, k, v, i_pre, F.logsigmoid(f_pre), (C0, n0, m0))
        return h, C, n, m

    assert torch.autograd.gradcheck(fn, (q, k, v, i_pre, f_pre, *state))


def test_mlstm_cell_step_gradcheck():
    cell = MLSTMCellSpec(3, 4, num_heads=2, forget_gate="exp")
    g = torch.Generator().manual_seed(4)
    params = [
        torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
        for shape in cell.param_shapes().values()
    ]
    x = torch.randn(4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.zeros(2, *shape, dtype=torch.float64) for shape in cell.state_shapes())

    def run(x, *values):
        out, final = run_layer(cell, dict(zip(cell.param_shapes(), values, strict=True)), x, state)
        return out, *final

    assert torch.autograd.gradcheck(run, (x, *params))


# --------------------------------------------------------------------------- sLSTM math
def test_slstm_step_is_the_unstabilised_recurrence():
    """The stabilised step gives the paper's h_t = o * c_t / n_t with c, n in plain exp gates."""
    torch.set_default_dtype(torch.float64)
    try:
        cell = SLSTMCellSpec(3, 4, num_heads=2)
        params = {n: torch.randn(s) * 0.5 for n, s in cell.param_shapes().items()}
        x = torch.randn(6, 2, 3)
        out, _ = run_layer(cell, params, x, tuple(torch.zeros(2, 4) for _ in range(4)))
        h, c, n = torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4)
        for t in range(6):
            pre = x[t] @ params["weight_ih"].T + params["bias"]
            W = torch.block_diag(*params["weight_hh"])  # [K*4E, H] blocks, head-major rows
            gh = (h @ W.T).view(2, 2, 4, 2).transpose(1, 2).reshape(2, 16)
            i_pre, f_pre, z_pre, o_pre = (pre + gh).chunk(4, dim=-1)
            c = torch.exp(f_pre) * c + torch.exp(i_pre) * torch.tanh(z_pre)
            n = torch.exp(f_pre) * n + torch.exp(i_pre)
            h = torch.sigmoid(o_pre) * c / n
            assert_close(f"h[{t}]", h, out[t])
    finally:
        torch.set_default_dtype(torch.float32)


# --------------------------------------------------------------------------- modules
def test_slstm_module_lengths_and_step():
    model = sLSTM(5, 8, num_layers=2, num_heads=2, dtype=torch.float64).eval()
    x = torch.randn(9, 3, 5, dtype=torch.float64)
    out, state = model(x, lengths=[9, 4, 6])
    for b, n in enumerate([9, 4, 6]):
        alone, state_b = model(x[:n, b : b + 1])
        assert_close(f"out[{b}]", alone[:, 0], out[:n, b])
        for name, want, got in zip("hcnm", state_b, state, strict=True):
            assert_close(f"{name}[{b}]", want[:, 0], got[:, b])
    full, full_state = model(x)
    hx, steps = None, []
    for t in range(9):
        y, hx = model.step(x[t], hx)
        steps.append(y)
    assert_close("step outputs", full, torch.stack(steps))
    for name, want, got in zip("hcnm", full_state, hx, strict=True):
        assert_close(name, want, got)


def test_slstm_module_errors():
    with pytest.raises(ValueError, match="num_heads"):
        sLSTM(4, 6, num_heads=4)
    with pytest.raises(ValueError, match="forget_gate"):
        sLSTM(4, 8, forget_gate="tanh")
    model = sLSTM(4, 8)
    with pytest.raises(ValueError, match=r"\(h0, c0, n0, m0\)"):
        model(torch.randn(3, 2, 4), (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)))
    with pytest.raises(ValueError, match=r"backend='torch'.*do not support sLSTM"):
        sLSTM(4, 8, backend="torch")
    with pytest.raises(ValueError, match="backend"):
        sLSTM(4, 8, backend="fast")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_mlstm_module_forms_agree(bidirectional):
    """Module level: parallel and chunkwise equal the backend's step loop, with lengths."""
    model = mLSTM(5, 8, num_layers=2, num_heads=2, bidirectional=bidirectional, chunk_size=3)
    model = model.double()
    x = torch.randn(10, 3, 5, dtype=torch.float64, requires_grad=True)
    lengths = [10, 4, 7]
    results = {}
    for form in ("recurrent", "parallel", "chunkwise"):
        model.form = form
        out, state = model(x, lengths=lengths)
        grads = grads_of([out, *state], [x, *model.parameters()])
        results[form] = (out, state, grads)
    want_out, want_state, want_grads = results["recurrent"]
    for form in ("parallel", "chunkwise"):
        out, state, grads = results[form]
        assert_close(f"{form} output", want_out, out)
        for name, want, got in zip("Cnm", want_state, state, strict=True):
            assert_close(f"{form} {name}", want, got)
        for (name, _), want, got in zip(
            [("x", None), *model.named_parameters()], want_grads, grads, strict=True
        ):
            assert_close(f"{form} d{name}", want, got)


def test_mlstm_module_step_equals_sequence():
    model = mLSTM(5, 8, num_heads=2, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 12, 5, dtype=torch.float64)
    full, full_state = model(x)
    hx, steps = None, []
    for t in range(12):
        y, hx = model.step(x[:, t], hx)
        steps.append(y)
    assert_close("step outputs", full, torch.stack(steps, dim=1))
    # continuing from a state: two halves equal the whole
    first, mid = model(x[:, :5])
    second, end = model(x[:, 5:], mid)
    assert_close("halves", full, torch.cat([first, second], dim=1))
    for name, want, got in zip("Cnm", full_state, end, strict=True):
        assert_close(name, want, got)


def test_mlstm_module_errors():
    with pytest.raises(ValueError, match="form"):
        mLSTM(4, 8, form="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        mLSTM(4, 8, chunk_size=0)
    with pytest.raises(ValueError, match=r"\(C0, n0, m0\)"):
        mLSTM(4, 8)(torch.randn(3, 2, 4), (torch.zeros(1, 2, 1, 8, 8),))


# --------------------------------------------------------------------------- blocks, stacks
def test_parse_blocks():
    assert parse_blocks("xLSTM[7:1]", None) == ["m"] * 7 + ["s"]
    assert parse_blocks("xLSTM[1:1]", 4) == ["m", "s", "m", "s"]
    assert parse_blocks("xLSTM[0:1]", 2) == ["s", "s"]
    assert parse_blocks(["s", "mLSTM"], None) == ["s", "m"]
    for bad, num in (("xLSTM[7-1]", None), ("xLSTM[1:1]", 3), ("xLSTM[0:0]", None)):
        with pytest.raises(ValueError, match="blocks"):
            parse_blocks(bad, num)
    with pytest.raises(ValueError, match="'m' or 's'"):
        parse_blocks(["m", "t"], None)


@pytest.mark.parametrize("batch_first", [False, True])
def test_xlstm_step_equals_sequence(batch_first):
    """Token-by-token decoding with state gives the full run's logits and final state."""
    model = xLSTM(
        16, "xLSTM[1:1]", 2, num_heads=2, vocab_size=11, batch_first=batch_first,
        chunk_size=4, dtype=torch.float64,
    ).eval()  # fmt: skip
    tokens = torch.randint(0, 11, (2, 9) if batch_first else (9, 2))
    logits, final = model(tokens)
    assert logits.shape == ((2, 9, 11) if batch_first else (9, 2, 11))
    time_dim = 1 if batch_first else 0
    state, steps = None, []
    for t in range(9):
        y, state = model.step(tokens.select(time_dim, t), state)
        steps.append(y)
    assert_close("logits", logits, torch.stack(steps, dim=time_dim))
    for k, (want_block, got_block) in enumerate(zip(final, state, strict=True)):
        for j, (want, got) in enumerate(zip(want_block, got_block, strict=True)):
            assert_close(f"block {k} state {j}", want, got)


def test_xlstm_features_backward_and_errors():
    model = xLSTM(8, ["s", "m"], num_heads=2, conv_kernel_size=2)
    x = torch.randn(5, 3, 8, requires_grad=True)
    y, _ = model(x)
    assert y.shape == (5, 3, 8)
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match="features"):
        model(torch.randn(5, 3, 7))
    with pytest.raises(ValueError, match="one entry per block"):
        model(x, state=[None])
    with pytest.raises(ValueError, match="token ids"):
        xLSTM(8, "xLSTM[1:0]", num_heads=2, vocab_size=5)(torch.randn(4, 2, 8))


def test_public_names():
    assert {"sLSTM", "mLSTM", "xLSTM"} <= set(lstmkit.nn.__all__)


# --------------------------------------------------------------------------- stability
def _no_overflow(model_out: list[torch.Tensor], leaves: list[torch.Tensor]) -> None:
    for k, t in enumerate(model_out):
        assert torch.isfinite(t).all(), f"output {k} has inf/NaN"
    grads = grads_of(model_out, leaves)
    for k, g in enumerate(grads):
        assert g is not None and torch.isfinite(g).all(), f"gradient {k} has inf/NaN"


def _slstm_stability(T: int, forget_gate: str) -> None:
    cell = SLSTMCellSpec(4, 8, num_heads=2, forget_gate=forget_gate)
    g = torch.Generator().manual_seed(5)
    params = {
        n: torch.randn(s, generator=g).requires_grad_() for n, s in cell.param_shapes().items()
    }
    # pre-activations of size ~100: exp(100) overflows float32 without the stabiliser
    x = (torch.randn(T, 2, 4, generator=g) * 50).requires_grad_()
    zeros = tuple(torch.zeros(2, 8) for _ in range(4))
    out, state = run_layer(cell, params, x, zeros)
    _no_overflow([out, *state], [x, *params.values()])


def _mlstm_stability(T: int, form: str) -> None:
    g = torch.Generator().manual_seed(6)
    q, k, v, i_pre, f_pre, _ = mlstm_inputs(1, 2, T, 4, torch.float32, with_state=False,
                                            gate_scale=100.0, generator=g)  # fmt: skip
    h, state = mlstm_sequence(q, k, v, i_pre, F.logsigmoid(f_pre), form=form, chunk_size=64)
    _no_overflow([h, *state], [q, k, v, i_pre, f_pre])


@pytest.mark.parametrize("forget_gate", ["exp", "sigmoid"])
def test_slstm_stable_2000_steps(forget_gate):
    _slstm_stability(2000, forget_gate)


@pytest.mark.parametrize("form", ["chunkwise", "recurrent"])
def test_mlstm_stable_2000_steps(form):
    _mlstm_stability(2000, form)


def test_mlstm_parallel_stable_large_gates():
    _mlstm_stability(256, "parallel")


@pytest.mark.slow
@pytest.mark.parametrize("forget_gate", ["exp", "sigmoid"])
def test_slstm_stable_10000_steps(forget_gate):
    _slstm_stability(10_000, forget_gate)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["chunkwise", "recurrent"])
def test_mlstm_stable_10000_steps(form):
    _mlstm_stability(10_000, form)
