"""``lstmkit.LSTM``: every LSTM variant behind torch.nn.LSTM's call and return contract."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from lstmkit._checks import check_probability
from lstmkit.cells import VARIANTS, LSTMCellSpec, LSTMVariant, get_variant
from lstmkit.cells.lstm import gate_blocks
from lstmkit.nn.recurrent import RecurrentBase, layer_input_sizes


class LSTM(RecurrentBase):
    r"""A multi-layer LSTM of any variant, a drop-in for ``torch.nn.LSTM``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size: as torch.nn.LSTM.
        variant: a name from ``lstmkit.variants()`` (``"standard"``, ``"peephole"``,
            ``"cifg"``, ...) or an ``LSTMVariant``. docs/variants.md has the equations.
        sigma_g, sigma_c, sigma_h: gate, cell-input and output activations ("sigmoid",
            "tanh", "identity", "relu", "hard_sigmoid"); None takes the variant's default.
        forget_bias: added to the forget gate's bias at init (Jozefowicz et al. 2015).
        cell_clip: clip c_t to [-cell_clip, cell_clip] after each update.
        layer_norm: layer-normalise each gate's input and recurrent pre-activation and the
            cell before sigma_h (Ba et al. 2016).
        zoneout: probability that a unit keeps its previous value at a step, in training
            (Krueger et al. 2016); a float for c and h, or a pair ``(cell, hidden)``.
        recurrent_dropout: dropout on the recurrent input, one mask per sequence in training
            (Gal & Ghahramani 2016).
        backend: ``"auto"`` (the fastest that runs the module: docs/backends.md),
            ``"reference"``, ``"cpu"`` (the fused C++ engine) or ``"torch"`` (torch's own
            kernels; ``standard`` with the default activations, ``proj_size`` allowed, without
            cell_clip, layer_norm, zoneout or recurrent_dropout). ``LSTMKIT_BACKEND``
            overrides it.

    Inputs: ``input, (h0, c0)``, optional ``lengths``
        - input: ``[T, B, D]`` (``[B, T, D]`` with batch_first), unbatched ``[T, D]``, or a
          PackedSequence.
        - h0: ``[num_layers * num_directions, B, P]``, c0: ``[num_layers * num_directions, B, H]``
          (no B for unbatched); zeros when omitted. P = proj_size or H.
        - lengths: ``[B]`` ints in [1, T] for padded input: sequence b is its first
          ``lengths[b]`` steps.

    Outputs: ``output, (h_n, c_n)``
        - output: ``[T, B, num_directions * P]`` (or packed like the input); zero past each
          sequence's length.
        - h_n, c_n: the states at each sequence's true end. ``fgr`` also returns its gates'
          last activations: ``(h_n, c_n, gates_n)``, gates ``[L * dirs, B, 3H]``.
    """

    torch_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        variant: str | LSTMVariant = "standard",
        *,
        sigma_g: str = "sigmoid",
        sigma_c: str | None = None,
        sigma_h: str | None = None,
        forget_bias: float = 0.0,
        cell_clip: float | None = None,
        layer_norm: bool = False,
        zoneout: float | tuple[float, float] = 0.0,
        recurrent_dropout: float = 0.0,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        spec = get_variant(variant)
        directions = 2 if bidirectional else 1

        def make_cell(size: int) -> LSTMCellSpec:
            return LSTMCellSpec(
                spec, size, hidden_size, proj_size, bias, sigma_g, sigma_c, sigma_h,
                cell_clip, layer_norm,
            )  # fmt: skip

        probe = make_cell(input_size)
        sizes = layer_input_sizes(input_size, probe.output_size, num_layers, directions)
        cells = [[make_cell(size) for _ in range(directions)] for size in sizes]
        super().__init__(
            cells,
            batch_first=batch_first,
            dropout=dropout,
            zoneout=_zoneout_pair(zoneout),
            recurrent_dropout=recurrent_dropout,
            backend=backend,
            device=device,
            dtype=dtype,
        )
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, proj_size
        self.bias = bias
        self.variant = spec
        self.forget_bias = _check_forget_bias(forget_bias, spec, bias)
        self.state_names = ("h0", "c0", "gates0")[: len(probe.state_sizes())]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if not self.forget_bias:
            return
        with torch.no_grad():
            for layer, directions in enumerate(self.cells):
                for direction in range(len(directions)):
                    bias = self.layer_params(layer, direction)["bias_ih"]
                    gate_blocks(bias, self.variant.gates)["f"].add_(self.forget_bias)

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: tuple[Tensor, ...] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, ...]]:
        return super().forward(input, hx, lengths)

    def extra_repr(self) -> str:
        cell = self.cells[0][0]
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if self.proj_size:
            parts.append(f"proj_size={self.proj_size}")
        parts.append(f"variant={self.variant.name!r}")
        if not self.bias:
            parts.append("bias=False")
        defaults = ("sigmoid", self.variant.sigma_c, self.variant.sigma_h)
        for name, value, default in zip(
            ("sigma_g", "sigma_c", "sigma_h"), cell.activations, defaults, strict=True
        ):
            if value != default:
                parts.append(f"{name}={value!r}")
        if self.forget_bias:
            parts.append(f"forget_bias={self.forget_bias}")
        if cell.cell_clip is not None:
            parts.append(f"cell_clip={cell.cell_clip}")
        if cell.layer_norm:
            parts.append("layer_norm=True")
        parts += self._extra_repr_common()
        return ", ".join(parts)

    def _zoneout_argument(self) -> float | tuple[float, float]:
        hidden, cell = self.zoneout
        return hidden if hidden == cell else (cell, hidden)

    def to_dict(self) -> dict:
        """The constructor's arguments, as JSON-able values (``lstmkit.save`` stores them)."""
        cell = self.cells[0][0]
        named = self.variant.name in VARIANTS and VARIANTS[self.variant.name] == self.variant
        return {
            "kind": "LSTM",
            **self._common_dict(),
            "proj_size": self.proj_size,
            "variant": self.variant.name if named else asdict(self.variant),
            "sigma_g": cell.activations[0],
            "sigma_c": cell.activations[1],
            "sigma_h": cell.activations[2],
            "forget_bias": self.forget_bias,
            "cell_clip": cell.cell_clip,
        }


def _zoneout_pair(zoneout: float | tuple[float, float]) -> tuple[float, float]:
    """``(hidden, cell)`` rates, in the order of the LSTM's states."""
    if isinstance(zoneout, tuple | list):
        if len(zoneout) != 2:
            raise ValueError(f"zoneout must be a float or a pair (cell, hidden), got {zoneout!r}")
        cell, hidden = zoneout
    else:
        cell = hidden = zoneout
    return check_probability("zoneout", hidden), check_probability("zoneout", cell)


def _check_forget_bias(forget_bias: float, spec: LSTMVariant, bias: bool) -> float:
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, int | float):
        raise TypeError(f"forget_bias must be a float, got {type(forget_bias).__name__}")
    if forget_bias and "f" not in spec.gates:
        raise ValueError(
            f"forget_bias needs a forget gate with its own bias, but variant {spec.name!r} has "
            f"none; got forget_bias={forget_bias}"
        )
    if forget_bias and not bias:
        raise ValueError(f"forget_bias needs bias=True, got forget_bias={forget_bias}, bias=False")
    return float(forget_bias)
