"""Moving digits: Moving MNIST (Srivastava et al. 2015) rebuilt offline from real handwriting.

The handwritten digits are scikit-learn's ``load_digits`` (1797 real 8x8 scans from the UCI
optical digits set, shipped inside the scikit-learn wheel, so nothing is downloaded). As in
Moving MNIST, each sequence has two digits that start at random places, move at a constant
speed in a random direction, bounce off the frame's edges and overlap by taking the maximum.

The default geometry is Moving MNIST at half resolution: a 32x32 frame (64x64 there), digits
in a 14x14 box (28x28) whose ink fills the middle 10x10 (about 20x20 in MNIST), a step of 0.1
of the free range per frame (Srivastava et al.'s ``step_length``), 20 frames: 10 to read and
10 to predict (Shi et al. 2015).

Splits draw from disjoint images: the 1797 scans are shuffled once (fixed) and cut 60 / 20 /
20 into train / validation / test, so the test digits are handwriting no model trained on.
The sequences of each (seed, split) are a separate random stream.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit._checks import check_positive_int, unknown_name

SPLITS = ("train", "validation", "test")
_POOL_FRACTIONS = (0.6, 0.2, 0.2)
_POOL_SEED = 20150610  # fixes which scans belong to which split; not the sequences' seed
INK_FRACTION = 20 / 28  # an MNIST digit's ink box within its 28x28 image


@cache
def _scans() -> Tensor:
    """The 1797 scans ``[N, 8, 8]`` in [0, 1], in scikit-learn's order."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError(
            "moving_digits needs scikit-learn's bundled digits: pip install scikit-learn"
        ) from error
    images = torch.as_tensor(load_digits().images, dtype=torch.float32)
    return images / 16.0  # 17 grey levels, 0..16


def digit_pool(split: str = "train", digit_size: int = 14) -> tuple[Tensor, Tensor]:
    """The split's handwritten digits: images ``[N, digit_size, digit_size]`` in [0, 1] (the
    8x8 scan resized to the ink box, centred) and their labels ``[N]``."""
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    check_positive_int("digit_size", digit_size)
    from sklearn.datasets import load_digits

    scans = _scans()
    labels = torch.as_tensor(load_digits().target)
    order = torch.randperm(len(scans), generator=torch.Generator().manual_seed(_POOL_SEED))
    n, k = len(scans), SPLITS.index(split)
    bounds = [0, round(n * _POOL_FRACTIONS[0]), round(n * sum(_POOL_FRACTIONS[:2])), n]
    index = order[bounds[k] : bounds[k + 1]]
    ink = max(1, round(digit_size * INK_FRACTION))
    images = F.interpolate(scans[index, None], size=(ink, ink), mode="bilinear", antialias=True)
    margin = digit_size - ink
    images = F.pad(images, (margin // 2, margin - margin // 2) * 2).squeeze(1)
    return images.clamp(0.0, 1.0), labels[index]


def moving_digits(
    num_sequences: int,
    *,
    split: str = "train",
    seed: int = 0,
    frames: int = 20,
    frame_size: int = 32,
    digit_size: int = 14,
    num_digits: int = 2,
    step_length: float = 0.1,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``num_sequences`` sequences of bouncing handwritten digits.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``; each uses its own digit images.
        seed: the sequences of one (seed, split) are always the same.
        frames: frames per sequence (Shi et al.: 10 inputs + 10 targets).
        frame_size, digit_size: the square frame's and the digit box's side in pixels.
        num_digits: digits per sequence (Moving MNIST: 2).
        step_length: distance moved per frame, as a fraction of the free range
            ``frame_size - digit_size`` (Srivastava et al.'s 0.1).
        dtype: float32 (intensities in [0, 1]) or uint8 (0..255, a quarter of the memory).

    Returns:
        ``[num_sequences, frames, 1, frame_size, frame_size]``.
    """
    check_positive_int("num_sequences", num_sequences)
    check_positive_int("frames", frames)
    check_positive_int("num_digits", num_digits)
    check_positive_int("frame_size", frame_size)
    check_positive_int("digit_size", digit_size)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if digit_size > frame_size:
        raise ValueError(f"digit_size must be at most frame_size ({frame_size}), got {digit_size}")
    if isinstance(step_length, bool) or not isinstance(step_length, int | float):
        raise TypeError(f"step_length must be a number, got {type(step_length).__name__}")
    if not 0 <= step_length <= 1:
        raise ValueError(f"step_length must be in [0, 1], got {step_length}")
    if dtype not in (torch.float32, torch.uint8):
        raise ValueError(f"dtype must be torch.float32 or torch.uint8, got {dtype}")
    images, _ = digit_pool(split, digit_size)  # checks split

    generator = torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
    N, K, S, d = num_sequences, num_digits, frame_size, digit_size
    which = torch.randint(len(images), (N, K), generator=generator)
    digits = images[which]  # [N, K, d, d]
    # positions in [0, 1] of the free range, a random direction, bouncing (Srivastava et al.)
    position = torch.rand(N, K, 2, generator=generator, dtype=torch.float64)
    theta = torch.rand(N, K, generator=generator, dtype=torch.float64) * 2 * math.pi
    velocity = torch.stack([theta.sin(), theta.cos()], dim=-1) * step_length
    free = S - d

    video = torch.zeros(N, frames, S, S)
    n = torch.arange(N)[:, None, None]
    offsets = torch.arange(d)
    for t in range(frames):
        pixel = (position * free).round().long()  # [N, K, 2] top-left (row, col)
        for k in range(K):
            rows = (pixel[:, k, 0, None] + offsets)[:, :, None]  # [N, d, 1]
            cols = (pixel[:, k, 1, None] + offsets)[:, None, :]  # [N, 1, d]
            canvas = video[:, t]
            canvas[n, rows, cols] = torch.maximum(canvas[n, rows, cols], digits[:, k])
        position = position + velocity
        low, high = position < 0, position > 1
        velocity = torch.where(low | high, -velocity, velocity)
        position = position.clamp(0.0, 1.0)
    video = video.unsqueeze(2)
    if dtype == torch.uint8:
        return (video * 255).round().to(torch.uint8)
    return video
