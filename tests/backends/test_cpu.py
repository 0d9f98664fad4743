"""The fused C++ CPU backend against the reference loop: outputs, final states, every gradient.

Every comparison runs both backends on the same inputs and compares output, final states and
the gradients of the input, every weight and every initial state under random upstream
gradients (fp32 rtol 1e-5, fp64 rtol 1e-10). Tests that need the compiled engine skip, one by
one, with the build error as the reason, if it could not be built.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from functools import partial

import pytest
import torch

import lstmkit
from helpers import assert_close, grads_of
from lstmkit.backends import cpu, reference, registry
from lstmkit.backends.cpu import _build
from lstmkit.cells import GRUCellSpec, LSTMCellSpec, get_variant
from lstmkit.cells.activations import ACTIVATIONS

VARIANTS = list(lstmkit.variants())
DTYPES = {"fp32": torch.float32, "fp64": torch.float64}


@pytest.fixture
def engine():
    """Skip the test if the C++ engine could not be built (the reason is the build error)."""
    if not cpu.available():
        pytest.skip(f"the C++ engine did not build: {cpu.build_error()}")


# --------------------------------------------------------------------------- helpers
def make_inputs(cell, T: int, B: int, dtype, *, zoneout=False, rmask=False, seed=0):
    """Input, initial states and masks for one layer-direction of ``cell``."""
    g = torch.Generator().manual_seed(seed)
    D = cell.param_shapes()["weight_ih"][1]
    x = torch.randn(T, B, D, generator=g, dtype=dtype).requires_grad_()
    sizes = cell.state_sizes()
    state = [torch.randn(B, s, generator=g, dtype=dtype) * 0.5 for s in sizes]
    if len(sizes) == 3:  # FGR's gate state holds activations
        state[2] = torch.rand(B, sizes[2], generator=g, dtype=dtype)
    state = tuple(s.requires_grad_() for s in state)
    zoneout_masks = None
    if zoneout:
        zoneout_masks = tuple(
            torch.bernoulli(torch.full((T, B, sizes[k]), 0.3, dtype=dtype), generator=g)
            for k in cell.zoneout_states
        )
    recurrent_mask = None
    if rmask:
        keep = torch.full((B, cell.recurrent_input_size), 0.7, dtype=dtype)
        recurrent_mask = torch.bernoulli(keep, generator=g) / 0.7
    return x, state, zoneout_masks, recurrent_mask


def assert_close_normwise(name: str, expected, actual, rtol: float) -> None:
    """||actual - expected|| <= rtol * ||expected|| (Frobenius norms)."""
    error = (actual - expected).double().norm()
    scale = expected.double().norm()
    assert error <= rtol * scale, f"{name}: norm-wise relative error {error / scale:.2e} > {rtol}"


def compare_layer(
    cell, params, T, B, dtype, *, lengths=None, reverse=False, normwise=False, **masks
) -> None:
    """cpu.run_layer against reference.run_layer: outputs, states, every gradient; elementwise
    (fp32 rtol 1e-5, fp64 1e-10), or with ``normwise`` each tensor as a whole, to the same
    relative tolerance."""
    x, state, zoneout_masks, recurrent_mask = make_inputs(cell, T, B, dtype, **masks)
    options = dict(
        lengths=lengths, reverse=reverse, zoneout_masks=zoneout_masks, recurrent_mask=recurrent_mask
    )
    inputs = [x, *params.values(), *state]
    names = ["x", *params, *(f"state{k}" for k in range(len(state)))]
    results = []
    for run in (reference.run_layer, cpu.run_layer):
        y, final = run(cell, params, x, state, **options)
        outputs = [y, *final]
        results.append((outputs, grads_of(outputs, inputs, seed=1)))
    (ref_out, ref_grads), (cpu_out, cpu_grads) = results
    check = assert_close
    if normwise:
        check = partial(assert_close_normwise, rtol=1e-5 if dtype == torch.float32 else 1e-10)
    for k, (expected, actual) in enumerate(zip(ref_out, cpu_out, strict=True)):
        check("output" if k == 0 else f"final state{k - 1}", expected, actual)
    for name, expected, actual in zip(names, ref_grads, cpu_grads, strict=True):
        if expected is None:  # reference: nothing reads it (h0 of peephole_full); cpu: zeros
            expected = torch.zeros_like(actual)
        check(f"d{name}", expected, actual)


def randomize_layer_norm(module) -> None:
    """Layer-norm gains and shifts away from their init (1 and 0), so that all of them count."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.startswith("ln_"):
                param.add_(0.3 * torch.randn(param.shape, generator=g, dtype=param.dtype))


