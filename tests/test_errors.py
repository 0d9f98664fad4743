"""Bad input gets a ValueError or TypeError that names the argument, what was expected and
what came (DESIGN.md, Errors). One test per kind of mistake; each checks the type and the
message, so a check that starts raising the wrong thing, or saying less, fails here."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit
from lstmkit.backends import registry

D, H, T, B = 3, 4, 5, 2  # input size, hidden size, time steps, batch


def says(*parts: str) -> str:
    """A ``match=`` pattern: every literal part, in order, anywhere in the message."""
    return ".*".join(re.escape(part) for part in parts)


def lstm(**options) -> lstmkit.LSTM:
    return lstmkit.LSTM(D, H, **options)


def gru(**options) -> lstmkit.GRU:
    return lstmkit.GRU(D, H, **options)


MODULES = {"lstm": lstm, "gru": gru}


def zeros_state(module, shape: tuple[int, ...]):
    """``hx`` of the module's kind in which every state has ``shape``."""
    if isinstance(module, lstmkit.GRU):
        return torch.zeros(shape)
    return (torch.zeros(shape), torch.zeros(shape))


# ---------------------------------------------------------------------- input


@pytest.mark.parametrize("kind", MODULES)
@pytest.mark.parametrize("shape", [(D,), (2, T, B, D)], ids=["1-D", "4-D"])
def test_input_rank(kind, shape):
    module = MODULES[kind]()
    pattern = says(
        "input must be 3-D [T, B, D] or 2-D unbatched [T, D]", f"got {len(shape)}-D", str(shape)
    )
    with pytest.raises(ValueError, match=pattern):
        module(torch.randn(shape))


def test_input_rank_batch_first_names_its_layout():
    with pytest.raises(ValueError, match=says("input must be 3-D [B, T, D]", "got 1-D")):
        lstm(batch_first=True)(torch.randn(D))


def test_input_not_a_tensor():
    with pytest.raises(TypeError, match=says("input must be a Tensor or a PackedSequence", "list")):
        lstm()([[0.0] * D])


@pytest.mark.parametrize("kind", MODULES)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_feature_size(kind, packed):
    x = torch.randn(T, B, D + 1)
    if packed:
        x = pack_padded_sequence(x, [T, T - 1])
    pattern = says("input.size(-1)", f"input_size ({D})", f"got {D + 1}")
    with pytest.raises(ValueError, match=pattern):
        MODULES[kind]()(x)


@pytest.mark.parametrize(
    "shape", [(0, B, D), (T, 0, D), (0, D)], ids=["time-first", "batch-first", "unbatched"]
)
def test_empty_time_dimension(shape):
    module = lstm(batch_first=shape == (T, 0, D))
    with pytest.raises(ValueError, match=says("at least one time step", f"got shape {shape}")):
        module(torch.randn(shape))


# ---------------------------------------------------------------------- initial states

# (module, input shape, which state is wrong, its shape, the shape expected)
STATE_SHAPES = {
    "lstm-h0-batch": (lstm, (T, B, D), "h0", (1, B + 1, H), (1, B, H)),
    "lstm-c0-size": (lstm, (T, B, D), "c0", (1, B, H + 1), (1, B, H)),
    "lstm-h0-proj": (lambda: lstm(proj_size=2), (T, B, D), "h0", (1, B, H), (1, B, 2)),
    "lstm-h0-layers": (lambda: lstm(num_layers=2), (T, B, D), "h0", (1, B, H), (2, B, H)),
    "lstm-c0-bidirectional": (
        lambda: lstm(bidirectional=True),
        (T, B, D),
        "c0",
        (1, B, H),
        (2, B, H),
    ),
    "lstm-h0-unbatched": (lstm, (T, D), "h0", (1, 1, H), (1, H)),
    "lstm-c0-unbatched": (lstm, (T, D), "c0", (1, H + 1), (1, H)),
    "gru-h0-batch": (gru, (T, B, D), "h0", (1, B + 1, H), (1, B, H)),
    "gru-h0-unbatched": (gru, (T, D), "h0", (1, 1, H), (1, H)),
}


