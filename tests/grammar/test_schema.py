"""Unit tests of grammar.schema / grammar.jsonvalue: one or more per keyword, plus a
hypothesis soundness check against Python ``jsonschema``."""

from __future__ import annotations

import json
from decimal import Decimal

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from grammar import jsonvalue as jv
from grammar.errors import SchemaError, UnsupportedSchemaError
from grammar.ir import matches
from grammar.schema import (
    JsonOptions, SchemaResult, canonical_instance, json_schema_term, json_value_term,
)


def acc(schema, text: str | bytes, options: JsonOptions = JsonOptions(), **kw) -> bool:
    t = json_schema_term(schema, options, **kw).term
    return matches(t, text.encode() if isinstance(text, str) else text)


def check(schema, valid=(), invalid=(), options: JsonOptions = JsonOptions(), **kw):
    """Every spelling of a valid value accepted; every invalid value rejected."""
    t = json_schema_term(schema, options, **kw).term
    for v in valid:
        c = canonical_instance(schema, v, **kw)
        for s in {json.dumps(c), json.dumps(c, ensure_ascii=False),
                  json.dumps(c, separators=(",", ":"))}:
            assert matches(t, s.encode()), (schema, s)
    for v in invalid:
        c = canonical_instance(schema, v, **kw)
        for s in {json.dumps(c), json.dumps(c, ensure_ascii=False)}:
            assert not matches(t, s.encode()), (schema, s)


# ------------------------------------------------------------------ lexical layer

def test_free_form_values_any_depth():
    t = json_value_term(JsonOptions())
    deep = "[" * 50 + "{}" + "]" * 50
    for s in ['null', 'true', '-5e-4', '"a\\u00e9\\ud83d\\ude00"', '{"a": [1, {"b": {}}]}',
              deep, '{ "a" : 1 ,"b":2 }']:
        assert matches(t, s.encode()), s
    for s in ['nul', '[1,]', '{"a"}', '"\\ud800"', '"\x01"', "{'a': 1}", '01', '1.', '+1']:
        assert not matches(t, s.encode()), s
    assert not matches(t, b'\xff')


def test_whitespace_bound():
    o = JsonOptions(whitespace=2)
    assert acc({"type": "array"}, "[ 1,  2 ]", o)
    assert acc({"type": "object"}, json.dumps({"a": [1, {"b": 2}]}, indent=2))
    assert not acc({"type": "array"}, "[   1]", o)
    assert not acc({"type": "array"}, " [1]", o)          # no leading whitespace
    assert acc({"type": "object"}, "{}", JsonOptions(whitespace=0))
    assert not acc({"type": "object"}, "{ }", JsonOptions(whitespace=0))


def test_string_spellings_and_lengths():
    s = {"type": "string", "minLength": 2, "maxLength": 3}
    assert acc(s, '"ab"') and acc(s, '"a\\u0062"') and acc(s, '"\\ud83d\\ude00\\n"')
    assert acc(s, json.dumps("é😀", ensure_ascii=False))
    assert not acc(s, '"a"') and not acc(s, '"abcd"') and not acc(s, '"\\ud83d\\ude00"')
    assert not acc({"type": "string"}, '"\\ud83d"')       # lone surrogate
    assert not acc({"type": "string"}, b'"\xc3"')          # ill-formed UTF-8
    assert not acc({"type": "string"}, '"\t"')             # raw control char
    assert acc({"const": "a/b"}, '"a\\/b"')


@pytest.mark.parametrize("op", [">=", ">", "<=", "<"])
@pytest.mark.parametrize("c", ["0", "1", "-1.5", "12.25", "0.001", "1e20", "-7e-5"])
def test_number_comparisons_exact(op, c):
    c = Decimal(c)
    t = jv.number_cmp_term(op, c)
    import operator
    f = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}[op]
    for s in ["0", "-0", "1", "1.0", "-1.5", "-1.50", "12.25", "12.250001", "12.2499",
              "1e+20", "1e20", "9.99e19", "1.00001e20", "-7e-05", "-7.1e-5", "0.001",
              "0.0009999", "100000000000000000000", "5e-324", "-2E+3"]:
        assert matches(t, s.encode()) == f(Decimal(s), c), (op, c, s)
    assert not matches(t, b"123.5e-2")          # not a normalised spelling


def test_number_spellings_restricted():
    t = jv.number_term()
    for s in ["0", "-0.0", "1.5e+300", "1E5", "1e-07", "123456789012345678901234567890"]:
        assert matches(t, s.encode()), s
    for s in ["15e19", "0.5e1", "1.50e20", "00", "1.", ".5", "1e", "-", "1.23456789012345678e5"]:
        assert not matches(t, s.encode()), s


def test_integer_drafts():
    assert acc({"type": "integer"}, "1.0") and acc({"type": "integer"}, "1e+16")
    assert acc({"type": "integer"}, "1.5e1") and not acc({"type": "integer"}, "1.5")
    assert not acc({"type": "integer"}, "1.5e0")
    assert not acc({"type": "integer"}, "1.0", draft="draft4")
    assert acc({"type": "integer"}, "-12", draft="draft4")
    assert acc({"type": "integer"}, "98249283749234923498293171823948729348710298301928331")


def test_multiple_of():
    check({"multipleOf": 0.01}, valid=[0.07, 19.99, 1, 0], invalid=[0.075, 1.001])
    check({"multipleOf": 3}, valid=[0, 3, -9, 3.0, 1.2e1], invalid=[1, 3.5, 4e-5])
    check({"type": "integer", "multipleOf": 0.5}, valid=[1e308, 4], invalid=[0.5])
    check({"multipleOf": 2.5}, valid=[5, 7.5, 1e20], invalid=[2.6, 1])
    with pytest.raises(UnsupportedSchemaError) as e:
        json_schema_term({"multipleOf": 0.123456789})
    assert e.value.keyword == "multipleOf" and e.value.pointer == "/multipleOf"


