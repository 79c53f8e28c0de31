"""JSON Schema → TypeScript ``namespace functions {...}`` block.

v1, v2, v2.llama3 and v3.llama3 show the tools to the model as TypeScript
type declarations.  :func:`functions_to_typescript` renders that block in the
exact layout the models were trained on; for the schemas of the reference's
own test (``derived_test_schema_vector.json``) the output is byte-identical
to the reference.

Layout (trained format, reproduced as is)
-----------------------------------------
``// Supported function definitions that should be called when necessary.``,
``namespace functions {``, a blank line, then per function ``// {description}``
and ``type {name} = (_: {`` + one line per parameter + ``}) => any;`` (or
``type {name} = () => any;`` without properties), a blank line, and
``} // namespace functions`` without a final newline.  A parameter is an
optional comment line (``// {description}. Default=... Format=...
Maximum=...``), optional ``// Example {name}:`` lines, then ``name?: type,``
indented four spaces per nesting level, ``?`` when not required.  Objects nest
as ``name: {`` ... ``},``; arrays of objects as ``name: {`` ... ``}[]``, with
the quirky extra indentation of nested arrays of objects kept because the
golden has it.  ``integer``/``float`` print as ``number``, enums as literal
unions (parenthesised inside arrays), ``nullable: true`` adds ``| null``,
``Default=`` uses Python's ``str`` for non-string values (``Default=True.``),
formats from ``oneOf`` members are joined with `` or ``.

Decisions on the reference's quirks (``derived_jinja_ts_quirks_vector.json``)
-----------------------------------------------------------------------------
Where the reference output is simply broken TypeScript, we render valid
TypeScript; where it is a stylistic trait of the trained format, we keep it.

1. ``anyOf`` → **union** of the member types (``b?: string | number,``), not
   the reference's empty type ``b?: ,``.  Members use the same type rules
   (``{"type": "null"}`` → ``null``, enum/const → literals, arrays → ``T[]``,
   objects → ``object``).  ``oneOf`` uses the same rule; for the golden's
   ``oneOf`` of two string formats it gives ``string`` like the reference.
2. ``const`` → a **literal type** (``j?: "fixed",``), not an empty type.
3. No type information at all → ``any`` (the reference's Python copy
   prints ``any``, its Jinja macro prints nothing).
4. ``integer`` inside a type list or union is **mapped to ``number``**
   (``d?: number | null,``); the reference leaves ``integer | null``.
5. Bounds equal to 0 are **printed** (``Minimum=0 Maximum=0``): the reference
   drops them only when they are the sole comment content (a truthiness
   test); the information is useful and the comment syntax is the trained one.
6. A ``oneOf``/``anyOf`` whose members have no ``format`` gets **no**
   ``Format=`` (the reference prints a stray ``// Format=``).
7. Newlines in descriptions, defaults and examples are **continued as
   comments** (``// Line one\\n// line two``) instead of leaking uncommented
   lines into the TypeScript.
8. Kept as trained: ``Default=True.``/``Default=None.`` (Python ``str`` of
   non-strings), a string default is double-quoted (JSON-escaped), an empty
   ``// `` line for a function without description, ``e?: {\\n},`` for an
   object without properties.
9. Examples: strings print raw, other values as **JSON**
   (``["123", "234"]`` like the reference for these inputs, but ``true`` for
   booleans and correct quoting where the reference's ``'``→``"`` replacement
   breaks strings containing apostrophes).  Examples are printed for every
   kind of parameter (the reference drops them for scalars without a comment).
10. An array without a usable ``items`` renders ``any[]`` (the reference's
    ``[]`` is the empty-tuple type); ``items`` without ``type`` (enum only,
    anyOf...) use the general type rules; unions in arrays are parenthesised
    (``(string | null)[]``, the reference prints ``string | null[]``).
11. Enum literals are JSON-escaped and joined properly even with duplicate
    values (the reference compares values to decide where ``|`` goes).
12. ``$ref`` (local ``#/...`` pointers) is resolved before rendering, sibling
    keys such as ``description`` override the referent's; recursive refs stay
    unresolved and render as ``any``.  ``allOf`` members are merged
    (properties, required, other keys), which covers pydantic's
    ``allOf: [{"$ref": ...}]`` pattern; the reference rendered nothing.
    Non-mapping property schemas (``true``) are skipped, like the reference.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["functions_to_typescript", "resolve_refs"]

_HEADER = "// Supported function definitions that should be called when necessary.\n"
_INDENT = "    "
_BOUNDS = (
    ("maximum", "Maximum"),
    ("minimum", "Minimum"),
    ("maxLength", "Maximum length"),
    ("minLength", "Minimum length"),
)


def functions_to_typescript(functions: Iterable[Mapping[str, Any]], *, namespace: str = "functions") -> str:
    """Render function definitions as the Functionary TypeScript block.

    Parameters
    ----------
    functions : iterable of mapping
        Function objects ``{"name", "description", "parameters"}`` or tools
        ``{"type": "function", "function": {...}}``.  Entries without a name
        (for example ``{"type": "code_interpreter"}``) are skipped.
    namespace : str, optional
        The namespace name, ``"functions"`` by default.

    Returns
    -------
    str
        The block, from ``// Supported function definitions...`` to
        ``} // namespace functions`` (no trailing newline).

    Examples
    --------
    >>> print(functions_to_typescript([{"name": "ping", "description": "Ping."}]))
    // Supported function definitions that should be called when necessary.
    namespace functions {
    <BLANKLINE>
    // Ping.
    type ping = () => any;
    <BLANKLINE>
    } // namespace functions
    """
    out = [_HEADER, f"namespace {namespace} {{\n\n"]
    for fn in functions:
        if isinstance(fn.get("function"), Mapping):
            fn = fn["function"]
        name = fn.get("name")
        if not name:
            continue
        description = fn.get("description") or ""
        out.append("// " + _continue_comment(str(description), "") + "\n")
        out.append(f"type {name}")
        params = fn.get("parameters")
        params = resolve_refs(params) if isinstance(params, Mapping) else {}
        params = _merge_all_of(params)
        properties = params.get("properties")
        if isinstance(properties, Mapping) and properties:
            out.append(" = (_: {")
            out.append(_properties(properties, params.get("required"), 0))
            out.append("\n}) => any;\n\n")
        else:
            out.append(" = () => any;\n\n")
    out.append(f"}} // namespace {namespace}")
    return "".join(out)


# ----------------------------------------------------------------------- $ref/allOf


def resolve_refs(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``schema`` with local ``$ref`` pointers inlined.

    Parameters
    ----------
    schema : mapping
        A JSON Schema; refs of the form ``#/a/b`` are looked up in it.

    Returns
    -------
    dict
        A deep copy where every resolvable, non-recursive ref is replaced by
        its target merged with the ref's sibling keys (siblings win).  Remote
        refs, dangling refs and recursive refs are left as ``{"$ref": ...}``.
    """
    root = copy.deepcopy(dict(schema))

    def lookup(ref: str) -> Any:
        node: Any = root
        for part in ref[2:].split("/") if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def walk(node: Any, active: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(x, active) for x in node]
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and ref not in active:
            target = lookup(ref)
            if isinstance(target, Mapping):
                merged = dict(walk(target, active + (ref,)))
                for k, v in node.items():
                    if k != "$ref":
                        merged[k] = walk(v, active)
                return merged
        return {k: walk(v, active) for k, v in node.items()}

    return walk(root, ())


