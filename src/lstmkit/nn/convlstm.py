"""``lstmkit.ConvLSTM``: the peephole convolutional LSTM (Shi et al. 2015) in 1-D, 2-D and 3-D.

The layers, directions, lengths, initial and final states and ``step()`` are
``RecurrentBase``'s, the same code that runs ``lstmkit.LSTM``; the cell
(``lstmkit.cells.convlstm``) makes the products with W and U convolutions. docs/convlstm.md
has the equations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from lstmkit.cells.convlstm import ConvLSTMCellSpec, check_peephole
from lstmkit.nn.inputs import SequenceBatch, _check_lengths, check_tensor_like
from lstmkit.nn.recurrent import RecurrentBase, layer_input_sizes

SPATIAL_NAMES = {1: "L", 2: "H, W", 3: "D, H, W"}


class ConvLSTM(RecurrentBase):
    r"""A multi-layer peephole convolutional LSTM over sequences of 1-D, 2-D or 3-D frames.

    Args:
        in_channels: channels of the input frames.
        hidden_channels: channels of h and c in every layer.
        kernel_size: input-to-state kernel, an odd int or a tuple of ``dims`` odd ints.
        num_layers, bias, batch_first, dropout, bidirectional: as torch.nn.LSTM (a layer
            above the first reads the previous layer's h, both directions' channels stacked).
        dims: 1, 2 or 3 spatial dims (Keras's ConvLSTM1D / 2D / 3D).
        state_kernel_size: state-to-state kernel; None takes ``kernel_size``.
        padding: only ``"same"``: the state keeps the frame's spatial shape.
        peephole: True or ``"channel"`` (V ⊙ c with one weight per channel, the default and
            what Shi et al.'s parameter counts give), ``"spatial"`` (one weight per channel
            and pixel; needs ``frame_size``), False or ``"none"``.
        frame_size: the spatial shape of every frame, for ``peephole="spatial"``.
        forget_bias: added to the forget gate's bias at init (Keras's ``unit_forget_bias``
            is 1.0).
        backend: ``"auto"`` or ``"reference"`` (the convolutional cell runs on the reference
            loop; ``"cpu"`` and ``"torch"`` are ValueErrors). ``LSTMKIT_BACKEND`` overrides it.

    Inputs: ``input, (h0, c0)``, optional ``lengths``; S are the ``dims`` spatial dims.
        - input: ``[T, B, C_in, *S]`` (``[B, T, C_in, *S]`` with batch_first) or unbatched
          ``[T, C_in, *S]``.
        - h0, c0: ``[num_layers * num_directions, B, hidden_channels, *S]`` (no B when
          unbatched); zeros when omitted.
        - lengths: ``[B]`` ints in [1, T]: sequence b is its first ``lengths[b]`` frames.

    Outputs: ``output, (h_n, c_n)``
        - output: ``[T, B, num_directions * hidden_channels, *S]`` (batch first with
          batch_first); zero past each sequence's length.
        - h_n, c_n: ``[num_layers * num_directions, B, hidden_channels, *S]``, the states at
          each sequence's true end.

    >>> convlstm = ConvLSTM(1, 8, kernel_size=3, num_layers=2, batch_first=True)
    >>> frames = torch.randn(4, 10, 1, 16, 16)         # [B, T, C, H, W]
    >>> output, (h_n, c_n) = convlstm(frames)
    >>> output.shape, h_n.shape
    (torch.Size([4, 10, 8, 16, 16]), torch.Size([2, 4, 8, 16, 16]))
    """

    state_names = ("h0", "c0")
    state_layout = "hidden_channels, *spatial"

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int | tuple[int, ...] = 3,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        dims: int = 2,
        state_kernel_size: int | tuple[int, ...] | None = None,
        padding: str = "same",
        peephole: bool | str = True,
        frame_size: int | tuple[int, ...] | None = None,
        forget_bias: float = 0.0,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if padding != "same":
            raise ValueError(
                "padding must be 'same' (the state keeps the frame's spatial shape from step "
                f"to step), got {padding!r}"
            )
        peephole = check_peephole(peephole)
        directions = 2 if bidirectional else 1

        def make_cell(channels: int) -> ConvLSTMCellSpec:
            return ConvLSTMCellSpec(
                dims, channels, hidden_channels, kernel_size, state_kernel_size, peephole,
                frame_size, bias,
            )  # fmt: skip

        probe = make_cell(in_channels)  # checks every size before anything is built
        sizes = layer_input_sizes(in_channels, hidden_channels, num_layers, directions)
        cells = [[make_cell(size) for _ in range(directions)] for size in sizes]
        super().__init__(
            cells,
            batch_first=batch_first,
            dropout=dropout,
            zoneout=(0.0, 0.0),
            recurrent_dropout=0.0,
            backend=backend,
            device=device,
            dtype=dtype,
        )
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.input_size, self.hidden_size = in_channels, hidden_channels  # RecurrentBase's names
        self.dims = dims
        self.kernel_size, self.state_kernel_size = probe.kernel_size, probe.state_kernel_size
        self.peephole, self.frame_size = probe.peephole, probe.frame_size
        self.bias = bias
        self.forget_bias = _check_forget_bias(forget_bias, bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Convolution weights U(±1/sqrt(fan_in)) as torch.nn.Conv; biases zero (the forget
        gate's at ``forget_bias``); peepholes zero, so the cell starts as a plain ConvLSTM
        and learns how much to read c."""
        with torch.no_grad():
            for layer, directions in enumerate(self.cells):
                for direction in range(len(directions)):
                    for name, param in self.layer_params(layer, direction).items():
                        if name.startswith("weight_") and name != "weight_ch":
                            bound = 1.0 / math.sqrt(math.prod(param.shape[1:]))
                            param.uniform_(-bound, bound)
                        else:
                            param.zero_()
                        if name == "bias" and self.forget_bias:
                            param.chunk(4)[1].fill_(self.forget_bias)

    # ------------------------------------------------------------------ input and states
    def _layouts(self) -> tuple[str, str]:
        spatial = SPATIAL_NAMES[self.dims]
        batched = f"[B, T, C, {spatial}]" if self.batch_first else f"[T, B, C, {spatial}]"
        return batched, f"[T, C, {spatial}]"

    def _prepare_input(self, input: Tensor | PackedSequence, lengths) -> SequenceBatch:
        """Check the frames and bring them to ``[T, B, C_in, *S]`` + lengths."""
        if isinstance(input, PackedSequence):
            raise TypeError(
                "input must be a padded Tensor for ConvLSTM (give variable lengths with "
                "lengths=), got a PackedSequence"
            )
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
        batched, unbatched_layout = self._layouts()
        rank = self.dims + 3
        if input.dim() not in (rank, rank - 1):
            raise ValueError(
                f"input must be {rank}-D {batched} or {rank - 1}-D unbatched {unbatched_layout} "
                f"for dims={self.dims}, got {input.dim()}-D of shape {tuple(input.shape)}"
            )
        ref = self._reference
        check_tensor_like("input", input, ref.dtype, ref.device)
        unbatched = input.dim() == rank - 1
        if unbatched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        if x.shape[2] != self.in_channels:
            layout = unbatched_layout if unbatched else batched
            raise ValueError(
                f"input must have in_channels={self.in_channels} channels (C in {layout}), "
                f"got {x.shape[2]} in shape {tuple(input.shape)}"
            )
        if x.shape[0] == 0 or 0 in x.shape[3:]:
            raise ValueError(
                f"input must have at least one time step and a non-empty frame, "
                f"got shape {tuple(input.shape)}"
            )
        frame = tuple(x.shape[3:])
        if self.peephole == "spatial" and frame != self.frame_size:
            raise ValueError(
                f"input frames must have frame_size {self.frame_size} (the shape of the "
                f"peephole='spatial' weights), got {frame}"
            )
        checked = _check_lengths(lengths, x, unbatched)
        return SequenceBatch(x, checked, None, unbatched, self.batch_first)

    def _state_shapes(self, x: Tensor) -> tuple[tuple[int, ...], ...]:
        """h and c are ``[hidden_channels, *S]`` for frames of spatial shape S."""
        shape = (self.hidden_channels, *x.shape[3:])
        return (shape, shape)

    # ------------------------------------------------------------------ running
    def forward(
        self,
        input: Tensor,
        hx: tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        return super().forward(input, hx, lengths)

    def step(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        """Advance one frame: ``[B, C_in, *S]`` (or unbatched ``[C_in, *S]``) ->
        ``[B, hidden_channels, *S]``, ``(h, c)``.

        Feed the returned state back in to continue; equals running the whole sequence.
        """
        if self.bidirectional:
            raise ValueError(
                "step() runs forward in time, but this module has bidirectional=True, "
                "which needs the whole sequence"
            )
        spatial = SPATIAL_NAMES[self.dims]
        if not isinstance(input, Tensor) or input.dim() not in (self.dims + 1, self.dims + 2):
            got = (
                f"{input.dim()}-D of shape {tuple(input.shape)}"
                if isinstance(input, Tensor)
                else type(input).__name__
            )
            raise ValueError(
                f"step() input must be [B, C, {spatial}] or unbatched [C, {spatial}] "
                f"for dims={self.dims}, got {got}"
            )
        time_dim = 1 if (self.batch_first and input.dim() == self.dims + 2) else 0
        output, state = self(input.unsqueeze(time_dim), hx)
        return output.squeeze(time_dim), state

    # ------------------------------------------------------------------ description
    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.hidden_channels}", f"kernel_size={self.kernel_size}"]
        if self.dims != 2:
            parts.append(f"dims={self.dims}")
        if self.state_kernel_size != self.kernel_size:
            parts.append(f"state_kernel_size={self.state_kernel_size}")
        if self.peephole != "channel":
            parts.append(f"peephole={self.peephole!r}")
        if self.frame_size is not None:
            parts.append(f"frame_size={self.frame_size}")
        if not self.bias:
            parts.append("bias=False")
        if self.forget_bias:
            parts.append(f"forget_bias={self.forget_bias}")
        return ", ".join(parts + self._extra_repr_common())

    def to_dict(self) -> dict:
        """The constructor's arguments, as JSON-able values (``lstmkit.save`` stores them)."""
        return {
            "kind": "ConvLSTM",
            "in_channels": self.in_channels,
            "hidden_channels": self.hidden_channels,
            "kernel_size": list(self.kernel_size),
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "dims": self.dims,
            "state_kernel_size": list(self.state_kernel_size),
            "peephole": self.peephole,
            "frame_size": None if self.frame_size is None else list(self.frame_size),
            "forget_bias": self.forget_bias,
            "backend": self.backend,
        }


def _check_forget_bias(forget_bias: float, bias: bool) -> float:
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, int | float):
        raise TypeError(f"forget_bias must be a float, got {type(forget_bias).__name__}")
    if forget_bias and not bias:
        raise ValueError(f"forget_bias needs bias=True, got forget_bias={forget_bias}, bias=False")
    return float(forget_bias)