def test_numeric_bounds_and_draft4_exclusive():
    check({"minimum": 1.1, "exclusiveMaximum": 3}, valid=[1.1, 2.99], invalid=[1.09, 3, -5])
    check({"maximum": 3, "exclusiveMaximum": True}, draft="draft4", valid=[2.9],
          invalid=[3, 3.5])
    check({"minimum": 3, "exclusiveMinimum": True}, draft="draft4", valid=[3.01],
          invalid=[3])
    check({"type": "integer", "minimum": -2, "maximum": 2}, valid=[-2, 0, 2.0],
          invalid=[-3, 2.5, 3])


# ---------------------------------------------------------------------- keywords

def test_type_lists_and_nullable():
    check({"type": ["string", "null"]}, valid=["a", None], invalid=[1, [], {}])
    check({"type": "string", "nullable": True}, valid=["a", None], invalid=[1])
    assert not acc({"type": "string", "nullable": True}, "null", JsonOptions(nullable=False))
    with pytest.raises(SchemaError):
        json_schema_term({"type": "strin"})


def test_enum_const_json_equality():
    check({"enum": [1, "a", None, [1, {"x": 2}], {"b": 1, "a": 2}]},
          valid=[1, 1.0, "a", None, [1.0, {"x": 2}], {"a": 2, "b": 1}],
          invalid=[2, "b", True, [1], {"a": 2}, {"a": 2, "b": 1, "c": 0}])
    check({"const": False}, valid=[False], invalid=[0, None])
    check({"const": 0}, valid=[0, 0.0, -0.0], invalid=[False])
    assert acc({"const": "é"}, '"\\u00e9"') and acc({"const": "é"}, '"\\u00E9"')


def test_properties_required_additional():
    s = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
         "required": ["b"], "additionalProperties": {"type": "boolean"}}
    check(s, valid=[{"b": "x"}, {"a": 1, "b": "x", "z": True}, {"b": "", "y": False}],
          invalid=[{}, {"a": 1}, {"b": 1}, {"b": "x", "z": 1}, {"b": "x", "a": "no"}])
    # the declared order is enforced, a declared name cannot come back as an extra key
    assert not acc(s, '{"b": "x", "a": 1}')
    assert not acc(s, '{"b": "x", "\\u0061": true}')
    assert canonical_instance(s, {"z": True, "b": "x", "a": 1}) == {"a": 1, "b": "x", "z": True}


def test_additional_properties_forbid_option():
    s = {"type": "object", "properties": {"a": {}}}
    assert acc(s, '{"a": 1, "b": 2}')
    assert not acc(s, '{"a": 1, "b": 2}', JsonOptions(additional_properties="forbid"))
    assert acc(s, '{"a": 1}', JsonOptions(additional_properties="forbid"))
    assert acc({"type": "object"}, '{"x": 1}', JsonOptions(additional_properties="forbid"))


def test_pattern_properties_and_property_names():
    s = {"patternProperties": {"^a": {"type": "integer"}, "b$": {"minimum": 10}},
         "additionalProperties": False}
    check(s, valid=[{"a": 1}, {"ab": 12}, {"xb": 100}, {}],
          invalid=[{"ab": 5}, {"a": "x"}, {"c": 1}])
    check({"propertyNames": {"maxLength": 2}}, valid=[{"ab": 1}, {}, 3],
          invalid=[{"abc": 1}])
    check({"properties": {"long": {}}, "propertyNames": {"maxLength": 2}},
          valid=[{"ab": 1}], invalid=[{"long": 1}])


def test_min_max_properties_and_dependencies():
    s = {"properties": {"a": {}, "b": {}}, "minProperties": 2, "maxProperties": 3}
    check(s, valid=[{"a": 1, "b": 2}, {"a": 1, "x": 2}, {"x": 1, "y": 2, "z": 3}],
          invalid=[{}, {"a": 1}, {"a": 1, "b": 2, "x": 3, "y": 4}])
    check({"dependentRequired": {"a": ["b"]}}, valid=[{}, {"b": 1}, {"a": 1, "b": 2}],
          invalid=[{"a": 1}])
    check({"dependencies": {"b": ["a"]}}, draft="draft7",
          valid=[{"a": 1, "b": 1}, {"a": 1}], invalid=[{"b": 1}])
    check({"dependentSchemas": {"a": {"required": ["c"]}}},
          valid=[{"c": 1}, {"a": 1, "c": 2}], invalid=[{"a": 1}])


def test_arrays():
    check({"prefixItems": [{"type": "string"}], "items": {"type": "integer"},
           "minItems": 2, "maxItems": 3},
          valid=[["a", 1], ["a", 1, 2]], invalid=[["a"], [1, 1], ["a", "b"], ["a", 1, 2, 3]])
    check({"items": [{"type": "string"}], "additionalItems": False}, draft="draft7",
          valid=[[], ["a"]], invalid=[["a", 1]])
    check({"items": {"type": "integer"}}, draft="draft7", valid=[[1, 2]], invalid=[[1, "a"]])


def test_contains():
    s = {"contains": {"type": "integer"}, "minContains": 2, "maxContains": 3}
    check(s, valid=[[1, 2], ["a", 1, "b", 2, 3]], invalid=[[], [1], [1, 2, 3, 4], ["a"]])
    check({"contains": {"const": 1}}, draft="draft7", valid=[[1], [2, 1]], invalid=[[2], []])


def test_unique_items_is_unsupported_unless_trivial():
    with pytest.raises(UnsupportedSchemaError) as e:
        json_schema_term({"uniqueItems": True})
    assert e.value.keyword == "uniqueItems"
    r = json_schema_term({"uniqueItems": True}, JsonOptions(strict=False))
    assert r.ignored == (("/uniqueItems", "uniqueItems"),)
    check({"uniqueItems": True, "maxItems": 1}, valid=[[], [1]], invalid=[[1, 1]])
    check({"items": {"enum": [1, "a", None]}, "uniqueItems": True},
          valid=[[], [1, None, "a"], ["a"]], invalid=[[1, 1.0], ["a", 2], [None, None]])


