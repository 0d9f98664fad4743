"""Backends: how a whole sequence runs. ``reference`` is the oracle."""

from lstmkit.backends.registry import BACKENDS, resolve

__all__ = ["BACKENDS", "resolve"]
