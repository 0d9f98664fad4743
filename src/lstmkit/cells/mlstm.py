"""The mLSTM cell (Beck et al. 2024, xLSTM): a matrix memory with a covariance update.

    C_t = f_t C_{t-1} + i_t v_t k_t^T,   n_t = f_t n_{t-1} + i_t k_t,   k_t scaled by 1/sqrt(E)
    h~_t = C_t q_t / max(|n_t . q_t|, 1),   i_t = exp(i~_t),   f_t = exp(f~_t) or sigmoid(f~_t)

per head, with scalar gates per head. The memory is kept stabilised: (C_t, n_t) are the
memory times exp(-m_t), with m_t = max(log f_t + m_{t-1}, i~_t) as in the paper; h~_t does not
depend on the choice of m_t, which is what lets three forms compute the same function:

- ``mlstm_recurrent``: one step at a time (generation, and the oracle);
- ``mlstm_parallel``: all steps at once through a ``[T, T]`` decay matrix (quadratic in T);
- ``mlstm_chunkwise``: the parallel form inside chunks of ``chunk_size`` steps and the
  recurrence across chunks (linear in T).

``mlstm_sequence`` picks one by length. All return the outputs and the final state
``(C, n, m)``, which equals the recurrent form's state, so a sequence can be continued in any
form. docs/xlstm.md has the derivation.

Shapes: B batch, K heads, T steps, E head size; q, k, v ``[B, K, T, E]``, gate
pre-activations ``[B, K, T]``; state C ``[B, K, E, E]`` (rows index v, columns k), n ``[B, K, E]``,
m ``[B, K]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lstmkit._checks import check_positive_int, unknown_name
from lstmkit.cells.slstm import check_forget_gate, check_heads, log_forget

MLSTMState = tuple[Tensor, Tensor, Tensor]  # C [B, K, E, E], n [B, K, E], m [B, K]
FORMS = ("auto", "recurrent", "parallel", "chunkwise")
DEFAULT_CHUNK_SIZE = 64


# --------------------------------------------------------------------------- shared pieces
def zero_state(q: Tensor) -> MLSTMState:
    """The empty memory for queries ``q`` ``[B, K, T, E]``."""
    B, K, _, E = q.shape
    return q.new_zeros(B, K, E, E), q.new_zeros(B, K, E), q.new_zeros(B, K)


def _normalise(num: Tensor, den: Tensor, m: Tensor) -> Tensor:
    """``num / max(|den|, exp(-m))``: h~ from the stabilised numerator ``[..., E]`` and ``n.q``.

    Written so no exp overflows: for m < 0 both sides are scaled by exp(m) <= 1 (the floor
    becomes 1); for m >= 0 the floor is exp(-m) <= 1. The floor never goes below the dtype's
    resolution eps (it would from m > 16 in float32): a stabilised |n.q| below eps is rounding
    noise, and dividing by it (or by 0, for q = 0 or padded steps) would overflow the output
    and turn its gradient into inf or NaN. Up to that, this is exactly the paper's h~.
    """
    scale = torch.exp(m.clamp(max=0))
    floor = torch.exp(-m.clamp(min=0)).clamp_min(torch.finfo(m.dtype).eps)
    denominator = torch.maximum((den * scale).abs(), floor)
    return num * (scale / denominator).unsqueeze(-1)


def _outputs_from(
    q: Tensor,  # [..., L, E]
    k: Tensor,  # [..., L, E], already scaled
    v: Tensor,  # [..., L, E]
    i_pre: Tensor,  # [..., L]
    b: Tensor,  # [..., L] log decay from the stretch's start to step s (inclusive)
    state: MLSTMState,  # at the stretch's start: C [..., E, E], n [..., E], m [...]
) -> tuple[Tensor, Tensor]:
    """h~ of every step of a stretch given the memory at its start: (h~ [..., L, E], m [..., L]).

    Step s sees the start memory with weight exp(m_0 + b_s) and step j <= s with weight
    exp(i~_j + b_s - b_j); m_s, the largest of these logs, is the recurrent stabiliser.
    """
    C0, n0, m0 = state
    L = q.shape[-2]
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    log_d = b.unsqueeze(-1) - b.unsqueeze(-2) + i_pre.unsqueeze(-2)  # [..., L(s), L(j)]
    log_d = torch.where(causal, log_d, float("-inf"))
    log_start = m0.unsqueeze(-1) + b  # [..., L]
    m = torch.maximum(log_d.amax(dim=-1), log_start)  # [..., L]
    scores = (q @ k.transpose(-1, -2)) * torch.exp(log_d - m.unsqueeze(-1))  # [..., L, L]
    w_start = torch.exp(log_start - m)  # [..., L]
    num = scores @ v + w_start.unsqueeze(-1) * (q @ C0.transpose(-1, -2))
    den = scores.sum(dim=-1) + w_start * (q @ n0.unsqueeze(-1)).squeeze(-1)
    return _normalise(num, den, m), m


def _memory_of(
    k: Tensor, v: Tensor, i_pre: Tensor, b: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What a stretch writes into the memory by its end, under its own stabiliser.

    Returns (m_w [...], C_w [..., E, E], n_w [..., E], decay [...]): the stretch adds
    exp(m_w) (C_w, n_w) to the memory, which it first decays by exp(decay).
    """
    decay = b[..., -1]
    log_w = i_pre + decay.unsqueeze(-1) - b  # [..., L]
    m_w = log_w.amax(dim=-1)
    w = torch.exp(log_w - m_w.unsqueeze(-1)).unsqueeze(-1)  # [..., L, 1]
    return m_w, (v * w).transpose(-1, -2) @ k, (k * w).sum(dim=-2), decay