def test_combinators():
    check({"anyOf": [{"type": "string"}, {"minimum": 3}]}, valid=["a", 3], invalid=[1])
    check({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, valid=[1, 2.5, "a"],
          invalid=[3, 2])
    check({"not": {"type": "integer"}}, valid=["a", 1.5, None], invalid=[1, 1.0])
    check({"allOf": [{"properties": {"a": {"type": "integer"}}},
                     {"properties": {"b": {"type": "string"}}, "required": ["a"]}]},
          valid=[{"a": 1}, {"a": 1, "b": "x"}, {"b": "x", "a": 2}],
          invalid=[{"b": "x"}, {"a": "x"}, {"a": 1, "b": 2}])
    check({"if": {"properties": {"k": {"const": "n"}}, "required": ["k"]},
           "then": {"properties": {"v": {"type": "number"}}},
           "else": {"properties": {"v": {"type": "string"}}}},
          valid=[{"k": "n", "v": 1}, {"k": "s", "v": "x"}, {"v": "x"}],
          invalid=[{"k": "n", "v": "x"}, {"k": "s", "v": 1}])
    # not over an object schema is exact within the canonical order
    s = {"not": {"properties": {"a": {"type": "string"}}}}
    check(s, valid=[{"a": 1}, {"b": 1, "a": 2}], invalid=[3, {"a": "x"}, {"b": 1, "a": "x"}])


def test_applicators_alone_add_no_intersection():
    # a location constrained only by anyOf / oneOf lowers to its branches' union: the
    # universe of the location drops out instead of becoming an intersection term
    from grammar import ir
    obj = {"type": "object", "properties": {"name": {"const": "f"}, "x": {"type": "integer"}},
           "required": ["name"], "additionalProperties": False}
    other = {"type": "object", "properties": {"name": {"const": "g"}}, "required": ["name"],
             "additionalProperties": False}
    for kw in ("anyOf", "oneOf"):
        t = json_schema_term({kw: [obj, other]}).term
        assert t.kind != "and", kw
        check({kw: [obj, other]}, valid=[{"name": "f", "x": 2}, {"name": "g"}],
              invalid=[{"name": "h"}, {"name": "g", "x": 1}, 3, "f"])
    single = json_schema_term({"anyOf": [obj]}).term
    assert single is json_schema_term(obj).term
    assert ir.minlen(single) == len('{"name":"f"}')
    # with a constraint of its own the location still intersects
    both = json_schema_term({"anyOf": [obj, other], "maxProperties": 1}).term
    assert matches(both, b'{"name": "g"}') and not matches(both, b'{"name": "f", "x": 1}')


def _as_any_of(schema: dict) -> dict:
    return {("anyOf" if k == "oneOf" else k): v for k, v in schema.items()}


def test_discriminated_one_of_needs_no_complement():
    """oneOf branches told apart by a tag (a property every object here has, with disjoint
    const/enum values in the branches) are a plain union: no complement of the other
    branches.  The tag may be required by the location (as in the Azure schemas) or by
    the branches, and may sit behind $ref/allOf.  Without such a tag oneOf stays exact."""
    from grammar import ir
    defs = {"blob": {"properties": {"type": {"enum": ["AzureBlob"]}, "path": {"type": "string"}}},
            "table": {"allOf": [{"properties": {"type": {"const": "AzureTable"}}}],
                      "properties": {"name": {"type": "string"}}},
            "flag": {"properties": {"type": {"enum": [True]}}}}
    tagged = {"type": "object", "required": ["type"], "definitions": defs,
              "oneOf": [{"$ref": "#/definitions/blob"}, {"$ref": "#/definitions/table"},
                        {"$ref": "#/definitions/flag"}]}
    t = json_schema_term(tagged).term
    assert t is json_schema_term(_as_any_of(tagged)).term
    check(tagged, valid=[{"type": "AzureBlob", "path": "p"}, {"type": "AzureTable", "name": "n"},
                         {"type": True}],
          invalid=[{"type": "Other"}, {"path": "p"}, {"type": 1}, {"type": "AzureBlob", "path": 1}])
    # the tag required by the branches themselves (objects only: a string would satisfy
    # both branches, so oneOf stays exact for the other types)
    own = {"type": "object",
           "oneOf": [{"properties": {"k": {"const": 1}}, "required": ["k"]},
                     {"properties": {"k": {"const": 2}, "x": {"type": "integer"}}, "required": ["k"]}]}
    assert json_schema_term(own).term is json_schema_term(_as_any_of(own)).term
    check(own, valid=[{"k": 1}, {"k": 2, "x": 3}, {"k": 1.0}], invalid=[{"k": 3}, {}, "s"])
    check({"oneOf": own["oneOf"]}, valid=[{"k": 2}], invalid=["s", 1, {"k": 3}])
    # not a discriminator: a tag required nowhere, overlapping values (2 == 2.0, 1 == 1.0)
    for branches in ([{"properties": {"k": {"const": 1}}}, {"properties": {"k": {"const": 2}}}],
                     [{"properties": {"k": {"enum": [1, 2]}}, "required": ["k"]},
                      {"properties": {"k": {"enum": [2.0, 3]}}, "required": ["k"]}],
                     [{"properties": {"k": {"enum": [1]}}, "required": ["k"]},
                      {"properties": {"k": {"enum": [1.0]}}, "required": ["k"]}]):
        exact = {"type": "object", "oneOf": branches}
        assert json_schema_term(exact).term is not json_schema_term(_as_any_of(exact)).term
        v = jsonschema.Draft7Validator(exact)
        for inst in ({}, {"k": 1}, {"k": 2}, {"k": 3}, {"k": 2.0}, {"k": 1.0}):
            assert acc(exact, json.dumps(inst)) == v.is_valid(inst), (branches, inst)
    assert ir.minlen(t) == len('{"type":true}')


def test_branches_that_only_require_names_track_presence():
    """anyOf/oneOf whose branches only list required names ("a or b", "exactly one of a
    and b") are decided by which names the object writes: no intersection, and the same
    answers as jsonschema on every subset of the names, for objects and other types."""
    import itertools
    props = {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"},
             "d": {"type": "null"}}
    full = {"a": "x", "b": 1, "c": True, "d": None}
    cases = [
        {"oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"anyOf": [{"required": ["a"]}, {"required": ["b", "c"], "description": "both"}]},
        {"oneOf": [{"required": ["a", "b"]}, {"required": ["b", "c"]}, {"required": []}]},
        {"oneOf": [{"required": ["a"]}], "anyOf": [{"required": ["c"]}, {"required": ["d"]}]},
        {"required": ["d"], "oneOf": [{"required": ["a"]}, {"required": ["c"]}]},
    ]
    for extra in cases:
        for typed in (True, False):
            schema = dict({"properties": props}, **extra)
            if typed:
                schema["type"] = "object"
            assert not _has_intersection(json_schema_term(schema).term), schema
            v = jsonschema.Draft7Validator(schema)
            for n in range(5):
                for names in itertools.combinations("abcd", n):
                    inst = {k: full[k] for k in names}
                    assert acc(schema, json.dumps(inst)) == v.is_valid(inst), (schema, inst)
                    bad = dict(inst, a=5) if "a" in inst else dict(inst, b="s")
                    assert not acc(schema, json.dumps(canonical_instance(schema, bad)))
            for other in ("s", 1, None, [1]):
                assert acc(schema, json.dumps(other)) == v.is_valid(other), (schema, other)
    # a name only a branch requires is a declared name too (tracked); a branch with more
    # than `required` keeps the exact construction; the answers are the same
    for schema in ({"properties": props, "oneOf": [{"required": ["a"]}, {"required": ["zz"]}]},
                   {"properties": props, "oneOf": [{"required": ["a"]},
                                                   {"required": ["b"], "maxProperties": 1}]}):
        assert _has_intersection(json_schema_term(schema).term) == ("maxProperties" in str(schema))
        v = jsonschema.Draft7Validator(schema)
        for inst in ({"a": "x"}, {"zz": 1}, {"a": "x", "zz": 1}, {"b": 1}, {"a": "x", "b": 1}, {}):
            assert acc(schema, json.dumps(canonical_instance(schema, inst))) == v.is_valid(inst)
    # more names than the walk tracks: the exact construction
    many = {"properties": {k: {"type": "integer"} for k in "abcdefg"},
            "oneOf": [{"required": [k]} for k in "abcdefg"]}
    assert _has_intersection(json_schema_term(many).term)
    v = jsonschema.Draft7Validator(many)
    for inst in ({"a": 1}, {"g": 1}, {"a": 1, "g": 1}, {}):
        assert acc(many, json.dumps(inst)) == v.is_valid(inst)


@pytest.mark.parametrize("extra", [
    {},
    {"required": ["c"], "additionalProperties": False},
    {"minProperties": 2, "maxProperties": 3},
    {"additionalProperties": {"type": "integer"}, "dependentRequired": {"a": ["e"]}},
    {"patternProperties": {"^x": {"type": "string"}}, "maxProperties": 4},
    {"oneOf": [{"required": ["a"]}, {"required": ["f"]}], "minProperties": 1},
])
def test_key_prefix_outside_the_union_of_names(monkeypatch, extra):
    """Objects with many names keep `sep "` outside the union of their names; the
    language is the same as with the prefix inside every option, and jsonschema's."""
    import itertools
    from grammar import schema as schema_mod
    props = {k: {"type": "integer" if k in "ace" else "string"} for k in "abcdef"}
    schema = dict({"type": "object", "properties": props}, **extra)
    monkeypatch.setattr(schema_mod, "_HOIST_MIN_NAMES", 1)
    hoisted = json_schema_term(schema).term
    monkeypatch.setattr(schema_mod, "_HOIST_MIN_NAMES", 10**9)
    flat = json_schema_term(schema).term
    assert hoisted is not flat
    v = jsonschema.Draft202012Validator(schema)
    good = {k: (1 if k in "ace" else "s") for k in "abcdef"}
    extras = [{}, {"xy": "s"}, {"z": 2}, {"z": "s"}]
    for n in range(7):
        for names in itertools.combinations("abcdef", n):
            for more in extras:
                for bad in (None,) + names[:1]:
                    inst = {k: good[k] if k != bad else [] for k in names}
                    inst.update(more)
                    for text in (json.dumps(inst), json.dumps(inst, separators=(",", ":")),
                                 json.dumps(inst, indent=1)):
                        a = matches(hoisted, text.encode())
                        assert a == matches(flat, text.encode()), text
                        assert a == v.is_valid(inst), (schema, text)


def test_applicators_alone_build_no_universe(monkeypatch):
    # an anyOf at a location with no object keywords of its own replaces the location's
    # object language by its branches' union without building the location's universe
    # (the language of every object there, nested locations included); an intersection
    # that needs it (not, oneOf) still builds it
    from grammar import schema as schema_mod
    universes = []
    real_object = schema_mod._Compiler._object

    def counting_object(self, c, sg, forbid=frozenset(), extra=()):
        if not c:
            universes.append(sg)
        return real_object(self, c, sg, forbid, extra)

    monkeypatch.setattr(schema_mod._Compiler, "_object", counting_object)
    tool = {"type": "object", "properties": {"name": {"const": "f"}, "arguments": {
        "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
        "additionalProperties": False}}, "required": ["name", "arguments"],
        "additionalProperties": False}
    for schema in ({"anyOf": [tool]}, {"anyOf": [tool, {"type": "string"}]},
                   {"anyOf": [tool], "type": "object", "description": "annotation only"}):
        universes.clear()
        json_schema_term(schema)
        assert universes == [], schema
        check(schema, valid=[{"name": "f", "arguments": {"x": 1}}],
              invalid=[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"x": 1}}])
    json_schema_term({"anyOf": [tool], "not": {"required": ["z"]}})
    assert universes != []


