"""The gated recurrent unit (Cho et al. 2014): one step, in both of its published forms.

Gate order r, z, n as torch.nn.GRU. ``reset_after=True`` is torch's (and cuDNN's) form,
``n = tanh(W_n x + b_in + r * (U_n h + b_hn))``; ``reset_after=False`` is the paper's,
``n = tanh(W_n x + b_in + U_n (r * h) + b_hn)``. Both share parameter names and shapes.
Shapes: B batch, D input size, H hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from lstmkit._checks import check_positive_int
from lstmkit.cells.lstm import gate_blocks, layer_norm_blocks

GRU_GATES = ("r", "z", "n")


@dataclass(frozen=True)
class GRUCellSpec:
    """One layer-direction of a GRU: sizes, options and its step."""

    input_size: int
    hidden_size: int
    bias: bool = True
    reset_after: bool = True
    layer_norm: bool = False

    def __post_init__(self) -> None:
        check_positive_int("input_size", self.input_size)
        check_positive_int("hidden_size", self.hidden_size)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def recurrent_input_size(self) -> int:
        return self.hidden_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {
            "weight_ih": (3 * H, self.input_size),
            "weight_hh": (3 * H, H),
        }
        if self.bias:
            shapes |= {"bias_ih": (3 * H,), "bias_hh": (3 * H,)}
        if self.layer_norm:
            shapes |= {name: (3 * H,) for name in ("ln_ih_weight", "ln_ih_bias")}
            shapes |= {name: (3 * H,) for name in ("ln_hh_weight", "ln_hh_bias")}
        return shapes

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    @property
    def zoneout_states(self) -> tuple[int, ...]:
        return (0,)

    def input_projection(self, p: dict[str, Tensor], x: Tensor) -> Tensor:
        """``[..., D] -> [..., 3H]``."""
        gx = x @ p["weight_ih"].T
        if self.layer_norm:
            gx = layer_norm_blocks(gx, p["ln_ih_weight"], p["ln_ih_bias"], 3)
        if self.bias:
            gx = gx + p["bias_ih"]
        return gx

    def _recurrent(self, p: dict[str, Tensor], h: Tensor, rows: slice) -> Tensor:
        """``U h + b_h`` for the gate rows ``rows`` of the fused matrices (normalised per gate)."""
        gh = h @ p["weight_hh"][rows].T
        if self.layer_norm:
            gh = layer_norm_blocks(
                gh, p["ln_hh_weight"][rows], p["ln_hh_bias"][rows], gh.shape[-1] // self.hidden_size
            )
        if self.bias:
            gh = gh + p["bias_hh"][rows]
        return gh

    def step(
        self,
        p: dict[str, Tensor],
        gx: Tensor,  # [B, 3H]
        state: tuple[Tensor, ...],  # (h [B, H],)
        recurrent_mask: Tensor | None = None,  # [B, H]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        H = self.hidden_size
        h_prev = state[0]
        h_in = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        x_r, x_z, x_n = gate_blocks(gx, GRU_GATES).values()
        if self.reset_after:
            h_r, h_z, h_n = gate_blocks(
                self._recurrent(p, h_in, slice(0, 3 * H)), GRU_GATES
            ).values()
            r = (x_r + h_r).sigmoid()
            z = (x_z + h_z).sigmoid()
            n = (x_n + r * h_n).tanh()
        else:
            h_r, h_z = self._recurrent(p, h_in, slice(0, 2 * H)).chunk(2, dim=-1)
            r = (x_r + h_r).sigmoid()
            z = (x_z + h_z).sigmoid()
            n = (x_n + self._recurrent(p, r * h_in, slice(2 * H, 3 * H))).tanh()
        h = (1 - z) * n + z * h_prev
        return h, (h,)
