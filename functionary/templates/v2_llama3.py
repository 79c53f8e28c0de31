"""v2.llama3: functionary-small-v2.5 (Llama-3 tokenizer, ``<|reserved_special_token_249|>`` calls).

* Turns are ``<|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>``.
* System: the TypeScript block, then the default system message or the
  code-interpreter one, as two system turns.
* Tool results: ``...tool<|end_header_id|>\\n\\nname={name}\\n{result}<|eot_id|>``.
* Assistant: the text, then ``<|reserved_special_token_249|>{name}\\n{args}``
  per call (token id 128254, no separator between calls), then ``<|eot_id|>``.
* Generation prompt: ``<|start_header_id|>assistant<|end_header_id|>\\n\\n``.
  Stops: ``<|eot_id|>``, ``<|end_of_text|>``.
"""

from __future__ import annotations

from functionary.messages import Message, ToolSet
from functionary.templates.base import (
    CODE_INTERPRETER_SYSTEM_MESSAGE,
    DEFAULT_SYSTEM_MESSAGE,
    Template,
    TurnFormat,
    LLAMA3_EOT,
    llama3_turn,
)
from functionary.typescript import functions_to_typescript

__all__ = ["V2Llama3Template", "FUNCTION_SEPARATOR"]

FUNCTION_SEPARATOR = "<|reserved_special_token_249|>"
EOT = LLAMA3_EOT
END_OF_TEXT = "<|end_of_text|>"

_FORMAT = TurnFormat(
    generation_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n",
    turn_prefix="",
    text_prefix="",
    text_recipient=None,
    block_separator="",
    call_prefix=FUNCTION_SEPARATOR,
    name_terminator="\n",
    call_suffix="",
    python_recipient="python",
    python_prefix=None,
    stop_tokens_after_text=(EOT, END_OF_TEXT),
    stop_tokens_after_calls=(EOT, END_OF_TEXT),
    parallel_calls=True,
    text_after_calls=False,
)


class V2Llama3Template(Template):
    """functionary-small-v2.5 format (see the module docstring)."""

    version = "v2.llama3"
    models = ("meetkai/functionary-small-v2.5",)

    def turn_format(self) -> TurnFormat:
        return _FORMAT

    def _render_system(self, tools: ToolSet) -> str:
        second = CODE_INTERPRETER_SYSTEM_MESSAGE if tools.code_interpreter else DEFAULT_SYSTEM_MESSAGE
        return llama3_turn("system", functions_to_typescript(tools.function_dicts())) + llama3_turn("system", second)

    def _render_message(self, message: Message, tools: ToolSet) -> str:
        if message.role in ("system", "user"):
            return llama3_turn(message.role, message.content or "")
        if message.role == "tool":
            return llama3_turn("tool", f"name={self._tool_name(message)}\n{message.content or ''}")
        return self._assistant_turn(message)