@pytest.mark.parametrize("case", STATE_SHAPES.values(), ids=STATE_SHAPES)
def test_state_shape(case):
    make, input_shape, name, wrong, expected = case
    module = make()
    if isinstance(module, lstmkit.GRU):
        hx = torch.zeros(wrong)
    else:
        h_size, c_size = module.cells[0][0].state_sizes()[:2]
        rows_batch = expected[:-1]
        states = {"h0": torch.zeros(*rows_batch, h_size), "c0": torch.zeros(*rows_batch, c_size)}
        states[name] = torch.zeros(wrong)
        hx = (states["h0"], states["c0"])
    pattern = says(f"{name} must have shape {expected}", f"got {wrong}")
    with pytest.raises(ValueError, match=pattern):
        module(torch.randn(input_shape), hx)


@pytest.mark.parametrize(
    ("make", "hx", "error", "pattern"),
    [
        (lstm, ([0.0], torch.zeros(1, B, H)), TypeError, says("h0 must be a Tensor", "list")),
        (lstm, (torch.zeros(1, B, H), 0.0), TypeError, says("c0 must be a Tensor", "float")),
        (lstm, torch.zeros(1, B, H), TypeError, says("hx must be a tuple (h0, c0)", "Tensor")),
        (gru, (torch.zeros(1, B, H),), TypeError, says("h0 must be a Tensor", "tuple")),
    ],
    ids=["lstm-h0-list", "lstm-c0-float", "lstm-hx-tensor", "gru-hx-tuple"],
)
def test_state_type(make, hx, error, pattern):
    with pytest.raises(error, match=pattern):
        make()(torch.randn(T, B, D), hx)


@pytest.mark.parametrize("count", [1, 4])
def test_hx_tuple_of_the_wrong_length(count):
    module = lstm(variant="fgr")  # fgr takes (h0, c0) or (h0, c0, gates0)
    with pytest.raises(ValueError, match=says("hx", f"got a tuple of {count}")):
        module(torch.randn(T, B, D), (torch.zeros(1, B, H),) * count)


# ---------------------------------------------------------------------- dtype and device


def dtype_pattern(argument: str) -> str:
    return says(f"{argument} must have the module's dtype torch.float32", "got torch.float64")


@pytest.mark.parametrize("kind", MODULES)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_input_dtype(kind, packed):
    x = torch.randn(T, B, D, dtype=torch.float64)
    if packed:
        x = pack_padded_sequence(x, [T, T - 1])
    with pytest.raises(TypeError, match=dtype_pattern("input")):
        MODULES[kind]()(x)


STATE_DTYPES = [("lstm", "h0"), ("lstm", "c0"), ("gru", "h0")]
DEVICES = [("lstm", "input"), ("lstm", "h0"), ("lstm", "c0"), ("gru", "input"), ("gru", "h0")]


@pytest.mark.parametrize(
    ("kind", "name"), STATE_DTYPES, ids=[f"{kind}-{name}" for kind, name in STATE_DTYPES]
)
def test_state_dtype(kind, name):
    module = MODULES[kind]()
    hx = zeros_state(module, (1, B, H))
    if kind == "gru":
        hx = hx.double()
    else:
        hx = tuple(s.double() if n == name else s for n, s in zip(("h0", "c0"), hx, strict=True))
    with pytest.raises(TypeError, match=dtype_pattern(name)):
        module(torch.randn(T, B, D), hx)


@pytest.mark.parametrize(
    ("kind", "name"), DEVICES, ids=[f"{kind}-{name}-on-meta" for kind, name in DEVICES]
)
def test_device(kind, name):
    module = MODULES[kind]()
    x = torch.randn(T, B, D)
    hx = zeros_state(module, (1, B, H))
    if name == "input":
        x = x.to("meta")
    elif kind == "gru":
        hx = hx.to("meta")
    else:
        hx = tuple(s.to("meta") if n == name else s for n, s in zip(("h0", "c0"), hx, strict=True))
    pattern = says(f"{name} must be on the module's device cpu", "got meta")
    with pytest.raises(ValueError, match=pattern):
        module(x, hx)