def test_universe_of_a_location_that_contains_itself():
    # the oneOf below needs the universe of `value`, whose template branch nests the same
    # location again (metrics -> items -> value): the universe is built through a rule,
    # defined once the build ends (it was left undefined when first built lazily)
    schema = {"definitions": {
        "template": {"type": "object", "additionalProperties": False,
                     "properties": {"metrics": {"items": {"$ref": "#/definitions/metric"}}}},
        "dataset": {"type": "object", "properties": {"rows": {}}, "additionalProperties": False},
        "metric": {"properties": {"value": {"oneOf": [
            {"type": "number"}, {"$ref": "#/definitions/dataset"},
            {"$ref": "#/definitions/template"}]}}}},
        "properties": {"metrics": {"items": {"$ref": "#/definitions/metric"}}}}
    nested = {"metrics": [{"value": 1}, {"value": {"rows": 0}}]}
    check(schema, valid=[{"metrics": [{"value": nested}]},
                         {"metrics": [{"value": {"rows": [{"value": "x"}]}}]}],
          invalid=[{"metrics": [{"value": {"metrics": [{"value": "x"}]}}]},
                   {"metrics": [{"value": {"rows": 1, "other": 2}}]},
                   {"metrics": [{"value": {"metrics": [{"value": {}}]}}]}])   # {} is in both


