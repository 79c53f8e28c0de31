"""Grammar intermediate representation: hash-consed regular terms with derivatives.

Every grammar the engine handles (JSON schemas, regexes, whole tool-calling turns) is
lowered to a :class:`Term`.  Terms are immutable and *hash-consed*: structurally equal
terms are the same Python object, so identity is equality and a term doubles as an
automaton state.  The engine never builds an NFA or a full DFA; it explores states lazily
with Brzozowski derivatives:

* ``row(t)`` is the derivative of ``t`` by every byte, returned as a partition
  ``[(byte_mask, next_term), ...]`` where ``byte_mask`` is a 256-bit ``int`` (bit ``b`` set
  means byte ``b``) and bytes not covered lead to the empty language.
* ``dspecial(t, token_id)`` is the derivative by a *special token* (``<|eot_id|>`` ...).
  Special tokens are symbols of their own: their text never matches byte-level terms.
* ``is_nullable(t)`` says whether the empty string is in the language (an accepting state).
* ``is_live(t)`` says whether the language is non-empty: a state whose language is empty
  is dead even if it is not the literal ``NOTHING``.
* ``minlen(t)`` is the length of the shortest completion in symbols (bytes, one per special
  token), ``INF`` when the language is empty.  It drives budget-aware termination.

Supported operators: byte classes, concatenation, union, intersection (``both``),
complement (``neg``), bounded/unbounded repetition, special tokens and named recursive
:class:`Rule` s.  Intersection and complement make key exclusion (``additionalProperties``
next to declared names), ``oneOf`` and ``not`` exact.

Example
-------
>>> t = seq(lit("ab"), star(byte_class(b"c")))
>>> matches(t, b"abccc"), matches(t, b"abd")
(True, False)
"""

from __future__ import annotations

import gc
import itertools
import sys
import threading
import weakref
from typing import Iterable, Sequence

__all__ = [
    "Term", "Rule", "EMPTY", "NOTHING", "ANY_BYTES", "INF", "FULL_MASK",
    "byte_class", "byte_range", "lit", "seq", "alt", "both", "neg", "repeat", "opt",
    "star", "plus", "special", "utf8_char", "codepoint_ranges", "any_text", "text_until",
    "row", "deriv", "dspecial", "minlen", "is_live", "specials_of", "declare_no_specials",
    "declare_cofinite", "cofinite_of", "matches", "mask_of", "is_nullable", "lazy",
    "deep_recursion", "first_bytes",
]

INF = 1 << 60
_LEAVES = ("bytes", "empty", "nothing", "special")
FULL_MASK = (1 << 256) - 1

_ids = itertools.count(1)
_intern: dict[tuple, weakref.ref] = {}


class Term:
    """An immutable, hash-consed regular term.  Do not construct directly: use the
    constructor functions of this module (``lit``, ``seq``, ``alt`` ...).  Terms compare
    and hash by identity (hash-consing makes equal structure the same object) and have no
    order; sort them by ``id``."""

    __slots__ = ("id", "kind", "args", "nullable", "has_bool", "_row", "_minlen",
                 "_specials", "_dsyms", "_null", "_lb", "_live", "__weakref__")

    def __init__(self, kind: str, args: tuple, nullable: bool, has_bool: bool) -> None:
        self.id = next(_ids)
        self.kind = kind
        self.args = args
        self.nullable = nullable
        self.has_bool = has_bool
        self._row: list | None = None
        self._specials: frozenset | None = None
        self._dsyms: dict | None = None
        self._lb: int | None = None
        self._live: bool | None = None
        _known_lengths(self, kind, args, nullable)

    def __repr__(self) -> str:  # compact, for debugging
        return _show(self, 3)


def _known_lengths(t: Term, kind: str, args: tuple, nullable: bool) -> None:
    """Set ``t._null`` and ``t._minlen`` from its operands when they know theirs (see
    :class:`Term`); leave None where a recursive pass must decide."""
    # nullability and shortest length, when the operands already know theirs (exact:
    # the same rules as _nullable and _minlen_syntactic); otherwise computed on demand.
    # Derivatives are built from known parts, so a new automaton state rarely needs a
    # recursive pass of its own.
    ml: int | None = None
    nl: bool | None = None
    if kind in _LEAVES:
        nl = nullable
        ml = 0 if kind == "empty" else (INF if kind == "nothing" else 1)
    elif kind == "seq":
        a, b = args
        na, nb = a._null, b._null
        if na is False or nb is False:
            nl = False
        elif na is not None and nb is not None:
            nl = True
        ma = a._minlen
        if ma is not None:
            if ma >= INF:
                ml = INF
            else:
                mb = b._minlen
                if mb is not None:
                    ml = min(INF, ma + mb)
    elif kind == "alt":
        nl = False
        ml = INF
        for x in args:
            nx = x._null
            if nx:
                nl = True
            elif nx is None and nl is False:
                nl = None
            if ml is not None:
                mx = x._minlen
                ml = None if mx is None else min(ml, mx)
    elif kind == "and":
        nl = True
        for x in args:
            nx = x._null
            if nx is False:
                nl = False
                break
            if nx is None:
                nl = None
    elif kind == "repeat":
        x, lo, _hi = args
        if lo == 0:
            nl, ml = True, 0
        else:
            nl = x._null
            mx = x._minlen
            if mx is not None:
                ml = INF if mx >= INF else min(INF, mx * lo)
    elif kind == "not":
        nx = args[0]._null
        nl = None if nx is None else not nx
    t._null = nl
    t._minlen = ml


def _show(t: Term, depth: int) -> str:
    if depth <= 0:
        return "…"
    k, a = t.kind, t.args
    if k == "bytes":
        return f"[{_mask_repr(a[0])}]"
    if k in ("empty", "nothing"):
        return k.upper()
    if k == "special":
        return f"<special {a[0]}>"
    if k == "rule":
        return f"<rule {a[0]}>"
    if k == "repeat":
        return f"({_show(a[0], depth - 1)}){{{a[1]},{'' if a[2] is None else a[2]}}}"
    inner = ", ".join(_show(x, depth - 1) for x in a)
    return f"{k}({inner})"


