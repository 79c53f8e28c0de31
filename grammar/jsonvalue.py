"""Lexical pieces of JSON text as IR terms: whitespace, strings, numbers, literals.

Everything here is a language of *serialised* JSON (RFC 8259) over bytes.  Terms are
hash-consed, so the builders below are cached and cheap to call repeatedly.

Strings
-------
A JSON string is ``"`` + characters + ``"``.  One *character* (one Unicode scalar value)
has several spellings and all of them are accepted:

* raw UTF-8 (well-formed only; never ``"``, ``\\`` or a control character < 0x20),
* the short escapes ``\\" \\\\ \\/ \\b \\f \\n \\r \\t``,
* ``\\uXXXX`` (hex digits in either case) for code points of the BMP,
* a surrogate pair ``\\uD8xx\\uDCxx`` for astral code points.

Lone surrogates (``\\uD800`` alone) are rejected: they do not encode a Unicode scalar
value.  :func:`json_char` maps a *set of code points* to the language of all spellings of
one of them, so a regular language over decoded text (a regex, a format, a literal) maps to
the exact language of its JSON spellings; ``minLength``/``maxLength`` count these units
(an escape or a surrogate pair is one character).

Numbers
-------
The engine accepts a *regular subset* of JSON number spellings, the same subset in every
context so that complements (``not``, ``oneOf``) stay exact:

* plain decimals ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?`` (any length), and
* normalised scientific notation ``-?[1-9](\\.[0-9]*[1-9])?[eE][+-]?[0-9]+`` whose mantissa
  has at most :data:`SCI_DIGITS` fraction digits and no trailing zero (``1.5e+20``,
  ``1e-07``; not ``15e19``, ``0.15e21`` or ``1.50e20``).

This covers what ``json.dumps`` (Python) and ``JSON.stringify`` (JavaScript) emit for
any double (at most 17 significant digits).  Within it, numeric comparisons, integrality
and ``multipleOf`` are exact and use exact decimal arithmetic (not binary floats): a bound
or a ``multipleOf`` given as a float is taken as its shortest decimal ``repr``.

Example
-------
>>> from grammar.ir import matches
>>> t = number_cmp_term(">=", Decimal("1.5"))
>>> [matches(t, s) for s in (b"1.5", b"2", b"1.49", b"1.5e0", b"-3")]
[True, True, False, True, False]
"""

from __future__ import annotations

import functools
from decimal import Decimal, localcontext
from typing import Iterable, Sequence

from .ir import (
    EMPTY, NOTHING, Rule, Term, alt, both, byte_class, byte_range, codepoint_ranges,
    declare_cofinite, lazy, lit, opt, minlen, plus, repeat, row, seq, star,
)

__all__ = [
    "SCI_DIGITS", "ws", "hex_range", "json_char", "json_char_any", "string_content_any",
    "string_term", "string_literal", "string_except", "QUOTE", "normalize_ranges", "number_term", "integer_term",
    "number_cmp_term", "number_equal_term", "multiple_of_term", "null_term", "boolean_term",
    "json_value_term", "to_decimal", "MAX_CODEPOINT", "string_content_literal",
    "UnsupportedMultipleOf", "MAX_MULTIPLE_STATES",
]

MAX_CODEPOINT = 0x10FFFF
_PREC = 100000
SCI_DIGITS = 16
"""Most significant fraction digits allowed in a scientific-notation mantissa."""

DIGIT = byte_range(0x30, 0x39)
NZDIGIT = byte_range(0x31, 0x39)
ZERO = lit("0")
_WS_CLASS = byte_class(b" \t\n\r")


@functools.lru_cache(maxsize=None)
def ws(n: int) -> Term:
    """At most ``n`` JSON whitespace bytes (``[ \\t\\n\\r]{0,n}``); ``EMPTY`` for 0."""
    return repeat(_WS_CLASS, 0, n) if n > 0 else EMPTY


# ------------------------------------------------------------------------ strings

