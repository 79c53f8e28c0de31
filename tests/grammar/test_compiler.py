"""GrammarCompiler: caching, options, typed errors at compile time."""

import pytest

from grammar import (Grammar, GrammarCompiler, GrammarMatcher, SchemaError, UnsupportedSchemaError,
                     Vocabulary, VocabularyError)


@pytest.fixture(scope="module")
def compiler():
    return GrammarCompiler(Vocabulary.byte_level(['{"', '":', ', "', '"}']))


def test_cache_returns_the_same_object(compiler):
    a = compiler.compile_json_schema({"type": "integer"})
    b = compiler.compile_json_schema({"type": "integer"})
    assert a is b
    c = compiler.compile_json_schema({"type": "integer"}, whitespace=0)
    assert c is not a
    compiler.clear_cache()
    assert compiler.compile_json_schema({"type": "integer"}) is not a


def test_schema_given_as_json_text(compiler):
    cg = compiler.compile_json_schema('{"type": "boolean"}')
    m = GrammarMatcher(cg)
    assert m.accept_bytes("true") and m.can_terminate()
    with pytest.raises(SchemaError):
        compiler.compile_json_schema("{not json")


def test_unsupported_keyword_names_keyword_and_pointer(compiler):
    schema = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(UnsupportedSchemaError) as e:
        compiler.compile_json_schema(schema)
    assert e.value.keyword == "uniqueItems"
    assert e.value.pointer == "/properties/tags/uniqueItems"
    cg = compiler.compile_json_schema(schema, strict=False)
    assert ("/properties/tags/uniqueItems", "uniqueItems") in cg.ignored


def test_malformed_schema_is_a_schema_error(compiler):
    with pytest.raises(SchemaError) as e:
        compiler.compile_json_schema({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})
    assert "/properties/a" in str(e.value) or e.value.pointer


def test_regex_and_composition(compiler):
    cg = compiler.compile_regex(r"[a-c]{2}\d")
    m = GrammarMatcher(cg)
    assert m.accept_bytes("ab7") and m.can_terminate()
    assert not GrammarMatcher(cg).accept_bytes("ad")
    g = Grammar.sequence(Grammar.literal("x="), Grammar.json_schema({"type": "integer"}))
    m2 = GrammarMatcher(compiler.compile(g))
    assert m2.accept_bytes("x=42") and m2.can_terminate()


def test_unknown_special_token_is_rejected_at_compile_time(compiler):
    with pytest.raises(VocabularyError):
        compiler.compile(Grammar.special(3))          # a byte token, not a special one
    with pytest.raises(VocabularyError):
        compiler.compile(Grammar.special(10_000_000))


def test_text_until_stop(compiler):
    cg = compiler.compile(Grammar.text(stop=">>>"))
    m = GrammarMatcher(cg)
    assert m.accept_bytes("a > b >> c") and not m.can_terminate()
    assert m.accept_bytes(">>>") and m.is_terminated()


