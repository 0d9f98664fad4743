"""Digit-string "lines", written and spoken, for CTC recognition; generated offline from a seed.

A line is 1..``max_words`` words of 1..``max_word_length`` digits; its transcript writes the
words separated by one space ("307 5 1289"). Each line also keeps its true segmentation (one
fixed-size array per digit) for the per-digit baseline that is given it.

Written lines (``make_digit_lines``). The glyphs are scikit-learn's ``load_digits``: 1797 real
8x8 scans (grey levels 0..16) shipped inside the scikit-learn wheel, so nothing downloads. They
are the test part of the UCI optical digits set, written by 13 people (the set's other 30
writers are not in the wheel).

A line is 1..``max_words`` words of 1..``max_word_length`` digits. Each glyph is stretched
horizontally by a random factor (width 6..11 columns instead of 8), shifted up or down by up to
one row, and its ink scaled by a random factor; glyphs of a word are 0..2 empty columns apart,
words 5..8 (the model must learn the space from the gap), the line has a 1..3 column margin on
each side, and faint noise covers everything. A line is read left to right: step t's features
are the 8 pixels of column t and their change from column t-1 (16 features).

Held-out writers. The scans carry no writer id; the file lists the digits of each writer's form
together (it starts 0, 1, ..., 9, 0, 1, ... as the forms do), so ``writer_blocks`` cuts the 1797
scans in scikit-learn's order into 13 contiguous blocks of 138 or 139, one writer's worth each.
``split="test"`` draws glyphs only from the last ``TEST_BLOCKS`` = 3 blocks (scans 1383..1796),
``"train"`` only from the first 10 (scans 0..1382). Where block edges fall inside a writer's
form, a writer may straddle the cut: the split approximates held-out writers, it cannot prove it.

Spoken lines (``make_spoken_lines``). Each digit is spoken as an English word by Debian's
espeak-ng (``apt-get install espeak-ng``; it runs offline) in one voice per line: an accent,
a voice variant (timbre), a speed and a pitch. The words are synthesised one by one, trimmed of
silence, scaled by a random gain and joined with 20..80 ms of silence inside a word group and
300..500 ms between groups ("three one four, five nine"); faint noise covers the line. Features
are 32 log-mel energies per 20 ms step (23 ms Hann windows, 80..8000 Hz). Held-out voices: the
test lines use 2 accents and 2 variants that no training line uses (``SPOKEN_VOICES``).

The lines of a (split, seed) pair are one random stream: the same arguments give the same lines.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np

from lstmkit._checks import check_positive_int, unknown_name

SPLITS = ("train", "test")
WRITERS = 13  # people who wrote scikit-learn's 1797 digits (UCI optdigits' test set)
TEST_BLOCKS = 3  # of the 13 writer blocks, the last 3 are held out for testing
FEATURES = 16  # 8 pixels of a column + their change from the previous column
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPOKEN_VOICES = {  # (accents, variants): a test voice shares neither with any training voice
    "train": (
        ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp"),
        ("m1", "m2", "m3", "m4", "f1", "f2", "f3"),
    ),
    "test": (("en-029", "en-gb-x-gbcwmd"), ("m6", "f4")),
}
SPEEDS = (140, 175)  # words per minute
PITCHES = (35, 65)  # espeak-ng's 0..99
SAMPLE_RATE = 22050  # what espeak-ng writes
WINDOW, HOP, MELS = 512, 441, 32  # 23 ms windows every 20 ms, 32 mel bands


@dataclass
class DigitLines:
    """Lines of one split: what a recogniser reads, what it must write, and the true segmentation.

    features: one ``[T, F]`` float32 array per line (written: F = 16; spoken: F = 32).
    texts: the transcripts ("307 5 1289"): digits, words separated by one space.
    segments: per line, one fixed-size array per digit cut at the true boundaries, in reading
        order: written, the unstretched 8x8 scans ``[n_digits, 8, 8]`` in [0, 1]; spoken, the
        word's log-mel steps resampled to 8, ``[n_digits, 8, 32]``. For the per-digit baseline.
    """

    features: list[np.ndarray]
    texts: list[str]
    segments: list[np.ndarray]


@cache
def _scans() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 scans ``[N, 8, 8]`` in [0, 1] and their digits ``[N]``, in scikit-learn's order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def writer_blocks() -> list[np.ndarray]:
    """Scan indices of the 13 contiguous blocks that stand in for the 13 writers."""
    return np.array_split(np.arange(len(_scans()[0])), WRITERS)


def digit_pool(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's scans ``[N, 8, 8]`` in [0, 1] and digits ``[N]`` (train: blocks 0..9)."""
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    blocks = writer_blocks()
    chosen = blocks[:-TEST_BLOCKS] if split == "train" else blocks[-TEST_BLOCKS:]
    rows = np.concatenate(chosen)
    images, digits = _scans()
    return images[rows], digits[rows]


