"""v2: functionary-7b-v2 ... small/medium-v2.4 (tokens ``<|from|>`` ``<|recipient|>`` ``<|content|>`` ``<|stop|>``).

Every block is ``<|from|>{role}\\n<|recipient|>{recipient}\\n<|content|>{content}``
and blocks are joined with ``\\n``:

* system: the TypeScript block (recipient ``all``, present even without
  tools), then the default system message, or the code-interpreter one when
  ``{"type": "code_interpreter"}`` is among the tools;
* user/system messages: recipient ``all``;
* assistant: a text block (recipient ``all``) if there is text, one block per
  call (recipient = function name, ``python`` for code), then one ``<|stop|>``;
* tool results: ``<|from|>{function name}\\n<|recipient|>all\\n<|content|>...``.

The generation prompt is ``\\n<|from|>assistant\\n<|recipient|>``, so the
model's first output is a recipient.  The reference's Jinja template leaks
blank lines (``\\n\\n<|from|>``); this renderer writes the clean trained form.
"""

from __future__ import annotations

from functionary.messages import Message, ToolSet
from functionary.templates.base import (
    CODE_INTERPRETER_SYSTEM_MESSAGE,
    DEFAULT_SYSTEM_MESSAGE,
    Template,
    TurnFormat,
)
from functionary.typescript import functions_to_typescript

__all__ = ["V2Template"]

FROM = "<|from|>"
RECIPIENT = "<|recipient|>"
CONTENT = "<|content|>"
STOP = "<|stop|>"

_FORMAT = TurnFormat(
    generation_prompt=f"\n{FROM}assistant\n{RECIPIENT}",
    turn_prefix="",
    text_prefix=f"all\n{CONTENT}",
    text_recipient="all",
    block_separator=f"\n{FROM}assistant\n{RECIPIENT}",
    call_prefix="",
    name_terminator=f"\n{CONTENT}",
    call_suffix="",
    python_recipient="python",
    python_prefix=None,
    stop_tokens_after_text=(STOP,),
    stop_tokens_after_calls=(STOP,),
    parallel_calls=True,
    text_after_calls=True,
)


def _block(sender: str, content: str, recipient: str = "all") -> str:
    return f"{FROM}{sender}\n{RECIPIENT}{recipient}\n{CONTENT}{content}"


class V2Template(Template):
    """The ``<|from|>/<|recipient|>/<|content|>`` format (see the module docstring)."""

    version = "v2"
    models = (
        "meetkai/functionary-7b-v2",
        "meetkai/functionary-7b-v2.1",
        "meetkai/functionary-small-v2.2",
        "meetkai/functionary-medium-v2.2",
        "meetkai/functionary-small-v2.4",
        "meetkai/functionary-medium-v2.4",
    )

    def turn_format(self) -> TurnFormat:
        return _FORMAT

    def _render_system(self, tools: ToolSet) -> str:
        second = CODE_INTERPRETER_SYSTEM_MESSAGE if tools.code_interpreter else DEFAULT_SYSTEM_MESSAGE
        return _block("system", functions_to_typescript(tools.function_dicts())) + "\n" + _block("system", second)

    def _render_message(self, message: Message, tools: ToolSet) -> str:
        if message.role in ("system", "user"):
            return "\n" + _block(message.role, message.content or "")
        if message.role == "tool":
            return "\n" + _block(self._tool_name(message), message.content or "")
        return self._assistant_turn(message)
