"""JSON Schema lowered to exact IR terms.

:func:`json_schema_term` compiles a schema (draft 4, 6, 7, 2019-09 or 2020-12) into a
:class:`~grammar.ir.Term` whose language is the set of *serialisations* of the valid JSON
values.  The guiding rule is **no silent widening**: every keyword is either enforced
exactly, or (with ``strict=True``) compilation fails with
:class:`~grammar.errors.UnsupportedSchemaError` naming the keyword and the JSON pointer,
or (with ``strict=False``) the keyword is ignored and reported in
:attr:`SchemaResult.ignored`.

Serialisation accepted
----------------------
Standard JSON text (RFC 8259) with no leading or trailing whitespace and at most
``JsonOptions.whitespace`` whitespace bytes at every structural position (after ``{``/``[``,
around ``:`` and ``,``, before ``}``/``]``).  Strings accept every spelling of their
characters (raw UTF-8, short escapes, ``\\uXXXX``, surrogate pairs; lone surrogates and raw
control characters are rejected).  Numbers accept plain decimals of any length and
normalised scientific notation with at most 17 significant mantissa digits (see
:mod:`grammar.jsonvalue`); ``json.dumps`` output (compact, default separators,
``ensure_ascii`` on or off) is always accepted for valid values.

Object key order
----------------
Accepting every permutation of an object's keys is not regular (it is exponential in
general), so each *instance location* has one canonical key order and the grammar accepts
exactly the valid values whose objects follow it (:func:`canonical_instance` reorders a
valid value that way):

1. the names declared in ``properties`` in schema order (each optional one may be left
   out), then the other names the schema mentions (``required`` names not in
   ``properties``, ``dependentRequired``/``dependencies`` names, keys of ``const``/``enum``
   objects);
2. then any other keys ("additional" keys: ``patternProperties`` / ``additionalProperties``)
   in any order.  An additional key may not be *equal* to a declared name: equality is on
   the decoded key (every escape spelling of a declared name is excluded too), so a
   declared name can never appear twice.  Two equal additional keys cannot be excluded by
   a regular language (the grammar does not forbid duplicate additional keys; JSON parsers
   keep the last one).

The declared names of step 1 are gathered from *every* subschema that may apply at the
location (through ``allOf``/``anyOf``/``oneOf``/``not``/``if``/``then``/``else``/``$ref``
...), not only from the subschema that happens to validate.  So all the branches of a
combinator are languages over the *same* canonically ordered universe, and union,
intersection (``allOf``) and complement (``not``, ``oneOf``, ``if``/``else``) are exact.

Keywords
--------
* ``type`` (lists too), ``enum``, ``const`` (JSON equality: ``1 == 1.0``; every spelling of
  the value), OpenAPI ``nullable: true`` (adds ``null``; ``JsonOptions.nullable``).
* ``allOf`` (merged structurally: object slots and array positions are combined per key or
  index), ``anyOf``, ``oneOf`` (exactly one: ``B1∧¬(B2∨…) ∨ ¬B1∧(exactly one of B2…)``;
  for objects, branches with disjoint ``const``/``enum`` tags on a property every object
  there has are just unioned), ``not`` (complement within the canonical universe), ``if``/``then``/``else``.
* ``$ref``, ``$defs``/``definitions``, ``$id``/``id``, ``$anchor``, JSON pointers (``~0``,
  ``~1``, ``%``-escapes), recursive schemas (one :class:`~grammar.ir.Rule` per recursive
  location), remote references resolved through ``remotes`` only (never the network),
  ``$dynamicRef``/``$dynamicAnchor`` and ``$recursiveRef`` via the ``referencing`` library's
  dynamic scope.  In drafts 4-7, ``$ref`` makes its sibling keywords ignored (as the specs
  say).
* Objects: ``properties``, ``required``, ``patternProperties`` (a key must satisfy every
  matching pattern's schema: exact, by intersection), ``additionalProperties``,
  ``propertyNames``, ``minProperties``/``maxProperties``, ``dependentRequired``,
  ``dependentSchemas``, ``dependencies``, ``unevaluatedProperties`` (names evaluated
  statically become part of the object rule; names evaluated by ``anyOf``/``oneOf``/
  ``if``/``dependentSchemas`` branches are handled by an exact case split over which
  branches are valid, at most 6 such branches, no nested ones).
* Arrays: ``items``/``prefixItems``/``additionalItems`` per draft, ``minItems``/``maxItems``,
  ``contains`` with ``minContains``/``maxContains`` (by intersection and complement),
  ``unevaluatedItems`` (same method as ``unevaluatedProperties``; items matching a
  static ``contains`` count as evaluated).  ``uniqueItems: true`` is not regular: it is
  supported when trivially satisfied (``maxItems <= 1``) or when the items are restricted
  (``enum``/``const``) to at most 5 scalar values (the distinct sequences are enumerated);
  otherwise it is unsupported.
* Strings: ``minLength``/``maxLength`` in code points (an escape or a surrogate pair is one
  character), ``pattern`` (ECMA-262 subset, search semantics, :mod:`grammar.regex`),
  ``format`` (:mod:`grammar.formats`; asserted when ``JsonOptions.formats == "assert"`` or
  when a custom meta-schema enables the format-assertion vocabulary; every known format is
  checked whatever the draft, as Python ``jsonschema``'s ``FormatChecker`` does; unknown
  formats are annotations and are reported in ``ignored``; ``hostname``/``email`` family
  formats are *narrowed*: sound but rejecting some valid values, reported in
  :attr:`SchemaResult.narrowed`; ``regex`` is unsupported).  ``contentMediaType`` /
  ``contentEncoding`` are annotations in every draft (as in 2019-09+ and in Python
  ``jsonschema``).
* Numbers: ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` (draft-4
  boolean forms too), ``multipleOf`` (exact digit automaton over decimals), ``integer``
  (draft 4: literals without fraction/exponent, as Python ``jsonschema``; later drafts:
  every integral value, so ``1.0`` is an integer).  Comparisons use exact decimal
  arithmetic.
* Annotations (``title``, ``description``, ``default``, ``examples``, ``$comment``,
  ``content*``, ``deprecated``, ``readOnly``, ``writeOnly``, ...) and unknown keywords are
  ignored, as the specifications require; so are keywords of a later draft than the
  schema's (``const`` in draft 4 ...).  A custom meta-schema (``$schema`` found in
  ``remotes``) switches vocabularies off as its ``$vocabulary`` says.
* Schemas that apply themselves at the same instance location without consuming input
  through anything but ``allOf``/``$ref`` (``{"anyOf": [{"$ref": "#"}, ...]}``) raise
  :class:`~grammar.errors.SchemaError`; pure ``allOf``/``$ref`` cycles mean "no extra
  constraint".

Known limits
------------
* Python ``jsonschema`` compares binary floats; the grammar compares exact decimals, so
  they can disagree on spellings with more than 17 significant digits or on
  ``multipleOf`` with non-representable operands (``3.044147710827927e+16`` *is* a
  multiple of 3 here).
* ``$dynamicRef``/``$recursiveRef`` follow the ``referencing`` library's dynamic scope.
* ``max_repeat``, ``multipleOf`` with a huge reduced numerator (e.g. ``0.123456789``),
  ``patternProperties``/``pattern`` outside the regex subset, ``format: regex`` and the
  ``uniqueItems``/``unevaluated*`` cases above are unsupported.

Example
-------
>>> from grammar.ir import matches
>>> r = json_schema_term({"type": "object", "properties": {"a": {"type": "integer"}},
...                       "required": ["a"]})
>>> matches(r.term, b'{"a": 1}'), matches(r.term, b'{}')
(True, False)
"""

from __future__ import annotations

import json
import marshal
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Mapping
from urllib.parse import urldefrag

import referencing
import referencing.exceptions
import referencing.jsonschema

from . import ir
from .errors import RegexError, SchemaError, UnsupportedSchemaError
from .formats import NARROWED_FORMATS, UnsupportedFormat, format_content_term
from .ir import (
    EMPTY, NOTHING, Rule, Term, alt, both, byte_class, byte_range, lit, matches, neg, opt,
    plus, repeat, seq, star,
)
from .jsonvalue import json_value_term as _json_value
from .jsonvalue import (
    UnsupportedMultipleOf, boolean_term, integer_term, json_char_any,
    multiple_of_term, null_term, number_cmp_term, number_equal_term, number_term,
    QUOTE, string_content_literal, string_except, string_literal, string_term, to_decimal, ws,
)
from .regex import pattern_string_term

__all__ = ["JsonOptions", "SchemaResult", "json_schema_term", "canonical_instance",
           "json_value_term", "DRAFTS"]

TYPES = ("null", "boolean", "number", "string", "array", "object")

DRAFTS = {
    "draft4": 4, "draft6": 6, "draft7": 7, "draft2019-09": 2019, "draft2020-12": 2020,
    "http://json-schema.org/draft-04/schema": 4, "http://json-schema.org/draft-06/schema": 6,
    "http://json-schema.org/draft-07/schema": 7,
    "https://json-schema.org/draft/2019-09/schema": 2019,
    "https://json-schema.org/draft/2020-12/schema": 2020,
}
_SPECS = {4: referencing.jsonschema.DRAFT4, 6: referencing.jsonschema.DRAFT6,
          7: referencing.jsonschema.DRAFT7, 2019: referencing.jsonschema.DRAFT201909,
          2020: referencing.jsonschema.DRAFT202012}

# keyword -> first draft that has it (all drafts up to 2020-12 have the others)
_SINCE = {
    "const": 6, "contains": 6, "propertyNames": 6, "if": 7, "then": 7, "else": 7,
    "dependentRequired": 2019, "dependentSchemas": 2019, "minContains": 2019,
    "maxContains": 2019, "unevaluatedItems": 2019, "unevaluatedProperties": 2019,
    "prefixItems": 2020, "$dynamicRef": 2020, "$recursiveRef": 2019,
}
_UNTIL = {"additionalItems": 2019, "$recursiveRef": 2019}

_VOCABS = {
    "applicator": frozenset({"prefixItems", "items", "contains", "additionalProperties",
                             "properties", "patternProperties", "dependentSchemas",
                             "propertyNames", "if", "then", "else", "allOf", "anyOf",
                             "oneOf", "not", "additionalItems"}),
    "validation": frozenset({"type", "const", "enum", "multipleOf", "maximum",
                             "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
                             "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
                             "maxContains", "minContains", "maxProperties", "minProperties",
                             "required", "dependentRequired"}),
    "unevaluated": frozenset({"unevaluatedItems", "unevaluatedProperties"}),
}

_ANNOTATIONS = frozenset({
    "$schema", "$id", "id", "$anchor", "$dynamicAnchor", "$recursiveAnchor", "$defs",
    "definitions", "$vocabulary", "$comment", "title", "description", "default", "examples",
    "example", "deprecated", "readOnly", "writeOnly", "contentMediaType", "contentEncoding",
    "contentSchema", "discriminator", "xml", "externalDocs",
})
_OBJECT_KWS = ("properties", "patternProperties", "additionalProperties", "required",
               "propertyNames", "minProperties", "maxProperties", "dependentRequired",
               "dependencies", "unevaluatedProperties")
_ARRAY_KWS = ("items", "prefixItems", "additionalItems", "minItems", "maxItems", "contains",
              "minContains", "maxContains", "uniqueItems", "unevaluatedItems")
_STRING_KWS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_KWS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_INPLACE_KWS = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref",
                "$dynamicRef", "$recursiveRef", "dependentSchemas", "dependencies", "enum",
                "const", "type", "nullable")


