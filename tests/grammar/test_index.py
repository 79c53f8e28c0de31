"""The token trie and its walk (grammar.index), against a byte-at-a-time reference."""

from __future__ import annotations

import random

import numpy as np
import pytest

from grammar.index import TokenTrie


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
