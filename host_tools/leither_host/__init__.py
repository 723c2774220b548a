# Host tools: the `leither` command and what it drives (CPython only, typed).
"""Leither host tools."""

__version__ = "0.1.0"