def _mask_repr(m: int) -> str:
    out, b = [], 0
    while b < 256:
        if m >> b & 1:
            e = b
            while e + 1 < 256 and m >> (e + 1) & 1:
                e += 1
            f = lambda x: chr(x) if 0x21 <= x < 0x7F and chr(x) not in "-]\\" else f"\\x{x:02x}"
            out.append(f(b) if e == b else f"{f(b)}-{f(e)}")
            b = e + 1
        else:
            b += 1
    return "".join(out)


class gc_paused:
    """Pause the cyclic garbage collector while terms are built in bulk (a schema's
    lowering, a state's first mask).

    Building terms allocates tens of thousands of small tracked objects, which would set
    off a young-generation collection every 700 of them, and every tenth of those an
    older one over the long-lived term graph: 10-25% of a cold compile or of a state's
    first mask.  Nearly all of it is kept (hash-consed terms, transition rows, masks), so
    a collection would find little to free.  Only a call that found the collector enabled
    disables it, and that call re-enables it on exit, so however calls on several threads
    interleave, the collector ends enabled if it was enabled before."""

    __slots__ = ("was",)

    def __enter__(self) -> "gc_paused":
        self.was = gc.isenabled()
        if self.was:
            gc.disable()
        return self

    def __exit__(self, et, ev, tb) -> bool:
        if self.was:
            gc.enable()
        return False


class deep_recursion:
    """Raise the interpreter's recursion limit for a recursive pass over a deeply nested
    grammar (a schema's lowering, the liveness of a new grammar's root); a grammar still
    too deep raises ``error()`` instead of :class:`RecursionError`.

    Interpreted, a Python call takes no C stack, so the limit can be high.  Compiled by
    Cython (see ``setup.py``), each call nests C frames: with an 8 MiB stack (Linux's
    default, threads included) a limit near 6500 overflowed it (a crash, not an error) on
    nested schemas, so while any of the engine's modules runs compiled the limit is half
    that (about 1000 levels of nesting, far beyond real schemas).  The limit is set either
    way, lowered too if the application's was higher, and restored on exit."""

    LIMIT_SOURCE = 20000
    LIMIT_COMPILED = 3000

    __slots__ = ("error", "old")

    def __init__(self, error) -> None:
        self.error = error

    def __enter__(self) -> "deep_recursion":
        from . import native   # imports nothing of the engine: no cycle
        self.old = sys.getrecursionlimit()
        # set, not only raised: under an application's higher limit, C frames (compiled
        # modules, or json's encoder even interpreted) overflowed the stack
        try:
            sys.setrecursionlimit(self.LIMIT_COMPILED if "compiled" in native.MODULES.values()
                                  else self.LIMIT_SOURCE)
        except RecursionError:   # the caller is already deeper than that: keep its limit
            pass
        return self

    def __exit__(self, et, ev, tb) -> bool:
        sys.setrecursionlimit(self.old)
        if et is RecursionError:
            raise self.error() from None
        return False


def _mk(kind: str, args: tuple, nullable: bool, has_bool: bool, key: tuple | None = None) -> Term:
    if key is None:
        key = (kind,) + tuple([a.id if isinstance(a, Term) else a for a in args])
    ref = _intern.get(key)
    if ref is not None:
        t = ref()
        if t is not None:
            return t
    t = Term(kind, args, nullable, has_bool)
    r = _KeyRef(t, _drop)   # one shared callback, no closure
    r.key = key
    _intern[key] = r
    return t


class _KeyRef(weakref.ref):
    """A weak reference that knows its key in the intern table (:class:`weakref.KeyedRef`
    without its Python-level ``__new__`` and ``__init__``: a quarter of the cost)."""

    __slots__ = ("key",)


def _drop(ref: _KeyRef) -> None:
    key = ref.key
    if _intern.get(key) is ref:
        del _intern[key]


class Rule(Term):
    """A named, possibly recursive non-terminal.  Create it, use it inside other terms,
    then :meth:`define` its body exactly once.  Rules compare by identity.

    Left recursion (a rule reachable from itself without consuming a symbol) is rejected
    when derivatives are taken (``GrammarError``)."""

    __slots__ = ("name", "body", "_busy", "_null_busy")

    def __init__(self, name: str) -> None:
        super().__init__("rule", (name,), False, False)
        self.name = name
        self.body: Term | None = None
        self._busy = False
        self._null_busy = False

    def define(self, body: Term) -> "Rule":
        if self.body is not None:
            raise ValueError(f"rule {self.name!r} is already defined")
        self.body = body
        self.has_bool = body.has_bool
        return self


_RULE_BODY = Rule.body   # the slot's descriptor, for the lazy subclass below


class _LazyRule(Rule):
    """A rule whose body is built on first use (see :func:`lazy`)."""

    __slots__ = ("_build",)

    def __init__(self, name: str, build, nullable: bool, min_len: int) -> None:
        self._build = build
        super().__init__(name)
        self._null = nullable
        self._minlen = min_len
        self._live = min_len < INF
        self._specials = frozenset()

    def _get_body(self) -> Term | None:
        b = _RULE_BODY.__get__(self, Rule)
        if b is None:
            build = self._build
            if build is None:          # another thread built it meanwhile
                return _RULE_BODY.__get__(self, Rule)
            b = build()
            _RULE_BODY.__set__(self, b)
            self._build = None
        return b

    def _set_body(self, body: Term | None) -> None:
        _RULE_BODY.__set__(self, body)

    body = property(_get_body, _set_body)  # type: ignore[assignment]


def lazy(name: str, build, *, nullable: bool, min_len: int) -> Rule:
    """A rule whose body ``build()`` is called the first time a derivative (or a walk
    that needs the structure) reaches it, for long literals of which a request visits
    few: prefixing the rule to a continuation costs O(1) terms at compile time, and its
    derivatives unfold it one piece at a time.

    ``nullable`` and ``min_len`` (the shortest length in symbols, exact) are declared, so
    nullability, liveness and ``minlen`` never build the body.  The body must contain no
    intersection, complement or special token; it may contain other lazy rules.  Building
    it twice (two threads at once) must give the same term."""
    return _LazyRule(name, build, nullable, min_len)


_rule_depth = [0]


