"""ConvLSTM's fused C++ gate pass against the ATen step it replaces: h, c, every gradient.

Each comparison runs ``ConvLSTMCellSpec.step`` twice on the same fresh random inputs, once
with the fused pass switched off (the ATen reference code) and once on, and compares h_t, c_t
and the gradients of the step's input projection (which is d pre), h_{t-1}, c_{t-1}, the
recurrent weights and the peepholes under random upstream gradients of h_t and c_t (fp32
rtol 1e-5, fp64 rtol 1e-10). Tests that need the compiled engine skip, one by one, with the
build error as the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import lstmkit
from helpers import assert_close, grads_of
from lstmkit.backends import cpu
from lstmkit.backends.cpu.convlstm_gates import (
    ENV,
    convlstm_gates,
    enabled_by_environment,
    fused_gates,
    usable,
)
from lstmkit.cells.convlstm import ConvLSTMCellSpec

DTYPES = {"fp32": torch.float32, "fp64": torch.float64}
PEEPHOLES = ("none", "channel", "spatial")
# (dims, B, hidden channels, frame): odd sizes, B = 1, and rows longer than one 512-column
# chunk of the kernel with a partial last chunk (3 * 13 * 17 = 663 columns)
SHAPES = {
    "1d-B3-C2-L7": (1, 3, 2, (7,)),
    "2d-B1-C3-5x7": (2, 1, 3, (5, 7)),
    "2d-B2-C3-13x17": (2, 2, 3, (13, 17)),
    "3d-B2-C2-3x4x5": (3, 2, 2, (3, 4, 5)),
}


@pytest.fixture
def engine():
    """Skip the test if the C++ engine could not be built (the reason is the build error)."""
    if not cpu.available():
        pytest.skip(f"the C++ engine did not build: {cpu.build_error()}")


def fused_in_graph(tensor: torch.Tensor) -> bool:
    """Whether the fused op is anywhere in the autograd graph that made ``tensor``."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "convlstm_gates" in node.name():
            return True
        todo.extend(next_node for next_node, _ in node.next_functions)
    return False


def random_step_inputs(cell: ConvLSTMCellSpec, B: int, frame: tuple[int, ...], dtype, seed: int):
    """Parameters, the step's input projection and the states, all fresh and all leaves."""
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_()

    params = {name: leaf(*shape, scale=0.3) for name, shape in cell.param_shapes().items()}
    for name in ("weight_ih", "bias"):  # the step reads the input projection W * x + b
        del params[name]
    C = cell.hidden_channels
    gx = leaf(B, 4 * C, *frame)
    h0, c0 = leaf(B, C, *frame, scale=0.5), leaf(B, C, *frame)
    return params, gx, h0, c0


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("peephole", PEEPHOLES)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_fused_step_equals_aten_step(engine, shape, peephole, dtype):
    dims, B, C, frame = shape
    cell = ConvLSTMCellSpec(dims, 2, C, 3, None, peephole, frame)
    params, gx, h0, c0 = random_step_inputs(cell, B, frame, dtype, seed=B + C + dims)
    inputs = [gx, h0, c0, *params.values()]
    names = ["pre (input projection)", "h_prev", "c_prev", *params]
    assert usable(gx, c0, params.get("weight_ch"))
    results = []
    for fused in (False, True):
        with fused_gates(fused):
            h, (_, c) = cell.step(params, gx, (h0, c0))
        assert fused_in_graph(h) == fused
        results.append(([h, c], grads_of([h, c], inputs, seed=7)))
    (ref_out, ref_grads), (out, grads) = results
    for name, expected, actual in zip(["h", "c"], ref_out, out, strict=True):
        assert_close(name, expected, actual)
    for name, expected, actual in zip(names, ref_grads, grads, strict=True):
        assert_close(f"d{name}", expected, actual)


