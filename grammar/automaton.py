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

from . import ir, native
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
_MAX_SLICE_CLOSURE = 32  # states in a slice state's closure (see Automaton._slice_exits)
_REF_MAX_SHARE = 0.5   # a reference state pays when s walks at most this share of the tokens


def _mask_bits(m: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(m.to_bytes(32, "little"), dtype=np.uint8),
                         bitorder="little").astype(np.bool_)


def _fill_row_py(table: np.ndarray, s: int, cells: list) -> tuple[int, ...]:
    """Row ``s`` of ``table`` from its partition ``[(mask, state), ...]`` (bytes in no
    cell go to the dead state 0), also returned as a tuple: the fallback of the C
    extension's ``fill_row``."""
    rowl = [0] * 256
    for m, nid in cells:
        if m.bit_count() <= 24:
            while m:
                low = m & -m
                rowl[low.bit_length() - 1] = nid
                m ^= low
        else:
            for b in np.flatnonzero(_mask_bits(m)).tolist():
                rowl[b] = nid
    table[s] = rowl
    return tuple(rowl)


_fill_row = native.ext.fill_row if native.ext is not None else _fill_row_py

_ASCII = (1 << 128) - 1                 # bytes 0x00-0x7F in a 256-bit byte mask
_HIGH_BYTES = _ASCII << 128             # bytes 0x80-0xFF


def _byte_mask(bs: bytes) -> int:
    """The 256-bit mask of the bytes ``bs``."""
    m = 0
    for b in bs:
        m |= 1 << b
    return m


def _utf8_ends(start, step, dead) -> list[set] | None:
    """Where the well-formed UTF-8 characters lead from ``start`` (``step(x, byte)`` is the
    next state, ``dead`` the dead one): the set of end points of each lead-byte class, or
    None when a character dies before its last byte."""
    out = []
    for (llo, lhi), conts in _UTF8_CLASSES:
        cur = {step(start, b) for b in range(llo, lhi + 1)}
        for clo, chi in conts:
            if dead in cur:
                return None
            cur = {step(x, b) for x in cur for b in range(clo, chi + 1)}
        out.append(cur)
    return out


def _star_returns_utf8(star: ir.Term) -> bool:
    """Whether every well-formed UTF-8 character derives the term ``star`` into itself
    (by identity: the hash-consed derivative of ``X*`` by a complete character of ``X``
    is ``X*``)."""
    ends = _utf8_ends(star, ir.deriv, ir.NOTHING)
    return ends is not None and all(e == {star} for e in ends)


def _chain_is(parts: tuple, y: ir.Term) -> bool:
    """Whether ``ir.seq(*parts)`` is the term ``y``, without building it (``ir._seq2``
    flattens a concatenation in its head: ``seq(seq(a0, a1), r) = seq(a0, seq(a1, r))``).
    The last part is compared whole; False when unsure."""
    for p in parts[:-1]:
        while p.kind == "seq":
            if y.kind != "seq" or y.args[0] is not p.args[0]:
                return False
            p, y = p.args[1], y.args[1]
        if p is ir.EMPTY:
            continue
        if y.kind != "seq" or y.args[0] is not p:
            return False
        y = y.args[1]
    return parts[-1] is y


def _cofinite_is(a: ir.Term, r: ir.Term, y: ir.Term, stops: int) -> bool:
    """Whether ``seq(a, r)`` is ``seq(n, r)`` or ``seq(n, rest, r)`` with ``n`` declared
    cofinite (:func:`grammar.ir.declare_cofinite`) over ``body`` and ``closer``, ``y`` is
    ``seq(body, closer, r)`` or ``seq(body, closer, rest, r)``, and the closer starts
    with a byte of ``stops`` only.

    Then a string ``w`` without a byte of ``stops`` that keeps ``y`` live is a prefix of a
    string of ``body`` (the closer cannot start inside it); ``body`` (a star) extends it in
    infinitely many ways, of which ``n`` (with the closer) excludes finitely many, and the
    rest is live as ``y`` is: ``w`` keeps ``seq(a, r)`` live."""
    rest = None
    c = ir.cofinite_of(a)
    if c is None:
        if a.kind != "seq":
            return False
        c = ir.cofinite_of(a.args[0])
        if c is None:
            return False
        rest = a.args[1]
    body, closer = c
    if ir.first_bytes(closer) & ~stops:
        return False
    if rest is None:
        return _chain_is((body, closer, r), y)
    return _chain_is((body, closer, rest, r), y)


