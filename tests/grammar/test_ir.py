"""Tests for grammar.ir: term constructors, derivatives, minlen, UTF-8 helpers."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from grammar import ir
from grammar.errors import GrammarError


def test_literals_and_classes():
    t = ir.seq(ir.lit("ab"), ir.star(ir.byte_class(b"c")))
    assert ir.matches(t, b"ab")
    assert ir.matches(t, b"abccc")
    assert not ir.matches(t, b"abd")
    assert not ir.matches(t, b"a")


def test_hash_consing_identity():
    assert ir.seq(ir.lit("a"), ir.lit("b")) is ir.lit("ab")
    assert ir.alt(ir.lit("x"), ir.lit("y")) is ir.alt(ir.lit("y"), ir.lit("x"))
    assert ir.alt(ir.lit("x"), ir.NOTHING) is ir.lit("x")
    assert ir.seq(ir.NOTHING, ir.lit("a")) is ir.NOTHING
    assert ir.neg(ir.neg(ir.lit("a"))) is ir.lit("a")


def test_bounded_repeat():
    t = ir.repeat(ir.lit("ab"), 2, 3)
    assert [ir.matches(t, b"ab" * n) for n in range(5)] == [False, False, True, True, False]
    # nullable body with lower bound
    u = ir.repeat(ir.opt(ir.lit("a")), 2, 2)
    assert ir.matches(u, b"") and ir.matches(u, b"a") and ir.matches(u, b"aa")
    assert not ir.matches(u, b"aaa")
    with pytest.raises(ValueError):
        ir.repeat(ir.lit("a"), 3, 2)


def test_intersection_and_complement():
    key = ir.both(ir.plus(ir.byte_range(97, 122)), ir.neg(ir.alt(ir.lit("foo"), ir.lit("bar"))))
    got = {w: ir.matches(key, w) for w in [b"foo", b"fo", b"food", b"bar", b"baz", b""]}
    assert got == {b"foo": False, b"fo": True, b"food": True, b"bar": False, b"baz": True, b"": False}


def test_recursive_rule_and_left_recursion():
    r = ir.Rule("v")
    r.define(ir.alt(ir.lit("x"), ir.seq(ir.lit("("), r, ir.lit(")"))))
    assert ir.matches(r, b"((x))")
    assert not ir.matches(r, b"((x)")
    assert ir.minlen(r) == 1
    left = ir.Rule("left")
    left.define(ir.alt(ir.seq(left, ir.lit("a")), ir.lit("b")))
    with pytest.raises(GrammarError):
        ir.matches(left, b"ba")


def test_unproductive_rule_is_empty():
    r = ir.Rule("inf")
    r.define(ir.seq(ir.lit("a"), r))
    assert ir.minlen(r) == ir.INF
    assert ir.minlen(ir.both(ir.lit("ab"), ir.neg(ir.lit("ab")))) == ir.INF


def test_special_tokens_are_separate_symbols():
    t = ir.seq(ir.lit("a"), ir.special(7), ir.lit("b"))
    assert ir.matches(t, [97, ("special", 7), 98])
    assert not ir.matches(t, [97, ("special", 8), 98])
    assert not ir.matches(t, b"a<7>b")
    assert ir.specials_of(t) == {7}
    assert ir.minlen(t) == 3


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x10FFFF), st.integers(0, 3000)), min_size=1, max_size=3),
       st.lists(st.integers(0, 0x10FFFF), min_size=1, max_size=20))
def test_codepoint_ranges_match_python_utf8(ranges, probes):
    rs = [(lo, min(lo + w, 0x10FFFF)) for lo, w in ranges]
    t = ir.codepoint_ranges(rs)
    for cp in probes + [lo for lo, _ in rs] + [hi for _, hi in rs]:
        inside = any(lo <= cp <= hi for lo, hi in rs) and not (0xD800 <= cp <= 0xDFFF)
        if 0xD800 <= cp <= 0xDFFF:
            continue  # not encodable
        assert ir.matches(t, chr(cp).encode("utf-8")) == inside, hex(cp)


def test_utf8_char_rejects_malformed():
    u = ir.utf8_char()
    for ok in ["a", "é", "中", "😀", "\x7f"]:
        assert ir.matches(u, ok.encode())
    for bad in [b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe4\xb8"]:
        assert not ir.matches(u, bad)
    assert not ir.matches(ir.utf8_char(exclude=b'"'), b'"')


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=">a<é\n", max_size=12), st.sampled_from([">>>", "</function>", "ab", "aa", "<|"]))
def test_text_until_closes_at_first_occurrence(text, stop):
    data = (text + stop).encode()
    expected = (text + stop).find(stop) == len(text)
    assert ir.matches(ir.text_until(stop), data) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab", max_size=8))
def test_derivatives_agree_with_python_re(s):
    # (a|ab)*b?  vs re
    t = ir.seq(ir.star(ir.alt(ir.lit("a"), ir.lit("ab"))), ir.opt(ir.lit("b")))
    assert ir.matches(t, s.encode()) == bool(re.fullmatch(r"(a|ab)*b?", s))


def test_minlen_exact_on_structures():
    t = ir.seq(ir.repeat(ir.lit("ab"), 2, None), ir.alt(ir.lit("xyz"), ir.lit("q")))
    assert ir.minlen(t) == 5
    assert ir.minlen(ir.text_until(">>>")) == 3
    assert ir.minlen(ir.EMPTY) == 0
    assert ir.minlen(ir.NOTHING) == ir.INF


_ALPHABET = b"ab0"
_leaf = st.sampled_from([ir.lit("a"), ir.lit("b"), ir.lit("0"), ir.lit("ab"), ir.EMPTY,
                         ir.byte_class(ir.mask_of(ord("a"), ord("b")))])
_terms = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        st.tuples(kids, kids).map(lambda p: ir.seq(*p)),
        st.tuples(kids, kids).map(lambda p: ir.alt(*p)),
        st.tuples(kids, kids).map(lambda p: ir.both(*p)),
        kids.map(ir.neg),
        st.tuples(kids, st.integers(0, 2), st.integers(0, 2)).map(
            lambda p: ir.repeat(p[0], p[1], None if p[2] == 2 else max(p[1], p[2]))),
    ),
    max_leaves=8)


def _shortest_by_enumeration(t: ir.Term, limit: int = 6) -> int:
    import itertools
    for n in range(limit + 1):
        for w in itertools.product(_ALPHABET, repeat=n):
            if ir.matches(t, bytes(w)):
                return n
    return ir.INF


@settings(max_examples=300, deadline=None)
@given(_terms, _terms)
def test_intersection_witness_is_exact_when_it_answers(a, b):
    # the witness shortcut either declines (None) or gives the true shortest length
    t = ir.both(a, b)
    if t.kind != "and":
        return
    w = ir._minlen_witness(t)
    if w is not None:
        assert w == _shortest_by_enumeration(t, limit=max(w, 0) + 1)
        assert w == ir._minlen_search(t, 4000)


@settings(max_examples=300, deadline=None)
@given(_terms, _terms)
def test_intersection_of_disjoint_starts_is_nothing(a, b):
    """``both`` returns NOTHING at once when no first symbol is common to non-nullable
    operands; whatever it returns has exactly the intersection's language."""
    import itertools
    t = ir.both(a, b)
    for n in range(4):
        for w in itertools.product(_ALPHABET, repeat=n):
            assert ir.matches(t, bytes(w)) == (ir.matches(a, bytes(w)) and ir.matches(b, bytes(w)))
    # without intersections inside, the structure gives the exact first bytes
    if not (a.has_bool or b.has_bool or ir.is_nullable(a) or ir.is_nullable(b)):
        fa = sum(m for m, _ in ir.row(a))
        fb = sum(m for m, _ in ir.row(b))
        if not fa & fb:
            assert t is ir.NOTHING


