"""Tests for the token-level automaton and GrammarMatcher against brute-force oracles."""

import random

import numpy as np
import pytest

from grammar import GrammarCompiler, GrammarMatcher, Grammar, Vocabulary, allocate_token_bitmask
from grammar import ir
from grammar.automaton import DEAD
from grammar.index import _table_step


EXTRA = ["ab", "abc", "bc", '",', '"}', "}}", "}]}", '"}}', "é", "\xe9".encode("utf-8")[:1],
         "aa", "a\"", "xyz", "\"a", "12", "3}", "{\"", "\":", "\": ", " \"", ", \""]


def vocab_with_extras():
    return Vocabulary.byte_level(EXTRA, specials=("<eos>", "<call>", "<end>"))


def brute_allowed(cg, state, vocab):
    """Oracle: which tokens lead from `state` to a live state, by walking bytes."""
    auto = cg.automaton
    out = set()
    for tid in range(vocab.vocab_size):
        if tid in vocab.special_token_ids:
            if tid in auto.special_next(state):
                out.add(tid)
            elif tid in vocab.eos_token_ids and auto.nullable(state):
                out.add(tid)
            continue
        b = vocab.token_bytes(tid)
        if b and auto.advance_bytes(state, b) != DEAD:
            out.add(tid)
    return out


def full_walk_words(auto, s):
    """The mask of state ``s`` by a walk of the whole trie (no slice, no reference), with
    EOS where ``s`` accepts."""
    ids, _ends = auto.index.trie.walk_table(s, auto._table, auto._refill)
    want = auto.index.ids_to_words(ids)
    if auto.nullable(s):
        auto._set_bits(want, auto.index.vocab.eos_token_ids)
    return want


