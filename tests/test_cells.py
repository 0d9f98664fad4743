"""One step of every cell against NumPy (float64) written from docs/variants.md.

The NumPy code below uses no lstmkit code: the variant table and the equations are copied
from the docs, so a change in the code that the docs do not describe fails here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from helpers import assert_close
from lstmkit.cells import VARIANTS, GRUCellSpec, LSTMCellSpec

B, D, H, P = 3, 5, 4, 2
LN_EPS = 1e-5


# --------------------------------------------------------------------- docs/variants.md, in NumPy
@dataclass(frozen=True)
class Row:
    """One row of the docs' parameter table."""

    blocks: str  # fused order of the blocks with weights
    recurrent: str  # blocks with a recurrent product
    peepholes: str = ""  # blocks of weight_ch
    reads_c: bool = False  # the recurrent product reads c_{t-1} (peephole_full)
    coupled: bool = False  # f = 1 - i (cifg)
    fgr: bool = False  # weight_gg and the gate state s
    sigma_c: str = "tanh"
    sigma_h: str = "tanh"


TABLE = {
    "standard": Row("ifgo", "ifgo"),
    "lstm1997": Row("igo", "igo"),
    "peephole": Row("ifgo", "ifgo", "ifo"),
    "peephole_full": Row("ifgo", "ifo", reads_c=True),
    "nig": Row("fgo", "fgo", "fo"),
    "nfg": Row("igo", "igo", "io"),
    "nog": Row("ifg", "ifg", "if"),
    "niaf": Row("ifgo", "ifgo", "ifo", sigma_c="identity"),
    "noaf": Row("ifgo", "ifgo", "ifo", sigma_h="identity"),
    "np": Row("ifgo", "ifgo"),
    "cifg": Row("igo", "igo", "io", coupled=True),
    "fgr": Row("ifgo", "ifgo", "ifo", fgr=True),
}

ACT = {
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
    "tanh": np.tanh,
    "identity": lambda v: v,
    "relu": lambda v: np.maximum(v, 0.0),
    "hard_sigmoid": lambda v: np.clip(v / 6.0 + 0.5, 0.0, 1.0),
}


def split(array: np.ndarray, names: str) -> dict[str, np.ndarray]:
    """Blocks of a fused parameter, along its first axis, in the order ``names``."""
    return dict(zip(names, np.split(array, len(names)), strict=True)) if names else {}


def layer_norm(v: np.ndarray, gain: np.ndarray, shift: np.ndarray) -> np.ndarray:
    mean = v.mean(-1, keepdims=True)
    var = v.var(-1, keepdims=True)  # biased, as the docs say
    return (v - mean) / np.sqrt(var + LN_EPS) * gain + shift


def lstm_step_np(row: Row, opts: dict, p: dict, x, h, c, s=None, mask=None) -> dict:
    """docs/variants.md, every LSTM variant and option; a missing gate is the constant 1."""
    bias, ln = opts.get("bias", True), opts.get("layer_norm", False)
    sg = ACT[opts.get("sigma_g") or "sigmoid"]
    sc = ACT[opts.get("sigma_c") or row.sigma_c]
    sh = ACT[opts.get("sigma_h") or row.sigma_h]
    W, U = split(p["weight_ih"], row.blocks), split(p["weight_hh"], row.recurrent)
    zeros = {q: 0.0 for q in "ifgo"}
    b_ih = split(p["bias_ih"], row.blocks) if bias else zeros
    b_hh = split(p["bias_hh"], row.recurrent) if bias else zeros
    if ln:
        g_ih, be_ih = split(p["ln_ih_weight"], row.blocks), split(p["ln_ih_bias"], row.blocks)
        g_hh, be_hh = split(p["ln_hh_weight"], row.recurrent), split(p["ln_hh_bias"], row.recurrent)
    peep = split(p["weight_ch"], row.peepholes) if row.peepholes else {}

    rec_in = c if row.reads_c else h
    if mask is not None:
        rec_in = rec_in * mask
    a = {}
    for q in row.blocks:
        wx = x @ W[q].T
        a[q] = (layer_norm(wx, g_ih[q], be_ih[q]) if ln else wx) + b_ih[q]
        if q in row.recurrent:
            uh = rec_in @ U[q].T
            a[q] = a[q] + (layer_norm(uh, g_hh[q], be_hh[q]) if ln else uh) + b_hh[q]
    if row.fgr:
        R = split(p["weight_gg"], "ifo")
        for q in "ifo":
            a[q] = a[q] + s @ R[q].T

    i = sg(a["i"] + peep.get("i", 0.0) * c) if "i" in a else 1.0
    if row.coupled:
        f = 1.0 - i
    else:
        f = sg(a["f"] + peep.get("f", 0.0) * c) if "f" in a else 1.0
    g = sc(a["g"])
    c_new = f * c + i * g
    if opts.get("cell_clip") is not None:
        c_new = np.clip(c_new, -opts["cell_clip"], opts["cell_clip"])
    o = sg(a["o"] + peep.get("o", 0.0) * c_new) if "o" in a else 1.0
    c_out = layer_norm(c_new, p["ln_c_weight"], p["ln_c_bias"]) if ln else c_new
    h_new = o * sh(c_out)
    if opts.get("proj_size"):
        h_new = h_new @ p["weight_hr"].T
    out = {"h": h_new, "c": c_new, "i": i, "f": f, "o": o}
    if row.fgr:
        out["s"] = np.concatenate([i, f, o], axis=-1)
    return out