def normalize_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and merge inclusive code-point ranges, clipped to Unicode scalar values
    (surrogates ``U+D800..U+DFFF`` removed)."""
    rs = sorted((max(0, a), min(MAX_CODEPOINT, b)) for a, b in ranges if a <= b)
    out: list[list[int]] = []
    for a, b in rs:
        if a > b:
            continue
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    res: list[tuple[int, int]] = []
    for a, b in out:
        if a <= 0xDFFF and b >= 0xD800:
            if a < 0xD800:
                res.append((a, 0xD7FF))
            if b > 0xDFFF:
                res.append((0xE000, b))
        else:
            res.append((a, b))
    return tuple(res)


def _hexdigit(lo: int, hi: int) -> Term:
    """One hex digit with value lo..hi, either letter case."""
    m = 0
    for v in range(lo, hi + 1):
        for ch in {f"{v:x}", f"{v:X}"}:
            m |= 1 << ord(ch)
    return byte_class(m)


@functools.lru_cache(maxsize=None)
def hex_range(lo: int, hi: int, ndigits: int = 4) -> Term:
    """Exactly ``ndigits`` hex digits (either case) whose value lies in ``lo..hi``."""
    if lo > hi:
        return NOTHING
    if ndigits == 1:
        return _hexdigit(lo, hi)
    unit = 16 ** (ndigits - 1)
    a, ra = divmod(lo, unit)
    b, rb = divmod(hi, unit)
    if a == b:
        return seq(_hexdigit(a, a), hex_range(ra, rb, ndigits - 1))
    parts = []
    first = a
    if ra != 0:
        parts.append(seq(_hexdigit(a, a), hex_range(ra, unit - 1, ndigits - 1)))
        first = a + 1
    last = b
    if rb != unit - 1:
        parts.append(seq(_hexdigit(b, b), hex_range(0, rb, ndigits - 1)))
        last = b - 1
    if first <= last:
        parts.append(seq(_hexdigit(first, last), hex_range(0, unit - 1, ndigits - 1)))
    return alt(*parts)


_SHORT = {0x22: '"', 0x5C: "\\", 0x2F: "/", 0x08: "b", 0x0C: "f", 0x0A: "n", 0x0D: "r",
          0x09: "t"}
_RAW_EXCLUDED = normalize_ranges([(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)])


def _subtract(ranges: Sequence[tuple[int, int]], minus: Sequence[tuple[int, int]]):
    out = []
    for a, b in ranges:
        cur = [(a, b)]
        for c, d in minus:
            nxt = []
            for x, y in cur:
                if d < x or c > y:
                    nxt.append((x, y))
                    continue
                if x < c:
                    nxt.append((x, c - 1))
                if y > d:
                    nxt.append((d + 1, y))
            cur = nxt
        out.extend(cur)
    return out


def _intersect(ranges, lo, hi):
    return [(max(a, lo), min(b, hi)) for a, b in ranges if a <= hi and b >= lo]


@functools.lru_cache(maxsize=4096)
def _json_char_cached(ranges: tuple[tuple[int, int], ...]) -> Term:
    raw = codepoint_ranges(_subtract(ranges, _RAW_EXCLUDED))
    esc = _escapes(ranges)
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        # one code point (a literal's character): its escapes as one rule, so that the
        # derivative by the backslash is one term, which prefixes a continuation in O(1)
        # terms (the escape as a chain, ``u`` and four hex digits, was rebuilt in front
        # of every continuation, for every character of a literal a first mask visits)
        body = esc
        esc = lazy(f"escape:{ranges[0][0]:04x}", lambda: body, nullable=False,
                   min_len=minlen(body))
    return alt(raw, seq(lit("\\"), esc))


def _escapes(ranges: tuple[tuple[int, int], ...]) -> Term:
    """What follows the backslash in the escaped spellings of the code points ``ranges``:
    a short escape's letter, ``uXXXX``, or a surrogate pair's ``uXXXX\\uXXXX``."""
    parts = [lit(ch) for cp, ch in _SHORT.items() if any(a <= cp <= b for a, b in ranges)]
    u = lit("u")
    bmp = _intersect(ranges, 0, 0xFFFF)
    if bmp:
        parts.append(seq(u, alt(*[hex_range(a, b) for a, b in bmp])))
    low = lit("\\u")
    for a, b in _intersect(ranges, 0x10000, MAX_CODEPOINT):
        ha, la = divmod(a - 0x10000, 0x400)
        hb, lb = divmod(b - 0x10000, 0x400)
        ha += 0xD800
        hb += 0xD800
        la += 0xDC00
        lb += 0xDC00
        if ha == hb:
            parts.append(seq(u, hex_range(ha, ha), low, hex_range(la, lb)))
            continue
        parts.append(seq(u, hex_range(ha, ha), low, hex_range(la, 0xDFFF)))
        parts.append(seq(u, hex_range(hb, hb), low, hex_range(0xDC00, lb)))
        if ha + 1 <= hb - 1:
            parts.append(seq(u, hex_range(ha + 1, hb - 1), low, hex_range(0xDC00, 0xDFFF)))
    return alt(*parts)


def json_char(ranges: Iterable[tuple[int, int]]) -> Term:
    """Every JSON spelling (raw UTF-8, short escape, ``\\uXXXX``, surrogate pair) of one
    code point from the given inclusive ranges."""
    return _json_char_cached(normalize_ranges(ranges))


@functools.lru_cache(maxsize=None)
def json_char_any() -> Term:
    """One JSON string character, any code point."""
    return json_char([(0, MAX_CODEPOINT)])


@functools.lru_cache(maxsize=None)
def string_content_any() -> Term:
    """Any JSON string content (between the quotes)."""
    return star(json_char_any())


QUOTE = lit('"')
"""The double quote that opens and closes every JSON string."""


def string_term(content: Term | None = None) -> Term:
    """A JSON string whose content (raw, between the quotes) is in ``content``
    (default: any)."""
    return seq(QUOTE, string_content_any() if content is None else content, QUOTE)


def string_content_literal(s: str) -> Term:
    """All spellings of exactly the text ``s`` as JSON string content (``NOTHING`` if
    ``s`` holds a lone surrogate, which has no accepted spelling).

    From ``LAZY_LITERAL_MIN`` characters on, the text is a lazy rule (:func:`grammar.ir.lazy`):
    one character and a lazy rule for the rest, built when a derivative first reaches it.
    A tool name or an enum value then costs O(1) terms at compile time, however long, and
    so does prefixing it to a continuation (a ``seq`` chain is rebuilt per use)."""
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in s):
        return NOTHING
    return _content_literal(s)


LAZY_LITERAL_MIN = 4
"""Texts at least this long become lazy rules in :func:`string_content_literal`."""


@functools.lru_cache(maxsize=8192)
def _content_literal(s: str) -> Term:
    if len(s) < LAZY_LITERAL_MIN:
        return _eager_text(s)
    return _lazy_text(s, 0, sum(_shortest_spelling(ch) for ch in s))


def _eager_text(s: str) -> Term:
    return seq(*[_json_char_of(ch) for ch in s])


@functools.lru_cache(maxsize=4096)
def _json_char_of(ch: str) -> Term:
    """:func:`json_char` of the one character ``ch``."""
    c = ord(ch)
    return json_char([(c, c)])


def _lazy_text(s: str, i: int, n: int) -> Term:
    """The lazy rule of ``s[i:]`` (at least ``LAZY_LITERAL_MIN`` characters), whose
    shortest spelling is ``n`` bytes: its body is the character ``s[i]`` and the rule of
    the rest.  The rest is addressed by its offset and its length follows from ``n``:
    slicing, hashing or summing each suffix anew would make a long text quadratic."""
    first = _json_char_of(s[i])

    def build() -> Term:
        j = i + 1
        rest = (_lazy_text(s, j, n - _shortest_spelling(s[i])) if len(s) - j >= LAZY_LITERAL_MIN
                else _eager_text(s[j:]))
        return seq(first, rest)

    return lazy(f"text:{s[i:i + 24]!r}", build, nullable=False, min_len=n)


@functools.lru_cache(maxsize=1024)
def _shortest_spelling(ch: str) -> int:
    c = ord(ch)
    return minlen(json_char([(c, c)]))


@functools.lru_cache(maxsize=8192)
def string_literal(s: str) -> Term:
    """All JSON spellings of the string value ``s`` (quotes included)."""
    c = string_content_literal(s)
    return NOTHING if c is NOTHING else seq(QUOTE, c, QUOTE)


def string_except(names: Iterable[str]) -> Term:
    """Every JSON string (quotes included) whose value is none of ``names``, over all
    spellings, without an intersection or a complement.

    The same language as ``both(string_term(), neg(alt(*map(string_literal, names))))``,
    built on the trie of the names' code points: at a node, the closing quote (unless a
    name ends there), a character that no name continues with (then any content), or a
    character that some name continues with (then that child's node).  Its derivatives
    stay structural (no intersection terms, no liveness search); it has one alternative
    per trie edge.  Names holding a lone surrogate have no spelling and are skipped."""
    root: dict = {}
    for n in names:
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in n):
            continue
        node = root
        for ch in n:
            node = node.setdefault(ord(ch), {})
        node[-1] = None    # a name ends here
    # post-order without recursion (a name may be long)
    built: dict[int, Term] = {}
    stack: list[tuple[dict, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        kids = sorted(c for c in node if c >= 0)
        if not ready:
            stack.append((node, True))
            stack.extend((node[c], False) for c in kids)
            continue
        parts = [] if -1 in node else [QUOTE]
        parts.append(seq(_json_char_except(tuple(kids)), string_content_any(), QUOTE))
        parts.extend(seq(json_char([(c, c)]), built.pop(id(node[c]))) for c in kids)
        t = alt(*parts)
        # any content then the quote, less the few names that end below this node
        declare_cofinite(t, string_content_any(), QUOTE)
        built[id(node)] = t
    return seq(QUOTE, built[id(root)])


@functools.lru_cache(maxsize=4096)
def _json_char_except(cps: tuple[int, ...]) -> Term:
    """One JSON string character whose code point is not in ``cps`` (sorted).  The non-ASCII
    code points are one shared term when ``cps`` is all ASCII (key names usually are), so
    a new set costs the ASCII part only."""
    if cps and cps[-1] < 0x80:
        ascii_rest = _subtract([(0, 0x7F)], [(c, c) for c in cps])
        return alt(json_char(ascii_rest), json_char([(0x80, MAX_CODEPOINT)]))
    return json_char(_subtract([(0, MAX_CODEPOINT)], [(c, c) for c in cps]))


@functools.lru_cache(maxsize=None)
def null_term() -> Term:
    return lit("null")


@functools.lru_cache(maxsize=None)
def boolean_term() -> Term:
    return alt(lit("true"), lit("false"))


# ------------------------------------------------------------------------ numbers

def to_decimal(x: int | float | Decimal) -> Decimal:
    """Exact decimal value of a schema number (a float is read as its shortest repr)."""
    if isinstance(x, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(x, Decimal):
        return x
    if isinstance(x, int):
        return Decimal(x)
    if isinstance(x, float):
        if x != x or x in (float("inf"), float("-inf")):
            raise ValueError(f"non-finite number {x!r}")
        return Decimal(repr(x))
    raise TypeError(f"not a number: {x!r}")


_INT = alt(ZERO, seq(NZDIGIT, star(DIGIT)))          # canonical integer part
_FRAC = opt(seq(lit("."), plus(DIGIT)))               # optional fraction suffix
_EXP_MARK = byte_class(b"eE")
_MINUS = lit("-")


def _mantissa_sig(k: int) -> Term:
    """Scientific mantissa ``d(.F)?`` with exactly ``k`` fraction digits (the last one
    non-zero)."""
    if k == 0:
        return NZDIGIT
    return seq(NZDIGIT, lit("."), repeat(DIGIT, k - 1, k - 1), NZDIGIT)


@functools.lru_cache(maxsize=None)
def _mantissa_any() -> Term:
    """Scientific mantissa: one non-zero digit, then at most SCI_DIGITS fraction digits
    of which the last is non-zero."""
    return seq(NZDIGIT, opt(seq(lit("."), repeat(DIGIT, 0, SCI_DIGITS - 1), NZDIGIT)))


@functools.lru_cache(maxsize=None)
def _exp_any() -> Term:
    return seq(_EXP_MARK, opt(byte_class(b"+-")), plus(DIGIT))


@functools.lru_cache(maxsize=None)
def _plain_mag() -> Term:
    return seq(_INT, _FRAC)


@functools.lru_cache(maxsize=None)
def _sci_mag() -> Term:
    return seq(_mantissa_any(), _exp_any())


@functools.lru_cache(maxsize=None)
def number_term() -> Term:
    """Every accepted number spelling (see the module docstring)."""
    mag = alt(_plain_mag(), _sci_mag())
    return seq(opt(_MINUS), mag)


# --- canonical-integer comparisons (digit strings without leading zeros)

def _digit_gt(d: int) -> Term:
    return byte_range(0x30 + d + 1, 0x39) if d < 9 else NOTHING


def _digit_lt(d: int) -> Term:
    return byte_range(0x30, 0x30 + d - 1) if d > 0 else NOTHING


@functools.lru_cache(maxsize=None)
def _int_gt(a: str) -> Term:
    """Canonical integers (``0|[1-9][0-9]*``) greater than the canonical integer ``a``."""
    n = len(a)
    parts = [seq(NZDIGIT, repeat(DIGIT, n, None))]           # longer
    for i in range(n):                                      # same length, greater at i
        parts.append(seq(lit(a[:i]), _digit_gt(int(a[i])), repeat(DIGIT, n - i - 1, n - i - 1)))
    return alt(*parts)


@functools.lru_cache(maxsize=None)
def _int_lt(a: str) -> Term:
    """Canonical integers smaller than the canonical integer ``a``."""
    n = len(a)
    if a == "0":
        return NOTHING
    parts = [ZERO]
    if n >= 2:
        parts.append(seq(NZDIGIT, repeat(DIGIT, 0, n - 2)))  # shorter, non-zero
    for i in range(n):
        lo = _digit_lt(int(a[i])) if i > 0 else (
            byte_range(0x31, 0x30 + int(a[0]) - 1) if int(a[0]) > 1 else NOTHING)
        if n == 1:
            lo = _digit_lt(int(a[0]))
        parts.append(seq(lit(a[:i]), lo, repeat(DIGIT, n - i - 1, n - i - 1)))
    return alt(*parts)


def _suffix(op: str, b: str) -> Term:
    """Fraction suffixes (``EMPTY`` or ``.digits``) whose value compares to ``0.b``
    (``b`` has no trailing zeros) by ``op``."""
    dot = lit(".")
    ds = star(DIGIT)
    if op in (">=", ">"):
        if not b:
            if op == ">=":
                return _FRAC
            return seq(dot, ds, NZDIGIT, ds)
        alts = [seq(lit(b[:i]), _digit_gt(int(b[i])), ds) for i in range(len(b))]
        alts.append(seq(lit(b), ds) if op == ">=" else seq(lit(b), ds, NZDIGIT, ds))
        return seq(dot, alt(*alts))
    # <= and <
    if not b:
        return alt(EMPTY, seq(dot, plus(ZERO))) if op == "<=" else NOTHING
    alts = [seq(lit(b[:i]), _digit_lt(int(b[i])), ds) for i in range(len(b))]
    alts += [lit(b[:i]) for i in range(1, len(b))]
    if op == "<=":
        alts.append(seq(lit(b), star(ZERO)))
    return alt(EMPTY, seq(dot, alt(*alts)))


def _split_dec(c: Decimal) -> tuple[str, str]:
    """Non-negative decimal -> (canonical integer digits, fraction digits w/o trailing 0)."""
    s = format(c, "f")
    if "." in s:
        a, b = s.split(".")
        b = b.rstrip("0")
    else:
        a, b = s, ""
    a = a.lstrip("0") or "0"
    return a, b


def _plain_mag_cmp(op: str, c: Decimal) -> Term:
    """Plain unsigned decimal spellings whose value compares to ``c >= 0`` by ``op``."""
    a, b = _split_dec(c)
    if op in (">=", ">"):
        return alt(seq(_int_gt(a), _FRAC), seq(lit(a), _suffix(op, b)))
    return alt(seq(_int_lt(a), _FRAC), seq(lit(a), _suffix(op, b)))


def _normalize_sci(c: Decimal) -> tuple[Decimal, int]:
    """``c > 0`` as ``(m, e)`` with ``1 <= m < 10`` and ``c = m * 10**e``."""
    with localcontext() as ctx:
        ctx.prec = _PREC
        t = c.normalize().as_tuple()
        e = len(t.digits) - 1 + t.exponent
        m = c.scaleb(-e)
    return m, e


_FLIP = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "=="}


def _canon_pred(o: str, v: int) -> Term:
    """Canonical non-negative integers ``x`` (``0|[1-9][0-9]*``) with ``x o v``."""
    if v < 0:
        return alt(ZERO, seq(NZDIGIT, star(DIGIT))) if o in (">", ">=") else NOTHING
    a = str(v)
    if o == "==":
        return lit(a)
    if o == ">":
        return _int_gt(a)
    if o == "<":
        return _int_lt(a)
    if o == ">=":
        return alt(lit(a), _int_gt(a))
    return alt(lit(a), _int_lt(a))


@functools.lru_cache(maxsize=None)
def _exp_value_cmp(op: str, n: int) -> Term:
    """Signed exponent digit strings ``[+-]?[0-9]+`` (leading zeros allowed) whose value
    compares to ``n`` by ``op`` (``>= > <= < ==``)."""
    zeros = star(ZERO)
    holds = {">": 0 > n, ">=": 0 >= n, "<": 0 < n, "<=": 0 <= n, "==": 0 == n}[op]
    parts = [seq(opt(lit("+")), zeros, _canon_pred(op, n))]        # values >= 0
    if holds:
        parts.append(seq(lit("-"), plus(ZERO)))                     # "-0...0" == 0
    # negative values -y (y >= 1): -y op n  <=>  y flip(op) -n
    parts.append(seq(lit("-"), zeros, _positive(_canon_pred(_FLIP[op], -n))))
    return alt(*parts)


def _positive(t: Term) -> Term:
    """The strings of ``t`` (canonical integers) that start with a non-zero digit: all
    but ``0``, without intersecting with ``[1-9][0-9]*``."""
    nz = NZDIGIT.args[0]
    return alt(*[seq(byte_class(m & nz), x) for m, x in row(t) if m & nz])


def _sci_mag_cmp(op: str, c: Decimal) -> Term:
    """Normalised scientific unsigned spellings comparing to ``c >= 0`` by ``op``."""
    if c == 0:
        return _sci_mag() if op in (">=", ">") else NOTHING
    m, e = _normalize_sci(c)
    mant = _mantissa_any()
    outer = ">" if op in (">=", ">") else "<"
    return alt(
        seq(mant, _EXP_MARK, _exp_value_cmp(outer, e)),
        seq(both(mant, _plain_mag_cmp(op, m)), _EXP_MARK, _exp_value_cmp("==", e)),
    )


def _mag_cmp(op: str, c: Decimal) -> Term:
    return alt(_plain_mag_cmp(op, c), _sci_mag_cmp(op, c))


@functools.lru_cache(maxsize=None)
def _mag_any() -> Term:
    return alt(_plain_mag(), _sci_mag())


def number_cmp_term(op: str, c: Decimal) -> Term:
    """Accepted number spellings whose value ``x`` satisfies ``x op c``
    (``op`` in ``>= > <= <``)."""
    c = to_decimal(c)
    any_neg = seq(_MINUS, _mag_any())
    if op in (">=", ">"):
        if c > 0 or (c == 0 and op == ">"):
            return _mag_cmp(op, c)
        inner = "<=" if op == ">=" else "<"
        return alt(_mag_any(), seq(_MINUS, _mag_cmp(inner, -c)))
    if op in ("<=", "<"):
        if c >= 0 and not (c == 0 and op == "<"):
            return alt(_mag_cmp(op, c), any_neg)
        inner = ">=" if op == "<=" else ">"
        return seq(_MINUS, _mag_cmp(inner, -c))
    raise ValueError(op)


def number_equal_term(c: int | float | Decimal) -> Term:
    """Every accepted spelling of the numeric value ``c`` (JSON equality: ``1 == 1.0``).

    Built directly, without intersecting ``>= c`` with ``<= c`` (the same language):
    the plain decimal (fraction padded with any zeros, ``-0`` for zero) and, when its
    mantissa fits :data:`SCI_DIGITS`, the one normalised scientific mantissa with any
    spelling of its exponent."""
    return _number_equal(to_decimal(c))


@functools.lru_cache(maxsize=4096)
def _number_equal(c: Decimal) -> Term:
    if c == 0:
        return seq(opt(_MINUS), ZERO, opt(seq(lit("."), plus(ZERO))))
    sign = _MINUS if c < 0 else EMPTY
    c = abs(c)
    a, b = _split_dec(c)
    plain = seq(lit(a), seq(lit("." + b), star(ZERO)) if b else opt(seq(lit("."), plus(ZERO))))
    m, e = _normalize_sci(c)
    ma, mb = _split_dec(m)
    parts = [plain]
    if len(mb) <= SCI_DIGITS:
        parts.append(seq(lit(ma + ("." + mb if mb else "")), _EXP_MARK, _exp_value_cmp("==", e)))
    return seq(sign, alt(*parts))


@functools.lru_cache(maxsize=None)
def integer_term(draft4: bool = False) -> Term:
    """Integer spellings.  Draft 4 (as Python ``jsonschema`` does) only counts literals
    without fraction or exponent; later drafts count every integral value, so ``1.0``,
    ``1.50e1`` and ``1e+16`` are integers too."""
    if draft4:
        return seq(opt(_MINUS), _INT)
    plain = seq(_INT, opt(seq(lit("."), plus(ZERO))))
    scis = [seq(_mantissa_sig(k), _EXP_MARK, _exp_value_cmp(">=", k))
            for k in range(SCI_DIGITS + 1)]
    return seq(opt(_MINUS), alt(plain, *scis))


class UnsupportedMultipleOf(ValueError):
    """``multipleOf`` whose exact automaton would be too large."""


def _mult_params(m: Decimal) -> tuple[int, int]:
    """``m = P / 10**Q`` with integers ``P > 0``, ``Q >= 0``."""
    with localcontext() as ctx:
        ctx.prec = _PREC
        t = m.normalize().as_tuple()
    digits = int("".join(map(str, t.digits)))
    if t.exponent >= 0:
        return digits * 10 ** t.exponent, 0
    return digits, -t.exponent


MAX_MULTIPLE_STATES = 20000


def multiple_of_term(m: int | float | Decimal) -> Term:
    """Accepted number spellings whose value is an integer multiple of ``m > 0``
    (exact decimal arithmetic; a digit automaton tracking the remainder).

    Raises
    ------
    UnsupportedMultipleOf
        When the automaton would need more than ``MAX_MULTIPLE_STATES`` states.
    """
    md = to_decimal(m)
    if md <= 0:
        raise ValueError("multipleOf must be > 0")
    p, q = _mult_params(md)
    if p * (q + 1 + 2 * (SCI_DIGITS + 1)) > MAX_MULTIPLE_STATES:
        raise UnsupportedMultipleOf(f"multipleOf {m!r} needs too many automaton states")
    return _multiple_of(p, q)


@functools.lru_cache(maxsize=64)
def _multiple_of(p: int, q: int) -> Term:
    digits = [byte_class(1 << (0x30 + d)) for d in range(10)]

    def group(r: int, target) -> Term:
        by: dict[int, int] = {}
        for d in range(10):
            by.setdefault((10 * r + d) % p, 0)
            by[(10 * r + d) % p] |= 1 << (0x30 + d)
        return alt(*[seq(byte_class(mask), target(t)) for t, mask in by.items()])

    zeros = star(ZERO)
    # fraction phase F[j][r], j = fraction digits read so far (1..q); beyond q only zeros
    frac_rules: dict[tuple[int, int], Rule] = {}

    def frac(j: int, r: int) -> Term:
        if j >= q:
            return zeros if r % p == 0 else NOTHING
        key = (j, r)
        R = frac_rules.get(key)
        if R is None:
            R = frac_rules[key] = Rule(f"mult{p}/{q}.f{j}.{r}")
        return R

    int_rules: dict[int, Rule] = {}

    def intr(r: int) -> Rule:
        R = int_rules.get(r)
        if R is None:
            R = int_rules[r] = Rule(f"mult{p}/{q}.i{r}")
        return R

    def end_ok(r: int, missing: int) -> bool:
        return (r * pow(10, missing, p)) % p == 0

    def after_int(r: int) -> Term:
        """Continuation once the integer part (remainder r) is complete."""
        opts = []
        if end_ok(r, q):
            opts.append(EMPTY)
        if q == 0:
            if r % p == 0:
                opts.append(seq(lit("."), plus(ZERO)))
        else:
            opts.append(seq(lit("."), group(r, lambda t: frac(1, t))))
        return alt(*opts)

    # define lazily-created rules until closure
    pending_i = [r for r in range(p)]
    for r in pending_i:
        intr(r)
    for r in range(p):
        int_rules[r].define(alt(group(r, intr), after_int(r)))
    done: set = set()
    while True:
        todo = [k for k in frac_rules if k not in done]
        if not todo:
            break
        for (j, r) in todo:
            done.add((j, r))
            body = group(r, lambda t, j=j: frac(j + 1, t))
            if end_ok(r, q - j):
                body = alt(body, EMPTY)
            frac_rules[(j, r)].define(body)
    plain = alt(seq(ZERO, after_int(0)), *[seq(digits[d], intr(d % p)) for d in range(1, 10)])

    # scientific: mantissa d.F (no trailing zero, j = len(F) <= SCI_DIGITS) and exponent
    # E: x * 10**q = M * 10**(E - j + q) with M = int(dF); a multiple of p iff
    # E >= j - q + g(M mod p), g(r) = least t with r * 10**t = 0 (mod p)
    def g(r: int):
        for t in range(0, 64):
            if (r * pow(10, t, p)) % p == 0:
                return t
        return None

    sci_rules: dict[tuple[int, int, bool], Rule] = {}
    todo: list[tuple[int, int, bool]] = []

    def sci(j: int, r: int, nz: bool) -> Rule:
        key = (j, r, nz)
        R = sci_rules.get(key)
        if R is None:
            R = sci_rules[key] = Rule(f"mult{p}/{q}.s{j}.{r}.{int(nz)}")
            todo.append(key)
        return R

    sci_start = alt(*[seq(digits[d], sci(0, d % p, True)) for d in range(1, 10)])
    while todo:
        j, r, nz = todo.pop()
        opts = []
        if j < SCI_DIGITS:
            by: dict[tuple[int, bool], int] = {}
            for d in range(10):
                k2 = ((10 * r + d) % p, d != 0)
                by[k2] = by.get(k2, 0) | (1 << (0x30 + d))
            step = alt(*[seq(byte_class(mk), sci(j + 1, t, z)) for (t, z), mk in by.items()])
            opts.append(seq(lit("."), step) if j == 0 else step)
        gr = g(r)
        if nz and gr is not None:
            opts.append(seq(_EXP_MARK, _exp_value_cmp(">=", j - q + gr)))
        sci_rules[(j, r, nz)].define(alt(*opts))
    return seq(opt(_MINUS), alt(plain, sci_start))


# ------------------------------------------------------------------ free-form values

@functools.lru_cache(maxsize=None)
def json_value_term(whitespace: int = 16) -> Term:
    """Any JSON value, any nesting depth (a recursive :class:`~grammar.ir.Rule`), with at
    most ``whitespace`` whitespace bytes at each structural position."""
    w = ws(whitespace)
    value = Rule(f"json_value/ws{whitespace}")
    key = string_term()
    member = seq(key, w, lit(":"), w, value)
    sep = seq(w, lit(","), w)
    obj = seq(lit("{"), w, alt(lit("}"), seq(member, star(seq(sep, member)), w, lit("}"))))
    arr = seq(lit("["), w, alt(lit("]"), seq(value, star(seq(sep, value)), w, lit("]"))))
    value.define(alt(null_term(), boolean_term(), number_term(), string_term(), arr, obj))
    return value