def _nullable(t: Term) -> bool:
    v = t._null
    if v is not None:
        return v
    if isinstance(t, Rule):
        if t.body is None:
            raise ValueError(f"rule {t.name!r} is used but never defined")
        if t._null_busy:
            return False
        t._null_busy = True
        _rule_depth[0] += 1
        try:
            v = _nullable(t.body)
        finally:
            t._null_busy = False
            _rule_depth[0] -= 1
    else:
        k = t.kind
        if k == "seq":
            v = _nullable(t.args[0]) and _nullable(t.args[1])
        elif k == "alt":
            v = any(_nullable(x) for x in t.args)
        elif k == "and":
            v = all(_nullable(x) for x in t.args)
        elif k == "not":
            v = not _nullable(t.args[0])
        elif k == "repeat":
            v = t.args[1] == 0 or _nullable(t.args[0])
        else:  # pragma: no cover
            raise AssertionError(k)
    if _rule_depth[0] == 0:
        t._null = v
    return v


def is_nullable(t: Term) -> bool:
    """Whether the empty string is in ``t``'s language (``t`` is an accepting state)."""
    v = t._null
    return _nullable(t) if v is None else v


# --------------------------------------------------------------------------- atoms

EMPTY = _mk("empty", (), True, False)
NOTHING = _mk("nothing", (), False, False)
_keep = [EMPTY, NOTHING]


def byte_class(spec: int | bytes | Iterable[int]) -> Term:
    """One byte from a set: a 256-bit int mask, a ``bytes`` of members, or ints."""
    if isinstance(spec, int):
        m = spec & FULL_MASK
    else:
        m = 0
        for b in spec:
            m |= 1 << b
    if m == 0:
        return NOTHING
    return _mk("bytes", (m,), False, False, ("bytes", m))


def mask_of(lo: int, hi: int) -> int:
    """The 256-bit mask of bytes ``lo..hi`` inclusive."""
    if hi < lo:
        return 0
    return ((1 << (hi - lo + 1)) - 1) << lo


def byte_range(lo: int, hi: int) -> Term:
    return byte_class(mask_of(lo, hi))


def lit(s: str | bytes) -> Term:
    """A literal string (``str`` is UTF-8 encoded)."""
    data = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    t = EMPTY
    for b in reversed(data):
        t = seq(byte_class(1 << b), t)
    return t


def special(token_id: int) -> Term:
    """A special token, matched by id (its text never matches byte terms)."""
    return _mk("special", (int(token_id),), False, False)


# ----------------------------------------------------------------------- operators

def seq(*ts: Term) -> Term:
    """Concatenation."""
    out = EMPTY
    for t in reversed(ts):
        out = _seq2(t, out)
    return out


def _seq2(a: Term, b: Term) -> Term:
    if a is NOTHING or b is NOTHING:
        return NOTHING
    if a is EMPTY:
        return b
    if b is EMPTY:
        return a
    if a.kind == "seq":   # a rule's kind is "rule"
        return _seq2(a.args[0], _seq2(a.args[1], b))
    return _mk("seq", (a, b), False, a.has_bool or b.has_bool, ("seq", a.id, b.id))


def _by_id(x: Term) -> int:
    return x.id


def alt(*ts: Term) -> Term:
    """Union (ACI-normalised: flattened, de-duplicated, byte classes merged)."""
    return _alt(ts)


def _alt(ts: tuple) -> Term:
    """:func:`alt` over a tuple of operands (a C function in the Cython build, see
    ``ir.pxd``, which cannot type a ``*args`` function)."""
    n = len(ts)
    if n <= 2:
        # most calls while lowering a schema: no operand, one, or one beside NOTHING (a
        # term is already normal, so it is its own union)
        if n == 0:
            return NOTHING
        a = ts[0]
        if n == 1:
            return a
        b = ts[1]
        if b is NOTHING or b is a:
            return a
        if a is NOTHING:
            return b
        ka, kb = a.kind, b.kind
        if ka != "alt" and kb != "alt" and (ka != "bytes" or kb != "bytes"):
            if b.id < a.id:
                a, b = b, a
            return _mk("alt", (a, b), False, a.has_bool or b.has_bool, ("alt", a.id, b.id))
    items: set[Term] = set()
    bmask = 0
    stack = list(ts)
    while stack:
        t = stack.pop()
        if t is NOTHING:
            continue
        if t.kind == "alt":
            stack.extend(t.args)
        elif t.kind == "bytes":
            bmask |= t.args[0]
        else:
            items.add(t)
    if bmask:
        items.add(byte_class(bmask))
    if not items:
        return NOTHING
    if len(items) == 1:
        return next(iter(items))
    args = tuple(sorted(items, key=_by_id))
    hb = False
    ids = ["alt"]
    for t in args:
        hb = hb or t.has_bool
        ids.append(t.id)
    return _mk("alt", args, False, hb, tuple(ids))


ANY_BYTES: Term  # defined below (needs repeat)


def both(*ts: Term) -> Term:
    """Intersection: strings in every operand."""
    items: set[Term] = set()
    stack = list(ts)
    while stack:
        t = stack.pop()
        if t is NOTHING:
            return NOTHING
        if t.kind == "and":
            stack.extend(t.args)
        elif t is ANY_BYTES:
            continue
        else:
            items.add(t)
    if not items:
        return ANY_BYTES
    if len(items) == 1:
        return next(iter(items))
    if EMPTY in items:
        return EMPTY if all(is_nullable(x) for x in items) else NOTHING
    if all(x._null is False for x in items):
        common = _ANY_FIRST
        for x in items:
            common &= _first(x, 8)
            if not common:   # no first symbol in common: nothing in the intersection
                return NOTHING
    args = tuple(sorted(items, key=_by_id))
    return _mk("and", args, False, True, ("and",) + tuple(x.id for x in args))


_SPECIAL_FIRST = 1 << 256           # stands for every special token in a first set
_ANY_FIRST = FULL_MASK | _SPECIAL_FIRST


def first_bytes(t: Term) -> int:
    """A superset of the bytes that start a non-empty string of ``t``, as a 256-bit mask
    (read from the structure a few levels down: deeper means any byte)."""
    return _first(t, 8) & FULL_MASK