def _leading_repeat(t: ir.Term) -> tuple[ir.Term, int, int | None, ir.Term] | None:
    """``(X, lo, hi, R)`` for ``t = X{lo,hi} R`` (``R`` empty for a bare repetition), else
    None."""
    if t.kind == "seq":
        head, rest = t.args
    elif t.kind == "repeat":
        head, rest = t, ir.EMPTY
    else:
        return None
    if head.kind != "repeat":
        return None
    x, lo, hi = head.args
    return x, lo, hi, rest


_NO, _CONTAINS, _COFINITE = 0, 1, 2


def _covers(x: ir.Term, y: ir.Term, stops: int) -> int:
    """Whether every string without a byte of ``stops`` that keeps ``y`` live keeps ``x``
    live too, judged on the structure alone: ``_CONTAINS`` when ``x`` contains ``y``
    (``y`` is ``x``, an operand of the union ``x``, or ``seq(a, r)`` for an operand ``a``
    of the union ``u`` in ``x = seq(u, r)``), ``_COFINITE`` when such an operand is a
    cofinite term followed by ``y``'s rest (see :func:`_cofinite_is`), else ``_NO``."""
    if x is y:
        return _CONTAINS
    k = x.kind
    if k == "alt":
        for a in x.args:
            if a is y:
                return _CONTAINS
            if a.kind == "seq":
                v = _covers(a, y, stops)
                if v:
                    return v
        return _NO
    if k == "seq":
        u, r = x.args
        if _cofinite_is(u, r, y, stops):
            return _COFINITE
        if u.kind == "alt":
            for a in u.args:
                if _chain_is((a, r), y):
                    return _CONTAINS
                if _cofinite_is(a, r, y, stops):
                    return _COFINITE
    return _NO


_UNSET = -1
_UNSET_BLOCK = 64
_max = np.maximum.reduce   # without ndarray.max's Python-level wrapper
# a state's shortest completion, not computed yet (see Automaton.minlen): above every
# length (INF included), so that one maximum over states tells whether one is unknown
_UNKNOWN = np.iinfo(np.int64).max


