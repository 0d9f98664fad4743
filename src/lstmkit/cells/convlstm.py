"""The peephole convolutional LSTM (Shi et al. 2015): one step over frames.

The seed article's "Peephole convolutional LSTM", ``*`` a convolution with ``same`` padding,
``⊙`` the Hadamard product:

    i_t = σ_g(W_i * x_t + U_i * h_{t-1} + V_i ⊙ c_{t-1} + b_i)
    f_t = σ_g(W_f * x_t + U_f * h_{t-1} + V_f ⊙ c_{t-1} + b_f)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ σ_c(W_c * x_t + U_c * h_{t-1} + b_c)
    o_t = σ_g(W_o * x_t + U_o * h_{t-1} + V_o ⊙ c_t + b_o)
    h_t = o_t ⊙ σ_h(c_t)

x_t, h_t and c_t are frames ``[C, *spatial]`` with 1, 2 or 3 spatial dims. The four W (and
the four U) are one convolution with 4C output channels in gate order i, f, g, o (g is the
cell input, ``c`` above), as everywhere in lstmkit. One bias per gate, as Shi et al. and Keras.

The peephole weights V: Shi et al. write them with the full shape of the state; their
published parameter counts equal one weight per channel, shared over the frame, and that is
the default here (``peephole="channel"``, V of shape ``[3C]``), which keeps the cell
translation-equivariant and free of any frame size. ``peephole="spatial"`` gives every pixel
its own weight (``[3C, *frame_size]``) for a fixed frame size; ``"none"`` drops V.

Shapes: B batch, C_in input channels, C hidden channels, S the spatial dims (``*spatial``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from lstmkit._checks import check_positive_int

PEEPHOLES = ("none", "channel", "spatial")
CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def spatial_tuple(argument: str, value: object, dims: int, *, odd: bool = False) -> tuple[int, ...]:
    """An int or a sequence of ``dims`` positive ints, as a tuple of ``dims`` ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * dims
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(
            f"{argument} must be an int or a tuple of {dims} ints, got {type(value).__name__}"
        )
    if len(value) != dims:
        raise ValueError(
            f"{argument} must have {dims} entries for dims={dims}, got {tuple(value)!r}"
        )
    for entry in value:
        if isinstance(entry, bool) or not isinstance(entry, int) or entry < 1:
            raise ValueError(f"{argument} must hold positive ints, got {tuple(value)!r}")
        if odd and entry % 2 == 0:
            raise ValueError(
                f"{argument} must be odd in every dim for padding='same' (an even kernel has "
                f"no centre, so the frame would shift), got {tuple(value)!r}"
            )
    return tuple(value)


