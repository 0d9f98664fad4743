"""lstmkit.LSTM (``standard``) and lstmkit.GRU against torch.nn.LSTM and torch.nn.GRU, on the
reference and the cpu backend.

Both sides get the same weights and the same leaf tensors; random upstream gradients go into
every output. Output, h_n, c_n and every gradient (input, each weight and bias, h0, c0) must
agree to the helpers' tolerances, for padded, packed and unbatched input, with and without
initial states, and for weights moved by ``from_torch``, ``to_torch`` and ``load_state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import lstmkit
from helpers import assert_close, grads_of

# torch warns once per call that oneDNN has no projection kernel; that is torch's business.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

D, H, P, T, B = 4, 5, 3, 6, 4  # input, hidden, projection sizes; time steps; batch


@pytest.fixture(autouse=True, params=["reference", "cpu"])
def backend(request, monkeypatch):
    """Every case on both of lstmkit's own backends (``auto`` would hand some of them to
    torch itself, which would compare torch with torch)."""
    if request.param == "cpu":
        from lstmkit.backends import cpu

        if not cpu.available():
            pytest.skip(f"the C++ engine did not build: {cpu.build_error()}")
    monkeypatch.setenv("LSTMKIT_BACKEND", request.param)
    return request.param


@dataclass(frozen=True)
class Case:
    kind: str  # "lstm" or "gru"
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    batch_first: bool = False
    bias: bool = True
    dtype: torch.dtype = torch.float64

    @property
    def id(self) -> str:
        parts = [self.kind, f"L{self.num_layers}"]
        parts += ["bi"] * self.bidirectional + ["proj"] * bool(self.proj_size)
        parts += ["bf"] * self.batch_first + ["nobias"] * (not self.bias)
        return "-".join([*parts, "fp64" if self.dtype == torch.float64 else "fp32"])

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.proj_size or H, H) if self.kind == "lstm" else (H,)

    @property
    def rows(self) -> int:
        return self.num_layers * (2 if self.bidirectional else 1)

    def config(self) -> dict:
        """Constructor arguments shared by torch and lstmkit."""
        config = {
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "bidirectional": self.bidirectional,
            "dtype": self.dtype,
        }
        return config | ({"proj_size": self.proj_size} if self.proj_size else {})

    def torch_module(self) -> nn.RNNBase:
        return (nn.LSTM if self.kind == "lstm" else nn.GRU)(D, H, **self.config())

    def kit_module(self) -> lstmkit.LSTM | lstmkit.GRU:
        return (lstmkit.LSTM if self.kind == "lstm" else lstmkit.GRU)(D, H, **self.config())

    def kit_class(self) -> type[lstmkit.LSTM] | type[lstmkit.GRU]:
        return lstmkit.LSTM if self.kind == "lstm" else lstmkit.GRU


def _cases(kind: str, grid: list[tuple]) -> list:
    """``(num_layers, bidirectional, proj_size, batch_first, bias, dtype)`` rows as params."""
    cases = [Case(kind, *row) for row in grid]
    return [pytest.param(case, id=case.id) for case in cases]


f32, f64 = torch.float32, torch.float64
# Every combination of depth, direction, projection and dtype; batch_first and bias=False
# ride on a few of them.
LSTM_CASES = _cases(
    "lstm",
    [
        (layers, bi, proj, False, True, dtype)
        for layers in (1, 3)
        for bi in (False, True)
        for proj in (0, P)
        for dtype in (f32, f64)
    ]
    + [
        (1, False, 0, True, True, f32),
        (1, False, 0, False, False, f32),
        (3, True, 0, True, True, f64),
        (3, True, P, True, False, f64),
    ],
)
GRU_CASES = _cases(
    "gru",
    [
        (layers, bi, 0, False, True, dtype)
        for layers in (1, 3)
        for bi in (False, True)
        for dtype in (f32, f64)
    ]
    + [
        (1, False, 0, True, True, f32),
        (1, True, 0, False, False, f64),
        (3, True, 0, True, False, f32),
    ],
)
# A smaller grid for the input forms and conversions, both kinds.
FEW_CASES = _cases(
    "lstm",
    [
        (1, False, 0, False, True, f64),
        (3, True, P, False, True, f64),
        (3, True, P, True, True, f32),
        (1, True, 0, False, False, f32),
    ],
) + _cases(
    "gru",
    [
        (1, False, 0, False, True, f64),
        (3, True, 0, False, True, f32),
        (3, True, 0, True, False, f64),
    ],
)
STATES = pytest.mark.parametrize("given", [True, False], ids=["h0", "no-h0"])


# ---------------------------------------------------------------------- helpers
def initial_states(case: Case, batch: int | None, given: bool) -> list[Tensor]:
    """Leaf ``[rows, B, size]`` states (``[rows, size]`` unbatched), or none."""
    if not given:
        return []
    lead = (case.rows,) if batch is None else (case.rows, batch)
    return [
        torch.randn(*lead, size, dtype=case.dtype, requires_grad=True) for size in case.state_sizes
    ]


def hx_of(case: Case, states: list[Tensor]):
    if not states:
        return None
    return tuple(states) if case.kind == "lstm" else states[0]


def flat(output, final) -> list[Tensor]:
    """A module's result as a list of tensors: output (or its packed data), then states."""
    data = output.data if isinstance(output, PackedSequence) else output
    return [data, *(final if isinstance(final, tuple) else (final,))]


