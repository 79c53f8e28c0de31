"""Tool-call grammars: (template, tools, tool_choice) -> one token-level automaton.

:func:`compile_tool_grammar` compiles the assistant turn that follows
``template.render(..., add_generation_prompt=True, tool_choice=...)`` into a single
:class:`grammar.CompiledGrammar`: the recipient / function-name position (names that
share prefixes are fine: the automaton only moves on once a whole name and its terminator
are written), each tool's arguments (its JSON schema, compiled by :mod:`grammar`), free
text segments, python code segments (code interpreter: free text, not JSON), separators
between parallel calls, and the stop tokens.  Special tokens are matched by id.

Semantics enforced by the grammar:

* ``"auto"``: text, calls, or text then calls (text comes first, at most once);
* ``"none"``: text only; no tool syntax can be produced;
* ``"required"``: at least one call;
* named (``{"type": "function", "function": {"name": N}}`` or legacy ``{"name": N}``):
  exactly one call, of that function;
* ``parallel_tool_calls=False``: at most one call.

Per-version formats (what the model writes after the generation prompt, prefix included
in the prompt when the template adds one):

=============  ==========================================================================
version        assistant turn
=============  ==========================================================================
v3.llama3      ``all\\n{text}`` and/or ``{name}\\n{args}`` blocks joined by ``>>>``;
               ends with ``<|eot_id|>``.  Text and code never contain ``>>>``.
v3-llama3.1    ``{text}`` then ``<function={name}>{args}</function>`` per call and/or
               ``<|python_tag|>{code}``; ends with ``<|eom_id|>`` after calls, else
               ``<|eot_id|>``.  Text never contains ``<function=``.
v2.llama3      ``{text}`` then ``<|reserved_special_token_249|>{name}\\n{args}`` per call;
               ends with ``<|eot_id|>``.
v2             ``{recipient}\\n<|content|>{content}`` blocks joined by
               ``\\n<|from|>assistant\\n<|recipient|>``; ends with ``<|stop|>``.
v1             ``\\n{text}<|END_OF_ASSISTANT|>`` or
               ``\\n[{text}\\n]<|START_OF_FUNCTION_CALL|>{name}:\\n{args}<|END_OF_FUNCTION_CALL|>``
               (one call per turn).
=============  ==========================================================================

Arguments are compact-to-moderately-spaced JSON (``whitespace`` bounds each run); for
tools, an omitted ``additionalProperties`` means *no other keys* (the model may not invent
parameters), and numbers are spelled so that ``json.loads`` gives finite values (integers
as plain digits; ``1e400`` would otherwise parse to ``inf``).  ``all`` (in v2 and v3.llama3) and ``python`` (next to a code interpreter) are reserved
recipients: a user function with one of those names is rejected
(:class:`functionary.errors.RequestError`), since the model's format could not tell them
apart.  Each grammar starts right after ``template.generation_prefix(tool_choice)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from grammar import CompiledGrammar, Grammar, GrammarCompiler, canonical_key, ir
from grammar.errors import GrammarError

__all__ = ["compile_tool_grammar", "tool_grammar", "normalize_tool_choice", "ToolSpec",
           "parse_tools", "TOOL_GRAMMAR_VERSIONS"]

TOOL_GRAMMAR_VERSIONS = ("v1", "v2", "v2.llama3", "v3.llama3", "v3-llama3.1")


def _request_error(msg: str) -> Exception:
    from .errors import RequestError
    return RequestError(msg)


@dataclass(frozen=True)
class ToolSpec:
    """The tools of one request, normalised."""

    functions: tuple[tuple[str, Any], ...]   # (name, parameters schema)
    code_interpreter: bool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.functions)


def parse_tools(tools: Sequence[Mapping[str, Any]] | None, version: str | None = None) -> ToolSpec:
    """Normalise an OpenAI ``tools`` list (or legacy ``functions`` entries).

    ``all`` is reserved in the formats where text has a recipient (v2, v3.llama3) and
    ``python`` whenever a code interpreter is among the tools."""
    funcs: list[tuple[str, Any]] = []
    code = False
    seen: set[str] = set()
    for i, t in enumerate(tools or ()):
        if not isinstance(t, Mapping):
            raise _request_error(f"tools[{i}] must be an object")
        typ = t.get("type", "function")
        if typ == "code_interpreter":
            code = True
            continue
        if typ != "function":
            raise _request_error(f"tools[{i}].type {typ!r} is not supported "
                                 "(expected 'function' or 'code_interpreter')")
        fn = t.get("function", t)
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _request_error(f"tools[{i}].function.name must be a non-empty string")
        name = fn["name"]
        if name == "all" and version in ("v2", "v3.llama3"):
            raise _request_error(f"tools[{i}]: 'all' is the text recipient in the {version} "
                                 "format; rename the function")
        if name == "python" and any(isinstance(x, Mapping) and x.get("type") == "code_interpreter"
                                    for x in tools or ()):
            raise _request_error(f"tools[{i}]: a function named 'python' collides with the code "
                                 "interpreter; rename the function")
        if any(c in name for c in "\n>< ") or "<|" in name:
            raise _request_error(f"tools[{i}]: function name {name!r} contains characters that "
                                 "cannot appear in the model's call syntax")
        if name in seen:
            raise _request_error(f"tools[{i}]: duplicate function name {name!r}")
        seen.add(name)
        params = fn.get("parameters")
        if params is None:
            params = {"type": "object", "properties": {}}
        funcs.append((name, params))
    return ToolSpec(tuple(funcs), code)


def normalize_tool_choice(tool_choice: Any, spec: ToolSpec) -> str | tuple[str, str]:
    """``"auto" | "none" | "required"`` or ``("named", name)``; raises RequestError."""
    if tool_choice is None:
        tool_choice = "auto"
    if isinstance(tool_choice, str):
        if tool_choice not in ("auto", "none", "required"):
            raise _request_error(f"Invalid value: {tool_choice!r}. Supported values are: "
                                 "'none', 'auto', and 'required'.")
        if tool_choice == "required" and not spec.functions and not spec.code_interpreter:
            raise _request_error("tool_choice 'required' needs at least one tool")
        return tool_choice
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function", tool_choice)
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if not isinstance(name, str):
            raise _request_error("a named tool_choice needs function.name")
        if name == "python" and spec.code_interpreter:
            return ("named", "python")
        if name not in spec.names:
            raise _request_error(f"tool_choice names function {name!r}, which is not in tools")
        return ("named", name)
    raise _request_error(f"Invalid tool_choice: {tool_choice!r}")


# ----------------------------------------------------------------------------- pieces

class _Pieces:
    def __init__(self, compiler: GrammarCompiler, spec: ToolSpec, whitespace: int,
                 strict: bool) -> None:
        self.vocab = compiler.vocab
        self.spec = spec
        self.args: dict[str, ir.Term] = {}
        self.ignored: list = []
        for name, params in spec.functions:
            try:
                g = compiler.json_schema_grammar(params, strict=strict, whitespace=whitespace,
                                                 additional_properties="forbid",
                                                 float_safe=True)
            except GrammarError as e:
                from .errors import RequestError
                raise RequestError(f"tool {name!r}: its parameters schema cannot be enforced: "
                                   f"{e}") from e
            self.args[name] = g.term
            self.ignored.extend((f"{name}:{p}", k) for p, k in g.ignored)

    def sp(self, text: str) -> ir.Term:
        try:
            return ir.special(self.vocab.token_id(text))
        except GrammarError as e:
            raise GrammarError(f"this vocabulary lacks the special token {text} that the "
                               f"prompt format needs: {e}") from e


def _join(first: ir.Term, sep: ir.Term, item: ir.Term, parallel: bool) -> ir.Term:
    if not parallel:
        return first
    return ir.seq(first, ir.star(ir.seq(sep, item)))


def _no_substring(text: bytes) -> ir.Term:
    """UTF-8 text that never contains ``text``."""
    return ir.both(ir.any_text(), ir.neg(ir.seq(ir.ANY_BYTES, ir.lit(text), ir.ANY_BYTES)))


# --------------------------------------------------------------------------- versions

def _v3_llama3(p: _Pieces, choice, parallel: bool) -> ir.Term:
    eot = p.sp("<|eot_id|>")
    text_end = _no_substring(b">>>")             # a segment that ends the turn
    text_mid = ir.text_until(">>>")              # a segment closed by ">>>" (included)
    fcalls = [ir.seq(ir.lit(n + "\n"), p.args[n]) for n in p.spec.names]
    last = list(fcalls)
    mid = [ir.seq(c, ir.lit(">>>")) for c in fcalls]
    if p.spec.code_interpreter:
        last.append(ir.seq(ir.lit("python\n"), text_end))
        mid.append(ir.seq(ir.lit("python\n"), text_mid))
    calls_then_end = ir.seq(ir.star(ir.alt(*mid)) if parallel else ir.EMPTY, ir.alt(*last), eot)
    if choice == "none":            # prompt ends with ">>>all\n"
        return ir.seq(text_end, eot)
    if isinstance(choice, tuple):   # prompt ends with ">>>{name}\n"
        name = choice[1]
        body = text_end if name == "python" else p.args[name]
        return ir.seq(body, eot)
    if choice == "required":
        return calls_then_end
    # auto: text only, text then calls, or calls
    return ir.alt(ir.seq(ir.lit("all\n"), text_end, eot),
                  ir.seq(ir.lit("all\n"), text_mid, calls_then_end),
                  calls_then_end)


def _v3_llama31(p: _Pieces, choice, parallel: bool) -> ir.Term:
    eot, eom = p.sp("<|eot_id|>"), p.sp("<|eom_id|>")
    text = _no_substring(b"<function=")
    fcalls = [ir.seq(ir.lit(n + ">"), p.args[n], ir.lit("</function>")) for n in p.spec.names]
    fcall_body = ir.alt(*fcalls) if fcalls else ir.NOTHING      # after "<function="
    fcall = ir.seq(ir.lit("<function="), fcall_body)
    py = ir.seq(p.sp("<|python_tag|>"), ir.any_text()) if p.spec.code_interpreter else ir.NOTHING
    if choice == "none":
        return ir.seq(text, eot)
    if isinstance(choice, tuple):
        name = choice[1]
        if name == "python":        # prompt ends with "<|python_tag|>"
            return ir.seq(ir.any_text(), eom)
        return ir.seq(p.args[name], ir.lit("</function>"), eom)   # prompt: "<function=name>"
    if choice == "required":        # prompt ends with "<function="
        first = ir.seq(fcall_body, ir.star(fcall) if parallel else ir.EMPTY,
                       ir.opt(py) if parallel else ir.EMPTY)
        return ir.seq(first, eom)
    # text, then calls: a text followed by a call is closed by the call's "<function="
    text_then_fcall = ir.seq(ir.text_until("<function="), fcall_body)
    if parallel:
        with_calls = ir.alt(ir.seq(text_then_fcall, ir.star(fcall), ir.opt(py)), ir.seq(text, py))
    else:
        with_calls = ir.alt(text_then_fcall, ir.seq(text, py))
    return ir.alt(ir.seq(text, eot), ir.seq(with_calls, eom))


def _v2_llama3(p: _Pieces, choice, parallel: bool) -> ir.Term:
    eot = p.sp("<|eot_id|>")
    sep = p.sp("<|reserved_special_token_249|>")
    text = ir.any_text()
    bodies = [ir.seq(ir.lit(n + "\n"), p.args[n]) for n in p.spec.names]
    if p.spec.code_interpreter:
        bodies.append(ir.seq(ir.lit("python\n"), text))
    body = ir.alt(*bodies)
    more = ir.star(ir.seq(sep, body)) if parallel else ir.EMPTY
    if choice == "none":
        return ir.seq(text, eot)
    if isinstance(choice, tuple):   # prompt ends with SEP "{name}\n"
        name = choice[1]
        return ir.seq(text if name == "python" else p.args[name], eot)
    if choice == "required":        # prompt ends with SEP
        return ir.seq(body, more, eot)
    return ir.alt(ir.seq(text, eot), ir.seq(text, sep, body, more, eot))


def _v2(p: _Pieces, choice, parallel: bool) -> ir.Term:
    stop, content = p.sp("<|stop|>"), p.sp("<|content|>")
    join = ir.seq(ir.lit("\n"), p.sp("<|from|>"), ir.lit("assistant\n"), p.sp("<|recipient|>"))
    text = ir.any_text()
    bodies = [ir.seq(ir.lit(n + "\n"), content, p.args[n]) for n in p.spec.names]
    if p.spec.code_interpreter:
        bodies.append(ir.seq(ir.lit("python\n"), content, text))
    call = ir.alt(*bodies)
    calls = ir.seq(call, ir.star(ir.seq(join, call)) if parallel else ir.EMPTY, stop)
    if choice == "none":            # prompt ends with "all\n<|content|>"
        return ir.seq(text, stop)
    if isinstance(choice, tuple):   # prompt ends with "{name}\n<|content|>"
        name = choice[1]
        return ir.seq(text if name == "python" else p.args[name], stop)
    if choice == "required":
        return calls
    text_block = ir.seq(ir.lit("all\n"), content, text)
    return ir.alt(ir.seq(text_block, stop), ir.seq(text_block, join, calls), calls)


def _v1(p: _Pieces, choice, parallel: bool) -> ir.Term:
    end_a = p.sp("<|END_OF_ASSISTANT|>")
    start_c, end_c = p.sp("<|START_OF_FUNCTION_CALL|>"), p.sp("<|END_OF_FUNCTION_CALL|>")
    text = ir.any_text()
    bodies = [ir.seq(ir.lit(n + ":\n"), p.args[n]) for n in p.spec.names]
    if p.spec.code_interpreter:
        bodies.append(ir.seq(ir.lit("python:\n"), text))
    call = ir.seq(start_c, ir.alt(*bodies), end_c)   # one call per turn in v1
    if choice == "none":
        return ir.seq(ir.lit("\n"), text, end_a)
    if isinstance(choice, tuple):   # prompt ends with "\n<|START_OF_FUNCTION_CALL|>{name}:\n"
        name = choice[1]
        return ir.seq(text if name == "python" else p.args[name], end_c)
    if choice == "required":        # prompt ends with "\n<|START_OF_FUNCTION_CALL|>"
        return ir.seq(ir.alt(*bodies), end_c)
    return ir.alt(ir.seq(ir.lit("\n"), text, end_a),
                  ir.seq(ir.lit("\n"), ir.opt(ir.seq(text, ir.lit("\n"))), call))


_BUILDERS = {"v3.llama3": _v3_llama3, "v3-llama3.1": _v3_llama31, "v2.llama3": _v2_llama3,
             "v2": _v2, "v1": _v1}


def _version_of(template: Any) -> str:
    if isinstance(template, str):
        v = template
    else:
        v = getattr(template, "version", None) or getattr(template, "name", None)
    if v not in _BUILDERS:
        raise _request_error(f"unknown template version {v!r}; known: {', '.join(TOOL_GRAMMAR_VERSIONS)}")
    return v


def _prepare(compiler: GrammarCompiler, template: Any, tools: Sequence[Mapping[str, Any]] | None,
             tool_choice: Any, parallel_tool_calls: bool, whitespace: int,
             strict: bool) -> tuple[tuple, Callable[[], Grammar]]:
    """Validate the request; return the grammar's cache key and a builder for it."""
    version = _version_of(template)
    spec = parse_tools(tools, version)
    choice = normalize_tool_choice(tool_choice, spec)
    if choice != "none" and not spec.functions and not spec.code_interpreter:
        if tool_choice not in (None, "auto"):
            raise _request_error("'tool_choice' is only allowed when 'tools' are specified.")
        choice = "none"
    if version == "v1" and choice not in ("none",) and parallel_tool_calls:
        parallel_tool_calls = False  # v1 makes one call per turn
    parallel = bool(parallel_tool_calls)
    # key order is kept (canonical_key): properties are generated in their declared order
    key = ("tools", version, canonical_key([[n, s] for n, s in spec.functions]),
           spec.code_interpreter, str(choice), parallel, whitespace, strict)

    def build() -> Grammar:
        pieces = _Pieces(compiler, spec, whitespace, strict)
        term = _BUILDERS[version](pieces, choice, parallel)
        g = Grammar.from_term(term, key)
        return Grammar(g.term, g.key, tuple(pieces.ignored))
    return key, build


