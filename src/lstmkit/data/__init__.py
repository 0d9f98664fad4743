"""Synthetic sequence tasks and loaders of real data."""

from lstmkit.data.synthetic import adding_problem

__all__ = ["adding_problem"]