@dataclass(frozen=True)
class JsonOptions:
    """How a schema is lowered.

    Attributes
    ----------
    whitespace:
        Most whitespace bytes ``[ \\t\\n\\r]`` allowed at each structural position (0 =
        compact).  Bounded so that a model cannot loop on whitespace forever.
    additional_properties:
        Meaning of an *omitted* ``additionalProperties`` in a schema that declares
        ``properties`` or ``patternProperties``: ``"allow"`` (JSON Schema semantics) or
        ``"forbid"`` (what tool-calling grammars usually want).
    strict:
        ``True``: a keyword that cannot be enforced exactly raises
        :class:`~grammar.errors.UnsupportedSchemaError`.  ``False``: it is ignored and
        reported in :attr:`SchemaResult.ignored`.
    max_repeat:
        Largest count tracked explicitly by a product construction (``minProperties`` /
        ``maxProperties`` next to declared properties, ``minContains``/``maxContains``).
        Larger bounds are unsupported.  Plain repetition bounds (``maxItems``,
        ``maxLength``, ``minProperties`` without declared properties ...) are lazy in the
        IR and have no limit.
    formats:
        ``"assert"``: ``format`` is validated (the usual choice for generation);
        ``"annotate"``: ``format`` is ignored, as the core JSON Schema vocabularies say.
    nullable:
        Honour OpenAPI's ``nullable: true`` (adds ``null`` to the schema's types).
    float_safe:
        Restrict number spellings to those a JSON parser turns into finite values
        (Python ``json.loads``: integers are exact ints, anything with a fraction or an
        exponent becomes a float, ``1e400`` becomes ``inf``): ``integer`` is plain digits
        (no ``1.0``, no exponent) and other numbers have at most 300 integer digits and a
        two-digit exponent.  Off by default (JSON Schema semantics); tool grammars turn it
        on, since their arguments are parsed by an application.
    """

    whitespace: int = 16
    additional_properties: Literal["allow", "forbid"] = "allow"
    strict: bool = True
    max_repeat: int = 256
    formats: Literal["assert", "annotate"] = "assert"
    nullable: bool = True
    float_safe: bool = False

    def __post_init__(self) -> None:
        if self.whitespace < 0:
            raise ValueError("whitespace must be >= 0")
        if self.additional_properties not in ("allow", "forbid"):
            raise ValueError("additional_properties must be 'allow' or 'forbid'")
        if self.formats not in ("assert", "annotate"):
            raise ValueError("formats must be 'assert' or 'annotate'")


@dataclass(frozen=True)
class SchemaResult:
    """A compiled schema.

    Attributes
    ----------
    term:
        The language of serialised valid JSON values (no leading/trailing whitespace).
    ignored:
        ``(json pointer, keyword)`` pairs that were not enforced: unsupported keywords
        under ``strict=False`` and unknown ``format`` values (annotations).
    narrowed:
        ``(json pointer, keyword)`` pairs enforced by a *sound subset* (some valid values
        are rejected, no invalid one is accepted), e.g. ``format: hostname``.
    """

    term: Term
    ignored: tuple[tuple[str, str], ...] = ()
    narrowed: tuple[tuple[str, str], ...] = field(default=())


def json_value_term(options: JsonOptions = JsonOptions()) -> Term:
    """Any JSON value (free-form ``{}``, ``true``), any nesting depth (a recursive
    :class:`~grammar.ir.Rule`), with ``options.whitespace`` bounding whitespace runs."""
    return _json_value(options.whitespace)


# ----------------------------------------------------------------------------- nodes

def _esc(tok: str) -> str:
    return tok.replace("~", "~0").replace("/", "~1")


class _Node:
    """A schema (dict or bool) in its resolution context."""

    __slots__ = ("schema", "resolver", "draft", "pointer", "key", "_kids", "disabled",
                 "_active")

    def __init__(self, schema, resolver, draft: int, pointer: str, key,
                 disabled: frozenset = frozenset()) -> None:
        self.disabled = disabled
        self.schema = schema
        self.resolver = resolver
        self.draft = draft
        self.pointer = pointer
        self.key = key
        self._kids: dict | None = None
        self._active: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"<node {self.pointer or '#'}>"

    def get(self, kw: str, default=None):
        a = self._active
        if a is None:
            a = self._keywords()
        return self.schema[kw] if kw in a else default

    def has(self, kw: str) -> bool:
        a = self._active
        if a is None:
            a = self._keywords()
        return kw in a

    def _keywords(self) -> frozenset[str]:
        """The schema's keys that act as keywords here (computed once: the schema, the
        draft and the disabled vocabularies of a node never change)."""
        s = self.schema
        if not isinstance(s, dict):
            a: frozenset[str] = frozenset()
        else:
            d = self.draft
            shadowed = d <= 7 and "$ref" in s
            a = frozenset(
                kw for kw in s
                if not (shadowed and kw != "$ref") and kw not in self.disabled
                and _SINCE.get(kw, 0) <= d and _UNTIL.get(kw, 9999) >= d)
        self._active = a
        return a


class _Lit:
    """A ``const``/``enum`` value standing in a location set (it fixes key orders)."""

    __slots__ = ("value", "key")

    def __init__(self, value) -> None:
        self.value = value
        self.key = ("lit", id(value))


_TRUE_KEY = ("bool", True)
_FALSE_KEY = ("bool", False)


class _Ctx:
    """Reference resolution and location sets, shared by the compiler and
    :func:`canonical_instance`."""

    def __init__(self, schema, options: JsonOptions, remotes, draft) -> None:
        self.options = options
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as e:
                raise SchemaError(f"schema is not valid JSON: {e}") from None
        if not isinstance(schema, (dict, bool)):
            raise SchemaError("a schema must be an object or a boolean")
        self.schema = schema
        self.remotes = remotes
        self.disabled: frozenset[str] = frozenset()
        self.format_assert = options.formats == "assert"
        d = self._draft_of(schema, None)
        if d is None and isinstance(schema, dict) and isinstance(schema.get("$schema"), str):
            d = self._custom_metaschema(schema["$schema"])
        if draft is not None:
            dd = DRAFTS.get(draft.rstrip("#"), None) if isinstance(draft, str) else (
                draft if draft in _SPECS else None)
            if dd is None:
                raise ValueError(f"unknown draft {draft!r} (use one of {sorted(DRAFTS)[:5]} "
                                 "or 4, 6, 7, 2019, 2020)")
            if d is None:
                d = dd
        if d is None:
            d = 2020
        self.default_draft = d
        self.remotes = remotes
        self._docs: dict[str, int] = {}
        self.dynamic = _mentions_dynamic(schema)
        if isinstance(remotes, Mapping):
            self.dynamic = self.dynamic or any(_mentions_dynamic(v) for v in remotes.values())
        spec = _SPECS[d]
        registry = _meta_registry().combine(referencing.Registry(retrieve=self._retrieve))
        root = referencing.Resource.from_contents(schema, default_specification=spec) \
            if isinstance(schema, dict) and "$schema" in schema and \
            self._draft_of(schema, None) is not None else spec.create_resource(schema)
        self.root_resolver = registry.resolver_with_root(root)
        self._nodes: dict = {}
        self._child_cache: dict = {}
        self._sigmas: dict = {}
        self._pat_cache: dict = {}
        self.root = self.node(schema, self.root_resolver, d, "")

    # -- drafts and retrieval
    @staticmethod
    def _draft_of(schema, default):
        if isinstance(schema, dict) and isinstance(schema.get("$schema"), str):
            uri = schema["$schema"].rstrip("#")
            return DRAFTS.get(uri, default)
        return default

    def _custom_metaschema(self, uri: str) -> int | None:
        """Draft of a schema whose ``$schema`` is a custom meta-schema (looked up in
        ``remotes``); custom vocabularies that switch off assertions are unsupported."""
        base = urldefrag(uri)[0]
        doc = None
        if isinstance(self.remotes, Mapping):
            doc = self.remotes.get(base)
        elif callable(self.remotes):
            doc = self.remotes(base)
        if not isinstance(doc, dict):
            return None
        d = self._draft_of(doc, None)
        vocab = doc.get("$vocabulary")
        if isinstance(vocab, dict) and d is not None and d >= 2019:
            year = "2019-09" if d == 2019 else "2020-12"
            on = {v.rsplit("/", 1)[-1] for v in vocab
                  if v.startswith(f"https://json-schema.org/draft/{year}/vocab/")}
            disabled: set[str] = set()
            for name, kws in _VOCABS.items():
                if name not in on:
                    disabled |= kws
            if d == 2019 and "applicator" in on:
                disabled -= _VOCABS["unevaluated"]
            self.disabled = frozenset(disabled)
            if "format-assertion" in on:
                self.format_assert = True
        return d

    def _retrieve(self, uri: str):
        base = urldefrag(uri)[0]
        doc = None
        if isinstance(self.remotes, Mapping):
            if base in self.remotes:
                doc = self.remotes[base]
        elif callable(self.remotes):
            doc = self.remotes(base)
        if doc is None:
            raise referencing.exceptions.NoSuchResource(ref=uri)
        if _mentions_dynamic(doc):
            self.dynamic = True
        d = self._draft_of(doc, self.default_draft)
        self._docs[base] = d
        return referencing.Resource.from_contents(doc, default_specification=_SPECS[d])

    # -- nodes
    def node(self, schema, resolver, draft: int, pointer: str) -> _Node:
        if isinstance(schema, bool):
            key = _TRUE_KEY if schema else _FALSE_KEY
        else:
            if not isinstance(schema, dict):
                raise SchemaError("a subschema must be an object or a boolean",
                                  pointer=pointer)
            dyn = ()
            if self.dynamic:
                seen = []
                for uri, _ in resolver.dynamic_scope():
                    if uri in seen:
                        seen.remove(uri)
                    seen.append(uri)
                dyn = tuple(seen)
            key = (id(schema), resolver._base_uri, draft, dyn)
        n = self._nodes.get(key)
        if n is None:
            n = self._nodes[key] = _Node(schema, resolver, draft, pointer, key,
                                         self.disabled)
        return n

    def child(self, parent: _Node, sub, *path: str) -> _Node:
        ck = (parent.key, path, id(sub))
        n = self._child_cache.get(ck)
        if n is not None and n.schema is sub:
            return n
        n = self._child(parent, sub, *path)
        self._child_cache[ck] = n
        return n

    def _child(self, parent: _Node, sub, *path: str) -> _Node:
        pointer = parent.pointer + "".join("/" + _esc(str(p)) for p in path)
        if isinstance(sub, bool):
            return self.node(sub, parent.resolver, parent.draft, pointer)
        if not isinstance(sub, dict):
            raise SchemaError("a subschema must be an object or a boolean", pointer=pointer)
        draft = parent.draft
        if "$id" not in sub and "id" not in sub:
            # no identifier: the subschema keeps its parent's base URI and draft
            return self.node(sub, parent.resolver, draft, pointer)
        if isinstance(sub.get("$schema"), str):
            draft = self._draft_of(sub, draft)
        spec = _SPECS[draft]
        try:
            resolver = parent.resolver.in_subresource(spec.create_resource(sub))
        except Exception as e:  # pragma: no cover - malformed ids
            raise SchemaError(f"bad subschema: {e}", pointer=pointer) from None
        return self.node(sub, resolver, draft, pointer)

    def resolve(self, node: _Node, kw: str) -> _Node:
        ref = node.schema[kw]
        pointer = node.pointer + "/" + _esc(kw)
        if not isinstance(ref, str):
            raise SchemaError(f"{kw} must be a string", pointer=pointer, keyword=kw)
        try:
            if kw == "$recursiveRef":
                resolved = referencing.jsonschema.lookup_recursive_ref(node.resolver)
            elif kw == "$ref":
                resolved = self._static_lookup(node.resolver, ref)
            else:
                resolved = node.resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as e:
            raise SchemaError(f"cannot resolve {kw} {ref!r} ({type(e).__name__})",
                              pointer=pointer, keyword=kw) from None
        except Exception as e:
            raise SchemaError(f"cannot resolve {kw} {ref!r}: {e}", pointer=pointer,
                              keyword=kw) from None
        target = resolved.contents
        res = resolved.resolver
        draft = self._target_draft(res, node.draft)
        return self.node(target, res, draft, f"{pointer}->{ref}")

    @staticmethod
    def _static_lookup(resolver, ref: str):
        """``$ref`` lookup where a ``$dynamicAnchor`` behaves as a plain anchor."""
        if ref.startswith("#"):
            uri, fragment = resolver._base_uri, ref[1:]
        else:
            from urllib.parse import urljoin
            uri, fragment = urldefrag(urljoin(resolver._base_uri, ref))
        if fragment and not fragment.startswith("/"):
            try:
                retrieved = resolver._registry.get_or_retrieve(uri)
                anchor = retrieved.registry.anchor(uri, fragment)
            except Exception:
                return resolver.lookup(ref)
            value = anchor.value
            if isinstance(value, referencing.jsonschema.DynamicAnchor):
                sub = resolver._evolve(registry=anchor.registry, base_uri=uri)
                return referencing._core.Resolved(
                    contents=value.resource.contents,
                    resolver=sub.in_subresource(value.resource))
        return resolver.lookup(ref)

    def _target_draft(self, resolver, default: int) -> int:
        base = resolver._base_uri
        try:
            root = resolver.lookup(base).contents if base else self.schema
        except Exception:
            root = None
        d = self._draft_of(root, None)
        if d is not None:
            return d
        doc = urldefrag(base)[0]
        if doc in self._docs:
            return self._docs[doc]
        return default

    # -- in-place closure and location sets
    def inplace(self, n: _Node) -> list:
        """Sub-nodes applied to the same instance location (with literals)."""
        if n._kids is not None:
            return n._kids
        out: list = []
        s = n.schema
        if isinstance(s, dict):
            for kw in ("$ref", "$dynamicRef", "$recursiveRef"):
                if n.has(kw):
                    out.append(self.resolve(n, kw))
            for kw in ("allOf", "anyOf", "oneOf"):
                v = n.get(kw)
                if isinstance(v, list):
                    out.extend(self.child(n, x, kw, i) for i, x in enumerate(v))
            for kw in ("not", "if", "then", "else"):
                if n.has(kw):
                    out.append(self.child(n, s[kw], kw))
            for kw in ("dependentSchemas", "dependencies"):
                v = n.get(kw)
                if isinstance(v, dict):
                    out.extend(self.child(n, x, kw, k) for k, x in v.items()
                               if isinstance(x, (dict, bool)))
            if n.has("const") and isinstance(s["const"], (dict, list)):
                out.append(_Lit(s["const"]))
            e = n.get("enum")
            if isinstance(e, list):
                out.extend(_Lit(x) for x in e if isinstance(x, (dict, list)))
        n._kids = out
        return out

    def sigma(self, starts: Iterable) -> "_Sigma":
        order: list = []
        seen: set = set()
        stack = list(reversed(list(starts)))
        while stack:
            x = stack.pop()
            if x.key in seen:
                continue
            seen.add(x.key)
            order.append(x)
            if isinstance(x, _Node):
                stack.extend(reversed(self.inplace(x)))
        key = tuple(x.key for x in order)
        sg = self._sigmas.get(key)
        if sg is None:
            sg = self._sigmas[key] = _Sigma(self, tuple(order), key, len(self._sigmas))
        return sg

    def key_matches(self, pattern: str, key: str) -> bool:
        ck = (pattern, key)
        v = self._pat_cache.get(ck)
        if v is None:
            try:
                v = matches(pattern_string_term(pattern), json.dumps(key)[1:-1].encode())
            except RegexError:
                v = False
            self._pat_cache[ck] = v
        return v