def gru_step_np(p: dict, x, h, *, reset_after: bool, bias=True, ln=False, mask=None):
    """docs/variants.md, the GRU; gate order r, z, n."""
    W, U = split(p["weight_ih"], "rzn"), split(p["weight_hh"], "rzn")
    zeros = dict.fromkeys("rzn", 0.0)
    b_ih = split(p["bias_ih"], "rzn") if bias else zeros
    b_hh = split(p["bias_hh"], "rzn") if bias else zeros

    def norm(v, kind, q):
        if not ln:
            return v
        return layer_norm(
            v, split(p[f"ln_{kind}_weight"], "rzn")[q], split(p[f"ln_{kind}_bias"], "rzn")[q]
        )

    sig = ACT["sigmoid"]
    h_in = h if mask is None else h * mask
    wx = {q: norm(x @ W[q].T, "ih", q) + b_ih[q] for q in "rzn"}
    r = sig(wx["r"] + norm(h_in @ U["r"].T, "hh", "r") + b_hh["r"])
    z = sig(wx["z"] + norm(h_in @ U["z"].T, "hh", "z") + b_hh["z"])
    if reset_after:
        n = np.tanh(wx["n"] + r * (norm(h_in @ U["n"].T, "hh", "n") + b_hh["n"]))
    else:
        n = np.tanh(wx["n"] + norm((r * h_in) @ U["n"].T, "hh", "n") + b_hh["n"])
    return (1.0 - z) * n + z * h


# --------------------------------------------------------------------- random cases
def random_params(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> dict:
    params = {}
    for name, shape in shapes.items():
        if name.startswith("ln_") and name.endswith("_weight"):
            params[name] = rng.uniform(0.5, 1.5, shape)  # gains away from 1
        else:
            params[name] = rng.uniform(-0.8, 0.8, shape)
    return params


def to_torch(arrays: dict) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(a) for name, a in arrays.items()}


def recurrent_mask(rng: np.random.Generator, size: int, rate: float = 0.4) -> np.ndarray:
    """A dropout mask like the module draws: 0 or 1 / (1 - rate)."""
    return (rng.random((B, size)) >= rate) / (1.0 - rate)


ACTIVATIONS = {"sigma_g": "hard_sigmoid", "sigma_c": "relu", "sigma_h": "identity"}
OPTIONS = {
    "default": {},
    "proj": {"proj_size": P},
    "layer_norm": {"layer_norm": True},
    "cell_clip": {"cell_clip": 0.4},
    "activations": ACTIVATIONS,
    "hard_sigmoid_gates": {"sigma_g": "hard_sigmoid"},  # sigma_c/h keep the variant's default
    "no_bias": {"bias": False},
    "recurrent_mask": {"mask": True},
    "all": {
        "proj_size": P,
        "layer_norm": True,
        "cell_clip": 0.4,
        "bias": False,
        "mask": True,
        **ACTIVATIONS,
    },
}
SPEC_KEYS = ("proj_size", "bias", "sigma_g", "sigma_c", "sigma_h", "cell_clip", "layer_norm")


