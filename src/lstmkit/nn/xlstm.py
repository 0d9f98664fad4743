"""xLSTM blocks and stacks (Beck et al. 2024): sLSTM and mLSTM blocks, ``lstmkit.xLSTM``.

- ``SLSTMLayer``: causal conv (+ swish) feeding the input and forget gates, head-wise input
  projections, the sLSTM cell (``cells/slstm.py``) and a head-wise group norm.
- ``MLSTMLayer``: up-projection into two branches; one runs causal conv (+ swish), head-wise
  q/k/v projections, the mLSTM memory (``cells/mlstm.py``), a head-wise group norm and a
  learnable skip from the conv; the other gates it with swish; a down-projection closes.
- ``SLSTMBlock`` = pre-norm residual sLSTM layer + pre-norm residual gated MLP ("post
  up-projection"); ``MLSTMBlock`` = pre-norm residual mLSTM layer ("pre up-projection").
- ``xLSTM``: a stack of blocks in a ratio like ``"xLSTM[7:1]"`` (7 mLSTM blocks to 1 sLSTM
  block), an optional language-model head, and ``step()`` decoding whose state continues a
  sequence exactly.

Inside the blocks tensors are batch first, ``[B, T, D]``; ``xLSTM`` converts from its input
layout. Every layer takes and returns a state, so a sequence split into pieces (or fed one
step at a time) gives the same outputs as the whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmkit._checks import check_positive_int
from lstmkit.backends.registry import check_backend, resolve
from lstmkit.cells.mlstm import DEFAULT_CHUNK_SIZE, FORMS, mlstm_sequence
from lstmkit.cells.slstm import SLSTMCellSpec, check_forget_gate, check_heads, log_forget
from lstmkit.io import Saveable

State = tuple[Tensor, ...]


# --------------------------------------------------------------------------- components
class CausalConv1d(nn.Module):
    """Depthwise causal convolution over time; its state is the last ``kernel_size - 1`` inputs."""

    def __init__(self, features: int, kernel_size: int, **factory) -> None:
        super().__init__()
        self.kernel_size = check_positive_int("conv_kernel_size", kernel_size)
        self.weight = nn.Parameter(torch.empty(features, kernel_size, **factory))  # [F, K]
        self.bias = nn.Parameter(torch.empty(features, **factory))
        bound = 1.0 / math.sqrt(kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """``x [B, T, F]``, state ``[B, K-1, F]`` (None: zeros) -> (y [B, T, F], new state)."""
        B, _, F_ = x.shape
        if state is None:
            state = x.new_zeros(B, self.kernel_size - 1, F_)
        padded = torch.cat([state, x], dim=1)  # [B, K-1+T, F]
        y = F.conv1d(padded.transpose(1, 2), self.weight.unsqueeze(1), self.bias, groups=F_)
        return y.transpose(1, 2), padded[:, padded.shape[1] - (self.kernel_size - 1) :]


class HeadwiseLinear(nn.Module):
    """A block-diagonal linear map: each of ``num_blocks`` blocks maps its slice on its own."""

    def __init__(self, features: int, num_blocks: int, bias: bool, **factory) -> None:
        super().__init__()
        size = features // num_blocks
        self.weight = nn.Parameter(torch.empty(num_blocks, size, size, **factory))  # [N, out, in]
        self.bias = nn.Parameter(torch.zeros(features, **factory)) if bias else None
        nn.init.uniform_(self.weight, -1.0 / math.sqrt(size), 1.0 / math.sqrt(size))

    def forward(self, x: Tensor) -> Tensor:
        blocks = x.unflatten(-1, (self.weight.shape[0], -1))  # [..., N, in]
        y = torch.einsum("...ni,noi->...no", blocks, self.weight).flatten(-2)
        return y if self.bias is None else y + self.bias


def head_norm(x: Tensor, weight: Tensor, num_heads: int) -> Tensor:
    """Layer norm of each head's slice of ``x`` ``[..., H]`` (a group norm over heads)."""
    normed = F.layer_norm(x.unflatten(-1, (num_heads, -1)), (x.shape[-1] // num_heads,))
    return normed.flatten(-2) * weight


# --------------------------------------------------------------------------- layers
class SLSTMLayer(nn.Module):
    """Conv, head-wise gate projections, the sLSTM recurrence, head-wise norm: ``[B,T,D]``.

    State: ``(conv [B, K-1, D], h, c, n, m [B, D])``; ``conv_kernel_size=0`` drops the conv.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int = 4,
        conv_kernel_size: int = 4,
        forget_gate: str = "exp",
        backend: str = "auto",
        **factory,
    ) -> None:
        super().__init__()
        D = check_positive_int("embedding_dim", embedding_dim)
        self.num_heads = check_heads(D, num_heads)
        self.cell = SLSTMCellSpec(4 * D, D, num_heads, True, check_forget_gate(forget_gate), False)  # type: ignore[arg-type]
        self.backend = check_backend("backend", backend, [self.cell])
        check_positive_int("conv_kernel_size", conv_kernel_size, allow_zero=True)
        self.conv = CausalConv1d(D, conv_kernel_size, **factory) if conv_kernel_size else None
        self.gate_proj = nn.ModuleList(
            HeadwiseLinear(D, num_heads, False, **factory) for _ in range(4)
        )  # i, f read the conv's output; z, o read the input
        shapes = self.cell.param_shapes()
        self.weight_hh = nn.Parameter(torch.empty(shapes["weight_hh"], **factory))
        self.bias = nn.Parameter(torch.zeros(shapes["bias"], **factory))
        self.norm_weight = nn.Parameter(torch.ones(D, **factory))
        bound = 1.0 / math.sqrt(self.cell.head_size)
        nn.init.uniform_(self.weight_hh, -bound, bound)
        if forget_gate == "sigmoid":  # start long-lived: sigmoid(3..6) ~ 0.95..0.998
            with torch.no_grad():
                self.bias[D : 2 * D] = torch.linspace(3.0, 6.0, D)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        B, _, D = x.shape
        conv_state, cell_state = (None, None) if state is None else (state[0], state[1:])
        if self.conv is not None:
            x_conv, conv_state = self.conv(x, conv_state)
            x_conv = F.silu(x_conv)
        else:
            x_conv, conv_state = x, x.new_zeros(B, 0, D)
        sources = (x_conv, x_conv, x, x)
        gx = torch.cat([proj(s) for proj, s in zip(self.gate_proj, sources, strict=True)], -1)
        if cell_state is None:
            cell_state = tuple(x.new_zeros(B, D) for _ in range(4))
        params = {"weight_hh": self.weight_hh, "bias": self.bias}
        y, cell_state = resolve(self.backend)(self.cell, params, gx.transpose(0, 1), cell_state)
        return head_norm(y.transpose(0, 1), self.norm_weight, self.num_heads), (
            conv_state,
            *cell_state,
        )


class MLSTMLayer(nn.Module):
    """Up-projection, conv, q/k/v, the mLSTM memory, norm, skip, output gate, down-projection.

    State: ``(conv [B, K-1, I], C [B, heads, E, E], n [B, heads, E], m [B, heads])`` with
    I = the inner (up-projected) size and E = I / num_heads.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int = 4,
        proj_factor: float = 2.0,
        conv_kernel_size: int = 4,
        qkv_block_size: int = 4,
        bias: bool = False,
        forget_gate: str = "sigmoid",
        form: str = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **factory,
    ) -> None:
        super().__init__()
        D = check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("num_heads", num_heads)
        check_positive_int("qkv_block_size", qkv_block_size)
        multiple = math.lcm(num_heads, qkv_block_size)
        inner = math.ceil(proj_factor * D / multiple) * multiple
        self.inner_size, self.num_heads = inner, num_heads
        self.forget_gate = check_forget_gate(forget_gate)
        if form not in FORMS:
            raise ValueError(f"form must be one of {list(FORMS)}, got {form!r}")
        self.form, self.chunk_size = form, check_positive_int("chunk_size", chunk_size)
        self.up = nn.Linear(D, 2 * inner, bias, **factory)
        self.conv = CausalConv1d(inner, conv_kernel_size, **factory)
        blocks = inner // qkv_block_size
        self.q_proj, self.k_proj, self.v_proj = (
            HeadwiseLinear(inner, blocks, bias, **factory) for _ in range(3)
        )
        self.igate = nn.Linear(3 * inner, num_heads, **factory)
        self.fgate = nn.Linear(3 * inner, num_heads, **factory)
        self.norm_weight = nn.Parameter(torch.ones(inner, **factory))
        self.skip = nn.Parameter(torch.ones(inner, **factory))
        self.down = nn.Linear(inner, D, bias, **factory)
        with torch.no_grad():  # gates start from their biases; the memory starts long-lived
            for gate in (self.igate, self.fgate):
                gate.weight.zero_()
            self.igate.bias.zero_()
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, num_heads))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        B, T, _ = x.shape
        K = self.num_heads
        conv_state, memory = (None, None) if state is None else (state[0], state[1:])
        x_mlstm, z = self.up(x).chunk(2, dim=-1)  # [B, T, I] each
        x_conv, conv_state = self.conv(x_mlstm, conv_state)
        x_conv = F.silu(x_conv)
        q, k, v = self.q_proj(x_conv), self.k_proj(x_conv), self.v_proj(x_mlstm)
        qkv = torch.cat([q, k, v], dim=-1)
        i_pre = self.igate(qkv).transpose(1, 2)  # [B, K, T]
        log_f = log_forget(self.fgate(qkv), self.forget_gate).transpose(1, 2)
        heads = [t.view(B, T, K, -1).transpose(1, 2) for t in (q, k, v)]  # [B, K, T, E]
        h, memory = mlstm_sequence(
            *heads, i_pre, log_f, memory, form=self.form, chunk_size=self.chunk_size
        )
        h = head_norm(h.transpose(1, 2).flatten(-2), self.norm_weight, K)  # [B, T, I]
        y = self.down((h + self.skip * x_conv) * F.silu(z))
        return y, (conv_state, *memory)