_META_REGISTRY: list = []


def _meta_registry():
    """The official meta-schemas (crawled once)."""
    if not _META_REGISTRY:
        from jsonschema_specifications import REGISTRY
        _META_REGISTRY.append(REGISTRY.crawl())
    return _META_REGISTRY[0]


def _mentions_dynamic(doc) -> bool:
    try:
        text = json.dumps(doc)
    except (TypeError, ValueError):
        return False
    return "$dynamicAnchor" in text or "$recursiveAnchor" in text


class _Sigma:
    """The set of (sub)schemas that may apply at one instance location."""

    __slots__ = ("ctx", "members", "key", "id", "_order", "_kids", "_items", "_members_table")

    def __init__(self, ctx: _Ctx, members: tuple, key: tuple, sid: int) -> None:
        self.ctx = ctx
        self.members = members
        self.key = key
        self.id = sid
        self._order: tuple | None = None
        self._kids: dict = {}
        self._items: _Sigma | None = None
        self._members_table: list[tuple] | None = None

    def order(self) -> tuple[str, ...]:
        """Canonical order of the declared names at this location."""
        if self._order is not None:
            return self._order
        first: list[str] = []
        rest: list[str] = []
        seen: set[str] = set()

        def add(lst, k):
            if isinstance(k, str) and k not in seen:
                seen.add(k)
                lst.append(k)

        for m in self.members:
            if isinstance(m, _Node):
                p = m.get("properties")
                if isinstance(p, dict):
                    for k in p:
                        add(first, k)
        for m in self.members:
            if isinstance(m, _Node):
                r = m.get("required")
                if isinstance(r, list):
                    for k in r:
                        add(rest, k)
                for kw in ("dependentRequired", "dependencies", "dependentSchemas"):
                    d = m.get(kw)
                    if isinstance(d, dict):
                        for k, v in d.items():
                            add(rest, k)
                            if isinstance(v, list):
                                for x in v:
                                    add(rest, x)
            elif isinstance(m.value, dict):
                for k in m.value:
                    add(rest, k)
        self._order = tuple(first + rest)
        return self._order

    def child(self, key: str | None) -> "_Sigma":
        """Location set of the value of property ``key`` (``None``: any key not in
        :meth:`order`)."""
        sg = self._kids.get(key)
        if sg is not None:
            return sg
        ctx = self.ctx
        starts: list = []
        for m, props, pats, addl, unev in self._object_members():
            if props is None:   # a literal
                if key is not None and isinstance(m.value, dict):
                    v = m.value.get(key)
                    if isinstance(v, (dict, list)):
                        starts.append(_Lit(v) if not _has_lit(starts, v) else None)
                continue
            if key is None:
                starts.extend(ctx.child(m, s, "patternProperties", p) for p, s in pats)
                if addl is not None:
                    starts.append(addl)
            else:
                declared = key in props
                if declared:
                    starts.append(ctx.child(m, props[key], "properties", key))
                matched = False
                for p, s in pats:
                    if ctx.key_matches(p, key):
                        matched = True
                        starts.append(ctx.child(m, s, "patternProperties", p))
                if not declared and not matched and addl is not None:
                    starts.append(addl)
            if unev is not None:
                starts.append(unev)
        sg = ctx.sigma([s for s in starts if s is not None])
        self._kids[key] = sg
        return sg

    def _object_members(self) -> list[tuple]:
        """``(member, properties, patternProperties items, additionalProperties node,
        unevaluatedProperties node)`` of each member, looked up once for all its child
        locations (``properties`` is None for a literal, {} when absent)."""
        t = self._members_table
        if t is None:
            ctx = self.ctx
            t = []
            for m in self.members:
                if isinstance(m, _Lit):
                    t.append((m, None, (), None, None))
                    continue
                props = m.get("properties")
                pats = m.get("patternProperties")
                addl = m.get("additionalProperties")
                unev = m.get("unevaluatedProperties")
                t.append((m, props if isinstance(props, dict) else {},
                          tuple(pats.items()) if isinstance(pats, dict) else (),
                          None if addl is None else ctx.child(m, addl, "additionalProperties"),
                          None if unev is None else ctx.child(m, unev, "unevaluatedProperties")))
            self._members_table = t
        return t

    def items(self) -> "_Sigma":
        """Location set of array elements (all indices share one set)."""
        if self._items is not None:
            return self._items
        ctx = self.ctx
        starts: list = []
        for m in self.members:
            if isinstance(m, _Lit):
                if isinstance(m.value, list):
                    starts.extend(_Lit(v) for v in m.value if isinstance(v, (dict, list)))
                continue
            for kw in ("prefixItems", "items"):
                v = m.get(kw)
                if isinstance(v, list):
                    starts.extend(ctx.child(m, s, kw, i) for i, s in enumerate(v))
                elif v is not None:
                    starts.append(ctx.child(m, v, kw))
            for kw in ("additionalItems", "contains", "unevaluatedItems"):
                v = m.get(kw)
                if v is not None:
                    starts.append(ctx.child(m, v, kw))
        self._items = ctx.sigma(starts)
        return self._items


def _has_lit(starts, v) -> bool:
    return any(isinstance(s, _Lit) and s.value is v for s in starts)


# ------------------------------------------------------------------------- compiler

def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    raise TypeError(type(v).__name__)