def assert_equivalent(
    expected_module: nn.Module,
    expected,  # (output, final) of expected_module
    actual_module: nn.Module,
    actual,  # (output, final) of actual_module
    leaves: list[Tensor],  # the input and the given states, shared by both calls
) -> None:
    """Outputs and the gradients of every leaf and parameter agree, named on failure."""
    names = [name for name, _ in expected_module.named_parameters()]
    assert [name for name, _ in actual_module.named_parameters()] == names
    expected_out, actual_out = flat(*expected), flat(*actual)
    out_names = ["output", "h_n", "c_n"][: len(expected_out)]
    assert len(actual_out) == len(expected_out)
    for name, e, a in zip(out_names, expected_out, actual_out, strict=True):
        assert_close(name, e, a)

    expected_grads = grads_of(expected_out, [*leaves, *expected_module.parameters()])
    actual_grads = grads_of(actual_out, [*leaves, *actual_module.parameters()])
    grad_names = ["input", "h0", "c0"][: len(leaves)] + names
    for name, e, a in zip(grad_names, expected_grads, actual_grads, strict=True):
        assert e is not None and a is not None, f"d{name}: no gradient (torch: {e is not None})"
        assert_close(f"d{name}", e, a)


def padded_input(case: Case) -> Tensor:
    shape = (B, T, D) if case.batch_first else (T, B, D)
    return torch.randn(shape, dtype=case.dtype, requires_grad=True)


def check_padded(case: Case, expected_module, actual_module, given: bool) -> None:
    x = padded_input(case)
    states = initial_states(case, B, given)
    hx = hx_of(case, states)
    expected, actual = expected_module(x, hx), actual_module(x, hx)
    assert_equivalent(expected_module, expected, actual_module, actual, [x, *states])


# ---------------------------------------------------------------------- padded input
@STATES
@pytest.mark.parametrize("case", LSTM_CASES)
def test_lstm_matches_torch(case: Case, given: bool):
    reference = case.torch_module()
    converted = lstmkit.LSTM.from_torch(reference)
    assert converted.variant.name == "standard"
    check_padded(case, reference, converted, given)


@STATES
@pytest.mark.parametrize("case", GRU_CASES)
def test_gru_matches_torch(case: Case, given: bool):
    reference = case.torch_module()
    converted = lstmkit.GRU.from_torch(reference)
    check_padded(case, reference, converted, given)


