"""Typed helpers for OpenAI chat messages, tools and ``tool_choice``.

The prompt templates never look at raw request dicts: they go through the
normalisers of this module first, which validate the input (raising
:class:`~functionary.errors.RequestError`) and turn it into small frozen
dataclasses:

* :func:`normalize_tools` → :class:`ToolSet` (``tools`` or legacy ``functions``);
* :func:`normalize_tool_choice` → :class:`ToolChoice` (``tool_choice`` or
  legacy ``function_call``);
* :func:`normalize_messages` → ``list[`` :class:`Message` ``]`` (legacy
  ``role: function`` and ``function_call`` fields converted, tool results
  ordered by ``tool_call_id`` and given the name of the call they answer).

It also holds the one helper that turns parser output into the legacy
``function_call`` shape (:func:`to_legacy_function_call`) and the ``call_`` id
generator (:func:`new_call_id`).

Inputs may be plain mappings or objects with a pydantic-style ``model_dump()``
method; nothing here imports a web framework.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from functionary.errors import RequestError

__all__ = [
    "NAME_PATTERN",
    "FunctionSpec",
    "ToolSet",
    "ToolChoice",
    "ToolCall",
    "Message",
    "normalize_tools",
    "normalize_tool_choice",
    "normalize_messages",
    "order_tool_messages",
    "functions_to_tools",
    "function_call_to_tool_choice",
    "to_legacy_function_call",
    "new_call_id",
]

#: Accepted tool names: OpenAI's ``^[a-zA-Z0-9_-]{1,64}$`` plus ``.``.  The
#: characters that delimit names in the Functionary formats (whitespace, ``>``,
#: ``:``, ``<``) are excluded, so a name can always be read unambiguously.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

#: The recipient name of code-interpreter calls in every Functionary format.
PYTHON = "python"

ToolChoiceMode = Literal["auto", "none", "required", "named"]
Role = Literal["system", "user", "assistant", "tool"]

_ID_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    """Return a fresh tool-call id: ``"call_"`` and 24 random alphanumerics.

    Returns
    -------
    str
        For example ``"call_Xa81kQ0sPz3TnB7uWc2dLm9e"``.
    """
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def _plain(obj: Any) -> Any:
    """Turn a pydantic-like object into plain data; leave anything else alone."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(exclude_none=True)
    return obj


# --------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class FunctionSpec:
    """One callable function offered to the model.

    Attributes
    ----------
    name : str
        The function name (matches :data:`NAME_PATTERN`).
    description : str
        The description, ``""`` when absent.
    parameters : Mapping or None
        The JSON Schema of the arguments, as given.
    raw : Mapping
        The function object exactly as given (``{"name", "description",
        "parameters", ...}``); v3-llama3.1 lists it verbatim as JSON.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = field(default=None, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ToolSet:
    """The validated tool list of a request.

    Attributes
    ----------
    functions : tuple of FunctionSpec
        The ``function`` tools, in request order.
    code_interpreter : bool
        Whether ``{"type": "code_interpreter"}`` was given (calls to it use the
        ``python`` recipient and carry raw code).
    legacy : bool
        Whether the list was given in the legacy ``functions`` form; parsers
        then report the first call as ``function_call``.
    """

    functions: tuple[FunctionSpec, ...] = ()
    code_interpreter: bool = False
    legacy: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the function tools, in order."""
        return tuple(f.name for f in self.functions)

    @property
    def allows_python(self) -> bool:
        """Whether a ``python`` call is a real call for this tool set."""
        return self.code_interpreter or PYTHON in self.names

    def function_dicts(self) -> list[dict[str, Any]]:
        """Deep copies of the raw function objects, in order."""
        return [copy.deepcopy(dict(f.raw)) for f in self.functions]

    def restrict(self, choice: ToolChoice) -> ToolSet:
        """Apply ``tool_choice`` to the tools shown in the prompt.

        ``none`` removes every tool, a named tool keeps only that tool (the code
        interpreter when the name is ``python``), ``auto``/``required`` keep
        the set unchanged.

        Parameters
        ----------
        choice : ToolChoice
            A normalised tool choice, valid for this set.

        Returns
        -------
        ToolSet
        """
        if choice.mode == "none":
            return ToolSet((), False, self.legacy)
        if choice.mode == "named":
            kept = tuple(f for f in self.functions if f.name == choice.name)
            if not kept and choice.name == PYTHON and self.code_interpreter:
                return ToolSet((), True, self.legacy)
            return ToolSet(kept, False, self.legacy)
        return self