def test_integer_exponent_pieces_build_no_empty_intersection():
    # "-y" exponents compare the digits of y with a bound; a bound that only "0" meets
    # used to leave and("0", "[1-9][0-9]*") in every integer term
    assert ir.both(ir.lit("0"), ir.seq(ir.byte_range(0x31, 0x39), ir.star(ir.byte_range(0x30, 0x39)))) is ir.NOTHING
    assert ir.both(ir.special(5), ir.lit("a")) is ir.NOTHING
    assert ir.both(ir.special(5), ir.alt(ir.special(5), ir.lit("a"))).kind == "and"


@settings(max_examples=300, deadline=None)
@given(_terms, st.sampled_from(list(_ALPHABET)))
def test_one_byte_derivative_agrees_with_rows(t, b):
    # _dsym builds one byte derivative without the row; its language must equal the row's
    d = ir._dsym(t, -1 - b)
    r = ir.deriv(t, b)
    import itertools
    for n in range(4):
        for w in itertools.product(_ALPHABET, repeat=n):
            assert ir.matches(d, bytes(w)) == ir.matches(r, bytes(w))


@settings(max_examples=200, deadline=None)
@given(st.lists(_terms, min_size=1, max_size=4))
def test_union_of_rows_is_the_bytewise_union(ts):
    """``_union_rows`` (refining overlapping cells, or concatenating disjoint ones) maps
    each byte to the union of the operands' derivatives, every cell once."""
    rows = [ir.row(t) for t in ts]
    got = ir._union_rows(rows)
    masks = [m for m, _ in got]
    assert len(set(x for _, x in got)) == len(got)
    for i, m in enumerate(masks):
        assert m and not any(m & n for n in masks[i + 1:])
    for b in range(256):
        bit = 1 << b
        want = ir.alt(*[x for r in rows for m, x in r if m & bit])
        have = [x for m, x in got if m & bit]
        assert have == ([] if want is ir.NOTHING else [want]), b