def _first(t: Term, depth: int) -> int:
    """A superset of the first symbols of ``t``'s non-empty strings (bytes as bits 0-255,
    any special token as bit 256), read from the structure ``depth`` levels down (deeper
    means any).  For the cheap disjointness check of :func:`both`."""
    if t._row is not None:
        m = 0
        for x, _ in t._row:
            m |= x
        return m | (_SPECIAL_FIRST if specials_of(t) else 0)
    k = t.kind
    if k == "bytes":
        return t.args[0]
    if k == "special":
        return _SPECIAL_FIRST
    if k in ("empty", "nothing"):
        return 0
    if depth == 0:
        return _ANY_FIRST
    if k == "seq":
        a, b = t.args
        m = _first(a, depth - 1)
        return m | _first(b, depth - 1) if a._null is not False else m
    if k == "alt":
        m = 0
        for x in t.args:
            m |= _first(x, depth - 1)
            if m == _ANY_FIRST:
                break
        return m
    if k == "repeat":
        return _first(t.args[0], depth - 1)
    if k == "and":
        m = _ANY_FIRST
        for x in t.args:
            m &= _first(x, depth - 1)
        return m
    return _ANY_FIRST   # not, rule


def neg(t: Term) -> Term:
    """Complement with respect to all byte strings (special tokens are never matched)."""
    if t.kind == "not":
        return t.args[0]
    if t is NOTHING:
        return ANY_BYTES
    if t is ANY_BYTES:
        return NOTHING
    return _mk("not", (t,), False, True)


def repeat(t: Term, lo: int, hi: int | None) -> Term:
    """``t{lo,hi}``; ``hi=None`` means unbounded."""
    if lo < 0 or (hi is not None and hi < lo):
        raise ValueError(f"bad repetition bounds {lo}..{hi}")
    if hi == 0 or t is EMPTY:
        return EMPTY
    if t is NOTHING:
        return EMPTY if lo == 0 else NOTHING
    if lo == 1 and hi == 1:
        return t
    return _mk("repeat", (t, lo, hi), False, t.has_bool, ("repeat", t.id, lo, hi))


def opt(t: Term) -> Term:
    return alt(t, EMPTY)


def star(t: Term) -> Term:
    return repeat(t, 0, None)


def plus(t: Term) -> Term:
    return repeat(t, 1, None)


ANY_BYTES = _mk("repeat", (byte_class(FULL_MASK), 0, None), True, False)
_keep.append(ANY_BYTES)


# ------------------------------------------------------------------- UTF-8 helpers

def _utf8_seqs(lo: int, hi: int) -> list[list[tuple[int, int]]]:
    """Split code points lo..hi into sequences of byte ranges (the classic utf8-ranges
    construction); every returned item is a list of (byte_lo, byte_hi) per position."""
    out: list[list[tuple[int, int]]] = []
    bounds = [(0, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF)]
    for blo, bhi in bounds:
        a, b = max(lo, blo), min(hi, bhi)
        if a > b:
            continue
        # exclude surrogates
        if a <= 0xDFFF and b >= 0xD800:
            if a < 0xD800:
                out.extend(_split(a, 0xD7FF))
            if b > 0xDFFF:
                out.extend(_split(0xE000, b))
        else:
            out.extend(_split(a, b))
    return out


def _split(lo: int, hi: int) -> list[list[tuple[int, int]]]:
    n = len(chr(lo).encode("utf-8"))
    assert n == len(chr(hi).encode("utf-8"))
    if n == 1:
        return [[(lo, hi)]]
    # split so that all but the first byte span full continuation ranges
    for i in range(1, n):
        m = (1 << (6 * i)) - 1
        if lo & ~m != hi & ~m:
            if lo & m != 0:
                return _split(lo, (lo | m)) + _split((lo | m) + 1, hi)
            if hi & m != m:
                return _split(lo, (hi & ~m) - 1) + _split(hi & ~m, hi)
    a, b = chr(lo).encode("utf-8"), chr(hi).encode("utf-8")
    return [[(a[i], b[i]) for i in range(n)]]


def codepoint_ranges(ranges: Sequence[tuple[int, int]]) -> Term:
    """One Unicode scalar value from a union of inclusive code-point ranges, UTF-8 encoded
    (surrogates are never produced)."""
    alts = []
    for lo, hi in ranges:
        for s in _utf8_seqs(lo, hi):
            alts.append(seq(*[byte_range(a, b) for a, b in s]))
    return alt(*alts)


def utf8_char(exclude: bytes | Iterable[int] = b"") -> Term:
    """Any one well-formed UTF-8 character except the listed ASCII bytes."""
    ex = set(exclude)
    if any(b >= 0x80 for b in ex):
        raise ValueError("utf8_char excludes ASCII bytes only")
    ascii_mask = mask_of(0, 0x7F)
    for b in ex:
        ascii_mask &= ~(1 << b)
    return alt(byte_class(ascii_mask), codepoint_ranges([(0x80, 0x10FFFF)]))


def any_text(exclude: bytes = b"") -> Term:
    """Any well-formed UTF-8 text not containing the given ASCII bytes."""
    return star(utf8_char(exclude))


def text_until(stop: str | bytes, exclude: bytes = b"") -> Term:
    """Well-formed UTF-8 text followed by ``stop``, where ``stop`` occurs only at the end:
    the first occurrence of ``stop`` in the output is the one that closes the text, so a
    parser splitting at the first occurrence recovers exactly the same text."""
    s = stop.encode("utf-8") if isinstance(stop, str) else bytes(stop)
    if not s:
        raise ValueError("empty stop string")
    body = any_text(exclude)
    forbidden = [seq(ANY_BYTES, lit(s), ANY_BYTES)]
    # a text ending in u where u+stop starts with stop would close earlier
    for k in range(1, len(s)):
        u = s[:k]
        if (u + s).startswith(s) and (u + s).find(s) < len(u):
            forbidden.append(seq(ANY_BYTES, lit(u)))
    return seq(both(body, neg(alt(*forbidden))), lit(s))


# ------------------------------------------------------------------- derivatives