def _merge_all_of(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    members = schema.get("allOf")
    if not isinstance(members, list):
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for member in members:
        if not isinstance(member, Mapping):
            continue
        member = _merge_all_of(member)
        for k, v in member.items():
            if k == "properties" and isinstance(v, Mapping):
                merged["properties"] = {**v, **merged.get("properties", {})}
            elif k == "required" and isinstance(v, list):
                known = list(merged.get("required", []))
                merged["required"] = known + [r for r in v if r not in known]
            else:
                merged.setdefault(k, v)
    return merged


# --------------------------------------------------------------------------- types


def _map_type(name: Any) -> str:
    if name in ("integer", "float"):
        return "number"
    return str(name)


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _union(parts: Iterable[str]) -> str:
    seen: list[str] = []
    for p in parts:
        for q in p.split(" | "):
            if q not in seen:
                seen.append(q)
    if "any" in seen:
        return "any"
    return " | ".join(seen)


def _member_type(schema: Any) -> str:
    """Type expression of a union member (always a single line)."""
    if not isinstance(schema, Mapping):
        return "any"
    schema = _merge_all_of(schema)
    kind = schema.get("type")
    if kind == "object":
        return "object"
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, Mapping) and items.get("type") == "object":
            return "object[]"
        inner = _member_type(items) if isinstance(items, Mapping) and items else "any"
        return f"({inner})[]" if " | " in inner else inner + "[]"
    return _scalar_type(schema)