@settings(max_examples=300, deadline=None)
@given(_terms)
def test_known_nullability_and_length_at_construction_are_exact(t):
    """A term built from operands that know their nullability and shortest length knows
    its own at once (Term.__init__): the values must be the true ones."""
    if t._null is not None:
        assert t._null == ir.matches(t, b"")
    if t._minlen is not None:
        n = _shortest_by_enumeration(t, limit=min(t._minlen, 6))
        assert n == t._minlen or (t._minlen > 6 and n == ir.INF)
    # terms without intersection or complement always know both
    if not t.has_bool:
        assert t._null is not None and t._minlen is not None


def test_rules_leave_lengths_to_the_fixpoint():
    r = ir.Rule("r")
    t = ir.seq(ir.lit("x"), r)
    assert t._minlen is None and t._null is False   # "x" settles nullability, not length
    r.define(ir.alt(ir.lit("y"), ir.seq(ir.lit("("), r, ir.lit(")"))))
    assert ir.minlen(t) == 2 and ir.minlen(r) == 1
    assert ir.seq(ir.lit("zz"), r)._minlen == 3      # built after the fixpoint: known


def test_integer_range_minlen_needs_no_search():
    from grammar.jsonvalue import integer_term, number_cmp_term, to_decimal
    t = ir.both(integer_term(), number_cmp_term(">=", to_decimal(5)),
                number_cmp_term("<=", to_decimal(1440)))
    assert ir._minlen_witness(t) == 1
    # later drafts count 2e4 as an integer: three bytes, not five
    far = ir.both(integer_term(), number_cmp_term(">=", to_decimal(12345)))
    assert ir._minlen_witness(far) == 3 == ir._minlen_search(far, 4000)
    # draft 4: every operand's shortest string (1 or 3 bytes) is shorter than the
    # answer, so the shortcut declines and the search decides
    far4 = ir.both(integer_term(draft4=True), number_cmp_term(">=", to_decimal(12345)))
    assert ir._minlen_witness(far4) is None
    assert ir.minlen(far4) == 5
    # a bound whose shortest member is not the shortest of any operand: the search decides
    hard = ir.both(ir.alt(ir.lit("a"), ir.lit("bb")), ir.alt(ir.lit("b"), ir.lit("bb")))
    assert ir._minlen_witness(hard) is None
    assert ir.minlen(hard) == 2


