"""Shared test helpers: one way to compare tensors, one way to build random inputs."""

from __future__ import annotations

import torch
from torch import Tensor

# The project's tolerances: relative 1e-5 in fp32, 1e-10 in fp64.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
ATOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def assert_close(name: str, expected: Tensor, actual: Tensor, rtol=None, atol=None) -> None:
    """Compare ``actual`` with ``expected`` at the dtype's tolerance, naming what differs."""
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    dtype = expected.dtype
    torch.testing.assert_close(
        actual,
        expected,
        rtol=RTOL.get(dtype, 1e-5) if rtol is None else rtol,
        atol=ATOL.get(dtype, 1e-6) if atol is None else atol,
        msg=lambda m: f"{name}: {m}",
    )


def grads_of(outputs: list[Tensor], inputs: list[Tensor], seed: int = 0) -> list[Tensor]:
    """Gradients of ``sum(out * upstream)`` w.r.t. ``inputs`` for random upstream gradients."""
    generator = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(o.shape, generator=generator, dtype=o.dtype) for o in outputs]
    return list(torch.autograd.grad(outputs, inputs, upstream, allow_unused=True))
