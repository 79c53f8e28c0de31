"""Per-vocabulary token index: the one home of the token walk.

A :class:`TokenIndex` holds what the engine precomputes once per vocabulary and shares
across every grammar:

* a **token trie** over the bytes of all text tokens, stored level by level as flat numpy
  arrays (node ``j`` at depth ``d`` has an edge byte, a range of children at depth ``d+1``
  and the tokens that end at it), so a walk advances a whole frontier of (node, state)
  pairs with a few vectorised gathers per level and prunes a subtree at its first
  impossible byte;
* **UTF-8 slices**: for a set ``E`` of ASCII "exit" bytes, the bitmask of every token whose
  bytes are well-formed UTF-8 (a trailing partial character allowed) and contain no byte of
  ``E``, plus a trie of all other tokens.  An automaton state that loops on every character
  except ``E`` (a JSON string body, free text before a stop string) accepts exactly that
  slice plus whichever of the other tokens survive a walk: the dense 60 % of a tool call's
  decode steps cost one copy and a walk of a few thousand tokens, once per state;
* **first-byte tries**: the tokens that start with one byte, as a bitmask and a trie of
  their own (built on first use), for a state that moves like a slice state on all but a
  few first bytes (inside an object key still spelling a declared name): its mask is that
  state's mask with those few bytes' tokens walked again.

Special tokens, end-of-sequence tokens and padding ids are never in the trie: grammars
name special tokens by id (see :func:`grammar.ir.special`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from .native import NATIVE  # re-exported: whether the token walk runs in C
from .native import ext as _native  # the C walk, or None: the numpy walk

if TYPE_CHECKING:  # pragma: no cover
    from .vocab import Vocabulary

__all__ = ["NATIVE", "TokenIndex", "TokenTrie", "token_index"]


@dataclass(frozen=True)
class _Level:
    label: np.ndarray      # uint8 edge byte of each node
    child_lo: np.ndarray   # int64 first child index at the next level
    child_hi: np.ndarray   # int64 one past the last child
    term_lo: np.ndarray    # int64 position (in sorted order) of the first token ending here
    term_n: np.ndarray     # int64 number of tokens ending here (0, 1, or duplicates)


class TokenTrie:
    """A byte trie over a set of tokens, stored as per-depth flat arrays.

    Parameters
    ----------
    ids:
        Token ids.
    data:
        Their byte strings (non-empty), in the same order.
    """

    def __init__(self, ids: np.ndarray, data: list[bytes]) -> None:
        order = sorted(range(len(data)), key=data.__getitem__)
        self.ids = np.asarray(ids, dtype=np.int64)[order] if len(order) else np.zeros(0, np.int64)
        toks = [data[i] for i in order]
        n = len(toks)
        self.size = n
        self._flat: tuple | None = None   # the C walk's arrays (below)
        if n == 0:
            self.levels: list[_Level] = []
            return
        lens = np.fromiter((len(t) for t in toks), dtype=np.int64, count=n)
        maxlen = int(lens.max())
        mat = np.zeros((n, maxlen), dtype=np.uint8)
        flat = np.frombuffer(b"".join(toks), dtype=np.uint8)
        rows = np.repeat(np.arange(n), lens)
        offs = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
        mat[rows, offs] = flat
        # longest common prefix with the previous token (sorted order)
        lcp = np.zeros(n, dtype=np.int64)
        if n > 1:
            minlen = np.minimum(lens[1:], lens[:-1])
            neq = mat[1:] != mat[:-1]
            neq |= np.arange(maxlen)[None, :] >= minlen[:, None]
            first = np.argmax(neq, axis=1)
            allsame = ~neq.any(axis=1)
            first[allsame] = minlen[allsame]
            lcp[1:] = first
        levels: list[_Level] = []
        starts_list = []
        for d in range(maxlen):
            boundary = lcp <= d
            boundary[0] = True
            starts = np.flatnonzero(boundary & (lens > d))
            starts_list.append(starts)
        for d in range(maxlen):
            starts = starts_list[d]
            # run end: next boundary position after start
            bpos = np.flatnonzero((lcp <= d) | (np.arange(n) == 0))
            nxt = np.searchsorted(bpos, starts, side="right")
            ends = np.where(nxt < len(bpos), bpos[np.minimum(nxt, len(bpos) - 1)], n)
            label = mat[starts, d]
            if d + 1 < maxlen:
                cs = starts_list[d + 1]
                child_lo = np.searchsorted(cs, starts, side="left")
                child_hi = np.searchsorted(cs, ends, side="left")
            else:
                child_lo = np.zeros(len(starts), np.int64)
                child_hi = child_lo
            # tokens ending at this node: a prefix of the run with length d+1
            is_end = lens == d + 1
            cum = np.concatenate([[0], np.cumsum(is_end)])
            term_n = cum[ends] - cum[starts]
            levels.append(_Level(label.astype(np.int64), child_lo.astype(np.int64),
                                 child_hi.astype(np.int64), starts.astype(np.int64),
                                 term_n.astype(np.int64)))
        self.levels = levels
        # for the dense walk: each node's parent (its index at the level above), and per
        # level one entry per token ending there: (its node, its position in sorted order)
        self._parent: list[np.ndarray] = [np.zeros(0, np.int64)]
        for d in range(1, maxlen):
            up = levels[d - 1]
            self._parent.append(np.repeat(np.arange(len(up.label), dtype=np.int64),
                                          up.child_hi - up.child_lo))
        self._level_ends: list[tuple[np.ndarray, np.ndarray]] = []
        for lv in levels:
            tnodes = np.flatnonzero(lv.term_n > 0)
            tn = lv.term_n[tnodes]
            node_of = np.repeat(tnodes, tn)
            pos = _ranges(lv.term_lo[tnodes], tn)
            self._level_ends.append((node_of, pos))
        # the same nodes numbered globally (level by level) for the C walk, int32 except
        # the uint8 labels and the ids: child ranges in global numbers, each node's parent
        # by its position within the level above (the root, 0, at depth 0)
        if _native is not None:
            offs = np.cumsum([0] + [len(lv.label) for lv in levels])
            parents = [np.zeros(len(levels[0].label), np.int64)] + self._parent[1:]
            self._flat = (
                np.concatenate([lv.label for lv in levels]).astype(np.uint8),
                np.concatenate([lv.child_lo + offs[d + 1]
                                for d, lv in enumerate(levels)]).astype(np.int32),
                np.concatenate([lv.child_hi + offs[d + 1]
                                for d, lv in enumerate(levels)]).astype(np.int32),
                np.concatenate([lv.term_lo for lv in levels]).astype(np.int32),
                np.concatenate([lv.term_n for lv in levels]).astype(np.int32),
                self.ids,
                offs.astype(np.int32),
                np.concatenate(parents).astype(np.int32),
            )

    @property
    def nbytes(self) -> int:
        n = self.ids.nbytes
        for lv in self.levels:
            n += sum(a.nbytes for a in (lv.label, lv.child_lo, lv.child_hi, lv.term_lo, lv.term_n))
        n += sum(p.nbytes for p in self._parent) if self.levels else 0
        n += sum(a.nbytes + b.nbytes for a, b in self._level_ends) if self.levels else 0
        if self._flat is not None:
            n += sum(a.nbytes for a in self._flat[:5] + self._flat[6:])   # ids counted above
        return n

    def walk_table(self, start: int, table: np.ndarray, refill: Callable[[int], np.ndarray],
                   dense_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """Same result as :meth:`walk`, over a transition table: ``table`` is int32 with
        256 entries a state, 0 the dead state (its row all 0) and -1 where a state's row is
        not computed yet; ``refill(s)`` computes the row of ``s`` and returns the table
        (which it may have reallocated).

        In C when :data:`NATIVE`: every node of a level while more than ``dense_fraction``
        of the previous level's nodes are alive, then only the live nodes' children (see
        ``grammar/_native.c``).  Otherwise the numpy :meth:`walk`, with its own switch
        point."""
        if self._flat is None:   # no C walk, or an empty trie
            return self.walk(start, _table_step(table, refill))
        out_ids = np.empty(self.size + 1, np.int64)    # one spare entry (see _native.c)
        out_ends = np.empty(self.size + 1, np.int64)
        n = _native.walk(*self._flat, int(start), table, refill, out_ids, out_ends,
                         float(dense_fraction))
        return out_ids[:n], out_ends[:n]

    def walk(self, start: int, step: Callable[[np.ndarray, np.ndarray], np.ndarray],
             dense_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
        """Token ids accepted from automaton state ``start``, and the state each one ends in.

        ``step(states, bytes)`` returns the next state for each (state, byte) pair, with 0
        meaning dead (``step`` must map state 0 to 0).  A token is accepted when every
        byte leads to a live state.

        Levels are walked densely (one state per node of the level, 0 for a pruned one: two
        gathers a level) while more than ``dense_fraction`` of a level's nodes are alive,
        then sparsely (the live frontier only, expanded by child ranges).  Both give the
        same result; the dense form saves the frontier bookkeeping on states that allow
        most tokens (a key position of an open object, a value start).
        """
        empty = np.zeros(0, np.int64)
        if not self.levels:
            return empty, empty
        out: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        d = 0
        lv = self.levels[0]
        st = step(np.full(len(lv.label), start, dtype=np.int64), lv.label)
        # dense phase: st holds the state of every node of level d (0 = pruned)
        while True:
            node_of, pos = self._level_ends[d]
            if len(node_of):
                e = st[node_of]
                live = e != 0
                out.append(self.ids[pos[live]])
                ends.append(e[live])
            if d + 1 >= len(self.levels):
                return _joined(out, ends)
            n_alive = int(np.count_nonzero(st))
            if n_alive <= dense_fraction * len(st):
                break
            d += 1
            lv = self.levels[d]
            st = step(st[self._parent[d]], lv.label)
        # sparse phase: the live nodes of level d (whose tokens are counted above)
        nodes = np.flatnonzero(st)
        st = st[nodes]
        while len(nodes):
            lo = lv.child_lo[nodes]
            cnt = lv.child_hi[nodes] - lo
            total = int(cnt.sum())
            if total == 0:
                break
            d += 1
            lv = self.levels[d]
            nodes = _ranges(lo, cnt)
            st = step(np.repeat(st, cnt), lv.label[nodes])
            alive = st != 0
            nodes = nodes[alive]
            st = st[alive]
            tn = lv.term_n[nodes]
            has = tn > 0
            if has.any():
                tl = lv.term_lo[nodes[has]]
                tnn = tn[has]
                if (tnn == 1).all():
                    out.append(self.ids[tl])
                    ends.append(st[has])
                else:   # duplicate byte strings end at one node
                    out.append(self.ids[_ranges(tl, tnn)])
                    ends.append(np.repeat(st[has], tnn))
        return _joined(out, ends)


def _table_step(table: np.ndarray, refill: Callable[[int], np.ndarray]):
    """A ``step`` function for :meth:`TokenTrie.walk` over a refillable table."""

    def step(states: np.ndarray, labels: np.ndarray) -> np.ndarray:
        nonlocal table
        flat = states * np.int64(256) + labels
        nxt = table.reshape(-1).take(flat)
        miss = nxt < 0
        if miss.any():
            for s in np.unique(states[miss]).tolist():
                table = refill(s)
            nxt[miss] = table.reshape(-1).take(flat[miss])
        return nxt

    return step


def _ranges(lo: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """The indices ``lo[i], lo[i] + 1, ..., lo[i] + cnt[i] - 1`` for every ``i``, in order."""
    return np.repeat(lo - (np.cumsum(cnt) - cnt), cnt) + np.arange(int(cnt.sum()))


def _joined(out: list[np.ndarray], ends: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if not out:
        empty = np.zeros(0, np.int64)
        return empty, empty
    return np.concatenate(out), np.concatenate(ends)


def _utf8_prefix_ok(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError as e:
        # only a truncated final character is acceptable
        return e.reason == "unexpected end of data" and e.end == len(b)


class TokenIndex:
    """Vocabulary-level precomputation shared by every grammar compiled for it.

    Use :func:`token_index` to get the (cached) instance of a vocabulary.
    """

    def __init__(self, vocab: "Vocabulary") -> None:
        self.vocab = vocab
        self.vocab_size = int(vocab.vocab_size)
        self.words = (self.vocab_size + 31) // 32
        table = vocab.token_table()
        eos = set(int(e) for e in vocab.eos_token_ids)
        ids, data = [], []
        for i, b in enumerate(table[: self.vocab_size]):
            if b and i not in eos:
                ids.append(i)
                data.append(b)
        self.text_ids = np.asarray(ids, dtype=np.int64)
        self.text_bytes = data
        self.trie = TokenTrie(self.text_ids, data)
        lens = np.fromiter((len(b) for b in data), dtype=np.int64, count=len(data))
        self._lens = lens
        self._flat = np.frombuffer(b"".join(data), dtype=np.uint8)
        self._seg = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else np.zeros(0, np.int64)
        first = self._flat[self._seg] if len(lens) else np.zeros(0, np.uint8)
        #: how many text tokens start with each byte
        self.first_byte_counts = np.bincount(first, minlength=256).astype(np.int64)
        self._by_first: dict[int, tuple[np.ndarray, TokenTrie]] = {}
        self._utf8_ok: np.ndarray | None = None
        self._utf8_pending: np.ndarray | None = None
        self._pending_words: dict[bytes, tuple[np.ndarray, ...]] = {}
        self._slices: dict[bytes, tuple[np.ndarray, TokenTrie]] = {}
        self._inside: dict[bytes, np.ndarray] = {}   # per slice: its tokens, as a bool array
        self._upto: dict[bytes, list[np.ndarray]] = {}   # see slice_upto
        self._chars: np.ndarray | None = None
        self._lock = threading.Lock()
        # the first-byte tries (see first_byte) are built here, with the vocabulary's other
        # structures (about 0.3 s for Llama 3's), not inside the first mask that needs each
        # one: 1-20 ms apiece, paid by whichever request first met that byte
        order = np.argsort(first, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(self.first_byte_counts)])
        for b in np.flatnonzero(self.first_byte_counts).tolist():
            sel = order[bounds[b]:bounds[b + 1]]
            self._by_first[b] = (self._frozen_words(self.text_ids[sel]), self._sub_trie(sel))
        none = order[:0]
        self._no_first = (self._frozen_words(self.text_ids[none]), self._sub_trie(none))

    # ------------------------------------------------------------------ bitmask helpers
    def ids_to_words(self, ids: np.ndarray) -> np.ndarray:
        """Bitmask words (int32, ``ceil(V/32)``) with the bits of ``ids`` set."""
        b = np.zeros(self.words * 32, dtype=np.bool_)
        if len(ids):
            b[ids] = True
        return np.packbits(b, bitorder="little").view("<i4").astype(np.int32, copy=False)

    def _frozen_words(self, ids: np.ndarray) -> np.ndarray:
        """:meth:`ids_to_words`, read-only (shared by every automaton of the vocabulary)."""
        words = self.ids_to_words(ids)
        words.setflags(write=False)
        return words

    def _sub_trie(self, sel: np.ndarray) -> TokenTrie:
        """A trie of the text tokens at positions ``sel``."""
        return TokenTrie(self.text_ids[sel], [self.text_bytes[i] for i in sel])

    def first_byte(self, b: int) -> tuple[np.ndarray, TokenTrie]:
        """``(words, trie)`` of the text tokens whose first byte is ``b``: their bitmask and
        a trie of them alone (built with the index).  A state that moves like another on
        all but a few first bytes walks just these tokens (see
        :meth:`grammar.automaton.Automaton._reference`)."""
        return self._by_first.get(b, self._no_first)

    # ------------------------------------------------------------------ slices
    def slice_by_pending(self, exits: bytes) -> tuple[np.ndarray, ...]:
        """The slice of ``exits`` split by how many UTF-8 continuation bytes a token leaves
        pending at its end (0 to 3): four word arrays."""
        self.slice(exits)
        return self._pending_words[bytes(sorted(set(exits)))]

    def utf8_pending(self) -> np.ndarray:
        """For each text token: continuation bytes still expected after it (0-3), read off
        its last four bytes (vectorised over the vocabulary)."""
        if self._utf8_pending is None:
            lens = self._lens
            end = self._seg + lens
            flat = self._flat.astype(np.int16)
            # b[o]: the o-th byte from the end (o = 1..4), -1 past the token's start
            b = [np.where(lens >= o, flat[np.maximum(end - o, 0)], -1) if len(flat)
                 else np.zeros(0, np.int16) for o in range(1, 5)]

            def cont(x: np.ndarray) -> np.ndarray:
                return (x >= 0x80) & (x < 0xC0)

            c1 = cont(b[0])
            c2 = c1 & cont(b[1])
            c3 = c2 & cont(b[2])
            k = c1.astype(np.int8) + c2 + c3          # trailing continuation bytes, at most 3
            lead = np.choose(k, b) if len(k) else np.zeros(0, np.int16)
            need = np.select([(lead >= 0xC0) & (lead < 0xE0), (lead >= 0xE0) & (lead < 0xF0),
                              lead >= 0xF0], [1, 2, 3], 0)
            self._utf8_pending = np.maximum(need - k, 0).astype(np.int8)
        return self._utf8_pending

    def utf8_ok(self) -> np.ndarray:
        """For each text token: whether it is well-formed UTF-8 (a truncated final character
        allowed).  ASCII tokens are settled by one vectorised max; only the others are
        decoded."""
        if self._utf8_ok is None:
            if len(self._flat):
                ascii_ = np.maximum.reduceat(self._flat, self._seg) < 0x80
            else:
                ascii_ = np.zeros(0, np.bool_)
            ok = ascii_.copy()
            for i in np.flatnonzero(~ascii_).tolist():
                ok[i] = _utf8_prefix_ok(self.text_bytes[i])
            self._utf8_ok = ok
        return self._utf8_ok

    def slice(self, exits: bytes) -> tuple[np.ndarray, TokenTrie]:
        """``(words, rest_trie)`` for the set of ASCII exit bytes ``exits``: the bitmask of
        tokens that are well-formed UTF-8 without any exit byte, and a trie of all other
        text tokens."""
        key = bytes(sorted(set(exits)))
        hit = self._slices.get(key)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._slices.get(key)
            if hit is not None:
                return hit
            lut = np.zeros(256, dtype=np.uint8)
            for b in key:
                lut[b] = 1
            if len(self._flat):
                hits = np.maximum.reduceat(lut[self._flat], self._seg) if key else np.zeros(len(self._lens), np.uint8)
            else:
                hits = np.zeros(0, np.uint8)
            inside = self.utf8_ok() & (hits == 0)
            self._inside[key] = inside
            pend = self.utf8_pending()
            self._pending_words[key] = tuple(
                self._frozen_words(self.text_ids[inside & (pend == k)]) for k in range(4))
            hit = (self._frozen_words(self.text_ids[inside]),
                   self._sub_trie(np.flatnonzero(~inside)))
            self._slices[key] = hit
            return hit

    def char_counts(self) -> np.ndarray:
        """For each text token: how many UTF-8 characters it starts (its bytes that are not
        continuation bytes), a character cut short at its end included."""
        if self._chars is None:
            if len(self._flat):
                starts = ((self._flat < 0x80) | (self._flat >= 0xC0)).astype(np.int64)
                self._chars = np.add.reduceat(starts, self._seg)
            else:
                self._chars = np.zeros(0, np.int64)
        return self._chars

    def slice_upto(self, exits: bytes, n: int) -> np.ndarray:
        """The bitmask of the slice of ``exits`` (see :meth:`slice`) restricted to the
        tokens that start at most ``n`` characters: those a run of at most ``n``
        characters can hold (see :meth:`grammar.automaton.Automaton._run`).  The masks of
        every ``n`` up to the longest token are built together, once per slice."""
        key = bytes(sorted(set(exits)))
        cum = self._upto.get(key)
        if cum is None:
            self.slice(key)
            with self._lock:
                cum = self._upto.get(key)
                if cum is None:
                    inside = self._inside[key]
                    counts = self.char_counts()[inside]
                    ids = self.text_ids[inside]
                    order = np.argsort(counts, kind="stable")
                    ids, counts = ids[order], counts[order]
                    top = int(counts[-1]) if len(counts) else 0
                    bounds = np.searchsorted(counts, np.arange(top + 2))
                    bits = np.left_shift(np.uint32(1), (ids & 31).astype(np.uint32))
                    words = np.zeros(self.words, dtype=np.uint32)
                    cum = []
                    for c in range(top + 1):   # each count's tokens added to the last mask
                        lo, hi = bounds[c], bounds[c + 1]
                        if hi > lo:
                            np.bitwise_or.at(words, ids[lo:hi] >> 5, bits[lo:hi])
                        w = words.view(np.int32).copy()
                        w.setflags(write=False)
                        cum.append(w)
                    self._upto[key] = cum
        return cum[min(max(n, 0), len(cum) - 1)]


_INDEXES: dict[str, TokenIndex] = {}
_INDEX_LOCK = threading.Lock()


def token_index(vocab: "Vocabulary") -> TokenIndex:
    """The shared :class:`TokenIndex` of ``vocab`` (built once per vocabulary hash)."""
    key = f"{vocab.hash}:{vocab.vocab_size}"
    idx = _INDEXES.get(key)
    if idx is None:
        with _INDEX_LOCK:
            idx = _INDEXES.get(key)
            if idx is None:
                idx = TokenIndex(vocab)
                _INDEXES[key] = idx
    return idx
