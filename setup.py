"""The compiled parts of ``grammar``, all optional: without a C compiler (or without
Cython) the install still succeeds and the same sources run as plain Python.

- ``grammar._native`` (grammar/_native.c, Python's C API only, no numpy headers): the
  token-trie walk, the fill of an automaton row and the schema fingerprint.
- The pure-Python modules of the two hot paths, compiled by Cython from their unchanged
  ``.py`` sources (no Cython-specific code in them): term construction and derivatives
  (``grammar.ir``), the automaton (``grammar.automaton``) and schema lowering
  (``grammar.schema``).  ``grammar.native`` decides at import which one runs: a compiled
  module older than its source (left by an edit since the last build) is ignored in
  favour of the source.  ``grammar/ir.pxd`` (Cython's "augmenting" declarations, read only
  by the build) makes the term class an extension type and types the locals of the
  derivative functions; the ``.py`` stays plain Python.

``GRAMMAR_NO_CYTHON=1`` skips the Cython modules at build time; everything else is declared
in pyproject.toml."""

import os

from setuptools import Extension, setup

# Keep in step with grammar.native.COMPILED_MODULES.  grammar/jsonvalue.py and
# grammar/regex.py stay interpreted: Cython types ord() as a C integer, so their
# `1 << ord(ch)` bit masks would overflow.
CYTHON_SOURCES = ["grammar/ir.py", "grammar/automaton.py", "grammar/schema.py"]


def extensions() -> list[Extension]:
    exts = [Extension("grammar._native", ["grammar/_native.c"], optional=True)]
    if os.environ.get("GRAMMAR_NO_CYTHON") == "1":
        return exts
    try:
        from Cython.Build import cythonize
    except ImportError:
        return exts
    # annotation_typing off: the annotations are documentation, not C types (a list
    # passed where a tuple is annotated must keep working), so the compiled modules keep
    # Python semantics
    compiled = cythonize(CYTHON_SOURCES, language_level=3, quiet=True,
                         compiler_directives={"annotation_typing": False, "binding": True})
    for e in compiled:
        e.optional = True
    return exts + compiled


setup(ext_modules=extensions())
