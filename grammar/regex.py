"""ECMA-262 regular expressions (the subset that is regular) lowered to IR terms.

Two entry points:

* :func:`regex_term` -- the language of UTF-8 texts *fully* matched by a pattern (for
  ``compile_regex``; ``anchored=False`` gives search semantics instead).
* :func:`pattern_string_term` -- JSON Schema ``pattern``: ECMA-262 *search* semantics
  (unanchored unless the pattern says ``^``/``$``) over the *decoded* string, returned as
  the language of JSON string *content* (the raw text between the quotes, escapes
  included) whose decoded value matches.  Every spelling of a matching string is accepted
  (see :mod:`grammar.jsonvalue`).

Supported subset
----------------
* literals, ``.`` (any code point except line terminators ``\\n \\r \\u2028 \\u2029``),
* character classes ``[...]``/``[^...]`` with ranges and escapes, the empty class ``[]``
  (matches nothing) and ``[^]`` (matches anything),
* ``\\d \\D \\w \\W \\s \\S`` with ECMA meaning (``\\d``/``\\w`` are ASCII; ``\\s`` includes
  the Unicode spaces ECMA lists),
* escapes ``\\t \\n \\r \\f \\v \\0 \\cX \\xHH \\uHHHH \\u{H...}`` and identity escapes,
* groups: capturing ``(...)``, non-capturing ``(?:...)``, named ``(?<name>...)``,
* alternation, quantifiers ``* + ? {n} {n,} {n,m}`` and their lazy ``?`` variants (laziness
  does not change the matched language), Annex-B leniency for a ``{`` that does not start a
  quantifier and a lone ``]`` or ``}``,
* anchors ``^`` and ``$`` at the start/end of the pattern or of its top-level alternatives
  (also inside leading/trailing groups, e.g. ``^(a|b)$`` or ``(^a|b$)``).

Patterns are read as sequences of code points (as with the ``u`` flag; an astral character
is one character, as Python's ``re`` and JSON Schema 2020-12 assume).  Rejected with
:class:`~grammar.errors.RegexError`: look-around, back-references (``\\1``, ``\\k<n>``),
word boundaries ``\\b``/``\\B``, anchors elsewhere, Unicode property escapes other than
General_Category values (``\\p{L}``, ``\\p{Lu}``, ``\\p{Letter}``, ``\\P{Nd}`` ... are
supported, from Python's ``unicodedata`` tables), inline flags and Python-only syntax
(``(?P<..>``, ``(?i)``, ``(?#..)``).

Example
-------
>>> from grammar.ir import matches
>>> t = pattern_string_term("^a+$")
>>> matches(t, b"aaa"), matches(t, b"\\\\u0061"), matches(t, b"ab")
(True, True, False)
"""

from __future__ import annotations

import functools
from typing import Callable

from .errors import RegexError
from .ir import EMPTY, NOTHING, Term, alt, any_text, codepoint_ranges, repeat, seq
from .jsonvalue import MAX_CODEPOINT, json_char, normalize_ranges, string_content_any

__all__ = ["regex_term", "pattern_string_term", "pattern_full_content_term", "parse_regex",
           "RegexNode"]

RegexNode = tuple  # ('chars', ranges) | ('seq', [..]) | ('alt', [..]) | ('rep', n, lo, hi)
#                   | ('bol',) | ('eol',)

