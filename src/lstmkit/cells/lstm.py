"""The gate-flag family of LSTM cells: one step of every variant, written once.

A variant is a set of flags (which gates exist, how the gates see the cell, whether the
forget gate is coupled to the input gate, whether gates feed back into gates) plus default
activations. ``LSTMCellSpec`` turns a variant and a layer's sizes into parameter shapes and
the math of one time step. docs/variants.md gives every variant's equations.

Shapes: B batch, D input size, H hidden size, P output size (``proj_size`` or H),
G the number of gate blocks in the fused matrices (4 for ``standard``: i, f, g, o).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit._checks import check_positive_int, unknown_name
from lstmkit.cells.activations import ACTIVATIONS, check_activation

GATE_ORDER = ("i", "f", "g", "o")  # as torch.nn.LSTM, everywhere in lstmkit
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class LSTMVariant:
    """The flags that make one LSTM variant.

    Attributes:
        name: the variant's name in ``lstmkit.variants()``.
        input_gate / forget_gate / output_gate: a missing gate is the constant 1.
        coupled: the forget gate is ``1 - i`` (CIFG); it then has no weights of its own.
        peephole: ``"none"``; ``"diagonal"`` (i and f read ``p * c_{t-1}``, o reads
            ``p * c_t``); or ``"full"`` (the gates read ``U c_{t-1}`` in place of
            ``U h_{t-1}`` and the cell input has no recurrence).
        gate_recurrence: every gate also reads the previous activations of all gates (FGR).
        sigma_c / sigma_h: default cell-input and output activations.
        paper: where the variant comes from.
    """

    name: str
    input_gate: bool = True
    forget_gate: bool = True
    output_gate: bool = True
    coupled: bool = False
    peephole: Literal["none", "diagonal", "full"] = "none"
    gate_recurrence: bool = False
    sigma_c: str = "tanh"
    sigma_h: str = "tanh"
    paper: str = ""

    def __post_init__(self) -> None:
        if self.peephole not in ("none", "diagonal", "full"):
            raise ValueError(
                f"peephole must be 'none', 'diagonal' or 'full', got {self.peephole!r}"
            )
        if self.coupled and not (self.input_gate and self.forget_gate):
            raise ValueError(
                "coupled=True makes the forget gate 1 - i, so it needs input_gate=True and "
                f"forget_gate=True, got input_gate={self.input_gate}, "
                f"forget_gate={self.forget_gate}"
            )

    @property
    def gates(self) -> tuple[str, ...]:
        """Gate blocks with weights of their own, in i, f, g, o order."""
        present = {
            "i": self.input_gate,
            "f": self.forget_gate and not self.coupled,
            "g": True,
            "o": self.output_gate,
        }
        return tuple(gate for gate in GATE_ORDER if present[gate])

    @property
    def recurrent_gates(self) -> tuple[str, ...]:
        """Gate blocks that receive the recurrent product ``U h_{t-1}`` (or ``U c_{t-1}``)."""
        if self.peephole == "full":
            return tuple(gate for gate in self.gates if gate != "g")
        return self.gates

    @property
    def peephole_gates(self) -> tuple[str, ...]:
        """Gates with a diagonal peephole weight."""
        if self.peephole != "diagonal":
            return ()
        return tuple(gate for gate in self.gates if gate != "g")

    @property
    def feedback_gates(self) -> tuple[str, ...]:
        """Gates whose previous activations feed every such gate (FGR), else ()."""
        if not self.gate_recurrence:
            return ()
        return tuple(gate for gate in self.gates if gate != "g")

    @property
    def has_forget(self) -> bool:
        return self.forget_gate or self.coupled


_GREFF = "Greff et al. 2015, LSTM: A Search Space Odyssey"
_VANILLA = {"peephole": "diagonal"}

VARIANTS: dict[str, LSTMVariant] = {
    v.name: v
    for v in [
        LSTMVariant("standard", paper="Gers, Schmidhuber & Cummins 1999 (torch.nn.LSTM)"),
        LSTMVariant("lstm1997", forget_gate=False, paper="Hochreiter & Schmidhuber 1997"),
        LSTMVariant("peephole", **_VANILLA, paper=f"Gers & Schmidhuber 2000; {_GREFF} (V)"),
        LSTMVariant(
            "peephole_full",
            peephole="full",
            paper="Gers & Schmidhuber 2000, as written in the seed article",
        ),
        LSTMVariant("nig", input_gate=False, **_VANILLA, paper=f"{_GREFF} (NIG)"),
        LSTMVariant("nfg", forget_gate=False, **_VANILLA, paper=f"{_GREFF} (NFG)"),
        LSTMVariant("nog", output_gate=False, **_VANILLA, paper=f"{_GREFF} (NOG)"),
        LSTMVariant("niaf", sigma_c="identity", **_VANILLA, paper=f"{_GREFF} (NIAF)"),
        LSTMVariant("noaf", sigma_h="identity", **_VANILLA, paper=f"{_GREFF} (NOAF)"),
        LSTMVariant("np", paper=f"{_GREFF} (NP): vanilla without peepholes, = standard"),
        LSTMVariant("cifg", coupled=True, **_VANILLA, paper=f"{_GREFF} (CIFG)"),
        LSTMVariant("fgr", gate_recurrence=True, **_VANILLA, paper=f"{_GREFF} (FGR)"),
    ]
}


def get_variant(variant: str | LSTMVariant) -> LSTMVariant:
    """Look up a variant by name (or pass an ``LSTMVariant`` through)."""
    if isinstance(variant, LSTMVariant):
        return variant
    if variant == "gru":
        raise ValueError("variant='gru' has no cell state; use lstmkit.GRU instead of lstmkit.LSTM")
    if not isinstance(variant, str):
        raise TypeError(
            f"variant must be a name (str) or an LSTMVariant, got {type(variant).__name__}"
        )
    if variant not in VARIANTS:
        raise unknown_name("variant", variant, VARIANTS)
    return VARIANTS[variant]


def gate_blocks(tensor: Tensor, gates: tuple[str, ...]) -> dict[str, Tensor]:
    """Split the last dim of ``tensor`` (``[..., len(gates) * H]``) into one block per gate."""
    return dict(zip(gates, tensor.chunk(len(gates), dim=-1), strict=True))


def layer_norm_blocks(x: Tensor, weight: Tensor, bias: Tensor, blocks: int) -> Tensor:
    """Layer norm over each gate block of ``x`` (``[..., blocks * H]``) separately.

    Each gate is normalised on its own (as TensorFlow's LayerNormBasicLSTMCell), which keeps
    the GRU's reset-before form and the subset-of-gates variants well defined.
    """
    shape = x.shape
    hidden = shape[-1] // blocks
    normed = F.layer_norm(x.reshape(*shape[:-1], blocks, hidden), (hidden,), eps=LAYER_NORM_EPS)
    return normed.reshape(shape) * weight + bias


@dataclass(frozen=True)
class LSTMCellSpec:
    """One layer-direction of an LSTM: sizes, variant and options, and its step.

    Parameters are passed as a dict of short names (``weight_ih``, ``weight_hh``, ...);
    modules register them as ``{name}_l{layer}{_reverse}``, torch.nn.LSTM's scheme.
    """

    variant: LSTMVariant
    input_size: int
    hidden_size: int
    proj_size: int = 0
    bias: bool = True
    sigma_g: str = "sigmoid"
    sigma_c: str | None = None  # None: the variant's default
    sigma_h: str | None = None
    cell_clip: float | None = None
    layer_norm: bool = False
    activations: tuple[str, str, str] = field(init=False)

    def __post_init__(self) -> None:
        check_positive_int("input_size", self.input_size)
        check_positive_int("hidden_size", self.hidden_size)
        check_positive_int("proj_size", self.proj_size, allow_zero=True)
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size ({self.hidden_size}), "
                f"got {self.proj_size}"
            )
        if self.cell_clip is not None and (
            isinstance(self.cell_clip, bool) or not isinstance(self.cell_clip, int | float)
        ):
            raise TypeError(
                f"cell_clip must be a positive number or None, got {type(self.cell_clip).__name__}"
            )
        if self.cell_clip is not None and not self.cell_clip > 0:
            raise ValueError(f"cell_clip must be a positive number or None, got {self.cell_clip}")
        sigma_c = self.variant.sigma_c if self.sigma_c is None else self.sigma_c
        sigma_h = self.variant.sigma_h if self.sigma_h is None else self.sigma_h
        activations = (
            check_activation("sigma_g", self.sigma_g),
            check_activation("sigma_c", sigma_c),
            check_activation("sigma_h", sigma_h),
        )
        object.__setattr__(self, "activations", activations)

    # ----------------------------------------------------------------- sizes and parameters
    @property
    def output_size(self) -> int:
        """P: the size of h_t (``proj_size`` when set)."""
        return self.proj_size or self.hidden_size

    @property
    def recurrent_input_size(self) -> int:
        """Size of what the recurrent product reads: c_{t-1} (full peephole) or h_{t-1}."""
        return self.hidden_size if self.variant.peephole == "full" else self.output_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Short parameter names and shapes, in registration order."""
        v, H = self.variant, self.hidden_size
        G, R = len(v.gates), len(v.recurrent_gates)
        shapes: dict[str, tuple[int, ...]] = {
            "weight_ih": (G * H, self.input_size),
            "weight_hh": (R * H, self.recurrent_input_size),
        }
        if self.bias:
            shapes |= {"bias_ih": (G * H,), "bias_hh": (R * H,)}
        if v.peephole_gates:
            shapes["weight_ch"] = (len(v.peephole_gates) * H,)
        if v.feedback_gates:
            F_ = len(v.feedback_gates) * H
            shapes["weight_gg"] = (F_, F_)
        if self.layer_norm:
            shapes |= {
                "ln_ih_weight": (G * H,),
                "ln_ih_bias": (G * H,),
                "ln_hh_weight": (R * H,),
                "ln_hh_bias": (R * H,),
                "ln_c_weight": (H,),
                "ln_c_bias": (H,),
            }
        if self.proj_size:
            shapes["weight_hr"] = (self.proj_size, H)
        return shapes

    def state_sizes(self) -> tuple[int, ...]:
        """Sizes of the state tensors: (P, H) for h and c, plus the gates' activations for FGR."""
        sizes = (self.output_size, self.hidden_size)
        if self.variant.feedback_gates:
            sizes += (len(self.variant.feedback_gates) * self.hidden_size,)
        return sizes

    @property
    def zoneout_states(self) -> tuple[int, ...]:
        """Indices of the states zoneout mixes (h and c)."""
        return (0, 1)

    # ----------------------------------------------------------------- the math
    def input_projection(self, p: dict[str, Tensor], x: Tensor) -> Tensor:
        """``[..., D] -> [..., G*H]``: W x + b for every gate; one GEMM for all time steps."""
        gx = x @ p["weight_ih"].T
        if self.layer_norm:
            gx = layer_norm_blocks(gx, p["ln_ih_weight"], p["ln_ih_bias"], len(self.variant.gates))
        if self.bias:
            gx = gx + p["bias_ih"]
        return gx

    def step(
        self,
        p: dict[str, Tensor],
        gx: Tensor,  # [B, G*H] input projection of this step
        state: tuple[Tensor, ...],  # h [B, P], c [B, H] (, gates [B, F*H] for FGR)
        recurrent_mask: Tensor | None = None,  # [B, recurrent_input_size], dropout on h or c
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One time step: returns (h_t, new state)."""
        v = self.variant
        sigma_g, sigma_c, sigma_h = (ACTIVATIONS[name] for name in self.activations)
        h_prev, c_prev = state[0], state[1]

        recurrent_in = c_prev if v.peephole == "full" else h_prev
        if recurrent_mask is not None:
            recurrent_in = recurrent_in * recurrent_mask
        gh = recurrent_in @ p["weight_hh"].T
        if self.layer_norm:
            gh = layer_norm_blocks(gh, p["ln_hh_weight"], p["ln_hh_bias"], len(v.recurrent_gates))
        if self.bias:
            gh = gh + p["bias_hh"]

        pre = gate_blocks(gx, v.gates)
        for gate, block in gate_blocks(gh, v.recurrent_gates).items():
            pre[gate] = pre[gate] + block
        if v.feedback_gates:
            feedback = state[2] @ p["weight_gg"].T
            for gate, block in gate_blocks(feedback, v.feedback_gates).items():
                pre[gate] = pre[gate] + block
        peep = gate_blocks(p["weight_ch"], v.peephole_gates) if v.peephole_gates else {}
        for gate in ("i", "f"):
            if gate in peep:
                pre[gate] = pre[gate] + peep[gate] * c_prev

        one = 1.0  # a missing gate is the constant 1
        i = sigma_g(pre["i"]) if "i" in pre else one
        if v.coupled:
            f = 1 - i
        else:
            f = sigma_g(pre["f"]) if "f" in pre else one
        g = sigma_c(pre["g"])
        c = f * c_prev + i * g
        if self.cell_clip is not None:
            c = c.clamp(-self.cell_clip, self.cell_clip)
        if "o" in peep:
            pre["o"] = pre["o"] + peep["o"] * c
        o = sigma_g(pre["o"]) if "o" in pre else one
        c_out = layer_norm_blocks(c, p["ln_c_weight"], p["ln_c_bias"], 1) if self.layer_norm else c
        h = o * sigma_h(c_out)
        if self.proj_size:
            h = h @ p["weight_hr"].T

        new_state: tuple[Tensor, ...] = (h, c)
        if v.feedback_gates:
            activations = {"i": i, "f": f, "o": o}
            new_state += (torch.cat([activations[gate] for gate in v.feedback_gates], dim=-1),)
        return h, new_state