class Automaton:
    """Lazily built automaton over a root term, for one :class:`TokenIndex`."""

    def __init__(self, root: ir.Term, index: TokenIndex) -> None:
        self.index = index
        self.specials = tuple(sorted(ir.specials_of(root)))
        self._lock = threading.RLock()
        self._terms: list[ir.Term] = [ir.NOTHING]
        self._ids: dict[int, int] = {ir.NOTHING.id: DEAD}
        cap = 64
        # transitions, -1 where a state's row is not computed yet (the token walk finds
        # those by sign and asks _refill for them)
        self._table = np.full((cap, 256), _UNSET, dtype=np.int32)
        self._table[DEAD] = DEAD
        self._unset_to = cap   # rows below are marked unset (see intern)
        self._nullable = np.zeros(cap, dtype=np.bool_)
        # rows as tuples of ints: the cyclic GC untracks them, so they add nothing to its
        # passes however many states a long-lived server accumulates
        self._rows: list[tuple[int, ...] | None] = [(0,) * 256]
        # each state's successor on the most bytes (DEAD if none), set with its row
        self._major: list[int] = [DEAD]
        self._special_next: list[dict[int, int] | None] = [{}]
        self._masks: dict[int, np.ndarray] = {}
        self._slice_info: dict[int, bytes | None] = {}
        self._closure: dict[int, tuple[int, ...]] = {}   # slice states' closures
        self._star_utf8: dict[int, bool] = {}   # see _utf8_returns
        self._units: dict[int, int] = {}   # see _char_units
        self._max_end: dict[int, int] = {}
        self._ends: dict[int, tuple] = {}
        self._budget_cache: dict[tuple[int, int], np.ndarray] = {}
        self._minlen: list[int | None] = [ir.INF]
        self._minlen_np = np.full(64, _UNKNOWN, dtype=np.int64)
        self._minlen_np[DEAD] = ir.INF
        # longest token in bytes (1 for an empty trie), plus one
        self._span = (len(index.trie.levels) if index.trie.size else 1) + 1
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
            if t is ir.NOTHING or not ir.is_live(t):
                self._ids[t.id] = DEAD
                return DEAD
            sid = len(self._terms)
            if sid >= self._unset_to:
                if sid >= len(self._table):
                    self._grow()
                # mark the rows unset a block at a time: one numpy call per block of
                # states instead of one per state
                end = min(len(self._table), sid + _UNSET_BLOCK)
                self._table[sid:end] = _UNSET
                self._unset_to = end
            self._terms.append(t)
            self._rows.append(None)
            self._major.append(DEAD)
            self._special_next.append(None)
            # the shortest completion only matters to budget masks: around intersections,
            # where it takes a search, it waits until one asks (see minlen)
            ml = t._minlen
            if ml is None and not t.has_bool:
                ml = ir.minlen(t)
            self._minlen.append(ml)
            if sid >= len(self._minlen_np):
                grown = np.full(2 * len(self._minlen_np), _UNKNOWN, dtype=np.int64)
                grown[: len(self._minlen_np)] = self._minlen_np
                self._minlen_np = grown
            # both arrays start out unknown / not nullable: write only what differs
            if ml is not None:
                self._minlen_np[sid] = ml
            if ir.is_nullable(t):
                self._nullable[sid] = True
            self._ids[t.id] = sid
            return sid

    def _grow(self) -> None:
        # the new rows are left uninitialised (intern marks each row unset as it assigns
        # it): filling them here wrote the whole doubled table at once, tens of ms of
        # page faults inside one mask at 8k or 16k states
        n = len(self._table)
        table = np.empty((2 * n, 256), dtype=np.int32)
        table[:n] = self._table
        nullable = np.zeros(2 * n, dtype=np.bool_)
        nullable[:n] = self._nullable
        self._table, self._nullable = table, nullable

    def nullable(self, s: int) -> bool:
        return bool(self._nullable[s])

    def minlen(self, s: int) -> int:
        """Shortest completion of state ``s`` in bytes (special tokens count 1)."""
        ml = self._minlen[s]
        if ml is None:
            ml = ir.minlen(self._terms[s])
            self._minlen[s] = ml
            self._minlen_np[s] = ml
        return ml

    def _compute_row(self, s: int) -> None:
        with self._lock:
            if self._rows[s] is not None:
                return
            cells = []
            major, best = DEAD, (0, 0)
            for m, nt in ir.row(self._terms[s]):
                nid = self.intern(nt)
                if nid:
                    cells.append((m, nid))
                    # the successor on most bytes, the lowest first byte on a tie
                    key = (m.bit_count(), -(m & -m).bit_length())
                    if key > best:
                        major, best = nid, key
            self._major[s] = major
            # intern may have grown the table: write after
            self._rows[s] = _fill_row(self._table, s, cells)

    def row(self, s: int) -> tuple[int, ...]:
        r = self._rows[s]
        if r is None:
            self._compute_row(s)
            r = self._rows[s]
        return r  # type: ignore[return-value]

    def _refill(self, s: int) -> np.ndarray:
        """Compute the row of ``s`` and return the table (the token walk's callback: the
        table may have been reallocated meanwhile)."""
        self._compute_row(s)
        return self._table

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
        """The ASCII exit bytes of ``s`` when the tokens without them need no walk, else
        None.

        ``s`` loops back to itself on most ASCII bytes (a string body).  Its *closure* is
        ``s`` and the states that it reaches on a non-exit byte, each of which allows
        most ASCII bytes too (at most ``_MAX_SLICE_CLOSURE``; usually ``s`` alone; more
        for a body that tracks something, such as the progress of an unanchored
        ``pattern`` search); a byte to any other state (a closing quote, an escape) is
        an exit.  Every non-exit ASCII byte and every well-formed UTF-8
        character leads from a state of the closure to a state of the closure, so a
        token without exit bytes stays inside it, live: allowed.  Only the tokens with
        an exit byte (or not well-formed) need a walk."""
        if s in self._slice_info:
            return self._slice_info[s]
        res = None
        closure = self._slice_closure(s)
        if closure is not None:
            states, exits = closure
            self._closure[s] = states
            res = bytes(sorted(exits))
        self._slice_info[s] = res
        return res

    def _closure_of(self, s: int) -> tuple[int, ...]:
        """The closure of the slice state ``s`` (see :meth:`_slice_exits`)."""
        return self._closure.get(s, (s,))

    def _loops(self, s: int) -> int:
        return self.row(s)[:128].count(s)

    def _live_ascii(self, s: int) -> int:
        return 128 - self.row(s)[:128].count(DEAD)

    def _slice_closure(self, s: int) -> tuple[tuple[int, ...], set[int]] | None:
        """``(closure states, exit bytes)`` of ``s`` (see :meth:`_slice_exits`), or None."""
        if self._loops(s) < _MIN_SLICE_LOOPS:
            return None
        states, members, exits = [s], {s}, set()
        i = 0
        while i < len(states):
            c = states[i]
            i += 1
            r = self.row(c)
            for b in range(128):
                n = r[b]
                if n == c or n in members or b in exits:
                    continue
                if (n != DEAD and len(states) < _MAX_SLICE_CLOSURE
                        and self._live_ascii(n) >= _MIN_SLICE_LOOPS):
                    states.append(n)
                    members.add(n)
                else:
                    exits.add(b)
        # by construction every non-exit ASCII byte leads from a member to a member (a byte
        # that leaves from one member is an exit for all); the UTF-8 characters must too
        for c in states:
            if self._utf8_returns(c):
                continue
            ends = _utf8_ends(c, lambda x, b: self.row(x)[b], DEAD)
            if ends is None or not all(e <= members for e in ends):
                return None
        return tuple(states), exits

    def _utf8_returns(self, c: int) -> bool:
        """Whether every well-formed UTF-8 character leads from state ``c`` back to ``c``,
        decided on the structure alone where it can be (else False, and the caller
        follows the bytes): ``c = X* R`` where ``X*`` returns to itself on every such
        character and ``R`` starts with no byte above 0x7F.  A character from ``c`` then
        derives ``X*`` alone (``R`` cannot start it) and completes into ``X* R = c``.  The
        check of ``X*`` is made once per automaton, not once per string in the document
        (each of whose states would otherwise need the rows of its own UTF-8 middles)."""
        t = self._terms[c]
        if t.kind == "seq":
            star, rest = t.args
        else:
            star, rest = t, ir.EMPTY
        if star.kind != "repeat" or star.args[1] != 0 or star.args[2] is not None:
            return False
        if ir.first_bytes(rest) & _HIGH_BYTES:
            return False
        ok = self._star_utf8.get(star.id)
        if ok is None:
            ok = self._star_utf8[star.id] = _star_returns_utf8(star)
        return ok

    def mask(self, s: int) -> np.ndarray:
        """The token bitmask (int32 words) of state ``s``; cached, read-only."""
        m = self._masks.get(s)
        if m is not None:
            return m
        with self._lock:
            m = self._masks.get(s)
            if m is not None:
                return m
            c = self._clamped(s)
            if c is not None:   # same mask as a state with looser repetition bounds
                m = self.mask(c)
                wc, ms, mc = self._max_end.get(c), self._minlen[s], self._minlen[c]
                if wc is not None and ms is not None and mc is not None:
                    self._max_end[s] = wc + ms - mc
            else:
                m = self._compute_mask(s)
                m.setflags(write=False)
            self._masks[s] = m
            return m

    def _clamped(self, s: int) -> int | None:
        """For ``s = X{lo,hi} R``: the state ``X{lo',hi'} R`` with the bounds clamped to
        what one token can reach, when that differs from ``s``; else None.

        A token has at most ``L - 1`` bytes (``L`` = longest token + 1; a special token
        counts 1) and each ``X`` takes at least one, so within one token at most ``L - 1``
        repetitions are consumed: whether a token is a prefix of the language, and
        whether the state accepts EOS, depend on ``lo`` only up to ``L`` and on ``hi`` only
        below ``L``.  With ``lo' = min(lo, L)`` and ``hi' = None if hi >= L`` both states
        allow the same tokens.  Bounded strings (``maxLength``) and arrays then share one
        mask for all positions far from their bounds, and the unbounded twin is usually a
        self-loop served by a slice, not a trie walk.  The worst shortest completion after a
        token grows by at most ``(lo - lo') * minlen(X) = minlen(s) - minlen(s')``."""
        parts = _leading_repeat(self._terms[s])
        if parts is None:
            return None
        x, lo, hi, rest = parts
        big = self._span
        lo2 = min(lo, big)
        hi2 = None if hi is None or hi >= big else hi
        if (lo2, hi2) == (lo, hi) or ir.is_nullable(x):
            return None
        c = self.intern(ir.seq(ir.repeat(x, lo2, hi2), rest))
        return c if c not in (s, DEAD) else None

    def _walk(self, s: int, *, exact_ends: bool = False) -> tuple[bytes | None, np.ndarray,
                                                                    np.ndarray]:
        """(slice exits or None, walked token ids, their end states).  The walk builds the
        rows of every state it meets, so the cyclic GC is paused meanwhile.

        ``exact_ends``: the slice tokens must all end in ``s`` (or short of it by a
        truncated character), as budget masks assume; a slice whose closure holds other
        states is then walked in full."""
        with ir.gc_paused():
            exits = self._slice_exits(s)
            if exact_ends and len(self._closure_of(s)) > 1:
                exits = None
            trie = self.index.slice(exits)[1] if exits is not None else self.index.trie
            ids, ends = trie.walk_table(s, self._table, self._refill)
        return exits, ids, ends

    def _compute_mask(self, s: int) -> np.ndarray:
        idx = self.index
        if s == DEAD:
            self._max_end[s] = 0
            return np.zeros(idx.words, dtype=np.int32)
        with ir.gc_paused():
            if self._slice_exits(s) is None:
                run = self._run(s)
                if run is not None:
                    return self._mask_from_run(s, *run)
                div = self._diverging(s)
                if div is not None:
                    cov = self._covering(s, *div)
                    if cov is not None:
                        return self._mask_from_covering(s, *cov)
                    ref = self._reference(s, *div)
                    if ref is not None:
                        return self._mask_from_reference(s, *ref)
            exits, ids, ends = self._walk(s)
        m = idx.ids_to_words(ids)
        if exits is not None:
            m |= idx.slice(exits)[0]
        return self._finish_mask(s, m, self._known_max(ends),
                                 self._closure_of(s) if exits is not None else None)

    def _widen(self, s: int, worst: int | None, closure: tuple[int, ...] | None,
               ml) -> int | None:
        """``worst`` (the longest shortest completion after a walked token of ``s``)
        widened by the slice tokens and the special tokens.  ``closure``: the slice's
        closure states, or None without slice tokens; a slice token ends in a state whose
        shortest completion is at most one of theirs plus 3 pending UTF-8 bytes.
        ``ml(state)`` gives a state's shortest completion, or None when it is not known;
        then the result is None too."""
        ends = [worst]
        if closure is not None:
            xs = [ml(c) for c in closure]
            ends.append(None if None in xs else max(xs) + 3)
        ends.extend(ml(t) for t in self.special_next(s).values())
        return None if None in ends else max(ends)

    def _finish_mask(self, s: int, m: np.ndarray, worst: int | None,
                     closure: tuple[int, ...] | None = None) -> np.ndarray:
        """Add the special tokens and EOS that ``s`` allows to its trie tokens ``m``, and
        record the longest shortest completion after a token (:meth:`_widen` of ``worst``)
        when every one of them is known (else a budget mask of ``s`` computes it when one
        is asked for)."""
        worst = self._widen(s, worst, closure, self._minlen.__getitem__)
        if worst is not None:
            self._max_end[s] = worst
        sp = self.special_next(s)
        self._set_bits(m, list(sp.keys()))
        if self._nullable[s]:
            self._set_bits(m, self.index.vocab.eos_token_ids)
        return m

    def _run(self, s: int) -> tuple[bytes, int | None] | None:
        """``(E, hi)`` when ``s = X{lo,hi} R`` is a bounded run of a string body's
        characters, else None: its unbounded twin ``X* R`` is a slice state with exits
        ``E`` that is its own closure, every character that does not start with a byte of
        ``E`` is exactly one ``X``, and ``R`` starts with a byte of ``E`` only.

        A slice token (see :meth:`_slice_exits`) then stays inside the run, one ``X`` per
        character: from ``s`` it is allowed exactly when it starts at most ``hi``
        characters (a character cut short at its end counts, as it needs one more ``X``),
        whatever ``lo``.  Without this, each position of a string with ``maxLength`` (or
        ``minLength``) under one token's reach was a new state that walked the whole
        trie; now it takes the slice of its length (cached per vocabulary) and walks the
        tokens with an exit byte."""
        parts = _leading_repeat(self._terms[s])
        if parts is None:
            return None
        x, lo, hi, rest = parts
        if lo == 0 and hi is None:
            return None
        units = self._char_units(x)   # before the twin: most runs are not characters
        if units.bit_count() < _MIN_SLICE_LOOPS:
            return None
        twin = self.intern(ir.seq(ir.star(x), rest))
        if twin in (DEAD, s):
            return None
        exits = self._slice_exits(twin)
        if exits is None or self._closure_of(twin) != (twin,):
            return None
        stops = _byte_mask(exits)
        if _ASCII & ~stops & ~units or ir.first_bytes(rest) & ~stops:
            return None
        return exits, hi

    def _char_units(self, x: ir.Term) -> int:
        """The ASCII bytes that derive ``x`` to the empty string (a byte mask), or 0
        unless every well-formed UTF-8 character does too (memoised per automaton)."""
        units = self._units.get(x.id)
        if units is None:
            units = 0
            for b in range(128):
                if ir.deriv(x, b) is ir.EMPTY:
                    units |= 1 << b
            if units.bit_count() >= _MIN_SLICE_LOOPS:
                ends = _utf8_ends(x, ir.deriv, ir.NOTHING)
                if ends is None or not all(e == {ir.EMPTY} for e in ends):
                    units = 0
            self._units[x.id] = units
        return units

    def _mask_from_run(self, s: int, exits: bytes, hi: int | None) -> np.ndarray:
        """The mask of ``s`` from :meth:`_run`: the slice tokens of at most ``hi``
        characters, plus a walk from ``s`` of the tokens with an exit byte.  A slice token
        ends in ``X{lo-c,hi-c} R`` (or a character short of it): no longer a shortest
        completion than ``s``'s, plus 3 pending bytes."""
        base = None if hi is None else self.index.slice_upto(exits, hi).copy()
        m, ends = self._slice_walk(s, exits, base)
        return self._finish_mask(s, m, self._known_max(ends), (s,))

    def _slice_walk(self, s: int, exits: bytes, base: np.ndarray | None = None,
                    ) -> tuple[np.ndarray, np.ndarray]:
        """``(words, ends)``: ``base`` (words the caller owns, updated in place; default: a
        copy of the slice of ``exits``) with the tokens of the slice's exit trie that ``s``
        allows, and those tokens' end states."""
        idx = self.index
        words, trie = idx.slice(exits)
        m = words.copy() if base is None else base
        ids, ends = trie.walk_table(s, self._table, self._refill)
        if len(ids):
            m |= idx.ids_to_words(ids)
        return m, ends

    def _diverging(self, s: int) -> tuple[int, list[int]] | None:
        """``(t, D)``: ``s``'s successor on the most bytes when it is a slice state (see
        :meth:`_slice_exits`), and the first bytes ``D`` on which the two rows differ;
        else None.  Where ``s`` moves as ``t`` does, a token is allowed from ``s`` exactly
        when it is from ``t``: :meth:`_covering` and :meth:`_reference` decide the rest."""
        self.row(s)
        t = self._major[s]
        if t in (DEAD, s) or self._slice_exits(t) is None:
            return None
        # _slice_exits(t) computed t's row: both rows are in the table
        return t, np.flatnonzero(self._table[s] != self._table[t]).tolist()

    def _covering(self, s: int, t: int, diff: list[int]
                  ) -> tuple[int, bytes, list[int], bool] | None:
        """``(t, E, dead, exact)`` when every slice token of ``t`` (see :meth:`_diverging`;
        exits ``E``) is allowed from ``s`` too, except those whose first byte is in
        ``dead``, else None.  ``exact``: each such token ends in a state that contains the
        one it reaches from ``t`` (so no longer a shortest completion than there).

        ``t`` must be its own closure (a free string body).  On a differing byte ``b``
        that is not an exit of ``t``, either ``s`` dies (``b`` goes to ``dead``) or the
        structure shows that what follows keeps ``s`` live wherever it keeps ``t`` live
        (see :func:`_covers`; typically an object key that still spells a prefix of some
        declared names, ``seq(alt(any other name, names), rest)``).  Only the tokens with
        an exit byte (or not well-formed) need a walk from ``s``, over the slice's own
        trie: the names' prefixes are walked along those tokens alone, not along every
        token that starts with a name's first letter (as :meth:`_reference` walks them)."""
        exits = self._slice_exits(t)
        if self._closure_of(t) != (t,):
            return None
        rs, rt = self._rows[s], self._rows[t]
        terms = self._terms
        stops = _byte_mask(exits)
        dead = []
        exact = True
        for b in diff:
            ns, nt = rs[b], rt[b]  # type: ignore[index]
            if nt == DEAD or (b < 128 and b in exits):
                continue   # no slice token starts with b: the walk covers them
            if ns == DEAD:
                dead.append(b)
                continue
            v = _covers(terms[ns], terms[nt], stops)
            if v == _NO:
                return None
            exact = exact and v == _CONTAINS
        return t, exits, dead, exact

    def _mask_from_covering(self, s: int, t: int, exits: bytes, dead: list[int],
                            exact: bool) -> np.ndarray:
        """The mask of ``s`` from :meth:`_covering`: the slice of ``t``'s exits less the
        tokens starting with a ``dead`` byte, plus a walk from ``s`` of the other tokens.
        The longest shortest completion after a token is recorded only when ``exact``
        (else a budget mask walks ``s`` when one is asked for)."""
        base = None
        if dead:
            base = self.index.slice(exits)[0].copy()
            for b in dead:
                np.bitwise_and(base, ~self.index.first_byte(b)[0], out=base)
        m, ends = self._slice_walk(s, exits, base)
        worst = self._known_max(ends) if exact else None
        return self._finish_mask(s, m, worst, self._closure_of(t))

    def _reference(self, s: int, t: int, diff: list[int]) -> tuple[int, bytes] | None:
        """``(t, D)`` when the first bytes ``D = diff`` on which ``s`` and its slice state
        ``t`` part ways (see :meth:`_diverging`) start few enough tokens, else None.

        This is a position inside an object key that still spells a prefix of some
        declared names (or a string excluded by ``not``/``oneOf``): most characters leave
        the names behind and land where any other character of a free string does, the
        few that continue a name go elsewhere.  A token whose first byte is not in ``D``
        reaches the same state from ``s`` as from ``t`` after that byte, and so every state
        after: it is allowed from ``s`` exactly when it is allowed from ``t``.  Only the
        tokens starting with a byte of ``D`` need a walk from ``s``, not the whole trie."""
        rs = self._rows[s]
        walked = [b for b in diff if rs[b] != DEAD]   # type: ignore[index]  # dead: cleared
        idx = self.index
        if idx.first_byte_counts[walked].sum() > _REF_MAX_SHARE * idx.trie.size:
            return None
        return t, bytes(diff)

    def _mask_from_reference(self, s: int, t: int, diff: bytes) -> np.ndarray:
        """The mask of ``s`` from the mask of its reference state ``t`` (see
        :meth:`_reference`): ``t``'s trie tokens outside the first bytes ``diff``, plus a
        walk from ``s`` of the tokens that start with a byte of ``diff``."""
        idx = self.index
        m = self.mask(t).copy()
        # the special tokens and EOS of t are not those of s: _finish_mask adds s's
        drop = list(self.special_next(t).keys())
        if self._nullable[t]:
            drop.extend(idx.vocab.eos_token_ids)
        self._set_bits(m, drop, on=False)
        worst = self._max_end.get(t)
        r = self._rows[s]
        found = []
        for b in diff:
            words, trie = idx.first_byte(b)
            np.bitwise_and(m, ~words, out=m)
            if r[b] != DEAD:  # type: ignore[index]
                ids, ends = trie.walk_table(s, self._table, self._refill)
                if len(ids):
                    found.append(ids)
                    k = self._known_max(ends)
                    worst = None if worst is None or k is None else max(worst, k)
        if found:
            m |= idx.ids_to_words(np.concatenate(found))
        return self._finish_mask(s, m, worst)

    def _set_bits(self, m: np.ndarray, ids, on: bool = True) -> None:
        """Set (or with ``on=False`` clear) the bits of token ``ids`` in the words ``m``."""
        for tid in ids:
            tid = int(tid)
            if 0 <= tid < self.index.vocab_size:
                bit = np.int32(np.uint32(1 << (tid & 31)).view(np.int32))
                if on:
                    m[tid >> 5] |= bit
                else:
                    m[tid >> 5] &= ~bit

    def _minlen_arr(self, states: np.ndarray) -> np.ndarray:
        """The shortest completions of ``states``, computing those not known yet."""
        a = self._minlen_np[states]
        if len(a) and _max(a) == _UNKNOWN:
            for x in np.unique(states[a == _UNKNOWN]).tolist():
                self.minlen(x)
            a = self._minlen_np[states]
        return a

    def _known_max(self, states: np.ndarray) -> int | None:
        """The longest shortest completion of ``states`` (0 for none), or None when one of
        them is not known yet."""
        if not len(states):
            return 0
        m = int(_max(self._minlen_np[states]))
        return None if m == _UNKNOWN else m

    def budget_mask(self, s: int, limit: int) -> np.ndarray:
        """The mask of ``s`` restricted to tokens after which the grammar can still be
        completed in at most ``limit`` bytes (the shortest completion, see ``minlen``).
        EOS stays allowed at accepting states.  Falls back to the tokens with the shortest
        completion when none fits, so a non-terminated state never allows nothing."""
        full = self.mask(s)
        if limit >= self._max_end.get(s, ir.INF):
            return full
        key = (s, limit)
        hit = self._budget_cache.get(key)
        if hit is not None:
            return hit
        with self._lock:
            idx = self.index
            w = self._ends.get(s)
            if w is None:
                exits, ids, ends = self._walk(s, exact_ends=True)
                w = (exits, ids, self._minlen_arr(ends))
                self._ends[s] = w
            exits, ids, endml = w
            sp = self.special_next(s)
            sp_ml = {t: self.minlen(n) for t, n in sp.items()}
            if s not in self._max_end:   # the mask left it unknown
                worst = self._widen(s, int(endml.max()) if len(endml) else 0,
                                    self._closure_of(s) if exits is not None else None,
                                    self.minlen)
                self._max_end[s] = worst
                if limit >= worst:
                    return full
            cands = [int(endml.min())] if len(endml) else []
            if exits is not None:
                cands.append(self.minlen(s))
            cands.extend(sp_ml.values())
            fits = self._nullable[s] or (cands and min(cands) <= limit)
            lim = limit if fits or not cands else min(cands)
            m = idx.ids_to_words(ids[endml <= lim])
            if exits is not None:
                base = self.minlen(s)
                for k, words in enumerate(idx.slice_by_pending(exits)):
                    if base + k <= lim:
                        m |= words
            self._set_bits(m, [t for t, v in sp_ml.items() if v <= lim])
            if self._nullable[s]:
                self._set_bits(m, idx.vocab.eos_token_ids)
            m.setflags(write=False)
            if len(self._budget_cache) > 4096:
                self._budget_cache.clear()
            self._budget_cache[key] = m
            return m

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the automaton's caches."""
        return int(self._table.nbytes + sum(m.nbytes for m in self._masks.values()))