_LINE_TERMS = ((0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029))
_DIGIT = ((0x30, 0x39),)
_WORD = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_SPACE = ((0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
          (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
          (0xFEFF, 0xFEFF))
_SYNTAX = set("^$\\.*+?()[]{}|/")


def _complement(ranges) -> tuple:
    rs = normalize_ranges(ranges)
    out, cur = [], 0
    for a, b in rs:
        if a > cur:
            out.append((cur, a - 1))
        cur = b + 1
    if cur <= MAX_CODEPOINT:
        out.append((cur, MAX_CODEPOINT))
    return normalize_ranges(out)


_ANY_BUT_LT = _complement(_LINE_TERMS)


_GC_LONG = {
    "L": "Letter", "LC": "Cased_Letter", "Lu": "Uppercase_Letter", "Ll": "Lowercase_Letter",
    "Lt": "Titlecase_Letter", "Lm": "Modifier_Letter", "Lo": "Other_Letter", "M": "Mark",
    "Mn": "Nonspacing_Mark", "Mc": "Spacing_Mark", "Me": "Enclosing_Mark", "N": "Number",
    "Nd": "Decimal_Number", "Nl": "Letter_Number", "No": "Other_Number", "P": "Punctuation",
    "Pc": "Connector_Punctuation", "Pd": "Dash_Punctuation", "Ps": "Open_Punctuation",
    "Pe": "Close_Punctuation", "Pi": "Initial_Punctuation", "Pf": "Final_Punctuation",
    "Po": "Other_Punctuation", "S": "Symbol", "Sm": "Math_Symbol", "Sc": "Currency_Symbol",
    "Sk": "Modifier_Symbol", "So": "Other_Symbol", "Z": "Separator",
    "Zs": "Space_Separator", "Zl": "Line_Separator", "Zp": "Paragraph_Separator",
    "C": "Other", "Cc": "Control", "Cf": "Format", "Cs": "Surrogate", "Co": "Private_Use",
    "Cn": "Unassigned",
}
_GC_ALIASES = {"digit": "Nd", "punct": "P", "Combining_Mark": "M"}
_GC_TABLE: dict[str, tuple] = {}


def _property_ranges(name: str):
    """Code-point ranges of a General_Category property value (``\\p{L}``,
    ``\\p{Letter}``, ``\\p{gc=Lu}``, ``\\p{General_Category=Nd}``), from Python's
    ``unicodedata`` tables; ``None`` for other properties."""
    import unicodedata

    if "=" in name:
        key, _, name = name.partition("=")
        if key not in ("gc", "General_Category"):
            return None
    short = {v: k for k, v in _GC_LONG.items()}.get(name, _GC_ALIASES.get(name, name))
    if short not in _GC_LONG:
        return None
    if not _GC_TABLE:
        acc: dict[str, list] = {}
        prev, start = None, 0
        for cp in range(MAX_CODEPOINT + 2):
            cat = unicodedata.category(chr(cp)) if cp <= MAX_CODEPOINT else None
            if cat != prev:
                if prev is not None:
                    acc.setdefault(prev, []).append((start, cp - 1))
                prev, start = cat, cp
        for cat, rs in acc.items():
            _GC_TABLE[cat] = tuple(rs)
    if len(short) == 2:
        if short == "LC":
            rs = _GC_TABLE.get("Lu", ()) + _GC_TABLE.get("Ll", ()) + _GC_TABLE.get("Lt", ())
        else:
            rs = _GC_TABLE.get(short, ())
    else:
        rs = tuple(r for cat, v in _GC_TABLE.items() if cat[0] == short for r in v)
    return normalize_ranges(rs)


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.ngroups = 0

    def err(self, msg: str, pos: int | None = None):
        raise RegexError(msg, pattern=self.p, position=self.i if pos is None else pos)

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.p[j] if j < len(self.p) else None

    def parse(self) -> RegexNode:
        node = self.disjunction()
        if self.i != len(self.p):
            self.err("unbalanced ')'")
        return node

    def disjunction(self) -> RegexNode:
        alts = [self.alternative()]
        while self.peek() == "|":
            self.i += 1
            alts.append(self.alternative())
        return alts[0] if len(alts) == 1 else ("alt", alts)

    def alternative(self) -> RegexNode:
        items = []
        while True:
            c = self.peek()
            if c is None or c in "|)":
                break
            items.append(self.term())
        return items[0] if len(items) == 1 else ("seq", items)

    def term(self) -> RegexNode:
        start = self.i
        c = self.peek()
        if c == "^":
            self.i += 1
            node: RegexNode = ("bol",)
        elif c == "$":
            self.i += 1
            node = ("eol",)
        else:
            node = self.atom()
        q = self.quantifier()
        if q is not None:
            if node[0] in ("bol", "eol"):
                self.err("quantified assertion", start)
            lo, hi = q
            node = ("rep", node, lo, hi)
            if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self._quant_ahead()):
                self.err("nothing to repeat")
        return node

    def _quant_ahead(self):
        save = self.i
        try:
            return self._brace() is not None
        finally:
            self.i = save

    def _brace(self):
        """Parse ``{n}``, ``{n,}``, ``{n,m}`` at self.i; None (position restored) if the
        text is not a quantifier (Annex B: then ``{`` is a literal)."""
        p, j = self.p, self.i + 1
        k = j
        while k < len(p) and p[k].isdigit() and p[k].isascii():
            k += 1
        if k == j:
            return None
        lo = int(p[j:k])
        hi: int | None = lo
        if k < len(p) and p[k] == ",":
            k += 1
            m = k
            while k < len(p) and p[k].isdigit() and p[k].isascii():
                k += 1
            hi = int(p[m:k]) if k > m else None
        if k < len(p) and p[k] == "}":
            self.i = k + 1
            return lo, hi
        return None

    def quantifier(self):
        c = self.peek()
        q = None
        if c == "*":
            self.i += 1
            q = (0, None)
        elif c == "+":
            self.i += 1
            q = (1, None)
        elif c == "?":
            self.i += 1
            q = (0, 1)
        elif c == "{":
            start = self.i
            q = self._brace()
            if q is not None and q[1] is not None and q[1] < q[0]:
                self.err("numbers out of order in {} quantifier", start)
        if q is not None and self.peek() == "?":
            self.i += 1  # lazy: same language
        return q

    def atom(self) -> RegexNode:
        c = self.peek()
        if c == ".":
            self.i += 1
            return ("chars", _ANY_BUT_LT)
        if c == "(":
            return self.group()
        if c == "[":
            return ("chars", self.char_class())
        if c == "\\":
            return self.atom_escape()
        if c in ("*", "+", "?"):
            self.err("nothing to repeat")
        if c == "{":
            if self._quant_ahead():
                self.err("nothing to repeat")
        self.i += 1
        cp = ord(c)
        return ("chars", ((cp, cp),))

    def group(self) -> RegexNode:
        start = self.i
        self.i += 1
        if self.peek() == "?":
            nxt = self.peek(1)
            if nxt == ":":
                self.i += 2
            elif nxt in ("=", "!"):
                self.err("look-ahead is not supported", start)
            elif nxt == "<" and self.peek(2) in ("=", "!"):
                self.err("look-behind is not supported", start)
            elif nxt == "<":
                end = self.p.find(">", self.i)
                name = self.p[self.i + 2:end] if end > 0 else ""
                if end < 0 or not name or not (name[0].isalpha() or name[0] in "_$") or \
                        not all(ch.isalnum() or ch in "_$" for ch in name):
                    self.err("invalid group name", start)
                self.i = end + 1
                self.ngroups += 1
            else:
                self.err("invalid group (inline flags and Python syntax are not ECMA-262)",
                         start)
        else:
            self.ngroups += 1
        node = self.disjunction()
        if self.peek() != ")":
            self.err("missing ')'", start)
        self.i += 1
        return ("group", node)

    # -- escapes
    def _hex(self, n: int) -> int | None:
        s = self.p[self.i:self.i + n]
        if len(s) == n and all(ch in "0123456789abcdefABCDEF" for ch in s):
            self.i += n
            return int(s, 16)
        return None

    def char_escape(self, in_class: bool):
        """After the backslash: returns ('cp', int) or ('set', ranges)."""
        start = self.i - 1
        c = self.peek()
        if c is None:
            self.err("\\ at end of pattern", start)
        self.i += 1
        simple = {"t": 9, "n": 10, "r": 13, "f": 12, "v": 11}
        if c in simple:
            return ("cp", simple[c])
        if c == "d":
            return ("set", _DIGIT)
        if c == "D":
            return ("set", _complement(_DIGIT))
        if c == "w":
            return ("set", _WORD)
        if c == "W":
            return ("set", _complement(_WORD))
        if c == "s":
            return ("set", _SPACE)
        if c == "S":
            return ("set", _complement(_SPACE))
        if c == "b":
            if in_class:
                return ("cp", 8)
            self.err("word boundary \\b is not supported", start)
        if c == "B":
            if in_class:
                self.err("\\B in a character class", start)
            self.err("word boundary \\B is not supported", start)
        if c == "0" and not (self.peek() or "").isdigit():
            return ("cp", 0)
        if c.isdigit():
            self.err("back-references are not supported", start)
        if c == "c":
            nxt = self.peek()
            if nxt is not None and nxt.isascii() and nxt.isalpha():
                self.i += 1
                return ("cp", ord(nxt) % 32)
            self.err("invalid control escape", start)
        if c == "x":
            v = self._hex(2)
            if v is None:
                self.err("invalid \\x escape", start)
            return ("cp", v)
        if c == "u":
            if self.peek() == "{":
                end = self.p.find("}", self.i)
                body = self.p[self.i + 1:end] if end > 0 else ""
                if not body or any(ch not in "0123456789abcdefABCDEF" for ch in body):
                    self.err("invalid \\u{...} escape", start)
                v = int(body, 16)
                if v > MAX_CODEPOINT:
                    self.err("code point out of range", start)
                self.i = end + 1
                return ("cp", v)
            v = self._hex(4)
            if v is None:
                self.err("invalid \\u escape", start)
            if 0xD800 <= v <= 0xDBFF and self.p[self.i:self.i + 2] == "\\u":
                save = self.i
                self.i += 2
                lo = self._hex(4)
                if lo is not None and 0xDC00 <= lo <= 0xDFFF:
                    return ("cp", 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00))
                self.i = save
            if 0xD800 <= v <= 0xDFFF:
                self.err("lone surrogate escape", start)
            return ("cp", v)
        if c == "k":
            self.err("named back-references are not supported", start)
        if c in ("p", "P"):
            if self.peek() != "{":
                self.err("invalid property escape", start)
            end = self.p.find("}", self.i)
            name = self.p[self.i + 1:end] if end > 0 else ""
            ranges = _property_ranges(name)
            if ranges is None:
                self.err(f"unsupported Unicode property {name!r} (only General_Category "
                         "values are supported)", start)
            self.i = end + 1
            return ("set", ranges if c == "p" else _complement(ranges))
        if c in _SYNTAX or c == "-" or not (c.isalnum() or c == "_"):
            return ("cp", ord(c))
        self.err(f"invalid escape \\{c}", start)

    def atom_escape(self) -> RegexNode:
        self.i += 1
        kind, v = self.char_escape(in_class=False)
        if kind == "cp":
            return ("chars", ((v, v),))
        return ("chars", v)

    def char_class(self) -> tuple:
        start = self.i
        self.i += 1
        negate = False
        if self.peek() == "^":
            negate = True
            self.i += 1
        ranges: list[tuple[int, int]] = []

        def class_atom():
            c = self.peek()
            if c is None:
                self.err("missing ']'", start)
            if c == "\\":
                self.i += 1
                return self.char_escape(in_class=True)
            self.i += 1
            return ("cp", ord(c))

        while True:
            c = self.peek()
            if c is None:
                self.err("missing ']'", start)
            if c == "]":
                self.i += 1
                break
            a = class_atom()
            if self.peek() == "-" and self.peek(1) not in (None, "]"):
                self.i += 1
                b = class_atom()
                if a[0] == "cp" and b[0] == "cp":
                    if b[1] < a[1]:
                        self.err("range out of order in character class", start)
                    ranges.append((a[1], b[1]))
                    continue
                # Annex B: a class escape as an endpoint makes '-' literal
                for x in (a, b):
                    ranges.extend([(x[1], x[1])] if x[0] == "cp" else x[1])
                ranges.append((0x2D, 0x2D))
                continue
            ranges.extend([(a[1], a[1])] if a[0] == "cp" else a[1])
        rs = normalize_ranges(ranges)
        return _complement(rs) if negate else rs