class _Compiler:
    """Lowers conjunctions of schema nodes at a location to per-type terms.

    ``lang(c, sg)`` returns ``{json type: term}`` for the conjunction ``c`` (closed under
    ``allOf``/``$ref``) at location set ``sg``; ``value(nodes, sg)`` is the union of those
    terms, memoised, and returns a :class:`~grammar.ir.Rule` when a location refers back to
    itself through an object or array (recursive schemas).  ``universe(sg)`` is the
    language of every value in the canonical order of ``sg``; complements are taken
    inside it."""

    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx
        self.o = ctx.options
        self.w = ws(self.o.whitespace)
        self.sep = seq(self.w, lit(","), self.w)
        self.colon = seq(self.w, lit(":"), self.w)
        self.sep_quote = _sep_quote(self.o.whitespace)
        self.ignored: dict[tuple[str, str], None] = {}
        self.narrowed: dict[tuple[str, str], None] = {}
        self._lang_memo: dict = {}
        self._value_memo: dict = {}
        self._busy: set = set()
        self._rules: dict = {}
        self._obj_memo: dict = {}
        self._leaf_memo: dict = {}
        self._uneval_dynamic: set = set()
        self._true = ctx.node(True, ctx.root_resolver, ctx.default_draft, "")

    # -- reporting
    def unsupported(self, n: _Node, kw: str, msg: str) -> None:
        ptr = n.pointer + "/" + _esc(kw)
        if self.o.strict:
            raise UnsupportedSchemaError(msg, pointer=ptr, keyword=kw)
        self.ignored[(ptr, kw)] = None

    def bad(self, n: _Node, kw: str, msg: str):
        raise SchemaError(msg, pointer=n.pointer + "/" + _esc(kw), keyword=kw)

    # -- conjunctions
    def conj(self, nodes: Iterable[_Node]):
        """Close under ``allOf``/``$ref`` (in place, always applied); drop trivial
        nodes.  Returns a tuple of nodes, or ``None`` for the empty language."""
        out: dict = {}
        stack = list(nodes)
        while stack:
            n = stack.pop()
            if n.key in out:
                continue
            s = n.schema
            if s is True:
                continue
            if s is False:
                return None
            out[n.key] = n
            for kw in ("$ref", "$dynamicRef", "$recursiveRef"):
                if n.has(kw):
                    stack.append(self.ctx.resolve(n, kw))
            a = n.get("allOf")
            if a is not None:
                if not isinstance(a, list) or not a:
                    self.bad(n, "allOf", "allOf must be a non-empty array")
                stack.extend(self.ctx.child(n, x, "allOf", i) for i, x in enumerate(a))
        return tuple(m for m in out.values() if not _trivial(m))

    def value(self, nodes: Iterable[_Node], sg: _Sigma) -> Term:
        """Value term (all types) of the conjunction of ``nodes`` at location ``sg``."""
        c = self.conj(nodes)
        if c is None:
            return NOTHING
        leaf = _leaf_key(c[0]) if len(c) == 1 else None
        if leaf is not None:
            hit = self._leaf_memo.get(leaf)
            if hit is None:
                ni, nn = list(self.ignored), list(self.narrowed)
                t = alt(*self.lang(c, sg).values())
                reports = ([kw for (_p, kw) in self.ignored if (_p, kw) not in ni],
                           [kw for (_p, kw) in self.narrowed if (_p, kw) not in nn])
                self._leaf_memo[leaf] = (t, reports)
                return t
            t, (ign, nar) = hit
            for kw in ign:      # same reports at this pointer too
                self.ignored[(c[0].pointer + "/" + kw, kw)] = None
            for kw in nar:
                self.narrowed[(c[0].pointer + "/" + kw, kw)] = None
            return t
        key = (frozenset(m.key for m in c), sg.id)
        t = self._value_memo.get(key)
        if t is not None:
            return t
        if not c and not any(isinstance(m, _Node) and not _trivial(m) for m in sg.members) \
                and not any(isinstance(m, _Lit) for m in sg.members):
            t = _json_value(self.o.whitespace)
            self._value_memo[key] = t
            return t
        return self._value_build(c, sg, key)

    def _value_build(self, c: tuple, sg: _Sigma, key: tuple) -> Term:
        """The union of ``lang(c, sg)``; a rule when the location refers back to itself
        while it is built (defined here once the build ends)."""
        if key in self._busy:
            r = self._rules.get(key)
            if r is None:
                r = self._rules[key] = Rule(f"schema@{c[0].pointer if c else 'any'}#{sg.id}")
            return r
        lang = self.lang(c, sg)
        t = alt(*lang.values())
        r = self._rules.get(key)
        if r is not None:
            r.define(t)
            t = r
        self._value_memo[key] = t
        return t

    def lang_of(self, nodes: Iterable[_Node], sg: _Sigma) -> dict:
        c = self.conj(nodes)
        if c is None:
            return {}
        return self.lang(c, sg)

    def universe(self, sg: _Sigma) -> dict:
        """``lang((), sg)``, built through :meth:`_value_build` so that a nested location
        that refers back to this one gets a rule that is then defined."""
        key = (frozenset(), sg.id)
        if key not in self._value_memo and key not in self._busy:
            self._value_build((), sg, key)
        return self.lang((), sg)

    def _universe_of(self, sg: _Sigma, t: str) -> Term:
        """``universe(sg)[t]``: a scalar type's universe is built alone (it does not depend
        on the location), so a scalar intersection builds no object or array universe."""
        if t in ("object", "array"):
            return self.universe(sg)[t]
        return self._scalar(t, ())

    def lang(self, c: tuple, sg: _Sigma) -> dict:
        key = (frozenset(m.key for m in c), sg.id)
        v = self._lang_memo.get(key)
        if v is not None:
            return v
        if key in self._busy:
            n = c[0] if c else None
            raise SchemaError("schema refers to itself at the same instance location "
                              "(in-place recursion)", pointer=n.pointer if n else "")
        self._busy.add(key)
        try:
            v = self._build(c, sg)
        finally:
            self._busy.discard(key)
        self._lang_memo[key] = v
        return v

    # -- the per-type construction
    def _build(self, c: tuple, sg: _Sigma) -> dict:
        o = self.o
        types = set(TYPES)
        int_drafts: list[int] = []
        for m in c:
            t = m.get("type")
            if t is None:
                continue
            ts = t if isinstance(t, list) else [t]
            allowed = set()
            integer = False
            for x in ts:
                if x == "integer":
                    integer = True
                elif x in TYPES:
                    allowed.add(x)
                elif x == "any" and m.draft <= 3:  # pragma: no cover
                    allowed |= set(TYPES)
                else:
                    self.bad(m, "type", f"unknown type {x!r}")
            if o.nullable and m.get("nullable") is True:
                allowed.add("null")
            if integer and "number" not in allowed:
                allowed.add("number")
                int_drafts.append(m.draft)
            types &= allowed
        for m in c:
            for kw, kind in (("unevaluatedProperties", "obj"), ("unevaluatedItems", "arr")):
                if m.has(kw) and self._dynamic_touches(
                        self._static_closure(m),
                        _OBJECT_KWS + ("dependentSchemas",) if kind == "obj" else _ARRAY_KWS):
                    self._uneval_dynamic.add((m.key, kind))
        out: dict[str, Term] = {t: self._scalar(t, c, int_drafts)
                                for t in ("null", "boolean", "number", "string") if t in types}
        # the structural types: a conjunction without their keywords leaves the
        # location's universe, built only if an intersection still needs it (an anyOf's
        # branches replace it; c == () is the universe itself)
        if "array" in types:
            out["array"] = _UNBUILT if c and not _mentions(c, _ARRAY_KWS) else self._array(c, sg)
        if "object" in types:
            out["object"] = (_UNBUILT if c and not _mentions(c, _OBJECT_KWS)
                             else self._object(c, sg))
        out = {k: v for k, v in out.items() if v is not NOTHING}
        # enum / const
        for m in c:
            lits = None
            if m.has("const"):
                lits = [m.schema["const"]]
            if m.has("enum"):
                e = m.schema["enum"]
                if not isinstance(e, list):
                    self.bad(m, "enum", "enum must be an array")
                lits = e if lits is None else [x for x in lits if any(_json_eq(x, y) for y in e)]
            if lits is None:
                continue
            per: dict[str, list] = {}
            for v in lits:
                try:
                    per.setdefault(_json_type(v), []).append(v)
                except TypeError:
                    self.bad(m, "enum", "enum/const value is not JSON")
            for t in list(out):
                vs = per.get(t)
                if vs and (t in ("string", "boolean", "null") or (
                        t == "number" and not o.float_safe and all(d > 4 for d in int_drafts))):
                    # these constraints are on the decoded value (draft-4 integers and
                    # float_safe numbers are on the spelling), so one spelling of a value
                    # decides for all: keep the values that pass, no intersection
                    if out[t] is not _SCALAR_UNIVERSES[t]():
                        vs = [v for v in vs
                              if matches(out[t], json.dumps(v, ensure_ascii=False).encode())]
                    if vs:
                        out[t] = alt(*[self.literal(v, sg) for v in vs])
                        continue
                if not vs:
                    del out[t]
                    continue
                out[t] = _meet(out[t], alt(*[self.literal(v, sg) for v in vs]), None)
        # non-conjunctive applicators
        if any(self._has_dyn(m) for m in c):
            out = self._dynamic(c, sg, out)
        for t, v in out.items():
            if v is _UNBUILT:
                out[t] = self._object(c, sg) if t == "object" else self._array(c, sg)
        if any((m.key, k) in self._uneval_dynamic for m in c for k in ("obj", "arr")):
            out = self._uneval_constraints(c, sg, out)
        return {k: v for k, v in out.items() if v is not NOTHING}

    def _scalar(self, t: str, c: tuple, int_drafts: list[int] | None = None) -> Term:
        """The term of scalar type ``t`` under the conjunction ``c``."""
        if t == "null":
            return null_term()
        if t == "boolean":
            return boolean_term()
        if t == "number":
            return self._number(c, int_drafts or [])
        return self._string(c)

    def _finite_values(self, members: list, name: str) -> frozenset | None:
        """The scalar values that property ``name`` may take under every node of
        ``members`` (their ``const``/``enum``, JSON-typed so ``True != 1``), or None when
        they leave it unbounded or allow a non-scalar."""
        vals: frozenset | None = None
        for m in members:
            props = m.get("properties")
            if not isinstance(props, dict) or name not in props:
                continue
            for q in self._static_closure(self.ctx.child(m, props[name], "properties", name)):
                if q.has("const"):
                    cands = [q.schema["const"]]
                elif isinstance(q.get("enum"), list):
                    cands = q.schema["enum"]
                else:
                    continue
                keys = [_scalar_key(x) for x in cands]
                if None in keys:
                    continue
                v = frozenset(keys)
                vals = v if vals is None else vals & v
        return vals

    def _discriminated(self, c: tuple, m: _Node, branches: list) -> bool:
        """Whether no object at this location can satisfy two of ``m``'s ``oneOf``
        ``branches``: for every pair, some property that every such object has (required
        here or by either branch) takes values from disjoint finite sets in the two (a
        ``type`` tag: ``{"enum": ["AzureBlob"]}``).  Then ``oneOf`` is ``anyOf`` here and
        needs no complement of the other branches."""
        if len(branches) < 2 or len(branches) > 64:   # pairs checked: at most 2016
            return False
        here = _required_names(c)
        info = []
        for i, b in enumerate(branches):
            mem = self._static_closure(self.ctx.child(m, b, "oneOf", i))
            info.append((mem, _required_names(mem), {}))

        def values(k: int, name: str):
            memo = info[k][2]
            if name not in memo:
                memo[name] = self._finite_values(info[k][0], name)
            return memo[name]

        for i in range(len(info)):
            for j in range(i + 1, len(info)):
                names = here | info[i][1] | info[j][1]
                if not any((vi := values(i, k)) is not None and (vj := values(j, k)) is not None
                           and not (vi & vj) for k in sorted(names)):
                    return False
        return True

    @staticmethod
    def _has_dyn(m: _Node) -> bool:
        return any(m.has(k) for k in ("anyOf", "oneOf", "not", "if", "dependentSchemas",
                                      "dependencies"))

    def _presence(self, c: tuple, sg: _Sigma, out: dict) -> set:
        """Apply the ``anyOf``/``oneOf`` of ``c`` whose branches only require names
        (``{"oneOf": [{"required": ["a"]}, {"required": ["b"]}]}``) to ``out`` without
        intersections: the object is built with the names' presence tracked (see
        :meth:`_object_build`), and a ``oneOf`` of several such branches excludes every
        other type (all its branches accept a non-object).  Returns the ``(node key,
        keyword)`` pairs applied; none when the object here is already constrained
        otherwise, more than :data:`_MAX_PRESENCE_NAMES` names are involved, or a name is
        not declared here (its presence could not be tracked)."""
        if "object" not in out:
            return set()
        presence, handled = [], set()
        for m in c:
            for kw in ("anyOf", "oneOf"):
                sets = _required_only(m.get(kw))
                if sets is not None:
                    presence.append((kw, sets))
                    handled.add((m.key, kw))
        if not presence:
            return set()
        names = _presence_names(presence)
        cur = out["object"]
        if (len(names) > _MAX_PRESENCE_NAMES or not names <= set(sg.order())
                or not (cur is _UNBUILT or cur is self._obj_memo.get(self._object_key(c, sg)))):
            return set()
        out["object"] = self._object(c, sg, presence=tuple(presence))
        if any(kw == "oneOf" and len(sets) > 1 for kw, sets in presence):
            for t in list(out):
                if t != "object":
                    del out[t]
        return handled

    def _dynamic(self, c: tuple, sg: _Sigma, out: dict) -> dict:
        ctx = self.ctx
        memo: dict[str, Term] = {}

        def univ(t: str) -> Term:   # the universe of type t here, built on first use
            u = memo.get(t)
            if u is None:
                u = memo[t] = self._universe_of(sg, t)
            return u

        handled = self._presence(c, sg, out)
        for m in c:
            s = m.schema
            for kw in ("anyOf", "oneOf"):
                br = m.get(kw)
                if br is None or (m.key, kw) in handled:
                    continue
                if not isinstance(br, list) or not br:
                    self.bad(m, kw, f"{kw} must be a non-empty array")
                langs = [self.lang_of([ctx.child(m, x, kw, i)], sg) for i, x in enumerate(br)]
                for t in list(out):
                    parts = [lg.get(t, NOTHING) for lg in langs]
                    # every branch language lies inside the universe of this location, so
                    # a side that is the whole universe drops out of the intersection (no
                    # intersection term: {"anyOf": [...]} alone costs what its branches
                    # do, and builds no universe when the location's own one is unbuilt)
                    if kw == "anyOf" or (t == "object" and self._discriminated(c, m, br)):
                        u = None if out[t] is _UNBUILT else univ(t)
                        out[t] = _meet(out[t], alt(*parts), u)
                    else:
                        out[t] = _meet(out[t], _exactly_one(parts, univ(t)), univ(t))
            if m.has("not"):
                L = self.lang_of([ctx.child(m, s["not"], "not")], sg)
                for t in list(out):
                    lt = L.get(t, NOTHING)
                    if lt is NOTHING:
                        continue
                    if lt is univ(t):
                        out[t] = NOTHING
                        continue
                    out[t] = _meet(out[t], both(univ(t), neg(lt)), None)
            if m.has("if"):
                I = self.lang_of([ctx.child(m, s["if"], "if")], sg)
                T = self.lang_of([ctx.child(m, s["then"], "then")], sg) if m.has("then") else None
                E = self.lang_of([ctx.child(m, s["else"], "else")], sg) if m.has("else") else None
                if T is not None or E is not None:
                    for t in list(out):
                        it = I.get(t, NOTHING)
                        tt = univ(t) if T is None else T.get(t, NOTHING)
                        et = univ(t) if E is None else E.get(t, NOTHING)
                        if it is NOTHING:
                            r = et
                        elif it is univ(t):
                            r = tt
                        else:
                            u = univ(t)
                            r = alt(_meet(it, tt, u), _meet(both(u, neg(it)), et, u))
                        out[t] = _meet(out[t], r, univ(t))
            for kw in ("dependentSchemas", "dependencies"):
                d = m.get(kw)
                if d is None or "object" not in out:
                    continue
                if not isinstance(d, dict):
                    self.bad(m, kw, f"{kw} must be an object")
                for name, sub in d.items():
                    if isinstance(sub, list):
                        continue  # dependentRequired form: handled by _object
                    L = self.lang_of([ctx.child(m, sub, kw, name)], sg)
                    lo = L.get("object", NOTHING)
                    if lo is univ("object"):
                        continue
                    without = self._object((), sg, forbid=frozenset([name]))
                    out["object"] = _meet(out["object"], alt(without, lo), univ("object"))
        return out

    # -- literals
    def literal(self, v, sg: _Sigma) -> Term:
        if v is None:
            return null_term()
        if v is True:
            return lit("true")
        if v is False:
            return lit("false")
        if isinstance(v, (int, float)):
            return number_equal_term(v)
        if isinstance(v, str):
            return string_literal(v)
        w = self.w
        if isinstance(v, list):
            if not v:
                return seq(lit("["), w, lit("]"))
            isg = sg.items()
            items = [self.literal(x, isg) for x in v]
            body = [items[0]]
            for x in items[1:]:
                body += [self.sep, x]
            return seq(lit("["), w, *body, w, lit("]"))
        if isinstance(v, dict):
            if not v:
                return seq(lit("{"), w, lit("}"))
            order = sg.order()
            keys = [k for k in order if k in v] + [k for k in v if k not in order]
            body = []
            for i, k in enumerate(keys):
                if i:
                    body.append(self.sep)
                body += [string_literal(k), self.colon, self.literal(v[k], sg.child(
                    k if k in order else None))]
            return seq(lit("{"), w, *body, w, lit("}"))
        raise TypeError(type(v).__name__)

    # -- numbers
    def _number(self, c: tuple, int_drafts: list[int]) -> Term:
        parts = []
        for d in int_drafts:
            parts.append(integer_term(draft4=d <= 4 or self.o.float_safe))
        if self.o.float_safe:
            parts.append(_float_safe_number())
        for m in c:
            vals = {}
            for kw in _NUMBER_KWS:
                if m.has(kw):
                    vals[kw] = m.schema[kw]
            if not vals:
                continue

            def num(kw):
                x = vals[kw]
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    self.bad(m, kw, f"{kw} must be a number")
                try:
                    return to_decimal(x)
                except ValueError as e:
                    self.bad(m, kw, str(e))

            if m.draft <= 4:
                if "minimum" in vals:
                    ex = vals.get("exclusiveMinimum", False)
                    parts.append(number_cmp_term(">" if ex else ">=", num("minimum")))
                if "maximum" in vals:
                    ex = vals.get("exclusiveMaximum", False)
                    parts.append(number_cmp_term("<" if ex else "<=", num("maximum")))
            else:
                for kw, op in (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"),
                               ("exclusiveMaximum", "<")):
                    if kw in vals:
                        parts.append(number_cmp_term(op, num(kw)))
            if "multipleOf" in vals:
                d = num("multipleOf")
                if d <= 0:
                    self.bad(m, "multipleOf", "multipleOf must be > 0")
                try:
                    parts.append(multiple_of_term(d))
                except UnsupportedMultipleOf as e:
                    self.unsupported(m, "multipleOf", str(e))
        if not parts:
            return number_term()
        return both(*parts) if len(parts) > 1 else parts[0]

    # -- strings
    def _string(self, c: tuple) -> Term:
        parts = []
        lo, hi = 0, None
        for m in c:
            for kw in ("minLength", "maxLength"):
                if m.has(kw):
                    x = m.schema[kw]
                    if isinstance(x, float) and x.is_integer():
                        x = int(x)
                    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
                        self.bad(m, kw, f"{kw} must be a non-negative integer")
                    if kw == "minLength":
                        lo = max(lo, x)
                    else:
                        hi = x if hi is None else min(hi, x)
            if m.has("pattern"):
                p = m.schema["pattern"]
                if not isinstance(p, str):
                    self.bad(m, "pattern", "pattern must be a string")
                try:
                    parts.append(pattern_string_term(p))
                except RegexError as e:
                    self.unsupported(m, "pattern", f"unsupported pattern: {e}")
            if m.has("format") and self.ctx.format_assert:
                f = m.schema["format"]
                try:
                    t = format_content_term(f, m.draft) if isinstance(f, str) else None
                except UnsupportedFormat as e:
                    self.unsupported(m, "format", str(e))
                    continue
                ptr = m.pointer + "/format"
                if t is None:
                    self.ignored[(ptr, "format")] = None
                else:
                    if f in NARROWED_FORMATS:
                        self.narrowed[(ptr, "format")] = None
                    parts.append(t)
        if hi is not None and hi < lo:
            return NOTHING
        if lo > 0 or hi is not None:
            parts.append(repeat(json_char_any(), lo, hi))
        if not parts:
            return string_term()
        return string_term(both(*parts) if len(parts) > 1 else parts[0])

    # -- arrays
    def _array(self, c: tuple, sg: _Sigma, extra: tuple = ()) -> Term:
        ctx = self.ctx
        isg = sg.items()
        lo, hi = 0, None
        prefixes: list[tuple[_Node, list, Any]] = []  # (node, prefix subschemas, rest)
        contains: list = []
        unique = False
        unevaluated = []
        for m in c:
            for kw in ("minItems", "maxItems"):
                if m.has(kw):
                    x = _nonneg_int(self, m, kw)
                    if kw == "minItems":
                        lo = max(lo, x)
                    else:
                        hi = x if hi is None else min(hi, x)
            prefix: list = []
            rest = None
            if m.draft >= 2020:
                p = m.get("prefixItems")
                if p is not None:
                    if not isinstance(p, list):
                        self.bad(m, "prefixItems", "prefixItems must be an array")
                    prefix = [ctx.child(m, x, "prefixItems", i) for i, x in enumerate(p)]
                it = m.get("items")
                if isinstance(it, list):
                    prefix = [ctx.child(m, x, "items", i) for i, x in enumerate(it)]
                    if m.has("additionalItems"):
                        rest = ctx.child(m, m.schema["additionalItems"], "additionalItems")
                elif it is not None:
                    rest = ctx.child(m, it, "items")
            else:
                it = m.get("items")
                if isinstance(it, list):
                    prefix = [ctx.child(m, x, "items", i) for i, x in enumerate(it)]
                    if m.has("additionalItems"):
                        rest = ctx.child(m, m.schema["additionalItems"], "additionalItems")
                elif it is not None:
                    rest = ctx.child(m, it, "items")
            if prefix or rest is not None:
                prefixes.append((m, prefix, rest))
            if m.has("contains"):
                cn = ctx.child(m, m.schema["contains"], "contains")
                mn = _nonneg_int(self, m, "minContains") if m.has("minContains") else 1
                mx = _nonneg_int(self, m, "maxContains") if m.has("maxContains") else None
                contains.append((m, cn, mn, mx))
            if m.get("uniqueItems") is True:
                unique = True
                uniq_node = m
            if m.has("unevaluatedItems"):
                unevaluated.append(m)
        if hi is not None and hi < lo:
            return NOTHING
        unique_vals = None
        if unique and not (hi is not None and hi <= 1):
            unique_vals = self._finite_items(c, prefixes, isg)
            if unique_vals is None:
                self.unsupported(uniq_node, "uniqueItems",
                                 "uniqueItems: true is not a regular constraint (supported "
                                 "only for maxItems <= 1 or a small finite set of scalar "
                                 "item values)")
        uneval_terms: list = []   # (evaluated prefix length, allowed unevaluated item)
        for m in unevaluated:
            if (m.key, "arr") in self._uneval_dynamic:
                continue
            cl = self._static_closure(m)
            ev = self._evaluated(cl, "array", m)
            if ev == "all":
                continue
            ue = ctx.child(m, m.schema["unevaluatedItems"], "unevaluatedItems")
            cs = [ctx.child(x, x.schema["contains"], "contains") for x in cl
                  if x.has("contains")]
            if cs:
                # items matching a (static, hence valid) contains are evaluated too
                either = alt(self.value([ue], isg), *[self.value([y], isg) for y in cs])
                uneval_terms.append((ev, either))
            else:
                prefixes.append((m, [self._true] * ev, ue))
        for n_eval, ue in extra:
            prefixes.append((None, [self._true] * n_eval, ue))
        n = max([len(p) for _, p, _ in prefixes] + [e for e, _ in uneval_terms], default=0)
        pos_terms = []
        for i in range(n):
            nodes = [p[i] if i < len(p) else r for _, p, r in prefixes]
            pt = self.value([x for x in nodes if x is not None], isg)
            for ev_n, either in uneval_terms:
                if i >= ev_n:
                    pt = _meet(pt, either, None)
            pos_terms.append(pt)
        rest_nodes = [r for _, _, r in prefixes if r is not None]
        rest_t = self.value(rest_nodes, isg)
        for _ev_n, either in uneval_terms:
            rest_t = _meet(rest_t, either, None)
        w, sep = self.w, self.sep
        close_first = lit("]")
        close = seq(w, lit("]"))

        def tail(i: int) -> Term:
            # i items emitted so far (i <= n); language of the rest incl. the closing
            if i < n:
                opts = []
                if i >= lo:
                    opts.append(close_first if i == 0 else close)
                if (hi is None or i < hi) and pos_terms[i] is not NOTHING:
                    opts.append(seq(EMPTY if i == 0 else sep, pos_terms[i], tail(i + 1)))
                return alt(*opts)
            rlo = max(lo - i, 0)
            rhi = None if hi is None else hi - i
            if rhi is not None and rhi < rlo:
                return NOTHING
            if rest_t is NOTHING:
                rhi = 0
                if rlo > 0:
                    return NOTHING
            if i == 0:
                opts = []
                if rlo == 0:
                    opts.append(close_first)
                if rhi is None or rhi >= 1:
                    more = repeat(seq(sep, rest_t), max(rlo - 1, 0),
                                  None if rhi is None else rhi - 1)
                    opts.append(seq(rest_t, more, close))
                return alt(*opts)
            return seq(repeat(seq(sep, rest_t), rlo, rhi), close)

        arr = seq(lit("["), w, tail(0))
        tail = None   # a recursive closure is a reference cycle: free it now, not at a collection
        if unique_vals is not None:
            arr = both(arr, self._distinct_arrays(unique_vals, rest_t))
        for m, cn, mn, mx in contains:
            if mx is not None and mn > mx:
                return NOTHING
            if mn == 0 and mx is None:
                continue
            cap = mx + 1 if mx is not None else mn
            if cap > self.o.max_repeat:
                self.unsupported(m, "maxContains" if mx is not None else "minContains",
                                 "contains count bound exceeds max_repeat")
                continue
            C = self.value([cn], isg)
            U = self.value([], isg)
            N = both(U, neg(C)) if C is not U else NOTHING
            arr = both(arr, seq(lit("["), w, self._count_list(C, N, U, mn, mx)))
        return arr

    MAX_UNIQUE_VALUES = 5

    def _finite_items(self, c: tuple, prefixes: list, isg: _Sigma):
        """The finite set of scalar values every item is restricted to (by enum/const
        of the ``items`` schemas), or ``None``."""
        if any(p for _, p, _ in prefixes):
            return None
        rest = [r for _, _, r in prefixes if r is not None]
        vals = None
        for r in rest:
            cc = self.conj([r])
            if cc is None:
                return []
            for m in cc:
                lits = [m.schema["const"]] if m.has("const") else (
                    m.schema["enum"] if m.has("enum") else None)
                if not isinstance(lits, list):
                    continue
                if vals is None:
                    vals = list(lits)
                else:
                    vals = [v for v in vals if any(_json_eq(v, x) for x in lits)]
        if vals is None:
            return None
        out: list = []
        for v in vals:
            if isinstance(v, (dict, list)):
                return None
            if not any(_json_eq(v, x) for x in out):
                out.append(v)
        return out if len(out) <= self.MAX_UNIQUE_VALUES else None

    def _distinct_arrays(self, vals: list, item: Term) -> Term:
        """Arrays whose elements are pairwise distinct values from ``vals`` (each also in
        ``item``)."""
        from itertools import permutations
        w, sep = self.w, self.sep
        terms = [both(self.literal(v, None), item) for v in vals]
        opts = [seq(lit("["), w, lit("]"))]
        for k in range(1, len(vals) + 1):
            for perm in permutations(range(len(vals)), k):
                body = [terms[perm[0]]]
                for j in perm[1:]:
                    body += [sep, terms[j]]
                opts.append(seq(lit("["), w, *body, w, lit("]")))
        return alt(*opts)

    def _count_list(self, C: Term, N: Term, U: Term, mn: int, mx: int | None) -> Term:
        """Array bodies (after ``[`` and whitespace, through ``]``) whose number of
        ``C`` elements lies in ``mn..mx`` (other elements in ``N``)."""
        sep, close_first, close = self.sep, lit("]"), seq(self.w, lit("]"))
        memo: dict = {}

        def g(k: int, first: bool) -> Term:
            key = (k, first)
            if key in memo:
                return memo[key]
            if mx is not None and k > mx:
                r = NOTHING
            elif k >= mn and mx is None:
                anyl = star(seq(sep, U))
                r = alt(close_first, seq(U, anyl, close)) if first else seq(anyl, close)
            else:
                ok = k >= mn
                if first:
                    opts = [seq(N, g(k, False)), seq(C, g(k + 1, False))]
                    if ok:
                        opts.append(close_first)
                    r = alt(*opts)
                else:
                    after = [seq(sep, C, g(k + 1, False))]
                    if ok:
                        after.append(close)
                    r = seq(star(seq(sep, N)), alt(*after))
            memo[key] = r
            return r

        r = g(0, True)
        g = None      # a recursive closure is a reference cycle: free it now, not at a collection
        return r

    # -- unevaluatedProperties / unevaluatedItems
    _DYN_KWS = ("anyOf", "oneOf", "if", "dependentSchemas")

    def _evaluated(self, cl: list, kind: str, m: _Node | None):
        """What the static closure ``cl`` evaluates: ``"all"``, or for objects
        ``(names, patterns)``, for arrays a prefix length.  Dynamic sources inside ``cl``
        are not looked at here."""
        if kind == "object":
            if any(x.has("additionalProperties") or (x is not m and
                                                     x.has("unevaluatedProperties"))
                   for x in cl):
                return "all"
            names: set[str] = set()
            pats: list[str] = []
            for x in cl:
                p = x.get("properties")
                if isinstance(p, dict):
                    names |= set(p)
                pp = x.get("patternProperties")
                if isinstance(pp, dict):
                    pats.extend(q for q in pp if q not in pats)
            return (frozenset(names), tuple(pats))
        if any((x is not m and x.has("unevaluatedItems")) or _rest_of(x) for x in cl):
            return "all"
        return max((_prefix_len(x) for x in cl), default=0)

    def _contrib(self, node: _Node, kind: str):
        """Annotations a *valid* in-place subschema contributes (None: unsupported)."""
        cl = self._static_closure(node)
        kws = _OBJECT_KWS + ("dependentSchemas",) if kind == "object" else _ARRAY_KWS
        if self._dynamic_touches(cl, kws):
            return None
        if kind == "array" and any(x.has("contains") for x in cl):
            return None
        return self._evaluated(cl, kind, None)

    @staticmethod
    def _union(kind: str, a, b):
        if a == "all" or b == "all":
            return "all"
        if kind == "object":
            return (a[0] | b[0], tuple(dict.fromkeys(a[1] + b[1])))
        return max(a, b)

    def _uneval_constraints(self, c: tuple, sg: _Sigma, out: dict) -> dict:
        """Intersect ``out`` with the unevaluatedProperties/Items constraints whose
        evaluated set depends on which dynamic branches are valid: a case split over the
        validity of each annotation-producing branch (exact; at most 6 branches)."""
        ctx = self.ctx
        for kind, t, kw in (("object", "object", "unevaluatedProperties"),
                            ("array", "array", "unevaluatedItems")):
            if t not in out:
                continue
            for m in c:
                if not m.has(kw) or (m.key, kind[:3]) not in self._uneval_dynamic:
                    continue
                cl = self._static_closure(m)
                static = self._evaluated(cl, kind, m)
                if static == "all":
                    continue
                if kind == "array" and any(x.has("contains") for x in cl):
                    self.unsupported(m, kw, "unevaluatedItems next to contains is not "
                                            "supported")
                    continue
                empty = (frozenset(), ()) if kind == "object" else 0
                sources = []   # (branch term, contribution if valid, if invalid)
                ok = True
                U = self.universe(sg)[t]
                for x in cl:
                    for akw in ("anyOf", "oneOf"):
                        br = x.get(akw)
                        for i, b in enumerate(br if isinstance(br, list) else ()):
                            bn = ctx.child(x, b, akw, i)
                            cb = self._contrib(bn, kind)
                            if cb is None:
                                ok = False
                            elif cb != empty:
                                sources.append((self.lang_of([bn], sg).get(t, NOTHING),
                                                cb, empty))
                    if x.has("if"):
                        parts = {}
                        for k2 in ("if", "then", "else"):
                            parts[k2] = (self._contrib(ctx.child(x, x.schema[k2], k2), kind)
                                         if x.has(k2) else empty)
                        if any(v is None for v in parts.values()):
                            ok = False
                        else:
                            yes = self._union(kind, parts["if"], parts["then"])
                            if yes != parts["else"]:
                                it = self.lang_of([ctx.child(x, x.schema["if"], "if")], sg)
                                sources.append((it.get(t, NOTHING), yes, parts["else"]))
                    ds = x.get("dependentSchemas")
                    if kind == "object" and isinstance(ds, dict):
                        for name, sub in ds.items():
                            cb = self._contrib(ctx.child(x, sub, "dependentSchemas", name),
                                               kind)
                            if cb is None:
                                ok = False
                            elif cb != empty:
                                without = self._object((), sg, forbid=frozenset([name]))
                                sources.append((both(U, neg(without)), cb, empty))
                if not ok or len(sources) > 6:
                    self.unsupported(m, kw, f"{kw} depends on nested or too many dynamic "
                                            "branches")
                    continue
                ue = ctx.child(m, m.schema[kw], kw)
                cases = []
                for bits in range(1 << len(sources)):
                    ev = static
                    conds = []
                    for i, (B, yes, no) in enumerate(sources):
                        if bits >> i & 1:
                            conds.append(B)
                            ev = self._union(kind, ev, yes)
                        else:
                            conds.append(both(U, neg(B)))
                            ev = self._union(kind, ev, no)
                    if ev == "all":
                        lang = U
                    elif kind == "object":
                        lang = self._object((), sg, extra=((ev[0], ev[1], ue),))
                    else:
                        lang = self._array((), sg, extra=((ev, ue),))
                    cases.append(both(lang, *conds))
                out[t] = _meet(out[t], alt(*cases), U)
        return out

    def _members_by_region(self, rules: list, pats: list, key_t, asg: _Sigma) -> Term:
        """The members whose name is outside the declared ones, as a union over regions of
        names: for each set S of the patterns a name matches (and none of the others), the
        value is the conjunction of S's schemas and of the ``additionalProperties`` of
        the rules none of whose patterns matched.  The conjunction is taken between
        schemas (one value term), never between whole members: an intersection of members
        would run a product through every value.  Regions with the same value share one
        key; a value shared by all regions needs no pattern on the key."""
        n = len(pats)
        groups: dict[Term, list[int]] = {}
        for bits in range(1 << n):
            nodes = [s_ for j, (_p, s_, _ri) in enumerate(pats) if bits >> j & 1]
            for ri, (_m, _pr, _pl, addl) in enumerate(rules):
                if addl is not None and not any(
                        bits >> j & 1 for j, (_p, _s, r2) in enumerate(pats) if r2 == ri):
                    nodes.append(addl)
            v = self.value(nodes, asg)
            if v is not NOTHING:
                groups.setdefault(v, []).append(bits)
        parts = []
        P: list[Term] = []   # the patterns' strings, built when a region needs them
        for v, regions in groups.items():
            if len(regions) == 1 << n:
                key = key_t()
            else:
                P = P or [string_term(pattern_string_term(p)) for p, _s, _ri in pats]
                key = alt(*[both(key_t(), *[P[j] if bits >> j & 1 else neg(P[j])
                                            for j in range(n)]) for bits in regions])
            parts.append(seq(key, self.colon, v))
        return alt(*parts)

    def _members_by_constraints(self, rules: list, key_t, u_add, asg: _Sigma) -> Term:
        """The members outside the declared names with more than ``_MAX_REGION_PATTERNS``
        patterns: the intersection of one constraint per pattern and per
        ``additionalProperties`` (the regions would be too many)."""
        constraints = []
        for _m, _props, plist, addl in rules:
            for p, s in plist:
                P = string_term(pattern_string_term(p))
                V = self.value([s], asg)
                if V is u_add():
                    continue
                constraints.append(alt(seq(both(key_t(), P), self.colon, V),
                                       seq(both(key_t(), neg(P)), self.colon, u_add())))
            if addl is not None:
                A = self.value([addl], asg)
                if A is NOTHING and not plist:   # no name outside `order` is allowed
                    constraints.append(NOTHING)
                    continue
                if A is u_add():
                    continue
                if plist:
                    anyP = string_term(alt(*[pattern_string_term(p) for p, _ in plist]))
                    constraints.append(alt(seq(both(key_t(), anyP), self.colon, u_add()),
                                           seq(both(key_t(), neg(anyP)), self.colon, A)))
                else:
                    constraints.append(seq(key_t(), self.colon, A))
        if not constraints:
            return seq(key_t(), self.colon, u_add())
        return both(*constraints)

    def _static_closure(self, m: _Node) -> list:
        """``m`` and the nodes it applies in place unconditionally (allOf, $ref)."""
        out, seen, stack = [], set(), [m]
        while stack:
            x = stack.pop()
            if x.key in seen or not isinstance(x.schema, dict):
                continue
            seen.add(x.key)
            out.append(x)
            for kw in ("$ref", "$dynamicRef", "$recursiveRef"):
                if x.has(kw):
                    stack.append(self.ctx.resolve(x, kw))
            a = x.get("allOf")
            if isinstance(a, list):
                stack.extend(self.ctx.child(x, y, "allOf", i) for i, y in enumerate(a))
        return out

    def _dynamic_touches(self, c, kws: tuple) -> bool:
        """Whether a dynamic applicator (anyOf, oneOf, not, if/then/else,
        dependentSchemas) of ``c`` reaches any of ``kws`` in place."""
        ctx = self.ctx
        starts = []
        for m in c:
            for kw in ("anyOf", "oneOf"):
                v = m.get(kw)
                if isinstance(v, list):
                    starts.extend(ctx.child(m, x, kw, i) for i, x in enumerate(v))
            for kw in ("not", "if", "then", "else"):
                if m.has(kw):
                    starts.append(ctx.child(m, m.schema[kw], kw))
            for kw in ("dependentSchemas", "dependencies"):
                v = m.get(kw)
                if isinstance(v, dict):
                    starts.extend(ctx.child(m, x, kw, k) for k, x in v.items()
                                  if isinstance(x, (dict, bool)))
        seen = set()
        while starts:
            x = starts.pop()
            if x.key in seen or not isinstance(x.schema, dict):
                continue
            seen.add(x.key)
            if any(x.has(k) for k in kws):
                return True
            starts.extend(y for y in ctx.inplace(x) if isinstance(y, _Node))
        return False

    # -- objects
    def _object(self, c: tuple, sg: _Sigma, forbid: frozenset = frozenset(),
                extra: tuple = (), presence: tuple = ()) -> Term:
        mkey = self._object_key(c, sg, forbid, extra, presence)
        t = self._obj_memo.get(mkey)
        if t is None:
            t = self._obj_memo[mkey] = self._object_build(c, sg, forbid, extra, presence)
        return t

    @staticmethod
    def _object_key(c: tuple, sg: _Sigma, forbid: frozenset = frozenset(), extra: tuple = (),
                    presence: tuple = ()) -> tuple:
        return (frozenset(m.key for m in c), sg.id, forbid,
                tuple((n, p, u.key) for n, p, u in extra), presence)

    def _uneval_rule(self, m: _Node, ev) -> tuple:
        names, pats = ev
        ue = self.ctx.child(m, m.schema["unevaluatedProperties"], "unevaluatedProperties")
        t_node = self._true
        return (m, {k: t_node for k in names}, [(q, t_node) for q in pats], ue)

    def _object_build(self, c: tuple, sg: _Sigma, forbid: frozenset,
                      extra: tuple = (), presence: tuple = ()) -> Term:
        """The objects of conjunction ``c`` at ``sg``.  ``presence``: ``((kw, sets), ...)``,
        each an ``anyOf``/``oneOf`` whose branches only require names (``sets``: the
        names each branch requires); at least one (``anyOf``) or exactly one
        (``oneOf``) branch must have all its names present.  The slots' walk tracks
        which of those names it has written, so no intersection is built."""
        ctx, o = self.ctx, self.o
        order = sg.order()
        lo, hi = 0, None
        required: set[str] = set()
        forbidden: set[str] = set(forbid)
        deps: dict[str, set[str]] = {}
        pn_terms: list[Term] = []
        rules = []   # (node, props dict, pats list[(pattern, node)], addl node|None|"forbid")
        for m in c:
            for kw in ("minProperties", "maxProperties"):
                if m.has(kw):
                    x = _nonneg_int(self, m, kw)
                    if kw == "minProperties":
                        lo = max(lo, x)
                    else:
                        hi = x if hi is None else min(hi, x)
            r = m.get("required")
            if r is not None:
                if not isinstance(r, list) or not all(isinstance(x, str) for x in r):
                    self.bad(m, "required", "required must be an array of strings")
                required |= set(r)
            for kw in ("dependentRequired", "dependencies"):
                d = m.get(kw)
                if isinstance(d, dict):
                    for k, v in d.items():
                        if isinstance(v, list):
                            deps.setdefault(k, set()).update(v)
            if m.has("propertyNames"):
                pn = ctx.child(m, m.schema["propertyNames"], "propertyNames")
                lg = self.lang_of([pn], ctx.sigma([pn]))
                pn_terms.append(lg.get("string", NOTHING))
            props = m.get("properties")
            pats = m.get("patternProperties")
            has_addl = m.has("additionalProperties")
            if props is None and pats is None and not has_addl:
                continue
            if props is not None and not isinstance(props, dict):
                self.bad(m, "properties", "properties must be an object")
            if pats is not None and not isinstance(pats, dict):
                self.bad(m, "patternProperties", "patternProperties must be an object")
            plist = []
            for p, s in (pats or {}).items():
                try:
                    pattern_string_term(p)
                except RegexError as e:
                    self.unsupported(m, "patternProperties", f"unsupported pattern: {e}")
                    continue
                plist.append((p, ctx.child(m, s, "patternProperties", p)))
            if has_addl:
                addl = ctx.child(m, m.schema["additionalProperties"], "additionalProperties")
            elif o.additional_properties == "forbid" and not m.has("unevaluatedProperties"):
                addl = ctx.child(m, False, "additionalProperties")
            else:
                addl = None
            rules.append((m, props or {}, plist, addl))
        # unevaluatedProperties: names evaluated statically become synthetic rules here;
        # names evaluated by dynamic branches (anyOf, oneOf, if, dependentSchemas) are
        # handled in _build by a case split over the branches' validity.
        for m in c:
            if not m.has("unevaluatedProperties") or (m.key, "obj") in self._uneval_dynamic:
                continue
            ev = self._evaluated(self._static_closure(m), "object", m)
            if ev == "all":
                continue
            rules.append(self._uneval_rule(m, ev))
        for (names, pats, ue) in extra:
            t_node = self._true
            rules.append((None, {k: t_node for k in names}, [(q, t_node) for q in pats], ue))
        if hi is not None and hi < lo:
            return NOTHING
        for k in required | set(deps) | {x for v in deps.values() for x in v}:
            if k not in order:  # pragma: no cover - order() includes them
                raise AssertionError(k)
        # slots
        slots = []
        for k in order:
            nodes = []
            for m, props, plist, addl in rules:
                declared = k in props
                if declared:
                    nodes.append(props[k] if isinstance(props[k], _Node)
                                 else ctx.child(m, props[k], "properties", k))
                matched = [s for p, s in plist if ctx.key_matches(p, k)]
                nodes.extend(matched)
                if not declared and not matched and addl is not None:
                    nodes.append(addl)
            ok = k not in forbidden
            if ok and pn_terms:
                kt = json.dumps(k).encode()
                ok = all(matches(t, kt) for t in pn_terms)
            v = self.value(nodes, sg.child(k)) if ok else NOTHING
            slots.append((k, v))
        # additional region: the names outside `order`, built only when some member can
        # have a value (additionalProperties false alone leaves no member to spell)
        key_memo: list[Term] = []

        def key_t() -> Term:
            if not key_memo:
                kt = string_except(order) if order else string_term()
                if pn_terms:
                    kt = both(kt, *pn_terms)
                key_memo.append(kt)
            return key_memo[0]

        asg = sg.child(None)
        u_memo: list[Term] = []

        def u_add() -> Term:   # any value of an additional name (built on first use)
            if not u_memo:
                u_memo.append(self.value([], asg))
            return u_memo[0]

        pats = [(p, s_, ri) for ri, (_m, _pr, plist, _a) in enumerate(rules) for p, s_ in plist]
        if len(pats) <= _MAX_REGION_PATTERNS:
            member = self._members_by_region(rules, pats, key_t, asg)
        else:
            member = self._members_by_constraints(rules, key_t, u_add, asg)
        # DP over slots: state (i, count capped, must, must_not, tracked names present)
        w, sep = self.w, self.sep
        close_first, close = lit("}"), seq(w, lit("}"))
        cap = max(1, lo, (hi + 1) if hi is not None else 0)
        if len(order) and cap > o.max_repeat:
            m0 = next(m for m in c if m.has("minProperties") or m.has("maxProperties"))
            self.unsupported(m0, "maxProperties" if hi is not None else "minProperties",
                             "property count bound exceeds max_repeat")
            lo, hi, cap = 0, None, 1
        rdeps: dict[str, set[str]] = {}
        for a, bs in deps.items():
            for b in bs:
                rdeps.setdefault(b, set()).add(a)
        # a name that can have no value and that no requirement or dependency mentions
        # can only be left out: drop its slot (with many anyOf branches at one location,
        # most of the location's names are such slots in each branch)
        named = required | set(deps) | set(rdeps)
        slots = [(k, v) for k, v in slots if v is not NOTHING or k in named]
        pos = {k: i for i, (k, _v) in enumerate(slots)}
        memo: dict = {}
        tracked = _presence_names(presence)

        def satisfied(present: frozenset) -> bool:
            for kw, sets in presence:
                n = sum(1 for b in sets if b <= present)
                if n == 0 or (kw == "oneOf" and n > 1):
                    return False
            return True

        # Every member after the first starts with `sep "` and the first with `"`.  With
        # many names, the walk's terms keep that prefix outside their union of names, as
        # ``alt(E, seq(prefix(cnt), K))``, with E what does not start with it (the closing
        # brace): after a value, the bytes up to the key's first character then move
        # through O(1) terms instead of one derivative per name still allowed.  With few
        # names each option carries its own prefix (E only, K empty): fewer terms.
        prefixes = (QUOTE, self.sep_quote)
        hoist = len(slots) >= _HOIST_MIN_NAMES
        member_tail = member.args[1] if (
            hoist and member.kind == "seq" and member.args[0] is QUOTE) else None

        def region(cnt: int) -> tuple[Term, Term]:
            rlo = max(lo - cnt, 0)
            rhi = None if hi is None else hi - cnt
            if rhi is not None and rhi < rlo:
                return NOTHING, NOTHING
            end = (close_first if cnt == 0 else close) if rlo == 0 else NOTHING
            if member is NOTHING:
                return end, NOTHING
            if rhi is not None and rhi < 1:
                return end, NOTHING
            more = repeat(seq(sep, member), max(rlo - 1, 0), None if rhi is None else rhi - 1)
            if member_tail is not None:
                return end, seq(member_tail, more, close)
            return alt(end, seq(member if cnt == 0 else seq(sep, member), more, close)), NOTHING

        def whole(i: int, cnt: int, must: frozenset, must_not: frozenset,
                  present: frozenset) -> Term:
            key = ("w", i, cnt, must, must_not, present)
            r = memo.get(key)
            if r is None:
                e, k = dp2(i, cnt, must, must_not, present)
                r = memo[key] = alt(e, seq(prefixes[cnt > 0], k))
            return r

        def dp2(i: int, cnt: int, must: frozenset, must_not: frozenset,
                present: frozenset) -> tuple[Term, Term]:
            if i == len(slots):
                return (NOTHING, NOTHING) if must or not satisfied(present) else region(cnt)
            key = (i, cnt, must, must_not, present)
            r = memo.get(key)
            if r is not None:
                return r
            k, v = slots[i]
            ends, tails = [], []
            if k not in must:
                nn = must_not | frozenset(a for a in rdeps.get(k, ()) if pos[a] > i)
                e, t = dp2(i + 1, cnt, must, nn, present)
                ends.append(e)
                tails.append(t)
            if k not in must_not and v is not NOTHING and (hi is None or cnt < hi):
                nm = (must - {k}) | frozenset(b for b in deps.get(k, ()) if pos[b] > i)
                t = seq(_key_tail(k, o.whitespace), v,
                        whole(i + 1, min(cnt + 1, cap), nm, must_not,
                              present | {k} if k in tracked else present))
                if hoist:
                    tails.append(t)
                else:
                    ends.append(seq(prefixes[cnt > 0], t))
            r = memo[key] = (alt(*ends), alt(*tails))
            return r

        # A dependency a -> b on a later name b adds b to the names that must come; on an
        # earlier name b, skipping b forbids a (via rdeps).
        body = whole(0, 0, frozenset(required), frozenset(forbidden), frozenset())
        # whole and dp2 call each other: a reference cycle (with the memo and everything
        # the closures hold) that only a garbage collection would free.  Breaking it here
        # lets reference counting free it, and the collection after a compile then has a
        # third of the objects to traverse (it was ~15% of a cold compile).  Compiled by
        # Cython, every closure shares one scope object that holds the functions the others
        # call, so those are unlinked too (assigned, not deleted: Cython cannot delete a
        # closure's variable).
        whole = dp2 = region = satisfied = None
        return seq(lit("{"), w, body)


