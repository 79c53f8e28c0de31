"""Grammar: composable grammar descriptions, built only through static constructors.

A :class:`Grammar` pairs an IR term (:mod:`grammar.ir`) with a canonical cache key.  Build
larger grammars (a whole tool-calling turn) from literal text, special tokens, JSON
schemas, regexes and free text, then compile once with
:meth:`grammar.GrammarCompiler.compile`::

    g = Grammar.sequence(
        Grammar.literal(">>>"),
        Grammar.choice(Grammar.literal("get_weather\\n"), Grammar.literal("get_time\\n")),
        Grammar.json_schema({"type": "object"}),
        Grammar.special(eot_id),
    )
"""

from __future__ import annotations

import json
import marshal
import os
from collections.abc import Mapping
from typing import Any, Callable, Literal

from . import ir
from .errors import SchemaError
from .native import ext as _native

__all__ = ["Grammar", "canonical_key"]

#: The secret key of :func:`fast_key`'s fingerprints, new in every process.
_FINGERPRINT_KEY = os.urandom(16)


def canonical_key(obj: Any) -> str | bytes:
    """A cache key for a schema (or any JSON-like value): equal keys mean equal values.

    A ``str`` (JSON text) is its own key.  Other values are serialised with
    :mod:`marshal` format 0 (2-3x faster than ``json.dumps``; no back-references, so the
    bytes depend on the value alone, not on which sub-objects happen to be shared; it keeps
    key order, which is part of the meaning here since objects are generated in the
    declared order of ``properties``, and tells ``1``, ``1.0`` and ``True`` apart).
    Values marshal cannot write fall back to JSON text with ``repr`` for the rest."""
    if isinstance(obj, str):
        return obj
    try:
        return marshal.dumps(obj, 0)
    except ValueError:   # not marshal's types, or nested beyond its depth limit
        with ir.deep_recursion(lambda: SchemaError("value nested too deeply to compile")):
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=repr)


def fast_key(obj: Any) -> tuple[str, bytes] | bytes | None:
    """A cheaper key than :func:`canonical_key`, used as an alias to it.

    With the C extension (:data:`grammar.native.NATIVE`): a 16-byte keyed SipHash-1-3 of
    the value under a per-process secret key (``grammar/_native.c``), about 25% faster than
    :mod:`marshal` format 4 and equal for equal values.  A collision, even between values
    chosen to collide, has negligible probability while the key stays secret.

    Otherwise, or for a value the fingerprint does not take (ints past 64 bits, subclasses
    of the JSON types): :mod:`marshal` format 4, about 2.5x faster than format 0.  It writes
    an object held elsewhere (reference count above one) once and refers back to it
    afterwards, so equal values built differently can serialise differently; equal bytes
    still mean equal values (the bytes decode to one value).

    Either is sound as a first-level alias to a :func:`canonical_key` entry: a miss only
    costs the canonical key.  ``None`` when neither can key ``obj`` or ``obj`` is JSON text
    (its own key already)."""
    if isinstance(obj, (str, bytes)):
        return None
    if _native is not None:
        fp = _native.fingerprint(obj, _FINGERPRINT_KEY)
        if fp is not None:
            return ("sip", fp)
    try:
        return marshal.dumps(obj, 4)
    except ValueError:
        return None


def json_schema_key(schema: Any, *, strict: bool, whitespace: int, additional_properties: str,
                    format_assertion: bool, remotes: Any, draft: str | None,
                    float_safe: bool, schema_key: Any = None) -> tuple:
    """The cache key of :meth:`Grammar.json_schema` with these arguments (``schema_key``:
    the schema's key if already computed, else :func:`canonical_key` of it)."""
    if remotes is None:
        rkey: Any = None
    elif isinstance(remotes, Mapping):
        rkey = canonical_key(dict(remotes))
    else:
        rkey = ("callable", id(remotes))
    if schema_key is None:
        schema_key = canonical_key(schema)
    return ("json", schema_key, strict, whitespace, additional_properties,
            format_assertion, rkey, bool(float_safe), draft)