@functools.lru_cache(maxsize=1024)
def parse_regex(pattern: str) -> RegexNode:
    """Parse an ECMA-262 pattern into a small AST (see the module docstring).

    Raises
    ------
    RegexError
        On syntax errors and unsupported constructs.
    """
    if not isinstance(pattern, str):
        raise RegexError("pattern must be a string", pattern=str(pattern))
    return _Parser(pattern).parse()


# ------------------------------------------------------------------- to terms

def _has_anchor(n: RegexNode) -> bool:
    k = n[0]
    if k in ("bol", "eol"):
        return True
    if k == "chars":
        return False
    if k in ("seq", "alt"):
        return any(_has_anchor(x) for x in n[1])
    if k == "group":
        return _has_anchor(n[1])
    if k == "rep":
        return _has_anchor(n[1])
    return False


def _split(n: RegexNode, side: str) -> list[tuple[bool, RegexNode]]:
    """Split off a leading ``^`` (side='start') or trailing ``$`` (side='end')."""
    mark = "bol" if side == "start" else "eol"
    if not _has_anchor(n):
        return [(False, n)]
    k = n[0]
    if k == mark:
        return [(True, ("seq", []))]
    if k == "group":
        return _split(n[1], side)
    if k == "alt":
        out = []
        for x in n[1]:
            out.extend(_split(x, side))
        return out
    if k == "seq":
        items = n[1]
        if not items:
            return [(False, n)]
        if side == "start":
            return [(a, ("seq", [x] + items[1:])) for a, x in _split(items[0], side)]
        return [(a, ("seq", items[:-1] + [x])) for a, x in _split(items[-1], side)]
    return [(False, n)]