# --------------------------------------------------------------------------- blocks
class GatedMLP(nn.Module):
    """``down(gelu(a) * b)`` with ``(a, b) = up(x)``: the sLSTM block's post up-projection."""

    def __init__(self, embedding_dim: int, factor: float, **factory) -> None:
        super().__init__()
        hidden = math.ceil(factor * embedding_dim)
        self.up = nn.Linear(embedding_dim, 2 * hidden, bias=False, **factory)
        self.down = nn.Linear(hidden, embedding_dim, bias=False, **factory)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.up(x).chunk(2, dim=-1)
        return self.down(F.gelu(a) * b)


class SLSTMBlock(nn.Module):
    """``x + sLSTM(norm(x))``, then ``+ MLP(norm(.))`` (post up-projection)."""

    def __init__(self, embedding_dim: int, ffn_factor: float = 4 / 3, **layer_options) -> None:
        super().__init__()
        factory = {k: layer_options[k] for k in ("device", "dtype") if k in layer_options}
        self.norm = nn.LayerNorm(embedding_dim, bias=False, **factory)
        self.layer = SLSTMLayer(embedding_dim, **layer_options)
        self.ffn_norm = nn.LayerNorm(embedding_dim, bias=False, **factory)
        self.ffn = GatedMLP(embedding_dim, ffn_factor, **factory)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        y, state = self.layer(self.norm(x), state)
        x = x + y
        return x + self.ffn(self.ffn_norm(x)), state