@pytest.mark.parametrize("peephole", PEEPHOLES)
def test_gradcheck_fp64(engine, peephole):
    g = torch.Generator().manual_seed(3)
    B, C, frame = 2, 2, (3, 4)
    pre = torch.randn(B, 4 * C, *frame, generator=g, dtype=torch.float64, requires_grad=True)
    c_prev = torch.randn(B, C, *frame, generator=g, dtype=torch.float64, requires_grad=True)
    shape = {"none": None, "channel": (3 * C,), "spatial": (3 * C, *frame)}[peephole]
    inputs = [pre, c_prev]
    if shape is not None:
        inputs.append(torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(lambda *t: convlstm_gates(*t), inputs)


def test_whole_convlstm_with_and_without_the_fused_pass(engine):
    """2 layers, bidirectional, lengths=: output, final states and every gradient agree."""
    T, B, frame = 4, 3, (5, 6)
    torch.manual_seed(11)
    model = lstmkit.ConvLSTM(2, 3, 3, num_layers=2, bidirectional=True, peephole="channel")
    x = torch.randn(T, B, 2, *frame, requires_grad=True)
    h0 = (torch.randn(4, B, 3, *frame) * 0.5).requires_grad_()
    c0 = torch.randn(4, B, 3, *frame, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    inputs = [x, h0, c0, *model.parameters()]
    names = ["x", "h0", "c0", *(name for name, _ in model.named_parameters())]
    results = []
    for fused in (False, True):
        with fused_gates(fused):
            y, (h_n, c_n) = model(x, (h0, c0), lengths=lengths)
        assert fused_in_graph(y) == fused
        results.append(([y, h_n, c_n], grads_of([y, h_n, c_n], inputs, seed=5)))
    (ref_out, ref_grads), (out, grads) = results
    for name, expected, actual in zip(["output", "h_n", "c_n"], ref_out, out, strict=True):
        assert_close(name, expected, actual)
    for name, expected, actual in zip(names, ref_grads, grads, strict=True):
        assert_close(f"d{name}", expected, actual)


def test_inference_saves_nothing_and_matches(engine):
    cell = ConvLSTMCellSpec(2, 2, 3, 3, None, "spatial", (4, 5))
    params, gx, h0, c0 = random_step_inputs(cell, 2, (4, 5), torch.float32, seed=1)
    with torch.no_grad():
        with fused_gates(False):
            expected = cell.step(params, gx, (h0, c0))[1]
        with fused_gates(True):
            actual = cell.step(params, gx, (h0, c0))[1]
    for name, e, a in zip(["h", "c"], expected, actual, strict=True):
        assert_close(name, e, a)


def test_result_does_not_depend_on_threads(engine):
    """The peephole gradient is summed in a fixed order: 1 and 2 threads agree bit for bit."""
    cell = ConvLSTMCellSpec(2, 2, 4, 3, None, "channel", (16, 20))
    params, gx, h0, c0 = random_step_inputs(cell, 3, (16, 20), torch.float32, seed=2)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            h, (_, c) = cell.step(params, gx, (h0, c0))
            results.append([h, c, *grads_of([h, c], [gx, c0, params["weight_ch"]], seed=3)])
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results, strict=True):
        assert torch.equal(one, two)


def test_usable_only_where_it_runs(engine):
    pre, c_prev = torch.zeros(1, 8, 3), torch.zeros(1, 2, 3)
    assert usable(pre, c_prev, None)
    assert not usable(pre.half(), c_prev.half(), None)  # float16: the ATen path
    assert not usable(pre, c_prev.double(), None)  # mixed dtypes
    with fused_gates(False):
        assert not usable(pre, c_prev, None)
    not_a_bool: object = "no"
    with pytest.raises(TypeError, match="enabled must be a bool"), fused_gates(not_a_bool):
        pass


@pytest.mark.parametrize("value", ["0", "off", "reference", " OFF "])
def test_environment_values_that_turn_it_off(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    assert not enabled_by_environment()
    monkeypatch.setenv(ENV, "1")
    assert enabled_by_environment()


@pytest.mark.slow
def test_environment_switch_turns_it_off():
    """In a fresh process (the variable is read at import): about 5-10 s, hence slow."""
    code = (
        "import torch\n"
        "from lstmkit.backends.cpu.convlstm_gates import usable\n"
        "print(usable(torch.zeros(1, 8, 3), torch.zeros(1, 2, 3), None))\n"
    )
    env = {**os.environ, ENV: "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_torch_compile_fullgraph(engine):
    """The custom ops have fake implementations: torch.compile traces the step in one graph."""
    cell = ConvLSTMCellSpec(2, 2, 3, 3, None, "channel", (4, 5))
    params, gx, h0, c0 = random_step_inputs(cell, 2, (4, 5), torch.float32, seed=4)

    def step(p, x, h, c):
        return cell.step(p, x, (h, c))[1]

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    inputs = [gx, h0, c0, params["weight_ch"], params["weight_hh"]]
    expected = step(params, gx, h0, c0)
    actual = compiled(params, gx, h0, c0)
    for name, e, a in zip(["h", "c"], expected, actual, strict=True):
        assert_close(name, e, a)
    for name, e, a in zip(
        ["gx", "h0", "c0", "weight_ch", "weight_hh"],
        grads_of(list(expected), inputs, seed=1),
        grads_of(list(actual), inputs, seed=1),
        strict=True,
    ):
        assert_close(f"d{name}", e, a)
