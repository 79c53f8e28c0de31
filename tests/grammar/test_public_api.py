"""Pin the public surface of the grammar package."""

import grammar


def test_all_names():
    assert set(grammar.__all__) == {
        "Vocabulary", "Grammar", "GrammarCompiler", "CompiledGrammar", "GrammarMatcher",
        "allocate_token_bitmask", "apply_token_bitmask_inplace", "reset_token_bitmask",
        "bitmask_width", "GrammarError", "SchemaError", "UnsupportedSchemaError", "RegexError",
        "VocabularyError", "GrammarTooLargeError", "canonical_key",
    }
    for name in grammar.__all__:
        assert getattr(grammar, name) is not None


def test_grammar_never_imports_functionary():
    import pathlib
    root = pathlib.Path(grammar.__file__).parent
    for py in root.rglob("*.py"):
        text = py.read_text()
        assert "import functionary" not in text and "from functionary" not in text, py


def test_error_hierarchy():
    from grammar.errors import GrammarError, RegexError, SchemaError, UnsupportedSchemaError
    assert issubclass(UnsupportedSchemaError, SchemaError)
    assert issubclass(SchemaError, GrammarError) and issubclass(RegexError, GrammarError)
