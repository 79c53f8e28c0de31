"""v1: functionary-7b-v1.4 (added tokens ``<|START_OF_FUNCTION_CALL|>`` ...).

Prompt::

    system:\\n{TypeScript}<|END_OF_SYSTEM|>\\n
    system:\\n{DEFAULT or CODE-INTERPRETER}<|END_OF_SYSTEM|>\\n
    user:\\n{content}<|END_OF_USER|>\\n
    assistant:\\n{content}<|END_OF_ASSISTANT|>\\n
    assistant:\\n[{content}\\n]<|START_OF_FUNCTION_CALL|>{name}:\\n{args}<|END_OF_FUNCTION_CALL|>\\n
    function name={name}:\\n{result}<|END_OF_FUNCTION_RESULT|>\\n

The generation prompt is ``assistant:``; the model then writes ``\\n`` and its
turn.  One call per turn.

Extensions beyond the reference (which had no tool_choice prefixes, no code
interpreter and no parallel calls for v1):

* tool_choice prefixes follow the shared rule: ``required`` →
  ``\\n<|START_OF_FUNCTION_CALL|>``, named → ``\\n<|START_OF_FUNCTION_CALL|>
  {name}:\\n``, ``none`` → nothing (the tools are removed from the prompt);
* ``{"type": "code_interpreter"}`` replaces the default system message with
  the code-interpreter one, like the later formats, and python calls use the
  ``python`` name with raw code;
* an assistant message with several ``tool_calls`` is rendered as consecutive
  single-call assistant turns (the first one carries the text).
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

__all__ = ["V1Template"]

START_OF_FUNCTION_CALL = "<|START_OF_FUNCTION_CALL|>"
END_OF_SYSTEM = "<|END_OF_SYSTEM|>"
END_OF_USER = "<|END_OF_USER|>"
END_OF_ASSISTANT = "<|END_OF_ASSISTANT|>"
END_OF_FUNCTION_RESULT = "<|END_OF_FUNCTION_RESULT|>"
END_OF_FUNCTION_CALL = "<|END_OF_FUNCTION_CALL|>"

_FORMAT = TurnFormat(
    generation_prompt="assistant:",
    turn_prefix="\n",
    text_prefix="",
    text_recipient=None,
    block_separator="\n",
    call_prefix=START_OF_FUNCTION_CALL,
    name_terminator=":\n",
    call_suffix="",
    python_recipient="python",
    python_prefix=None,
    stop_tokens_after_text=(END_OF_ASSISTANT,),
    stop_tokens_after_calls=(END_OF_FUNCTION_CALL,),
    parallel_calls=False,
    text_after_calls=False,
)


class V1Template(Template):
    """functionary-7b-v1.4 format (see the module docstring)."""

    version = "v1"
    models = ("meetkai/functionary-7b-v1.4",)

    def turn_format(self) -> TurnFormat:
        return _FORMAT

    def _render_system(self, tools: ToolSet) -> str:
        second = CODE_INTERPRETER_SYSTEM_MESSAGE if tools.code_interpreter else DEFAULT_SYSTEM_MESSAGE
        ts = functions_to_typescript(tools.function_dicts())
        return f"system:\n{ts}{END_OF_SYSTEM}\nsystem:\n{second}{END_OF_SYSTEM}\n"

    def _render_message(self, message: Message, tools: ToolSet) -> str:
        if message.role == "system":
            return f"system:\n{message.content}{END_OF_SYSTEM}\n"
        if message.role == "user":
            return f"user:\n{message.content}{END_OF_USER}\n"
        if message.role == "tool":
            return f"function name={self._tool_name(message)}:\n{message.content}{END_OF_FUNCTION_RESULT}\n"
        if len(message.tool_calls) <= 1:
            turn = self._assistant_turn(message)
            return turn + "\n" if turn else ""
        first = Message("assistant", message.content, message.tool_calls[:1])
        rest = [Message("assistant", None, (call,)) for call in message.tool_calls[1:]]
        return "".join(self._assistant_turn(m) + "\n" for m in [first, *rest])
