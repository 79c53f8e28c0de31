"""The optional C extension ``grammar._native`` (``grammar/_native.c``, built by ``pip
install``): the token-trie walk (:mod:`grammar.index`), the fill of an automaton row
(:mod:`grammar.automaton`) and the schema fingerprint (:func:`grammar.grammar.fast_key`).
Without it, or with ``GRAMMAR_NO_NATIVE=1`` in the environment, all three fall back to
pure Python/numpy with the same results."""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["NATIVE", "ext"]

ext: ModuleType | None
try:
    from . import _native as ext
except ImportError:  # pragma: no cover - depends on the install
    ext = None
if os.environ.get("GRAMMAR_NO_NATIVE"):  # force the fallbacks (tests, comparisons)
    ext = None

#: Whether the C extension is in use.
NATIVE = ext is not None
