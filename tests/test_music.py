"""Melodies as tokens, the melody model, MIDI files written and read back."""

from __future__ import annotations

import random

import pytest
import typer
from typer.testing import CliRunner

from lstmkit.tasks import music
from lstmkit.tasks.music import DURATIONS, REST


def random_melody(rng: random.Random, length: int) -> list[music.Note]:
    """Random pitches and durations; never two rests in a row (MIDI keeps one gap)."""
    melody: list[music.Note] = []
    for _ in range(length):
        rest = rng.random() < 0.2 and (not melody or melody[-1][0] != REST)
        melody.append((REST if rest else rng.randint(0, 127), rng.choice(DURATIONS)))
    return melody


def merge_rests(notes: list[music.Note]) -> list[music.Note]:
    """Consecutive rests as one rest, as a MIDI file holds them."""
    merged: list[music.Note] = []
    for pitch, duration in notes:
        if pitch == REST and merged and merged[-1][0] == REST:
            merged[-1] = (REST, merged[-1][1] + duration)
        else:
            merged.append((pitch, duration))
    return merged


def test_every_token_round_trips_through_its_character():
    notes = [(pitch, duration) for pitch in range(REST + 1) for duration in DURATIONS]
    characters = [music.note_to_char(note) for note in notes]
    assert len(set(characters)) == len(notes) and music.START not in characters
    assert [music.char_to_note(ch) for ch in characters] == notes
    melodies = [notes[:7], notes[300:305]]
    assert music.text_to_notes(music.melodies_to_text(melodies)) == notes[:7] + notes[300:305]


def test_bad_notes_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"pitch must be an int in 0\.\.127 or REST"):
        music.note_to_char((129, 1.0))
    with pytest.raises(ValueError, match="duration must be one of"):
        music.note_to_char((60, 0.3))
    with pytest.raises(ValueError, match="does not encode a note"):
        music.char_to_note("a")
    with pytest.raises(ValueError, match="non-empty list of non-empty melodies"):
        music.melodies_to_text([[(60, 1.0)], []])
    with pytest.raises(ValueError, match="duration must be one of"):
        music.write_midi([(60, 1.0), (62, 0.1)], tmp_path / "bad.mid")
    assert list(tmp_path.iterdir()) == []
    assert music.quantize(0.3) == 0.25 and music.quantize(5.1) == 6.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_midi_written_and_read_back_has_the_same_notes(tmp_path, seed):
    melody = random_melody(random.Random(seed), 40)
    path = music.write_midi(melody, tmp_path / "melody.mid")
    assert music.read_midi(path) == melody


def test_midi_read_by_music21_has_the_same_pitches_and_durations(tmp_path):
    converter = pytest.importorskip("music21.converter")
    melody = [(60, 1.0), (62, 0.5), (REST, 0.5), (64, 1.5), (65, 0.25), (67, 2.0)]
    score = converter.parse(music.write_midi(melody, tmp_path / "m.mid"))
    read = [
        (REST if e.isRest else e.pitch.midi, float(e.quarterLength))
        for e in score.stripTies().flatten().notesAndRests  # a note across a bar line is tied
    ]
    assert merge_rests(read)[: len(melody)] == melody  # music21 may pad the last bar


def test_composed_melody_is_written_as_midi(tmp_path):
    rng = random.Random(3)
    melodies = [random_melody(rng, 30) for _ in range(4)]
    model = music.fit_melody_model(
        melodies, hidden_size=16, embedding_dim=8, batch_size=2, bptt=10, steps=5
    )
    composed = music.compose(model, 40, temperature=1.0, seed=1)
    assert composed == music.compose(model, 40, temperature=1.0, seed=1)
    vocabulary = {note for melody in melodies for note in melody}
    assert composed and set(composed) <= vocabulary
    path = music.write_midi(composed, tmp_path / "composed.mid")
    assert music.read_midi(path) == merge_rests(composed)


@pytest.mark.slow
def test_bach_melodies_and_compose_cli(tmp_path):
    pytest.importorskip("music21")
    melodies = music.bach_melodies(3)
    assert len(melodies) == 3 and all(len(m) > 20 for m in melodies)
    assert all(0 <= p <= REST and d in DURATIONS for m in melodies for p, d in m)
    from lstmkit.cli.generate import compose

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(compose)
    app.command()(lambda: None)  # two commands: typer keeps "compose" as a subcommand
    out = tmp_path / "bach.mid"
    arguments = f"compose --chorales 3 --heldout 1 --steps 3 --notes 20 --out {out}"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, arguments.split())
    assert result.exit_code == 0, result.output
    assert "Kneser-Ney 4-gram" in result.output
    assert 0 < len(music.read_midi(out)) <= 20
