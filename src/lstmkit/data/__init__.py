"""Synthetic sequence tasks and loaders of real data."""

from lstmkit.data.synthetic import adding_problem, ctc_symbols, delayed_echo
from lstmkit.data.text import CharVocabulary, batchify, builtin_text, read_text

__all__ = [
    "CharVocabulary",
    "adding_problem",
    "batchify",
    "builtin_text",
    "ctc_symbols",
    "delayed_echo",
    "read_text",
]