def _merge(a: list, b: list, op) -> list:
    """Combine two partitions: overlapping bytes get ``op(ta, tb)``, bytes in only one
    side keep that side's term (``op`` receives None for the missing side)."""
    out: dict[Term, int] = {}
    for ma, ta in a:
        rest = ma
        for mb, tb in b:
            x = ma & mb
            if x:
                t = op(ta, tb)
                if t is not NOTHING:
                    out[t] = out.get(t, 0) | x
                rest &= ~mb
        if rest:
            t = op(ta, None)
            if t is not NOTHING:
                out[t] = out.get(t, 0) | rest
    cov_a = 0
    for _ma, _ in a:
        cov_a |= _ma
    for mb, tb in b:
        rest = mb & ~cov_a
        if rest:
            t = op(None, tb)
            if t is not NOTHING:
                out[t] = out.get(t, 0) | rest
    return [(m, t) for t, m in out.items()]


def _union_rows(rows: list) -> list:
    """Union of several partitions: refine the cells once, then build one ``alt`` per
    cell (no intermediate unions are interned)."""
    # most unions in a JSON grammar have disjoint first bytes (a bounded whitespace run
    # before a quote or a brace, the alternatives of a value): then no cell is refined,
    # and the refinement's pairwise pass over the cells is skipped
    cov = 0
    disjoint = True
    for r in rows:
        for m, t in r:
            if cov & m:
                disjoint = False
                break
            cov |= m
        if not disjoint:
            break
    if disjoint:
        out: dict[Term, int] = {}
        for r in rows:
            for m, t in r:
                if t is not NOTHING:
                    out[t] = out.get(t, 0) | m
        return [(m, t) for t, m in out.items()]
    cells: list[list] = []  # [mask, [terms]]
    for r in rows:
        for m, t in r:
            rest = m
            for cell in cells:
                x = cell[0] & rest
                if not x:
                    continue
                if x == cell[0]:
                    cell[1].append(t)
                else:
                    cell[0] &= ~x
                    cells.append([x, cell[1] + [t]])
                rest &= ~x
                if not rest:
                    break
            if rest:
                cells.append([rest, [t]])
    out = {}
    for m, ts in cells:
        nt = ts[0] if len(ts) == 1 else alt(*ts)
        if nt is not NOTHING:
            out[nt] = out.get(nt, 0) | m
    return [(m, t) for t, m in out.items()]


def _op_alt(x, y):
    if x is None:
        return y
    if y is None:
        return x
    return alt(x, y)


def _op_and(x, y):
    if x is None or y is None:
        return NOTHING
    return both(x, y)


def row(t: Term) -> list[tuple[int, Term]]:
    """Derivatives of ``t`` by every byte, as a partition ``[(mask, next), ...]``.
    Bytes whose derivative is the empty language are omitted."""
    r = t._row
    if r is not None:
        return r
    k = t.kind
    if k == "bytes":
        r = [(t.args[0], EMPTY)]
    elif k in ("empty", "nothing", "special"):
        r = []
    elif k == "seq":
        a, b = t.args
        ra = [(m, _seq2(x, b)) for m, x in row(a)]
        r = _union_rows([ra, row(b)]) if is_nullable(a) else _coalesce(ra)
    elif k == "alt":
        r = _union_rows([row(x) for x in t.args])
    elif k == "and":
        r = row(t.args[0])
        for x in t.args[1:]:
            r = _merge(r, row(x), _op_and)
    elif k == "not":
        inner = row(t.args[0])
        cov = 0
        r = []
        for m, x in inner:
            cov |= m
            r.append((m, neg(x)))
        if cov != FULL_MASK:
            r.append((FULL_MASK & ~cov, ANY_BYTES))
        r = _coalesce(r)
    elif k == "repeat":
        x, lo, hi = t.args
        rest = repeat(x, max(lo - 1, 0), None if hi is None else hi - 1)
        r = _coalesce([(m, _seq2(d, rest)) for m, d in row(x)])
    elif k == "rule":
        r = _rule_row(t)
    else:  # pragma: no cover
        raise AssertionError(k)
    t._row = r
    return r


def _rule_row(t: "Rule") -> list[tuple[int, Term]]:
    """The row of a rule: its body's (apart from :func:`row`, whose operand ``ir.pxd``
    types as a plain term, without a rule's fields)."""
    assert isinstance(t, Rule)
    if t.body is None:
        raise ValueError(f"rule {t.name!r} is used but never defined")
    if t._busy:
        from .errors import GrammarError
        raise GrammarError(f"left recursion through rule {t.name!r}")
    t._busy = True
    try:
        return row(t.body)
    finally:
        t._busy = False


def _coalesce(r: list) -> list:
    out: dict[Term, int] = {}
    for m, x in r:
        if x is not NOTHING and m:
            out[x] = out.get(x, 0) | m
    return [(m, x) for x, m in out.items()]


def deriv(t: Term, b: int) -> Term:
    """Derivative of ``t`` by one byte."""
    bit = 1 << b
    for m, x in row(t):
        if m & bit:
            return x
    return NOTHING


def dspecial(t: Term, token_id: int) -> Term:
    """Derivative of ``t`` by a special token."""
    return _dsym(t, token_id)


def _dsym(t: Term, sym: int) -> Term:
    """Derivative of ``t`` by one symbol without building ``t``'s row: a special token id
    (``sym >= 0``) or the byte ``-1 - sym``.  Memoised per term; a byte derivative reads
    the term's row instead when it has one."""
    k = t.kind
    if sym < 0:
        if t._row is not None:
            return deriv(t, -1 - sym)
        if k == "bytes":
            return EMPTY if t.args[0] >> (-1 - sym) & 1 else NOTHING
    cache = t._dsyms
    if cache is None:
        cache = t._dsyms = {}
    r = cache.get(sym)
    if r is not None:
        return r
    if k == "special":
        r = EMPTY if t.args[0] == sym else NOTHING
    elif k in ("bytes", "empty", "nothing"):
        r = NOTHING
    elif k == "seq":
        a, b = t.args
        r = _seq2(_dsym(a, sym), b)
        if is_nullable(a):
            r = alt(r, _dsym(b, sym))
    elif k == "alt":
        r = alt(*[_dsym(x, sym) for x in t.args])
    elif k == "and":
        r = both(*[_dsym(x, sym) for x in t.args])
    elif k == "not":
        # complements range over bytes: they never produce special tokens
        r = neg(_dsym(t.args[0], sym)) if sym < 0 else NOTHING
    elif k == "repeat":
        x, lo, hi = t.args
        r = _seq2(_dsym(x, sym), repeat(x, max(lo - 1, 0), None if hi is None else hi - 1))
    elif k == "rule":
        assert isinstance(t, Rule)
        if t._busy:
            from .errors import GrammarError
            raise GrammarError(f"left recursion through rule {t.name!r}")
        t._busy = True
        try:
            r = _dsym(t.body, sym)
        finally:
            t._busy = False
    else:  # pragma: no cover
        raise AssertionError(k)
    cache[sym] = r
    return r


