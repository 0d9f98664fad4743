"""The ``torch`` backend (torch's own LSTM / GRU kernels over the whole stack) against reference.

Both backends get the same weights, inputs and initial states; random upstream gradients go
into every output. Output, final states and the gradients of the input, the initial states
and every parameter must agree (fp32 rtol 1e-5, fp64 rtol 1e-10), for padded, ``lengths=``,
packed, batch-first and unbatched input, 1 and 3 layers, both directions and ``proj_size``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import lstmkit
from helpers import assert_close, grads_of
from lstmkit.backends import cpu, registry, torch_backend

# torch warns that oneDNN has no projection kernel and runs its own loop; that is torch's.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

T, B, D, H, P = 6, 3, 4, 5, 3  # time steps, batch, input, hidden and projection sizes
LENGTHS = [4, 6, 2]  # unsorted, one full-length sequence
DTYPES = {"fp32": torch.float32, "fp64": torch.float64}


@dataclass(frozen=True)
class Case:
    kind: str  # "lstm" or "gru"
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    bias: bool = True

    @property
    def id(self) -> str:
        parts = [self.kind, f"L{self.num_layers}"]
        parts += ["bi"] * self.bidirectional + ["proj"] * bool(self.proj_size)
        return "-".join(parts + ["nobias"] * (not self.bias))

    def make(self, backend: str, dtype: torch.dtype, **options):
        config = dict(
            num_layers=self.num_layers, bidirectional=self.bidirectional, bias=self.bias,
            backend=backend, dtype=dtype, **options,
        )  # fmt: skip
        if self.kind == "lstm":
            return lstmkit.LSTM(D, H, proj_size=self.proj_size, **config)
        return lstmkit.GRU(D, H, **config)


CASES = [
    Case("lstm"),
    Case("lstm", num_layers=3, bidirectional=True),
    Case("lstm", num_layers=3, bidirectional=True, proj_size=P),
    Case("lstm", proj_size=P, bias=False),
    Case("gru"),
    Case("gru", num_layers=3, bidirectional=True),
    Case("gru", bias=False),
]
FORMS = ["padded", "lengths", "packed", "batch_first", "batch_first-lengths", "unbatched"]


def run(module, form: str, x, states):
    """Call ``module`` on ``x`` (``[T, B, D]``, or ``[T, D]`` unbatched) in the given form;
    returns the output tensors (packed data for packed input) and final states."""
    hx = None if states is None else (states[0] if len(states) == 1 else tuple(states))
    if form == "lengths":
        y, final = module(x, hx, lengths=torch.tensor(LENGTHS))
    elif form.startswith("batch_first"):
        module.batch_first = True
        lengths = LENGTHS if form.endswith("lengths") else None
        y, final = module(x.transpose(0, 1).contiguous(), hx, lengths=lengths)
        y = y.transpose(0, 1)
    elif form == "packed":
        y, final = module(pack_padded_sequence(x, LENGTHS, enforce_sorted=False), hx)
        assert isinstance(y, PackedSequence)
        y = y.data
    else:
        y, final = module(x, hx)
    return [y, *_states(final)]


def compare(make, form: str, dtype: torch.dtype, *, train: bool = False) -> None:
    """``make("torch")`` against ``make("reference")`` with the same weights and inputs."""
    unbatched = form == "unbatched"
    g = torch.Generator().manual_seed(1)
    x = torch.randn((T, D) if unbatched else (T, B, D), generator=g, dtype=dtype)
    probe = make("reference")
    rows = probe.num_layers * probe.num_directions
    sizes = probe.cells[0][0].state_sizes()
    states = [
        torch.randn((rows, size) if unbatched else (rows, B, size), generator=g, dtype=dtype)
        for size in sizes
    ]
    results = []
    for backend in ("reference", "torch"):
        module = make(backend)
        module.load_state_dict(probe.state_dict())
        module.train(train)
        xb = x.clone().requires_grad_()
        sb = [s.clone().requires_grad_() for s in states]
        torch.manual_seed(7)  # the same dropout masks for both
        outputs = run(module, form, xb, sb)
        names = ["x", *(f"state{k}" for k in range(len(sb))), *dict(module.named_parameters())]
        inputs = [xb, *sb, *module.parameters()]
        results.append((outputs, grads_of(outputs, inputs, seed=2), names))
    (ref_out, ref_grads, names), (torch_out, torch_grads, _) = results
    for k, (expected, actual) in enumerate(zip(ref_out, torch_out, strict=True)):
        assert_close("output" if k == 0 else f"final state{k - 1}", expected, actual)
    for name, expected, actual in zip(names, ref_grads, torch_grads, strict=True):
        assert_close(f"d{name}", expected, actual)


# --------------------------------------------------------------------------- equality
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_torch_backend_equals_reference(case: Case, form: str, dtype: torch.dtype):
    compare(lambda backend: case.make(backend, dtype), form, dtype)


@pytest.mark.parametrize("form", ["padded", "lengths", "packed"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_between_layers_draws_the_reference_masks(kind: str, form: str):
    """In training, dropout between layers runs layer by layer and draws the same masks."""
    case = Case(kind, num_layers=3, bidirectional=True)
    compare(
        lambda backend: case.make(backend, torch.float64, dropout=0.4),
        form,
        torch.float64,
        train=True,
    )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_inference_equals_reference(kind: str):
    """Without gradients torch runs its inference kernels (oneDNN's, for the LSTM)."""
    case = Case(kind, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, D)
    reference, ours = case.make("reference", torch.float32), case.make("torch", torch.float32)
    ours.load_state_dict(reference.state_dict())
    with torch.no_grad():
        (y_ref, final_ref), (y, final) = reference(x), ours(x)
    assert_close("output", y_ref, y)
    for k, (expected, actual) in enumerate(zip(_states(final_ref), _states(final), strict=True)):
        assert_close(f"final state{k}", expected, actual)


def _states(final) -> tuple:
    return final if isinstance(final, tuple) else (final,)


def test_np_variant_runs_on_torch():
    """``np`` (vanilla without peepholes) is the standard cell under another name."""
    compare(lambda backend: lstmkit.LSTM(D, H, variant="np", backend=backend), "lengths",
            torch.float32)  # fmt: skip


# --------------------------------------------------------------------------- refusals
UNSUPPORTED = {
    "peephole": (lambda b: lstmkit.LSTM(D, H, variant="peephole", backend=b),
                 "variant='peephole' (diagonal peepholes)"),
    "cifg": (lambda b: lstmkit.LSTM(D, H, variant="cifg", backend=b),
             "variant='cifg' (a coupled forget gate)"),
    "lstm1997": (lambda b: lstmkit.LSTM(D, H, variant="lstm1997", backend=b),
                 "variant='lstm1997' (no forget gate)"),
    "fgr": (lambda b: lstmkit.LSTM(D, H, variant="fgr", backend=b),
            "variant='fgr' (diagonal peepholes)"),
    "sigma_h": (lambda b: lstmkit.LSTM(D, H, sigma_h="identity", backend=b), "activations"),
    "cell_clip": (lambda b: lstmkit.LSTM(D, H, cell_clip=2.0, backend=b), "cell_clip=2.0"),
    "layer_norm": (lambda b: lstmkit.LSTM(D, H, layer_norm=True, backend=b), "layer_norm=True"),
    "zoneout": (lambda b: lstmkit.LSTM(D, H, zoneout=0.1, backend=b), "zoneout=0.1"),
    "recurrent_dropout": (lambda b: lstmkit.GRU(D, H, recurrent_dropout=0.2, backend=b),
                          "recurrent_dropout=0.2"),
    "gru-reset_before": (lambda b: lstmkit.GRU(D, H, reset_after=False, backend=b),
                         "reset_after=False"),
    "gru-layer_norm": (lambda b: lstmkit.GRU(D, H, layer_norm=True, backend=b),
                       "layer_norm=True"),
    "convlstm": (lambda b: lstmkit.ConvLSTM(1, 2, backend=b), "ConvLSTM modules"),
}  # fmt: skip


@pytest.mark.parametrize("case", UNSUPPORTED.values(), ids=UNSUPPORTED)
def test_torch_backend_names_what_torch_lacks(case):
    make, reason = case
    with pytest.raises(ValueError, match=rf"backend='torch' .*not support {re.escape(reason)}"):
        make("torch")
    make("auto")  # auto accepts it and runs another backend


def test_environment_torch_refuses_what_torch_lacks(monkeypatch):
    module = lstmkit.LSTM(D, H, variant="peephole")
    monkeypatch.setenv("LSTMKIT_BACKEND", "torch")
    with pytest.raises(ValueError, match=r"LSTMKIT_BACKEND='torch' .*variant='peephole'"):
        module(torch.randn(T, B, D))


def test_torch_is_not_a_layer_backend():
    with pytest.raises(ValueError, match=r"backend='torch' runs whole LSTM and GRU modules"):
        registry.resolve("torch")


# --------------------------------------------------------------------------- auto
@pytest.fixture
def engine():
    """Skip the test if the C++ engine could not be built (auto then runs reference)."""
    if not cpu.available():
        pytest.skip(f"the C++ engine did not build: {cpu.build_error()}")


@pytest.fixture
def spies(monkeypatch):
    """Which backends a module call used: ``calls`` gets "torch" or "cpu" per call."""
    calls: list[str] = []
    run_stack, run_layer = torch_backend.run_stack, cpu.run_layer

    def stack_spy(*args, **kwargs):
        calls.append("torch")
        return run_stack(*args, **kwargs)

    def layer_spy(*args, **kwargs):
        calls.append("cpu")
        return run_layer(*args, **kwargs)

    monkeypatch.setattr(torch_backend, "run_stack", stack_spy)
    monkeypatch.setattr(cpu, "run_layer", layer_spy)
    return calls


def test_torch_backend_runs_torch(spies):
    lstmkit.LSTM(D, H, backend="torch")(torch.randn(T, B, D))
    assert spies == ["torch"]


def test_environment_selects_torch(spies, monkeypatch):
    monkeypatch.setenv("LSTMKIT_BACKEND", "torch")
    lstmkit.GRU(D, H, backend="reference")(torch.randn(T, B, D))
    assert spies == ["torch"]


def infer(**options):
    """An inference call on auto: a float32 ``standard`` LSTM (or ``module``), padded input."""
    module = options.pop("module", None) or lstmkit.LSTM(D, H, **options.pop("build", {}))
    x = torch.randn(T, B, D, dtype=module.weight_ih_l0.dtype)
    with torch.no_grad():
        module(x, **options)


# the rule of registry's docstring: which backend auto runs, per call
AUTO = {
    "lstm-infer": (lambda: infer(), "torch"),
    "lstm-infer-frozen": (  # grad mode on, but nothing requires grad: inference
        lambda: lstmkit.LSTM(D, H).requires_grad_(False)(torch.randn(T, B, D)), "torch"),
    "lstm-train": (lambda: lstmkit.LSTM(D, H)(torch.randn(T, B, D)), "torch"),
    "lstm-train-lengths": (
        lambda: lstmkit.LSTM(D, H)(torch.randn(T, B, D), lengths=[6, 2, 5]), "cpu"),
    "lstm-train-peephole": (
        lambda: lstmkit.LSTM(D, H, variant="peephole")(torch.randn(T, B, D)), "cpu"),
    "gru-train": (lambda: lstmkit.GRU(D, H)(torch.randn(T, B, D)), "cpu"),
    "lstm-infer-lengths": (lambda: infer(lengths=[6, 2, 5]), "cpu"),
    "lstm-infer-proj": (lambda: infer(build=dict(proj_size=P)), "cpu"),
    "lstm-infer-fp64": (lambda: infer(build=dict(dtype=torch.float64)), "cpu"),
    "lstm-infer-peephole": (lambda: infer(build=dict(variant="peephole")), "cpu"),
    "lstm-bf16-train": (
        lambda: lstmkit.LSTM(D, H, dtype=torch.bfloat16)(torch.randn(T, B, D).bfloat16()),
        "torch"),
    "gru-bf16-train": (
        lambda: lstmkit.GRU(D, H, dtype=torch.bfloat16)(torch.randn(T, B, D).bfloat16()),
        "torch"),
    "gru-infer": (lambda: infer(module=lstmkit.GRU(D, H)), "cpu"),
}  # fmt: skip


@pytest.mark.parametrize("case", AUTO.values(), ids=AUTO)
def test_auto_follows_its_rule(engine, spies, case):
    call, expected = case
    call()
    assert set(spies) == {expected}


def test_auto_keeps_torch_kernels_out_of_compiled_code(engine, spies, monkeypatch):
    """dynamo cannot trace torch's RNN kernels, so auto runs the engine while compiling."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    infer()
    assert set(spies) == {"cpu"}
