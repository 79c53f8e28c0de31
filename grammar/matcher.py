"""GrammarMatcher: the small per-request state of constrained decoding."""

from __future__ import annotations

from typing import Any

import numpy as np

from .automaton import DEAD
from .compiled import CompiledGrammar

__all__ = ["GrammarMatcher"]


class GrammarMatcher:
    """Tracks one generated sequence against a :class:`CompiledGrammar`.

    The state is one automaton state id plus a history for rollback, so creating, forking
    and rolling back a matcher cost microseconds.  Methods never raise for tokens the
    grammar rejects: :meth:`accept_token` returns ``False`` and leaves the state unchanged.

    Parameters
    ----------
    compiled:
        The grammar to follow.
    max_rollback:
        How many accepted tokens :meth:`rollback` can undo (``None``: unlimited).
    token_budget:
        Budget-aware termination (off by default).  The number of tokens this sequence may
        still generate, end-of-sequence token included (e.g. ``max_tokens``).  The mask then
        only allows tokens after which the grammar can still be completed within the
        budget (from each state's shortest completion in bytes; every vocabulary has
        single-byte tokens, so that many tokens always suffice, plus one for EOS), so a
        token limit shortens the output instead of cutting it mid-structure.  When the
        budget is already smaller than the shortest completion, the mask keeps the tokens
        with the shortest completion (best effort).

    Examples
    --------
    >>> m = GrammarMatcher(compiler.compile_json_schema({"type": "integer"}))  # doctest: +SKIP
    >>> bitmask = allocate_token_bitmask(1, vocab.vocab_size)                  # doctest: +SKIP
    >>> m.fill_next_token_bitmask(bitmask)                                     # doctest: +SKIP
    >>> m.accept_token(token_id)                                               # doctest: +SKIP
    """

    __slots__ = ("compiled", "_auto", "_state", "_history", "_terminated", "_max_rollback",
                 "_eos", "_specials", "_budget", "_count")

    def __init__(self, compiled: CompiledGrammar, *, max_rollback: int | None = None,
                 token_budget: int | None = None) -> None:
        if not isinstance(compiled, CompiledGrammar):
            raise TypeError("GrammarMatcher needs a CompiledGrammar (use GrammarCompiler to compile)")
        self.compiled = compiled
        self._auto = compiled.automaton
        self._state = self._auto.start
        self._history: list[tuple[int, bool]] = []
        self._terminated = False
        self._max_rollback = max_rollback
        self._eos = frozenset(int(e) for e in compiled.vocab.eos_token_ids)
        self._specials = frozenset(self._auto.specials)
        if token_budget is not None and token_budget < 1:
            raise ValueError("token_budget must be at least 1")
        self._budget = token_budget
        self._count = 0

    # ------------------------------------------------------------------ state
    @property
    def num_accepted(self) -> int:
        """Tokens accepted so far (rollback subtracts)."""
        return self._count

    @property
    def token_budget(self) -> int | None:
        return self._budget

    def set_token_budget(self, token_budget: int | None) -> None:
        """Change the total token budget (counted from the start of this matcher)."""
        if token_budget is not None and token_budget < 1:
            raise ValueError("token_budget must be at least 1")
        self._budget = token_budget
    @property
    def state(self) -> int:
        """The current automaton state id (0 means dead: only an empty grammar)."""
        return self._state

    def is_terminated(self) -> bool:
        """True once an end-of-sequence token was accepted, or when the grammar is complete
        and nothing can follow (e.g. after the turn's closing special token)."""
        if self._terminated:
            return True
        s = self._state
        if s == DEAD or not self._auto.nullable(s):
            return False
        return not any(self._auto.row(s)) and not self._auto.special_next(s)

    def can_terminate(self) -> bool:
        """True when the output so far is a complete sentence of the grammar (EOS allowed)."""
        return self._terminated or (self._state != DEAD and self._auto.nullable(self._state))

    def accept_token(self, token_id: int) -> bool:
        """Advance by one token.  Returns ``False`` (state unchanged) if it is not allowed."""
        if self._terminated:
            return False
        tid = int(token_id)
        s = self._state
        auto = self._auto
        if tid in self._specials:
            nxt = auto.special_next(s).get(tid, DEAD)
            if nxt != DEAD:
                self._push(nxt, False)
                return True
        if tid in self._eos:
            if auto.nullable(s):
                self._push(s, True)
                return True
            return False
        idx = auto.index
        if tid < 0 or tid >= idx.vocab_size:
            return False
        data = idx.vocab.token_bytes(tid) if tid not in idx.vocab.special_token_ids else None
        if not data:
            return False
        nxt = auto.advance_bytes(s, data)
        if nxt == DEAD:
            return False
        self._push(nxt, False)
        return True

    def accept_bytes(self, data: bytes | str) -> bool:
        """Advance by raw text (bytes not tied to tokens, e.g. a forced continuation).
        All or nothing: returns ``False`` and leaves the state unchanged on rejection.
        Counts as one step for :meth:`rollback`."""
        if self._terminated:
            return False
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        nxt = self._auto.advance_bytes(self._state, raw)
        if nxt == DEAD:
            return False
        self._push(nxt, False)
        return True

    def _push(self, nxt: int, terminated: bool) -> None:
        self._history.append((self._state, self._terminated))
        if self._max_rollback is not None and len(self._history) > self._max_rollback:
            del self._history[0]
        self._state = nxt
        self._terminated = terminated
        self._count += 1

    def rollback(self, num_tokens: int = 1) -> None:
        """Undo the last ``num_tokens`` accepted tokens."""
        if num_tokens < 0 or num_tokens > len(self._history):
            raise ValueError(f"cannot roll back {num_tokens} tokens "
                             f"({len(self._history)} available)")
        for _ in range(num_tokens):
            self._state, self._terminated = self._history.pop()
            self._count -= 1

    def reset(self) -> None:
        """Back to the start of the grammar."""
        self._state = self._auto.start
        self._history.clear()
        self._terminated = False
        self._count = 0

    def fork(self) -> "GrammarMatcher":
        """An independent copy with the same state and history."""
        m = GrammarMatcher.__new__(GrammarMatcher)
        m.compiled = self.compiled
        m._auto = self._auto
        m._state = self._state
        m._history = list(self._history)
        m._terminated = self._terminated
        m._max_rollback = self._max_rollback
        m._eos = self._eos
        m._specials = self._specials
        m._budget = self._budget
        m._count = self._count
        return m

    # ------------------------------------------------------------------ masks
    def fill_next_token_bitmask(self, bitmask: Any, index: int = 0) -> None:
        """Write the allowed next tokens into row ``index`` of ``bitmask``.

        ``bitmask`` is an int32 array of shape ``(batch, ceil(vocab_size/32))`` (numpy, or a
        torch CPU tensor); see :mod:`grammar.bitmask`.  Never changes the matcher's state.
        Once terminated, only end-of-sequence tokens are allowed.
        """
        row = self.next_token_words()
        arr = bitmask if isinstance(bitmask, np.ndarray) else _as_numpy(bitmask)
        if arr.ndim == 1:
            arr[: len(row)] = row
        else:
            arr[index, : len(row)] = row

    def next_token_words(self) -> np.ndarray:
        """The allowed next tokens as read-only int32 bitmask words."""
        if self._terminated:
            return self._eos_words()
        if self._budget is not None:
            # after this token, remaining-1 tokens must finish the turn (one kept for EOS)
            return self._auto.budget_mask(self._state, self._budget - self._count - 2)
        return self._auto.mask(self._state)

    def _eos_words(self) -> np.ndarray:
        idx = self._auto.index
        return idx.ids_to_words(np.array([e for e in self._eos if e < idx.vocab_size], dtype=np.int64))

    def allowed_token_ids(self) -> np.ndarray:
        """The allowed next token ids (a convenience for tests and debugging)."""
        words = self.next_token_words()
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")
        return np.flatnonzero(bits[: self._auto.index.vocab_size])

    def is_token_allowed(self, token_id: int) -> bool:
        w = self.next_token_words()
        return bool((int(w[token_id >> 5]) >> (token_id & 31)) & 1)

    def forced_tokens(self, max_tokens: int = 64) -> list[int]:
        """Tokens that are the only possible continuation, in order (jump-forward).

        Stops at the first step where more than one token (or EOS) is allowed.  The
        matcher's state is not changed.
        """
        out: list[int] = []
        probe = self.fork()
        for _ in range(max_tokens):
            if probe._terminated or probe.can_terminate():
                break
            words = probe.next_token_words()
            nz = np.flatnonzero(words)
            if len(nz) != 1:
                break
            w = int(words[nz[0]]) & 0xFFFFFFFF
            if w & (w - 1):
                break
            tid = int(nz[0]) * 32 + (w.bit_length() - 1)
            if not probe.accept_token(tid):  # pragma: no cover
                break
            out.append(tid)
        return out

    def forced_bytes(self, max_bytes: int = 256) -> bytes:
        """The longest byte string every valid continuation starts with (tokenizer-free
        jump-forward; re-tokenise it to skip decode steps)."""
        auto = self._auto
        s = self._state
        out = bytearray()
        if self._terminated:
            return b""
        while len(out) < max_bytes and not auto.nullable(s) and not auto.special_next(s):
            r = auto.row(s)
            nxt = [(b, t) for b, t in enumerate(r) if t]
            if len(nxt) != 1:
                break
            out.append(nxt[0][0])
            s = nxt[0][1]
        return bytes(out)

    def __repr__(self) -> str:
        return f"GrammarMatcher(state={self._state}, terminated={self._terminated})"


def _as_numpy(t: Any) -> np.ndarray:
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover
        raise TypeError(f"unsupported bitmask type {type(t)!r}") from None
    if t.device.type != "cpu":
        raise ValueError("fill_next_token_bitmask needs a CPU bitmask; copy it to the GPU afterwards")
    if str(t.dtype) != "torch.int32":
        raise TypeError(f"bitmask must be int32, got {t.dtype}")
    return t.numpy()
