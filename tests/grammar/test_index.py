"""The token trie and its walk (grammar.index), against a byte-at-a-time reference."""

from __future__ import annotations

import codecs
import random

import numpy as np
import pytest

from grammar import index as gindex
from grammar.index import TokenTrie, _table_step


def _random_vocab(rng: random.Random, n: int, alphabet: bytes, maxlen: int) -> list[bytes]:
    toks = {bytes(rng.choice(alphabet) for _ in range(rng.randint(1, maxlen))) for _ in range(n)}
    toks = sorted(toks)
    # a duplicated byte string (two ids, one spelling) must come out twice
    return toks + toks[: 3]


def _reference(table: np.ndarray, start: int, toks: list[bytes]) -> dict[int, int]:
    out = {}
    for i, t in enumerate(toks):
        s = start
        for b in t:
            s = int(table[s, b])
            if s == 0:
                break
        if s:
            out[i] = s
    return out


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("dense_fraction", [0.0, 0.25, 1.0])
def test_walk_matches_reference(seed, dense_fraction):
    rng = random.Random(seed)
    alphabet = b"ab\"{}x\xc3\xa9"
    toks = _random_vocab(rng, 400, alphabet, 7)
    ids = np.arange(len(toks), dtype=np.int64) * 3 + 5   # ids need not be dense
    trie = TokenTrie(ids, toks)
    n_states = 9
    table = np.zeros((n_states, 256), dtype=np.int64)
    for s in range(1, n_states):
        for b in alphabet:
            # mostly live transitions (dense walks) with some pruning
            table[s, b] = rng.randrange(n_states) if rng.random() < 0.9 else 0
    for start in range(1, n_states):
        got_ids, got_ends = trie.walk(start, lambda st, lab: table[st, lab],
                                      dense_fraction=dense_fraction)
        want = _reference(table, start, toks)
        got = sorted(zip(got_ids.tolist(), got_ends.tolist()))
        assert got == sorted((int(ids[i]), s) for i, s in want.items())


class _LazyTable:
    """A transition table whose rows appear on demand, as an automaton's do: -1 until
    ``refill(s)`` computes row ``s``, which also grows (reallocates) the table, so a walk
    that kept reading the old array would see -1 and fail.  As in an automaton, the table
    has a row (maybe -1) for every state a computed row names."""

    def __init__(self, full: np.ndarray) -> None:
        self.full = full.astype(np.int32)
        self.table = np.full(full.shape, -1, np.int32)
        self.table[0] = 0          # the dead state's row is known from the start
        self.refills: list[int] = []

    def refill(self, s: int) -> np.ndarray:
        assert s not in self.refills, "a row was asked for twice"
        self.refills.append(s)
        grown = np.full((len(self.table) + 1, 256), -1, np.int32)
        grown[: len(self.table)] = self.table
        grown[s] = self.full[s]
        self.table = grown
        return grown


def _walkers():
    yield "numpy", lambda trie, start, lazy: trie.walk(start, _table_step(lazy.table, lazy.refill))
    if gindex._native is not None:
        for frac in (0.0, 0.3, 2.0):   # all dense, the default switch, sparse from level 1
            yield f"native-{frac}", (lambda f: lambda trie, start, lazy: trie.walk_table(
                start, lazy.table, lazy.refill, dense_fraction=f))(frac)


@pytest.mark.parametrize("seed", range(8))
def test_walk_table_matches_reference(seed):
    """walk_table (C when built, numpy otherwise) against byte-at-a-time walks, with rows
    computed lazily through refill and duplicated spellings in the vocabulary."""
    rng = random.Random(100 + seed)
    alphabet = b"ab\"{}x\xc3\xa9"
    toks = _random_vocab(rng, 300, alphabet, 9)
    ids = np.arange(len(toks), dtype=np.int64) * 7 + 2
    trie = TokenTrie(ids, toks)
    n_states = 12
    full = np.zeros((n_states, 256), dtype=np.int64)
    for s in range(1, n_states):
        live = rng.random()       # some states allow nearly everything, some nearly nothing
        for b in alphabet:
            full[s, b] = rng.randrange(1, n_states) if rng.random() < live else 0
    for name, walk in _walkers():
        for start in range(1, n_states):
            lazy = _LazyTable(full)
            got_ids, got_ends = walk(trie, start, lazy)
            want = _reference(full, start, toks)
            got = sorted(zip(got_ids.tolist(), got_ends.tolist()))
            assert got == sorted((int(ids[i]), s) for i, s in want.items()), (name, start)


@pytest.mark.skipif(gindex._native is None, reason="the C walk is not in use (not built, or GRAMMAR_NO_NATIVE set)")
def test_native_walk_propagates_refill_errors_and_checks_the_table():
    toks = [b"ab", b"b"]
    trie = TokenTrie(np.arange(2), toks)
    table = np.full((3, 256), -1, np.int32)
    table[0] = 0

    def boom(s):
        raise KeyError(s)

    with pytest.raises(KeyError):
        trie.walk_table(1, table, boom)
    # a refill that does not fill the row is an error, not an endless loop
    with pytest.raises(RuntimeError, match="incomplete"):
        trie.walk_table(1, table, lambda s: table)
    # a transition to a state past the table's end is refused, not read out of bounds
    bad = np.zeros((2, 256), np.int32)
    bad[1, ord("a")] = 99
    with pytest.raises(RuntimeError, match="outside the table"):
        trie.walk_table(1, bad, lambda s: bad)
    with pytest.raises(TypeError, match="int32"):
        trie.walk_table(1, bad.astype(np.int64), lambda s: bad)
    with pytest.raises(ValueError, match="start state"):
        trie.walk_table(5, bad, lambda s: bad)