def test_closed_object_builds_no_name_exclusion(monkeypatch):
    # with additionalProperties false no member outside the declared names exists, so the
    # lowering builds no "any name but these" term (it used to, only to drop it)
    from grammar import schema as schema_mod
    built = []

    def counting_except(names):
        built.append(list(names))
        return real_except(names)

    real_except = schema_mod.string_except
    monkeypatch.setattr(schema_mod, "string_except", counting_except)
    closed = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"const": "x"}},
              "additionalProperties": False}
    json_schema_term(closed)
    assert built == []
    check(closed, valid=[{}, {"a": 1}, {"a": 1, "b": "x"}], invalid=[{"c": 1}, {"b": "y"}])
    # open objects still exclude the declared names from the additional ones
    opened = dict(closed, additionalProperties={"type": "string"})
    json_schema_term(opened)
    assert built == [["a", "b"]]
    check(opened, valid=[{"c": "s"}, {"a": 1, "z": "t"}], invalid=[{"c": 1}, {"a": "s"}])


def _has_intersection(t) -> bool:
    from grammar import ir
    seen, stack = set(), [t]
    while stack:
        x = stack.pop()
        if x.id in seen or not x.has_bool:
            continue
        if x.kind in ("and", "not"):
            return True
        seen.add(x.id)
        stack.extend([x.body] if x.kind == "rule" else
                     [a for a in x.args if isinstance(a, ir.Term)])
    return False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet='ab"\\/\u00e9\U0001f600\x01\n', max_size=9),
       st.text(alphabet='ab"\\\u00e9', max_size=3))
def test_long_string_literals_are_lazy_and_exact(s, probe):
    """From ``LAZY_LITERAL_MIN`` characters a literal is a lazy rule: the same spellings
    (raw, escaped, \\u-escaped, surrogate pairs) as the eager chain of characters."""
    from grammar.ir import seq
    lazy = jv.string_literal(s)
    eager = seq(jv.QUOTE, *[jv.json_char([(ord(c), ord(c))]) for c in s], jv.QUOTE)
    for p in (s, s + probe, probe + s, s[:-1], s[1:]):
        for text in {json.dumps(p), json.dumps(p, ensure_ascii=False),
                     json.dumps(p).replace("a", "\\u0061"), json.dumps(p).replace("/", "\\/"),
                     json.dumps(p)[:-1], json.dumps(p) + '"'}:
            b = text.encode()
            assert matches(lazy, b) == matches(eager, b), text
    assert matches(lazy, json.dumps(s).encode())


def test_a_long_literal_unfolds_in_linear_work(monkeypatch):
    """Each suffix's rule takes its length from its parent's: no per-suffix pass over the
    rest of the text (that made a 20k-character const quadratic)."""
    calls = []
    real = jv._shortest_spelling
    monkeypatch.setattr(jv, "_shortest_spelling", lambda ch: calls.append(ch) or real(ch))
    text = "".join(chr(0x61 + (i * 7) % 26) for i in range(3000)) + "\u00e9\"\\"
    t = jv.string_literal(text)
    for spelling in (json.dumps(text), json.dumps(text, ensure_ascii=False)):
        assert matches(t, spelling.encode())
    assert not matches(t, json.dumps(text[:-1]).encode())
    assert len(calls) <= 2 * len(text) + 10


def test_matching_a_literal_builds_few_terms_per_character():
    """A literal character's escapes after the backslash are one lazy rule: a derivative
    by the backslash is one term, so unfolding a literal builds about 5 terms a character
    (13 when the escape was a chain rebuilt in front of every continuation)."""
    from grammar import ir
    text = "".join(chr(0x61 + (i * 5) % 26) for i in range(2000)) + "!"
    t = jv.string_literal(text)
    start = next(ir._ids)
    assert matches(t, json.dumps(text).encode())
    assert next(ir._ids) - start <= 6 * len(text)


