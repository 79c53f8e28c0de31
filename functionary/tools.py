"""OpenAI tool definitions from Python callables, and calling them back.

:func:`function_to_tool` reads a function's signature, type hints and docstring and
returns the tool definition a chat-completions request expects::

    def get_weather(city: str, unit: Literal["c", "f"] = "c") -> str:
        '''Current weather of a city.

        Args:
            city: The city name, e.g. "Paris".
            unit: Temperature unit.
        '''

    function_to_tool(get_weather)
    # {"type": "function", "function": {
    #     "name": "get_weather", "description": "Current weather of a city.",
    #     "parameters": {"type": "object",
    #                    "properties": {"city": {"type": "string", "description": "The city name, e.g. \\"Paris\\"."},
    #                                   "unit": {"type": "string", "enum": ["c", "f"], "default": "c",
    #                                            "description": "Temperature unit."}},
    #                    "required": ["city"], "additionalProperties": false}}}

:class:`Tool` pairs such a definition with the callable and converts JSON arguments back
into the annotated Python types before the call (an ``Enum`` parameter receives the
member, a dataclass parameter an instance, and so on); :class:`functionary.runner.Runner`
uses it.

Supported annotations
---------------------
``str``, ``int``, ``float``, ``bool``, ``None``, ``typing.Any`` (any JSON value), no
annotation (any JSON value), ``list[X]`` / ``Sequence[X]`` / ``set[X]`` /
``frozenset[X]`` (arrays), ``tuple[X, Y]`` (fixed ``prefixItems``) and ``tuple[X, ...]``,
``dict[str, X]`` / ``Mapping[str, X]``, ``Literal[...]`` of JSON scalars, ``Enum``
subclasses with JSON scalar values (an ``enum`` of the values), ``Optional[X]`` and
unions (``anyOf``), ``Annotated[X, "description"]``, dataclasses, ``TypedDict`` classes,
pydantic models (``model_json_schema``; their ``$defs`` are hoisted to the parameters'
``$defs``), and the string formats ``datetime`` (``date-time``), ``date``, ``time``,
``uuid.UUID`` (``uuid``) and ``pathlib.Path``.  Recursive dataclasses/TypedDicts become
``$defs`` entries referenced with ``$ref``; other nested classes are inlined.

Anything else (``bytes``, ``dict[int, X]``, a ``Literal`` of a non-JSON value, an
arbitrary class, ``*args``/``**kwargs``...) raises :class:`ToolSchemaError`, which names
the function and the parameter.

Docstrings
----------
The description is the docstring text before its first section.  Parameter descriptions
are read from Google (``Args:``/``Arguments:``/``Parameters:`` with ``name (type): text``
entries), NumPy (``Parameters`` underlined by dashes, ``name : type`` then indented text)
and Sphinx (``:param [type] name: text``) docstrings; :func:`parse_docstring` exposes the
parser.  Dataclass and TypedDict field descriptions come from the class docstring
(``Attributes``/``Parameters`` sections or ``:ivar``/``:param`` fields).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as _dt
import enum
import inspect
import json
import pathlib
import re
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from functionary.errors import FunctionaryError

__all__ = [
    "ToolSchemaError",
    "Docstring",
    "Tool",
    "function_to_tool",
    "parse_docstring",
    "coerce_arguments",
]

#: Tool names accepted by :func:`function_to_tool` (same rule as
#: :data:`functionary.messages.NAME_PATTERN`).
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

_JSON_SCALARS = (str, int, float, bool, type(None))


class ToolSchemaError(FunctionaryError, TypeError):
    """A callable cannot be described as a tool.

    Raised by :func:`function_to_tool` for an annotation that has no JSON Schema
    equivalent, an invalid tool name, ``*args``/``**kwargs`` or unresolvable type hints.

    Parameters
    ----------
    message : str
        The explanation, already naming the function and parameter.
    function : str or None, optional
        The function's qualified name.
    parameter : str or None, optional
        The parameter at fault (a dotted path for nested fields, e.g. ``"point.x"``).

    Attributes
    ----------
    function : str or None
    parameter : str or None
    """

    def __init__(self, message: str, *, function: str | None = None, parameter: str | None = None) -> None:
        super().__init__(message)
        self.function = function
        self.parameter = parameter


# --------------------------------------------------------------------------- docstrings


@dataclass(frozen=True)
class Docstring:
    """What :func:`parse_docstring` reads from a docstring.

    Attributes
    ----------
    description : str
        The text before the first section (summary and extended description).
    params : dict of str to str
        Parameter (or attribute) name → description, whitespace collapsed.
    """

    description: str = ""
    params: dict[str, str] = field(default_factory=dict)


_GOOGLE_PARAM_HEADERS = {
    "args", "arguments", "parameters", "params", "keyword args", "keyword arguments",
    "kwargs", "other parameters", "attributes",
}
_NUMPY_PARAM_HEADERS = {"parameters", "other parameters", "attributes", "keyword arguments", "params"}
_GOOGLE_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]{0,30}):\s*$")
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^\*{0,2}([A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*)\s*(?::\s*(.*))?$")
_SPHINX_FIELD = re.compile(
    r"^:(param|parameter|arg|argument|key|keyword|ivar|var|cvar)\s+(?:([^:]*?)\s+)?\*{0,2}([A-Za-z_]\w*)\s*:\s*(.*)$"
)
_SPHINX_ANY_FIELD = re.compile(r"^:[A-Za-z]+(?:\s+[^:]*)?:")
_DASHES = re.compile(r"^\s*-{3,}\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _squash(parts: list[str]) -> str:
    return " ".join(" ".join(parts).split())


def parse_docstring(doc: str | None) -> Docstring:
    """Read the description and parameter descriptions of a docstring.

    Google, NumPy and Sphinx (reST field list) styles are recognised, also mixed.

    Parameters
    ----------
    doc : str or None
        A raw docstring (``fn.__doc__``); indentation is normalised with
        :func:`inspect.cleandoc`.

    Returns
    -------
    Docstring
        ``Docstring("", {})`` for ``None`` or an empty string.

    Examples
    --------
    >>> parse_docstring(":param city: The city.\\n:type city: str").params
    {'city': 'The city.'}
    """
    if not doc or not doc.strip():
        return Docstring()
    lines = inspect.cleandoc(doc).splitlines()
    params: dict[str, str] = {}
    description_end = len(lines)
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        # NumPy section: a header underlined by dashes.
        if stripped and i + 1 < n and _DASHES.match(lines[i + 1]) and not _DASHES.match(line):
            description_end = min(description_end, i)
            header = stripped.lower()
            base = _indent(line)
            j = i + 2
            body: list[str] = []
            while j < n:
                if lines[j].strip() and j + 1 < n and _DASHES.match(lines[j + 1]) and _indent(lines[j]) <= base:
                    break
                body.append(lines[j])
                j += 1
            if header in _NUMPY_PARAM_HEADERS:
                _numpy_entries(body, base, params)
            i = j
            continue
        # Google section: "Args:" alone on a line.
        m = _GOOGLE_HEADER.match(stripped)
        if m and not stripped.startswith(":"):
            header = m.group(1).strip().lower()
            base = _indent(line)
            j = i + 1
            body = []
            while j < n and (not lines[j].strip() or _indent(lines[j]) > base):
                body.append(lines[j])
                j += 1
            if header in _GOOGLE_PARAM_HEADERS or (body and _is_section_word(header)):
                description_end = min(description_end, i)
                if header in _GOOGLE_PARAM_HEADERS:
                    _google_entries(body, params)
                i = j
                continue
        # Sphinx field.
        if _SPHINX_ANY_FIELD.match(stripped):
            description_end = min(description_end, i)
            m = _SPHINX_FIELD.match(stripped)
            j = i + 1
            cont: list[str] = []
            while j < n and lines[j].strip() and _indent(lines[j]) > _indent(line) and not _SPHINX_ANY_FIELD.match(
                lines[j].strip()
            ):
                cont.append(lines[j].strip())
                j += 1
            if m:
                params.setdefault(m.group(3), _squash([m.group(4), *cont]))
            i = j
            continue
        i += 1
    description = "\n".join(lines[:description_end]).strip()
    return Docstring(description, params)


_SECTION_WORDS = {
    "returns", "return", "yields", "yield", "raises", "raise", "examples", "example", "note", "notes",
    "warning", "warnings", "see also", "references", "todo", "methods", "receives", "warns",
}


def _is_section_word(header: str) -> bool:
    return header in _SECTION_WORDS


def _google_entries(body: list[str], params: dict[str, str]) -> None:
    entry_indent: int | None = None
    name: str | None = None
    parts: list[str] = []

    def flush() -> None:
        if name is not None:
            params.setdefault(name, _squash(parts))

    for line in body:
        if not line.strip():
            continue
        ind = _indent(line)
        if entry_indent is None:
            entry_indent = ind
        m = _GOOGLE_ENTRY.match(line.strip()) if ind <= entry_indent else None
        if m:
            flush()
            name, parts = m.group(1), [m.group(3)]
        elif name is not None:
            parts.append(line.strip())
    flush()


def _numpy_entries(body: list[str], base: int, params: dict[str, str]) -> None:
    names: list[str] = []
    parts: list[str] = []

    def flush() -> None:
        for nm in names:
            params.setdefault(nm, _squash(parts))

    for line in body:
        if not line.strip():
            continue
        if _indent(line) <= base:
            m = _NUMPY_ENTRY.match(line.strip())
            if m:
                flush()
                names = [x.strip().lstrip("*") for x in m.group(1).split(",")]
                parts = []
                continue
        if names:
            parts.append(line.strip())
    flush()


# --------------------------------------------------------------------------- schemas


_FORMATS: dict[type, dict[str, str]] = {
    _dt.datetime: {"type": "string", "format": "date-time"},
    _dt.date: {"type": "string", "format": "date"},
    _dt.time: {"type": "string", "format": "time"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}

_SEQUENCE_ORIGINS = {
    list, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
    collections.abc.Set, collections.abc.MutableSet, collections.abc.Collection, collections.abc.Iterable,
}
_MAPPING_ORIGINS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _is_pydantic_model(tp: Any) -> bool:
    return isinstance(tp, type) and callable(getattr(tp, "model_json_schema", None)) and hasattr(
        tp, "model_validate"
    )


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is types.UnionType


def _json_type_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return None


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    kinds = {_json_type_of(v) for v in values}
    if kinds == {"integer", "number"}:
        kinds = {"number"}
    if len(kinds) == 1:
        schema["type"] = kinds.pop()
    schema["enum"] = values
    return schema


class _Builder:
    """Turns annotations into JSON Schema for one function; collects ``$defs``."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.defs: dict[str, Any] = {}
        self._stack: list[type] = []
        self._recursive: set[type] = set()
        self._names: dict[type, str] = {}

    def error(self, where: str, message: str) -> ToolSchemaError:
        return ToolSchemaError(
            f"{self.function}: parameter {where!r}: {message}", function=self.function, parameter=where
        )

    def _def_name(self, tp: type) -> str:
        if tp not in self._names:
            base = tp.__name__
            name, k = base, 2
            while name in self.defs or name in self._names.values():
                name, k = f"{base}{k}", k + 1
            self._names[tp] = name
        return self._names[tp]

    def schema(self, tp: Any, where: str) -> dict[str, Any]:
        if tp is inspect.Parameter.empty or tp is Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
            return {"type": "string"}
        if isinstance(tp, type) and tp in _FORMATS:
            return dict(_FORMATS[tp])
        if isinstance(tp, typing.TypeVar):
            if tp.__bound__ is not None:
                return self.schema(tp.__bound__, where)
            if tp.__constraints__:
                return {"anyOf": [self.schema(c, where) for c in tp.__constraints__]}
            return {}
        if isinstance(tp, (str, typing.ForwardRef)):
            raise self.error(where, f"unresolved forward reference {tp!r}")
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            inner = self.schema(args[0], where)
            for meta in args[1:]:
                text = meta if isinstance(meta, str) else getattr(meta, "description", None)
                if isinstance(text, str) and text:
                    inner = {**inner, "description": text}
            return inner
        if origin is typing.Literal:
            values = list(args)
            for v in values:
                if not isinstance(v, _JSON_SCALARS) or isinstance(v, enum.Enum):
                    if isinstance(v, enum.Enum) and isinstance(v.value, _JSON_SCALARS):
                        continue
                    raise self.error(where, f"Literal value {v!r} is not a JSON scalar")
            return _enum_schema([v.value if isinstance(v, enum.Enum) else v for v in values])
        if _is_union(origin):
            members = [a for a in args if a is not type(None)]
            schemas = [self.schema(a, where) for a in members]
            if len(members) < len(args):
                schemas.append({"type": "null"})
            return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        if origin in _SEQUENCE_ORIGINS or tp in _SEQUENCE_ORIGINS:
            item = self.schema(args[0], f"{where}[]") if args else {}
            return {"type": "array", "items": item} if item else {"type": "array"}
        if origin is tuple or tp is tuple:
            if not args:
                return {"type": "array"}
            if len(args) == 2 and args[1] is Ellipsis:
                item = self.schema(args[0], f"{where}[]")
                return {"type": "array", "items": item} if item else {"type": "array"}
            if args == ((),):  # tuple[()]
                return {"type": "array", "maxItems": 0}
            prefix = [self.schema(a, f"{where}[{k}]") for k, a in enumerate(args)]
            return {"type": "array", "prefixItems": prefix, "items": False,
                    "minItems": len(prefix), "maxItems": len(prefix)}
        if origin in _MAPPING_ORIGINS or tp in _MAPPING_ORIGINS:
            if args:
                key, value = args
                key_ok = key is str or key is Any or (
                    typing.get_origin(key) is typing.Literal and all(isinstance(k, str) for k in typing.get_args(key))
                ) or (isinstance(key, type) and issubclass(key, enum.Enum) and all(
                    isinstance(m.value, str) for m in key))
                if not key_ok:
                    raise self.error(where, f"dict keys must be str (JSON object keys), got {key!r}")
                schema: dict[str, Any] = {"type": "object"}
                vs = self.schema(value, f"{where}{{}}")
                if vs:
                    schema["additionalProperties"] = vs
                if key is not str and key is not Any:
                    names = [m.value for m in key] if isinstance(key, type) else list(typing.get_args(key))
                    schema["propertyNames"] = {"enum": names}
                return schema
            return {"type": "object"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            values = [m.value for m in tp]
            for v in values:
                if not isinstance(v, _JSON_SCALARS):
                    raise self.error(where, f"enum {tp.__name__} has a non-JSON value {v!r}")
            return _enum_schema(values)
        if _is_pydantic_model(tp):
            return self._pydantic(tp, where)
        if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or _is_typeddict(tp)):
            return self._named(tp, where)
        if isinstance(tp, type) and issubclass(tp, (bytes, bytearray)):
            raise self.error(where, "bytes has no JSON representation (use str, e.g. base64)")
        name = getattr(tp, "__qualname__", None) or repr(tp)
        raise self.error(
            where,
            f"unsupported annotation {name}; use str, int, float, bool, list, dict[str, X], tuple, "
            "Literal, Enum, Optional/Union, a dataclass, a TypedDict or a pydantic model",
        )

    def _named(self, tp: type, where: str) -> dict[str, Any]:
        if tp in self._stack:
            self._recursive.add(tp)
            return {"$ref": f"#/$defs/{self._def_name(tp)}"}
        self._stack.append(tp)
        try:
            body = self._object_of_class(tp, where)
        finally:
            self._stack.pop()
        if tp in self._recursive:
            self.defs[self._def_name(tp)] = body
            return {"$ref": f"#/$defs/{self._def_name(tp)}"}
        return body

    def _object_of_class(self, tp: type, where: str) -> dict[str, Any]:
        try:
            hints = typing.get_type_hints(tp, include_extras=True)
        except Exception as exc:  # NameError for unresolved forward references, mostly
            raise self.error(where, f"cannot resolve the type hints of {tp.__qualname__}: {exc}") from exc
        doc = parse_docstring(tp.__doc__ if tp.__doc__ and not _is_auto_doc(tp) else None)
        properties: dict[str, Any] = {}
        required: list[str] = []
        if dataclasses.is_dataclass(tp):
            for f in dataclasses.fields(tp):
                if not f.init:
                    continue
                prop = self.schema(hints.get(f.name, Any), f"{where}.{f.name}")
                has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
                if f.default is not dataclasses.MISSING:
                    prop = _with_default(prop, f.default)
                else:
                    prop = dict(prop)
                if f.name in doc.params and "description" not in prop:
                    prop["description"] = doc.params[f.name]
                properties[f.name] = prop
                if not has_default:
                    required.append(f.name)
        else:  # TypedDict
            for key, hint in hints.items():
                prop = dict(self.schema(hint, f"{where}.{key}"))
                if key in doc.params and "description" not in prop:
                    prop["description"] = doc.params[key]
                properties[key] = prop
                if key in tp.__required_keys__:
                    required.append(key)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        if doc.description:
            schema["description"] = doc.description
        return schema

    def _pydantic(self, tp: type, where: str) -> dict[str, Any]:
        try:
            raw = tp.model_json_schema(ref_template="#/$defs/{model}")
        except Exception as exc:
            raise self.error(where, f"pydantic could not build a schema for {tp.__qualname__}: {exc}") from exc
        raw = json.loads(json.dumps(raw))  # deep copy, and proves it is JSON
        for name, sub in raw.pop("$defs", {}).items():
            if name in self.defs and self.defs[name] != sub:
                raise self.error(where, f"two different models are both named {name!r}")
            self.defs[name] = sub
        raw.pop("title", None)
        return raw


