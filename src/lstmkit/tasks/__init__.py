"""Applications written on lstmkit's public API, and the reproductions of the papers.

``lstmkit.tasks.reproduce`` is the registry of paper reproductions (``lstmkit reproduce
NAME``); each reproduction's code lives in its own module, imported only when it runs.
"""