def declare_no_specials(t: Term) -> None:
    """Record that ``t`` contains no special token, for builders that never emit one
    (the JSON Schema lowering): :func:`specials_of` then needs no walk over it."""
    if t._specials is None:
        t._specials = frozenset()


_COFINITE: "weakref.WeakKeyDictionary[Term, tuple[Term, Term]]" = weakref.WeakKeyDictionary()


def declare_cofinite(t: Term, body: Term, closer: Term) -> None:
    """Record that the language of ``t`` is that of ``seq(body, closer)`` less finitely
    many strings, where ``body`` is a star ``x*`` of an ``x`` with a non-empty string: then
    every prefix of a string of ``body`` extends (in infinitely many ways, so past the
    exceptions) to a string of ``t``.  For builders that know it of a term they build (a
    JSON string other than a few names, see :func:`grammar.jsonvalue.string_except`); the
    automaton relies on it to skip a walk (see
    :meth:`grammar.automaton.Automaton._covering`), so it must be true."""
    _COFINITE[t] = (body, closer)


def cofinite_of(t: Term) -> tuple[Term, Term] | None:
    """``(body, closer)`` as declared by :func:`declare_cofinite` for ``t``, or None."""
    return _COFINITE.get(t)


def specials_of(t: Term) -> frozenset[int]:
    """All special-token ids that occur anywhere in ``t`` (through rules too).  Memoised on
    every sub-term, so the terms derived from a grammar reuse their parent's results."""
    if t._specials is not None:
        return t._specials
    # iterative post-order; rules may be cyclic: a rule in progress contributes nothing
    # yet and its own result is completed when its body finishes
    out_stack: list[tuple[Term, bool]] = [(t, False)]
    on_path: set[int] = set()
    while out_stack:
        x, done = out_stack.pop()
        if x._specials is not None:
            continue
        if x.kind == "special":
            x._specials = frozenset((x.args[0],))
            continue
        kids = [x.body] if x.kind == "rule" else [a for a in x.args if isinstance(a, Term)]  # type: ignore[attr-defined]
        if not done:
            if x.id in on_path:
                continue
            on_path.add(x.id)
            out_stack.append((x, True))
            out_stack.extend((k, False) for k in kids if k._specials is None)
        else:
            on_path.discard(x.id)
            acc: frozenset[int] = frozenset()
            for k in kids:
                if k._specials is not None:
                    acc = acc | k._specials
                elif k.id in on_path or k is x:
                    continue
            x._specials = acc
    res = t._specials
    if res is None:  # pragma: no cover - defensive
        res = frozenset()
    return res


# ------------------------------------------------------------------ shortest path

def minlen(t: Term, *, limit: int = 4000) -> int:
    """Length of the shortest string in ``t`` (bytes; a special token counts 1), or
    ``INF`` when the language is empty.  Exact for terms without intersection or
    complement; for the others a breadth-first search over derivatives (up to ``limit``
    states) decides, falling back to an optimistic estimate beyond it."""
    v = t._minlen
    if v is not None:
        return v
    if t.kind in ("and", "not"):
        # only intersections and complements need a search over their own derivatives;
        # everything around them composes structurally
        v = None
        if t.kind == "and":
            v = _try_witness(t)
        if v is None:
            if getattr(_witness_local, "no_search", 0):
                raise _NeedsSearch
            v = _minlen_search(t, limit)
    else:
        v = _minlen_syntactic(t, None)
    t._minlen = v
    return v


def _minlen_syntactic(t: Term, rules: dict | None) -> int:
    """Shortest length by structure.  While a rule fixpoint is being computed, ``rules``
    holds the current estimates of its rules and memoises the terms of the current pass
    (nothing is memoised on the terms then); ``None`` memoises on the terms."""
    v = t._minlen
    if v is not None:
        return v
    if rules is not None:
        v = rules.get(t)
        if v is not None:
            return v
    k = t.kind
    if k == "bytes" or k == "special":
        v = 1
    elif k == "empty":
        v = 0
    elif k == "nothing":
        v = INF
    elif k == "seq":
        a = _minlen_syntactic(t.args[0], rules)
        v = INF if a >= INF else min(INF, a + _minlen_syntactic(t.args[1], rules))
    elif k == "alt":
        if rules is None and t.has_bool:
            # branch and bound: a union of tool schemas searches about one of them, not all
            v = _shortest_operand(t)[0]
        else:
            v = min(_minlen_syntactic(x, rules) for x in t.args)
    elif k == "repeat":
        x, lo, _ = t.args
        if lo == 0:
            v = 0
        else:
            m = _minlen_syntactic(x, rules)
            v = INF if m >= INF else min(INF, m * lo)
    elif k == "rule":   # not among the current estimates: a fixpoint of its own
        return _rule_fixpoint(t)  # type: ignore[arg-type]
    elif k in ("and", "not"):
        return minlen(t)
    else:  # pragma: no cover
        raise AssertionError(k)
    if rules is None:
        t._minlen = v
    else:
        rules[t] = v
    return v


def _rule_fixpoint(r: Rule) -> int:
    # collect rules reachable from r's body (not through memoised terms)
    group: list[Rule] = []
    seen: set[int] = set()
    stack: list[Term] = [r]
    while stack:
        x = stack.pop()
        if x.id in seen or x._minlen is not None:
            continue
        seen.add(x.id)
        if isinstance(x, Rule):
            group.append(x)
            stack.append(x.body)  # type: ignore[arg-type]
        elif x.kind not in ("and", "not"):
            stack.extend(a for a in x.args if isinstance(a, Term))
    est: dict[Term, int] = {g: INF for g in group}
    changed = True
    while changed:
        changed = False
        # one memo per pass: a term shared by many bodies is evaluated once per pass (an
        # unmemoised walk is exponential in the sharing depth of a large schema).  A value
        # memoised before an estimate dropped is only too large; the pass that changes
        # nothing has constant estimates, so the fixpoint it confirms is exact.
        memo: dict[Term, int] = dict(est)
        for g in group:
            v = _minlen_syntactic(g.body, memo)  # type: ignore[arg-type]
            if v < est[g]:
                est[g] = memo[g] = v
                changed = True
    for g in group:
        g._minlen = est[g]
    return est[r]


