"""Symbolic melodies: a recurrent model over notes that composes and writes MIDI.

A melody is a list of notes ``(pitch, quarter_length)``: ``pitch`` a MIDI number 0..127 or
``REST``, ``quarter_length`` one of ``DURATIONS`` (quarter notes; others are rounded to the
nearest). Each (pitch, duration) pair is one token, written as one private-use character, so
a corpus of melodies is a text (a newline starts each melody) and the model is a character
``lstmkit.tasks.language_model.LanguageModel`` — the same truncated-BPTT training, scoring,
sampling and files. Bits per character of that text are bits per note.

Melodies that ship offline: the top voice of the Bach chorales in music21's corpus. MIDI
files are written and read with mido (one track, 480 ticks per quarter note, 120 bpm).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lstmkit.io import publish
from lstmkit.tasks.language_model import LanguageModel

Note = tuple[int, float]  # (MIDI pitch or REST, duration in quarter notes)
REST = 128
DURATIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
FIRST_CODE = 0xE000  # Unicode's private use area: no clash with real text
START = "\n"  # starts every melody; the prompt of a new one
TICKS_PER_QUARTER = 480
TEMPO = 500_000  # microseconds per quarter note: 120 bpm


# ----------------------------------------------------------------------------- notes <-> text
def quantize(quarter_length: float) -> float:
    """The nearest duration in DURATIONS."""
    return min(DURATIONS, key=lambda d: abs(d - quarter_length))


def note_to_char(note: Note) -> str:
    pitch, duration = note
    if isinstance(pitch, bool) or not isinstance(pitch, int) or not 0 <= pitch <= REST:
        raise ValueError(f"a note's pitch must be an int in 0..127 or REST ({REST}), got {pitch!r}")
    if duration not in DURATIONS:
        raise ValueError(f"a note's duration must be one of {DURATIONS}, got {duration!r}")
    return chr(FIRST_CODE + pitch * len(DURATIONS) + DURATIONS.index(duration))


def char_to_note(character: str) -> Note:
    code = ord(character) - FIRST_CODE
    if not 0 <= code < (REST + 1) * len(DURATIONS):
        raise ValueError(f"character {character!r} does not encode a note")
    return code // len(DURATIONS), DURATIONS[code % len(DURATIONS)]


def melodies_to_text(melodies: list[list[Note]]) -> str:
    """One text for a list of melodies: START before each, one character per note."""
    if not melodies or any(not melody for melody in melodies):
        raise ValueError("melodies must be a non-empty list of non-empty melodies")
    return "".join(START + "".join(note_to_char(note) for note in m) for m in melodies)


def text_to_notes(text: str) -> list[Note]:
    """The notes of a text; START characters (melody boundaries) are dropped."""
    return [char_to_note(ch) for ch in text if ch != START]


# ----------------------------------------------------------------------------- data
def bach_melodies(count: int = 100) -> list[list[Note]]:
    """The top voice of the first ``count`` Bach chorales of music21's corpus (sorted by
    file name), rests kept, chords read as their highest pitch, durations quantized.
    Parsing takes about half a second per chorale."""
    try:
        from music21 import corpus
    except ImportError as error:
        raise ImportError("Bach chorales need music21 (pip install music21)") from error
    melodies = []
    for path in sorted(corpus.getComposer("bach"))[:count]:
        score = corpus.parse(path)
        parts = list(score.parts)
        top = next((p for p in parts if "soprano" in (p.partName or "").lower()), parts[0])
        melody = []
        for element in top.flatten().notesAndRests:
            if element.quarterLength <= 0:  # grace notes take no time
                continue
            if element.isRest:
                pitch = REST
            elif element.isChord:
                pitch = max(p.midi for p in element.pitches)
            else:
                pitch = element.pitch.midi
            melody.append((pitch, quantize(float(element.quarterLength))))
        if melody:
            melodies.append(melody)
    return melodies


# ----------------------------------------------------------------------------- the model
def fit_melody_model(melodies: list[list[Note]], **settings) -> LanguageModel:
    """A character LanguageModel (settings as its own) trained on the melodies' text."""
    return LanguageModel(level="char", **settings).fit(melodies_to_text(melodies))


def compose(
    model: LanguageModel,
    n: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> list[Note]:
    """About ``n`` notes of a new melody (melody boundaries the model samples are dropped)."""
    return text_to_notes(model.generate(START, n, temperature, top_k, seed))


# ----------------------------------------------------------------------------- MIDI
def write_midi(notes: list[Note], path: str | os.PathLike, program: int = 0) -> Path:
    """Write ``notes`` as a one-track MIDI file (General MIDI ``program``) atomically."""
    import mido

    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"path's folder {path.parent} does not exist")
    for note in notes:
        note_to_char(note)  # the same checks as the model's tokens
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=TEMPO, time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    wait = 0  # ticks since the last event: rests lengthen it
    for pitch, duration in notes:
        ticks = round(duration * TICKS_PER_QUARTER)
        if pitch == REST:
            wait += ticks
            continue
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=wait))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=ticks))
        wait = 0
    track.append(mido.MetaMessage("end_of_track", time=wait))
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_QUARTER)
    midi.tracks.append(track)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        midi.save(temporary)
        publish(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_midi(path: str | os.PathLike) -> list[Note]:
    """The notes of a monophonic MIDI file: gaps between notes become rests."""
    import mido

    midi = mido.MidiFile(path)
    ticks_per_quarter = midi.ticks_per_beat
    notes: list[Note] = []
    now, last_end, sounding = 0, 0, {}  # ticks; pitch -> start tick
    for message in mido.merge_tracks(midi.tracks):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            if now > last_end:
                notes.append((REST, (now - last_end) / ticks_per_quarter))
            sounding[message.note] = now
        elif message.type in ("note_off", "note_on") and message.note in sounding:
            start = sounding.pop(message.note)
            notes.append((message.note, (now - start) / ticks_per_quarter))
            last_end = now
        elif message.type == "end_of_track" and now > last_end:
            notes.append((REST, (now - last_end) / ticks_per_quarter))
    return notes