class MLSTMBlock(nn.Module):
    """``x + mLSTM(norm(x))`` (pre up-projection: the layer projects up and back itself)."""

    def __init__(self, embedding_dim: int, **layer_options) -> None:
        super().__init__()
        factory = {k: layer_options[k] for k in ("device", "dtype") if k in layer_options}
        self.norm = nn.LayerNorm(embedding_dim, bias=False, **factory)
        self.layer = MLSTMLayer(embedding_dim, **layer_options)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        y, state = self.layer(self.norm(x), state)
        return x + y, state


# --------------------------------------------------------------------------- the stack
_RATIO = re.compile(r"^xLSTM\[(\d+):(\d+)\]$")
_KINDS = {"m": "m", "mlstm": "m", "s": "s", "slstm": "s"}


def parse_blocks(blocks: str | Sequence[str], num_blocks: int | None) -> list[str]:
    """Block kinds ``"m"``/``"s"`` from a ratio ``"xLSTM[a:b]"`` or a list of kinds.

    A ratio repeats a group of ``a`` mLSTM blocks followed by ``b`` sLSTM blocks until
    ``num_blocks`` (default ``a + b``), which must be a multiple of ``a + b``.
    """
    if isinstance(blocks, str):
        match = _RATIO.match(blocks.strip())
        if not match:
            raise ValueError(
                f"blocks must be a ratio like 'xLSTM[7:1]' or a list of 'm'/'s', got {blocks!r}"
            )
        a, b = int(match[1]), int(match[2])
        if a + b == 0:
            raise ValueError(f"blocks ratio needs at least one block, got {blocks!r}")
        total = a + b if num_blocks is None else check_positive_int("num_blocks", num_blocks)
        if total % (a + b):
            raise ValueError(
                f"num_blocks must be a multiple of {a + b} for {blocks!r}, got {num_blocks}"
            )
        return (["m"] * a + ["s"] * b) * (total // (a + b))
    if not isinstance(blocks, Sequence) or not blocks:
        raise TypeError(f"blocks must be a ratio string or a non-empty list, got {blocks!r}")
    kinds = []
    for kind in blocks:
        if not isinstance(kind, str) or kind.lower() not in _KINDS:
            raise ValueError(
                f"blocks entries must be 'm' or 's' (or 'mlstm'/'slstm'), got {kind!r}"
            )
        kinds.append(_KINDS[kind.lower()])
    if num_blocks is not None and num_blocks != len(kinds):
        raise ValueError(f"num_blocks must match the list's {len(kinds)} blocks, got {num_blocks}")
    return kinds


class xLSTM(Saveable, nn.Module):
    r"""A residual stack of mLSTM and sLSTM blocks, optionally a language model.

    Args:
        embedding_dim: D, the residual stream's width.
        blocks: ``"xLSTM[a:b]"`` (a mLSTM blocks, then b sLSTM blocks, repeated) or a list
            of ``"m"``/``"s"``.
        num_blocks: total blocks for a ratio (a multiple of a + b; default a + b).
        num_heads: heads of every sLSTM and mLSTM layer.
        vocab_size: with a vocabulary, inputs are token ids and outputs logits (embedding,
            final norm, linear head); without, inputs and outputs are ``D``-wide features.
        batch_first: inputs and outputs ``[B, T, ...]`` instead of ``[T, B, ...]``.
        conv_kernel_size: the causal convolutions' width (0: none in sLSTM blocks).
        slstm_forget_gate / mlstm_forget_gate: ``"exp"`` or ``"sigmoid"``.
        mlstm_proj_factor, mlstm_form, chunk_size: the mLSTM layers' up-projection factor
            and form (see lstmkit.mLSTM).
        ffn_factor: the sLSTM blocks' gated-MLP width factor.
        backend: runs the sLSTM recurrence (``"auto"``, ``"cpu"`` or ``"reference"``).

    Inputs: ``input, state=None``: tokens ``[T, B]`` (long) or features ``[T, B, D]``
    (batch first if set); ``state`` a list with one tuple per block, as returned.
    Outputs: ``output, state``: logits ``[T, B, vocab_size]`` or features ``[T, B, D]``,
    and the state after the last step, which continues the sequence exactly.
    """

    def __init__(
        self,
        embedding_dim: int,
        blocks: str | Sequence[str] = "xLSTM[1:1]",
        num_blocks: int | None = None,
        *,
        num_heads: int = 4,
        vocab_size: int | None = None,
        batch_first: bool = False,
        conv_kernel_size: int = 4,
        slstm_forget_gate: str = "exp",
        mlstm_forget_gate: str = "sigmoid",
        mlstm_proj_factor: float = 2.0,
        mlstm_form: str = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        ffn_factor: float = 4 / 3,
        tie_weights: bool = False,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.kinds = parse_blocks(blocks, num_blocks)
        self._options = {  # what to_dict saves: every argument but the blocks, device, dtype
            "num_heads": num_heads,
            "vocab_size": vocab_size,
            "batch_first": bool(batch_first),
            "conv_kernel_size": conv_kernel_size,
            "slstm_forget_gate": slstm_forget_gate,
            "mlstm_forget_gate": mlstm_forget_gate,
            "mlstm_proj_factor": mlstm_proj_factor,
            "mlstm_form": mlstm_form,
            "chunk_size": chunk_size,
            "ffn_factor": ffn_factor,
            "tie_weights": bool(tie_weights),
            "backend": backend,
        }
        self.batch_first = bool(batch_first)
        self.vocab_size = vocab_size
        layers: list[nn.Module] = []
        for kind in self.kinds:
            if kind == "s":
                layers.append(
                    SLSTMBlock(
                        embedding_dim,
                        ffn_factor,
                        num_heads=num_heads,
                        conv_kernel_size=conv_kernel_size,
                        forget_gate=slstm_forget_gate,
                        backend=backend,
                        **factory,
                    )
                )
            else:
                layers.append(
                    MLSTMBlock(
                        embedding_dim,
                        num_heads=num_heads,
                        proj_factor=mlstm_proj_factor,
                        conv_kernel_size=max(conv_kernel_size, 1),
                        forget_gate=mlstm_forget_gate,
                        form=mlstm_form,
                        chunk_size=chunk_size,
                        **factory,
                    )
                )
        self.blocks = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(embedding_dim, bias=False, **factory)
        self.embedding = self.head = None
        if vocab_size is not None:
            check_positive_int("vocab_size", vocab_size)
            self.embedding = nn.Embedding(vocab_size, embedding_dim, **factory)
            self.head = nn.Linear(embedding_dim, vocab_size, bias=False, **factory)
            if tie_weights:
                self.head.weight = self.embedding.weight

    def forward(
        self, input: Tensor, state: list[State] | None = None
    ) -> tuple[Tensor, list[State]]:
        x = self._embed(input)
        if not self.batch_first:
            x = x.transpose(0, 1)  # blocks run [B, T, D]
        if state is not None and (
            not isinstance(state, list | tuple) or len(state) != len(self.blocks)
        ):
            raise ValueError(
                f"state must be a list with one entry per block ({len(self.blocks)}), "
                f"got {type(state).__name__}"
                + (f" of {len(state)}" if isinstance(state, list | tuple) else "")
            )
        new_state = []
        for k, block in enumerate(self.blocks):
            x, block_state = block(x, None if state is None else state[k])
            new_state.append(block_state)
        y = self.norm(x)
        if self.head is not None:
            y = self.head(y)
        return (y if self.batch_first else y.transpose(0, 1)), new_state

    def step(self, input: Tensor, state: list[State] | None = None) -> tuple[Tensor, list[State]]:
        """One step: tokens ``[B]`` or features ``[B, D]`` -> ``[B, vocab | D]``, new state."""
        time_dim = 1 if self.batch_first else 0
        output, state = self(input.unsqueeze(time_dim), state)
        return output.squeeze(time_dim), state

    def _embed(self, input: Tensor) -> Tensor:
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
        if self.embedding is not None:
            if input.dim() != 2 or input.dtype not in (torch.int32, torch.int64):
                raise ValueError(
                    "input must be token ids, an integer tensor [T, B] (or [B, T] with "
                    f"batch_first), got {input.dtype} of shape {tuple(input.shape)}"
                )
            return self.embedding(input)
        if input.dim() != 3 or input.shape[-1] != self.embedding_dim:
            raise ValueError(
                f"input must be features [T, B, {self.embedding_dim}] (or [B, T, ...] with "
                f"batch_first), got shape {tuple(input.shape)}"
            )
        return input

    def to_dict(self) -> dict:
        """The constructor's arguments, as JSON-able values (blocks as a list of kinds)."""
        blocks = list(self.kinds)
        return {
            "kind": "xLSTM",
            "embedding_dim": self.embedding_dim,
            "blocks": blocks,
            **self._options,
        }

    def extra_repr(self) -> str:
        pattern = "".join(self.kinds)
        parts = [f"{self.embedding_dim}", f"blocks={pattern!r}"]
        if self.vocab_size is not None:
            parts.append(f"vocab_size={self.vocab_size}")
        if self.batch_first:
            parts.append("batch_first=True")
        return ", ".join(parts)