def make_digit_lines(
    split: str, n_lines: int, seed: int = 0, max_words: int = 3, max_word_length: int = 4
) -> DigitLines:
    """``n_lines`` random lines of the split's handwriting (see the module docstring)."""
    images, digits = digit_pool(split)
    rng = _stream(split, n_lines, seed, max_words, max_word_length)
    lines = DigitLines([], [], [])
    for _ in range(n_lines):
        words = _words(rng, len(images), max_words, max_word_length)
        lines.features.append(_render(images, words, rng))
        lines.texts.append(" ".join("".join(str(digits[i]) for i in word) for word in words))
        lines.segments.append(images[np.concatenate(words)])
    return lines


def _stream(
    split: str, n_lines: int, seed: int, max_words: int, max_word_length: int
) -> np.random.Generator:
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    check_positive_int("n_lines", n_lines)
    check_positive_int("max_words", max_words)
    check_positive_int("max_word_length", max_word_length)
    check_positive_int("seed", seed, allow_zero=True)
    # one stream per (split, seed): train and test lines of one seed share no randomness
    return np.random.default_rng([seed, SPLITS.index(split)])


def _words(
    rng: np.random.Generator, choices: int, max_words: int, max_word_length: int
) -> list[np.ndarray]:
    """1..max_words words, each 1..max_word_length draws from ``range(choices)``."""
    return [
        rng.integers(choices, size=rng.integers(1, max_word_length + 1))
        for _ in range(rng.integers(1, max_words + 1))
    ]


def _render(images: np.ndarray, words: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One line's features ``[T, 16]``: column pixels and their deltas."""
    pieces = [np.zeros((8, rng.integers(1, 4)), np.float32)]  # left margin
    for w, word in enumerate(words):
        if w:
            pieces.append(np.zeros((8, rng.integers(5, 9)), np.float32))  # between words
        for k, index in enumerate(word):
            if k:
                pieces.append(np.zeros((8, rng.integers(0, 3)), np.float32))  # within a word
            pieces.append(_glyph(images[index], rng))
    pieces.append(np.zeros((8, rng.integers(1, 4)), np.float32))  # right margin
    columns = np.concatenate(pieces, axis=1).T  # [T, 8]
    columns = np.clip(columns + rng.normal(0, 0.05, columns.shape), 0, 1).astype(np.float32)
    deltas = np.diff(columns, axis=0, prepend=np.zeros((1, 8), np.float32))  # [T, 8]
    return np.concatenate([columns, deltas], axis=1)


def _glyph(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An 8x8 scan stretched to 6..11 columns (linear interpolation), shifted, re-inked."""
    width = int(rng.integers(6, 12))
    source = np.clip((np.arange(width) + 0.5) * 8 / width - 0.5, 0, 7)  # column centres
    stretched = np.stack([np.interp(source, np.arange(8), row) for row in image])  # [8, width]
    shift = int(rng.integers(-1, 2))
    shifted = np.roll(stretched, shift, axis=0)
    if shift > 0:
        shifted[:shift] = 0  # the row rolled in from the bottom is paper, not ink
    elif shift < 0:
        shifted[shift:] = 0
    return (shifted * rng.uniform(0.7, 1.1)).astype(np.float32)


# ----------------------------------------------------------------------------- spoken lines
def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def make_spoken_lines(
    split: str, n_lines: int, seed: int = 0, max_words: int = 3, max_word_length: int = 4
) -> DigitLines:
    """``n_lines`` random spoken lines of the split's voices (see the module docstring).

    Raises FileNotFoundError, saying how to install it, where espeak-ng is missing.
    """
    rng = _stream(split, n_lines, seed, max_words, max_word_length)
    if not espeak_available():
        raise FileNotFoundError(
            "spoken digits need Debian's espeak-ng on the PATH: apt-get install -y espeak-ng"
        )
    accents, variants = SPOKEN_VOICES[split]
    plans = []  # every random choice first, so the words can be synthesised in parallel
    for _ in range(n_lines):
        voice = (
            f"{accents[rng.integers(len(accents))]}+{variants[rng.integers(len(variants))]}",
            int(SPEEDS[rng.integers(len(SPEEDS))]),
            int(PITCHES[rng.integers(len(PITCHES))]),
        )
        plans.append((voice, _words(rng, 10, max_words, max_word_length)))
    needed = sorted({(*voice, int(d)) for voice, words in plans for w in words for d in w})
    with ThreadPoolExecutor(2) as pool:  # espeak-ng runs as its own process
        list(pool.map(lambda key: _spoken_word(*key), needed))
    lines = DigitLines([], [], [])
    for voice, words in plans:
        samples, spans = _speak_line(voice, words, rng)
        features = log_mel(samples)  # [T, 32]
        lines.features.append(features)
        lines.texts.append(" ".join("".join(str(d) for d in word) for word in words))
        lines.segments.append(np.stack([_resample(features, *span) for span in spans]))
    return lines


@cache
def _spoken_word(voice: str, speed: int, pitch: int, digit: int) -> np.ndarray:
    """The digit's word in this voice: float32 samples in [-1, 1], silence trimmed."""
    result = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", WORDS[digit]],
        capture_output=True,
        check=True,
    )
    with wave.open(io.BytesIO(result.stdout)) as file:  # the streamed header's length is bogus
        samples = np.frombuffer(file.readframes(2**31), dtype="<i2").astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > 0.01 * np.abs(samples).max())
    return samples[loud[0] : loud[-1] + 1]