def test_a_long_literal_costs_a_few_terms():
    from grammar import ir
    text = "calendar_event_" * 200
    jv.string_literal(text[::-1])           # its characters' terms exist already
    start = next(ir._ids)
    t = jv.string_literal(text)
    assert next(ir._ids) - start < 10       # an eager chain: one term per character
    assert matches(t, json.dumps(text).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet='ab"\\\u00e9\U0001f600\x01', max_size=3), max_size=5),
       st.lists(st.text(alphabet='ab"\\\u00e9\U0001f600\x01c', max_size=4), max_size=8))
def test_string_except_is_the_complement_of_the_names(names, probes):
    """``string_except`` (a trie of the names, no intersection) has the language of
    ``string ∧ ¬(literal | ...)`` over every spelling: raw, escaped, \\u-escaped, pairs."""
    from grammar.ir import alt, both, neg
    new = jv.string_except(names)
    assert not _has_intersection(new)
    old = both(jv.string_term(), neg(alt(*[jv.string_literal(k) for k in names])))
    for p in names + probes:
        for text in {json.dumps(p), json.dumps(p, ensure_ascii=False),
                     json.dumps(p).replace("a", "\\u0061"), json.dumps(p)[:-1], json.dumps(p) + '"',
                     json.dumps(p)[1:]}:
            b = text.encode()
            assert matches(new, b) == matches(old, b) == (
                text in (json.dumps(p), json.dumps(p, ensure_ascii=False),
                         json.dumps(p).replace("a", "\\u0061")) and p not in names), text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet='ab"\\\u00e9\x01', max_size=3), max_size=5),
       st.lists(st.text(alphabet='ab"\\\u00e9\U0001f600\x01c', max_size=4), max_size=6))
def test_string_except_nodes_are_declared_cofinite(names, probes):
    """Each node of ``string_except``'s trie is declared cofinite over any string content
    and the closing quote (``ir.declare_cofinite``, which the automaton trusts to skip a
    walk): every prefix of any content, however it goes through the names, keeps the
    node live."""
    from grammar import ir
    t = jv.string_except(names)
    root = t.args[1]                        # after the opening quote
    assert ir.cofinite_of(root) == (jv.string_content_any(), jv.QUOTE)
    for p in names + probes:
        for text in {json.dumps(p)[1:-1], json.dumps(p, ensure_ascii=False)[1:-1]}:
            b = text.encode()
            for i in range(len(b) + 1):
                x = root
                for c in b[:i]:
                    x = ir.deriv(x, c)
                assert ir.is_live(x), (names, b[:i])


_NUMBER_VALUES = [0, 1, -1, 10, 100, 0.5, -0.5, 1.5, 1e20, 1.5e-7, 123.456, -7e-5, 0.1, 99,
                  12345678901234567, 2.5e300, 1.2345678901234567e-3, 1000000, 4.0, -30.25]


@pytest.mark.parametrize("v", _NUMBER_VALUES)
def test_number_equal_term_is_the_interval_of_one_value(v):
    """The direct construction (plain decimal, one scientific mantissa) has the language
    of ``>= v`` ∧ ``<= v`` on the value's spellings and its neighbours'."""
    from grammar.ir import both
    d = jv.to_decimal(v)
    new = jv.number_equal_term(v)
    assert not _has_intersection(new)
    old = both(jv.number_cmp_term(">=", d), jv.number_cmp_term("<=", d))
    spellings = {repr(v), str(v), format(d, "f"), format(d, "e"), format(d, "E"), str(d),
                 repr(float(v) * 1.0000001), repr(float(v) + 1), "0", "-0", "1.0", "10e-1"}
    for x in list(spellings):
        spellings |= {x + "0", x + ".0", x.replace("e", "e+"), x.replace("e-", "e-0"),
                      "-" + x, x.lstrip("-")}
    for x in spellings:
        assert matches(new, x.encode()) == matches(old, x.encode()), x
    assert matches(new, json.dumps(v).encode())


def test_negative_zero_const():
    check({"const": -0.0}, valid=[0, 0.0], invalid=[1, -1e-9])
    assert acc({"const": -0.0}, "-0.00") and acc({"const": 0}, "-0")


def test_open_objects_and_typed_enums_need_no_intersection():
    # the free names of an open object, a string/boolean/null enum under its type and
    # other constraints, and integers lower to structural terms: their derivatives need
    # no intersection products and their states no liveness search
    for schema in ({"type": "object", "properties": {"ab": {"type": "integer"},
                                                     "ac": {"type": "string"}}},
                   {"type": "string", "enum": ["x", "yy", "zzz"], "maxLength": 2},
                   {"type": ["boolean", "null"], "enum": [True, None, 3]},
                   {"type": "integer"}, {"const": 3}, {"type": "integer", "enum": [1, 1.5]},
                   {"minimum": 2, "enum": [1, 2, 3.5, "a"]}):
        assert not _has_intersection(json_schema_term(schema).term), schema
    check({"type": "string", "enum": ["x", "yy", "zzz", 1], "maxLength": 2},
          valid=["x", "yy"], invalid=["zzz", 1, "z"])
    check({"type": "string", "enum": ["a1", "b", "22"], "pattern": "^[a-z]"},
          valid=["a1", "b"], invalid=["22", "c"])
    assert acc({"enum": ["\u00e9t\u00e9"], "type": "string"}, '"\\u00e9t\\u00e9"')
    check({"minimum": 2, "enum": [1, 2, 3.5, "a"]}, valid=[2, 3.5, "a"], invalid=[1, "b", 3])
    check({"type": "integer", "enum": [1, 1.5, "x"]}, valid=[1], invalid=[1.5, "x"])
    assert acc({"type": "integer", "enum": [1]}, "1.0")        # an integer value (draft 6+)
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer",
              "enum": [1, 1.5]}
    assert acc(draft4, "1") and not acc(draft4, "1.0") and not acc(draft4, "1.5")
    check({"type": "object", "properties": {"ab": {"type": "integer"}}},
          valid=[{"ab": 1, "a": "s"}, {"abc": [1], "b": {}}, {"\u00e9": 1}],
          invalid=[{"ab": "s"}, {"a": 1, "ab": "s"}])
    assert not acc({"type": "object", "properties": {"ab": {"type": "integer"}}},
                   '{"\\u0061b": "s"}')      # an escaped spelling of a declared name


