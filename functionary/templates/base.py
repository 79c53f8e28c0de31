"""The template interface: :class:`Template` (a small ABC) and :class:`TurnFormat`.

A Functionary prompt format is described in two parts:

* how the *prompt* is laid out (system turns, user/tool turns, past assistant
  turns): written imperatively by each version module
  (``_render_system`` / ``_render_message``);
* what the model *generates* in an assistant turn: a frozen, declarative
  :class:`TurnFormat`.  The same description renders past assistant turns,
  drives the output parser (:mod:`functionary.parsing`), and is meant to be
  compiled into a decoding grammar later, so prompt, parser and grammar cannot
  drift apart.

The shape every format follows is::

    generation_prompt                       (end of the prompt)
    turn_prefix
    [text_prefix TEXT]                      (optional text block)
    (block_separator  CALL)*                (separator only between blocks)
    stop token

    CALL = call_prefix NAME name_terminator ARGS call_suffix
         | python_prefix CODE               (v3-llama3.1 only; code runs to the end)

For example v2 renders ``all\\n<|content|>Hi\\n<|from|>assistant\\n<|recipient|>
get_weather\\n<|content|>{...}<|stop|>`` after its generation prompt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from functionary.errors import RequestError
from functionary.messages import (
    PYTHON,
    Message,
    ToolCall,
    ToolChoice,
    ToolSet,
    normalize_messages,
    normalize_tool_choice,
    normalize_tools,
)
from functionary.parsing import StreamParser, accumulate

__all__ = ["TurnFormat", "Template", "DEFAULT_SYSTEM_MESSAGE", "CODE_INTERPRETER_SYSTEM_MESSAGE"]

#: The default system message of v1, v2 and v2.llama3 (no final period, as trained).
DEFAULT_SYSTEM_MESSAGE = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions. The assistant calls "
    "functions with appropriate input when necessary"
)

#: The system message that announces the code interpreter (v1 by extension, v2, v2.llama3, v3.llama3).
CODE_INTERPRETER_SYSTEM_MESSAGE = (
    "When you send a message containing Python code to python, it will be executed in a "
    "stateful Jupyter notebook environment. python will respond with the output of the "
    "execution or time out after 60.0 seconds. The drive at '/mnt/data' can be used to save "
    "and persist user files."
)


@dataclass(frozen=True)
class TurnFormat:
    """Declarative description of an assistant turn, as the model generates it.

    Attributes
    ----------
    generation_prompt : str
        What ``render(..., add_generation_prompt=True)`` appends before any
        tool_choice prefix; also the opening of every past assistant turn.
    turn_prefix : str
        What every generated turn starts with (``"\\n"`` for v1, else ``""``).
    text_prefix : str
        Opens a text block (``"all\\n<|content|>"`` for v2, ``"all\\n"`` for
        v3.llama3, ``""`` where text needs no header).
    text_recipient : str or None
        The recipient that means "text for the user" (``"all"``) in formats
        where every block starts with a recipient, else ``None``.
    block_separator : str
        Between two consecutive blocks (text→call or call→call): v2
        ``"\\n<|from|>assistant\\n<|recipient|>"``, v3.llama3 ``">>>"``, v1
        ``"\\n"``, else ``""``.
    call_prefix : str
        Opens a call, after the separator: ``<|START_OF_FUNCTION_CALL|>``,
        ``<|reserved_special_token_249|>``, ``<function=`` or ``""``.
    name_terminator : str
        Ends the function name: ``":\\n"``, ``"\\n<|content|>"``, ``"\\n"`` or
        ``">"``.  None of its characters can occur in a tool name.
    call_suffix : str
        Closes a call's arguments (``"</function>"`` for v3-llama3.1, else
        ``""``: the arguments run to the next block or the stop token).
    python_recipient : str or None
        The call name used for the code interpreter when its calls are ordinary
        blocks (``"python"``); ``None`` when a dedicated prefix is used.
    python_prefix : str or None
        Dedicated opener of a code-interpreter call whose raw code runs to the
        end of the turn (``"<|python_tag|>"`` for v3-llama3.1).
    stop_tokens_after_text : tuple of str
        Tokens that end a turn without calls; the first is the trained one.
    stop_tokens_after_calls : tuple of str
        Tokens that end a turn with calls; the first is the trained one
        (v3-llama3.1: ``<|eom_id|>``; v1: ``<|END_OF_FUNCTION_CALL|>``).
    parallel_calls : bool
        Whether a turn may hold more than one call (v1: no).
    text_after_calls : bool
        Whether a text block may follow a call in the trained format (only
        where every block has a recipient: v2, v3.llama3).
    """

    generation_prompt: str
    turn_prefix: str
    text_prefix: str
    text_recipient: str | None
    block_separator: str
    call_prefix: str
    name_terminator: str
    call_suffix: str
    python_recipient: str | None
    python_prefix: str | None
    stop_tokens_after_text: tuple[str, ...]
    stop_tokens_after_calls: tuple[str, ...]
    parallel_calls: bool
    text_after_calls: bool

    @property
    def recipient_first(self) -> bool:
        """Whether every block, text included, starts with a recipient name."""
        return self.text_recipient is not None

    @property
    def stop_tokens(self) -> tuple[str, ...]:
        """All stop tokens, trained ones first, without duplicates."""
        return tuple(dict.fromkeys(self.stop_tokens_after_text + self.stop_tokens_after_calls))

    @property
    def call_marker(self) -> str:
        """The text that announces a block after the first one (parsers look for it)."""
        return (self.block_separator + self.call_prefix).lstrip()

    def generation_prefix(self, tool_choice: Any = "auto") -> str:
        """The text forced after the generation prompt for ``tool_choice``.

        Follows the reference's table: ``auto`` → nothing; ``none`` → the text
        block opener where text has a recipient (``all\\n<|content|>``,
        ``all\\n``), else nothing; ``required`` → the call opener
        (``turn_prefix + call_prefix``, empty for v2/v3.llama3 which then do
        not enforce it without a grammar); a named tool → its full call header
        (``<function=NAME>``, ``NAME\\n``...), or the python opener for a named
        ``python`` in v3-llama3.1.

        Parameters
        ----------
        tool_choice : str, mapping or ToolChoice
            As accepted by :func:`functionary.messages.normalize_tool_choice`.

        Returns
        -------
        str
        """
        choice = normalize_tool_choice(tool_choice)
        if choice.mode == "none":
            return self.text_prefix if self.recipient_first else ""
        if choice.mode == "required":
            return self.turn_prefix + self.call_prefix
        if choice.mode == "named":
            name = choice.name or ""
            if name == PYTHON and self.python_prefix:
                return self.turn_prefix + self.python_prefix
            return self.turn_prefix + self.call_prefix + name + self.name_terminator
        return ""

    def format_call(self, name: str, arguments: str) -> str:
        """Render one call block (without separator), as generated."""
        if name == PYTHON and self.python_prefix:
            return self.python_prefix + arguments
        return self.call_prefix + name + self.name_terminator + arguments + self.call_suffix

    def format_output(self, content: str | None, calls: Iterable[ToolCall | tuple[str, str]] = ()) -> str:
        """Render what the model generates for a turn, stop token included.

        Parameters
        ----------
        content : str or None
            Text for the user (omitted when empty).
        calls : iterable of ToolCall or (name, arguments)
            The calls, in order.

        Returns
        -------
        str
            Text that, appended to ``generation_prompt``, is a complete turn.
        """
        pairs = [(c.name, c.arguments) if isinstance(c, ToolCall) else tuple(c) for c in calls]
        blocks = [self.text_prefix + content] if content else []
        blocks += [self.format_call(name, args) for name, args in pairs]
        stop = self.stop_tokens_after_calls[0] if pairs else self.stop_tokens_after_text[0]
        return self.turn_prefix + self.block_separator.join(blocks) + stop


class Template(ABC):
    """A Functionary prompt format: prompt rendering plus output parsing.

    Subclasses set :attr:`version` and implement three methods:
    :meth:`turn_format`, :meth:`_render_system` and :meth:`_render_message`.
    Everything else (tool/tool_choice validation, generation prompt and
    prefix, batch and streaming parsing) is shared and driven by the
    :class:`TurnFormat`.  Instances are stateless and shared.

    Attributes
    ----------
    version : str
        The reference's version name (``"v2"``, ``"v3-llama3.1"``...).
    models : tuple of str
        Functionary checkpoints trained on this format (documentation).
    """

    version: ClassVar[str]
    models: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------ to implement

    @abstractmethod
    def turn_format(self) -> TurnFormat:
        """Return the declarative description of this format's assistant turn."""

    @abstractmethod
    def _render_system(self, tools: ToolSet) -> str:
        """Render the fixed opening of the prompt (tools, default messages)."""

    @abstractmethod
    def _render_message(self, message: Message, tools: ToolSet) -> str:
        """Render one normalised message."""

    # ---------------------------------------------------------------- shared

    @property
    def stop_tokens(self) -> list[str]:
        """Strings that end generation (``stop`` for the inference engine)."""
        return list(self.turn_format().stop_tokens)

    def render(
        self,
        messages: Sequence[Any],
        tools: Sequence[Any] | None = None,
        tool_choice: Any = "auto",
        add_generation_prompt: bool = False,
    ) -> str:
        """Render a conversation into the prompt text.

        No BOS token is written (the tokenizer adds it).

        Parameters
        ----------
        messages : sequence
            OpenAI messages; legacy ``role: "function"`` and ``function_call``
            fields are accepted.  Tool results are reordered by
            ``tool_call_id`` to follow the calls.
        tools : sequence or None, optional
            ``tools`` or legacy ``functions``; ``{"type": "code_interpreter"}``
            enables python calls.
        tool_choice : str, mapping or None, optional
            ``"auto"``, ``"none"`` (tools are removed from the prompt),
            ``"required"``, ``{"type": "function", "function": {"name": N}}``
            or legacy ``{"name": N}`` (only that tool is kept in the prompt).
        add_generation_prompt : bool, optional
            Append the assistant opening and the tool_choice prefix
            (:meth:`TurnFormat.generation_prefix`).

        Returns
        -------
        str

        Raises
        ------
        RequestError
            For invalid messages, tools or tool_choice.
        """
        toolset, choice = self._request(tools, tool_choice, require_tools=True)
        shown = (toolset or ToolSet()).restrict(choice)
        parts = [self._render_system(shown)]
        parts += [self._render_message(m, shown) for m in normalize_messages(messages)]
        if add_generation_prompt:
            fmt = self.turn_format()
            parts.append(fmt.generation_prompt + fmt.generation_prefix(choice))
        return "".join(parts)

    def stream_parser(self, tool_choice: Any = "auto", tools: Sequence[Any] | None = None) -> StreamParser:
        """Create a parser for one streamed generation.

        Parameters
        ----------
        tool_choice : str, mapping or None, optional
            The request's tool_choice (its generation prefix is replayed into
            the parser, since the model does not generate it).
        tools : sequence or None, optional
            The request's tools.  With tools, only their names (plus the text
            recipient, and ``python`` when the code interpreter is on) open a
            call; with ``None`` any well-formed name does.  Legacy
            ``functions`` make the chunks use ``function_call``.

        Returns
        -------
        StreamParser
            ``feed(delta) -> list[dict]`` and ``finish() -> list[dict]``
            returning ``chat.completion.chunk`` choices.

        Raises
        ------
        RequestError
            For invalid tools or tool_choice (never for model output).
        """
        toolset, choice = self._request(tools, tool_choice, require_tools=False)
        return StreamParser(self.turn_format(), tool_choice=choice, tools=toolset)

    def parse(self, text: str, tool_choice: Any = "auto", tools: Sequence[Any] | None = None) -> dict[str, Any]:
        """Parse the text generated after the prompt into an assistant message.

        ``text`` is exactly what the model generated after
        ``render(..., add_generation_prompt=True, tool_choice=tool_choice)``,
        with or without its stop token.  Parsing feeds it through the same
        state machine as :meth:`stream_parser`, so streaming and batch results
        agree by construction.

        Parameters
        ----------
        text : str
            The generated text.
        tool_choice : str, mapping or None, optional
            The request's tool_choice.
        tools : sequence or None, optional
            The request's tools (see :meth:`stream_parser`).

        Returns
        -------
        dict
            ``{"role": "assistant", "content": str | None, "tool_calls":
            [{"id", "type": "function", "function": {"name", "arguments"}}] |
            None, "finish_reason": "tool_calls" | "stop"}``; content and
            arguments are stripped, arguments are never re-serialised (raw
            code for python).  For legacy requests (``tools`` given as a
            ``functions`` list, or ``tool_choice`` in the ``function_call``
            form ``{"name": N}``): ``{"role", "content", "function_call",
            "finish_reason"}`` with the first call only and
            ``"function_call"`` as finish reason when a call was parsed
            (see :func:`functionary.messages.to_legacy_function_call`).

        Raises
        ------
        RequestError
            For invalid tools or tool_choice.  Malformed output never raises:
            it becomes text and is logged.
        """
        parser = self.stream_parser(tool_choice, tools)
        chunks = parser.feed(text) + parser.finish()
        return accumulate(chunks, legacy=parser.legacy)

    # --------------------------------------------------------------- helpers

    def _request(self, tools: Any, tool_choice: Any, *, require_tools: bool) -> tuple[ToolSet | None, ToolChoice]:
        toolset = normalize_tools(tools)
        choice = normalize_tool_choice(tool_choice, toolset, require_tools=require_tools)
        reserved = self.turn_format().text_recipient
        if toolset is not None and reserved in toolset.names:
            raise RequestError(
                f"A function cannot be named {reserved!r} with the {self.version} template: "
                "it is the recipient of text messages.",
                param="tools",
            )
        if choice.mode == "named" and choice.name == reserved:
            raise RequestError(f"Invalid function name {reserved!r} in 'tool_choice'.", param="tool_choice")
        return toolset, choice

    def _assistant_turn(self, message: Message) -> str:
        """A past assistant turn: generation prompt + generated output, or ``""`` if empty."""
        if not message.content and not message.tool_calls:
            return ""
        fmt = self.turn_format()
        return fmt.generation_prompt + fmt.format_output(message.content, message.tool_calls)

    def _tool_name(self, message: Message) -> str:
        """The function name of a tool result, required by formats that print it."""
        if message.name is None:
            raise RequestError(
                f"The {self.version} template needs the function name of every tool message: "
                "give 'name', or a 'tool_call_id' matching a call of the previous assistant message.",
                param="messages",
            )
        return message.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} version={self.version!r}>"


LLAMA3_EOT = "<|eot_id|>"


def llama3_turn(role: str, content: str) -> str:
    """One Llama 3 header turn: ``<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>``."""
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}{LLAMA3_EOT}"
