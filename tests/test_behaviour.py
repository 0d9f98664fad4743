"""What the variants and options do, checked against independent constructions: a cell that
must keep growing, CIFG as a peephole LSTM whose forget gate mirrors its input gate, masks
replayed by hand, each padded sequence run on its own, streaming one step at a time.

Equivalence tests run in float64 so that a real difference cannot hide in rounding.
"""

from __future__ import annotations

import re

import pytest
import torch

import lstmkit
from helpers import assert_close, grads_of
from lstmkit.backends import reference, registry

D, H, T = 3, 4, 6  # input size, hidden size, time steps
F64 = torch.float64


def lstm(**options) -> lstmkit.LSTM:
    return lstmkit.LSTM(D, H, dtype=F64, **options)


def gru(**options) -> lstmkit.GRU:
    return lstmkit.GRU(D, H, dtype=F64, **options)


def states_of(hx) -> tuple[torch.Tensor, ...]:
    """Every state as a tuple, whatever the module returns (a tensor for the GRU)."""
    return (hx,) if isinstance(hx, torch.Tensor) else tuple(hx)


def state_names(module) -> tuple[str, ...]:
    return tuple(name.replace("0", "_n") for name in module.state_names)


def random_state(module, batch: int | None):
    """A random ``hx`` for ``module``: every state it takes, batched or (``None``) not."""
    rows = module.num_layers * module.num_directions
    batch_dims = () if batch is None else (batch,)
    states = tuple(
        torch.randn(rows, *batch_dims, size, dtype=F64) for size in module.cells[0][0].state_sizes()
    )
    return states[0] if isinstance(module, lstmkit.GRU) else states


def select(hx, b: int):
    """Sequence ``b`` of a batched ``hx``, as a batch of one."""
    picked = tuple(s[:, b : b + 1] for s in states_of(hx))
    return picked[0] if isinstance(hx, torch.Tensor) else picked


def assert_states_close(module, expected, actual, where: str = "") -> None:
    for name, e, a in zip(state_names(module), states_of(expected), states_of(actual), strict=True):
        assert_close(f"{name}{where}", e, a)


def rebuilt(make, module, **options):
    """``make(**options)`` with ``module``'s weights, in eval mode."""
    twin = make(**options)
    twin.load_state_dict(module.state_dict())
    return twin.eval()


# ---------------------------------------------------------------------- variants


def cell_trajectory(module, x) -> torch.Tensor:
    """c_t of every step ``[T, B, H]``, by streaming ``x`` through ``step()``."""
    state, cells = None, []
    for x_t in x:
        _, state = module.step(x_t, state)
        cells.append(state[1][-1])
    return torch.stack(cells)


@pytest.mark.parametrize("variant", ["lstm1997", "nfg"])
def test_no_forget_gate_keeps_the_cell_growing(variant):
    """f = 1: the constant error carousel adds i*g > 0 at every step, forever."""
    steps = 40
    module = lstm(variant=variant)
    with torch.no_grad():
        for param in module.parameters():
            param.fill_(0.1)  # x, h, c >= 0 then make every pre-activation positive
    x = torch.ones(steps, 1, D, dtype=F64)
    c = cell_trajectory(module, x)
    assert torch.all(c[1:] > c[:-1]), "c_t must increase at every step"
    # i*g only grows as h and c grow, so c_t >= t * c_1: linear growth at least
    t = torch.arange(1, steps + 1, dtype=F64)[:, None, None]
    assert torch.all(c >= t * c[0] * (1 - 1e-12))
    assert torch.all(c[-1] > 1.0), "a cell with f = 1 must leave tanh's range"


def test_strongly_negative_forget_bias_stops_the_growth():
    """The same setting with a forget gate near 0: c_t is i*g alone and stays in (-1, 1)."""
    steps = 40
    module = lstm(variant="standard")
    with torch.no_grad():
        for param in module.parameters():
            param.fill_(0.1)
        module.bias_ih_l0[H : 2 * H] = -30.0  # gate order i, f, g, o
    x = torch.ones(steps, 1, D, dtype=F64)
    c = cell_trajectory(module, x)
    assert torch.all(c.abs() < 1.0)
    assert torch.all(c[-1] < 1.5 * c[0]), "with f ~ 0 the cell must not accumulate"


