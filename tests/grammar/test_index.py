"""The token trie and its walk (grammar.index), against a byte-at-a-time reference."""

from __future__ import annotations

import codecs
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