# ---------------------------------------------------------------------- lengths

# (lengths for a batch of B, error, pattern)
LENGTHS = {
    "too-long": ([T + 1, 1], ValueError, says("lengths must be at most", f"({T})", f"got {T + 1}")),
    "zero": ([T, 0], ValueError, says("lengths must be at least 1", "got 0")),
    "negative": ([-2, T], ValueError, says("lengths must be at least 1", "got -2")),
    "too-few": ([T], ValueError, says(f"lengths must have shape ({B},)", "got (1,)")),
    "too-many": ([T] * (B + 1), ValueError, says(f"must have shape ({B},)", f"got ({B + 1},)")),
    "2-D": (torch.ones(B, 1, dtype=torch.long), ValueError, says(f"got ({B}, 1)")),
    "float-tensor": (torch.tensor([2.0, 3.0]), TypeError, says("must hold integers", "float32")),
    "float-list": ([2.0, 3.0], TypeError, says("lengths must hold integers", "float")),
    "bool": (torch.tensor([True, True]), TypeError, says("lengths must hold integers", "bool")),
    "not-numbers": (["a", "b"], TypeError, says("lengths must be", "integer", "got ['a', 'b']")),
}


@pytest.mark.parametrize("case", LENGTHS.values(), ids=LENGTHS)
def test_lengths(case):
    lengths, error, pattern = case
    with pytest.raises(error, match=pattern):
        lstm()(torch.randn(T, B, D), lengths=lengths)


def test_lengths_with_packed_input():
    packed = pack_padded_sequence(torch.randn(T, B, D), [T, 2])
    with pytest.raises(ValueError, match=says("lengths must be None for PackedSequence input")):
        lstm()(packed, lengths=[T, 2])


# ---------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "closest"),
    [("peepole", "peephole"), ("standart", "standard"), ("lstm97", "lstm1997"), ("CIFG", None)],
)
def test_unknown_variant(name, closest):
    valid = sorted(lstmkit.variants())
    hint = f"(did you mean {closest!r}?)" if closest else ""
    pattern = says(f"variant must be one of {valid}", f"got {name!r}", hint)
    with pytest.raises(ValueError, match=pattern) as info:
        lstm(variant=name)
    if closest is None:
        assert "did you mean" not in str(info.value)


def test_gru_is_not_an_lstm_variant():
    with pytest.raises(ValueError, match=says("variant='gru'", "use lstmkit.GRU")):
        lstm(variant="gru")


@pytest.mark.parametrize("argument", ["sigma_g", "sigma_c", "sigma_h"])
def test_unknown_activation(argument):
    valid = ["hard_sigmoid", "identity", "relu", "sigmoid", "tanh"]
    with pytest.raises(ValueError, match=says(f"{argument} must be one of {valid}", "got 'tahn'")):
        lstm(**{argument: "tahn"})


@pytest.mark.parametrize("kind", MODULES)
@pytest.mark.parametrize(
    ("name", "closest"), [("cuda", None), ("refrence", "reference"), ("troch", "torch")]
)
def test_unknown_backend(kind, name, closest):
    hint = f"(did you mean {closest!r}?)" if closest else ""
    choices = sorted(registry.CHOICES)
    pattern = says(f"backend must be one of {choices}", f"got {name!r}", hint)
    with pytest.raises(ValueError, match=pattern):
        MODULES[kind](backend=name)


def test_bad_backend_environment(monkeypatch):
    module = lstm()
    monkeypatch.setenv("LSTMKIT_BACKEND", "triton")
    with pytest.raises(ValueError, match=says("LSTMKIT_BACKEND must be one of", "got 'triton'")):
        module(torch.randn(T, B, D))


# ---------------------------------------------------------------------- configuration


def test_proj_size_on_gru():
    with pytest.raises(ValueError, match=says("proj_size", "lstmkit.LSTM", "got proj_size=2")):
        gru(proj_size=2)


@pytest.mark.parametrize("proj_size", [H, H + 1])
def test_proj_size_not_smaller_than_hidden_size(proj_size):
    pattern = says(f"proj_size must be smaller than hidden_size ({H})", f"got {proj_size}")
    with pytest.raises(ValueError, match=pattern):
        lstm(proj_size=proj_size)