def test_refs_and_recursion():
    tree = {"$defs": {"node": {"type": "object",
                               "properties": {"v": {"type": "integer"},
                                              "kids": {"type": "array",
                                                       "items": {"$ref": "#/$defs/node"}}},
                               "required": ["v"], "additionalProperties": False}},
            "$ref": "#/$defs/node"}
    deep = {"v": 0}
    for i in range(30):
        deep = {"v": i, "kids": [deep, {"v": -1}]}
    check(tree, valid=[{"v": 1}, deep], invalid=[{"v": 1, "kids": [{"v": "x"}]}, {}])
    check({"definitions": {"a~b/c%": {"type": "null"}}, "$ref": "#/definitions/a~0b~1c%25"},
          draft="draft7", valid=[None], invalid=[1])
    # draft 7: $ref siblings are ignored
    check({"$ref": "#/definitions/s", "maxLength": 1, "definitions": {"s": {"type": "string"}}},
          draft="draft7", valid=["abc"], invalid=[1])
    check({"$ref": "http://localhost:1234/int.json"}, valid=[1], invalid=["a"],
          remotes={"http://localhost:1234/int.json": {"type": "integer"}})
    with pytest.raises(SchemaError) as e:
        json_schema_term({"$ref": "#/nowhere"})
    assert e.value.keyword == "$ref"
    with pytest.raises(SchemaError):
        json_schema_term({"$ref": "http://example.com/x.json"})   # never fetched
    with pytest.raises(SchemaError):
        json_schema_term({"anyOf": [{"$ref": "#"}, {"type": "string"}]})  # in-place loop


def test_boolean_schemas():
    assert acc(True, '{"a": [1]}') and not acc(False, "null")
    check({"properties": {"a": False}}, valid=[{}, {"b": 1}], invalid=[{"a": 1}])


def test_formats_asserted_or_annotated():
    s = {"type": "string", "format": "date"}
    assert acc(s, '"2020-02-29"') and not acc(s, '"2021-02-29"')
    assert acc(s, '"2021-02-29"', JsonOptions(formats="annotate"))
    r = json_schema_term({"format": "made-up"})
    assert r.ignored == (("/format", "format"),)
    r = json_schema_term({"format": "hostname"})
    assert r.narrowed == (("/format", "format"),)
    with pytest.raises(UnsupportedSchemaError):
        json_schema_term({"format": "regex"})


def test_pattern_and_errors():
    check({"pattern": "^[a-z]+\\d?$"}, valid=["abc", "ab1", 5], invalid=["Ab", "ab12"])
    check({"pattern": "b"}, valid=["abc"], invalid=["ac"])
    with pytest.raises(UnsupportedSchemaError) as e:
        json_schema_term({"properties": {"x": {"pattern": "(?=a)"}}})
    assert e.value.pointer == "/properties/x/pattern" and e.value.keyword == "pattern"


def test_unevaluated_properties_static():
    s = {"allOf": [{"properties": {"a": {}}}], "properties": {"b": {}},
         "unevaluatedProperties": False}
    check(s, valid=[{"a": 1, "b": 2}, {}], invalid=[{"c": 1}])
    # names evaluated by a dynamic branch: exact case split over the branch validity
    check({"anyOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]},
                     {"properties": {"b": {}}, "required": ["b"]}],
           "unevaluatedProperties": False},
          valid=[{"a": "x"}, {"b": 1}, {"a": "x", "b": 1}],
          invalid=[{"a": 1}, {"a": 1, "b": 1}, {"a": "x", "c": 1}, {}])
    check({"prefixItems": [{}], "contains": {"type": "string"}, "unevaluatedItems": False},
          valid=[[1, "a"], ["a"]], invalid=[[1, 2], [1, "a", 3]])
    with pytest.raises(UnsupportedSchemaError):
        json_schema_term({"anyOf": [{"anyOf": [{"properties": {"a": {}}}]}],
                          "unevaluatedProperties": False})


def test_result_type_and_schema_text():
    r = json_schema_term('{"type": "integer"}')
    assert isinstance(r, SchemaResult) and r.ignored == () and r.narrowed == ()
    with pytest.raises(SchemaError):
        json_schema_term("{nope")


def test_compile_time_is_reasonable():
    import time
    tools = {"anyOf": [{"type": "object", "properties": {
        "name": {"const": f"tool_{i}"},
        "arguments": {"type": "object", "properties": {
            f"p{j}": {"type": ["string", "integer", "boolean"][j % 3], "description": "x" * 40}
            for j in range(8)}, "required": ["p0", "p1"], "additionalProperties": False}},
        "required": ["name", "arguments"], "additionalProperties": False} for i in range(64)]}
    t0 = time.perf_counter()
    r = json_schema_term(tools)
    dt = time.perf_counter() - t0
    assert dt < 5.0
    v = {"name": "tool_7", "arguments": {"p0": "a", "p1": 1, "p3": "z"}}
    assert matches(r.term, json.dumps(canonical_instance(tools, v)).encode())


# --------------------------------------------------------------- soundness (hypothesis)

SIMPLE_SCHEMAS = [
    {"type": "integer", "minimum": -5, "maximum": 20},
    {"type": "number", "exclusiveMinimum": 0.5},
    {"type": "string", "maxLength": 3, "pattern": "^[ab]*$"},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 2},
    {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"],
     "additionalProperties": {"type": "null"}},
    {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1}]},
    {"oneOf": [{"type": "integer"}, {"minimum": 0}]},
    {"not": {"type": ["object", "array"]}},
    {"enum": [1, "a", None, [True], {"a": 1}]},
    {"type": "object", "maxProperties": 1},
    {"multipleOf": 3},
    {"contains": {"type": "string"}},
]

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-30, 30)
    # |x| <= 1e15: there binary floats and their shortest decimal repr agree on
    # comparisons and integrality (the grammar uses exact decimal arithmetic)
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, width=64)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=4)
    | st.sampled_from(["a", "ab", "b", "abc"]),
    lambda kids: st.lists(kids, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "c", "é"]), kids, max_size=3),
    max_leaves=8)


