"""Fixtures shared by the backend tests."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from lstmkit.backends import cpu


@pytest.fixture(params=["brgemm", "aten"])
def step_gemm(request):
    """Each float32 GEMM kernel of the engine's loops in turn (oneDNN's micro-kernel, at::mm);
    skips where the engine did not build or this torch or CPU lacks the micro-kernel."""
    if not cpu.available():
        pytest.skip(f"the C++ engine did not build: {cpu.build_error()}")
    with ExitStack() as stack:
        try:
            stack.enter_context(cpu.step_gemm(request.param))
        except RuntimeError as error:
            if "micro-kernel" not in str(error):
                raise
            pytest.skip(str(error))
        yield request.param