_MAX_REGION_PATTERNS = 3
"""Up to this many ``patternProperties`` patterns at one object, the other members are built
as a union over the 2**n regions of names (see :meth:`_Compiler._members_by_region`);
beyond, as an intersection of one constraint per pattern."""

_HOIST_MIN_NAMES = 12
"""Objects with at least this many declared names keep the prefix of their members' keys
outside the union of names (see :meth:`_Compiler._object_build`)."""


_LEAF_KWS = frozenset(("type", "enum", "const", "nullable", "format") + _STRING_KWS
                      + _NUMBER_KWS)
_SCALAR_TYPES = frozenset(("null", "boolean", "number", "integer", "string"))


def _leaf_key(m: _Node):
    """A content key for a schema that constrains scalars only (its language does not
    depend on the location), or ``None``."""
    s = m.schema
    if not isinstance(s, dict):
        return None
    ks = [k for k in s if k not in _ANNOTATIONS]
    if not all(k in _LEAF_KWS for k in ks):
        return None
    t = s.get("type")
    ts = t if isinstance(t, list) else [t]
    scalar = t is not None and all(isinstance(x, str) and x in _SCALAR_TYPES for x in ts)
    for k in ("enum", "const"):
        if k in s:
            vals = s[k] if k == "enum" else [s[k]]
            if not isinstance(vals, list):
                return None
            if all(not isinstance(v, (dict, list)) for v in vals):
                scalar = True
            elif not scalar:
                return None
    if not scalar:
        return None
    try:   # marshal tells 1, 1.0 and True apart, like JSON text, at a tenth of the cost
        body = marshal.dumps([(k, s[k]) for k in sorted(ks)], 0)
    except ValueError:
        return None
    return (m.draft, m.disabled, body)