def run_lstm_case(name: str, opts: dict, seed: int = 0):
    """(reference dict, lstmkit (y, state), spec) for one random step."""
    rng = np.random.default_rng(seed)
    row = TABLE[name]
    spec = LSTMCellSpec(VARIANTS[name], D, H, **{k: v for k, v in opts.items() if k in SPEC_KEYS})
    p = random_params(spec.param_shapes(), rng)
    out_size = opts.get("proj_size") or H
    scale = 3.0 if opts.get("sigma_g") == "hard_sigmoid" else 1.0  # reach both saturations
    x = scale * rng.standard_normal((B, D))
    h = rng.standard_normal((B, out_size))
    c = 1.5 * rng.standard_normal((B, H))
    s = rng.uniform(0, 1, (B, 3 * H)) if row.fgr else None
    mask = recurrent_mask(rng, H if row.reads_c else out_size) if opts.get("mask") else None

    ref = lstm_step_np(row, opts, p, x, h, c, s, mask)
    state = tuple(torch.from_numpy(v) for v in (h, c, s) if v is not None)
    pt = to_torch(p)
    got = spec.step(
        pt,
        spec.input_projection(pt, torch.from_numpy(x)),
        state,
        None if mask is None else torch.from_numpy(mask),
    )
    return ref, got, spec


# --------------------------------------------------------------------- tests
def test_table_covers_every_variant():
    assert set(TABLE) == set(VARIANTS)


def expected_shapes(name: str, proj: int, layer_norm: bool, bias: bool) -> list:
    """docs/variants.md's shape table, in registration order."""
    row = TABLE[name]
    G, R = len(row.blocks), len(row.recurrent)
    out = proj or H
    shapes = [("weight_ih", (G * H, D)), ("weight_hh", (R * H, H if row.reads_c else out))]
    if bias:
        shapes += [("bias_ih", (G * H,)), ("bias_hh", (R * H,))]
    if row.peepholes:
        shapes.append(("weight_ch", (len(row.peepholes) * H,)))
    if row.fgr:
        shapes.append(("weight_gg", (3 * H, 3 * H)))
    if layer_norm:
        for kind, size in (("ih", G * H), ("hh", R * H), ("c", H)):
            shapes += [(f"ln_{kind}_weight", (size,)), (f"ln_{kind}_bias", (size,))]
    if proj:
        shapes.append(("weight_hr", (proj, H)))
    return shapes


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "layer_norm"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("proj", [0, P], ids=["P=H", f"proj{P}"])
@pytest.mark.parametrize("name", list(TABLE))
def test_param_shapes_and_states(name, proj, bias, layer_norm):
    spec = LSTMCellSpec(VARIANTS[name], D, H, proj_size=proj, bias=bias, layer_norm=layer_norm)
    assert list(spec.param_shapes().items()) == expected_shapes(name, proj, layer_norm, bias)
    states = (proj or H, H) + ((3 * H,) if TABLE[name].fgr else ())
    assert spec.state_sizes() == states


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name", list(TABLE))
def test_lstm_step(name, option):
    opts = OPTIONS[option]
    ref, (y, state), _ = run_lstm_case(name, opts)
    assert len(state) == (3 if TABLE[name].fgr else 2)
    assert_close("h", torch.from_numpy(ref["h"]), state[0])
    assert_close("c", torch.from_numpy(ref["c"]), state[1])
    assert_close("y", state[0], y)
    if TABLE[name].fgr:
        assert_close("gates", torch.from_numpy(ref["s"]), state[2])


@pytest.mark.parametrize("name", list(TABLE))
def test_cell_clip_clips(name):
    """The clip case above is only a test if the unclipped cell leaves [-clip, clip]."""
    opts = OPTIONS["cell_clip"]
    ref, (_, state), _ = run_lstm_case(name, opts)
    unclipped, _, _ = run_lstm_case(name, {})
    assert np.abs(unclipped["c"]).max() > opts["cell_clip"]
    assert state[1].abs().max() <= opts["cell_clip"]
    assert_close("c", torch.from_numpy(ref["c"]), state[1])


