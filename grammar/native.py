"""Which compiled code runs.

- The C extension ``grammar._native`` (``grammar/_native.c``): the token-trie walk
  (:mod:`grammar.index`), the fill of an automaton row (:mod:`grammar.automaton`) and the
  schema fingerprint (:func:`grammar.grammar.fast_key`).  Without it, all three fall back
  to pure Python/numpy with the same results.
- The Cython builds of :data:`COMPILED_MODULES` (see ``setup.py``): the same sources,
  compiled, about 1.5x faster on schema lowering.  :func:`select_modules` (run by
  ``grammar/__init__.py`` before anything else is imported) loads the ``.py`` source instead
  of a compiled module that is older than it (or than the ``.pxd`` that declares C types
  for it: ``grammar/ir.pxd``), so an edit since the last build never runs stale code;
  :data:`MODULES` says which ran.

``GRAMMAR_NO_NATIVE=1`` in the environment turns both off (tests, comparisons)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import warnings
from types import ModuleType

__all__ = ["NATIVE", "ext", "COMPILED_MODULES", "MODULES", "select_modules", "module_choice"]

_OFF = bool(os.environ.get("GRAMMAR_NO_NATIVE"))  # force the fallbacks

ext: ModuleType | None
try:
    from . import _native as ext
except ImportError:  # pragma: no cover - depends on the install
    ext = None
if _OFF:
    ext = None

#: Whether the C extension is in use.
NATIVE = ext is not None

#: The modules built by Cython when the install could (in import order).
COMPILED_MODULES = ("ir", "automaton", "schema")

#: For each of :data:`COMPILED_MODULES` once :func:`select_modules` ran: ``"compiled"``,
#: ``"source"`` (no build, or ``GRAMMAR_NO_NATIVE``) or ``"stale"`` (a build older than
#: the source, ignored).
MODULES: dict[str, str] = {}

_HERE = os.path.dirname(os.path.abspath(__file__))
# a wheel's installer writes a module's build and source a moment apart, in either order
_MTIME_SLACK_S = 2.0


def _extension_path(name: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = os.path.join(_HERE, name + suffix)
        if os.path.exists(p):
            return p
    return None


def module_choice(source: str, compiled: str | None, *, off: bool = False,
                  declarations: str | None = None) -> str:
    """``"compiled"``, ``"source"`` or ``"stale"`` for a module with the given source file
    and compiled extension file (None: not built): the build is used unless ``off`` or its
    source, or its Cython declarations file (``declarations``, a ``.pxd`` beside the
    source, when it exists), was written more than two seconds after it."""
    if compiled is None or off:
        return "source"
    newest = os.path.getmtime(source)
    if declarations is not None and os.path.exists(declarations):
        newest = max(newest, os.path.getmtime(declarations))
    if newest > os.path.getmtime(compiled) + _MTIME_SLACK_S:
        return "stale"
    return "compiled"


def select_modules() -> dict[str, str]:
    """Import :data:`COMPILED_MODULES`, each from its build or its source (see the module
    docstring); warns once about stale builds.  Idempotent."""
    if MODULES:
        return MODULES
    pkg = __name__.rpartition(".")[0]
    stale = []
    for name in COMPILED_MODULES:
        full = f"{pkg}.{name}"
        src = os.path.join(_HERE, name + ".py")
        choice = module_choice(src, _extension_path(name), off=_OFF,
                               declarations=os.path.join(_HERE, name + ".pxd"))
        if choice == "compiled" and full not in sys.modules:
            try:
                importlib.import_module(full)
            except ImportError as e:
                if isinstance(e, ModuleNotFoundError) and e.name != full:
                    raise            # a missing dependency: the source would need it too
                # a build that does not load (another interpreter's, a broken one)
                warnings.warn(f"grammar: the compiled {name} does not load ({e}); the "
                              "source runs instead", RuntimeWarning, stacklevel=2)
                sys.modules.pop(full, None)
                choice = "source"
        if choice == "stale":
            stale.append(name)
        if full not in sys.modules and choice != "compiled" and os.path.exists(src):
            # the import system would prefer the extension file: load the source by hand
            spec = importlib.util.spec_from_file_location(full, src)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[full] = mod
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                del sys.modules[full]
                raise
            setattr(sys.modules[pkg], name, mod)
        MODULES[name] = choice
    if stale:
        warnings.warn(
            f"grammar: the compiled {', '.join(stale)} are older than their sources, so the "
            "sources run instead (slower); rebuild with `pip install -e .` or `python "
            "setup.py build_ext --inplace`", RuntimeWarning, stacklevel=3)
    return MODULES
