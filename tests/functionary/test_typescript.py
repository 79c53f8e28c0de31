"""JSON Schema → TypeScript: the reference golden and each quirk decision."""

from __future__ import annotations

import json

import pytest

from functionary.typescript import functions_to_typescript, resolve_refs
from tests.data import shared_data


def _params(properties: dict, required: list | None = None) -> list[dict]:
    schema = {"type": "object", "properties": properties}
    if required is not None:
        schema["required"] = required
    return [{"name": "f", "description": "d", "parameters": schema}]


def _body(properties: dict, required: list | None = None) -> str:
    """The lines between ``type f = (_: {`` and ``}) => any;``."""
    out = functions_to_typescript(_params(properties, required))
    start = out.index("type f = (_: {\n") + len("type f = (_: {\n")
    return out[start : out.index("\n}) => any;")]


def test_reference_schema_golden_exactly():
    vector = json.loads(shared_data("functionary", "derived_test_schema_vector.json").read_text())
    assert functions_to_typescript(vector["functions"]) == vector["expected_output"]


def test_quirk_vector_differs_only_where_decided():
    vector = json.loads(shared_data("functionary", "derived_jinja_ts_quirks_vector.json").read_text())
    ours = functions_to_typescript(vector["functions"]).splitlines()
    reference = vector["jinja_output"].splitlines()
    kept = [
        "// ",  # empty description comment is kept
        "type f_noparams = () => any;",
        "a: string,",
        "// anyOf here.",
        "// Default=False.",
        "c?: boolean,",
        "// empty obj.",
        "e?: {",
        "},",
        "f?: number,",
        '// Default="x".',
        "// Example h:",
        "// x",
        'h?: "x" | "y",',
        "i?: {",
        "    k: string,",
        "}[],",
    ]
    for line in kept:
        assert line in reference and line in ours, line
    decided = {
        "b?: ,": "b?: string | number,",  # anyOf -> union
        "j?: ,": 'j?: "fixed",',  # const -> literal
        "d?: integer | null,": "d?: number | null,",  # integer mapped inside unions
        "g?: integer | string,": "g?: number | string,",
        "line two": "// line two",  # newlines stay comments
        "line desc.": "// line desc.",
    }
    for theirs, mine in decided.items():
        assert theirs in reference and theirs not in ours
        assert mine in ours
    assert "// Format=" in reference and "// Format=" not in ours  # no stray Format=
    assert "// Maximum=0 Minimum=0" in ours  # zero bounds kept


def test_every_line_of_the_quirk_output_is_valid_ts_shape():
    vector = json.loads(shared_data("functionary", "derived_jinja_ts_quirks_vector.json").read_text())
    for line in functions_to_typescript(vector["functions"]).splitlines():
        stripped = line.strip()
        assert (
            not stripped
            or stripped.startswith(("//", "type ", "namespace ", "}"))
            or stripped.endswith((",", "{"))
        ), line
        assert not stripped.endswith(": ,"), line


def test_no_parameters_and_no_properties():
    out = functions_to_typescript([
        {"name": "a"},
        {"type": "function", "function": {"name": "b", "description": "B", "parameters": {"type": "object"}}},
        {"type": "code_interpreter"},
    ])
    assert out == (
        "// Supported function definitions that should be called when necessary.\n"
        "namespace functions {\n\n"
        "// \ntype a = () => any;\n\n"
        "// B\ntype b = () => any;\n\n"
        "} // namespace functions"
    )


def test_empty_namespace_and_custom_namespace():
    assert functions_to_typescript([]).endswith("namespace functions {\n\n} // namespace functions")
    assert functions_to_typescript([], namespace="tools").endswith("namespace tools {\n\n} // namespace tools")