# ---------------------------------------------------------------------- packed input
@STATES
@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("case", FEW_CASES)
def test_packed_matches_torch(case: Case, enforce_sorted: bool, given: bool):
    # Ties in both orders; the longest sequence is T so that padding round-trips exactly.
    lengths = torch.tensor([T, 4, 4, 2] if enforce_sorted else [2, 4, T, 4])
    reference = case.torch_module()
    converted = case.kit_class().from_torch(reference)
    x = padded_input(case)
    states = initial_states(case, B, given)
    hx = hx_of(case, states)

    def pack() -> PackedSequence:  # one per module: each backward frees its own graph
        return pack_padded_sequence(
            x, lengths, batch_first=case.batch_first, enforce_sorted=enforce_sorted
        )

    expected, actual = reference(pack(), hx), converted(pack(), hx)

    assert isinstance(actual[0], PackedSequence)
    assert torch.equal(actual[0].batch_sizes, expected[0].batch_sizes)
    for field in ("sorted_indices", "unsorted_indices"):
        e, a = getattr(expected[0], field), getattr(actual[0], field)
        assert (e is None and a is None) or torch.equal(e, a), f"{field}: {a} != {e}"
    assert_equivalent(reference, expected, converted, actual, [x, *states])


# ---------------------------------------------------------------------- unbatched input
@STATES
@pytest.mark.parametrize("case", FEW_CASES)
def test_unbatched_matches_torch(case: Case, given: bool):
    reference = case.torch_module()
    converted = case.kit_class().from_torch(reference)
    x = torch.randn(T, D, dtype=case.dtype, requires_grad=True)  # [T, D] even with batch_first
    states = initial_states(case, None, given)
    hx = hx_of(case, states)
    expected, actual = reference(x, hx), converted(x, hx)
    assert actual[0].shape == (T, (2 if case.bidirectional else 1) * case.state_sizes[0])
    assert_equivalent(reference, expected, converted, actual, [x, *states])


# ---------------------------------------------------------------------- lengths=
@STATES
@pytest.mark.parametrize("case", FEW_CASES)
def test_lengths_match_torch_packed(case: Case, given: bool):
    """Padded input with ``lengths=`` is torch on the PackedSequence of those lengths."""
    lengths = torch.tensor([2, 4, T - 1, 4])  # ties, unsorted, every sequence shorter than T
    reference = case.torch_module()
    converted = case.kit_class().from_torch(reference)
    x = padded_input(case)
    states = initial_states(case, B, given)
    hx = hx_of(case, states)

    packed = pack_padded_sequence(x, lengths, batch_first=case.batch_first, enforce_sorted=False)
    packed_output, final = reference(packed, hx)
    padded, _ = pad_packed_sequence(packed_output, batch_first=case.batch_first, total_length=T)
    expected = (padded, final)
    actual = converted(x, hx, lengths=lengths)

    time_dim = 1 if case.batch_first else 0
    steps = torch.arange(T).view([-1 if d == time_dim else 1 for d in range(3)])
    beyond = steps >= lengths.view([-1 if d == 1 - time_dim else 1 for d in range(3)])
    assert torch.all(actual[0].masked_select(beyond) == 0), "output past a sequence's end"
    assert_equivalent(reference, expected, converted, actual, [x, *states])


# ---------------------------------------------------------------------- conversions
@pytest.mark.parametrize("case", FEW_CASES)
def test_to_torch_matches(case: Case):
    module = case.kit_module()
    exported = module.to_torch()
    assert type(exported) is (nn.LSTM if case.kind == "lstm" else nn.GRU)
    for attribute in (
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "bidirectional",
        "proj_size",
        "dropout",
    ):
        assert getattr(exported, attribute) == getattr(module, attribute), attribute
    check_padded(case, exported, module, given=True)


@pytest.mark.parametrize("case", FEW_CASES)
def test_load_state_dict_both_ways(case: Case):
    # Fresh modules draw different weights, so a load that copies nothing fails below.
    reference, module = case.torch_module(), case.kit_module()
    assert list(module.state_dict()) == list(reference.state_dict())
    module.load_state_dict(reference.state_dict())
    check_padded(case, reference, module, given=True)

    reference, module = case.torch_module(), case.kit_module()
    reference.load_state_dict(module.state_dict())
    check_padded(case, reference, module, given=True)