def _rest_of(x: _Node) -> bool:
    """Whether ``x`` evaluates every array item beyond its prefix."""
    it = x.get("items")
    if x.draft >= 2020:
        return it is not None and not isinstance(it, list)
    if isinstance(it, list):
        return x.has("additionalItems")
    return it is not None


def _prefix_len(x: _Node) -> int:
    p = x.get("prefixItems") if x.draft >= 2020 else x.get("items")
    return len(p) if isinstance(p, list) else 0


def _nonneg_int(comp: _Compiler, m: _Node, kw: str) -> int:
    x = m.schema[kw]
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        comp.bad(m, kw, f"{kw} must be a non-negative integer")
    return x


#: Stands for the universe of a structural type at a location in ``_Compiler._build``
#: until an intersection needs it: every language met with it lies inside it.
_UNBUILT: Any = object()


def _mentions(c: tuple, kws: tuple[str, ...]) -> bool:
    """Whether a member of the conjunction ``c`` has one of the keywords ``kws``."""
    return any(m.has(k) for m in c for k in kws)


_CONSTRAINING = frozenset(_INPLACE_KWS + _OBJECT_KWS + _ARRAY_KWS + _STRING_KWS
                          + _NUMBER_KWS + ("dependentSchemas", "dependentRequired")) - {
    "nullable"}