@pytest.mark.parametrize("name", [n for n, row in TABLE.items() if "o" in row.blocks])
def test_hard_sigmoid_saturates(name):
    """The hard_sigmoid case exercises both flat parts and the slope of the function."""
    ref, _, _ = run_lstm_case(name, OPTIONS["hard_sigmoid_gates"])
    o = ref["o"]
    assert (o == 0).any() or (o == 1).any()
    assert ((o > 0) & (o < 1)).any()


@pytest.mark.parametrize("option", ["default", "no_bias", "layer_norm", "recurrent_mask", "all"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru_step(reset_after, option):
    rng = np.random.default_rng(1)
    bias = option not in ("no_bias", "all")
    ln = option in ("layer_norm", "all")
    spec = GRUCellSpec(D, H, bias=bias, reset_after=reset_after, layer_norm=ln)
    shapes = {"weight_ih": (3 * H, D), "weight_hh": (3 * H, H)}
    if bias:
        shapes |= {"bias_ih": (3 * H,), "bias_hh": (3 * H,)}
    if ln:
        shapes |= {f"ln_{k}_{w}": (3 * H,) for k in ("ih", "hh") for w in ("weight", "bias")}
    assert spec.param_shapes() == shapes
    assert spec.state_sizes() == (H,)

    p = random_params(shapes, rng)
    x, h = rng.standard_normal((B, D)), rng.standard_normal((B, H))
    mask = recurrent_mask(rng, H) if option in ("recurrent_mask", "all") else None
    ref = gru_step_np(p, x, h, reset_after=reset_after, bias=bias, ln=ln, mask=mask)
    pt = to_torch(p)
    y, state = spec.step(
        pt,
        spec.input_projection(pt, torch.from_numpy(x)),
        (torch.from_numpy(h),),
        None if mask is None else torch.from_numpy(mask),
    )
    assert len(state) == 1
    assert_close("h", torch.from_numpy(ref), state[0])
    assert_close("y", state[0], y)


def test_gru_forms_differ():
    """reset_after and reset_before are different functions of the same parameters."""
    rng = np.random.default_rng(2)
    p = random_params(GRUCellSpec(D, H).param_shapes(), rng)
    x, h = rng.standard_normal((B, D)), rng.standard_normal((B, H))
    after = gru_step_np(p, x, h, reset_after=True)
    before = gru_step_np(p, x, h, reset_after=False)
    assert np.abs(after - before).max() > 1e-3


# --------------------------------------------------------------------- the oracle's own check
def test_numpy_standard_is_torch_lstm_cell():
    """The NumPy oracle's `standard` is torch.nn.LSTMCell (gate order i, f, g, o)."""
    rng = np.random.default_rng(3)
    cell = torch.nn.LSTMCell(D, H, dtype=torch.float64)
    p = {n: t.detach().numpy() for n, t in cell.named_parameters()}
    x, h, c = rng.standard_normal((B, D)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    ref = lstm_step_np(TABLE["standard"], {}, p, x, h, c)
    h_t, c_t = cell(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    assert_close("h", h_t.detach(), torch.from_numpy(ref["h"]))
    assert_close("c", c_t.detach(), torch.from_numpy(ref["c"]))


def test_numpy_gru_is_torch_gru_cell():
    """The NumPy oracle's reset-after GRU is torch.nn.GRUCell (gate order r, z, n)."""
    rng = np.random.default_rng(4)
    cell = torch.nn.GRUCell(D, H, dtype=torch.float64)
    p = {n: t.detach().numpy() for n, t in cell.named_parameters()}
    x, h = rng.standard_normal((B, D)), rng.standard_normal((B, H))
    ref = gru_step_np(p, x, h, reset_after=True)
    h_t = cell(torch.from_numpy(x), torch.from_numpy(h))
    assert_close("h", h_t.detach(), torch.from_numpy(ref))
