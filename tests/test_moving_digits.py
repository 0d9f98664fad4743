"""lstmkit.data.moving_digits: shapes and ranges, seeded and split streams, disjoint digit
images per split, digits that stay whole inside the frame and move, and bad arguments."""

from __future__ import annotations

import re

import pytest
import torch

from lstmkit.data.moving_digits import SPLITS, digit_pool, moving_digits


def says(*parts: str) -> str:
    return ".*".join(re.escape(part) for part in parts)


def test_shape_range_and_dtype():
    video = moving_digits(6)
    assert video.shape == (6, 20, 1, 32, 32) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1 and video.max() > 0.9
    small = moving_digits(3, frames=4, frame_size=20, digit_size=8, dtype=torch.uint8)
    assert small.shape == (3, 4, 1, 20, 20) and small.dtype == torch.uint8


def test_uint8_is_the_float_video_quantised():
    video = moving_digits(4, seed=3)
    quantised = moving_digits(4, seed=3, dtype=torch.uint8)
    assert torch.equal(quantised, (video * 255).round().to(torch.uint8))


def test_seeded_and_each_split_its_own_stream():
    assert torch.equal(moving_digits(5, seed=1), moving_digits(5, seed=1))
    assert not torch.equal(moving_digits(5, seed=1), moving_digits(5, seed=2))
    assert not torch.equal(moving_digits(5, split="train"), moving_digits(5, split="test"))
    assert not torch.equal(moving_digits(5, split="validation"), moving_digits(5, split="test"))


def test_splits_use_disjoint_handwriting():
    pools = {split: digit_pool(split)[0].flatten(1) for split in SPLITS}
    sizes = {split: len(images) for split, images in pools.items()}
    assert sizes == {"train": 1078, "validation": 360, "test": 359}  # 60 / 20 / 20 of 1797
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                same = torch.cdist(pools[a], pools[b]).eq(0).any(dim=1)
                # the scans are distinct images; a few exact duplicates exist in UCI's set
                assert same.float().mean() < 0.01, (a, b)
    labels = digit_pool("test")[1]
    assert set(labels.tolist()) == set(range(10))


def test_digits_move_and_bounce_inside_the_frame():
    """With one digit and no overlap, every frame holds the whole digit: the ink is constant,
    and the ink's centre moves by at most the step length per frame."""
    video = moving_digits(16, frames=30, num_digits=1, step_length=0.1)[:, :, 0]
    ink = video.sum(dim=(2, 3))
    assert torch.allclose(ink, ink[:, :1].expand_as(ink), rtol=1e-5)
    grid = torch.arange(32.0)
    rows = (video.sum(3) * grid).sum(2) / ink
    cols = (video.sum(2) * grid).sum(2) / ink
    step = torch.hypot(rows.diff(dim=1), cols.diff(dim=1))
    free = 32 - 14
    assert step.max() <= 0.1 * free * 1.5 + 1  # rounding to whole pixels
    assert step.mean() > 0.5  # they do move
    # bounces: some digit reverses its direction in 30 frames
    assert (cols.diff(dim=1).sign().diff(dim=1).abs() == 2).any()


def test_two_digits_take_the_maximum_where_they_overlap():
    two = moving_digits(32, seed=5)
    assert two.max() <= 1
    assert (
        two.sum(dim=(2, 3, 4)) > moving_digits(32, seed=5, num_digits=1).sum(dim=(2, 3, 4))
    ).all()


@pytest.mark.parametrize(
    ("options", "error", "expected"),
    [
        ({"split": "tset"}, ValueError, ("split must be one of", "'tset'", "mean 'test'")),
        ({"digit_size": 40}, ValueError, ("digit_size must be at most frame_size (32)", "40")),
        ({"frames": 0}, ValueError, ("frames must be >= 1", "0")),
        ({"step_length": 2.0}, ValueError, ("step_length must be in [0, 1]", "2.0")),
        ({"dtype": torch.float16}, ValueError, ("dtype must be torch.float32 or torch.uint8",)),
        ({"seed": 1.5}, TypeError, ("seed must be an int", "float")),
    ],
)
def test_bad_arguments(options, error, expected):
    with pytest.raises(error, match=says(*expected)):
        moving_digits(2, **options)