def _trivial(m: _Node) -> bool:
    """Whether a node constrains nothing (``true``, ``{}``, annotations only)."""
    s = m.schema
    if s is True:
        return True
    if not isinstance(s, dict):
        return False
    return not any(k in _CONSTRAINING and m.has(k) for k in s)


def _meet(a: Term, b: Term, U: Term | None) -> Term:
    """Intersection of two languages inside the same universe ``U`` (shortcuts when one
    side is ``U``; ``a`` may be :data:`_UNBUILT`, the universe not built)."""
    if a is _UNBUILT:
        return b
    if U is not None:
        if a is U:
            return b
        if b is U:
            return a
    if a is b:
        return a
    return both(a, b)


def _exactly_one(parts: list[Term], U: Term) -> Term:
    """Strings in exactly one of ``parts`` (all subsets of ``U``)."""
    parts = [p for p in parts if p is not NOTHING]
    if not parts:
        return NOTHING
    if len(parts) == 1:
        return parts[0]
    head, rest = parts[0], parts[1:]
    any_rest = alt(*rest)
    return alt(both(head, neg(any_rest)), both(U, neg(head), _exactly_one(rest, U)))


_MAX_PRESENCE_NAMES = 6
"""Most names an object's walk tracks for ``anyOf``/``oneOf`` branches that only require
names (its states multiply by up to 2 to this power)."""