def test_negative_proj_size():
    with pytest.raises(ValueError, match=says("proj_size must be >= 0", "got -1")):
        lstm(proj_size=-1)


@pytest.mark.parametrize("variant", ["lstm1997", "nfg", "cifg"])
def test_forget_bias_without_forget_gate(variant):
    pattern = says("forget_bias needs a forget gate", repr(variant), "got forget_bias=1.0")
    with pytest.raises(ValueError, match=pattern):
        lstm(variant=variant, forget_bias=1.0)


def test_forget_bias_without_bias():
    with pytest.raises(ValueError, match=says("forget_bias needs bias=True", "bias=False")):
        lstm(bias=False, forget_bias=1.0)


def test_forget_bias_not_a_number():
    with pytest.raises(TypeError, match=says("forget_bias must be a float", "got str")):
        lstm(forget_bias="1")


# (module, argument, value): dropout may be 1 (as torch.nn.LSTM), the others may not
PROBABILITIES = [
    (kind, argument, value)
    for kind in MODULES
    for argument in ("zoneout", "recurrent_dropout")
    for value in (-0.1, 1.0, 1.5)
] + [(kind, "dropout", value) for kind in MODULES for value in (-0.1, 1.5)]


@pytest.mark.parametrize(
    ("kind", "argument", "value"), PROBABILITIES, ids=[f"{k}-{a}={v}" for k, a, v in PROBABILITIES]
)
def test_probability_out_of_range(kind, argument, value):
    interval = "[0, 1]" if argument == "dropout" else "[0, 1)"
    pattern = says(f"{argument} must be a number in {interval}", f"got {value}")
    with pytest.raises(ValueError, match=pattern):
        MODULES[kind](**{argument: value})


@pytest.mark.parametrize("zoneout", [(0.1, 1.0), (-0.5, 0.1)], ids=["hidden", "cell"])
def test_zoneout_pair_out_of_range(zoneout):
    bad = next(rate for rate in zoneout if not 0 <= rate < 1)
    with pytest.raises(ValueError, match=says("zoneout must be a number in [0, 1)", f"got {bad}")):
        lstm(zoneout=zoneout)


def test_zoneout_not_a_pair():
    pattern = says("zoneout must be a float or a pair", "(0.1, 0.1, 0.1)")
    with pytest.raises(ValueError, match=pattern):
        lstm(zoneout=(0.1, 0.1, 0.1))


@pytest.mark.parametrize("cell_clip", [0, 0.0, -1.0])
def test_cell_clip_not_positive(cell_clip):
    pattern = says("cell_clip must be a positive number or None", f"got {cell_clip}")
    with pytest.raises(ValueError, match=pattern):
        lstm(cell_clip=cell_clip)


def test_cell_clip_not_a_number():
    with pytest.raises(TypeError, match=says("cell_clip", "got str")):
        lstm(cell_clip="1")


# (keyword, value, error, pattern), for LSTM and GRU alike
SIZES = {
    "hidden_size-float": (
        "hidden_size",
        4.0,
        TypeError,
        says("hidden_size must be an int", "float"),
    ),
    "hidden_size-str": ("hidden_size", "4", TypeError, says("hidden_size must be an int", "str")),
    "hidden_size-0": ("hidden_size", 0, ValueError, says("hidden_size must be >= 1", "got 0")),
    "input_size-0": ("input_size", 0, ValueError, says("input_size must be >= 1", "got 0")),
    "num_layers-0": ("num_layers", 0, ValueError, says("num_layers must be >= 1", "got 0")),
    "num_layers-float": ("num_layers", 1.5, TypeError, says("num_layers must be an int", "float")),
}


@pytest.mark.parametrize("module_class", [lstmkit.LSTM, lstmkit.GRU], ids=["lstm", "gru"])
@pytest.mark.parametrize("case", SIZES.values(), ids=SIZES)
def test_sizes(module_class, case):
    keyword, value, error, pattern = case
    arguments = {"input_size": D, "hidden_size": H, "num_layers": 1, keyword: value}
    with pytest.raises(error, match=pattern):
        module_class(**arguments)