def _is_auto_doc(tp: type) -> bool:
    # dataclasses give classes without a docstring the signature as __doc__.
    return dataclasses.is_dataclass(tp) and bool(tp.__doc__) and tp.__doc__.startswith(tp.__name__ + "(")


def _json_default(value: Any) -> tuple[bool, Any]:
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False, None
    return True, json.loads(text)


def _with_default(schema: dict[str, Any], default: Any) -> dict[str, Any]:
    ok, value = _json_default(default)
    out = dict(schema)
    if ok and "$ref" not in out:
        out["default"] = value
    return out


def _signature(fn: Callable[..., Any], qualname: str) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolSchemaError(f"{qualname}: cannot read its signature: {exc}", function=qualname) from exc


def _hints(fn: Callable[..., Any], qualname: str) -> dict[str, Any]:
    """Resolved annotations of ``fn``; string annotations that name closure variables are
    resolved too.  An annotation that cannot be resolved raises, naming the parameter."""
    target = fn
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)) and callable(fn) and not isinstance(fn, type):
        target = type(fn).__call__
    if isinstance(fn, type):
        target = fn.__init__
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - retried parameter by parameter below
        pass
    func = inspect.unwrap(getattr(target, "__func__", target))
    namespace: dict[str, Any] = dict(getattr(func, "__globals__", {}))
    try:
        namespace.update(inspect.getclosurevars(func).nonlocals)
    except (TypeError, ValueError):
        pass
    hints: dict[str, Any] = {}
    for pname, annotation in getattr(func, "__annotations__", {}).items():
        try:
            hints[pname] = typing.get_type_hints(
                _Holder(annotation), globalns=namespace, include_extras=True
            )["value"]
        except Exception as exc:  # noqa: BLE001 - NameError, SyntaxError, TypeError...
            raise ToolSchemaError(
                f"{qualname}: parameter {pname!r}: cannot resolve its type hint {annotation!r} "
                f"({type(exc).__name__}: {exc}); define the annotated types at module level or import them",
                function=qualname,
                parameter=pname,
            ) from exc
    return hints