def test_levels_tile_and_parents():
    toks = [b"a", b"ab", b"abc", b"b", b"ba", b"c"]
    trie = TokenTrie(np.arange(len(toks)), toks)
    for d in range(1, len(trie.levels)):
        up, lv = trie.levels[d - 1], trie.levels[d]
        # every node of a level has exactly one parent at the level above
        assert int((up.child_hi - up.child_lo).sum()) == len(lv.label)
        par = trie._parent[d]
        assert np.all(up.child_lo[par] <= np.arange(len(lv.label)))
        assert np.all(np.arange(len(lv.label)) < up.child_hi[par])


def test_empty_trie_walks_to_nothing():
    trie = TokenTrie(np.zeros(0, np.int64), [])
    ids, ends = trie.walk(1, lambda st, lab: st)
    assert len(ids) == 0 and len(ends) == 0
    table = np.zeros((2, 256), np.int32)
    ids, ends = trie.walk_table(1, table, lambda s: table)
    assert len(ids) == 0 and len(ends) == 0


def _pending_reference(b: bytes) -> int:
    i, k = len(b) - 1, 0
    while i >= 0 and 0x80 <= b[i] < 0xC0 and k < 3:
        i -= 1
        k += 1
    if i < 0:
        return 0
    lead = b[i]
    need = 1 if 0xC0 <= lead < 0xE0 else 2 if 0xE0 <= lead < 0xF0 else 3 if lead >= 0xF0 else 0
    return max(0, need - k)


def _ok_reference(b: bytes) -> bool:
    # an incremental decoder that is not told the input ended keeps a truncated final
    # character pending and raises on anything malformed
    try:
        codecs.getincrementaldecoder("utf-8")().decode(b, final=False)
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("name", ["llama3.1", "functionary-v2", "mistral-tekken"])
def test_utf8_tables_match_reference(name):
    # the vectorised UTF-8 tables against a token-by-token reference, on real vocabularies
    # (byte-level BPE and sentencepiece byte fallback both have partial characters)
    from functionary.tokenizers import load_vocabulary
    from grammar.index import TokenIndex

    idx = TokenIndex(load_vocabulary(name))
    want_ok = [_ok_reference(b) for b in idx.text_bytes]
    want_pending = [_pending_reference(b) for b in idx.text_bytes]
    assert idx.utf8_ok().tolist() == want_ok
    assert idx.utf8_pending().tolist() == want_pending
    assert not all(want_ok) and any(want_pending)   # the hard cases are present


def test_utf8_tables_on_edge_tokens():
    from grammar.index import TokenIndex

    class _V:   # the few attributes TokenIndex reads
        vocab_size = 12
        eos_token_ids = (11,)
        toks = [b"a", b"\xc3", b"\xc3\xa9", b"\xe2\x82", b"\x82\xac", b"\xf0\x9f\x98",
                b"\xbf\xbf\xbf\xbf", b"\xed\xa0\x80", b"x\xf4\x90", b"\xe2", b"\xc3\xa9\xe2", b""]

        def token_table(self):
            return self.toks

    idx = TokenIndex(_V())
    data = [t for i, t in enumerate(_V.toks) if t and i != 11]
    assert idx.text_bytes == data
    assert idx.utf8_ok().tolist() == [_ok_reference(b) for b in data]
    assert idx.utf8_pending().tolist() == [_pending_reference(b) for b in data]


def test_first_byte_tokens_and_tries():
    # the tokens that start with a byte: their bitmask, their trie and the counts agree
    # with a token-by-token reference on a real vocabulary
    from functionary.tokenizers import load_vocabulary
    from grammar.index import token_index

    idx = token_index(load_vocabulary("llama3.1"))
    assert int(idx.first_byte_counts.sum()) == idx.trie.size
    # built with the index, not by the first mask that needs one
    assert sorted(idx._by_first) == np.flatnonzero(idx.first_byte_counts).tolist()
    for b in (ord(" "), ord('"'), ord("n"), 0xE2, 0xFF):
        want = sorted(int(t) for t, data in zip(idx.text_ids, idx.text_bytes) if data[0] == b)
        words, trie = idx.first_byte(b)
        assert idx.first_byte(b)[1] is trie   # built once
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")
        assert np.flatnonzero(bits).tolist() == want
        assert sorted(trie.ids.tolist()) == want and idx.first_byte_counts[b] == len(want)


def test_slice_upto_counts_the_characters_a_token_starts():
    # the slice tokens that start at most n characters (a character cut short at the
    # token's end counts), against a token-by-token reference, for every n
    from grammar.index import TokenIndex

    class _V:   # the few attributes TokenIndex reads
        toks = [b"a", b"ab", b"abc", b"\xc3", b"\xc3\xa9", b"a\xc3", b"\xe2\x82", b"\xe4\xb8\xad\xe4",
                b"\x82\xac", b'a"', b"\\n", b"xyzw", b"", b"\xf0\x9f\x98\x80!"]
        vocab_size = len(toks)
        eos_token_ids = (12,)

        def token_table(self):
            return self.toks

    idx = TokenIndex(_V())
    exits = b'"\\'
    for n in range(-1, 7):
        want = []
        for tid, b in zip(idx.text_ids.tolist(), idx.text_bytes):
            if any(c in exits for c in b) or not _ok_reference(b):
                continue
            if sum(1 for c in b if not 0x80 <= c < 0xC0) <= n:
                want.append(tid)
        bits = np.unpackbits(idx.slice_upto(exits, n).view(np.uint8), bitorder="little")
        assert np.flatnonzero(bits).tolist() == want, n
    assert idx.slice_upto(exits, 3) is idx.slice_upto(b'\\"', 3)   # one cache per slice
