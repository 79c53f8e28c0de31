"""Berkeley Function-Calling Leaderboard (BFCL) function documents as OpenAI tools.

BFCL describes parameters with its own type names, not JSON Schema.  The conversion:

=====================  ============================================================
BFCL type              JSON Schema
=====================  ============================================================
``dict``               ``object`` (its ``properties``/``required`` converted)
``float``              ``number``
``tuple``              ``array`` (items converted when given)
``any``                no type constraint (any JSON value)
``integer`` ...        unchanged (``string``, ``integer``, ``boolean``, ``array``,
                       ``object``, ``number``, ``null``)
Java / JavaScript      BFCL passes Java and JavaScript arguments as **strings holding
(``String``,           source literals** (e.g. ``"new ArrayList<>()"``); every such
``HashMap``, ...)      parameter becomes ``{"type": "string"}`` in the ``simple_java``
                       and ``simple_javascript`` categories, whatever its declared type.
=====================  ============================================================

Other keys: ``description`` and ``enum`` are kept; ``default`` is kept (an annotation);
``optional`` (a BFCL flag) is dropped — optionality comes from ``required``; ``format``
values are kept only when JSON Schema knows them.  Names containing ``.`` (``Class.method``)
are kept as they are: Functionary's formats allow them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

__all__ = ["bfcl_type_to_schema", "bfcl_function_to_tool", "iter_bfcl_tool_lists"]

_SIMPLE = {"string", "integer", "boolean", "array", "object", "number", "null"}
_KNOWN_FORMATS = {"date", "time", "date-time", "email", "uuid", "uri", "ipv4", "ipv6", "hostname"}


def bfcl_type_to_schema(p: Any, *, source_literals: bool = False) -> dict:
    """Convert one BFCL parameter description to JSON Schema (see the module docstring)."""
    if not isinstance(p, dict):
        return {}
    out: dict[str, Any] = {}
    if "description" in p and isinstance(p["description"], str):
        out["description"] = p["description"]
    t = p.get("type")
    if source_literals and t != "dict":
        out["type"] = "string"
        if "enum" in p and all(isinstance(v, str) for v in p["enum"]):
            out["enum"] = list(p["enum"])
        return out
    if t == "dict" or (t == "object" and "properties" in p) or (source_literals and t == "dict"):
        out["type"] = "object"
        props = p.get("properties") or {}
        out["properties"] = {k: bfcl_type_to_schema(v, source_literals=source_literals)
                             for k, v in props.items()}
        req = [r for r in p.get("required", []) if r in props]
        if req:
            out["required"] = req
    elif t == "float":
        out["type"] = "number"
    elif t == "tuple":
        out["type"] = "array"
        if isinstance(p.get("items"), dict):
            out["items"] = bfcl_type_to_schema(p["items"], source_literals=source_literals)
    elif t == "any" or t is None:
        pass
    elif t in _SIMPLE:
        out["type"] = t
        if t == "array" and isinstance(p.get("items"), dict):
            out["items"] = bfcl_type_to_schema(p["items"], source_literals=source_literals)
        if t == "object" and isinstance(p.get("properties"), dict):
            out["properties"] = {k: bfcl_type_to_schema(v) for k, v in p["properties"].items()}
    else:  # a Java/JavaScript type outside those categories: a source literal
        out["type"] = "string"
    if "enum" in p and isinstance(p["enum"], list) and p["enum"]:
        out["enum"] = list(p["enum"])
    for k in ("minimum", "maximum"):
        if isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool):
            out[k] = p[k]
    if p.get("format") in _KNOWN_FORMATS:
        out["format"] = p["format"]
    if "default" in p:
        out["default"] = p["default"]
    return out


def bfcl_function_to_tool(fn: dict, *, category: str = "") -> dict:
    """An OpenAI ``tools`` entry from a BFCL function document."""
    src = category.endswith("java") or category.endswith("javascript")
    params = bfcl_type_to_schema(fn.get("parameters") or {"type": "dict", "properties": {}},
                                 source_literals=src)
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return {"type": "function",
            "function": {"name": fn["name"], "description": fn.get("description", ""),
                         "parameters": params}}


def iter_bfcl_tool_lists(folder: Path, categories: tuple[str, ...] | None = None
                         ) -> Iterator[tuple[str, str, list[dict], list[dict]]]:
    """Yield ``(category, id, tools, first_turn_messages)`` for every BFCL entry under
    ``folder`` (the ``data/`` folder of the BFCL copy)."""
    for f in sorted(Path(folder).glob("BFCL_v4_*.json")):
        cat = f.stem[len("BFCL_v4_"):]
        if categories and cat not in categories:
            continue
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                e = json.loads(line)
                tools = [bfcl_function_to_tool(fn, category=cat) for fn in e.get("function", [])]
                turns = e.get("question") or [[]]
                yield cat, e["id"], tools, list(turns[0])
