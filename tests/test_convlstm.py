"""lstmkit.ConvLSTM: the seed's equations written out with one convolution call per product,
gradcheck in float64, lengths against each sequence alone, streaming, states, 1-D / 2-D / 3-D,
save and load, and every bad input with a message that says what is wrong.

Equivalence tests run in float64 so that a real difference cannot hide in rounding.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck
from torch.func import functional_call

import lstmkit
from helpers import assert_close, grads_of
from lstmkit.cells import convlstm as convlstm_cell

F64 = torch.float64
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
FRAMES = {1: (7,), 2: (5, 6), 3: (3, 4, 5)}


def says(*parts: str) -> str:
    """A ``match=`` pattern: every literal part, in order, anywhere in the message."""
    return ".*".join(re.escape(part) for part in parts)


def randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Every parameter drawn at random (peepholes and biases start at zero otherwise)."""
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn_like(param) * 0.4)
    return module


# ---------------------------------------------------------------------- the equations


def seed_step(x, h, c, w: dict, dims: int, peephole: str):
    """One step of the seed's peephole convolutional LSTM, each product its own call.

    i = σ(W_i * x + U_i * h + V_i ⊙ c + b_i), f likewise, c' = f ⊙ c + i ⊙ tanh(W_c * x +
    U_c * h + b_c), o = σ(W_o * x + U_o * h + V_o ⊙ c' + b_o), h' = o ⊙ tanh(c').
    """

    def conv(inp, weight):  # 'same' padding, odd kernels
        return CONV[dims](inp, weight, padding=[k // 2 for k in weight.shape[2:]])

    def peep(gate, cell):
        if peephole == "none":
            return 0.0
        v = w[f"V_{gate}"]
        return (v.reshape(-1, *[1] * dims) if peephole == "channel" else v) * cell

    def lin(gate):
        return (
            conv(x, w[f"W_{gate}"])
            + conv(h, w[f"U_{gate}"])
            + w[f"b_{gate}"].reshape(-1, *[1] * dims)
        )

    i = torch.sigmoid(lin("i") + peep("i", c))
    f = torch.sigmoid(lin("f") + peep("f", c))
    c_new = f * c + i * torch.tanh(lin("c"))
    o = torch.sigmoid(lin("o") + peep("o", c_new))
    return o * torch.tanh(c_new), c_new


def gate_weights(C_in, C, kernel, state_kernel, frame, peephole, dims):
    """Independent weights per gate, as the equations name them."""
    w = {}
    for gate in "ifco":
        w[f"W_{gate}"] = torch.randn(C, C_in, *kernel, dtype=F64) * 0.3
        w[f"U_{gate}"] = torch.randn(C, C, *state_kernel, dtype=F64) * 0.3
        w[f"b_{gate}"] = torch.randn(C, dtype=F64) * 0.3
    for gate in "ifo":
        shape = (C,) if peephole == "channel" else (C, *frame)
        w[f"V_{gate}"] = torch.randn(shape, dtype=F64)
    return w


def load_gates(module: lstmkit.ConvLSTM, w: dict, peephole: str) -> None:
    """Fused layout: gate blocks i, f, g (= c), o on dim 0; peepholes i, f, o."""
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.cat([w[f"W_{g}"] for g in "ifco"]))
        module.weight_hh_l0.copy_(torch.cat([w[f"U_{g}"] for g in "ifco"]))
        module.bias_l0.copy_(torch.cat([w[f"b_{g}"] for g in "ifco"]))
        if peephole != "none":
            module.weight_ch_l0.copy_(torch.cat([w[f"V_{g}"] for g in "ifo"]))


@pytest.mark.parametrize("peephole", ["channel", "spatial", "none"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_steps_equal_the_seed_equations(dims, peephole):
    C_in, C, B, T = 2, 3, 2, 3
    frame = FRAMES[dims]
    kernel, state_kernel = (3,) * dims, (5, 3, 1)[:dims]
    module = lstmkit.ConvLSTM(
        C_in, C, kernel, dims=dims, state_kernel_size=state_kernel, peephole=peephole,
        frame_size=frame if peephole == "spatial" else None, dtype=F64,
    )  # fmt: skip
    w = gate_weights(C_in, C, kernel, state_kernel, frame, peephole, dims)
    load_gates(module, w, peephole)
    x = torch.randn(T, B, C_in, *frame, dtype=F64)
    h = torch.randn(B, C, *frame, dtype=F64)
    c = torch.randn(B, C, *frame, dtype=F64) * 2

    output, (h_n, c_n) = module(x, (h[None], c[None]))

    hs = []
    for t in range(T):
        h, c = seed_step(x[t], h, c, w, dims, peephole)
        hs.append(h)
    assert_close("output", torch.stack(hs), output)
    assert_close("h_n", h, h_n[0])
    assert_close("c_n", c, c_n[0])


def test_peepholes_change_the_step():
    """The peephole weights are read (a cell that ignored them would pass the test above
    only if V happened not to matter)."""
    module = randomise(lstmkit.ConvLSTM(2, 3, 3, dtype=F64))
    x, state = torch.randn(2, 1, 2, 4, 4, dtype=F64), None
    before, _ = module(x, state)
    with torch.no_grad():
        module.weight_ch_l0.mul_(-1)
    after, _ = module(x, state)
    assert (before - after).abs().max() > 1e-3


def test_cpu_convolves_each_steps_frames_when_the_loop_reaches_them(monkeypatch):
    """On the CPU each step convolves its B input frames, then its B states (step-sized
    calls beat one call over all T*B frames there; docs/convlstm.md, "Speed")."""
    T, B = 4, 3
    batches = []
    real = convlstm_cell.CONVOLUTIONS[2]

    def counting(x, *args, **kwargs):
        batches.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setitem(convlstm_cell.CONVOLUTIONS, 2, counting)
    lstmkit.ConvLSTM(2, 3, 3)(torch.randn(T, B, 2, 5, 5))
    assert batches == [B, B] * T


def test_step_inputs_equal_the_batched_input_convolution():
    """The CPU's per-step projections are the one batched convolution's (CUDA's schedule),
    values and gradients."""
    cell = convlstm_cell.ConvLSTMCellSpec(dims=2, in_channels=2, hidden_channels=3)
    params = {
        name: torch.randn(shape, dtype=torch.float64, requires_grad=True)
        for name, shape in cell.param_shapes().items()
    }
    x = torch.randn(5, 2, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    batched = cell.input_projection(params, x)
    per_step = torch.stack(list(cell.step_inputs(params, x)))
    assert_close("projection", batched, per_step)
    inputs = [x, params["weight_ih"], params["bias"]]
    expected, actual = grads_of([batched], inputs), grads_of([per_step], inputs)
    for name, e, a in zip(["x", "weight_ih", "bias"], expected, actual, strict=True):
        assert_close(f"grad {name}", e, a)


# ---------------------------------------------------------------------- gradients


CASES = {
    "2d-channel": ({}, None),
    "2d-spatial": ({"peephole": "spatial", "frame_size": (2, 3)}, None),
    "2d-none": ({"peephole": False}, None),
    "2d-L2-bi-lengths": ({"num_layers": 2, "bidirectional": True}, [3, 1]),
    "1d": ({"dims": 1, "kernel_size": 5, "state_kernel_size": 3}, [2, 3]),
    "3d": ({"dims": 3, "kernel_size": (3, 1, 3)}, None),
}


@pytest.mark.parametrize("case", CASES)
def test_gradcheck_float64(case):
    """Input, every parameter and both initial states against finite differences."""
    options, lengths = CASES[case]
    dims = options.get("dims", 2)
    frame = {1: (5,), 2: (2, 3), 3: (2, 3, 3)}[dims]
    T, B, C_in, C = 3, 2, 2, 2
    module = randomise(lstmkit.ConvLSTM(C_in, C, dtype=F64, **options))
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    rows = module.num_layers * module.num_directions
    states = [torch.randn(rows, B, C, *frame, dtype=F64, requires_grad=True) for _ in range(2)]
    x = torch.randn(T, B, C_in, *frame, dtype=F64, requires_grad=True)
    n = len(params)

    def run(x, *rest):
        weights = dict(zip(names, rest[:n], strict=True))
        output, (h_n, c_n) = functional_call(
            module, weights, (x, tuple(rest[n:])), {"lengths": lengths}
        )
        return output, h_n, c_n

    inputs = (x, *params, *states)
    assert gradcheck(run, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    for name, grad in zip(names, grads_of(list(run(*inputs)), params), strict=True):
        assert grad is not None and grad.abs().max() > 0, f"{name} has no gradient"


# ---------------------------------------------------------------------- sequences


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_lengths_give_each_sequence_alone(bidirectional):
    lengths = [5, 2, 4]
    module = randomise(
        lstmkit.ConvLSTM(2, 3, 3, num_layers=2, bidirectional=bidirectional, dtype=F64)
    )
    T, B = 5, len(lengths)
    x = torch.randn(T, B, 2, 4, 5, dtype=F64)
    rows = module.num_layers * module.num_directions
    hx = tuple(torch.randn(rows, B, 3, 4, 5, dtype=F64) for _ in range(2))
    output, (h_n, c_n) = module(x, hx, lengths=torch.tensor(lengths))
    for b, length in enumerate(lengths):
        alone_out, (alone_h, alone_c) = module(
            x[:length, b : b + 1], tuple(s[:, b : b + 1] for s in hx)
        )
        assert_close(f"output[{b}]", alone_out, output[:length, b : b + 1])
        assert_close(f"h_n[{b}]", alone_h, h_n[:, b : b + 1])
        assert_close(f"c_n[{b}]", alone_c, c_n[:, b : b + 1])
        assert output[length:, b].eq(0).all()


def test_step_equals_the_whole_sequence():
    module = randomise(lstmkit.ConvLSTM(2, 3, 3, num_layers=2, batch_first=True, dtype=F64))
    x = torch.randn(2, 6, 2, 4, 4, dtype=F64)  # [B, T, C, H, W]
    whole, (h_n, c_n) = module(x)
    state, steps = None, []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        steps.append(y)
    assert_close("output", whole, torch.stack(steps, dim=1))
    assert_close("h_n", h_n, state[0])
    assert_close("c_n", c_n, state[1])


def test_returned_states_continue_the_sequence():
    module = randomise(lstmkit.ConvLSTM(1, 2, 3, num_layers=2, dims=1, dtype=F64))
    x = torch.randn(8, 2, 1, 6, dtype=F64)
    whole, final = module(x)
    first, middle = module(x[:3])
    rest, final_split = module(x[3:], middle)
    assert_close("output", whole, torch.cat([first, rest]))
    for name, e, a in zip(("h_n", "c_n"), final, final_split, strict=True):
        assert_close(name, e, a)


def test_batch_first_and_unbatched_equal_time_first():
    module = randomise(lstmkit.ConvLSTM(2, 3, 3, bidirectional=True, dtype=F64))
    x = torch.randn(4, 2, 2, 3, 3, dtype=F64)
    expected, (h_n, _) = module(x)
    twin = lstmkit.ConvLSTM(2, 3, 3, bidirectional=True, batch_first=True, dtype=F64)
    twin.load_state_dict(module.state_dict())
    actual, (h_bf, _) = twin(x.transpose(0, 1))
    assert_close("batch_first output", expected, actual.transpose(0, 1))
    assert_close("batch_first h_n", h_n, h_bf)
    single, (h_1, c_1) = module(x[:, 1])
    assert_close("unbatched output", expected[:, 1], single)
    assert h_1.shape == (2, 3, 3, 3) and c_1.shape == (2, 3, 3, 3)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_shapes(dims):
    frame = FRAMES[dims]
    module = lstmkit.ConvLSTM(3, 4, 3, num_layers=3, bidirectional=True, dims=dims)
    output, (h_n, c_n) = module(torch.randn(2, 5, 3, *frame))
    assert output.shape == (2, 5, 8, *frame)
    assert h_n.shape == c_n.shape == (6, 5, 4, *frame)
    assert module.weight_ih_l1.shape == (16, 8, *(3,) * dims)


def test_init_and_forget_bias():
    module = lstmkit.ConvLSTM(2, 4, 3, forget_bias=1.0)
    i, f, g, o = module.bias_l0.chunk(4)
    assert f.eq(1).all() and i.eq(0).all() and g.eq(0).all() and o.eq(0).all()
    assert module.weight_ch_l0.eq(0).all()
    bound = 1 / (2 * 9) ** 0.5
    assert module.weight_ih_l0.abs().max() <= bound and module.weight_ih_l0.std() > bound / 4


def test_save_and_load(tmp_path):
    module = randomise(
        lstmkit.ConvLSTM(
            2, 3, (3, 5), num_layers=2, state_kernel_size=1, peephole="spatial",
            frame_size=(4, 4), forget_bias=1.0, batch_first=True,
        )
    )  # fmt: skip
    loaded = lstmkit.load(module.save(tmp_path / "convlstm.safetensors"))
    assert repr(loaded) == repr(module)
    x = torch.randn(2, 3, 2, 4, 4)
    assert_close("output", module(x)[0], loaded(x)[0])


def test_repr():
    module = lstmkit.ConvLSTM(1, 8, 5, num_layers=2, dims=1, peephole=False, batch_first=True)
    assert repr(module) == (
        "ConvLSTM(1, 8, kernel_size=(5,), dims=1, peephole='none', num_layers=2, batch_first=True)"
    )


def test_learns_to_copy_a_moving_square():
    """A few dozen Adam steps on a one-step-ahead prediction lower the loss a lot."""
    torch.manual_seed(0)
    T, B, S = 6, 8, 12
    x = torch.zeros(T + 1, B, 1, S, S)
    starts = torch.randint(0, S - 2 - T, (B,))
    for t in range(T + 1):
        for b in range(B):
            x[t, b, 0, 2:4, starts[b] + t : starts[b] + t + 2] = 1.0
    module = lstmkit.ConvLSTM(1, 8, 3)
    readout = torch.nn.Conv2d(8, 1, 1)
    optimiser = torch.optim.Adam([*module.parameters(), *readout.parameters()], lr=0.02)

    def loss():
        out, _ = module(x[:-1])
        logits = readout(out.flatten(0, 1)).reshape(x[1:].shape)
        return F.binary_cross_entropy_with_logits(logits, x[1:])

    first = loss().item()
    for _ in range(60):
        optimiser.zero_grad()
        value = loss()
        value.backward()
        optimiser.step()
    assert value.item() < first / 4


# ---------------------------------------------------------------------- bad input


def convlstm(**options) -> lstmkit.ConvLSTM:
    return lstmkit.ConvLSTM(2, 3, **options)


@pytest.mark.parametrize(
    ("dims", "shape", "expected"),
    [
        (2, (4, 5, 5), "input must be 5-D [T, B, C, H, W] or 4-D unbatched [T, C, H, W]"),
        (2, (4, 1, 2, 5, 5, 1), "input must be 5-D [T, B, C, H, W] or 4-D unbatched"),
        (1, (4, 1, 2, 5, 5), "input must be 4-D [T, B, C, L] or 3-D unbatched [T, C, L]"),
        (3, (4, 2, 5, 5), "input must be 6-D [T, B, C, D, H, W] or 5-D unbatched"),
    ],
)
def test_wrong_rank_for_the_dims(dims, shape, expected):
    with pytest.raises(ValueError, match=says(expected, f"dims={dims}", str(shape))):
        convlstm(dims=dims)(torch.randn(shape))


def test_wrong_rank_batch_first_names_its_layout():
    with pytest.raises(ValueError, match=says("5-D [B, T, C, H, W]", "got 3-D")):
        convlstm(batch_first=True)(torch.randn(2, 5, 5))


@pytest.mark.parametrize(
    ("argument", "value"),
    [("kernel_size", 4), ("kernel_size", (3, 2)), ("state_kernel_size", (2, 2))],
)
def test_even_kernels_with_same_padding(argument, value):
    with pytest.raises(ValueError, match=says(f"{argument} must be odd", "'same'", str(value))):
        convlstm(**{argument: value})


def test_kernel_with_the_wrong_number_of_dims():
    with pytest.raises(ValueError, match=says("kernel_size must have 3 entries for dims=3")):
        convlstm(kernel_size=(3, 3), dims=3)
    with pytest.raises(TypeError, match=says("kernel_size must be an int or a tuple", "str")):
        convlstm(kernel_size="3")
    with pytest.raises(ValueError, match=says("kernel_size must hold positive ints", "(0, 3)")):
        convlstm(kernel_size=(0, 3))


def test_channel_mismatch():
    with pytest.raises(ValueError, match=says("in_channels=2 channels", "got 4", "(5, 1, 4")):
        convlstm()(torch.randn(5, 1, 4, 6, 6))
    with pytest.raises(ValueError, match=says("in_channels=2", "[T, C, H, W]", "got 1")):
        convlstm()(torch.randn(5, 1, 6, 6))


def test_state_shape_mismatch():
    module = convlstm(num_layers=2)
    bad = (torch.zeros(2, 1, 3, 5, 5), torch.zeros(2, 1, 3, 6, 6))
    pattern = says(
        "c0 must have shape (2, 1, 3, 6, 6)",
        "(num_layers * num_directions, batch, hidden_channels, *spatial)",
        "got (2, 1, 3, 5, 5)",
    )
    with pytest.raises(ValueError, match=pattern):
        module(torch.randn(4, 1, 2, 6, 6), bad[::-1])


def test_spatial_peephole_needs_and_checks_the_frame():
    with pytest.raises(ValueError, match=says("peephole='spatial'", "frame_size", "None")):
        convlstm(peephole="spatial")
    module = convlstm(peephole="spatial", frame_size=(6, 6))
    with pytest.raises(ValueError, match=says("frame_size (6, 6)", "got (5, 6)")):
        module(torch.randn(3, 1, 2, 5, 6))


@pytest.mark.parametrize(
    ("options", "error", "expected"),
    [
        ({"padding": "valid"}, ValueError, ("padding must be 'same'", "'valid'")),
        ({"dims": 4}, ValueError, ("dims must be 1, 2 or 3", "4")),
        ({"peephole": "diagonal"}, ValueError, ("peephole must be True, False or one of",)),
        ({"backend": "cpu"}, ValueError, ("backend='cpu' does not support", "ConvLSTMCellSpec")),
        ({"forget_bias": 1.0, "bias": False}, ValueError, ("forget_bias needs bias=True",)),
        ({"num_layers": 0}, ValueError, ("num_layers must be >= 1", "0")),
    ],
)
def test_bad_constructor_arguments(options, error, expected):
    with pytest.raises(error, match=says(*expected)):
        convlstm(**options)


def test_bad_forward_arguments():
    module = convlstm()
    x = torch.randn(4, 2, 2, 5, 5)
    with pytest.raises(TypeError, match=says("padded Tensor", "lengths=", "PackedSequence")):
        module(torch.nn.utils.rnn.pack_padded_sequence(x, [4, 3]))
    with pytest.raises(ValueError, match=says("lengths must be at most", "(4)", "got 5")):
        module(x, lengths=[5, 1])
    with pytest.raises(TypeError, match=says("input must have the module's dtype")):
        module(x.double())
    with pytest.raises(ValueError, match=says("step() input must be [B, C, H, W]", "got 5-D")):
        module.step(x)
    with pytest.raises(ValueError, match=says("step()", "bidirectional=True")):
        convlstm(bidirectional=True).step(x[0])