def _function_spec(obj: Any, where: str) -> FunctionSpec:
    if not isinstance(obj, Mapping):
        raise RequestError(f"{where} must be an object, got {type(obj).__name__}.", param="tools")
    name = obj.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise RequestError(
            f"Invalid {where}.name {name!r}: a function name must match "
            f"{NAME_PATTERN.pattern!r} (1 to 64 letters, digits, '_', '-' or '.').",
            param="tools",
        )
    description = obj.get("description")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise RequestError(f"{where}.description must be a string.", param="tools")
    parameters = obj.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise RequestError(f"{where}.parameters must be a JSON Schema object.", param="tools")
    return FunctionSpec(name, description, parameters, copy.deepcopy(dict(obj)))


def normalize_tools(tools: Iterable[Any] | None) -> ToolSet | None:
    """Validate a ``tools`` (or legacy ``functions``) list.

    Parameters
    ----------
    tools : iterable or None
        Items of the form ``{"type": "function", "function": {...}}``,
        ``{"type": "code_interpreter"}``, or legacy bare function objects
        ``{"name", "description", "parameters"}``.  A :class:`ToolSet` is
        returned unchanged.

    Returns
    -------
    ToolSet or None
        ``None`` when ``tools`` is ``None``.

    Raises
    ------
    RequestError
        For an item of unknown type, a missing or invalid function name, a
        non-object ``parameters``, duplicate names, two code interpreters, or a
        function named ``python`` next to the code interpreter.
    """
    if tools is None or isinstance(tools, ToolSet):
        return tools
    if isinstance(tools, (str, bytes, Mapping)):
        raise RequestError("'tools' must be a list.", param="tools")
    functions: list[FunctionSpec] = []
    code_interpreter = False
    bare = 0
    items = [_plain(t) for t in tools]
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RequestError(f"tools[{i}] must be an object.", param="tools")
        kind = item.get("type")
        if kind is None and "name" in item:
            functions.append(_function_spec(item, f"functions[{i}]"))
            bare += 1
        elif kind == "function":
            functions.append(_function_spec(item.get("function"), f"tools[{i}].function"))
        elif kind == "code_interpreter":
            if code_interpreter:
                raise RequestError("'code_interpreter' is listed twice in 'tools'.", param="tools")
            code_interpreter = True
        else:
            raise RequestError(
                f"Invalid tools[{i}].type {kind!r}: supported types are 'function' "
                "and 'code_interpreter'.",
                param="tools",
            )
    if 0 < bare < len(items):
        raise RequestError("Legacy 'functions' entries cannot be mixed with 'tools' entries.", param="tools")
    seen: set[str] = set()
    for f in functions:
        if f.name in seen:
            raise RequestError(f"Duplicate function name {f.name!r} in 'tools'.", param="tools")
        seen.add(f.name)
    if code_interpreter and PYTHON in seen:
        raise RequestError(
            "A function named 'python' cannot be combined with the code interpreter: "
            "both would use the 'python' recipient.",
            param="tools",
        )
    return ToolSet(tuple(functions), code_interpreter, legacy=bare > 0)