def lstm_layer(variant="standard", D=4, H=6, dtype=torch.float64, **options):
    module = lstmkit.LSTM(D, H, variant=variant, dtype=dtype, **options)
    randomize_layer_norm(module)
    return module.cells[0][0], module.layer_params(0, 0)


def gru_layer(D=4, H=6, dtype=torch.float64, **options):
    module = lstmkit.GRU(D, H, dtype=dtype, **options)
    randomize_layer_norm(module)
    return module.cells[0][0], module.layer_params(0, 0)


# --------------------------------------------------------------------------- run_layer: LSTM
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("variant", VARIANTS)
def test_lstm_variants(engine, variant, dtype, reverse):
    cell, params = lstm_layer(variant, dtype=dtype)
    compare_layer(cell, params, T=5, B=3, dtype=dtype, reverse=reverse)


# lengths, projection without bias, zoneout + recurrent dropout + clip, B=1, T=1
LSTM_OPTIONS = {
    "lengths-B3": dict(B=3, T=5, lengths=[5, 2, 4]),
    "lengths-rev-B5": dict(B=5, T=6, lengths=[1, 6, 3, 6, 2], reverse=True),
    "proj-nobias-lengths": dict(
        B=3, T=5, lengths=[2, 5, 1], layer=dict(proj_size=3, bias=False), reverse=True
    ),
    "zoneout-rmask-clip": dict(B=3, T=5, zoneout=True, rmask=True, layer=dict(cell_clip=0.3)),
    "everything-rev": dict(
        B=3,
        T=5,
        lengths=[5, 3, 1],
        zoneout=True,
        rmask=True,
        reverse=True,
        layer=dict(cell_clip=0.3, proj_size=2),
    ),
    "B1-T1": dict(B=1, T=1),
    "T1-lengths": dict(B=3, T=1, lengths=[1, 1, 1], reverse=True),
}