def _term(n: RegexNode, atom: Callable, pattern: str) -> Term:
    k = n[0]
    if k == "chars":
        return atom(n[1]) if n[1] else NOTHING
    if k == "seq":
        return seq(*[_term(x, atom, pattern) for x in n[1]])
    if k == "alt":
        return alt(*[_term(x, atom, pattern) for x in n[1]])
    if k == "group":
        return _term(n[1], atom, pattern)
    if k == "rep":
        return repeat(_term(n[1], atom, pattern), n[2], n[3])
    if k in ("bol", "eol"):
        raise RegexError("anchor in an unsupported position (only at the ends of the "
                         "pattern or of its top-level alternatives)", pattern=pattern)
    raise AssertionError(k)  # pragma: no cover


def _search_term(pattern: str, atom: Callable, anystr: Term) -> Term:
    tree = parse_regex(pattern)
    out = []
    for sa, rest in _split(tree, "start"):
        for ea, core in _split(rest, "end"):
            body = _term(core, atom, pattern)
            out.append(seq(EMPTY if sa else anystr, body, EMPTY if ea else anystr))
    return alt(*out)


def _utf8_atom(ranges) -> Term:
    return codepoint_ranges(ranges)


@functools.lru_cache(maxsize=256)
def regex_term(pattern: str, *, anchored: bool = True) -> Term:
    """The UTF-8 texts matched by an ECMA-262 ``pattern``.

    Parameters
    ----------
    pattern:
        The regular expression (see the module docstring for the subset).
    anchored:
        ``True``: the whole text must match (``^``/``$`` at the ends are allowed and
        redundant).  ``False``: ECMA ``RegExp.test`` search semantics.

    Raises
    ------
    RegexError
        On syntax errors and unsupported constructs.
    """
    if not anchored:
        return _search_term(pattern, _utf8_atom, any_text())
    tree = parse_regex(pattern)
    out = []
    for _sa, rest in _split(tree, "start"):
        for _ea, core in _split(rest, "end"):
            out.append(_term(core, _utf8_atom, pattern))
    return alt(*out)


@functools.lru_cache(maxsize=512)
def pattern_string_term(pattern: str) -> Term:
    """JSON Schema ``pattern``: the JSON string *contents* (raw text between the quotes)
    whose decoded value contains a match of ``pattern`` (ECMA-262 search semantics).

    Raises
    ------
    RegexError
        On syntax errors and unsupported constructs.
    """
    return _search_term(pattern, json_char, string_content_any())


def pattern_full_content_term(pattern: str) -> Term:
    """JSON string contents whose decoded value is *fully* matched by ``pattern``."""
    tree = parse_regex(pattern)
    out = []
    for _sa, rest in _split(tree, "start"):
        for _ea, core in _split(rest, "end"):
            out.append(_term(core, json_char, pattern))
    return alt(*out)