def test_schema_terms_declare_no_specials_and_compose():
    from grammar.schema import json_schema_term
    t = json_schema_term({"type": "object", "properties": {"a": {"type": "integer"}}}).term
    assert t._specials == frozenset()
    assert ir.specials_of(ir.seq(t, ir.special(7), ir.alt(t, ir.special(9)))) == {7, 9}


def test_intersection_inside_its_own_recursion():
    # the witness of A needs minlen(R), whose fixpoint meets A again: the shortcut must
    # step aside (not recurse forever) and the search must give the exact answer
    r = ir.Rule("r")
    a = ir.both(ir.seq(r, ir.star(ir.lit("b"))), ir.seq(r, ir.lit("b")))
    r.define(ir.alt(ir.lit("a"), ir.seq(ir.lit("("), a, ir.lit(")"))))
    assert ir.minlen(a) == 2
    assert ir.minlen(r) == 1
    assert ir.matches(r, b"(ab)") and not ir.matches(r, b"(a)")


def test_union_minlen_searches_only_operands_that_can_win():
    """Branch and bound: an operand whose lower bound is no better than the best exact
    length found is never searched (its intersection keeps no ``minlen``), and the answer
    is still the exact shortest length."""
    from grammar.jsonvalue import integer_term, number_cmp_term, to_decimal
    near = ir.seq(ir.lit("a"), ir.both(integer_term(), number_cmp_term(">=", to_decimal(5))))
    far_and = ir.both(integer_term(), number_cmp_term(">=", to_decimal(123)))
    far = ir.seq(ir.lit("bbbb"), far_and)
    u = ir.alt(near, far)
    assert ir.minlen(u) == 2
    assert far_and._minlen is None          # bound 4 + 1 >= 2: not searched
    assert ir.minlen(far) == 7 and ir.minlen(u) == 2
    # the winner may be an operand whose lower bound is not the smallest
    hard = ir.both(ir.alt(ir.lit("a"), ir.lit("bb")), ir.alt(ir.lit("b"), ir.lit("bb")))
    assert ir._lower_bound(hard) == 1 and ir.minlen(hard) == 2
    v = ir.alt(hard, ir.seq(ir.lit("c"), ir.both(ir.lit("cc"), ir.star(ir.lit("c")))))
    assert ir.minlen(v) == 2


def test_witness_never_searches_nested_intersections(monkeypatch):
    """The witness shortcut takes the lengths of nested intersections from their own
    shortcuts or declines; it never runs the A* for them (on nested oneOf/not inside
    objects those searches cost seconds).  minlen itself then searches once."""
    calls = []
    real = ir._minlen_search
    monkeypatch.setattr(ir, "_minlen_search", lambda t, limit: calls.append(t) or real(t, limit))
    inner = ir.both(ir.star(ir.lit("qz")), ir.neg(ir.EMPTY))   # its length takes a search
    outer = ir.both(ir.seq(ir.lit("x"), inner), ir.star(ir.byte_class(b"qxz")))
    assert ir._minlen_witness(outer) is None and not calls
    assert ir.is_live(outer) and not calls
    assert ir.minlen(outer) == 3 and calls


