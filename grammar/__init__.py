"""grammar: a model-agnostic constrained-decoding engine.

Pipeline, one module each::

    Vocabulary  ->  GrammarCompiler  ->  CompiledGrammar  ->  GrammarMatcher
    (vocab.py)      (compiler.py)        (compiled.py)        (matcher.py)

Grammars (JSON schemas, regexes, and compositions of literal text, special tokens, free
text and schemas built with :class:`Grammar`) are lowered to hash-consed regular terms
(:mod:`grammar.ir`) whose derivatives define a token-level automaton explored lazily
(:mod:`grammar.automaton`) over a per-vocabulary token trie (:mod:`grammar.index`).
Masks use the bitmask contract of :mod:`grammar.bitmask` (int32, ``(batch,
ceil(vocab/32))``, bit set = allowed), the same format as xgrammar's and llguidance's.
"""

from . import native as _native_loader

_native_loader.select_modules()   # compiled or source modules: before anything imports them

from .bitmask import (  # noqa: E402
    allocate_token_bitmask,
    apply_token_bitmask_inplace,
    bitmask_width,
    reset_token_bitmask,
)
from .compiled import CompiledGrammar
from .compiler import GrammarCompiler
from .errors import (
    GrammarError,
    GrammarTooLargeError,
    RegexError,
    SchemaError,
    UnsupportedSchemaError,
    VocabularyError,
)
from .grammar import Grammar, canonical_key
from .matcher import GrammarMatcher
from .vocab import Vocabulary

__all__ = [
    "Vocabulary",
    "Grammar",
    "canonical_key",
    "GrammarCompiler",
    "CompiledGrammar",
    "GrammarMatcher",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "reset_token_bitmask",
    "bitmask_width",
    "GrammarError",
    "SchemaError",
    "UnsupportedSchemaError",
    "RegexError",
    "VocabularyError",
    "GrammarTooLargeError",
]

__version__ = "0.1.0"