class _Holder:
    """An object whose only annotation is ``value`` (to resolve one hint at a time)."""

    def __init__(self, annotation: Any) -> None:
        self.__annotations__ = {"value": annotation}
        self.__module__ = None  # type: ignore[assignment]


def _qualname(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def function_to_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Build an OpenAI tool definition from a Python callable.

    Parameters
    ----------
    fn : callable
        A function, bound method, ``functools.partial`` (bound arguments are left out),
        coroutine function or callable object.
    name : str, optional
        The tool name; defaults to ``fn.__name__``.  Must match
        ``[A-Za-z0-9_.-]{1,64}``.
    description : str, optional
        Overrides the description read from the docstring.

    Returns
    -------
    dict
        ``{"type": "function", "function": {"name", "description", "parameters"}}``;
        ``parameters`` is a JSON Schema object with ``properties``, ``required`` (the
        parameters without defaults, when any), ``additionalProperties: false`` and,
        when needed, ``$defs``.  JSON-serialisable defaults are given as ``default``.

    Raises
    ------
    ToolSchemaError
        For an unsupported annotation (the message names the parameter), ``*args`` or
        ``**kwargs``, unresolvable type hints or an invalid name.
    """
    qualname = _qualname(fn)
    tool_name = name if name is not None else getattr(fn, "__name__", None) or getattr(
        getattr(fn, "func", None), "__name__", None
    )
    if not isinstance(tool_name, str) or not _NAME.fullmatch(tool_name):
        raise ToolSchemaError(
            f"{qualname}: tool name {tool_name!r} is invalid: it must match [A-Za-z0-9_.-]{{1,64}} "
            "(pass name=... for lambdas and callable objects)",
            function=qualname,
        )
    sig = _signature(fn, qualname)
    target = fn.func if hasattr(fn, "func") and hasattr(fn, "keywords") else fn  # functools.partial
    hints = _hints(target, qualname)
    doc = parse_docstring(inspect.getdoc(target))
    builder = _Builder(qualname)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, param in sig.parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            star = "*" if param.kind is inspect.Parameter.VAR_POSITIONAL else "**"
            raise builder.error(
                pname, f"{star}{pname} cannot be expressed as a JSON object property; use explicit parameters"
            )
        annotation = hints.get(pname, param.annotation)
        prop = dict(builder.schema(annotation, pname))
        if param.default is not inspect.Parameter.empty:
            prop = _with_default(prop, param.default)
        else:
            required.append(pname)
        if pname in doc.params and "description" not in prop:
            prop["description"] = doc.params[pname]
        properties[pname] = prop
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    parameters["additionalProperties"] = False
    if builder.defs:
        parameters["$defs"] = builder.defs
    return {
        "type": "function",
        "function": {
            "name": tool_name,
            "description": description if description is not None else doc.description,
            "parameters": parameters,
        },
    }


# --------------------------------------------------------------------------- coercion


def _coerce(value: Any, tp: Any) -> Any:
    """Convert a JSON value (already valid for the schema of ``tp``) to ``tp``."""
    if tp is inspect.Parameter.empty or tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _coerce(value, args[0])
    if origin is typing.Literal:
        for a in args:
            if isinstance(a, enum.Enum) and a.value == value:
                return a
        return value
    if _is_union(origin):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None) or not _plausible(value, a):
                continue
            try:
                return _coerce(value, a)
            except (TypeError, ValueError, KeyError):
                continue
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        return tp(value)
    if tp is uuid.UUID:
        return uuid.UUID(value)
    if tp in (_dt.datetime, _dt.date, _dt.time):
        return tp.fromisoformat(value.replace("Z", "+00:00") if tp is not _dt.date else value)
    if origin in _SEQUENCE_ORIGINS or tp in _SEQUENCE_ORIGINS:
        items = [_coerce(v, args[0]) for v in value] if args else list(value)
        base = origin or tp
        if base in (set, collections.abc.Set, collections.abc.MutableSet):
            return set(items)
        if base is frozenset:
            return frozenset(items)
        return items
    if origin is tuple or tp is tuple:
        if args and not (len(args) == 2 and args[1] is Ellipsis) and args != ((),):
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
        return tuple(_coerce(v, args[0]) for v in value) if args and args != ((),) else tuple(value)
    if origin in _MAPPING_ORIGINS or tp in _MAPPING_ORIGINS:
        if args:
            key_tp, value_tp = args
            conv_key = (lambda k: key_tp(k)) if isinstance(key_tp, type) and issubclass(key_tp, enum.Enum) else (
                lambda k: k)
            return {conv_key(k): _coerce(v, value_tp) for k, v in value.items()}
        return dict(value)
    if _is_pydantic_model(tp):
        return tp.model_validate(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return tp(**{k: _coerce(v, hints.get(k, Any)) for k, v in value.items()})
    if _is_typeddict(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return {k: _coerce(v, hints.get(k, Any)) for k, v in value.items()}
    return value


def _plausible(value: Any, tp: Any) -> bool:
    """Cheap check that ``value`` could be a JSON encoding of ``tp`` (union dispatch)."""
    origin = typing.get_origin(tp) or tp
    if origin is typing.Annotated:
        return _plausible(value, typing.get_args(tp)[0])
    if tp is Any or origin is typing.Literal or _is_union(origin):
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer())
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str or tp in _FORMATS or (isinstance(tp, type) and issubclass(tp, pathlib.PurePath)):
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return any(m.value == value for m in tp)
    if origin in _SEQUENCE_ORIGINS or origin is tuple:
        return isinstance(value, list)
    if origin in _MAPPING_ORIGINS or _is_typeddict(tp) or _is_pydantic_model(tp):
        return isinstance(value, dict)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        required = {f.name for f in dataclasses.fields(tp) if f.init and f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        return isinstance(value, dict) and set(value) <= names and required <= set(value)
    return True


def coerce_arguments(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> inspect.BoundArguments:
    """Convert decoded JSON arguments to the Python types ``fn`` is annotated with.

    Enum members replace their values, dataclasses/pydantic models are constructed,
    lists become tuples or sets where annotated so, ISO strings become ``datetime``
    objects, and so on.  The arguments should already be valid for the tool's schema.

    Parameters
    ----------
    fn : callable
        The function the arguments are for.
    arguments : Mapping
        Parameter name → decoded JSON value.

    Returns
    -------
    inspect.BoundArguments
        Call ``fn(*bound.args, **bound.kwargs)``; positional-only parameters are bound
        positionally.

    Raises
    ------
    TypeError
        When the arguments do not fit the signature (unknown or missing names).
    ValueError
        When a value cannot be converted (e.g. not a member of an ``Enum``).
    """
    sig = inspect.signature(fn)
    target = fn.func if hasattr(fn, "func") and hasattr(fn, "keywords") else fn
    try:
        hints = _hints(target, _qualname(fn))
    except ToolSchemaError:
        hints = {}
    converted = {k: _coerce(v, hints.get(k, Any)) for k, v in arguments.items()}
    positional = []
    keywords = {}
    for pname, param in sig.parameters.items():
        if pname not in converted:
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            positional.append(converted.pop(pname))
        else:
            keywords[pname] = converted.pop(pname)
    if converted:
        raise TypeError(f"{_qualname(fn)}() got unexpected arguments: {', '.join(sorted(converted))}")
    return sig.bind(*positional, **keywords)


# --------------------------------------------------------------------------- Tool


@dataclass(frozen=True)
class Tool:
    """A Python callable together with its tool definition.

    Build one with :meth:`from_function`; :class:`functionary.runner.Runner` accepts
    plain callables and wraps them this way.

    Attributes
    ----------
    fn : callable
        The function called with the decoded, validated and converted arguments.
    definition : dict
        The OpenAI tool definition (``{"type": "function", "function": {...}}``).
    """

    fn: Callable[..., Any]
    definition: dict[str, Any]

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        """Describe ``fn`` with :func:`function_to_tool`.

        Parameters
        ----------
        fn : callable
        name, description : str, optional
            Passed to :func:`function_to_tool`.

        Returns
        -------
        Tool

        Raises
        ------
        ToolSchemaError
            As :func:`function_to_tool`.
        """
        return cls(fn, function_to_tool(fn, name=name, description=description))

    @property
    def name(self) -> str:
        """The tool name."""
        return self.definition["function"]["name"]

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments."""
        return self.definition["function"].get("parameters") or {"type": "object"}

    @property
    def is_async(self) -> bool:
        """Whether calling :attr:`fn` returns an awaitable (coroutine function)."""
        fn = self.fn.func if hasattr(self.fn, "func") and hasattr(self.fn, "keywords") else self.fn
        if inspect.iscoroutinefunction(fn):
            return True
        return not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)

    def bind(self, arguments: Mapping[str, Any]) -> inspect.BoundArguments:
        """Convert ``arguments`` with :func:`coerce_arguments` for :attr:`fn`."""
        return coerce_arguments(self.fn, arguments)
