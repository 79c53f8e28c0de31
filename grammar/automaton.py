"""The lazily explored token-level automaton of one compiled grammar.

States are IR terms (:mod:`grammar.ir`), numbered on first sight.  State 0 is the dead
state; any term whose language is empty (``minlen == INF``) is mapped to it, so a live
state always has a completion and the mask never leads into a dead end.  A state's byte
transitions are computed as one row of 256 entries the first time the state is reached;
its token mask is computed the first time it is asked for and then cached.  Both caches
only ever grow; they are guarded by a lock, so one :class:`Automaton` may be shared by
matchers on several threads.  Nothing here changes the language: the automaton is
semantically immutable.
"""

from __future__ import annotations

import threading

import numpy as np

from . import ir
from .index import TokenIndex

__all__ = ["Automaton", "DEAD"]

DEAD = 0
_UTF8_CLASSES = (
    # (lead bytes lo, hi), continuation ranges
    ((0xC2, 0xDF), ((0x80, 0xBF),)),
    ((0xE0, 0xE0), ((0xA0, 0xBF), (0x80, 0xBF))),
    ((0xE1, 0xEC), ((0x80, 0xBF), (0x80, 0xBF))),
    ((0xED, 0xED), ((0x80, 0x9F), (0x80, 0xBF))),
    ((0xEE, 0xEF), ((0x80, 0xBF), (0x80, 0xBF))),
    ((0xF0, 0xF0), ((0x90, 0xBF), (0x80, 0xBF), (0x80, 0xBF))),
    ((0xF1, 0xF3), ((0x80, 0xBF), (0x80, 0xBF), (0x80, 0xBF))),
    ((0xF4, 0xF4), ((0x80, 0x8F), (0x80, 0xBF), (0x80, 0xBF))),
)
_MIN_SLICE_LOOPS = 48  # a state must loop on at least this many ASCII bytes to use a slice


def _mask_bits(m: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(m.to_bytes(32, "little"), dtype=np.uint8),
                         bitorder="little").astype(np.bool_)