@pytest.mark.parametrize("case", LSTM_OPTIONS.values(), ids=LSTM_OPTIONS.keys())
@pytest.mark.parametrize("variant", VARIANTS)
def test_lstm_options(engine, variant, case):
    case = dict(case)
    cell, params = lstm_layer(variant, **case.pop("layer", {}))
    lengths = case.pop("lengths", None)
    lengths = None if lengths is None else torch.tensor(lengths)
    compare_layer(cell, params, dtype=torch.float64, lengths=lengths, **case)


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("slot", ["sigma_g", "sigma_c", "sigma_h"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_lstm_activations(engine, activation, slot, dtype):
    cell, params = lstm_layer("peephole", dtype=dtype, **{slot: activation})
    compare_layer(cell, params, T=4, B=3, dtype=dtype, lengths=torch.tensor([4, 2, 3]))


LAYER_NORM_OPTIONS = {
    "plain": dict(B=3, T=5),
    "lengths-rev-nobias": dict(B=3, T=5, lengths=[5, 2, 4], reverse=True, layer=dict(bias=False)),
    "proj-zoneout-rmask-clip": dict(
        B=3,
        T=5,
        lengths=[1, 5, 3],
        zoneout=True,
        rmask=True,
        layer=dict(proj_size=3, cell_clip=0.5),
    ),
}


@pytest.mark.parametrize("case", LAYER_NORM_OPTIONS.values(), ids=LAYER_NORM_OPTIONS.keys())
@pytest.mark.parametrize("variant", VARIANTS)
def test_lstm_layer_norm(engine, variant, case):
    case = dict(case)
    cell, params = lstm_layer(variant, layer_norm=True, **case.pop("layer", {}))
    lengths = case.pop("lengths", None)
    lengths = None if lengths is None else torch.tensor(lengths)
    compare_layer(cell, params, dtype=torch.float64, lengths=lengths, **case)


def test_lstm_fp32_options(engine):
    cell, params = lstm_layer("fgr", dtype=torch.float32, proj_size=3, cell_clip=0.5)
    compare_layer(
        cell, params, T=6, B=3, dtype=torch.float32, lengths=torch.tensor([6, 2, 4]),
        reverse=True, zoneout=True, rmask=True,
    )  # fmt: skip


# --------------------------------------------------------------------------- run_layer: GRU
GRU_OPTIONS = {
    "plain": dict(B=3, T=5),
    "rev": dict(B=3, T=5, reverse=True),
    "lengths-rev-B5": dict(B=5, T=6, lengths=[1, 6, 3, 6, 2], reverse=True),
    "nobias-zoneout-rmask": dict(B=3, T=5, zoneout=True, rmask=True, layer=dict(bias=False)),
    "everything": dict(B=3, T=5, lengths=[5, 3, 1], zoneout=True, rmask=True),
    "B1-T1": dict(B=1, T=1),
}


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("case", GRU_OPTIONS.values(), ids=GRU_OPTIONS.keys())
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru(engine, reset_after, case, dtype):
    case = dict(case)
    cell, params = gru_layer(dtype=dtype, reset_after=reset_after, **case.pop("layer", {}))
    lengths = case.pop("lengths", None)
    lengths = None if lengths is None else torch.tensor(lengths)
    compare_layer(cell, params, dtype=dtype, lengths=lengths, **case)


@pytest.mark.parametrize("case", ["plain", "lengths-rev-nobias", "zoneout-rmask"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru_layer_norm(engine, reset_after, case):
    options = {
        "plain": dict(),
        "lengths-rev-nobias": dict(lengths=torch.tensor([5, 2, 4]), reverse=True),
        "zoneout-rmask": dict(zoneout=True, rmask=True),
    }[case]
    bias = case != "lengths-rev-nobias"
    cell, params = gru_layer(reset_after=reset_after, layer_norm=True, bias=bias)
    compare_layer(cell, params, T=5, B=3, dtype=torch.float64, **options)


def assert_fp32_as_accurate_as_reference(cell, params, T, B, lengths=None) -> None:
    """The engine's float32 error against the float64 truth (the reference in float64) is at
    most three times the float32 reference's own, plus one float32 ulp of the largest value:
    outputs, states and every gradient under random upstream gradients. For where two float32
    computations cannot agree to rtol 1e-5 elementwise (sums in different orders that cancel)."""
    x, state, _, _ = make_inputs(cell, T, B, torch.float64)
    g = torch.Generator().manual_seed(1)
    upstream = None
    results = {}
    for name, run, dtype in [
        ("truth", reference.run_layer, torch.float64),
        ("reference", reference.run_layer, torch.float32),
        ("cpu", cpu.run_layer, torch.float32),
    ]:
        p = {k: v.detach().to(dtype).requires_grad_() for k, v in params.items()}
        xd = x.detach().to(dtype).requires_grad_()
        sd = tuple(s.detach().to(dtype).requires_grad_() for s in state)
        y, final = run(cell, p, xd, sd, lengths=lengths)
        outputs = [y, *final]
        if upstream is None:
            upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outputs]
        inputs = [xd, *p.values(), *sd]
        grads = torch.autograd.grad(outputs, inputs, [u.to(dtype) for u in upstream])
        results[name] = [t.detach().double() for t in (*outputs, *grads)]
    names = ["y", *(f"state{k}" for k in range(len(state))), "dx", *(f"d{k}" for k in params)]
    names += [f"d state{k}" for k in range(len(state))]
    for name, truth, ref, ours in zip(names, *results.values(), strict=True):
        ref_error, our_error = (ref - truth).abs().max(), (ours - truth).abs().max()
        ulp = torch.finfo(torch.float32).eps * truth.abs().max()
        assert our_error <= 3 * ref_error + ulp, f"{name}: {our_error:.2e} vs {ref_error:.2e}"


@pytest.mark.parametrize("variant", ["standard", "peephole_full", "fgr", "gru"])
def test_layer_norm_fp32_as_accurate_as_reference(engine, variant):
    """In float32 the gradient through a layer norm of a few units is ill-conditioned: the
    reference and the engine each sit up to a few 1e-6 from the float64 truth (the reference
    itself misses rtol 1e-5 against it for some elements), so they cannot agree to rtol 1e-5
    elementwise; each is held to the float64 truth instead. (float64 layer norm is compared
    with the reference at rtol 1e-10 above.)"""
    if variant == "gru":
        cell, params = gru_layer(layer_norm=True)
    else:
        cell, params = lstm_layer(variant, layer_norm=True, proj_size=2)
    assert_fp32_as_accurate_as_reference(cell, params, 5, 3, lengths=torch.tensor([5, 2, 4]))


# --------------------------------------------------------------------------- step GEMMs
FP32_KERNEL_CASES = {
    "fgr-proj-everything": dict(
        layer=dict(variant="fgr", proj_size=3, cell_clip=0.5), lengths=[6, 2, 4], reverse=True,
        zoneout=True, rmask=True,
    ),
    "peephole_full-layer_norm-rmask": dict(
        layer=dict(variant="peephole_full", layer_norm=True), rmask=True
    ),
    "gru-reset_before-rmask": dict(gru=dict(reset_after=False), rmask=True, lengths=[6, 2, 4]),
    "gru-reset_after-rev": dict(gru=dict(), reverse=True, zoneout=True),
}  # fmt: skip


@pytest.mark.parametrize("case", FP32_KERNEL_CASES.values(), ids=FP32_KERNEL_CASES.keys())
def test_fp32_step_gemm_kernels(step_gemm, case):
    """Both kernels of the per-step (and weight-gradient) GEMMs, against the reference."""
    case = dict(case)
    if "gru" in case:
        cell, params = gru_layer(D=5, H=7, dtype=torch.float32, **case.pop("gru"))
    else:
        cell, params = lstm_layer(D=5, H=7, dtype=torch.float32, **case.pop("layer"))
    lengths = case.pop("lengths", None)
    lengths = None if lengths is None else torch.tensor(lengths)
    compare_layer(cell, params, T=6, B=3, dtype=torch.float32, lengths=lengths, **case)


# the GRU at H = 256, where its step GEMMs' U_r,z [2H, H] (and U [3H, H] under layer norm)
# reach the 2^17 elements from which they are packed
GRU_SPLIT = {"gru": {}, "gru-reset_before": {"reset_after": False}, "gru-ln": {"layer_norm": True}}


@pytest.mark.parametrize("variant", ["standard", "peephole", "fgr", *GRU_SPLIT])
def test_fp32_gemms_split_across_threads(step_gemm, variant):
    """Sizes where the GEMMs split: the input projection into blocks of rows (T*B > 256),
    the step and weight-gradient products into column blocks across two threads, the step
    GEMMs' weights into packed column blocks (at least 128K of them), and the weight
    gradients' transposed factor into chunks of 512 rows (T*B = 1160: two whole chunks and a
    part). The engine sums a weight gradient's 1160 rows in one GEMM where the reference sums
    29 steps of 40, so
    in float32 an element whose terms cancel can differ beyond rtol 1e-5 (a few 1e-6 absolute;
    against the float64 truth the engine's largest error measured 2-3x the reference's, its
    mean error under 2x): float32 is compared tensor by tensor (norm-wise relative 1e-5),
    float64 element by element (1e-10)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for dtype in (torch.float32, torch.float64):
            if variant in GRU_SPLIT:
                cell, params = gru_layer(D=24, H=256, dtype=dtype, **GRU_SPLIT[variant])
            else:
                cell, params = lstm_layer(variant, D=24, H=224, dtype=dtype)
            compare_layer(cell, params, T=29, B=40, dtype=dtype, normwise=dtype == torch.float32)
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- modules
def compare_modules(make, x, hx=None, lengths=None, *, train=False):
    """A module with backend='cpu' against the same weights on backend='reference'."""
    results = []
    for backend in ("reference", "cpu"):
        torch.manual_seed(0)
        module = make(backend)
        module.train(train)
        xb = x.detach().clone().requires_grad_()
        hb = None if hx is None else tuple(h.detach().clone().requires_grad_() for h in hx)
        torch.manual_seed(1)  # the same dropout and zoneout masks for both
        hidden = None if hb is None else (hb[0] if len(hb) == 1 else hb)
        y, final = module(xb, hidden, lengths=lengths)
        outputs = [y, *(final if isinstance(final, tuple) else (final,))]
        inputs = [xb, *(hb or ()), *module.parameters()]
        names = ["x", *(f"h{k}" for k in range(len(hb or ()))), *dict(module.named_parameters())]
        results.append((outputs, grads_of(outputs, inputs, seed=2), names))
    (ref_out, ref_grads, names), (cpu_out, cpu_grads, _) = results
    for k, (expected, actual) in enumerate(zip(ref_out, cpu_out, strict=True)):
        assert_close(f"output {k}", expected, actual)
    for name, expected, actual in zip(names, ref_grads, cpu_grads, strict=True):
        if expected is None:
            expected = torch.zeros_like(actual)
        assert_close(f"d{name}", expected, actual)


MODULES = {
    "standard-L1": dict(variant="standard", num_layers=1),
    "standard-L3-bi": dict(variant="standard", num_layers=3, bidirectional=True),
    "peephole-L3-bi-proj": dict(variant="peephole", num_layers=3, bidirectional=True, proj_size=3),
    "cifg-L2-bi": dict(variant="cifg", num_layers=2, bidirectional=True),
    "fgr-L3": dict(variant="fgr", num_layers=3),
    "peephole_full-L2-bi": dict(variant="peephole_full", num_layers=2, bidirectional=True),
}


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("use_lengths", [False, True], ids=["padded", "lengths"])
@pytest.mark.parametrize("config", MODULES.values(), ids=MODULES.keys())
def test_lstm_module(engine, config, use_lengths, dtype):
    T, B, D, H = 6, 3, 4, 5
    x = torch.randn(T, B, D, dtype=dtype)
    lengths = torch.tensor([6, 2, 5]) if use_lengths else None

    def make(backend):
        return lstmkit.LSTM(D, H, dtype=dtype, backend=backend, **config)

    probe = make("reference")
    rows = probe.num_layers * probe.num_directions
    hx = tuple(torch.randn(rows, B, size, dtype=dtype) for size in probe.cells[0][0].state_sizes())
    compare_modules(make, x, hx[:2], lengths)


def test_lstm_module_training_masks(engine):
    T, B, D, H = 5, 3, 4, 5

    def make(backend):
        return lstmkit.LSTM(
            D, H, num_layers=2, bidirectional=True, variant="peephole", dropout=0.3,
            zoneout=(0.2, 0.3), recurrent_dropout=0.25, cell_clip=0.7, backend=backend,
            dtype=torch.float64,
        )  # fmt: skip

    x = torch.randn(T, B, D, dtype=torch.float64)
    compare_modules(make, x, lengths=torch.tensor([5, 1, 3]), train=True)


def test_layer_norm_modules(engine):
    T, B, D, H = 5, 3, 4, 5
    x = torch.randn(T, B, D, dtype=torch.float64)

    def make_lstm(backend):
        module = lstmkit.LSTM(
            D, H, num_layers=2, bidirectional=True, variant="cifg", layer_norm=True,
            backend=backend, dtype=torch.float64,
        )  # fmt: skip
        randomize_layer_norm(module)
        return module

    def make_gru(backend):
        module = lstmkit.GRU(
            D, H, num_layers=2, bidirectional=True, layer_norm=True, backend=backend,
            dtype=torch.float64,
        )  # fmt: skip
        randomize_layer_norm(module)
        return module

    compare_modules(make_lstm, x, lengths=torch.tensor([5, 1, 3]))
    compare_modules(make_gru, x, lengths=torch.tensor([5, 1, 3]))


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru_module(engine, reset_after):
    T, B, D, H = 6, 3, 4, 5

    def make(backend):
        return lstmkit.GRU(
            D, H, num_layers=3, bidirectional=True, reset_after=reset_after, zoneout=0.2,
            recurrent_dropout=0.2, backend=backend, dtype=torch.float64,
        )  # fmt: skip

    x = torch.randn(T, B, D, dtype=torch.float64)
    h0 = (torch.randn(6, B, H, dtype=torch.float64),)
    compare_modules(make, x, h0, torch.tensor([6, 4, 1]), train=True)


# --------------------------------------------------------------------------- the ops
GRADCHECK_LSTM = [(v, True) for v in ("standard", "peephole", "cifg", "fgr", "peephole_full")]


# masked: lengths, zoneout and a recurrent mask. Without lengths and zoneout FGR's engine reads
# a_{t-1} from the previous step's activations, not from gate-state slots of its own.
@pytest.mark.parametrize(
    "variant, masked", [*GRADCHECK_LSTM, ("fgr", False)],
    ids=[*(f"{v}-masked" for v, _ in GRADCHECK_LSTM), "fgr-plain"],
)  # fmt: skip
def test_gradcheck_lstm(engine, variant, masked):
    cell, params = lstm_layer(variant, D=3, H=3, proj_size=2, cell_clip=0.8)
    x, state, zoneout_masks, recurrent_mask = make_inputs(
        cell, 4, 2, torch.float64, zoneout=masked, rmask=masked
    )
    names = list(params)
    lengths = torch.tensor([4, 2]) if masked else None

    def run(x, *rest):
        p = dict(zip(names, rest[: len(names)], strict=True))
        y, final = cpu.run_layer(
            cell, p, x, tuple(rest[len(names) :]), lengths=lengths, reverse=True,
            zoneout_masks=zoneout_masks, recurrent_mask=recurrent_mask,
        )  # fmt: skip
        return (y, *final)

    assert torch.autograd.gradcheck(run, (x, *params.values(), *state))


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gradcheck_gru(engine, reset_after):
    cell, params = gru_layer(D=3, H=3, reset_after=reset_after)
    x, state, zoneout_masks, recurrent_mask = make_inputs(
        cell, 4, 2, torch.float64, zoneout=True, rmask=True
    )
    names = list(params)

    def run(x, *rest):
        p = dict(zip(names, rest[: len(names)], strict=True))
        y, final = cpu.run_layer(
            cell, p, x, tuple(rest[len(names) :]), lengths=torch.tensor([3, 4]),
            zoneout_masks=zoneout_masks, recurrent_mask=recurrent_mask,
        )  # fmt: skip
        return (y, *final)

    assert torch.autograd.gradcheck(run, (x, *params.values(), *state))


def test_opcheck(engine):
    """Schema, fake (meta) shapes and autograd registration of the custom ops."""
    from lstmkit.backends.cpu import ops

    T, B, D, H = 3, 2, 4, 5
    x = torch.randn(T, B, D, requires_grad=True)

    def weight(*shape):
        return torch.randn(*shape, requires_grad=True)

    lstm_args = (  # fgr with diagonal peepholes and layer norm
        x, weight(4 * H, D), weight(4 * H, H), weight(4 * H), weight(3 * H),
        weight(3 * H, 3 * H), None, weight(4 * H), weight(H), weight(H), torch.randn(B, H),
        torch.randn(B, H), torch.rand(B, 3 * H), torch.tensor([3, 1]), None, None, None, None,
        [0, 1, 2, 0, 1, 1, 0, 1, 1, 0], 0.0,
    )  # fmt: skip
    torch.library.opcheck(ops.lstm_layer_fwd, lstm_args)
    # without lengths (and zoneout) FGR keeps a0 alone, not [T + 1, B, 3H] gate-state slots
    torch.library.opcheck(ops.lstm_layer_fwd, (*lstm_args[:13], None, *lstm_args[14:]))
    gru_args = (
        x, weight(3 * H, D), weight(3 * H, H), weight(3 * H), weight(H), None,
        torch.randn(B, H), None, None, None, [1, 1],
    )  # fmt: skip
    torch.library.opcheck(ops.gru_layer_fwd, gru_args)


@pytest.mark.parametrize("variant", ["peephole", "gru"])
def test_two_runs_are_bitwise_equal(engine, variant):
    if variant == "gru":
        cell, params = gru_layer(D=8, H=16, dtype=torch.float32)
    else:
        cell, params = lstm_layer(variant, D=8, H=16, dtype=torch.float32, proj_size=5)
    x, state, zoneout_masks, recurrent_mask = make_inputs(
        cell, 7, 5, torch.float32, zoneout=True, rmask=True
    )
    inputs = [x, *params.values(), *state]
    runs = []
    for _ in range(2):
        y, final = cpu.run_layer(
            cell, params, x, state, lengths=torch.tensor([7, 3, 1, 7, 5]),
            zoneout_masks=zoneout_masks, recurrent_mask=recurrent_mask,
        )  # fmt: skip
        runs.append([y, *final, *grads_of([y, *final], inputs)])
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first, second)


@pytest.mark.parametrize("variant", ["fgr", "gru"])
def test_custom_op_and_its_eager_twin_agree(engine, monkeypatch, variant):
    """Eager training runs each forward op's autograd.Function twin; the op itself (what
    torch.compile runs) gives bitwise the same outputs and gradients."""
    from lstmkit.backends.cpu import ops

    if variant == "gru":
        cell, params = gru_layer(dtype=torch.float32)
    else:
        cell, params = lstm_layer(variant, dtype=torch.float32, proj_size=3)
    x, state, zoneout_masks, recurrent_mask = make_inputs(
        cell, 5, 3, torch.float32, zoneout=True, rmask=True
    )
    inputs = [x, *params.values(), *state]
    runs, chosen = [], []
    real = ops.layer_forward
    for path in ("eager", "op"):

        def pick(op, eager, path=path):
            chosen.append(real(op, eager) is eager)
            return eager if path == "eager" else op

        monkeypatch.setattr(ops, "layer_forward", pick)
        y, final = cpu.run_layer(
            cell, params, x, state, lengths=torch.tensor([5, 2, 4]),
            zoneout_masks=zoneout_masks, recurrent_mask=recurrent_mask,
        )  # fmt: skip
        runs.append([y, *final, *grads_of([y, *final], inputs)])
    assert chosen == [True, True]  # with gradients on, outside torch.compile: the twin
    for eager, op in zip(*runs, strict=True):
        assert torch.equal(eager, op)


def test_recycled_buffers_do_not_leak_between_calls(engine):
    """Saved buffers come from a cache of recycled blocks: a second call on other data (and
    after emptying the cache) gives the same result as a fresh run."""
    cell, params = lstm_layer("peephole", D=32, H=128, dtype=torch.float32)  # buffers > 1 MB
    outputs = []
    for seed in (0, 1, 0):
        x, state, _, _ = make_inputs(cell, 40, 16, torch.float32, seed=seed)
        y, final = cpu.run_layer(cell, params, x, state)
        outputs.append([y, *final, *grads_of([y, *final], [x, *params.values()])])
        if seed:
            cpu.empty_cache()
    for first, third in zip(outputs[0], outputs[2], strict=True):
        assert torch.equal(first, third)


# --------------------------------------------------------------------------- registry
class OtherCell:
    """A cell the engine does not know (as ConvLSTM's)."""


def test_cpu_backend_refuses_other_cells():
    assert cpu.unsupported_reason(OtherCell()) == "cells of type OtherCell"
    with pytest.raises(ValueError, match=r"backend='cpu' does not support cells of type OtherCell"):
        registry.check_backend("backend", "cpu", [OtherCell()])
    assert registry.check_backend("backend", "auto", [OtherCell()]) == "auto"
    for cell in (
        GRUCellSpec(3, 4, layer_norm=True),
        LSTMCellSpec(get_variant("fgr"), 3, 4, proj_size=2, layer_norm=True),
    ):
        assert cpu.supports(cell)


def test_cpu_run_layer_refuses_what_it_cannot_run():
    cell = LSTMCellSpec(get_variant("standard"), 3, 4)
    params = {name: torch.zeros(shape) for name, shape in cell.param_shapes().items()}
    state = (torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"dtype torch\.bfloat16"):
        cpu.run_layer(cell, params, torch.zeros(3, 2, 3, dtype=torch.bfloat16), state)
    with pytest.raises(ValueError, match="cells of type OtherCell"):
        cpu.run_layer(OtherCell(), params, torch.zeros(3, 2, 3), state)


def test_auto_runs_the_engine_where_it_can(engine, monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return reference.run_layer(*args, **kwargs)

    monkeypatch.setattr(cpu, "run_layer", spy)
    lstmkit.LSTM(3, 4, variant="peephole")(torch.randn(2, 1, 3))
    assert calls, "auto did not use the cpu backend for a peephole LSTM"
    calls.clear()
    lstmkit.LSTM(3, 4, dtype=torch.bfloat16)(torch.randn(2, 1, 3, dtype=torch.bfloat16))
    assert not calls, "auto used the cpu backend for a dtype it does not run"


def test_auto_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setitem(_build._state, "module", None)
    monkeypatch.setitem(_build._state, "error", "no compiler (simulated)")
    monkeypatch.setattr(registry, "_warned", [])
    module = lstmkit.LSTM(3, 4, variant="peephole")  # (auto hands standard to torch)
    with pytest.warns(RuntimeWarning, match="no compiler"):
        module(torch.randn(2, 1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module(torch.randn(2, 1, 3))  # the second call is silent
    with pytest.raises(ValueError, match=r"backend='cpu' is unavailable.*no compiler"):
        lstmkit.LSTM(3, 4, backend="cpu")(torch.randn(2, 1, 3))


def test_import_does_not_build(tmp_path):
    """``import lstmkit`` and building modules never compile: the engine builds on first use."""
    code = "import lstmkit; lstmkit.LSTM(3, 4); lstmkit.GRU(3, 4, backend='cpu')"
    env = {**os.environ, "LSTMKIT_CACHE": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert not list(tmp_path.iterdir())


def test_environment_selects_cpu(engine, monkeypatch):
    monkeypatch.setenv("LSTMKIT_BACKEND", "cpu")
    assert registry.resolve("reference") is registry._run_cpu
    monkeypatch.setenv("LSTMKIT_BACKEND", "reference")
    assert registry.resolve("auto") is reference.run_layer


@pytest.mark.slow
def test_torch_compile_fullgraph(engine):
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(4, 6, num_layers=2, variant="peephole", bidirectional=True)
    gru = lstmkit.GRU(4, 6, reset_after=False)
    x = torch.randn(5, 3, 4, requires_grad=True)

    def loss(x):
        y, (h, c) = lstm(x)
        z, g = gru(x)
        return y.square().sum() + h.sum() + c.sum() + z.sum() + g.sum()

    compiled = torch.compile(loss, fullgraph=True)
    expected, (dx_expected,) = loss(x), torch.autograd.grad(loss(x), x)
    actual = compiled(x)
    (dx_actual,) = torch.autograd.grad(actual, x)
    assert_close("loss", expected, actual)
    assert_close("dx", dx_expected, dx_actual)


@pytest.mark.slow
def test_torch_compile_fullgraph_with_lengths(engine):
    """lengths= compiles without a graph break (its value checks run only in eager mode), and
    auto keeps ``standard`` off torch's RNN kernels, which dynamo cannot trace."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(3, 5, 4, requires_grad=True)  # [B, T, D]
    lengths = torch.tensor([5, 2, 4])
    inputs = [x, *lstm.parameters()]

    def loss(x, lengths):
        y, (h, c) = lstm(x, lengths=lengths)
        return y.square().sum() + h.sum() + c.sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True)
    expected = loss(x, lengths)
    actual = compiled(x, lengths)
    assert_close("loss", expected, actual)
    names = ["x", *dict(lstm.named_parameters())]
    for name, e, a in zip(
        names,
        torch.autograd.grad(expected, inputs),
        torch.autograd.grad(actual, inputs),
        strict=True,
    ):
        assert_close(f"d{name}", e, a)
    with pytest.raises(ValueError, match="lengths must be at most"):
        loss(x, torch.tensor([6, 2, 4]))  # eager mode still checks the values


@pytest.mark.parametrize("module", ["lstm", "gru", "slstm"])
def test_second_derivative_raises(engine, module):
    """The engine's backward has no derivative of its own: differentiating it raises rather
    than treating the first gradients as constants."""
    torch.manual_seed(0)
    make = {
        "lstm": lambda: lstmkit.LSTM(3, 4, backend="cpu"),
        "gru": lambda: lstmkit.GRU(3, 4, backend="cpu"),
        "slstm": lambda: lstmkit.sLSTM(3, 4, num_heads=1, backend="cpu"),
    }[module]
    x = torch.randn(5, 2, 3, requires_grad=True)
    y = make()(x)[0]
    (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        dx.sum().backward()