def _lower_bound(t: Term) -> int:
    """An admissible lower bound of ``minlen``: structural, with an intersection bounded
    by its largest operand and a complement by 0 (exact for terms without either)."""
    v = t._minlen
    if v is not None:
        return v
    v = t._lb
    if v is not None:
        return v
    k = t.kind
    if k == "and":
        v = max(_lower_bound(x) for x in t.args)
    elif k == "not":
        v = 0 if not is_nullable(t.args[0]) else 1
    elif k == "seq":
        a = _lower_bound(t.args[0])
        v = INF if a >= INF else min(INF, a + _lower_bound(t.args[1]))
    elif k == "alt":
        v = min(_lower_bound(x) for x in t.args)
    elif k == "repeat":
        x, lo, _ = t.args
        m = _lower_bound(x) if lo else 0
        v = 0 if lo == 0 else (INF if m >= INF else min(INF, m * lo))
    elif k == "rule":
        if not t.has_bool:
            return minlen(t)
        # recursion through intersections: stay cheap and admissible
        return 0 if is_nullable(t) else 1
    else:
        return _minlen_syntactic(t, None)
    t._lb = v
    return v


class _Reentered(Exception):
    """A witness computation asked for the ``minlen`` of an intersection it is computing."""


class _NeedsSearch(Exception):
    """A witness computation needed the exact length of a nested intersection or
    complement that only a search can give."""


_witness_local = threading.local()


def _witnessing() -> set[int]:
    """Ids of the intersections whose witness this thread is computing."""
    busy = getattr(_witness_local, "busy", None)
    if busy is None:
        busy = _witness_local.busy = set()
    return busy


def _try_witness(t: Term) -> int | None:
    """:func:`_minlen_witness` of the intersection ``t``, None when it declines or when a
    witness it asks for leads back to ``t`` (through a rule).  Asked for again while its
    own witness is computed, ``t`` raises :class:`_Reentered` for the outer one."""
    busy = _witnessing()
    if t.id in busy:
        raise _Reentered
    busy.add(t.id)
    try:
        return _minlen_witness(t)
    except _Reentered:
        return None
    finally:
        busy.discard(t.id)


def _minlen_witness(t: Term) -> int | None:
    """The exact ``minlen`` of an intersection when one of its operands has a shortest
    string, built from its structure (through no intersection or complement), that is as
    short as the intersection's lower bound and lies in every other operand; else None.

    The lower bound of an intersection is its longest operand's ``minlen``, so such a
    string proves the bound exact without the A* search.  This is the common case of
    schema intersections (an integer syntax and its ``minimum``/``maximum``, a string
    ``pattern`` and its length bounds): each step costs a one-byte derivative, not a
    full row of the intersection."""
    lb = _lower_bound(t)
    if lb >= INF:
        return None
    loc = _witness_local
    for x in t.args:
        if _lower_bound(x) != lb:
            continue
        # the lengths of the intersections nested in x come from their own shortcuts or
        # not at all: a search for each of them (nested oneOf and not inside objects)
        # costs seconds, far more than the one search this shortcut would save
        loc.no_search = getattr(loc, "no_search", 0) + 1
        try:
            if _minlen_syntactic(x, None) != lb:
                continue
            w = _shortest_string(x, lb)
        except _NeedsSearch:
            continue
        finally:
            loc.no_search -= 1
        if w is not None and all(y is x or _accepts(y, w) for y in t.args):
            return lb
    return None


def _shortest_string(t: Term, n: int) -> list | None:
    """One shortest string of ``t`` (shortest length ``n``), following its structure:
    bytes as ints, special tokens as ``("special", id)``.  None when the walk meets an
    intersection or complement, or does not settle on a string of length ``n``."""
    out: list = []
    stack = [t]
    steps = 0
    budget = 64 * (n + 4)
    while stack:
        steps += 1
        if steps > budget or len(out) > n:
            return None
        x = stack.pop()
        k = x.kind
        if k == "bytes":
            m = x.args[0]
            out.append((m & -m).bit_length() - 1)
        elif k == "seq":
            stack.append(x.args[1])
            stack.append(x.args[0])
        elif k == "alt":
            stack.append(_shortest_operand(x)[1])
        elif k == "repeat":
            stack.extend([x.args[0]] * x.args[1])
        elif k == "rule":
            stack.append(x.body)  # type: ignore[attr-defined]
        elif k == "special":
            out.append(("special", x.args[0]))
        elif k != "empty":
            return None
    return out if len(out) == n else None


def _shortest_operand(t: Term) -> tuple[int, Term]:
    """``(length, operand)``: the shortest length of the union ``t`` and an operand that
    has it (a plain one on ties), by branch and bound: an operand whose lower bound is no
    better than the best length so far is never asked for its exact length, so its
    intersections are never searched."""
    best, bx = INF, t.args[0]
    for lb, _b, _i, y in sorted((_lower_bound(y), y.has_bool, y.id, y) for y in t.args):
        if lb >= best:
            break
        v = _minlen_syntactic(y, None)
        if v < best:
            best, bx = v, y
    return best, bx


def _accepts(t: Term, w: list) -> bool:
    for x in w:
        t = _dsym(t, x[1] if isinstance(x, tuple) else -1 - x)
        if t is NOTHING:
            return False
    return is_nullable(t)


def _successors(x: Term, specials: frozenset[int]) -> list[Term]:
    """The derivatives of ``x`` by every byte class and by each of ``specials``."""
    succ = [y for _, y in row(x)]
    if specials:
        succ.extend(dspecial(x, s) for s in specials)
    return succ