class Automaton:
    """Lazily built automaton over a root term, for one :class:`TokenIndex`."""

    def __init__(self, root: ir.Term, index: TokenIndex) -> None:
        self.index = index
        self.specials = tuple(sorted(ir.specials_of(root)))
        self._lock = threading.RLock()
        self._terms: list[ir.Term] = [ir.NOTHING]
        self._ids: dict[int, int] = {ir.NOTHING.id: DEAD}
        cap = 64
        self._table = np.zeros((cap, 256), dtype=np.int64)
        self._done = np.zeros(cap, dtype=np.bool_)
        self._done[DEAD] = True
        self._nullable = np.zeros(cap, dtype=np.bool_)
        self._rows: list[list[int] | None] = [[0] * 256]
        self._special_next: list[dict[int, int] | None] = [{}]
        self._masks: dict[int, np.ndarray] = {}
        self._slice_info: dict[int, bytes | None] = {}
        self._minlen: list[int] = [ir.INF]
        self.start = self.intern(root)

    # ------------------------------------------------------------------ states
    @property
    def num_states(self) -> int:
        return len(self._terms)

    def term(self, s: int) -> ir.Term:
        return self._terms[s]

    def intern(self, t: ir.Term) -> int:
        sid = self._ids.get(t.id)
        if sid is not None:
            return sid
        with self._lock:
            sid = self._ids.get(t.id)
            if sid is not None:
                return sid
            if t is ir.NOTHING or ir.minlen(t) >= ir.INF:
                self._ids[t.id] = DEAD
                return DEAD
            sid = len(self._terms)
            if sid >= len(self._done):
                self._grow()
            self._terms.append(t)
            self._rows.append(None)
            self._special_next.append(None)
            self._minlen.append(ir.minlen(t))
            self._nullable[sid] = ir.is_nullable(t)
            self._ids[t.id] = sid
            return sid

    def _grow(self) -> None:
        cap = len(self._done) * 2
        table = np.zeros((cap, 256), dtype=np.int64)
        table[: len(self._done)] = self._table
        done = np.zeros(cap, dtype=np.bool_)
        done[: len(self._done)] = self._done
        nullable = np.zeros(cap, dtype=np.bool_)
        nullable[: len(self._done)] = self._nullable
        self._table, self._done, self._nullable = table, done, nullable

    def nullable(self, s: int) -> bool:
        return bool(self._nullable[s])

    def minlen(self, s: int) -> int:
        """Shortest completion of state ``s`` in bytes (special tokens count 1)."""
        return self._minlen[s]

    def ensure(self, states: np.ndarray) -> None:
        """Compute the transition rows of the given states if not done yet."""
        todo = states[~self._done[states]]
        if len(todo) == 0:
            return
        for s in np.unique(todo).tolist():
            self._compute_row(s)

    def _compute_row(self, s: int) -> None:
        with self._lock:
            if self._done[s]:
                return
            rowl = [0] * 256
            for m, nt in ir.row(self._terms[s]):
                nid = self.intern(nt)
                if not nid:
                    continue
                if m.bit_count() <= 24:
                    while m:
                        low = m & -m
                        rowl[low.bit_length() - 1] = nid
                        m ^= low
                else:
                    for b in np.flatnonzero(_mask_bits(m)).tolist():
                        rowl[b] = nid
            # intern may have grown the table: write after
            self._table[s] = rowl
            self._rows[s] = rowl
            self._done[s] = True

    def row(self, s: int) -> list[int]:
        r = self._rows[s]
        if r is None:
            self._compute_row(s)
            r = self._rows[s]
        return r  # type: ignore[return-value]

    def step(self, states: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Vectorised transition: next state for each (state, byte) pair."""
        self.ensure(states)
        return self._table[states, labels]

    def special_next(self, s: int) -> dict[int, int]:
        """Transitions of state ``s`` on the special tokens named by the grammar."""
        d = self._special_next[s]
        if d is None:
            d = {}
            t = self._terms[s]
            for tid in self.specials:
                nid = self.intern(ir.dspecial(t, tid))
                if nid:
                    d[tid] = nid
            self._special_next[s] = d
        return d

    def advance_bytes(self, s: int, data: bytes) -> int:
        """State after ``data`` from ``s`` (``DEAD`` if rejected)."""
        for b in data:
            s = self.row(s)[b]
            if s == DEAD:
                return DEAD
        return s

    # ------------------------------------------------------------------ masks
    def _slice_exits(self, s: int) -> bytes | None:
        """If ``s`` loops back to itself on every well-formed UTF-8 character except a set
        of ASCII exit bytes, return those exit bytes; otherwise None."""
        if s in self._slice_info:
            return self._slice_info[s]
        res = None
        r = self.row(s)
        loops = [b for b in range(128) if r[b] == s]
        if len(loops) >= _MIN_SLICE_LOOPS:
            ok = True
            for (llo, lhi), conts in _UTF8_CLASSES:
                cur = {r[b] for b in range(llo, lhi + 1)}
                for clo, chi in conts:
                    if DEAD in cur:
                        ok = False
                        break
                    nxt = set()
                    for c in cur:
                        rc = self.row(c)
                        nxt.update(rc[b] for b in range(clo, chi + 1))
                    cur = nxt
                if not ok or cur != {s}:
                    ok = False
                    break
            if ok:
                ls = set(loops)
                res = bytes(b for b in range(128) if b not in ls)
        self._slice_info[s] = res
        return res

    def mask(self, s: int) -> np.ndarray:
        """The token bitmask (int32 words) of state ``s``; cached, read-only."""
        m = self._masks.get(s)
        if m is not None:
            return m
        with self._lock:
            m = self._masks.get(s)
            if m is not None:
                return m
            m = self._compute_mask(s)
            m.setflags(write=False)
            self._masks[s] = m
            return m

    def _compute_mask(self, s: int) -> np.ndarray:
        idx = self.index
        if s == DEAD:
            return np.zeros(idx.words, dtype=np.int32)
        exits = self._slice_exits(s)
        if exits is not None:
            words, rest = idx.slice(exits)
            ids = rest.walk(s, self.step)
            m = idx.ids_to_words(ids)
            m |= words
        else:
            ids = idx.trie.walk(s, self.step)
            m = idx.ids_to_words(ids)
        extra = list(self.special_next(s).keys())
        if self._nullable[s]:
            extra.extend(int(e) for e in idx.vocab.eos_token_ids)
        for tid in extra:
            if 0 <= tid < idx.vocab_size:
                m[tid >> 5] |= np.int32(np.uint32(1 << (tid & 31)).view(np.int32))
        return m

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the automaton's caches."""
        return int(self._table.nbytes + sum(m.nbytes for m in self._masks.values()))