def words_ids(words: np.ndarray) -> set[int]:
    """The token ids whose bits are set in bitmask ``words``."""
    return set(np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little")).tolist())


def path_args(auto, s, path):
    """The arguments of the mask path ``path`` ("run", "covering", "reference": the ways
    Automaton._compute_mask spares a whole-trie walk) at state ``s``, or None where it
    does not apply."""
    if path == "run":
        return auto._run(s)
    div = auto._diverging(s)
    if div is None:
        return None
    return auto._covering(s, *div) if path == "covering" else auto._reference(s, *div)


def check_path_masks(cg, vocab, rng, path, prefixes):
    """The mask that ``path`` computes equals the brute-force oracle on each of
    ``prefixes`` (where the path must apply) and wherever it applies along a random walk
    from ``{"``; the matcher's own masks too.  Returns the states where it applied."""
    auto = cg.automaton
    make = {"run": auto._mask_from_run, "covering": auto._mask_from_covering,
            "reference": auto._mask_from_reference}[path]
    hits = []

    def check(s):
        args = path_args(auto, s, path)
        if args is not None:
            assert words_ids(make(s, *args)) == brute_allowed(cg, s, vocab)
            hits.append(s)

    for prefix in prefixes:
        m = GrammarMatcher(cg)
        assert m.accept_bytes(prefix)
        n = len(hits)
        check(m.state)
        assert len(hits) == n + 1, prefix     # the path applies
        assert set(m.allowed_token_ids().tolist()) == brute_allowed(cg, m.state, vocab)
    m = GrammarMatcher(cg)
    assert m.accept_bytes('{"')
    walk_against_oracle(cg, m, vocab, rng, 40, before=check)
    return hits


def walk_under_budget(cg, budget, rng):
    """A random walk under the mask with a token budget: never a dead end, never past the
    budget.  Returns the matcher and the tokens used."""
    m = GrammarMatcher(cg, token_budget=budget)
    used = 0
    while not m.is_terminated():
        ids = m.allowed_token_ids()
        assert len(ids), "no dead ends under a budget"
        assert m.accept_token(int(rng.choice(ids)))
        used += 1
        assert used <= budget
    return m, used


def walk_against_oracle(cg, m, vocab, rng, steps, before=None):
    """Up to ``steps`` random tokens under the mask, each mask equal to the oracle's and
    never empty; ``before(state)`` is called before each step."""
    for _ in range(steps):
        if m.is_terminated():
            break
        if before is not None:
            before(m.state)
        got = set(m.allowed_token_ids().tolist())
        assert got == brute_allowed(cg, m.state, vocab)
        assert got
        assert m.accept_token(rng.choice(sorted(got)))


def random_term(rng, depth=3):
    atoms = [ir.lit("a"), ir.lit("b"), ir.lit("ab"), ir.lit('"'), ir.lit("}"), ir.byte_class(b"abc"),
             ir.utf8_char(exclude=b'"\\'), ir.lit("é"), ir.lit("12")]
    if depth == 0:
        return rng.choice(atoms)
    k = rng.random()
    if k < 0.3:
        return ir.seq(random_term(rng, depth - 1), random_term(rng, depth - 1))
    if k < 0.55:
        return ir.alt(random_term(rng, depth - 1), random_term(rng, depth - 1))
    if k < 0.75:
        return ir.repeat(random_term(rng, depth - 1), rng.randint(0, 2), rng.choice([None, 3]))
    if k < 0.85:
        return ir.both(random_term(rng, depth - 1), ir.neg(random_term(rng, depth - 1)))
    return rng.choice(atoms)


@pytest.mark.parametrize("seed", range(60))
def test_masks_match_brute_force_on_random_grammars(seed):
    rng = random.Random(seed)
    vocab = vocab_with_extras()
    compiler = GrammarCompiler(vocab)
    term = ir.seq(random_term(rng), ir.opt(ir.special(vocab.token_id("<call>"))), random_term(rng))
    cg = compiler.compile(Grammar.from_term(term, f"random-{seed}"))
    m = GrammarMatcher(cg)
    if cg.is_empty:  # random intersections can be empty: then nothing is allowed at all
        assert len(m.allowed_token_ids()) == 0
        return
    bm = allocate_token_bitmask(1, vocab.vocab_size)
    for _ in range(12):
        if m.is_terminated():
            break
        m.fill_next_token_bitmask(bm, 0)
        got = set(m.allowed_token_ids().tolist())
        want = brute_allowed(cg, m.state, vocab)
        assert got == want
        assert got, "a live, non-terminated state must allow a token (no dead ends)"
        tid = rng.choice(sorted(got))
        assert m.accept_token(tid)


@pytest.mark.parametrize("seed", range(24))
def test_bounded_repetition_masks_match_brute_force(seed):
    """States ``X{lo,hi} R`` whose bounds lie beyond one token's reach share the mask of
    the clamped state (Automaton._clamped): it must equal the brute-force oracle, around
    and across the longest token length too, and EOS only where the state accepts."""
    rng = random.Random(1000 + seed)
    vocab = vocab_with_extras()
    compiler = GrammarCompiler(vocab)
    span = len(compiler.index.trie.levels) + 1
    atoms = [ir.byte_class(b"abc"), ir.lit("ab"), ir.utf8_char(exclude=b'"\\'),
             ir.alt(ir.lit("a"), ir.lit("12"))]
    lo = rng.choice([0, 1, span - 1, span, span + 1, 2 * span])
    hi = rng.choice([None, lo + rng.choice([0, 1, span - 1, span, span + 2, 3 * span])])
    term = ir.seq(ir.lit('"'), ir.repeat(rng.choice(atoms), lo, hi), ir.lit('"'),
                  ir.opt(ir.lit("}")))
    cg = compiler.compile(Grammar.from_term(term, f"bounded-{seed}"))
    m = GrammarMatcher(cg)
    clamped = 0
    for _ in range(3 * span + 8):
        if m.is_terminated():
            break
        clamped += cg.automaton._clamped(m.state) is not None
        got = set(m.allowed_token_ids().tolist())
        assert got == brute_allowed(cg, m.state, vocab)
        assert got
        long = [t for t in got if len(vocab.token_bytes(t) or b"") > 1]
        tid = rng.choice(sorted(long)) if long and rng.random() < 0.7 else rng.choice(sorted(got))
        assert m.accept_token(tid)
    if lo >= 2 * span or (hi is not None and hi >= 2 * span):   # beyond the first token
        assert clamped, "the clamped path was never taken"


def test_bounded_string_real_vocabulary_shares_the_unbounded_mask():
    """maxLength far above the longest token: every position far from the bound has
    exactly the mask its direct computation gives (one trie walk each, before)."""
    from functionary.tokenizers import load_vocabulary
    vocab = load_vocabulary("llama3.1")
    compiler = GrammarCompiler(vocab)
    cg = compiler.compile_json_schema({"type": "string", "minLength": 3, "maxLength": 400})
    auto = cg.automaton
    m = GrammarMatcher(cg)
    assert m.accept_bytes('"')
    text = "word " * 60
    seen = 0
    for piece in [text[i:i + 7] for i in range(0, len(text), 7)]:
        s = m.state
        got = auto.mask(s)
        if auto._clamped(s) is not None:
            seen += 1
        direct = auto._compute_mask(s)
        assert np.array_equal(got, direct)
        assert m.accept_bytes(piece)
    assert seen >= 30


def test_text_slice_state_matches_brute_force():
    vocab = vocab_with_extras()
    compiler = GrammarCompiler(vocab)
    jchar = ir.alt(ir.utf8_char(exclude=b'"\\' + bytes(range(32))),
                   ir.seq(ir.lit("\\"), ir.byte_class(b'"\\/bfnrt')))
    term = ir.seq(ir.lit('{"a": "'), ir.star(jchar), ir.lit('"}'))
    cg = compiler.compile(Grammar.from_term(term, "slice"))
    m = GrammarMatcher(cg)
    assert m.accept_bytes('{"a": "')
    assert cg.automaton._slice_exits(m.state) is not None  # the dense path is taken
    assert cg.automaton._utf8_returns(m.state)   # its UTF-8 check made on the structure
    assert set(m.allowed_token_ids().tolist()) == brute_allowed(cg, m.state, vocab)
    assert m.accept_bytes("é")
    assert set(m.allowed_token_ids().tolist()) == brute_allowed(cg, m.state, vocab)


def test_utf8_return_decided_on_the_structure_agrees_with_the_bytes():
    """A string body ``X* R`` whose ``R`` starts with an ASCII byte is known to take every
    well-formed UTF-8 character back to itself from the structure (``X*`` checked once),
    not by following the bytes from each such state; where ``R`` could start a character,
    or ``X`` misses some, the structure does not decide (False) and the bytes are followed."""
    vocab = vocab_with_extras()
    compiler = GrammarCompiler(vocab)
    jchar = ir.alt(ir.utf8_char(exclude=b'"\\' + bytes(range(32))),
                   ir.seq(ir.lit("\\"), ir.byte_class(b'"\\/bfnrt')))
    chars = ["é", "ß", "\u0800", "中", "\ufffd", "\U00010000", "😀", "\U0010ffff"]
    cases = [(ir.star(jchar), ir.lit('"}'), True),
             (ir.star(jchar), ir.seq(ir.lit("é"), ir.lit('"')), False),   # R starts with 0xC3
             (ir.star(ir.byte_class(b"abc")), ir.lit('"'), False)]       # X: ASCII only
    for k, (body, rest, want) in enumerate(cases):
        cg = compiler.compile(Grammar.from_term(ir.seq(ir.lit('"'), body, rest), ("utf8", k)))
        auto = cg.automaton
        m = GrammarMatcher(cg)
        assert m.accept_bytes('"')
        s = m.state
        assert auto._utf8_returns(s) is want
        if want:
            for ch in chars:
                assert auto.advance_bytes(s, ch.encode("utf-8")) == s, ch
        assert set(m.allowed_token_ids().tolist()) == brute_allowed(cg, s, vocab)


SEARCH_SCHEMA = {"type": "object", "properties": {"s": {"type": "string", "pattern": "ab|cd"},
                                                 "t": {"type": "string", "pattern": "[xy]"}}}


@pytest.mark.parametrize("seed", range(6))
def test_search_pattern_slices_match_brute_force(seed):
    """An unanchored ``pattern`` makes a string body whose characters move between the
    states of the search: a slice state with a closure of several states (the tokens
    without exit bytes stay inside it, allowed).  Masks equal the oracle at each step, and
    budget masks (which walk such slices in full) never cut a walk short."""
    rng = random.Random(seed)
    vocab = vocab_with_extras()
    cg = GrammarCompiler(vocab).compile_json_schema(SEARCH_SCHEMA, whitespace=1)
    auto = cg.automaton
    m = GrammarMatcher(cg)
    assert m.accept_bytes('{"s": "')
    assert auto._slice_exits(m.state) is not None and len(auto._closure[m.state]) > 1
    walk_against_oracle(cg, m, vocab, rng, 30)
    m, _used = walk_under_budget(cg, auto.minlen(auto.start) + 1 + rng.randint(0, 10), rng)
    assert m.can_terminate()


def test_search_pattern_slice_equals_full_walk_on_a_real_vocabulary():
    from functionary.tokenizers import load_vocabulary
    vocab = load_vocabulary("llama3.1")
    schema = {"type": "string", "pattern": "integer|continuous"}
    cg = GrammarCompiler(vocab).compile_json_schema(schema)
    auto = cg.automaton
    for prefix in ['"', '"x', '"in', '"integ', '"contin', '"integer', '"a integer b']:
        m = GrammarMatcher(cg)
        assert m.accept_bytes(prefix)
        s = m.state
        assert np.array_equal(auto.mask(s), full_walk_words(auto, s)), prefix
        if prefix in ('"', '"x'):     # the search's start: the closure holds its progress
            assert len(auto._closure.get(s, ())) > 1, prefix


RUN_SCHEMA = {"type": "object",
              "properties": {"a": {"type": "string", "maxLength": 6},
                             "b": {"type": "string", "minLength": 3, "maxLength": 9},
                             "c": {"type": "string", "minLength": 2}}}


@pytest.mark.parametrize("seed", range(6))
def test_bounded_string_runs_match_brute_force(seed):
    """Each position of a string with ``minLength``/``maxLength`` is a new state: its mask
    is the slice of the tokens that fit the characters left plus a walk of the tokens
    with an exit byte (Automaton._run).  It must equal the oracle at every step (multi-byte
    characters and tokens that end inside one included), and budget masks too."""
    rng = random.Random(seed)
    vocab = vocab_with_extras()
    cg = GrammarCompiler(vocab).compile_json_schema(RUN_SCHEMA, whitespace=1)
    auto = cg.automaton
    check_path_masks(cg, vocab, rng, "run",
                     ('{"a": "', '{"a": "ab', '{"a": "abcdé', '{"a": "abcde', '{"b": "',
                      '{"b": "a', '{"b": "abc', '{"b": "abcdefgh', '{"c": "', '{"c": "a'))
    m, _used = walk_under_budget(cg, auto.minlen(auto.start) + 1 + rng.randint(0, 12), rng)
    assert m.can_terminate()


def test_bounded_string_run_equals_full_walk_on_a_real_vocabulary():
    from functionary.tokenizers import load_vocabulary
    vocab = load_vocabulary("llama3.1")
    cg = GrammarCompiler(vocab).compile_json_schema(
        {"type": "string", "minLength": 2, "maxLength": 40})
    auto = cg.automaton
    for prefix in ['"', '"a', '"ab', '"' + "x" * 30, '"' + "é" * 20, '"' + "y" * 39,
                   '"' + "中" * 12]:
        m = GrammarMatcher(cg)
        assert m.accept_bytes(prefix)
        s = m.state
        assert path_args(auto, s, "run") is not None, prefix
        assert np.array_equal(auto.mask(s), full_walk_words(auto, s)), prefix


KEYS_SCHEMA = {"type": "object",
               "properties": {"name": {"type": "string"}, "names": {"type": "integer"},
                              "nick": {"enum": ["a", "b"]}, "é": {"type": "boolean"}}}


ASCII_KEYS_SCHEMA = {"type": "object",
                     "properties": {k: v for k, v in KEYS_SCHEMA["properties"].items()
                                    if k.isascii()}}


@pytest.mark.parametrize("path", ["reference", "covering"])
@pytest.mark.parametrize("seed", range(8))
def test_key_prefix_masks_by_each_path_match_brute_force(seed, path):
    """Inside an object key that still spells a prefix of declared names, two paths spare
    the walk of the whole trie: the free key's mask with the few diverging first bytes
    walked again (Automaton._reference), and the free key's slice with only the tokens
    that close or escape the key walked (Automaton._covering, tried first: any other name
    is allowed too).  Wherever each applies along random walks, its mask must equal the
    brute-force oracle, as must the mask the matcher uses."""
    rng = random.Random(seed)
    vocab = vocab_with_extras()
    schema = KEYS_SCHEMA if path == "reference" else ASCII_KEYS_SCHEMA
    cg = GrammarCompiler(vocab).compile_json_schema(schema, whitespace=1)
    prefixes = ('{"', '{"n', '{"na', '{"names', '{"nick": "a", "', '{"nick": "a", "n')
    hits = check_path_masks(cg, vocab, rng, path, prefixes)
    assert len(hits) > len(prefixes) or seed % 2   # most random walks meet a key prefix


def test_covering_declines_what_the_structure_does_not_show():
    """No covering where the structure does not show one, and then the reference path or
    a full walk gives the mask: names not under a free string (``additionalProperties``
    false); a name's non-ASCII first byte (the other names' middle of a character); the
    end of a name that other names continue (the rest of the free string is flattened
    into its continuation).  A union of the free body with something else is covered
    only where the structure holds the body, or a cofinite term before the same rest."""
    from grammar.automaton import _covers, _CONTAINS, _COFINITE, _NO
    from grammar import jsonvalue as jv
    vocab = vocab_with_extras()
    for schema, prefix in ((dict(KEYS_SCHEMA, additionalProperties=False), '{"n'),
                           (KEYS_SCHEMA, '{"'), (KEYS_SCHEMA, '{"name')):
        cg = GrammarCompiler(vocab).compile_json_schema(schema, whitespace=1)
        m = GrammarMatcher(cg)
        assert m.accept_bytes(prefix)
        assert path_args(cg.automaton, m.state, "covering") is None, prefix
        assert set(m.allowed_token_ids().tolist()) == brute_allowed(cg, m.state, vocab)
    # the free part cannot start with "a": after "a" only "b" may follow, so a slice token
    # such as "aa" must not be allowed although "a" is no exit of the free body
    body = ir.star(ir.utf8_char(exclude=b'"'))
    term = ir.alt(ir.lit('ab"'), ir.seq(ir.utf8_char(exclude=b'a"'), body, ir.lit('"')))
    cg = GrammarCompiler(vocab).compile(Grammar.from_term(term, "no-a"))
    m = GrammarMatcher(cg)
    assert path_args(cg.automaton, m.state, "covering") is None
    got = set(m.allowed_token_ids().tolist())
    assert got == brute_allowed(cg, m.state, vocab) and vocab.token_id("aa") not in got
    body, q = jv.string_content_any(), jv.QUOTE
    r = ir.lit(":1}")
    y = ir.seq(body, q, r)
    stops = 1 << ord('"') | 1 << ord("\\")
    assert _covers(y, y, stops) == _CONTAINS
    assert _covers(ir.alt(ir.lit("x"), y), y, stops) == _CONTAINS
    assert _covers(ir.seq(ir.alt(ir.seq(body, q), ir.lit("k")), r), y, stops) == _CONTAINS
    node = jv.string_except(["ab", "b"]).args[1]   # after the opening quote
    assert ir.cofinite_of(node) == (body, q)
    assert _covers(ir.seq(node, r), y, stops) == _COFINITE
    colon = ir.lit(":")   # node, then a rest of its own, inside a union (a union of unions
    #                       is flat: the node itself would not be an operand)
    y2 = ir.seq(body, q, colon, r)
    assert _covers(ir.seq(ir.alt(ir.seq(node, colon), ir.lit("zz")), r), y2, stops) == _COFINITE
    assert _covers(ir.alt(ir.seq(node, colon, r), ir.lit("zz")), y2, stops) == _COFINITE
    assert _covers(ir.seq(node, r), y, 1 << ord("\\")) == _NO   # the closer is no stop
    assert _covers(ir.seq(node, ir.lit(":2}")), y, stops) == _NO  # another rest
    assert _covers(ir.seq(ir.lit("k"), r), y, stops) == _NO
    assert _covers(ir.lit("x"), y, stops) == _NO


def test_reference_state_lends_no_eos_or_special_token():
    """The reference state of free text may end (EOS) or take a special token; the state
    borrowing its mask may not: those bits are the borrower's own."""
    vocab = vocab_with_extras()
    text = ir.seq(ir.any_text(exclude=b'"'), ir.opt(ir.special(vocab.token_id("<call>"))))
    term = ir.alt(ir.lit("k!"), ir.seq(ir.utf8_char(exclude=b'"'), text))
    cg = GrammarCompiler(vocab).compile(Grammar.from_term(term, "borrower"))
    auto = cg.automaton
    m = GrammarMatcher(cg)
    ref = path_args(auto, m.state, "reference")
    assert ref is not None and auto.nullable(ref[0]) and auto.special_next(ref[0])
    got = set(m.allowed_token_ids().tolist())
    assert got == brute_allowed(cg, m.state, vocab)
    assert vocab.token_id("<call>") not in got and not set(vocab.eos_token_ids) & got


def test_key_prefix_reference_equals_full_walk_on_a_real_vocabulary():
    from functionary.tokenizers import load_vocabulary
    vocab = load_vocabulary("llama3.1")
    cg = GrammarCompiler(vocab).compile_json_schema(KEYS_SCHEMA)
    auto = cg.automaton
    for prefix in ['{"', '{"n', '{"na', '{"nam', '{"name', '{"nick": "a", "n', '{"\\u00e',
                   '{"name": "x", "']:
        m = GrammarMatcher(cg)
        assert m.accept_bytes(prefix)
        s = m.state
        got = auto.mask(s)
        _exits, ids, _ends = auto._walk(s)
        want = auto.index.ids_to_words(ids)
        if _exits is not None:
            want |= auto.index.slice(_exits)[0]
        assert np.array_equal(got, want), prefix
        if prefix in ('{"n', '{"na', '{"nam'):
            # taken by the covering path; the reference path agrees
            ref = path_args(auto, s, "reference")
            assert ref is not None and path_args(auto, s, "covering") is not None, prefix
            assert np.array_equal(auto._mask_from_reference(s, *ref), want), prefix
    # the reference candidate recorded with each row: the successor on the most bytes
    # (the lowest first byte on a tie), never the dead state while a live one exists
    from collections import Counter
    checked = 0
    for s in range(1, auto.num_states):
        r = auto._rows[s]
        if r is None:
            continue
        live = Counter(x for x in r if x != DEAD)
        want = max(live, key=lambda x: (live[x], -r.index(x))) if live else DEAD
        assert auto._major[s] == want, s
        checked += 1
    assert checked > 20


def test_accept_reject_rollback_fork_reset():
    vocab = vocab_with_extras()
    cg = GrammarCompiler(vocab).compile(Grammar.literal("abc"))
    m = GrammarMatcher(cg)
    eos = vocab.eos_token_ids[0]
    assert not m.accept_token(ord("b"))
    assert m.state == cg.automaton.start  # rejected token leaves the state unchanged
    assert m.accept_token(vocab.token_id("ab"))
    f = m.fork()
    assert not m.accept_token(eos)  # EOS only at accepting states
    assert m.accept_token(ord("c"))
    # complete, and nothing but EOS can follow: terminated even before the EOS
    assert m.can_terminate() and m.is_terminated()
    assert m.accept_token(eos) and m.is_terminated()
    assert not m.accept_token(ord("c"))
    m.rollback(2)
    assert m.state == f.state
    assert f.accept_token(ord("c")) and f.can_terminate()
    m.reset()
    assert m.state == cg.automaton.start and not m.is_terminated()
    with pytest.raises(ValueError):
        m.rollback(1)


def test_special_tokens_only_where_named():
    vocab = vocab_with_extras()
    call = vocab.token_id("<call>")
    end = vocab.token_id("<end>")
    g = Grammar.sequence(Grammar.literal("a"), Grammar.special(call), Grammar.literal("b"), Grammar.special(end))
    cg = GrammarCompiler(vocab).compile(g)
    m = GrammarMatcher(cg)
    assert not m.accept_token(call)
    assert m.accept_token(ord("a"))
    allowed = set(m.allowed_token_ids().tolist())
    assert allowed == {call}
    assert m.accept_token(call) and m.accept_token(ord("b"))
    assert m.accept_token(end)
    # complete and nothing can follow: terminated without an EOS
    assert m.is_terminated()
    assert set(m.allowed_token_ids().tolist()) == {vocab.eos_token_ids[0]}


def test_padding_and_out_of_range_ids_never_allowed():
    base = Vocabulary.byte_level(["ab"])
    vocab = Vocabulary.from_token_bytes([base.token_bytes(i) if i not in base.special_token_ids else None
                                         for i in range(base.vocab_size)],
                                        special={base.vocab_size - 1: "<eos>"},
                                        eos_token_ids=[base.vocab_size - 1], vocab_size=base.vocab_size + 40)
    cg = GrammarCompiler(vocab).compile(Grammar.text())
    m = GrammarMatcher(cg)
    ids = m.allowed_token_ids()
    assert ids.max() < base.vocab_size
    assert not m.accept_token(vocab.vocab_size + 3)
    assert not m.accept_token(-1)


def test_forced_tokens_and_bytes():
    vocab = Vocabulary.byte_level([])
    cg = GrammarCompiler(vocab).compile(Grammar.sequence(Grammar.literal('{"name": "'),
                                                         Grammar.choice(Grammar.literal("x"), Grammar.literal("y"))))
    m = GrammarMatcher(cg)
    assert m.forced_bytes() == b'{"name": "'
    forced = m.forced_tokens()
    assert bytes(forced) == b'{"name": "'
    assert m.state == cg.automaton.start  # no state change


def test_fill_into_torch_bitmask_and_batch_rows():
    torch = pytest.importorskip("torch")
    vocab = Vocabulary.byte_level(["ab"])
    cg = GrammarCompiler(vocab).compile(Grammar.literal("ab"))
    m = GrammarMatcher(cg)
    bm = torch.full((3, (vocab.vocab_size + 31) // 32), -1, dtype=torch.int32)
    m.fill_next_token_bitmask(bm, 1)
    row = bm[1].numpy().view(np.uint32)
    allowed = {i for i in range(vocab.vocab_size) if (int(row[i // 32]) >> (i % 32)) & 1}
    assert allowed == {ord("a"), vocab.token_id("ab")}
    assert (bm[0] == -1).all() and (bm[2] == -1).all()


def test_empty_grammar_is_dead():
    vocab = Vocabulary.byte_level([])
    cg = GrammarCompiler(vocab).compile(Grammar.from_term(ir.both(ir.lit("a"), ir.lit("b")), "empty"))
    assert cg.is_empty
    m = GrammarMatcher(cg)
    assert len(m.allowed_token_ids()) == 0


def test_merged_closing_tokens_accepted():
    vocab = vocab_with_extras()
    r = ir.Rule("value")
    r.define(ir.alt(ir.lit("1"), ir.seq(ir.lit("{"), ir.opt(ir.seq(ir.lit('"a":'), r)), ir.lit("}")),
                    ir.seq(ir.lit("["), ir.opt(r), ir.lit("]"))))
    cg = GrammarCompiler(vocab).compile(Grammar.from_term(r, "nested"))
    m = GrammarMatcher(cg)
    assert m.accept_bytes('{"a":[{"a":{"a":1')
    assert m.is_token_allowed(vocab.token_id("}"))
    assert not m.is_token_allowed(vocab.token_id("}]}"))  # would skip a level
    assert m.accept_token(vocab.token_id("}"))
    assert m.is_token_allowed(vocab.token_id("}]}"))  # closes three levels at once
    assert m.accept_token(vocab.token_id("}]}"))
    assert m.can_terminate()


@pytest.mark.parametrize("seed", range(40))
def test_budget_aware_termination_never_cuts(seed):
    """Random walks under the mask with a token budget always end complete within it."""
    rng = random.Random(1000 + seed)
    vocab = vocab_with_extras()
    compiler = GrammarCompiler(vocab)
    jchar = ir.alt(ir.utf8_char(exclude=b'"\\'), ir.seq(ir.lit("\\"), ir.byte_class(b'"n')))
    jstr = ir.seq(ir.lit('"'), ir.star(jchar), ir.lit('"'))
    r = ir.Rule("v")
    r.define(ir.alt(jstr, ir.plus(ir.byte_range(48, 57)),
                    ir.seq(ir.lit("["), ir.opt(ir.seq(r, ir.star(ir.seq(ir.lit(","), r)))), ir.lit("]"))))
    term = ir.seq(random_term(rng, 2), r)
    cg = compiler.compile(Grammar.from_term(term, f"budget-{seed}"))
    if cg.is_empty:
        return
    need = cg.automaton.minlen(cg.automaton.start) + 1
    budget = need + rng.randint(0, 12)
    m, used = walk_under_budget(cg, budget, rng)
    eos = vocab.eos_token_ids[0]
    assert m.can_terminate()
    if used < budget and m.accept_token(eos):
        used += 1
    assert used <= budget


def test_intersection_states_defer_their_shortest_completion():
    """A state around an intersection is interned on liveness alone; its shortest
    completion is computed when a budget mask (or ``minlen``) asks, and then is exact.
    Budget walks over such a grammar still end complete within the budget."""
    vocab = vocab_with_extras()
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"a": {"oneOf": [{"type": "string", "maxLength": 3},
                                             {"type": "string", "pattern": "^ab"}]},
                             "b": {"not": {"enum": ["x", "y"]}, "type": "string"}}}
    cg = GrammarCompiler(vocab).compile_json_schema(schema, whitespace=0)
    auto = cg.automaton
    m = GrammarMatcher(cg)
    for ch in '{"a":"a':
        m.fill_next_token_bitmask(allocate_token_bitmask(1, vocab.vocab_size))
        assert m.accept_token(vocab.token_id(ch))
    deferred = [s for s in range(1, auto.num_states) if auto._minlen[s] is None]
    assert deferred, "an intersection state was interned with its length unknown"
    for s in deferred:
        assert auto.minlen(s) == ir.minlen(auto.term(s)) < ir.INF
    rng = random.Random(7)
    need = auto.minlen(auto.start) + 1
    for budget in (need, need + 3, need + 9):
        cg = GrammarCompiler(vocab).compile_json_schema(schema, whitespace=0)
        m, used = walk_under_budget(cg, budget, rng)
        assert m.can_terminate() or used == budget


def test_vectorised_step_agrees_with_rows():
    """The numpy walk's step over the automaton's table gathers transitions (int32),
    computing on the way (through Automaton._refill) the rows of states met for the first
    time, and must agree with the one-state rows; DEAD stays DEAD."""
    vocab = vocab_with_extras()
    cg = GrammarCompiler(vocab).compile_json_schema(
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3},
                                          "b": {"enum": [1, 22, "x"]}}})
    auto = cg.automaton
    step = _table_step(auto._table, auto._refill)
    rng = np.random.default_rng(0)
    states = np.array([auto.start], dtype=np.int64)
    for _ in range(6):        # a few breadth-first rounds: new states every time
        labels = rng.integers(0, 256, size=len(states) * 8)
        src = np.repeat(states, 8)
        nxt = step(src, labels)
        assert nxt.dtype == np.int32
        assert all(auto.row(int(s))[int(b)] == int(n) for s, b, n in zip(src, labels, nxt))
        # steer through live bytes too, so the rounds reach deeper states
        live_bytes = [b for b in range(256) if auto.row(auto.start)[b]]
        more = step(src, rng.choice(live_bytes, size=len(src)))
        states = np.unique(np.concatenate([nxt[nxt != DEAD], more[more != DEAD]])).astype(np.int64)
        if not len(states):
            states = np.array([auto.start], dtype=np.int64)
    assert auto.num_states > 5
    dead = step(np.zeros(4, np.int64), np.array([0, 34, 123, 255]))
    assert (dead == DEAD).all()


def test_grown_table_rows_are_unset_until_computed():
    """The table grows without initialising its new rows: each row is marked unset when
    its state is numbered, so the walk never reads an uninitialised row."""
    vocab = vocab_with_extras()
    text = "".join(chr(0x61 + i % 26) + str(i) for i in range(150))
    cg = GrammarCompiler(vocab).compile(Grammar.literal(text))
    auto = cg.automaton
    m = GrammarMatcher(cg)
    for piece in [text[i:i + 5] for i in range(0, len(text), 5)]:
        assert m.allowed_token_ids().size
        assert m.accept_bytes(piece)
    assert m.can_terminate()
    assert len(auto._table) > 64 and auto.num_states > 64
    for s in range(auto.num_states):
        row = auto._table[s]
        assert (row == -1).all() or tuple(row.tolist()) == auto.row(s), s