def _minlen_search(t: Term, limit: int) -> int:
    """A* over derivatives with :func:`_lower_bound` as the heuristic: exact shortest
    completion of a term containing intersections or complements.

    On success every term on the shortest path found gets its exact ``minlen`` too (a
    term at depth ``g`` of a shortest path of length ``n`` has shortest completion
    ``n - g``, else the path would not be shortest): derivatives along it, which the
    automaton meets next, then need no search of their own."""
    import heapq

    if is_nullable(t):
        return 0
    h0 = _lower_bound(t)
    if h0 >= INF:
        return INF
    specials = specials_of(t)
    # entries (f, -g, id, term, exact): an exact entry stands for "term, then its known
    # shortest completion" and is a goal of length f.  Ties on f go to the deepest entry
    # first: with a tight heuristic the search then dives straight to a goal instead of
    # expanding every equally promising shallower term.
    heap = [(h0, 0, t.id, t, False)]
    best = {t.id: 0}
    parent: dict[int, Term] = {}
    expanded = 0
    while heap:
        f, g, _, x, exact = heapq.heappop(heap)
        g = -g
        if exact or is_nullable(x):
            chain = [x]
            while chain[-1] is not t:
                chain.append(parent[chain[-1].id])
            if len(chain) - 1 == g:   # the parent links spell the path of length g
                for d, y in enumerate(reversed(chain)):
                    if y._minlen is None and y is not t:
                        y._minlen = f - d
            return f
        if best.get(x.id, INF) < g:
            continue
        expanded += 1
        if expanded > limit:
            return f  # optimistic beyond the search limit
        succ = _successors(x, specials)
        for y in succ:
            if y is NOTHING:
                continue
            ng = g + 1
            if best.get(y.id, INF) <= ng:
                continue
            known = y._minlen
            hy = known if known is not None else _lower_bound(y)
            if hy >= INF:
                continue
            best[y.id] = ng
            parent[y.id] = x
            heapq.heappush(heap, (ng + hy, -ng, y.id, y, known is not None))
    return INF


def is_live(t: Term, *, limit: int = 4000) -> bool:
    """Whether ``t``'s language is non-empty.

    The same answer as ``minlen(t) < INF``, but cheaper where they differ: around
    intersections and complements the structure decides (a concatenation is live when
    both parts are, a union when one operand is, so a union of schemas looks at one of
    them), and an intersection or complement needs *some* string, not the shortest: its
    search stops at the first term known to be live (``minlen``'s A* expands every term
    that might lie on a shorter path: seconds on ``oneOf`` and ``not`` nested inside
    objects, where it runs once per new state).  Beyond ``limit`` expanded states the answer is the optimistic True, as ``minlen``'s
    estimate is, and it is memoised as that is."""
    v = t._live
    if v is not None:
        return v
    ml = t._minlen
    if ml is not None:
        return ml < INF
    if not t.has_bool or t.kind == "rule":
        # structural and exact, or a recursive rule through intersections: its fixpoint
        return minlen(t, limit=limit) < INF
    k = t.kind
    if k == "seq":
        # down the right spine of a long concatenation without recursing along it
        parts, x = [], t
        while x.kind == "seq" and x._live is None and x._minlen is None:
            parts.append(x.args[0])
            x = x.args[1]
        parts.append(x)
        v = all(is_live(p, limit=limit) for p in parts)
    elif k == "alt":
        # cheapest first: operands that need no search, then by lower bound
        v = False
        for x in sorted(t.args, key=lambda y: (y.has_bool, _lower_bound(y), y.id)):
            if is_live(x, limit=limit):
                v = True
                break
    elif k == "repeat":
        v = t.args[1] == 0 or is_live(t.args[0], limit=limit)
    elif k == "and" and any(not is_live(x, limit=limit) for x in t.args):
        v = False
    else:
        v = _live_search(t, limit)
        if v is None:   # beyond the limit: optimistic (as minlen's estimate is)
            v = True
    t._live = v
    return v


def _live_search(t: Term, limit: int) -> bool | None:
    """Search for a string of ``t`` (an intersection or complement) over derivatives.

    The frontier is ordered as ``minlen``'s A* orders it (depth plus
    :func:`_lower_bound`, deepest first on ties), but any term already known to be live
    is a goal, and no exact length is kept.  (Ordering by the bound alone dives into
    regions where it never drops, such as the body of a string under a ``not``, and
    runs out of its limit on terms whose shortest string has 13 bytes.)  On success
    every term on the path found is live; when the frontier runs out, every term met is
    dead (all that it reaches was met).  None beyond ``limit`` expanded terms."""
    import heapq

    if is_nullable(t):
        return True
    if _lower_bound(t) >= INF:
        return False
    if t.kind == "and":   # a shortest string of one operand that the others accept
        w = _try_witness(t)
        if w is not None:
            t._minlen = w
            return True
    specials = specials_of(t)
    heap = [(0, 0, t.id, t)]   # (depth + bound, -depth, id, term)
    seen = {t.id: t}
    parent: dict[int, Term] = {}
    expanded = 0
    while heap:
        _f, neg_d, _, x = heapq.heappop(heap)
        if x is not t and (x._live or (x._minlen is not None and x._minlen < INF)
                           or is_nullable(x)):
            while x is not t:
                x._live = True
                x = parent[x.id]
            return True
        expanded += 1
        if expanded > limit:
            return None
        succ = _successors(x, specials)
        d = 1 - neg_d
        for y in succ:
            if y is NOTHING or y.id in seen or y._live is False:
                continue
            hy = y._minlen if y._minlen is not None else _lower_bound(y)
            if hy >= INF:
                continue
            seen[y.id] = y
            parent[y.id] = x
            heapq.heappush(heap, (d + hy, -d, y.id, y))
    for y in seen.values():
        y._live = False
        y._minlen = INF
    return False


# ----------------------------------------------------------------------- matching

def matches(t: Term, data: bytes | Sequence[int | tuple[str, int]]) -> bool:
    """Whether ``data`` (bytes; or a sequence mixing byte ints and ``("special", id)``
    pairs) is in the language of ``t``.  A slow reference recogniser for tests."""
    cur = t
    for x in data:
        if isinstance(x, tuple):
            cur = dspecial(cur, x[1])
        else:
            cur = deriv(cur, x)
        if cur is NOTHING:
            return False
    return is_nullable(cur)