def _advance(state: MLSTMState, decay: Tensor, m_w: Tensor, C_w: Tensor, n_w: Tensor):
    """The memory after a stretch: decayed by exp(decay), plus the stretch's writes."""
    C, n, m = state
    m_new = torch.maximum(decay + m, m_w)
    keep, write = torch.exp(decay + m - m_new), torch.exp(m_w - m_new)
    C_new = keep[..., None, None] * C + write[..., None, None] * C_w
    return C_new, keep[..., None] * n + write[..., None] * n_w, m_new


def _scaled(k: Tensor) -> Tensor:
    return k * (1.0 / math.sqrt(k.shape[-1]))


# --------------------------------------------------------------------------- the three forms
def mlstm_step(
    q: Tensor,  # [B, K, E]
    k: Tensor,  # [B, K, E]
    v: Tensor,  # [B, K, E]
    i_pre: Tensor,  # [B, K]
    log_f: Tensor,  # [B, K]
    state: MLSTMState,
) -> tuple[Tensor, MLSTMState]:
    """One step of the recurrent form: (h~ [B, K, E], new state)."""
    C_prev, n_prev, m_prev = state
    k = _scaled(k)
    log_f_plus_m = log_f + m_prev
    m = torch.maximum(log_f_plus_m, i_pre)
    f = torch.exp(log_f_plus_m - m).unsqueeze(-1)  # [B, K, 1]
    i = torch.exp(i_pre - m).unsqueeze(-1)
    C = f.unsqueeze(-1) * C_prev + i.unsqueeze(-1) * (v.unsqueeze(-1) * k.unsqueeze(-2))
    n = f * n_prev + i * k
    num = (C @ q.unsqueeze(-1)).squeeze(-1)  # [B, K, E]
    return _normalise(num, (n * q).sum(dim=-1), m), (C, n, m)


def mlstm_recurrent(q, k, v, i_pre, log_f, state: MLSTMState | None = None):
    """The recurrent form over a sequence: ``mlstm_step`` per step. Returns (h~, state)."""
    state = zero_state(q) if state is None else state
    outputs = []
    steps = zip(*(t.unbind(2) for t in (q, k, v, i_pre, log_f)), strict=True)
    for q_t, k_t, v_t, i_t, f_t in steps:
        h, state = mlstm_step(q_t, k_t, v_t, i_t, f_t, state)
        outputs.append(h)
    return torch.stack(outputs, dim=2), state


