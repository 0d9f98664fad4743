"""GEMM flop counts of one layer-direction: the numerator of the benchmark's GFLOP/s.

Only matrix products count (the elementwise gate math is O(T·B·H), small beside them), at
2 flops per multiply-add. For an LSTM variant with G gate blocks of its own (4 for
``standard``; 3 for ``cifg``, ``nig``, ``nfg``, ``nog``), R of them reading the recurrent
product (G; G - 1 for ``peephole_full``, whose cell input has no recurrence) and F gates that
feed their previous activations back (3 for ``fgr``, else 0), with no projection::

    forward = 2·T·B·( G·H·D       input projection, one GEMM over all steps
                    + R·H·H       recurrent product U h_{t-1} (U c_{t-1} for peephole_full)
                    + (F·H)² )    fgr's gate recurrence, one more GEMM per step

The GRU (blocks r, z, n) has ``forward = 2·T·B·(3H·D + 3H·H)``. Training counts
``3 × forward``: backward runs two GEMMs of forward's size per product (the gradient of its
input and that of its weight). With ``lengths`` only the real steps are useful work:
T·B becomes sum(lengths).
"""

from __future__ import annotations

from lstmkit.cells import VARIANTS

TRAIN_FACTOR = 3  # forward + backward (two GEMMs per forward GEMM)


def forward_flops(variant: str, steps: int, D: int, H: int) -> int:
    """GEMM flops of one forward pass of a one-layer ``variant`` over ``steps`` = T·B rows."""
    if variant == "gru":
        return 2 * steps * (3 * H * D + 3 * H * H)
    v = VARIANTS[variant]
    gates, recurrent, feedback = len(v.gates), len(v.recurrent_gates), len(v.feedback_gates)
    return 2 * steps * (gates * H * D + recurrent * H * H + (feedback * H) ** 2)


def flops(variant: str, mode: str, steps: int, D: int, H: int) -> int:
    """GEMM flops of one ``mode`` ("train" or "infer") run over ``steps`` = T·B rows."""
    factor = TRAIN_FACTOR if mode == "train" else 1
    return factor * forward_flops(variant, steps, D, H)
