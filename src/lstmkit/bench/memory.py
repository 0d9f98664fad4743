"""Peak memory of one training step, as the operating system sees it.

The number is the rise of the process's resident set during the step: the kernel's
high-water mark (``VmHWM``), reset just before the step through ``/proc/self/clear_refs``,
minus the resident size (``VmRSS``) at that moment. It counts every byte the step touches,
whoever allocates it: torch tensors, the C++ engine's own buffers (which torch's profiler
never sees) and oneDNN's scratch memory alike. Parameters and the input batch exist before
the step and are not counted; gradients, saved activations and outputs are.

It runs in a fresh subprocess (``python -m lstmkit.bench.memory``), one per size, so that
memory the C library kept from earlier work cannot be reused unseen. That process allocates
every block of 64 KiB or more straight from the kernel and returns it on free
(``MALLOC_MMAP_THRESHOLD_``), and empties the engine's buffer cache before each step, so each
step starts from memory the kernel has to hand out again. Linux only; elsewhere the peaks
are reported as unavailable.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

import lstmkit
from lstmkit.bench.contenders import Run, Size, make_inputs, make_module

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{_STATUS} has no {field} line")
    return int(match.group(1))


def _release_free_memory() -> None:
    gc.collect()
    from lstmkit.backends import cpu

    cpu.empty_cache()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_kib(step: Callable[[], None]) -> int:
    """KiB by which the resident set rises above its level at the start of ``step()``."""
    _release_free_memory()
    _CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident size
    baseline = _status_kib("VmHWM")
    step()
    return _status_kib("VmHWM") - baseline


def measure_job(size: Size, variant: str, contender: str, seed: int) -> int:
    """Peak KiB of one training step of ``contender`` on ``variant`` at ``size``."""
    run = Run(contender, make_module(contender, variant, size), make_inputs(size, seed), "train")
    run()  # warm-up: one-time set-up (oneDNN primitives, the engine's first load) is not a step
    run.clear_grads()
    return peak_kib(run)


def measure_in_subprocess(
    size: Size, jobs: list[tuple[str, str]], seed: int, threads: int
) -> dict[tuple[str, str], int | str]:
    """Peak KiB for each ``(variant, contender)`` job at ``size``, or why it failed (a str)."""
    request = {"size": list(size), "jobs": jobs, "seed": seed, "threads": threads}
    source_root = str(Path(lstmkit.__file__).resolve().parents[1])
    env = {**os.environ, **CHILD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "lstmkit.bench.memory"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {tuple(job): f"memory subprocess failed: {reason}" for job in jobs}
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    return {(variant, contender): value for variant, contender, value in answers}


def _child() -> None:
    request = json.loads(sys.stdin.read())
    torch.set_num_threads(request["threads"])
    size = tuple(request["size"])
    from lstmkit.backends import cpu

    cpu.available()  # load the engine (and torch's compiler, which it imports) first ...
    gc.freeze()  # ... and keep those objects out of the collections between jobs (~0.5 s each)
    answers = []
    for variant, contender in request["jobs"]:
        try:
            value: int | str = measure_job(size, variant, contender, request["seed"])
        except (OSError, ValueError, RuntimeError) as error:
            value = f"{type(error).__name__}: {error}"
        answers.append([variant, contender, value])
    print(json.dumps(answers))


if __name__ == "__main__":
    _child()