def mlstm_parallel(q, k, v, i_pre, log_f, state: MLSTMState | None = None):
    """The parallel form: one ``[T, T]`` decay matrix per head. Returns (h~, state).

    Memory and time grow as T^2; cumulative log decays over long T also cost precision in
    float32, so long sequences belong to the chunkwise form.
    """
    state = zero_state(q) if state is None else state
    k = _scaled(k)
    b = torch.cumsum(log_f, dim=-1)  # [B, K, T]
    h, _ = _outputs_from(q, k, v, i_pre, b, state)
    m_w, C_w, n_w, decay = _memory_of(k, v, i_pre, b)
    return h, _advance(state, decay, m_w, C_w, n_w)


def mlstm_chunkwise(
    q, k, v, i_pre, log_f, state: MLSTMState | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
):
    """The chunkwise form: parallel inside chunks, recurrent across them. Returns (h~, state).

    Time and memory grow linearly in T (``chunk_size`` squared per chunk). A length that is
    not a multiple of ``chunk_size`` is padded with steps that neither write nor forget.
    """
    check_positive_int("chunk_size", chunk_size)
    state = zero_state(q) if state is None else state
    B, K, T, E = q.shape
    L = chunk_size
    pad = -T % L
    if pad:
        q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        i_pre = torch.nn.functional.pad(i_pre, (0, pad), value=_no_write(i_pre))
        log_f = torch.nn.functional.pad(log_f, (0, pad), value=0.0)
    N = (T + pad) // L
    q, k, v = (t.reshape(B, K, N, L, E) for t in (q, _scaled(k), v))
    i_pre, log_f = i_pre.reshape(B, K, N, L), log_f.reshape(B, K, N, L)
    b = torch.cumsum(log_f, dim=-1)  # [B, K, N, L] within each chunk

    m_w, C_w, n_w, decay = _memory_of(k, v, i_pre, b)  # all chunks at once: [B, K, N, ...]
    starts = [state]
    for c in range(N):  # the only sequential part: one cheap update per chunk
        starts.append(
            _advance(starts[-1], decay[:, :, c], m_w[:, :, c], C_w[:, :, c], n_w[:, :, c])
        )
    start = tuple(torch.stack(s, dim=2) for s in zip(*starts[:-1], strict=True))
    h, _ = _outputs_from(q, k, v, i_pre, b, start)  # [B, K, N, L, E]
    return h.reshape(B, K, N * L, E)[:, :, :T], starts[-1]


def mlstm_sequence(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i_pre: Tensor,
    log_f: Tensor,
    state: MLSTMState | None = None,
    *,
    form: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    lengths: Tensor | None = None,  # [B] in [1, T]
) -> tuple[Tensor, MLSTMState]:
    """Run the mLSTM over ``[B, K, T, E]`` inputs in one of its forms; (h~ [B, K, T, E], state).

    ``form="auto"`` takes the recurrent form for one step, the parallel form up to
    ``chunk_size`` steps and the chunkwise form beyond. With ``lengths``, steps past a
    sequence's end neither write nor forget, so its state is the one at its last step; its
    outputs there are zero.
    """
    if form not in FORMS:
        raise unknown_name("form", form, FORMS)
    T = q.shape[2]
    if form == "auto":
        form = "recurrent" if T == 1 else "parallel" if chunk_size >= T else "chunkwise"
    valid = None
    if lengths is not None:
        valid = torch.arange(T, device=q.device)[None, None, :] < lengths[:, None, None]
        i_pre = torch.where(valid, i_pre, _no_write(i_pre))
        log_f = torch.where(valid, log_f, 0.0)
    if form == "recurrent":
        h, state = mlstm_recurrent(q, k, v, i_pre, log_f, state)
    elif form == "parallel":
        h, state = mlstm_parallel(q, k, v, i_pre, log_f, state)
    else:
        h, state = mlstm_chunkwise(q, k, v, i_pre, log_f, state, chunk_size)
    if valid is not None:
        h = torch.where(valid.unsqueeze(-1), h, 0.0)
    return h, state