def _speak_line(
    voice: tuple[str, int, int], words: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The line's samples and each digit's ``(start, end)`` sample span."""

    def silence(low: float, high: float) -> np.ndarray:
        return np.zeros(int(rng.uniform(low, high) * SAMPLE_RATE), np.float32)

    pieces, spans = [silence(0.05, 0.2)], []
    at = len(pieces[0])  # samples so far
    for w, word in enumerate(words):
        for k, digit in enumerate(word):
            if w or k:
                pieces.append(silence(0.02, 0.08) if k else silence(0.3, 0.5))
                at += len(pieces[-1])
            spoken = _spoken_word(*voice, int(digit)) * rng.uniform(0.6, 1.0)
            pieces.append(spoken)
            spans.append((at, at + len(spoken)))
            at += len(spoken)
    pieces.append(silence(0.05, 0.2))
    samples = np.concatenate(pieces)
    noise = rng.normal(0, rng.uniform(0.001, 0.005), samples.shape)
    return (samples + noise).astype(np.float32), spans


@cache
def _mel_filters() -> np.ndarray:
    """Triangular mel filters ``[MELS, WINDOW // 2 + 1]`` (HTK's mel scale), 80..8000 Hz."""
    mel = np.linspace(*(2595 * np.log10(1 + np.array([80, 8000]) / 700)), MELS + 2)
    edges = 700 * (10 ** (mel / 2595) - 1)  # [MELS + 2] Hz
    bins = np.fft.rfftfreq(WINDOW, 1 / SAMPLE_RATE)  # [WINDOW // 2 + 1] Hz
    rising = (bins - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0, np.minimum(rising, falling))


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Log mel energies ``[T, MELS]`` float32: step t's window is centred on sample t * HOP."""
    padded = np.pad(samples, WINDOW // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::HOP]  # [T, WINDOW]
    power = np.abs(np.fft.rfft(frames * np.hanning(WINDOW), axis=1)) ** 2  # [T, bins]
    return np.log(power @ _mel_filters().T + 1e-6).astype(np.float32)


def _resample(features: np.ndarray, start: int, end: int, steps: int = 8) -> np.ndarray:
    """The steps whose windows are centred within samples [start, end), stretched to ``steps``."""
    first, last = -(-start // HOP), max(-(-start // HOP), (end - 1) // HOP)
    span = features[first : last + 1]  # [n, MELS]
    where = np.linspace(0, len(span) - 1, steps)
    return np.stack([np.interp(where, np.arange(len(span)), band) for band in span.T], axis=1)