def _scalar_type(schema: Mapping[str, Any]) -> str:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        unique = dict.fromkeys(json.dumps(v, sort_keys=True, ensure_ascii=False) for v in schema["enum"])
        t = " | ".join(_literal(json.loads(v)) for v in unique)
    elif "const" in schema:
        t = _literal(schema["const"])
    elif "type" in schema:
        kind = schema["type"]
        if isinstance(kind, list):
            t = _union(_map_type(k) for k in kind) if kind else "any"
        else:
            t = _map_type(kind)
    elif isinstance(schema.get("anyOf"), list) or isinstance(schema.get("oneOf"), list):
        members = schema.get("anyOf") if isinstance(schema.get("anyOf"), list) else schema["oneOf"]
        t = _union(_member_type(m) for m in members) if members else "any"
    else:
        t = "any"
    if schema.get("nullable"):
        t += " | null"
    return t


def _array_expr(items: Any, depth: int) -> str:
    """Type expression of an array whose items are ``items``; may span lines."""
    if not isinstance(items, Mapping) or not items:
        return "any[]"
    items = _merge_all_of(items)
    kind = items.get("type")
    if kind == "object":
        body = _properties(items.get("properties") or {}, items.get("required"), depth + 1)
        return "{" + body + "\n" + _INDENT * depth + "}[]"
    if kind == "array":
        return _array_expr(items.get("items"), depth + 1) + "[]"
    if isinstance(items.get("enum"), list) and items["enum"]:
        return "(" + _scalar_type({"enum": items["enum"]}) + ")[]"
    t = _scalar_type(items)
    return f"({t})[]" if " | " in t else t + "[]"


# ------------------------------------------------------------------------ comments


def _continue_comment(text: str, offset: str) -> str:
    return text.replace("\n", "\n" + offset + "// ")


def _comment(schema: Mapping[str, Any]) -> str | None:
    parts: list[str] = []
    description = schema.get("description")
    if isinstance(description, str) and description:
        parts.append(description if description.endswith(".") else description + ".")
    if "default" in schema:
        default = schema["default"]
        shown = _literal(default) if isinstance(default, str) else str(default)
        parts.append(f"Default={shown}.")
    fmt = _format(schema)
    if fmt:
        parts.append("Format=" + fmt)
    for key, label in _BOUNDS:
        if key in schema:
            parts.append(f"{label}={schema[key]}")
    if not parts:
        return None
    return "// " + " ".join(parts)


def _format(schema: Mapping[str, Any]) -> str | None:
    if "format" in schema:
        return str(schema["format"])
    for key in ("oneOf", "anyOf"):
        members = schema.get(key)
        if isinstance(members, list):
            formats = [str(m["format"]) for m in members if isinstance(m, Mapping) and "format" in m]
            if formats:
                return " or ".join(formats)
    return None


def _example(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------- parameters


def _properties(properties: Mapping[str, Any], required: Any, depth: int) -> str:
    required_names = set(required) if isinstance(required, (list, tuple)) else set()
    offset = _INDENT * depth
    out: list[str] = []
    for name, schema in properties.items():
        if not isinstance(schema, Mapping):
            continue
        schema = _merge_all_of(schema)
        declaration = name if name in required_names else name + "?"
        comment = _comment(schema)
        if comment is not None:
            out.append("\n" + offset + _continue_comment(comment, offset))
        examples = schema.get("examples")
        if examples is not None:
            if not isinstance(examples, list):
                examples = [examples]
            out.append("\n" + offset + f"// Example {name}:")
            for example in examples:
                out.append("\n" + offset + "// " + _continue_comment(_example(example), offset))
        kind = schema.get("type")
        if kind == "object":
            body = _properties(schema.get("properties") or {}, schema.get("required"), depth + 1)
            out.append("\n" + offset + declaration + ": {" + body + "\n" + offset + "},")
        elif kind == "array":
            out.append("\n" + offset + declaration + ": " + _array_expr(schema.get("items"), depth) + ",")
        else:
            out.append("\n" + offset + declaration + ": " + _scalar_type(schema) + ",")
    return "".join(out)