def _no_write(like: Tensor) -> float:
    """An input-gate pre-activation that writes nothing: exp of it minus any m is 0.

    Finite (not -inf), so differences of two such values stay 0, never NaN.
    """
    return torch.finfo(like.dtype).min


# --------------------------------------------------------------------------- the cell
@dataclass(frozen=True)
class MLSTMCellSpec:
    """One layer of ``lstmkit.mLSTM``: the paper's mLSTM cell with dense projections.

    ``W x + b`` gives, in this order, q, k, v, the output gate o (each H wide) and the input
    and forget gates i~, f~ (one per head); ``h_t = sigmoid(o~) * h~_t``.
    """

    input_size: int
    hidden_size: int
    num_heads: int = 1
    bias: bool = True
    forget_gate: Literal["exp", "sigmoid"] = "sigmoid"

    def __post_init__(self) -> None:
        check_positive_int("input_size", self.input_size)
        check_positive_int("hidden_size", self.hidden_size)
        check_heads(self.hidden_size, self.num_heads)
        check_forget_gate(self.forget_gate)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def recurrent_input_size(self) -> int:
        return self.hidden_size  # nothing recurs into the gates; kept for the protocol

    @property
    def zoneout_states(self) -> tuple[int, ...]:
        return ()

    @property
    def projection_size(self) -> int:
        return 4 * self.hidden_size + 2 * self.num_heads

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (self.projection_size, self.input_size)}
        if self.bias:
            shapes["bias_ih"] = (self.projection_size,)
        return shapes

    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        """C, n, m per sequence."""
        K, E = self.num_heads, self.head_size
        return (K, E, E), (K, E), (K,)

    def state_sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.state_shapes())

    def input_projection(self, p: dict[str, Tensor], x: Tensor) -> Tensor:
        """``[..., D] -> [..., 4H + 2K]``: q, k, v, o~, i~, f~ for all steps in one GEMM."""
        gx = x @ p["weight_ih"].T
        return gx + p["bias_ih"] if self.bias else gx

    def split(self, gx: Tensor) -> tuple[Tensor, ...]:
        """``[..., 4H + 2K]`` -> q, k, v, o~ ``[..., K, E]`` and i~, log f ``[..., K]``."""
        H, K, E = self.hidden_size, self.num_heads, self.head_size
        q, k, v, o, i_pre, f_pre = gx.split([H, H, H, H, K, K], dim=-1)
        heads = [t.unflatten(-1, (K, E)) for t in (q, k, v, o)]
        return (*heads, i_pre, log_forget(f_pre, self.forget_gate))

    def step(
        self,
        p: dict[str, Tensor],
        gx: Tensor,  # [B, 4H + 2K]
        state: tuple[Tensor, ...],  # C [B, K, E, E], n [B, K, E], m [B, K]
        recurrent_mask: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One time step (the recurrent form): (h_t [B, H], new state)."""
        if recurrent_mask is not None:
            raise ValueError("the mLSTM has no recurrent input to drop out; got a recurrent_mask")
        q, k, v, o, i_pre, log_f = self.split(gx)
        h, new_state = mlstm_step(q, k, v, i_pre, log_f, state)  # type: ignore[arg-type]
        return (torch.sigmoid(o) * h).flatten(-2), new_state

    def sequence(
        self,
        p: dict[str, Tensor],
        x: Tensor,  # [T, B, D]
        state: MLSTMState,
        *,
        form: str = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, MLSTMState]:
        """The whole layer over a sequence in any form: (outputs [T, B, H], final state)."""
        q, k, v, o, i_pre, log_f = self.split(self.input_projection(p, x))
        heads = [t.permute(1, 2, 0, 3) for t in (q, k, v)]  # [B, K, T, E]
        gates = [t.permute(1, 2, 0) for t in (i_pre, log_f)]  # [B, K, T]
        h, state = mlstm_sequence(
            *heads, *gates, state, form=form, chunk_size=chunk_size, lengths=lengths
        )
        return (torch.sigmoid(o) * h.permute(2, 0, 1, 3)).flatten(-2), state
