"""The sequence machinery every recurrent module shares, written once.

Layers, directions, dropout between layers, initial and final states, lengths, packing,
zoneout and recurrent-dropout masks, the backend call, ``step()`` and the conversion to and
from torch's own module live here; a subclass only says which cell runs each layer-direction,
how its states are packed and which torch module (if any) computes the same math.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from lstmkit._checks import check_positive_int, check_probability
from lstmkit.backends import torch_backend
from lstmkit.backends.registry import check_backend, resolve, use_torch
from lstmkit.cells import CellSpec
from lstmkit.io import Saveable
from lstmkit.nn.convert import TORCH_ARGUMENTS, copy_weights, torch_like_kwargs
from lstmkit.nn.inputs import SequenceBatch, check_tensor_like, finish_output, prepare_input

State = tuple[Tensor, ...]


class RecurrentBase(Saveable, nn.Module):
    """Stacked, optionally bidirectional recurrence over any cell (see ``lstmkit.LSTM``)."""

    state_names: tuple[str, ...] = ("h0",)
    state_layout: str = "size"  # how error messages name a state's per-sequence dims
    # the torch module with this one's constructor and parameter names, if any: from_torch,
    # to_torch and the "torch" backend use it where the math is the same
    torch_class: type[nn.RNNBase] | None = None

    def __init__(
        self,
        cells: list[list[CellSpec]],  # [layer][direction]
        *,
        batch_first: bool,
        dropout: float,
        zoneout: tuple[float, ...],  # per state of the cell, in state order
        recurrent_dropout: float,
        backend: str,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        self.cells = cells
        self.num_layers = len(cells)
        self.bidirectional = len(cells[0]) == 2
        self.batch_first = bool(batch_first)
        self.dropout = check_probability("dropout", dropout, allow_one=True)
        self.zoneout = zoneout
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self.backend = check_backend(
            "backend",
            backend,
            [c for layer in cells for c in layer],
            torch_reason=self.torch_incompatibility(),
        )
        factory = {"device": device, "dtype": dtype}
        for layer, directions in enumerate(cells):
            for direction, cell in enumerate(directions):
                for name, shape in cell.param_shapes().items():
                    param = nn.Parameter(torch.empty(shape, **factory))
                    self.register_parameter(self._param_name(name, layer, direction), param)

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _param_name(name: str, layer: int, direction: int) -> str:
        return f"{name}_l{layer}{'_reverse' if direction else ''}"

    def layer_params(self, layer: int, direction: int) -> dict[str, Tensor]:
        """The parameters of one layer-direction, by the cell's short names."""
        cell = self.cells[layer][direction]
        return {
            n: getattr(self, self._param_name(n, layer, direction)) for n in cell.param_shapes()
        }

    def reset_parameters(self) -> None:
        """torch.nn.LSTM's init: U(-1/sqrt(H), 1/sqrt(H)); layer-norm gains 1, shifts 0."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.startswith("ln_"):
                    param.fill_(1.0 if "_weight_" in name else 0.0)
                else:
                    param.uniform_(-bound, bound)

    def flatten_parameters(self) -> None:
        """Kept for drop-in use with code written for torch.nn.LSTM; nothing to flatten."""

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _reference(self) -> Tensor:
        return self.weight_ih_l0

    # ------------------------------------------------------------------ states
    def _pack_state(self, states: State):
        """Final states as the module returns them (tensor for one, tuple for several)."""
        return states[0] if len(states) == 1 else states

    def _state_shapes(self, x: Tensor) -> tuple[tuple[int, ...], ...]:
        """Each state's shape per sequence for the input ``x`` ``[T, B, ...]``: ``(size,)``.

        Every layer has the same state sizes (H and proj only). A subclass whose states
        depend on the input (ConvLSTM's ``[C, *spatial]``) overrides this.
        """
        return tuple((size,) for size in self.cells[0][0].state_sizes())

    def _initial_states(
        self, hx, batch_size: int, unbatched: bool, shapes: tuple[tuple[int, ...], ...]
    ) -> State:
        """Check ``hx`` and return one ``[L*dirs, B, *shape]`` tensor per state."""
        rows = self.num_layers * self.num_directions
        ref = self._reference
        if hx is None:
            return tuple(
                torch.zeros(rows, batch_size, *shape, dtype=ref.dtype, device=ref.device)
                for shape in shapes
            )
        given = self._unpack_hx(hx)
        states = []
        for k, (name, shape) in enumerate(zip(self.state_names, shapes, strict=True)):
            if k >= len(given):  # an optional trailing state (FGR's gates) starts at zero
                states.append(
                    torch.zeros(rows, batch_size, *shape, dtype=ref.dtype, device=ref.device)
                )
                continue
            tensor = given[k]
            if not isinstance(tensor, Tensor):
                raise TypeError(f"{name} must be a Tensor, got {type(tensor).__name__}")
            if unbatched:
                expected, layout = (
                    (rows, *shape),
                    f"unbatched input (num_layers * num_directions, {self.state_layout})",
                )
            else:
                expected, layout = (
                    (rows, batch_size, *shape),
                    f"input (num_layers * num_directions, batch, {self.state_layout})",
                )
            if tuple(tensor.shape) != expected:
                raise ValueError(
                    f"{name} must have shape {expected} for this {layout}, "
                    f"got {tuple(tensor.shape)}"
                )
            check_tensor_like(name, tensor, ref.dtype, ref.device)
            states.append(tensor.unsqueeze(1) if unbatched else tensor)
        return tuple(states)

    def _unpack_hx(self, hx) -> Sequence[Tensor | None]:
        if len(self.state_names) == 1:
            return (hx,)
        forms = " or ".join(
            f"({', '.join(self.state_names[:n])})" for n in range(2, len(self.state_names) + 1)
        )
        if not isinstance(hx, tuple | list):
            raise TypeError(f"hx must be a tuple {forms}, got {type(hx).__name__}")
        if not 2 <= len(hx) <= len(self.state_names):
            raise ValueError(f"hx must be a tuple {forms}, got a tuple of {len(hx)}")
        return tuple(hx)

    # ------------------------------------------------------------------ masks
    def _masks(self, cell: CellSpec, T: int, B: int, like: Tensor):
        """Zoneout masks (per step, per unit) and the recurrent-dropout mask (per sequence)."""
        if not self.training:
            return None, None
        zoneout = None
        if any(self.zoneout):
            sizes = cell.state_sizes()
            zoneout = tuple(
                torch.bernoulli(like.new_full((T, B, sizes[k]), rate)) if rate else None
                for k, rate in zip(cell.zoneout_states, self.zoneout, strict=True)
            )
        recurrent = None
        if self.recurrent_dropout:
            keep = 1.0 - self.recurrent_dropout
            recurrent = torch.bernoulli(like.new_full((B, cell.recurrent_input_size), keep)) / keep
        return zoneout, recurrent

    # ------------------------------------------------------------------ running
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx=None,
        lengths: Tensor | Sequence[int] | None = None,
    ):
        """See the subclass's docstring for shapes."""
        batch = self._prepare_input(input, lengths)
        B = batch.x.shape[1]
        initial = self._initial_states(hx, B, batch.unbatched, self._state_shapes(batch.x))
        if self._runs_on_torch(batch, initial):
            output, states = self._run_torch(batch, initial)
        else:
            output, states = self._run_layers(batch, initial)
        if batch.unbatched:
            states = tuple(s.squeeze(1) for s in states)
        return finish_output(output, batch), self._pack_state(states)

    @property
    def _torch_kind(self) -> torch_backend.Kind:
        return "lstm" if self.torch_class is nn.LSTM else "gru"

    def _runs_on_torch(self, batch: SequenceBatch, initial: State) -> bool:
        return use_torch(
            self.backend,
            self.torch_incompatibility(),
            batch.x,
            kind=self._torch_kind,
            projected=bool(getattr(self, "proj_size", 0)),
            lengths=batch.lengths,
        )

    def _run_torch(self, batch: SequenceBatch, initial: State):
        """The whole stack in one call of torch's kernels (the "torch" backend)."""
        weights = [
            param
            for layer in range(self.num_layers)
            for direction in range(self.num_directions)
            for param in self.layer_params(layer, direction).values()
        ]  # torch's flat order: the cell's parameter order is torch's
        return torch_backend.run_stack(
            self._torch_kind,
            weights,
            batch.x,
            initial,
            lengths=batch.lengths,
            packed=batch.packed,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            bias=self.bias,
            dropout=self.dropout if self.training else 0.0,
        )

    def _run_layers(self, batch: SequenceBatch, initial: State) -> tuple[Tensor, State]:
        """Layer by layer, direction by direction, on a layer backend (reference, cpu)."""
        T, B = batch.x.shape[:2]
        run_layer = resolve(self.backend)
        layer_input = batch.x
        finals: list[list[Tensor]] = [[] for _ in initial]
        for layer, directions in enumerate(self.cells):
            outputs = []
            for direction, cell in enumerate(directions):
                row = layer * self.num_directions + direction
                zoneout, recurrent = self._masks(cell, T, B, layer_input)
                output, state = run_layer(
                    cell,
                    self.layer_params(layer, direction),
                    layer_input,
                    tuple(s[row] for s in initial),
                    lengths=batch.lengths,
                    reverse=direction == 1,
                    zoneout_masks=zoneout,
                    recurrent_mask=recurrent,
                )
                outputs.append(output)
                for final, s in zip(finals, state, strict=True):
                    final.append(s)
            # features follow [T, B]: the vector's last dim, or a frame's channel dim
            layer_input = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)

        return layer_input, tuple(torch.stack(final) for final in finals)

    def _prepare_input(self, input: Tensor | PackedSequence, lengths) -> SequenceBatch:
        """Check what ``forward`` got and bring it to ``[T, B, D]`` + lengths."""
        ref = self._reference
        return prepare_input(
            input,
            lengths,
            batch_first=self.batch_first,
            input_size=self.cells[0][0].param_shapes()["weight_ih"][1],
            dtype=ref.dtype,
            device=ref.device,
        )

    def step(self, input: Tensor, hx=None):
        """Advance one time step, for streaming: ``[B, D]`` (or ``[D]``) -> ``[B, P]``, state.

        Feeds the returned state back in to continue the sequence; equals running the whole
        sequence at once (in eval mode, where no masks are drawn).
        """
        if self.bidirectional:
            raise ValueError(
                "step() runs forward in time, but this module has bidirectional=True, "
                "which needs the whole sequence"
            )
        if not isinstance(input, Tensor) or input.dim() not in (1, 2):
            got = f"{input.dim()}-D" if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"step() input must be [B, D] or unbatched [D], got {got}")
        time_dim = 1 if (self.batch_first and input.dim() == 2) else 0
        output, state = self(input.unsqueeze(time_dim), hx)
        return output.squeeze(time_dim), state

    # ------------------------------------------------------------------ torch's modules
    def torch_incompatibility(self) -> str | None:
        """Why ``torch_class`` does not compute what this module computes, or None if it does."""
        if self.torch_class is None:
            return f"{type(self).__name__} modules"
        return torch_backend.unsupported_reason(self.cells, self.zoneout, self.recurrent_dropout)

    @classmethod
    def from_torch(cls, module: nn.Module, **options) -> Self:
        """A module of this class with ``module``'s configuration and weights.

        ``module`` is a ``torch_class`` (torch.nn.LSTM for LSTM, torch.nn.GRU for GRU);
        ``options`` are further constructor arguments (``backend=``, ...).
        """
        if cls.torch_class is None:
            raise TypeError(f"{cls.__name__} has no torch.nn counterpart to convert from")
        if not isinstance(module, cls.torch_class):
            raise TypeError(
                f"module must be a torch.nn.{cls.torch_class.__name__}, got {type(module).__name__}"
            )
        arguments = {name: getattr(module, name) for name in TORCH_ARGUMENTS}
        converted = cls(**arguments, **torch_like_kwargs(module), **options)
        copy_weights(module, converted)
        return converted

    def to_torch(self) -> nn.RNNBase:
        """A ``torch_class`` module with this module's weights (torch's math only)."""
        if self.torch_class is None:
            raise TypeError(f"{type(self).__name__} has no torch.nn counterpart to convert to")
        problem = self.torch_incompatibility()
        if problem:
            raise ValueError(
                f"to_torch() needs the math of torch.nn.{self.torch_class.__name__}, which does "
                f"not support {problem}"
            )
        arguments = {name: getattr(self, name) for name in TORCH_ARGUMENTS}
        if not arguments["proj_size"]:
            del arguments["proj_size"]  # torch.nn.GRU refuses the argument, even 0
        module = self.torch_class(**arguments, **torch_like_kwargs(self))
        copy_weights(self, module)
        return module

    def _zoneout_argument(self) -> float | tuple[float, ...]:
        """``zoneout`` as the constructor takes it (the subclass knows the states' order)."""
        return self.zoneout[0]

    def _stack_dict(self) -> dict:
        """The stack's constructor arguments, which every recurrent module has (``to_dict``)."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
        }

    def _common_dict(self) -> dict:
        """The stack's arguments and the options the LSTM family and the GRU share."""
        zoneout = self._zoneout_argument()
        return {
            **self._stack_dict(),
            "layer_norm": self.cells[0][0].layer_norm,
            "zoneout": list(zoneout) if isinstance(zoneout, tuple) else zoneout,
            "recurrent_dropout": self.recurrent_dropout,
            "backend": self.backend,
        }

    def _extra_repr_common(self) -> list[str]:
        parts = []
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if self.batch_first:
            parts.append("batch_first=True")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if self.bidirectional:
            parts.append("bidirectional=True")
        if any(self.zoneout):
            parts.append(f"zoneout={self._zoneout_argument()}")
        if self.recurrent_dropout:
            parts.append(f"recurrent_dropout={self.recurrent_dropout}")
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        return parts


def layer_input_sizes(input_size: int, output_size: int, num_layers: int, directions: int):
    """Input size of each layer: the data for layer 0, the stacked outputs after it."""
    check_positive_int("num_layers", num_layers)
    return [input_size] + [output_size * directions] * (num_layers - 1)
