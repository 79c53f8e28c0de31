"""GrammarCompiler: turns grammar descriptions into cached CompiledGrammar objects."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Literal

from .compiled import CompiledGrammar
from .errors import SchemaError, VocabularyError
from .grammar import Grammar, fast_key, json_schema_key
from .index import TokenIndex, token_index
from . import ir

if TYPE_CHECKING:  # pragma: no cover
    from .vocab import Vocabulary

__all__ = ["GrammarCompiler"]


class GrammarCompiler:
    """Compiles grammars for one vocabulary and caches the results.

    Compilation lowers a grammar to an IR term and wraps it in a :class:`CompiledGrammar`;
    nothing is enumerated over the vocabulary up front (states and masks are built lazily
    and shared by every matcher), so a cold compile costs about as much as reading the
    schema.  Results are cached by ``(vocabulary hash, canonical grammar description)``
    in an LRU of ``cache_size`` entries.  A dict schema is first looked up by a cheaper
    alias key (:func:`grammar.grammar.fast_key`, which may differ for equal values), so
    compiling the same schema object again costs well under its canonical serialisation.

    Parameters
    ----------
    vocab:
        The model's :class:`grammar.Vocabulary`.
    cache_size:
        Number of compiled grammars kept.
    """

    def __init__(self, vocab: "Vocabulary", *, cache_size: int = 256) -> None:
        self.vocab = vocab
        self.index: TokenIndex = token_index(vocab)
        self._cache: "OrderedDict[Any, CompiledGrammar]" = OrderedDict()
        self._lowered: "OrderedDict[Any, Grammar]" = OrderedDict()
        # fast_key alias -> canonical key (LRU): a hit skips the canonical serialisation;
        # a miss computes it and records the alias
        self._aliases: "OrderedDict[Any, Any]" = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public
    def compile(self, grammar: Grammar) -> CompiledGrammar:
        """Compile a :class:`Grammar` (cached by its canonical key)."""
        if not isinstance(grammar, Grammar):
            raise TypeError("compile() takes a grammar.Grammar")
        return self._get(grammar.key, lambda: grammar)

    def compile_lazy(self, key: Any, build: Callable[[], Grammar]) -> CompiledGrammar:
        """Compile ``build()`` under a caller-chosen cache key, calling ``build`` only on
        a cache miss.

        For composite grammars (a whole tool-calling turn) whose description is cheap to
        key but costly to build.  ``key`` must be hashable and describe the grammar
        completely (two different grammars must never share a key); it lives in its own
        namespace, apart from the keys of :meth:`compile`."""
        return self._get(("lazy", key), build)

    def json_schema_grammar(self, schema: Any, *, strict: bool = True, whitespace: int = 16,
                            additional_properties: Literal["allow", "forbid"] = "allow",
                            format_assertion: bool = True,
                            remotes: Mapping[str, Any] | Callable[[str], Any] | None = None,
                            draft: str | None = None, float_safe: bool = False) -> Grammar:
        """The uncompiled :class:`Grammar` of a JSON schema, for composing larger grammars;
        the lowering is cached like compiled grammars (same arguments as
        :meth:`compile_json_schema`, plus ``float_safe``: see :meth:`Grammar.json_schema`).
        """
        opts = dict(strict=strict, whitespace=whitespace,
                    additional_properties=additional_properties,
                    format_assertion=format_assertion, remotes=remotes, draft=draft,
                    float_safe=float_safe)
        return self._aliased("lowered", schema, opts, self._lower)

    def compile_json_schema(self, schema: Any, *, strict: bool = True, whitespace: int = 16,
                            additional_properties: Literal["allow", "forbid"] = "allow",
                            format_assertion: bool = True,
                            remotes: Mapping[str, Any] | Callable[[str], Any] | None = None,
                            draft: str | None = None) -> CompiledGrammar:
        """Compile a JSON schema (a dict, a bool, or its JSON text).

        See :meth:`Grammar.json_schema` for the options.  A cache hit costs one pass over
        the schema for its key (JSON text is its own key; a dict compiled before is found
        by its keyed fingerprint, see :func:`grammar.grammar.fast_key`, and otherwise by
        :func:`grammar.canonical_key`).

        Raises
        ------
        grammar.errors.SchemaError
            The schema is malformed (names the JSON pointer).
        grammar.errors.UnsupportedSchemaError
            ``strict=True`` and a keyword cannot be enforced exactly (names the keyword and
            its JSON pointer).
        """
        opts = dict(strict=strict, whitespace=whitespace,
                    additional_properties=additional_properties,
                    format_assertion=format_assertion, remotes=remotes, draft=draft,
                    float_safe=False)
        # the compiled and the lowered caches share the key: one serialisation per call
        return self._aliased("compiled", schema, opts,
                             lambda key, sch, o: self._get(key, lambda: self._lower(key, sch, o)))

    def compile_regex(self, pattern: str) -> CompiledGrammar:
        """Compile a regular expression (full match over UTF-8 text)."""
        return self._get(("regex", pattern), lambda: Grammar.regex(pattern))

    def clear_cache(self) -> None:
        """Forget every cached compiled grammar."""
        with self._lock:
            self._cache.clear()
            self._lowered.clear()
            self._aliases.clear()

    @property
    def cache_info(self) -> dict[str, int]:
        return {"entries": len(self._cache), "capacity": self._cache_size}

    # ------------------------------------------------------------------ internals
    def _aliased(self, tag: str, schema: Any, opts: dict[str, Any],
                 lookup: Callable[[Any, Any, dict[str, Any]], Any]) -> Any:
        """``lookup(key, schema, opts)`` with the canonical key, found through a fast-key
        alias when there is one (``tag`` names the cache the alias serves).  An alias
        holds only the canonical key, so what stays cached, and for how long, is up to
        the caches themselves."""
        fk = fast_key(schema)
        akey = None
        key = None
        if fk is not None:
            akey = (tag, json_schema_key(None, schema_key=fk, **opts))
            with self._lock:
                key = self._aliases.get(akey)
                if key is not None:
                    self._aliases.move_to_end(akey)
        if key is None:
            schema, key = _schema_key(schema, opts)
            if akey is not None:
                with self._lock:
                    self._aliases[akey] = key
                    while len(self._aliases) > self._cache_size:
                        self._aliases.popitem(last=False)
        return lookup(key, schema, opts)

    def _lower(self, key: Any, schema: Any, opts: dict[str, Any]) -> Grammar:
        """The lowering of ``schema`` (a value or its JSON text) under ``key``, cached."""
        with self._lock:
            hit = self._lowered.get(key)
            if hit is not None:
                self._lowered.move_to_end(key)
                return hit
        if isinstance(schema, str):   # JSON text: parsed only on a cache miss
            try:
                schema = json.loads(schema)
            except ValueError as e:
                raise SchemaError(f"schema is not valid JSON: {e}") from None
        g = Grammar.json_schema(schema, **opts)
        with self._lock:
            self._lowered[key] = g
            while len(self._lowered) > self._cache_size:
                self._lowered.popitem(last=False)
        return g

    def _get(self, key: Any, build: Callable[[], Grammar]) -> CompiledGrammar:
        full = (self.vocab.hash, key)
        with self._lock:
            hit = self._cache.get(full)
            if hit is not None:
                self._cache.move_to_end(full)
                return hit
        g = build()
        self._check_specials(g.term)
        cg = CompiledGrammar(g.term, self.index, key=key, ignored=g.ignored)
        with self._lock:
            self._cache[full] = cg
            self._cache.move_to_end(full)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return cg

    def _check_specials(self, term: ir.Term) -> None:
        for tid in ir.specials_of(term):
            if not (0 <= tid < self.vocab.vocab_size) or not self.vocab.is_special(tid):
                raise VocabularyError(
                    f"the grammar names special token id {tid}, which is not a special token "
                    f"of this vocabulary (vocab_size={self.vocab.vocab_size})")


def _schema_key(schema: Any, opts: dict[str, Any]) -> tuple[Any, Any]:
    """``(schema, cache key)``; bytes are taken as UTF-8 JSON text."""
    if isinstance(schema, bytes):
        schema = schema.decode("utf-8", errors="replace")
    return schema, json_schema_key(schema, **opts)
