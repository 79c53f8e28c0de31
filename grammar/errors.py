"""Typed errors of the grammar engine.

Every error raised by :mod:`grammar` derives from :class:`GrammarError`.  Errors about user
input are raised when a grammar is compiled (admission time), never while decoding: inside
the decode loop the matcher reports a rejected token by returning ``False``.
"""

from __future__ import annotations

__all__ = [
    "GrammarError", "SchemaError", "UnsupportedSchemaError", "RegexError",
    "VocabularyError", "GrammarTooLargeError",
]


class GrammarError(Exception):
    """Base class of every error raised by the grammar engine."""


class SchemaError(GrammarError):
    """A JSON schema is malformed (wrong type for a keyword, dangling ``$ref`` ...).

    Attributes
    ----------
    pointer:
        JSON pointer (RFC 6901) of the offending location inside the schema.
    keyword:
        The keyword at fault, or ``None``.
    """

    def __init__(self, message: str, *, pointer: str = "", keyword: str | None = None) -> None:
        self.pointer = pointer
        self.keyword = keyword
        where = f" at {pointer or '#'}"
        super().__init__(f"{message}{where}")


class UnsupportedSchemaError(SchemaError):
    """A schema uses a keyword or a value the engine cannot enforce exactly.

    Raised with ``strict=True``; with ``strict=False`` the keyword is ignored and reported
    in :attr:`grammar.CompiledGrammar.ignored`.  The engine never widens silently.
    """


class RegexError(GrammarError):
    """A regular expression is malformed or uses an unsupported construct
    (look-around, back-references ...)."""

    def __init__(self, message: str, *, pattern: str = "", position: int | None = None) -> None:
        self.pattern = pattern
        self.position = position
        loc = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{loc} in pattern {pattern!r}")


class VocabularyError(GrammarError):
    """A tokenizer or vocabulary cannot be used (missing file, unknown format, a grammar
    naming a special token the vocabulary lacks ...)."""


class GrammarTooLargeError(GrammarError):
    """A grammar exceeds a configured size limit (e.g. a huge bounded repetition)."""