def tool_grammar(compiler: GrammarCompiler, template: Any, tools: Sequence[Mapping[str, Any]] | None,
                 tool_choice: Any = "auto", parallel_tool_calls: bool = True, *,
                 whitespace: int = 8, strict: bool = True) -> Grammar:
    """The uncompiled :class:`grammar.Grammar` of an assistant turn (see
    :func:`compile_tool_grammar`)."""
    return _prepare(compiler, template, tools, tool_choice, parallel_tool_calls, whitespace,
                    strict)[1]()


def compile_tool_grammar(compiler: GrammarCompiler, template: Any,
                         tools: Sequence[Mapping[str, Any]] | None, tool_choice: Any = "auto",
                         parallel_tool_calls: bool = True, *, whitespace: int = 8,
                         strict: bool = True) -> CompiledGrammar:
    """Compile the assistant turn of ``template`` for ``tools`` into one automaton.

    Parameters
    ----------
    compiler:
        A :class:`grammar.GrammarCompiler` for the model's vocabulary (cached by
        ``(version, tools, tool_choice, parallel_tool_calls)``).
    template:
        A template object (with a ``version`` attribute) or a version name:
        ``"v1" | "v2" | "v2.llama3" | "v3.llama3" | "v3-llama3.1"``.
    tools:
        OpenAI ``tools`` (``{"type": "function", "function": {...}}`` or
        ``{"type": "code_interpreter"}``).
    tool_choice:
        ``"auto" | "none" | "required"``, ``{"type": "function", "function": {"name": N}}``
        or the legacy ``{"name": N}``.
    parallel_tool_calls:
        ``False`` allows at most one call.
    whitespace:
        Longest whitespace run inside argument JSON.
    strict:
        Reject tool schemas with keywords that cannot be enforced (default).

    Raises
    ------
    functionary.errors.RequestError
        Unknown named tool, tool_choice without tools, a bad tools list, or a tool schema
        the engine cannot enforce (the message names the keyword and its JSON pointer).
    grammar.errors.GrammarError
        The vocabulary lacks a special token the format needs.
    """
    key, build = _prepare(compiler, template, tools, tool_choice, parallel_tool_calls,
                          whitespace, strict)
    return compiler.compile_lazy(key, build)