def mirrored_peephole(cifg: lstmkit.LSTM) -> lstmkit.LSTM:
    """A ``peephole`` LSTM whose forget gate is the CIFG's input gate negated.

    sigmoid(-a) = 1 - sigmoid(a), so its f is exactly CIFG's 1 - i.
    """
    twin = lstm(variant="peephole", num_layers=cifg.num_layers)
    with torch.no_grad():
        for name, param in twin.named_parameters():
            source = getattr(cifg, name)
            blocks = list(source.chunk(source.shape[0] // H, dim=0))  # cifg: i, g, o / i, o
            param.copy_(torch.cat([blocks[0], -blocks[0], *blocks[1:]]))
    return twin


def test_cifg_forget_gate_is_one_minus_input_gate():
    cifg = lstm(variant="cifg", num_layers=2)
    twin = mirrored_peephole(cifg)
    assert {name for name, _ in twin.named_parameters()} == set(cifg.state_dict())
    x = torch.randn(T, 3, D, dtype=F64)
    hx = random_state(cifg, 3)
    out, state = cifg(x, hx)
    out_twin, state_twin = twin(x, hx)
    assert_close("output", out_twin, out)
    assert_states_close(cifg, state_twin, state)


def test_cifg_step_from_pre_activations():
    """One CIFG step rebuilt by hand: c = (1 - i) * c_prev + i * g."""
    module = lstm(variant="cifg")
    p = module.layer_params(0, 0)
    x = torch.randn(1, 3, D, dtype=F64)
    h0, c0 = random_state(module, 3)
    _, (h1, c1) = module(x, (h0, c0))

    w_i, w_g, w_o = p["weight_ih"].chunk(3)
    u_i, u_g, u_o = p["weight_hh"].chunk(3)
    b_i, b_g, b_o = (p["bias_ih"] + p["bias_hh"]).chunk(3)
    p_i, p_o = p["weight_ch"].chunk(2)
    x0, h_prev, c_prev = x[0], h0[0], c0[0]
    i = torch.sigmoid(x0 @ w_i.T + h_prev @ u_i.T + b_i + p_i * c_prev)
    g = torch.tanh(x0 @ w_g.T + h_prev @ u_g.T + b_g)
    c = (1 - i) * c_prev + i * g
    o = torch.sigmoid(x0 @ w_o.T + h_prev @ u_o.T + b_o + p_o * c)
    assert_close("c_1", c, c1[0])
    assert_close("h_1", o * torch.tanh(c), h1[0])


# ---------------------------------------------------------------------- zoneout, dropout

REGULARISED = {
    "lstm-zoneout": (lstm, {"zoneout": 0.5}),
    "lstm-zoneout-pair": (lstm, {"zoneout": (0.3, 0.6)}),
    "lstm-recurrent_dropout": (lstm, {"recurrent_dropout": 0.4}),
    "lstm-both-2layer-bidirectional": (
        lstm,
        {"zoneout": 0.3, "recurrent_dropout": 0.3, "num_layers": 2, "bidirectional": True},
    ),
    "lstm-dropout-2layer": (lstm, {"dropout": 0.5, "num_layers": 2}),
    "peephole_full-recurrent_dropout": (
        lstm,
        {"variant": "peephole_full", "recurrent_dropout": 0.4},
    ),
    "gru-zoneout": (gru, {"zoneout": 0.5}),
    "gru-recurrent_dropout": (gru, {"recurrent_dropout": 0.4}),
}


@pytest.mark.parametrize("case", REGULARISED.values(), ids=REGULARISED)
def test_regularisers_are_the_identity_in_eval_mode(case):
    make, options = case
    module = make(**options).eval()
    regularisers = ("zoneout", "recurrent_dropout", "dropout")
    plain = rebuilt(make, module, **{k: v for k, v in options.items() if k not in regularisers})
    x = torch.randn(T, 2, D, dtype=F64)
    out, state = module(x)
    out_plain, state_plain = plain(x)
    assert_close("output", out_plain, out)
    assert_states_close(module, state_plain, state)


@pytest.mark.parametrize("case", REGULARISED.values(), ids=REGULARISED)
def test_regularisers_change_the_output_in_training(case):
    make, options = case
    module = make(**options)
    x = torch.randn(T, 2, D, dtype=F64)
    out_eval, _ = module.eval()(x)
    out_first, _ = module.train()(x)
    out_second, _ = module(x)
    assert not torch.allclose(out_first, out_eval), "training mode must draw masks"
    assert not torch.allclose(out_first, out_second), "each forward call must draw new masks"


# (module, zoneout rate of each state in state order: h, then c)
ZONEOUT = {
    "lstm-cell0.3-hidden0.6": (lambda: lstm(zoneout=(0.3, 0.6)), (0.6, 0.3)),
    "lstm-hidden-only": (lambda: lstm(zoneout=(0.0, 0.5)), (0.5, 0.0)),
    "lstm-proj": (lambda: lstm(zoneout=0.4, proj_size=2), (0.4, 0.4)),
    "gru": (lambda: gru(zoneout=0.5), (0.5,)),
}


@pytest.mark.parametrize("case", ZONEOUT.values(), ids=ZONEOUT)
def test_zoneout_replays_through_the_reference_backend(case):
    """One Bernoulli mask per step, sequence and unit, drawn at each forward call."""
    make, rates = case
    module = make().train()
    batch = 3
    x = torch.randn(T, batch, D, dtype=F64)
    hx = random_state(module, batch)
    torch.manual_seed(7)
    out, state = module(x, hx)

    torch.manual_seed(7)
    cell = module.cells[0][0]
    masks = tuple(
        torch.bernoulli(x.new_full((T, batch, size), rate)) if rate else None
        for rate, size in zip(rates, cell.state_sizes(), strict=False)
    )
    start = tuple(s[0] for s in states_of(hx))
    out_replay, state_replay = reference.run_layer(
        cell, module.layer_params(0, 0), x, start, zoneout_masks=masks
    )
    assert_close("output", out_replay, out)
    for name, e, a in zip(state_names(module), state_replay, states_of(state), strict=True):
        assert_close(name, e, a[0])
    # the output is the zoned-out h, not the cell's fresh one
    assert_close("output[-1] against h_n", states_of(state)[0][0], out[-1])


@pytest.mark.parametrize("make", [lstm, gru], ids=["lstm", "gru"])
def test_zoneout_mask_of_one_keeps_the_previous_state(make):
    """A unit whose mask is 1 keeps its value; a mask of 0 is the plain step."""
    module = make().eval()
    cell, params = module.cells[0][0], module.layer_params(0, 0)
    x = torch.randn(T, 2, D, dtype=F64)
    start = tuple(s[0] for s in states_of(random_state(module, 2)))
    keep = torch.zeros(T, 2, H, dtype=F64)
    keep[:, 0] = 1.0  # sequence 0 is frozen, sequence 1 runs freely
    masks = (keep,) * len(cell.zoneout_states)
    out, state = reference.run_layer(cell, params, x, start, zoneout_masks=masks)
    out_free, state_free = reference.run_layer(cell, params, x, start)
    assert_close("frozen output", start[0][0].expand(T, H), out[:, 0])
    assert_close("free output", out_free[:, 1], out[:, 1])
    for k in cell.zoneout_states:
        assert_close(f"frozen state {k}", start[k][0], state[k][0])
        assert_close(f"free state {k}", state_free[k][1], state[k][1])


RECURRENT_DROPOUT = {
    "standard-2layer-bidirectional": (lstm, {"num_layers": 2, "bidirectional": True}),
    "peephole_full": (lstm, {"variant": "peephole_full"}),
    "proj": (lstm, {"proj_size": 2}),
    "fgr-layer_norm": (lstm, {"variant": "fgr", "layer_norm": True}),
    "gru": (gru, {}),
    "gru-reset_before-2layer": (gru, {"reset_after": False, "num_layers": 2}),
}


@pytest.mark.parametrize("case", RECURRENT_DROPOUT.values(), ids=RECURRENT_DROPOUT)
def test_recurrent_dropout_is_one_mask_per_sequence(case):
    """With B=1 a per-sequence mask on h is a fixed scaling of weight_hh's columns."""
    make, options = case
    rate = 0.4
    module = make(recurrent_dropout=rate, **options).train()
    x = torch.randn(T, 1, D, dtype=F64)
    torch.manual_seed(3)
    out, state = module(x)

    folded = rebuilt(make, module, **options)
    torch.manual_seed(3)  # the module draws layer by layer, direction by direction
    with torch.no_grad():
        for layer, directions in enumerate(module.cells):
            for direction, cell in enumerate(directions):
                keep = 1.0 - rate
                mask = torch.bernoulli(x.new_full((1, cell.recurrent_input_size), keep)) / keep
                folded.layer_params(layer, direction)["weight_hh"].mul_(mask)
    out_folded, state_folded = folded(x)
    assert_close("output", out_folded, out)
    assert_states_close(module, state_folded, state)


# ---------------------------------------------------------------------- lengths

LENGTH_CASES = {
    "standard": (lstm, {}),
    "standard-batch_first": (lstm, {"batch_first": True}),
    "standard-bidirectional": (lstm, {"bidirectional": True}),
    "standard-2layer-bidirectional": (lstm, {"num_layers": 2, "bidirectional": True}),
    "peephole-2layer": (lstm, {"variant": "peephole", "num_layers": 2}),
    "cifg-bidirectional": (lstm, {"variant": "cifg", "bidirectional": True}),
    "fgr-2layer-bidirectional": (lstm, {"variant": "fgr", "num_layers": 2, "bidirectional": True}),
    "peephole_full-proj": (lstm, {"variant": "peephole_full", "proj_size": 2}),
    "gru-2layer-bidirectional": (gru, {"num_layers": 2, "bidirectional": True}),
    "gru-reset_before": (gru, {"reset_after": False}),
}


@pytest.mark.parametrize("case", LENGTH_CASES.values(), ids=LENGTH_CASES)
def test_lengths_equal_running_each_sequence_alone(case):
    make, options = case
    module = make(**options).eval()
    lengths = [T, 2, 1, T - 1]
    x = torch.randn(T, len(lengths), D, dtype=F64, requires_grad=True)  # time first
    hx = random_state(module, len(lengths))

    def run(inputs, hx, **kw):  # time-first in and out, whatever batch_first is
        if module.batch_first:
            out, state = module(inputs.transpose(0, 1), hx, **kw)
            return out.transpose(0, 1), state
        return module(inputs, hx, **kw)

    out, state = run(x, hx, lengths=lengths)
    (grad_x,) = grads_of([out, *states_of(state)], [x])
    for b, length in enumerate(lengths):
        out_alone, state_alone = run(x[:length, b : b + 1], select(hx, b))
        assert_close(f"output[:{length}, {b}]", out_alone[:, 0], out[:length, b])
        assert torch.all(out[length:, b] == 0), f"output past length {length} must be zero"
        assert torch.all(grad_x[length:, b] == 0), f"input past length {length} must not count"
        assert_states_close(module, state_alone, select(state, b), where=f"[{b}]")


# ---------------------------------------------------------------------- step()

STEP_CASES = {
    "batched": (lstm, {}, 2),
    "unbatched": (lstm, {}, None),
    "batch_first": (lstm, {"batch_first": True}, 2),
    "batch_first-unbatched": (lstm, {"batch_first": True}, None),
    "2layer": (lstm, {"num_layers": 2}, 2),
    "proj": (lstm, {"proj_size": 2, "num_layers": 2}, 2),
    "fgr": (lstm, {"variant": "fgr"}, 2),
    "peephole_full-layer_norm": (lstm, {"variant": "peephole_full", "layer_norm": True}, 2),
    "gru": (gru, {"num_layers": 2}, 2),
    "gru-unbatched-reset_before": (gru, {"reset_after": False}, None),
}


@pytest.mark.parametrize("case", STEP_CASES.values(), ids=STEP_CASES)
def test_step_streaming_equals_forward(case):
    make, options, batch = case
    module = make(**options).eval()
    batch_dims = () if batch is None else (batch,)
    x = torch.randn(T, *batch_dims, D, dtype=F64)  # time first
    hx = random_state(module, batch)
    time_dim = 1 if module.batch_first and batch is not None else 0
    out, state = module(x.movedim(0, time_dim), hx)

    outputs, streamed = [], hx
    for x_t in x:
        y, streamed = module.step(x_t, streamed)
        outputs.append(y)
    assert_close("output", out, torch.stack(outputs, dim=time_dim))
    assert_states_close(module, state, streamed)


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize("variant", ["standard", "peephole", "nig", "nog", "fgr"])
def test_forget_bias_adds_to_the_forget_block(variant):
    options = {"variant": variant, "num_layers": 2, "bidirectional": True, "proj_size": 2}
    torch.manual_seed(1)
    plain = lstm(**options)
    torch.manual_seed(1)
    biased = lstm(forget_bias=1.0, **options)
    f = plain.variant.gates.index("f")
    changed = []
    for name, param in plain.named_parameters():
        expected = param.detach().clone()
        if name.startswith("bias_ih"):
            expected[f * H : (f + 1) * H] += 1.0
            changed.append(name)
        assert_close(name, expected, getattr(biased, name))
    assert len(changed) == 4, f"every layer and direction has a forget bias, got {changed}"


REPRS = {
    "default": (lstm, {}, []),
    "variant": (lstm, {"variant": "peephole"}, []),
    "variant-default-activation": (lstm, {"variant": "niaf"}, []),
    "num_layers": (lstm, {"num_layers": 2}, ["num_layers=2"]),
    "proj_size": (lstm, {"proj_size": 2}, ["proj_size=2"]),
    "bias": (lstm, {"bias": False}, ["bias=False"]),
    "batch_first": (lstm, {"batch_first": True}, ["batch_first=True"]),
    "dropout": (lstm, {"dropout": 0.25}, ["dropout=0.25"]),
    "bidirectional": (lstm, {"bidirectional": True}, ["bidirectional=True"]),
    "activations": (
        lstm,
        {"sigma_g": "hard_sigmoid", "sigma_c": "relu", "sigma_h": "identity"},
        ["sigma_g='hard_sigmoid'", "sigma_c='relu'", "sigma_h='identity'"],
    ),
    "forget_bias": (lstm, {"forget_bias": 1.0}, ["forget_bias=1.0"]),
    "cell_clip": (lstm, {"cell_clip": 3.0}, ["cell_clip=3.0"]),
    "layer_norm": (lstm, {"layer_norm": True}, ["layer_norm=True"]),
    "recurrent_dropout": (lstm, {"recurrent_dropout": 0.25}, ["recurrent_dropout=0.25"]),
    "backend": (lstm, {"backend": "reference"}, ["backend='reference'"]),
    "gru-default": (gru, {}, []),
    "gru-reset_before": (gru, {"reset_after": False}, ["reset_after=False"]),
    "gru-layer_norm-bidirectional": (
        gru,
        {"layer_norm": True, "bidirectional": True},
        ["layer_norm=True", "bidirectional=True"],
    ),
}
OPTION_NAMES = [
    "num_layers",
    "proj_size",
    "bias",
    "batch_first",
    "dropout",
    "bidirectional",
    "sigma_g",
    "sigma_c",
    "sigma_h",
    "forget_bias",
    "cell_clip",
    "layer_norm",
    "zoneout",
    "recurrent_dropout",
    "backend",
    "reset_after",
]


@pytest.mark.parametrize("case", REPRS.values(), ids=REPRS)
def test_extra_repr_shows_variant_and_non_default_options(case):
    make, options, shown = case
    text = make(**options).extra_repr()
    assert text.startswith(f"{D}, {H}")
    if make is lstm:
        assert f"variant={options.get('variant', 'standard')!r}" in text
    for part in shown:
        assert part in text, f"{part!r} missing from {text!r}"
    hidden = [name for name in OPTION_NAMES if not any(p.startswith(name) for p in shown)]
    for name in hidden:
        assert not re.search(rf"(^|, ){name}=", text), f"default {name} shown in {text!r}"


ROUND_TRIPS = {
    "lstm-everything": (
        lstmkit.LSTM,
        {
            "num_layers": 2,
            "bidirectional": True,
            "proj_size": 2,
            "variant": "cifg",
            "sigma_c": "relu",
            "cell_clip": 2.5,
            "layer_norm": True,
            "recurrent_dropout": 0.1,
            "dropout": 0.2,
            "batch_first": True,
            "backend": "reference",
        },
    ),
    "lstm-zoneout": (lstmkit.LSTM, {"zoneout": 0.1}),
    "lstm-zoneout-pair": (lstmkit.LSTM, {"zoneout": (0.1, 0.2)}),
    "gru-everything": (
        lstmkit.GRU,
        {
            "num_layers": 2,
            "reset_after": False,
            "layer_norm": True,
            "recurrent_dropout": 0.1,
            "bidirectional": True,
        },
    ),
    "gru-zoneout": (lstmkit.GRU, {"zoneout": 0.1}),
}


@pytest.mark.parametrize(("module_class", "options"), ROUND_TRIPS.values(), ids=ROUND_TRIPS)
def test_extra_repr_rebuilds_the_same_module(module_class, options):
    """``Class(<extra_repr>)`` builds a module with the same configuration."""
    module = module_class(D, H, **options)
    namespace = {module_class.__name__: module_class}
    twin = eval(f"{module_class.__name__}({module.extra_repr()})", namespace)
    assert twin.extra_repr() == module.extra_repr()
    assert twin.zoneout == module.zoneout
    assert [p.shape for p in twin.parameters()] == [p.shape for p in module.parameters()]


# ---------------------------------------------------------------------- backends


@pytest.fixture
def calls(monkeypatch):
    """Route the reference backend through a spy that counts the layers it runs."""
    counted = []

    def spy(*args, **kwargs):
        counted.append(args[0])
        return reference.run_layer(*args, **kwargs)

    monkeypatch.setitem(registry.BACKENDS, "reference", spy)
    return counted


@pytest.mark.parametrize("make", [lstm, gru], ids=["lstm", "gru"])
def test_backend_reference_argument(make, calls, monkeypatch):
    monkeypatch.delenv("LSTMKIT_BACKEND", raising=False)
    torch.manual_seed(2)
    auto = make(num_layers=2)
    torch.manual_seed(2)
    chosen = make(num_layers=2, backend="reference")
    x = torch.randn(T, 2, D, dtype=F64)
    out_auto, _ = auto(x)
    calls.clear()
    out, _ = chosen(x)
    assert calls == [chosen.cells[0][0], chosen.cells[1][0]]
    assert_close("output", out_auto, out)


@pytest.mark.parametrize("requested", ["auto", "reference"])
def test_backend_environment_variable(requested, calls, monkeypatch):
    module = lstm(variant="peephole", backend=requested)
    x = torch.randn(T, 2, D, dtype=F64)
    monkeypatch.delenv("LSTMKIT_BACKEND", raising=False)
    expected, expected_state = module(x)
    calls.clear()
    monkeypatch.setenv("LSTMKIT_BACKEND", "reference")
    out, state = module(x)
    assert calls == [module.cells[0][0]]
    assert_close("output", expected, out)
    assert_states_close(module, expected_state, state)