_SCALAR_UNIVERSES = {"string": string_term, "boolean": boolean_term, "null": null_term,
                     "number": number_term}
"""The builder of every value of each scalar type (``"number"``: integers included)."""


@functools.lru_cache(maxsize=None)
def _sep_quote(whitespace: int) -> Term:
    """``ws , ws "`` (the bytes before a later member's key) as one rule: prefixing it to
    a continuation costs one term."""
    w = ws(whitespace)
    return Rule("sep-quote").define(seq(w, lit(","), w, QUOTE))


@functools.lru_cache(maxsize=20_000)
def _key_tail(k: str, whitespace: int) -> Term:
    """``k"`` ws ``:`` ws (a key after its opening quote) as one named rule, so that
    prefixing it to a continuation costs O(1) terms (a ``seq`` chain would be rebuilt per
    use); NOTHING when ``k`` has no spelling (a lone surrogate)."""
    content = string_content_literal(k)
    if content is NOTHING:
        return NOTHING
    w = ws(whitespace)
    return Rule(f"key:{json.dumps(k)}").define(seq(content, QUOTE, w, lit(":"), w))


def _presence_names(presence: tuple) -> frozenset:
    """Every name that the branches of ``presence`` (see ``_Compiler._object_build``)
    require."""
    return frozenset().union(*[b for _kw, sets in presence for b in sets])


def _required_only(branches) -> tuple | None:
    """The name sets of ``branches`` when each is a schema with ``required`` and
    annotations only, else None."""
    if not isinstance(branches, list) or not branches:
        return None
    out = []
    for b in branches:
        if not isinstance(b, dict) or "required" not in b or any(
                k != "required" and k not in _ANNOTATIONS for k in b):
            return None
        r = b["required"]
        if not isinstance(r, list) or not all(isinstance(x, str) for x in r):
            return None
        out.append(frozenset(r))
    return tuple(out)


def _required_names(nodes) -> set[str]:
    """The names that the ``required`` of any of ``nodes`` lists."""
    out: set[str] = set()
    for x in nodes:
        r = x.get("required") if isinstance(x, _Node) else None
        if isinstance(r, list):
            out.update(k for k in r if isinstance(k, str))
    return out


def _scalar_key(x):
    """A hashable key of a JSON scalar under JSON equality (``1 == 1.0``, ``True != 1``),
    or None for an array or object."""
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, (int, float)):
        return ("num", to_decimal(x))
    if isinstance(x, str):
        return ("str", x)
    if x is None:
        return ("null",)
    return None


def _json_eq(a, b) -> bool:
    """JSON equality (``1 == 1.0``, ``True != 1``, dict order free)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return to_decimal(a) == to_decimal(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_eq(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------ public API

def json_schema_term(schema: dict | bool | str, options: JsonOptions = JsonOptions(), *,
                     remotes: Mapping[str, Any] | Callable[[str], Any] | None = None,
                     draft: str | int | None = None) -> SchemaResult:
    """Compile a JSON schema into the exact language of its valid serialised values.

    Parameters
    ----------
    schema:
        The schema (a dict, a boolean, or JSON text).
    options:
        See :class:`JsonOptions`.
    remotes:
        Documents for remote ``$ref`` s: a mapping from URL (without fragment) to
        document, or a callable returning the document (or ``None``).  Nothing is ever
        fetched from the network.
    draft:
        Draft for a schema without ``$schema``: ``"draft4"``, ``"draft6"``, ``"draft7"``,
        ``"draft2019-09"``, ``"draft2020-12"`` (default), a meta-schema URI, or one of the
        ints 4, 6, 7, 2019, 2020.

    Returns
    -------
    SchemaResult

    Raises
    ------
    SchemaError
        Malformed schema (wrong keyword value types, dangling ``$ref``, in-place
        recursion ...).
    UnsupportedSchemaError
        With ``strict=True``, a keyword that cannot be enforced exactly.
    """
    with _deep_recursion(), ir.gc_paused():
        ctx = _Ctx(schema, options, remotes, draft)
        comp = _Compiler(ctx)
        try:
            term = comp.value([ctx.root], ctx.sigma([ctx.root]))
        finally:
            # the context's caches form reference cycles (nodes, locations and the
            # resolver's retrieve hook point back at it): emptying them frees the schema's
            # sub-objects now rather than at the next garbage collection, so their
            # reference counts (hence the marshal fallback of grammar.grammar.fast_key)
            # are as before the call
            ctx.__dict__.clear()
    ir.declare_no_specials(term)   # JSON values are text: saves walking the whole term
    return SchemaResult(term=term, ignored=tuple(comp.ignored), narrowed=tuple(comp.narrowed))


def _deep_recursion() -> ir.deep_recursion:
    """The recursion guard of a schema's lowering: too deep raises :class:`SchemaError`."""
    return ir.deep_recursion(lambda: SchemaError("schema nested too deeply to compile"))


def canonical_instance(schema: dict | bool | str, data: Any, *,
                       remotes: Mapping[str, Any] | Callable[[str], Any] | None = None,
                       draft: str | int | None = None) -> Any:
    """Reorder the object keys of ``data`` into the order the grammar of ``schema``
    expects: at every object, the location's declared names (see the module docstring)
    first, in canonical order, then the other keys in their own order.  Values are
    otherwise unchanged, so ``json.dumps(canonical_instance(s, x))`` is accepted by
    ``json_schema_term(s).term`` whenever ``x`` is valid."""
    with _deep_recursion():
        ctx = _Ctx(schema, JsonOptions(), remotes, draft)
        root = ctx.sigma([ctx.root])

    def walk(x, sg: _Sigma):
        if isinstance(x, dict):
            order = sg.order()
            keys = [k for k in order if k in x] + [k for k in x if k not in order]
            return {k: walk(x[k], sg.child(k if k in order else None)) for k in keys}
        if isinstance(x, list):
            isg = sg.items()
            return [walk(v, isg) for v in x]
        return x

    with _deep_recursion():
        return walk(data, root)


@functools.lru_cache(maxsize=None)
def _float_safe_number() -> Term:
    """Number spellings that parse to finite IEEE doubles (see ``JsonOptions.float_safe``):
    at most 300 integer digits, and an exponent of at most two digits."""
    digit = byte_range(0x30, 0x39)
    int_part = alt(lit("0"), seq(byte_range(0x31, 0x39), repeat(digit, 0, 299)))
    frac = opt(seq(lit("."), plus(digit)))
    exp = opt(seq(byte_class(b"eE"), opt(byte_class(b"+-")), repeat(digit, 1, 2)))
    return seq(opt(lit("-")), int_part, frac, exp)
