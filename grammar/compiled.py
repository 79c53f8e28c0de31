"""CompiledGrammar: the immutable, shareable result of compilation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import ir
from .automaton import Automaton
from .errors import GrammarTooLargeError
from .index import TokenIndex

if TYPE_CHECKING:  # pragma: no cover
    from .vocab import Vocabulary

__all__ = ["CompiledGrammar"]


class CompiledGrammar:
    """A grammar compiled for one vocabulary.  Do not construct it directly: use
    :class:`grammar.GrammarCompiler`.

    It is immutable as far as callers can observe and may be shared by any number of
    :class:`grammar.GrammarMatcher` s, across threads.  Internally it explores its automaton
    lazily: a state's transitions and token mask are computed the first time a matcher
    reaches it and cached for every later matcher (see :mod:`grammar.automaton`).

    Attributes
    ----------
    vocab:
        The vocabulary it was compiled for.
    key:
        The cache key (a canonical description of the grammar and its options).
    ignored:
        ``(json_pointer, keyword)`` pairs that ``strict=False`` compilation ignored.
    """

    __slots__ = ("vocab", "key", "ignored", "_auto", "_term")

    def __init__(self, term: ir.Term, index: TokenIndex, *, key: object,
                 ignored: tuple[tuple[str, str], ...] = ()) -> None:
        self.vocab: "Vocabulary" = index.vocab
        self.key = key
        self.ignored = tuple(ignored)
        self._term = term
        # the root's liveness is a recursive pass over the whole term
        with ir.deep_recursion(lambda: GrammarTooLargeError(
                "grammar nested too deeply to compile")):
            self._auto = Automaton(term, index)

    @property
    def term(self) -> ir.Term:
        """The root IR term (its language is the set of accepted outputs)."""
        return self._term

    @property
    def automaton(self) -> Automaton:
        return self._auto

    @property
    def is_empty(self) -> bool:
        """True when the grammar accepts nothing at all."""
        return self._auto.start == 0

    @property
    def memory_size_bytes(self) -> int:
        """Approximate bytes held by this grammar's lazily filled caches."""
        return self._auto.nbytes

    @property
    def states_explored(self) -> int:
        return self._auto.num_states

    def __repr__(self) -> str:
        return f"CompiledGrammar(states_explored={self.states_explored}, key={str(self.key)[:60]!r})"