@pytest.mark.parametrize(
    ("schema", "line"),
    [
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, "x?: string | null,"),
        ({"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "string"}}]}, "x?: number | string[],"),
        ({"anyOf": [{"enum": ["a", "b"]}, {"const": 3}]}, 'x?: "a" | "b" | 3,'),
        ({"oneOf": [{"type": "object"}, {"type": "boolean"}]}, "x?: object | boolean,"),
        ({"anyOf": [{"type": "string"}, {}]}, "x?: any,"),
        ({"const": True}, "x?: true,"),
        ({"const": 'say "hi"'}, 'x?: "say \\"hi\\"",'),
        ({}, "x?: any,"),
        ({"type": ["integer", "float", "null"]}, "x?: number | null,"),
        ({"enum": [1, 1, 2]}, "x?: 1 | 2,"),
        ({"enum": ["a"], "nullable": True}, 'x?: "a" | null,'),
        ({"type": "array"}, "x?: any[],"),
        ({"type": "array", "items": {"enum": ["p", "q"]}}, 'x?: ("p" | "q")[],'),
        ({"type": "array", "items": {"type": ["string", "null"]}}, "x?: (string | null)[],"),
        ({"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}, "x?: number[][],"),
        ({"type": ["object", "null"]}, "x?: object | null,"),
    ],
)
def test_type_expressions(schema, line):
    assert _body({"x": schema}) == line


def test_comment_pieces():
    body = _body({
        "a": {"type": "string", "description": "Line one\nline two", "default": 'q"uote'},
        "b": {"type": "integer", "minimum": 0, "maximum": 10, "default": None},
        "c": {"type": "string", "minLength": 1, "maxLength": 5, "format": "email"},
        "d": {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "time"}]},
        "e": {"type": "boolean", "examples": [True, "it's"]},
        "f": {"type": "string", "description": ""},
    })
    assert body.splitlines() == [
        '// Line one',
        '// line two. Default="q\\"uote".',
        "a?: string,",
        "// Default=None. Maximum=10 Minimum=0",
        "b?: number,",
        "// Format=email Maximum length=5 Minimum length=1",
        "c?: string,",
        "// Format=date or time",
        "d?: string,",
        "// Example e:",
        "// true",
        "// it's",
        "e?: boolean,",
        "f?: string,",
    ]


def test_nested_objects_and_arrays_of_objects_indentation():
    body = _body({
        "o": {"type": "object", "properties": {"p": {"type": "object", "properties": {"q": {"type": "string"}},
                                                     "required": ["q"]}}},
        "arr": {"type": "array", "items": {"type": "array", "items": {"type": "object",
                                                                    "properties": {"z": {"type": "number"}}}}},
    }, required=["arr"])
    assert body.splitlines() == [
        "o?: {",
        "    p?: {",
        "        q: string,",
        "    },",
        "},",
        "arr: {",
        "        z?: number,",
        "    }[][],",
    ]


def test_refs_and_all_of():
    out = functions_to_typescript([{
        "name": "f", "description": "d",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"$ref": "#/$defs/Point", "description": "where"},
                "b": {"allOf": [{"$ref": "#/$defs/Point"}], "description": "merged"},
                "c": {"$ref": "#/$defs/Node"},
                "d": {"$ref": "https://example.com/remote.json"},
            },
            "$defs": {
                "Point": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
                "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}},
            },
        },
    }])
    assert "// where.\na?: {\n    x: number,\n}," in out
    assert "// merged.\nb?: {\n    x: number,\n}," in out
    assert "c?: {\n    next?: any,\n}," in out  # the recursive ref is unrolled once, then left as any
    assert "d?: any," in out
    assert _body({"a": {"$ref": "#/$defs/Point"}}) == "a?: any,"  # dangling ref


def test_resolve_refs_is_a_copy_and_handles_cycles():
    schema = {"$defs": {"N": {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}}},
              "properties": {"root": {"$ref": "#/$defs/N"}}}
    before = json.dumps(schema, sort_keys=True)
    out = resolve_refs(schema)
    assert json.dumps(schema, sort_keys=True) == before
    assert out["properties"]["root"]["type"] == "object"
    assert out["properties"]["root"]["properties"]["n"] == {"$ref": "#/$defs/N"}