class Grammar:
    """An immutable grammar description.  Use the static constructors."""

    __slots__ = ("term", "key", "ignored")

    def __init__(self, term: ir.Term, key: Any, ignored: tuple = ()) -> None:
        self.term = term
        self.key = key
        self.ignored = tuple(ignored)

    def __repr__(self) -> str:
        return f"Grammar({str(self.key)[:80]})"

    # ------------------------------------------------------------------ leaves
    @staticmethod
    def literal(text: str | bytes) -> "Grammar":
        """Exactly this text (``str`` is UTF-8 encoded)."""
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return Grammar(ir.lit(raw), ("lit", raw))

    @staticmethod
    def special(token_id: int) -> "Grammar":
        """One special token, by id."""
        return Grammar(ir.special(token_id), ("special", int(token_id)))

    @staticmethod
    def regex(pattern: str) -> "Grammar":
        """Text fully matching a regular expression (see :mod:`grammar.regex` for the
        supported subset)."""
        from .regex import regex_term
        return Grammar(regex_term(pattern), ("regex", pattern))

    @staticmethod
    def json_schema(schema: Any, *, strict: bool = True, whitespace: int = 16,
                    additional_properties: Literal["allow", "forbid"] = "allow",
                    format_assertion: bool = True,
                    remotes: Mapping[str, Any] | Callable[[str], Any] | None = None,
                    float_safe: bool = False, draft: str | None = None) -> "Grammar":
        """A JSON value valid under ``schema`` (see :mod:`grammar.schema`).

        Parameters
        ----------
        strict:
            Raise :class:`grammar.errors.UnsupportedSchemaError` for keywords that cannot be
            enforced exactly; with ``False`` they are ignored and listed in ``ignored``.
        whitespace:
            Longest whitespace run allowed at each structural position (0: compact JSON).
        additional_properties:
            What an omitted ``additionalProperties`` means: ``"allow"`` (JSON Schema) or
            ``"forbid"`` (what tool-calling grammars use).
        format_assertion:
            Enforce ``format`` (True) or treat it as an annotation.
        remotes:
            Documents for remote ``$ref`` s: a mapping URL → schema or a callable.
        float_safe:
            Only number spellings that parse to finite values (integers as plain digits,
            bounded exponents); tool grammars use it since applications parse the JSON.
        draft:
            Default JSON Schema draft for a schema without ``$schema`` (``"draft4"`` ...
            ``"draft2020-12"``; default 2020-12).
        """
        from .schema import JsonOptions, json_schema_term
        opts = JsonOptions(whitespace=whitespace, additional_properties=additional_properties,
                           strict=strict, formats="assert" if format_assertion else "annotate",
                           float_safe=float_safe)
        res = json_schema_term(schema, opts, remotes=remotes, draft=draft)
        key = json_schema_key(schema, strict=strict, whitespace=whitespace,
                              additional_properties=additional_properties,
                              format_assertion=format_assertion, remotes=remotes,
                              draft=draft, float_safe=float_safe)
        return Grammar(res.term, key, res.ignored)

    @staticmethod
    def text(*, stop: str | bytes | None = None, exclude: bytes = b"") -> "Grammar":
        """Free UTF-8 text.  With ``stop``, the text runs up to and including the first
        occurrence of ``stop`` (which appears nowhere earlier); ``exclude`` lists ASCII
        bytes that may not occur in the text."""
        if stop is None:
            return Grammar(ir.any_text(exclude), ("text", None, exclude))
        raw = stop.encode("utf-8") if isinstance(stop, str) else bytes(stop)
        return Grammar(ir.text_until(raw, exclude), ("text", raw, exclude))

    @staticmethod
    def from_term(term: ir.Term, key: Any) -> "Grammar":
        """Wrap an IR term built directly with :mod:`grammar.ir` (``key`` must describe it
        canonically: it is the cache key)."""
        return Grammar(term, ("term", key))

    # ------------------------------------------------------------------ combinators
    @staticmethod
    def sequence(*parts: "Grammar") -> "Grammar":
        """Concatenation."""
        return Grammar(ir.seq(*[p.term for p in parts]), ("seq",) + tuple(p.key for p in parts),
                       sum((p.ignored for p in parts), ()))

    @staticmethod
    def choice(*parts: "Grammar") -> "Grammar":
        """Alternation (any one of the parts)."""
        return Grammar(ir.alt(*[p.term for p in parts]), ("alt",) + tuple(p.key for p in parts),
                       sum((p.ignored for p in parts), ()))

    @staticmethod
    def repeat(part: "Grammar", lo: int = 0, hi: int | None = None) -> "Grammar":
        """``part`` repeated ``lo`` to ``hi`` times (``hi=None``: unbounded)."""
        return Grammar(ir.repeat(part.term, lo, hi), ("rep", part.key, lo, hi), part.ignored)

    @staticmethod
    def optional(part: "Grammar") -> "Grammar":
        return Grammar.repeat(part, 0, 1)

    @staticmethod
    def empty() -> "Grammar":
        """The empty string."""
        return Grammar(ir.EMPTY, ("empty",))
