"""The sLSTM cell (Beck et al. 2024, xLSTM): exponential gating with a normaliser and a stabiliser.

One step, written once, in the form a fused kernel follows: the gate pre-activations of all
steps come from one input GEMM (``input_projection``), and per step only one block-diagonal
recurrent product (one batched GEMM over the heads) and one pointwise pass remain.

    i~, f~, z~, o~ = W x_t + b + R h_{t-1}        (R block-diagonal: one block per head)
    log f_t = f~ (exponential forget gate) or log sigmoid(f~) (sigmoid forget gate)
    m_t = max(log f_t + m_{t-1}, i~)              the stabiliser (m_t = i~ on an empty memory)
    i'_t = exp(i~ - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t = f'_t c_{t-1} + i'_t tanh(z~)
    n_t = f'_t n_{t-1} + i'_t                     the normaliser
    h_t = sigmoid(o~) c_t / n_t

docs/xlstm.md derives why the stabilised states give the paper's h_t and why n_t >= 1.
Shapes: B batch, D input size, H hidden size, K heads, E = H / K the head size. Gate order in
the fused matrices is i, f, z, o (z is the cell input, ``g`` in lstmkit's LSTM), each block H
wide; within a block, head k owns units [k E, (k+1) E).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit._checks import check_positive_int

SLSTM_GATES = ("i", "f", "z", "o")
FORGET_GATES = ("exp", "sigmoid")


def check_heads(hidden_size: int, num_heads: int) -> int:
    """``num_heads`` if it is a positive int dividing ``hidden_size``."""
    check_positive_int("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(
            f"num_heads must divide hidden_size ({hidden_size}), got num_heads={num_heads}"
        )
    return num_heads


def check_forget_gate(forget_gate: object) -> str:
    if forget_gate not in FORGET_GATES:
        raise ValueError(f"forget_gate must be 'exp' or 'sigmoid', got {forget_gate!r}")
    return forget_gate  # type: ignore[return-value]


def log_forget(pre: Tensor, forget_gate: str) -> Tensor:
    """log f_t from the forget gate's pre-activation: f~ itself, or log sigmoid(f~)."""
    return pre if forget_gate == "exp" else F.logsigmoid(pre)


@dataclass(frozen=True)
class SLSTMCellSpec:
    """One layer-direction of an sLSTM: sizes, options and its step.

    ``input_weights=False`` makes a cell without ``weight_ih`` whose input already is the
    gate pre-activations ``[..., 4H]`` (the xLSTM block computes them with its own head-wise
    projections); ``input_projection`` then only adds the bias.
    """

    input_size: int
    hidden_size: int
    num_heads: int = 1
    bias: bool = True
    forget_gate: Literal["exp", "sigmoid"] = "exp"
    input_weights: bool = True

    def __post_init__(self) -> None:
        check_positive_int("input_size", self.input_size)
        check_positive_int("hidden_size", self.hidden_size)
        check_heads(self.hidden_size, self.num_heads)
        check_forget_gate(self.forget_gate)
        if not self.input_weights and self.input_size != 4 * self.hidden_size:
            raise ValueError(
                "input_weights=False takes the gate pre-activations as input, so input_size "
                f"must be 4 * hidden_size = {4 * self.hidden_size}, got {self.input_size}"
            )

    # ----------------------------------------------------------------- sizes and parameters
    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def recurrent_input_size(self) -> int:
        return self.hidden_size

    @property
    def zoneout_states(self) -> tuple[int, ...]:
        return ()

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Short parameter names and shapes: ``weight_hh`` is one ``[4E, E]`` block per head."""
        H, K, E = self.hidden_size, self.num_heads, self.head_size
        shapes: dict[str, tuple[int, ...]] = {}
        if self.input_weights:
            shapes["weight_ih"] = (4 * H, self.input_size)
        shapes["weight_hh"] = (K, 4 * E, E)  # head k: rows i, f, z, o of its E units
        if self.bias:
            shapes["bias"] = (4 * H,)
        return shapes

    def state_sizes(self) -> tuple[int, ...]:
        """h, c, n, m: each ``[B, H]``."""
        return (self.hidden_size,) * 4

    # ----------------------------------------------------------------- the math
    def input_projection(self, p: dict[str, Tensor], x: Tensor) -> Tensor:
        """``[..., D] -> [..., 4H]``: W x + b for every gate; one GEMM for all time steps."""
        gx = x @ p["weight_ih"].T if self.input_weights else x
        if self.bias:
            gx = gx + p["bias"]
        return gx

    def recurrent_product(self, weight_hh: Tensor, h: Tensor) -> Tensor:
        """``R h``: ``[B, H] -> [B, 4H]`` in gate-major order, one GEMM batched over heads."""
        B, K, E = h.shape[0], self.num_heads, self.head_size
        gh = torch.einsum("bke,kre->bkr", h.reshape(B, K, E), weight_hh)  # [B, K, 4E]
        return gh.reshape(B, K, 4, E).transpose(1, 2).reshape(B, 4 * self.hidden_size)

    def step(
        self,
        p: dict[str, Tensor],
        gx: Tensor,  # [B, 4H] input projection of this step
        state: tuple[Tensor, ...],  # h, c, n, m: each [B, H]
        recurrent_mask: Tensor | None = None,  # [B, H], dropout on h_{t-1}
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One time step: returns (h_t, (h_t, c_t, n_t, m_t))."""
        h_prev, c_prev, n_prev, m_prev = state
        h_in = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        pre = gx + self.recurrent_product(p["weight_hh"], h_in)
        i_pre, f_pre, z_pre, o_pre = pre.chunk(4, dim=-1)  # each [B, H]

        log_f_plus_m = log_forget(f_pre, self.forget_gate) + m_prev
        # An empty memory (n = 0: the zero initial state) has no scale to keep, so its
        # stabiliser starts at i~ and it forgets nothing (f' = 0, not exp of an unbounded
        # number). This keeps n_t >= 1 from the first step on: h = c / n never divides by
        # an underflowed n, whatever the pre-activations.
        empty = n_prev == 0
        m = torch.where(empty, i_pre, torch.maximum(log_f_plus_m, i_pre))
        i = torch.exp(i_pre - m)
        f = torch.exp(torch.where(empty, float("-inf"), log_f_plus_m - m))
        c = f * c_prev + i * torch.tanh(z_pre)
        n = f * n_prev + i
        h = torch.sigmoid(o_pre) * c / n
        return h, (h, c, n, m)