# ---------------------------------------------------------------------- step and conversion


@pytest.mark.parametrize("kind", MODULES)
def test_step_on_bidirectional_module(kind):
    module = MODULES[kind](bidirectional=True)
    with pytest.raises(ValueError, match=says("step()", "bidirectional=True")):
        module.step(torch.randn(B, D))


@pytest.mark.parametrize("shape", [(1, B, D), ()], ids=["3-D", "0-D"])
def test_step_input_rank(shape):
    pattern = says("step() input must be [B, D] or unbatched [D]", f"got {len(shape)}-D")
    with pytest.raises(ValueError, match=pattern):
        lstm().step(torch.randn(shape))


@pytest.mark.parametrize(
    ("module_class", "given", "expected"),
    [
        (lstmkit.LSTM, nn.GRU(D, H), "torch.nn.LSTM"),
        (lstmkit.LSTM, nn.RNN(D, H), "torch.nn.LSTM"),
        (lstmkit.GRU, nn.LSTM(D, H), "torch.nn.GRU"),
    ],
    ids=["LSTM-from-GRU", "LSTM-from-RNN", "GRU-from-LSTM"],
)
def test_from_torch_wrong_module(module_class, given, expected):
    pattern = says(f"module must be a {expected}", f"got {type(given).__name__}")
    with pytest.raises(TypeError, match=pattern):
        module_class.from_torch(given)


TO_TORCH = {
    "peephole": (lambda: lstm(variant="peephole"), "torch.nn.LSTM", "variant='peephole'"),
    "cifg": (lambda: lstm(variant="cifg"), "torch.nn.LSTM", "variant='cifg'"),
    "layer_norm": (lambda: lstm(layer_norm=True), "torch.nn.LSTM", "layer_norm=True"),
    "cell_clip": (lambda: lstm(cell_clip=3.0), "torch.nn.LSTM", "cell_clip"),
    "sigma_h": (lambda: lstm(sigma_h="identity"), "torch.nn.LSTM", "activations"),
    "zoneout": (lambda: lstm(zoneout=0.1), "torch.nn.LSTM", "zoneout"),
    "gru-reset_before": (lambda: gru(reset_after=False), "torch.nn.GRU", "reset_after=False"),
    "gru-layer_norm": (lambda: gru(layer_norm=True), "torch.nn.GRU", "layer_norm=True"),
}


@pytest.mark.parametrize("case", TO_TORCH.values(), ids=TO_TORCH)
def test_to_torch_needs_torch_math(case):
    make, target, reason = case
    with pytest.raises(ValueError, match=says(f"to_torch() needs the math of {target}", reason)):
        make().to_torch()


def test_none_in_hx_is_rejected():
    c0 = torch.zeros(1, B, H)
    with pytest.raises(TypeError, match=says("h0 must be a Tensor", "got NoneType")):
        lstm()(torch.randn(T, B, D), (None, c0))


def test_variant_not_a_name():
    with pytest.raises(TypeError, match=says("variant must be a name", "got int")):
        lstm(variant=3)


def test_unknown_activation_suggests_the_closest():
    with pytest.raises(ValueError, match=says("sigma_c must be one of", "'tahn'", "'tanh'")):
        lstm(sigma_c="tahn")
    with pytest.raises(TypeError, match=says("sigma_h must be an activation's name", "got")):
        lstm(sigma_h=torch.tanh)


@pytest.mark.parametrize(
    "flags",
    [{"input_gate": False, "coupled": True}, {"forget_gate": False, "coupled": True}],
    ids=["no-input-gate", "no-forget-gate"],
)
def test_coupled_variant_needs_both_gates(flags):
    with pytest.raises(ValueError, match=says("coupled=True", "needs input_gate=True", "got")):
        lstmkit.LSTMVariant("custom", **flags)


def test_unknown_peephole_mode():
    with pytest.raises(ValueError, match=says("peephole must be", "got 'diag'")):
        lstmkit.LSTMVariant("custom", peephole="diag")