def check_peephole(value: object) -> str:
    """``True`` is ``"channel"``, ``False`` is ``"none"``; else one of ``PEEPHOLES``."""
    if value is True:
        return "channel"
    if value is False or value is None:
        return "none"
    if value not in PEEPHOLES:
        raise ValueError(f"peephole must be True, False or one of {list(PEEPHOLES)}, got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvLSTMCellSpec:
    """One layer-direction of a ConvLSTM: sizes, kernels, peepholes, and its step.

    Parameters (short names; modules register them as ``{name}_l{layer}{_reverse}``):
    ``weight_ih`` ``[4C, C_in, *kernel_size]``, ``weight_hh`` ``[4C, C, *state_kernel_size]``,
    ``bias`` ``[4C]``, and the peepholes ``weight_ch`` ``[3C]`` (i, f, o) or
    ``[3C, *frame_size]``.
    """

    dims: int
    in_channels: int
    hidden_channels: int
    kernel_size: int | tuple[int, ...] = 3
    state_kernel_size: int | tuple[int, ...] | None = None  # None: kernel_size
    peephole: Literal["none", "channel", "spatial"] | bool = "channel"
    frame_size: int | tuple[int, ...] | None = None  # needed by peephole="spatial" only
    bias: bool = True

    def __post_init__(self) -> None:
        if self.dims not in CONVOLUTIONS:
            raise ValueError(f"dims must be 1, 2 or 3, got {self.dims!r}")
        check_positive_int("in_channels", self.in_channels)
        check_positive_int("hidden_channels", self.hidden_channels)
        kernel = spatial_tuple("kernel_size", self.kernel_size, self.dims, odd=True)
        state_kernel = kernel
        if self.state_kernel_size is not None:
            state_kernel = spatial_tuple(
                "state_kernel_size", self.state_kernel_size, self.dims, odd=True
            )
        peephole = check_peephole(self.peephole)
        frame = self.frame_size
        if peephole == "spatial":
            if frame is None:
                raise ValueError(
                    "peephole='spatial' gives every pixel its own peephole weight, so it needs "
                    "frame_size (the state's spatial shape), got frame_size=None"
                )
            frame = spatial_tuple("frame_size", frame, self.dims)
        elif frame is not None:
            frame = spatial_tuple("frame_size", frame, self.dims)
        for name, value in [
            ("kernel_size", kernel),
            ("state_kernel_size", state_kernel),
            ("peephole", peephole),
            ("frame_size", frame),
        ]:
            object.__setattr__(self, name, value)

    # ----------------------------------------------------------------- sizes and parameters
    @property
    def output_size(self) -> int:
        """Channels of h_t."""
        return self.hidden_channels

    @property
    def recurrent_input_size(self) -> int:
        return self.hidden_channels

    @property
    def zoneout_states(self) -> tuple[int, ...]:
        return (0, 1)

    def state_sizes(self) -> tuple[int, ...]:
        """Channels of h and c (each state is ``[B, C, *spatial]``)."""
        return (self.hidden_channels, self.hidden_channels)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        C = self.hidden_channels
        shapes: dict[str, tuple[int, ...]] = {
            "weight_ih": (4 * C, self.in_channels, *self.kernel_size),
            "weight_hh": (4 * C, C, *self.state_kernel_size),
        }
        if self.bias:
            shapes["bias"] = (4 * C,)
        if self.peephole == "channel":
            shapes["weight_ch"] = (3 * C,)
        elif self.peephole == "spatial":
            shapes["weight_ch"] = (3 * C, *self.frame_size)
        return shapes

    # ----------------------------------------------------------------- the math
    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """``[N, C_in, *S] -> [N, C_out, *S]`` with ``same`` padding (odd kernels)."""
        padding = [k // 2 for k in weight.shape[2:]]
        return CONVOLUTIONS[self.dims](x, weight, bias, padding=padding)

    def input_projection(self, p: dict[str, Tensor], x: Tensor) -> Tensor:
        """``[..., C_in, *S] -> [..., 4C, *S]``: W * x + b for every step, one convolution.

        The leading dims (``[T, B]`` from the sequence loop) are folded into the convolution's
        batch, so all T*B frames go through one call.
        """
        lead, frame = x.shape[: -self.dims - 1], x.shape[-self.dims - 1 :]
        gx = self._conv(x.reshape(-1, *frame), p["weight_ih"], p.get("bias"))
        return gx.reshape(*lead, *gx.shape[1:])

    def step_inputs(self, p: dict[str, Tensor], x: Tensor) -> Sequence[Tensor]:
        """``[T, B, C_in, *S]`` -> T projections ``[B, 4C, *S]``, in the order that is fastest.

        On CUDA, all T*B frames go through one convolution before the loop. On the CPU each
        step's frames are convolved when the loop reaches them: oneDNN's convolution over all
        T*B frames at once writes a ``[T*B, 4C, *S]`` result far larger than the cache, and
        measured 1.3-1.8x slower over a layer than step-sized calls whose result the step
        reads at once (docs/convlstm.md, "Speed"). The math is the same.
        """
        if x.device.type == "cuda":
            return self.input_projection(p, x).unbind(0)
        return _ProjectedOnDemand(self, p, x.unbind(0))

    def step(
        self,
        p: dict[str, Tensor],
        gx: Tensor,  # [B, 4C, *S] input projection of this step
        state: tuple[Tensor, ...],  # h [B, C, *S], c [B, C, *S]
        recurrent_mask: Tensor | None = None,  # [B, C, *S] or broadcastable, dropout on h
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One time step: returns (h_t, (h_t, c_t))."""
        h_prev, c_prev = state
        recurrent_in = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        pre = self._conv(recurrent_in, p["weight_hh"]).add_(gx)  # in place: a fresh result
        weight_ch = p.get("weight_ch") if self.peephole != "none" else None
        if pre.device.type == "cpu":
            # the gate math below as one vectorised C++ pass where the engine is built
            from lstmkit.backends.cpu import convlstm_gates as fused

            if fused.usable(pre, c_prev, weight_ch):
                h, c = fused.convlstm_gates(pre, c_prev, weight_ch)
                return h, (h, c)
        i, f, g, o = pre.chunk(4, dim=1)
        if self.peephole != "none":
            # [3C] -> three [C, 1, ...] (channel) or [C, *S] (spatial) weights, i f o
            v = p["weight_ch"]
            if self.peephole == "channel":
                v = v.reshape(-1, *([1] * self.dims))
            v_i, v_f, v_o = v.chunk(3, dim=0)
            i = i + v_i * c_prev
            f = f + v_f * c_prev
        c = f.sigmoid() * c_prev + i.sigmoid() * g.tanh()
        if self.peephole != "none":
            o = o + v_o * c
        h = o.sigmoid() * c.tanh()
        return h, (h, c)


class _ProjectedOnDemand(Sequence):
    """Step t's input projection, computed when asked for (the CPU schedule of ``step_inputs``).

    The frames are ``unbind`` views: indexing the whole input per step (``x[t]``) would make
    backward O(T^2).
    """

    def __init__(self, cell: ConvLSTMCellSpec, p: dict[str, Tensor], frames: tuple[Tensor, ...]):
        self.cell, self.p, self.frames = cell, p, frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t):  # type: ignore[override]
        return self.cell.input_projection(self.p, self.frames[t])
