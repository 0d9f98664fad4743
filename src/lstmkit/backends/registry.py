"""Which backend runs a layer: ``backend="auto" | "reference"`` on every module.

``LSTMKIT_BACKEND`` overrides the module's choice (for a whole test run or a benchmark).
Every backend has ``reference.run_layer``'s signature and returns the same tensors.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lstmkit._checks import unknown_name
from lstmkit.backends import reference

RunLayer = Callable[..., tuple]

BACKENDS: dict[str, RunLayer] = {"reference": reference.run_layer}
CHOICES = ("auto", *BACKENDS)


def check_backend(argument: str, name: object) -> str:
    if not isinstance(name, str) or name not in CHOICES:
        raise unknown_name(argument, name, CHOICES)
    return name


def resolve(requested: str) -> RunLayer:
    """The layer runner for a module's ``backend`` argument (the environment wins)."""
    override = os.environ.get("LSTMKIT_BACKEND")
    name = check_backend("LSTMKIT_BACKEND", override) if override else requested
    if name == "auto":
        name = "reference"
    return BACKENDS[name]