def functions_to_tools(functions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Convert a legacy ``functions`` list into a ``tools`` list.

    Parameters
    ----------
    functions : iterable of mapping
        Bare function objects.

    Returns
    -------
    list of dict
        ``[{"type": "function", "function": f}, ...]`` (deep copies).
    """
    return [{"type": "function", "function": copy.deepcopy(dict(_plain(f)))} for f in functions]


# --------------------------------------------------------------------- tool_choice


@dataclass(frozen=True)
class ToolChoice:
    """A normalised ``tool_choice``.

    Attributes
    ----------
    mode : {"auto", "none", "required", "named"}
        What the model may or must do.
    name : str or None
        The forced function name when ``mode == "named"``.
    legacy : bool
        Whether it was given in the legacy ``function_call={"name": N}`` form.
    """

    mode: ToolChoiceMode = "auto"
    name: str | None = None
    legacy: bool = False


_CHOICE_STRINGS = ("auto", "none", "required")


def normalize_tool_choice(
    tool_choice: Any,
    tools: ToolSet | None = None,
    *,
    require_tools: bool = False,
) -> ToolChoice:
    """Validate ``tool_choice`` (or legacy ``function_call``) against the tools.

    Parameters
    ----------
    tool_choice : str, mapping, ToolChoice or None
        ``"auto"`` (also ``None``), ``"none"``, ``"required"``,
        ``{"type": "function", "function": {"name": N}}`` or the legacy
        ``{"name": N}``.
    tools : ToolSet or None, optional
        The normalised tools.  When given, a named tool must be among them.
    require_tools : bool, optional
        Reject ``"required"`` and named choices when there are no tools (used
        when rendering a prompt; parsers accept ``tools=None``).

    Returns
    -------
    ToolChoice

    Raises
    ------
    RequestError
        For an unknown string, a malformed object, a name that is not a tool,
        or (with ``require_tools``) a forcing choice without tools.
    """
    if isinstance(tool_choice, ToolChoice):
        choice = tool_choice
    else:
        tool_choice = _plain(tool_choice)
        if tool_choice is None:
            choice = ToolChoice("auto")
        elif isinstance(tool_choice, str):
            if tool_choice not in _CHOICE_STRINGS:
                raise RequestError(
                    f"Invalid value: {tool_choice!r}. Supported values are: 'none', 'auto', and 'required'.",
                    param="tool_choice",
                )
            choice = ToolChoice(tool_choice)  # type: ignore[arg-type]
        elif isinstance(tool_choice, Mapping):
            if "function" in tool_choice:
                if tool_choice.get("type", "function") != "function":
                    raise RequestError(
                        f"Invalid tool_choice.type {tool_choice.get('type')!r}: expected 'function'.",
                        param="tool_choice",
                    )
                fn = _plain(tool_choice["function"])
                name = fn.get("name") if isinstance(fn, Mapping) else None
                legacy = False
            else:
                name = tool_choice.get("name")
                legacy = True
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                raise RequestError(f"Invalid function name {name!r} in 'tool_choice'.", param="tool_choice")
            choice = ToolChoice("named", name, legacy)
        else:
            raise RequestError(
                f"Invalid 'tool_choice' of type {type(tool_choice).__name__}.", param="tool_choice"
            )
    has_tools = tools is not None and (bool(tools.functions) or tools.code_interpreter)
    if require_tools and choice.mode in ("required", "named") and not has_tools:
        raise RequestError("'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice")
    if choice.mode == "named" and tools is not None:
        known = choice.name in tools.names or (choice.name == PYTHON and tools.code_interpreter)
        if not known:
            raise RequestError(
                f"Invalid value for 'tool_choice': no function named {choice.name} was "
                "specified in the 'tools' parameter.",
                param="tool_choice",
            )
    return choice


def function_call_to_tool_choice(function_call: Any) -> Any:
    """Convert a legacy ``function_call`` value into a ``tool_choice`` value.

    Parameters
    ----------
    function_call : str, mapping or None
        ``"auto"``, ``"none"`` or ``{"name": N}``.

    Returns
    -------
    str, dict or None
        The same string, ``{"type": "function", "function": {"name": N}}``, or
        ``None``.
    """
    function_call = _plain(function_call)
    if isinstance(function_call, Mapping) and "name" in function_call:
        return {"type": "function", "function": {"name": function_call["name"]}}
    return function_call


# ------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class ToolCall:
    """A tool call made by the assistant in a past turn.

    Attributes
    ----------
    name : str
        The called function (``python`` for code-interpreter calls).
    arguments : str
        The arguments exactly as generated (JSON text, or raw code for python).
    id : str or None
        The ``call_...`` id, when the client sent one.
    """

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True)
class Message:
    """One chat message, in the normalised form the templates render.

    Attributes
    ----------
    role : {"system", "user", "assistant", "tool"}
        Legacy ``function`` messages become ``tool``; ``developer`` becomes
        ``system``.
    content : str or None
        Text content (text parts of a list content are concatenated).
    tool_calls : tuple of ToolCall
        Calls of an assistant message (a legacy ``function_call`` is the
        single element).
    name : str or None
        For tool messages: the name of the function whose result this is.
    tool_call_id : str or None
        For tool messages: the id of the call answered.
    """

    role: Role
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    name: str | None = None
    tool_call_id: str | None = None


def _content_text(content: Any, index: int) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            part = _plain(part)
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise RequestError(
                    f"messages[{index}].content: unsupported content part {kind!r} "
                    "(only text parts are supported).",
                    param="messages",
                )
        return "".join(parts)
    raise RequestError(f"messages[{index}].content must be a string, a list of parts or null.", param="messages")


def _call(obj: Any, where: str) -> ToolCall:
    obj = _plain(obj)
    if not isinstance(obj, Mapping):
        raise RequestError(f"{where} must be an object.", param="messages")
    fn = _plain(obj.get("function", obj))
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise RequestError(f"{where} needs a function name.", param="messages")
    arguments = fn.get("arguments", "")
    if arguments is None:
        arguments = ""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    call_id = obj.get("id")
    return ToolCall(fn["name"], arguments, call_id if isinstance(call_id, str) else None)


def normalize_messages(messages: Iterable[Any]) -> list[Message]:
    """Validate OpenAI chat messages and convert them to :class:`Message`.

    Legacy fields are converted (``role: "function"`` → a tool message,
    ``function_call`` → a single tool call), list contents are reduced to their
    text, and tool results are put in the order of the calls they answer with
    :func:`order_tool_messages`, which also fills in their function names.

    Parameters
    ----------
    messages : iterable
        OpenAI message objects (mappings or pydantic-like models).

    Returns
    -------
    list of Message

    Raises
    ------
    RequestError
        For an unknown role, a user/system message without content, a content
        part that is not text, or a malformed tool call.
    """
    if isinstance(messages, (str, bytes, Mapping)):
        raise RequestError("'messages' must be a list.", param="messages")
    out: list[Message] = []
    for i, raw in enumerate(messages):
        m = _plain(raw)
        if isinstance(m, Message):
            out.append(m)
            continue
        if not isinstance(m, Mapping):
            raise RequestError(f"messages[{i}] must be an object.", param="messages")
        role = m.get("role")
        content = _content_text(m.get("content"), i)
        if role in ("system", "developer", "user"):
            if content is None:
                raise RequestError(f"messages[{i}] ({role}) needs a content.", param="messages")
            out.append(Message("user" if role == "user" else "system", content))
        elif role == "assistant":
            calls = [_call(c, f"messages[{i}].tool_calls[{j}]") for j, c in enumerate(m.get("tool_calls") or ())]
            if m.get("function_call"):
                calls.append(_call(m["function_call"], f"messages[{i}].function_call"))
            out.append(Message("assistant", content, tuple(calls)))
        elif role in ("tool", "function"):
            name = m.get("name")
            call_id = m.get("tool_call_id")
            out.append(
                Message(
                    "tool",
                    content or "",
                    name=name if isinstance(name, str) and name else None,
                    tool_call_id=call_id if isinstance(call_id, str) else None,
                )
            )
        else:
            raise RequestError(
                f"Invalid messages[{i}].role {role!r}: expected system, user, assistant, tool or function.",
                param="messages",
            )
    return order_tool_messages(out)


def order_tool_messages(messages: Sequence[Message]) -> list[Message]:
    """Order tool results like the calls they answer, and name them.

    After an assistant message with tool calls, the run of tool messages that
    follows it is stably sorted by the position of their ``tool_call_id`` among
    the calls' ids (results with an unknown or missing id keep their relative
    order, after the matched ones).  A result without ``name`` gets the name of
    the call its ``tool_call_id`` refers to.  The templates that print a name
    (v1, v2, v2.llama3) or rely on the order (all) depend on this.

    Parameters
    ----------
    messages : sequence of Message

    Returns
    -------
    list of Message
        A new list; the input is not modified.
    """
    out: list[Message] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        out.append(m)
        i += 1
        if m.role != "assistant" or not m.tool_calls:
            continue
        j = i
        while j < len(messages) and messages[j].role == "tool":
            j += 1
        run = list(messages[i:j])
        position = {c.id: k for k, c in enumerate(m.tool_calls) if c.id is not None}
        names = {c.id: c.name for c in m.tool_calls if c.id is not None}
        keyed = sorted(
            enumerate(run),
            key=lambda t: (position.get(t[1].tool_call_id, len(position)), t[0]),
        )
        for _, tm in keyed:
            if tm.name is None and tm.tool_call_id in names:
                tm = Message("tool", tm.content, name=names[tm.tool_call_id], tool_call_id=tm.tool_call_id)
            out.append(tm)
        i = j
    return out


# -------------------------------------------------------------------------- legacy


def to_legacy_function_call(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """Turn parser output into the legacy ``functions`` shape.

    This is the single place where legacy ``functions`` requests get their
    ``function_call``: only the first tool call is kept and the finish reason
    ``"tool_calls"`` becomes ``"function_call"``.  It accepts both a parsed
    message (from ``Template.parse``) and a stream chunk (from
    ``StreamParser.feed``/``finish``).

    Parameters
    ----------
    obj : mapping
        Either ``{"role", "content", "tool_calls", "finish_reason"}`` or a
        chunk choice ``{"index", "delta", "finish_reason"}``.

    Returns
    -------
    dict or None
        The message ``{"role", "content", "function_call", "finish_reason"}``,
        or the converted chunk.  ``None`` for a chunk that only concerned
        later calls, which the legacy API cannot express.
    """
    if "delta" in obj:
        delta = dict(obj["delta"])
        calls = delta.pop("tool_calls", None)
        if calls:
            for call in calls:
                if call.get("index", 0) != 0:
                    continue
                fn = call.get("function", {})
                delta["function_call"] = {k: fn[k] for k in ("name", "arguments") if k in fn}
            if not delta:
                return None
        finish = obj.get("finish_reason")
        out = dict(obj)
        out["delta"] = delta
        out["finish_reason"] = "function_call" if finish == "tool_calls" else finish
        return out
    calls = obj.get("tool_calls") or []
    first = calls[0]["function"] if calls else None
    finish = obj.get("finish_reason")
    return {
        "role": obj.get("role", "assistant"),
        "content": obj.get("content"),
        "function_call": {"name": first["name"], "arguments": first["arguments"]} if first else None,
        "finish_reason": "function_call" if finish == "tool_calls" else finish,
    }