def _live_by_exploration(t: ir.Term, limit: int = 20000) -> bool:
    """Reference: breadth-first over every derivative row (no shortcut, no memo of
    liveness or lengths): non-empty iff an accepting term is reachable."""
    seen, todo = {t.id}, [t]
    while todo:
        x = todo.pop()
        if ir.is_nullable(x):
            return True
        assert len(seen) < limit
        for _m, y in ir.row(x):
            if y is not ir.NOTHING and y.id not in seen:
                seen.add(y.id)
                todo.append(y)
    return False


@settings(max_examples=400, deadline=None)
@given(_terms, _terms, _terms)
def test_liveness_agrees_with_exhaustive_exploration(a, b, c):
    # intersections and complements (the search), inside concatenations and unions
    # (the structure); liveness is asked first, so it decides without minlen's results
    for t in (ir.both(a, ir.neg(b)), ir.seq(ir.both(a, b), ir.alt(c, ir.both(b, c))),
              ir.alt(ir.both(a, c), ir.seq(a, ir.neg(ir.alt(b, c))))):
        assert ir.is_live(t) == _live_by_exploration(t)
        assert ir.is_live(t) == (ir.minlen(t) < ir.INF)


def test_liveness_searches_one_operand_of_a_union():
    """A union of intersections is live as soon as one operand is: the others are not
    searched (minlen would compare them all), and a search that runs out marks every
    term it met dead."""
    from grammar.jsonvalue import integer_term, number_cmp_term, to_decimal
    ops = [ir.seq(ir.lit(f"k{i}"), ir.both(integer_term(), number_cmp_term(">=", to_decimal(10 ** i))),
                  ir.both(ir.lit("xy"), ir.neg(ir.lit(f"x{i}"))))
           for i in range(1, 9)]
    u = ir.alt(*ops)
    assert ir.is_live(u)
    assert sum(x._live is not None or x._minlen is not None for x in ops) == 1
    dead = ir.seq(ir.lit("q"), ir.both(ir.star(ir.lit("ab")), ir.neg(ir.star(ir.lit("ab")))))
    assert not ir.is_live(dead) and ir.minlen(dead) == ir.INF


def test_dead_terms_leave_the_intern_table():
    import gc
    key_count = len(ir._intern)
    t = ir.lit("a unique literal for this test, 0x5eed")
    assert len(ir._intern) > key_count
    assert ir.lit("a unique literal for this test, 0x5eed") is t
    del t
    gc.collect()
    assert len(ir._intern) <= key_count + 1   # the shared suffixes may stay alive


def test_gc_paused_restores_the_collector():
    import gc
    assert gc.isenabled()
    with ir.gc_paused():
        assert not gc.isenabled()
        with ir.gc_paused():      # nested: the inner call leaves it to the outer one
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with ir.gc_paused():
            pass
        assert not gc.isenabled()             # found disabled: left disabled
    finally:
        gc.enable()
    with pytest.raises(ZeroDivisionError):
        with ir.gc_paused():
            1 / 0
    assert gc.isenabled()


def test_lazy_rule_builds_its_body_when_a_derivative_reaches_it():
    calls = []

    def build():
        calls.append(1)
        return ir.seq(ir.lit("bc"), ir.star(ir.byte_class(b"d")))

    r = ir.lazy("x", build, nullable=False, min_len=2)
    t = ir.seq(ir.lit("a"), r, ir.lit("!"))
    # nullability, length, liveness and specials come from the declaration
    assert not ir.is_nullable(r) and ir.minlen(t) == 4 and ir.is_live(t)
    assert ir.specials_of(t) == frozenset()
    # a lazy rule is not taken apart by concatenation: O(1) terms in front of anything
    assert ir.seq(r, ir.lit("z")).args == (r, ir.lit("z"))
    assert calls == []
    assert ir.matches(t, b"abc!") and ir.matches(t, b"abcddd!")
    assert not ir.matches(t, b"ab!") and not ir.matches(t, b"abcd")
    assert calls == [1]                 # built once
    assert r.body is not None and calls == [1]
