"""Reproductions of papers' experiments, one module per paper (``lstmkit reproduce NAME``)."""
