"""lstmkit.Recognizer (BiLSTM + CTC), the digit lines and ``lstmkit recognize``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

import lstmkit
from helpers import assert_close
from lstmkit.cli.recognize import recognize
from lstmkit.data import digit_lines
from lstmkit.data.digit_lines import (
    FEATURES,
    MELS,
    SPOKEN_VOICES,
    digit_pool,
    make_digit_lines,
    make_spoken_lines,
    writer_blocks,
)
from lstmkit.tasks.recognition import Recognizer

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="spoken digits need espeak-ng: apt-get install -y espeak-ng",
)
TINY = {"hidden_size": 8, "num_layers": 2, "epochs": 2, "batch_size": 16}


@pytest.fixture(scope="module")
def lines():
    return make_digit_lines("train", 48, seed=3, max_words=2, max_word_length=3)


@pytest.fixture(scope="module")
def fitted(lines) -> Recognizer:
    return Recognizer(seed=0, **TINY).fit(lines.features, lines.texts)


# ----------------------------------------------------------------------------- digit lines
def test_digit_lines_are_reproducible_and_seeded() -> None:
    a, b = make_digit_lines("train", 5, seed=1), make_digit_lines("train", 5, seed=1)
    assert a.texts == b.texts
    for x, y in zip(a.features, b.features, strict=True):
        np.testing.assert_array_equal(x, y)
    assert make_digit_lines("train", 5, seed=2).texts != a.texts
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        make_digit_lines("train", 2, seed=-1)
    with pytest.raises(ValueError, match="n_lines"):
        make_digit_lines("train", 0)


def test_digit_lines_transcripts_match_their_glyphs() -> None:
    lines = make_digit_lines("test", 20, seed=0)
    scans, digits = digit_pool("test")
    flat = scans.reshape(len(scans), -1)
    for features, text, glyphs in zip(lines.features, lines.texts, lines.segments, strict=True):
        assert features.ndim == 2 and features.shape[1] == FEATURES
        assert set(text) <= set("0123456789 ") and text == " ".join(text.split())
        assert len(glyphs) == len(text.replace(" ", ""))
        # each glyph is one of the test writers' scans, of the digit the transcript names
        for glyph, character in zip(glyphs, text.replace(" ", ""), strict=True):
            matches = np.flatnonzero((flat == glyph.reshape(-1)).all(1))
            assert len(matches) and str(digits[matches[0]]) == character
        # every glyph is at least 6 columns, the gaps and margins at least 1 + 1
        assert len(features) >= 6 * len(glyphs) + 2


def test_train_and_test_writers_are_disjoint_blocks() -> None:
    blocks = writer_blocks()
    assert len(blocks) == 13 and sum(len(b) for b in blocks) == 1797
    train, test = digit_pool("train")[0], digit_pool("test")[0]
    assert len(train) + len(test) == 1797 and len(test) == sum(len(b) for b in blocks[-3:])
    train_rows = {row.tobytes() for row in train.reshape(len(train), -1)}
    # no test scan is a training scan (pixel for pixel, beyond chance duplicates)
    shared = sum(row.tobytes() in train_rows for row in test.reshape(len(test), -1))
    assert shared <= 2
    with pytest.raises(ValueError, match="split"):
        digit_pool("validation")


@needs_espeak
def test_spoken_lines_are_reproducible_and_segmented() -> None:
    a, b = make_spoken_lines("train", 3, seed=4), make_spoken_lines("train", 3, seed=4)
    assert a.texts == b.texts
    for x, y, text, segments in zip(a.features, b.features, a.texts, a.segments, strict=True):
        np.testing.assert_array_equal(x, y)
        assert x.ndim == 2 and x.shape[1] == MELS and np.isfinite(x).all()
        assert segments.shape == (len(text.replace(" ", "")), 8, MELS)
    # a spoken digit lasts at least ~0.15 s: 7 steps of 20 ms, beside the silences
    assert all(
        len(x) >= 7 * len(t.replace(" ", "")) for x, t in zip(a.features, a.texts, strict=True)
    )


def test_spoken_test_voices_share_nothing_with_training_voices() -> None:
    (train_accents, train_variants), (test_accents, test_variants) = (
        SPOKEN_VOICES["train"],
        SPOKEN_VOICES["test"],
    )
    assert not set(train_accents) & set(test_accents)
    assert not set(train_variants) & set(test_variants)


def test_spoken_lines_say_what_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(digit_lines.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install -y espeak-ng"):
        make_spoken_lines("train", 2)


def test_log_mel_sees_a_tone_in_the_right_band() -> None:
    """A 1 kHz tone: its energy peaks in the mel band whose centre is nearest 1 kHz."""
    rate = digit_lines.SAMPLE_RATE
    tone = np.sin(2 * np.pi * 1000 * np.arange(rate // 2) / rate).astype(np.float32)
    features = digit_lines.log_mel(tone)  # [T, MELS]
    assert features.shape == (1 + len(tone) // digit_lines.HOP, MELS)
    mel = np.linspace(*(2595 * np.log10(1 + np.array([80, 8000]) / 700)), MELS + 2)
    centres = 700 * (10 ** (mel[1:-1] / 2595) - 1)
    assert features[10].argmax() == np.abs(centres - 1000).argmin()


# ----------------------------------------------------------------------------- the estimator
def test_predict_and_score_give_strings_and_rates(fitted, lines) -> None:
    decoded = fitted.predict(lines.features[:5])
    assert len(decoded) == 5 and all(set(d) <= set(fitted.alphabet_) for d in decoded)
    assert fitted.alphabet_ == "".join(sorted(set("".join(lines.texts))))
    equal = [f[:8] for f in lines.features[:4]]  # one array [n, T, F] works as a list does
    assert fitted.predict(np.stack(equal)) == fitted.predict(equal)
    rates = fitted.score(lines.features, lines.texts, beam_width=3)
    assert set(rates) == {"cer", "wer"} and all(v >= 0 for v in rates.values())
    log_probs = fitted.log_probs(lines.features[:3])
    for array, features in zip(log_probs, lines.features[:3], strict=True):
        assert array.shape == (len(features), 1 + len(fitted.alphabet_))
        assert_close(
            "probabilities sum to 1", torch.ones(len(array)), torch.tensor(array).exp().sum(-1)
        )


def test_a_character_language_model_steers_beam_search(fitted, lines) -> None:
    """An LM that forbids the digit best path reads most often removes it from the output."""
    plain = "".join(fitted.predict(lines.features[:10], beam_width=4))
    assert plain, "the tiny model decodes nothing: pick a case that shows the LM's effect"
    common = max(set(plain) - {" "}, key=plain.count) if set(plain) - {" "} else " "
    seen = []

    def lm(prefix: str, char: str) -> float:
        seen.append((prefix, char))
        return -30.0 if char == common else 0.0

    steered = fitted.predict(lines.features[:10], beam_width=4, lm=lm, alpha=1.0)
    assert common not in "".join(steered)
    assert all(isinstance(p, str) and char in fitted.alphabet_ for p, char in seen)
    same = fitted.predict(lines.features[:10], beam_width=4, lm=lm, alpha=0.0)
    assert same == fitted.predict(lines.features[:10], beam_width=4)


def test_padding_does_not_change_a_sequence_s_output(fitted, lines) -> None:
    """Batched with longer lines or alone, a line gets the same posteriors."""
    alone = fitted.log_probs([lines.features[0]])[0]
    batched = fitted.log_probs(lines.features[:8])[0]
    assert_close("log_probs", torch.tensor(alone), torch.tensor(batched), rtol=1e-5, atol=1e-5)


def test_training_reduces_the_ctc_loss(fitted) -> None:
    history = fitted.history_
    assert history[-1]["loss"] < history[0]["loss"]


def test_save_and_load_give_the_same_model(fitted, lines, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "recognizer.safetensors")
    loaded = Recognizer.load(path)
    assert type(lstmkit.load(path)) is Recognizer  # lstmkit.load knows an estimator's file
    assert loaded.alphabet_ == fitted.alphabet_ and loaded.get_params() == fitted.get_params()
    for a, b in zip(
        fitted.log_probs(lines.features[:4]), loaded.log_probs(lines.features[:4]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert loaded.predict(lines.features[:4], 4) == fitted.predict(lines.features[:4], 4)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, then renamed


def test_load_refuses_other_files(tmp_path: Path) -> None:
    import lstmkit

    path = lstmkit.LSTM(2, 3).save(tmp_path / "lstm.safetensors")
    with pytest.raises(ValueError, match="not a Recognizer"):
        Recognizer.load(path)


@pytest.mark.parametrize("variant", ["peephole", "cifg"])
def test_any_variant_trains(variant: str, lines) -> None:
    model = Recognizer(variant=variant, seed=0, **{**TINY, "epochs": 1}).fit(
        lines.features[:16], lines.texts[:16]
    )
    assert f"variant='{variant}'" in repr(model.net_.rnn)
    assert len(model.predict(lines.features[:2])) == 2


def test_the_recognizer_learns_to_read() -> None:
    """Frames that show each symbol for a few steps (noisy one-hot): near-perfect after training."""
    from lstmkit.data.synthetic import ctc_symbols

    generator = torch.Generator().manual_seed(0)
    frames, lengths, labels, label_lengths = ctc_symbols(400, 40, 3, 5, 0.2, generator)
    x = [frames[: int(n), b].numpy() for b, n in enumerate(lengths)]
    y = [
        "".join("abc"[k - 1] for k in labels[b, : int(n)].tolist())
        for b, n in enumerate(label_lengths)
    ]
    model = Recognizer(hidden_size=16, num_layers=1, epochs=12, learning_rate=1e-2, seed=0)
    model.fit(x[:300], y[:300])
    assert model.score(x[300:], y[300:])["cer"] < 0.1


# ----------------------------------------------------------------------------- bad input
def bad_fit(X, y, **params):
    return Recognizer(seed=0, **{**TINY, "epochs": 1, **params}).fit(X, y)


def test_bad_input_gets_clear_errors(fitted) -> None:
    x = [np.zeros((10, 4), np.float32), np.zeros((12, 4), np.float32)]
    with pytest.raises(
        ValueError,
        match=r"y\[1\] = '1x' holds characters outside the alphabet '0123456789 ': \['x'\]",
    ):
        bad_fit(x, ["12", "1x"], alphabet="0123456789 ")
    with pytest.raises(ValueError, match=r"y\[0\] is an empty transcript"):
        bad_fit(x, ["", "1"])
    with pytest.raises(ValueError, match=r"X\[1\] is empty"):
        bad_fit([x[0], np.zeros((0, 4))], ["1", "2"])
    with pytest.raises(ValueError, match="X must hold at least one sequence"):
        bad_fit([], [])
    # "1122" needs 4 steps + a blank between each repeated pair: 6
    with pytest.raises(
        ValueError, match=r"y\[0\] has 4 symbols and needs at least 6 steps of X\[0\].*has 5"
    ):
        bad_fit([np.zeros((5, 4)), x[1]], ["1122", "1"])
    bad_fit([np.zeros((6, 4)), x[1]], ["1122", "1"])  # exactly enough: accepted
    with pytest.raises(ValueError, match="one transcript per sequence: 2, got 1"):
        bad_fit(x, ["1"])
    with pytest.raises(TypeError, match="y must be a list of transcripts"):
        bad_fit(x, "12")
    with pytest.raises(ValueError, match="same features"):
        bad_fit([x[0], np.zeros((10, 5))], ["1", "2"])
    with pytest.raises(ValueError, match=r"X\[0\] holds NaN"):
        bad_fit([np.full((10, 4), np.nan), x[1]], ["1", "2"])
    with pytest.raises(ValueError, match="variant must be one of"):
        bad_fit(x, ["1", "2"], variant="nope")
    with pytest.raises(ValueError, match="alphabet must not repeat"):
        bad_fit(x, ["1", "2"], alphabet="112")
    with pytest.raises(ValueError, match=f"X must have {FEATURES} features per step"):
        fitted.predict(x)
    with pytest.raises(ValueError, match="beam_width must be an int >= 1, got 0"):
        fitted.predict([np.zeros((5, FEATURES))], beam_width=0)
    with pytest.raises(ValueError, match="lm needs beam_width > 1"):
        fitted.predict([np.zeros((5, FEATURES))], beam_width=1, lm=lambda prefix, symbol: 0.0)
    with pytest.raises(ValueError, match="not fitted yet"):
        Recognizer().predict(x)


# ----------------------------------------------------------------------------- the command
def test_recognize_command_prints_ours_and_the_upper_bound(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(recognize)
    out = tmp_path / "run"
    args = ["--epochs", "1", "--hidden-size", "8", "--train-lines", "40", "--test-lines", "6",
            "--beam", "3", "--output-dir", str(out)]  # fmt: skip
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best path" in result.output and "prefix beam search, width 3" in result.output
    assert "upper bound: SVC per digit, given the true segmentation" in result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["ours"]) == {"best_path", "beam_3"}
    assert 0 <= results["baseline"]["cer"] < 0.5  # an SVC reads 8x8 digits well
    alphabet = Recognizer.load(out / "model.safetensors").alphabet_
    assert " " in alphabet and set(alphabet) <= set("0123456789 ")

    bad = CliRunner().invoke(app, ["--task", "speech", "--output-dir", str(out)])
    assert (
        bad.exit_code == 2 and "task must be one of ['digits-ocr', 'spoken-digits']" in bad.output
    )


def test_recognize_command_says_when_espeak_is_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(digit_lines.shutil, "which", lambda name: None)
    app = typer.Typer()
    app.command()(recognize)
    args = ["--task", "spoken-digits", "--output-dir", str(tmp_path)]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 2 and "apt-get install -y espeak-ng" in result.output


@needs_espeak
def test_recognize_command_on_spoken_digits(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(recognize)
    args = ["--task", "spoken-digits", "--epochs", "1", "--hidden-size", "8",
            "--train-lines", "12", "--test-lines", "3", "--beam", "2",
            "--output-dir", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "of held-out voices" in result.output
    assert json.loads((tmp_path / "run" / "results.json").read_text())["task"] == "spoken-digits"