@pytest.mark.parametrize("idx", range(len(SIMPLE_SCHEMAS)))
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(value=_json)
def test_soundness_vs_jsonschema(idx, value):
    schema = SIMPLE_SCHEMAS[idx]
    term = _compiled(idx)
    expected = jsonschema.Draft202012Validator(schema).is_valid(value)
    text = json.dumps(canonical_instance(schema, value))
    assert matches(term, text.encode()) == expected, (schema, text)


_CACHE: dict = {}


def _compiled(idx):
    if idx not in _CACHE:
        _CACHE[idx] = json_schema_term(SIMPLE_SCHEMAS[idx]).term
    return _CACHE[idx]


def test_canonical_order_is_shared_by_all_branches():
    s = {"anyOf": [{"properties": {"b": {}, "a": {}}, "required": ["b"]},
                   {"properties": {"a": {}, "c": {"type": "string"}}, "required": ["c"]}]}
    assert canonical_instance(s, {"c": "x", "a": 1, "z": 0}) == {"a": 1, "c": "x", "z": 0}
    check(s, valid=[{"b": 1}, {"a": 1, "c": "x"}, {"b": 1, "c": 2}], invalid=[{"a": 1}])
    assert not acc(s, '{"c": "x", "a": 1}')


def test_remotes_callable_and_draft_names():
    docs = {"http://h/s.json": {"$defs": {"n": {"type": "null"}}}}
    check({"$ref": "http://h/s.json#/$defs/n"}, valid=[None], invalid=[0], remotes=docs.get)
    with pytest.raises(ValueError):
        json_schema_term({}, draft="draft5")


def test_equal_looking_scalar_leaves_keep_their_own_language():
    """Scalar leaves share one lowering per content key; the key tells ``true`` from
    ``1`` and keyword order does not matter."""
    schema = {"type": "object", "properties": {
        "a": {"const": 1}, "b": {"const": True}, "c": {"enum": [1, "x"], "type": ["integer", "string"]},
        "d": {"type": ["string", "integer"], "enum": [1, "x"]}},
        "required": ["a", "b", "c", "d"], "additionalProperties": False}
    check(schema, valid=[{"a": 1, "b": True, "c": "x", "d": 1}],
          invalid=[{"a": True, "b": True, "c": "x", "d": 1}, {"a": 1, "b": 1, "c": "x", "d": 1}])


def test_compiling_leaves_no_reference_cycles():
    """The recursive closures of the object, array and ``contains`` builders are unlinked
    when they finish: a compile's temporaries go by reference counting, and the
    collection that follows a compile only traverses what the grammar keeps."""
    import gc
    args = {"type": "object", "additionalProperties": False, "required": ["a"],
            "properties": {"a": {"type": "array", "items": {"type": "integer", "minimum": 0},
                                 "contains": {"const": 1}, "minContains": 1},
                           "b": {"enum": ["x", "y"]}, "c": {"type": "array",
                                                           "prefixItems": [{"type": "string"}]}}}
    schema = {"anyOf": [{"type": "object", "additionalProperties": False,
                         "required": ["name", "arguments"],
                         "properties": {"name": {"const": f"tool_{i}"}, "arguments": args}}
                        for i in range(3)]}
    gc.collect()
    gc.disable()
    try:
        r = json_schema_term(schema)
        del r
        assert gc.collect() == 0
    finally:
        gc.enable()


_PATTERN_VALUES = [{"type": "integer"}, {"type": "string"}, {"maximum": 5}, {"minLength": 2},
                   True, False, {"enum": [1, "ab"]}]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["^a", "b$", "^ab", "c", "^[a-c]{2}$"]),
                          st.sampled_from(range(len(_PATTERN_VALUES)))),
                min_size=0, max_size=4, unique_by=lambda x: x[0]),
       st.sampled_from([None, False, {"type": "integer"}, {"type": "string"}]),
       st.booleans(),
       st.lists(st.tuples(st.sampled_from(["a", "ab", "b", "cb", "ca", "x", "abc", "d"]),
                          st.sampled_from([1, 7, "ab", "a", None, True])),
                max_size=4, unique_by=lambda x: x[0]))
def test_pattern_named_members_by_region(pats, addl, split, members):
    """``patternProperties`` next to ``additionalProperties`` (false, a schema or absent),
    in one schema or split over an ``allOf``: the union over regions of names (up to
    ``_MAX_REGION_PATTERNS`` patterns; the intersection of constraints beyond) accepts
    exactly the objects that jsonschema accepts."""
    pp = {p: _PATTERN_VALUES[i] for p, i in pats}
    if split and len(pp) > 1:
        first = dict(list(pp.items())[:1])
        rest = dict(list(pp.items())[1:])
        schema = {"type": "object", "properties": {"d": {"type": "integer"}},
                  "allOf": [{"patternProperties": first},
                            {"patternProperties": rest,
                             **({} if addl is None else {"additionalProperties": addl})}]}
    else:
        schema = {"type": "object", "properties": {"d": {"type": "integer"}},
                  "patternProperties": pp,
                  **({} if addl is None else {"additionalProperties": addl})}
    t = json_schema_term(schema).term
    value = dict(members)
    ok = jsonschema.Draft202012Validator(schema).is_valid(value)
    text = json.dumps(canonical_instance(schema, value))
    assert matches(t, text.encode()) == ok, (schema, text)