def test_cache_key_keeps_property_order(compiler):
    """Property order is part of the grammar: schemas differing only in key order must not
    share a cache entry."""
    ab = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
    ba = {"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}}}
    m1 = GrammarMatcher(compiler.compile_json_schema(ab, whitespace=0))
    m2 = GrammarMatcher(compiler.compile_json_schema(ba, whitespace=0))
    assert m1.accept_bytes('{"a":1,"b":2}') and m1.can_terminate()
    assert m2.accept_bytes('{"b":1,"a":2}') and m2.can_terminate()
    # a JSON-text schema is keyed by its text and parsed only on a miss
    text = '{"type": "object", "properties": {"b": {"type": "integer"}}}'
    assert compiler.compile_json_schema(text) is compiler.compile_json_schema(text)


def test_canonical_key_tells_values_apart():
    """Equal keys only for equal values: order, 1 / 1.0 / True and nesting all count."""
    from grammar import canonical_key
    assert canonical_key({"a": 1, "b": 2}) != canonical_key({"b": 2, "a": 1})
    keys = {canonical_key({"const": v}) for v in (1, 1.0, True, "1", [1], None)}
    assert len(keys) == 6
    assert canonical_key({"x": [1, {"y": 2}]}) == canonical_key({"x": [1, {"y": 2}]})
    assert canonical_key('{"type": "string"}') == '{"type": "string"}'   # JSON text: itself

    class Odd:   # not marshal-able: falls back to JSON text with repr
        def __repr__(self):
            return "Odd()"
    assert "Odd()" in canonical_key({"x": Odd()})


def test_mutated_schema_is_recompiled(compiler):
    """A cache hit needs an equal schema: mutating a dict in place gives a new grammar."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    first = compiler.compile_json_schema(schema, whitespace=0)
    schema["properties"]["a"]["type"] = "string"
    second = compiler.compile_json_schema(schema, whitespace=0)
    assert first is not second
    assert GrammarMatcher(second).accept_bytes('{"a":"x"}')
    assert not GrammarMatcher(second).accept_bytes('{"a":1')


def test_lowering_is_cached_and_compile_lazy_builds_once(compiler):
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    g1 = compiler.json_schema_grammar(schema, float_safe=True)
    assert compiler.json_schema_grammar(dict(schema), float_safe=True) is g1
    assert compiler.json_schema_grammar(schema, float_safe=False) is not g1
    calls = []

    def build():
        calls.append(1)
        return Grammar.sequence(Grammar.literal("q="), g1)
    c1 = compiler.compile_lazy(("mine", 1), build)
    assert compiler.compile_lazy(("mine", 1), build) is c1
    assert calls == [1]
    assert GrammarMatcher(c1).accept_bytes('q={"q": "x"}')


def test_repeat_compile_skips_the_canonical_key(compiler, monkeypatch):
    """A dict compiled before is found by its fast alias key, without re-serialising it
    canonically; mutating it still misses."""
    import grammar.grammar as gg
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}
    first = compiler.compile_json_schema(schema)
    lowered = compiler.json_schema_grammar(schema)

    def refuse(_obj):
        raise AssertionError("canonical key computed on a repeat compile")
    monkeypatch.setattr(gg, "canonical_key", refuse)
    assert compiler.compile_json_schema(schema) is first
    assert compiler.json_schema_grammar(schema) is lowered
    monkeypatch.undo()
    schema["properties"]["n"]["minimum"] = 4
    assert compiler.compile_json_schema(schema) is not first


@pytest.mark.parametrize("fingerprint", [True, False], ids=["fingerprint", "marshal"])
def test_fast_key_aliases_fall_back_to_the_canonical_entry(compiler, monkeypatch, fingerprint):
    """Equal schemas share one grammar whatever their fast keys (with marshal, one that
    shares a sub-object keys differently); values that differ only in 1 / 1.0 / True never
    share one."""
    from grammar import grammar as ggrammar
    from grammar.grammar import fast_key
    if not fingerprint:
        monkeypatch.setattr(ggrammar, "_native", None)
    elif ggrammar._native is None:
        pytest.skip("the C extension is not in use (not built, or GRAMMAR_NO_NATIVE set)")
    shared = {"type": "integer"}
    a = {"type": "object", "properties": {"x": shared, "y": shared}}
    b = {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}
    assert a == b and (fast_key(a) == fast_key(b)) == fingerprint
    assert compiler.compile_json_schema(a) is compiler.compile_json_schema(b)
    assert fast_key('{"type": "string"}') is None    # JSON text is its own key
    grammars = {id(compiler.compile_json_schema({"const": v})) for v in (1, 1.0, True)}
    assert len(grammars) == 3


def test_aliases_keep_no_grammar_past_the_cache_bound():
    """An alias holds only the canonical key: a grammar evicted from the LRU is rebuilt,
    not kept alive through its alias."""
    small = GrammarCompiler(Vocabulary.byte_level(['{"']), cache_size=2)
    schemas = [{"type": "integer", "minimum": i} for i in range(3)]
    first = small.compile_json_schema(schemas[0])
    assert small.compile_json_schema(schemas[0]) is first          # alias hit
    for s in schemas[1:]:
        small.compile_json_schema(s)
    assert small.cache_info["entries"] == 2
    again = small.compile_json_schema(schemas[0])
    assert again is not first
    assert GrammarMatcher(again).accept_bytes("7") and not GrammarMatcher(again).accept_bytes("-1")
