"""v3.llama3: functionary-medium-v3.0, small-v3.2 and medium-v3.2 (``>>>recipient`` blocks).

* One system turn: a fixed instruction (``You are capable of executing
  available function(s) if required.`` ... ``Respond in this format:\\n
  >>>${recipient}\\n${content}\\nAvailable functions:\\n``) and the TypeScript
  block; no default system message.  With the code interpreter a second
  system turn holds the code-interpreter message.
* Tool results: ``...tool<|end_header_id|>\\n\\n{result}<|eot_id|>`` without a
  name; their order (by ``tool_call_id``) is what ties them to the calls.
* Assistant: ``>>>all\\n{text}`` and ``>>>{name}\\n{args}`` blocks,
  concatenated, then ``<|eot_id|>``.
* Generation prompt: ``<|start_header_id|>assistant<|end_header_id|>\\n\\n>>>``,
  so the model's first output is a recipient.  Stops: ``<|eot_id|>``,
  ``<|end_of_text|>``.

``>>>`` is ordinary text for the tokenizer, so it can occur in code or text;
the parser only treats ``>>>`` + a valid recipient + ``\\n`` as a new block
(see :mod:`functionary.parsing`).
"""

from __future__ import annotations

from functionary.messages import Message, ToolSet
from functionary.templates.base import (
    CODE_INTERPRETER_SYSTEM_MESSAGE, LLAMA3_EOT, Template, TurnFormat, llama3_turn,
)
from functionary.typescript import functions_to_typescript

__all__ = ["V3Llama3Template", "SYSTEM_PREAMBLE"]

EOT = LLAMA3_EOT
END_OF_TEXT = "<|end_of_text|>"

#: Fixed system text before the TypeScript block (``${...}`` are literal).
SYSTEM_PREAMBLE = (
    "You are capable of executing available function(s) if required.\n"
    "Only execute function(s) when absolutely necessary.\n"
    "Ask for the required input to:recipient==all\n"
    "Use JSON for function arguments.\n"
    "Respond in this format:\n"
    ">>>${recipient}\n"
    "${content}\n"
    "Available functions:\n"
)

_FORMAT = TurnFormat(
    generation_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n>>>",
    turn_prefix="",
    text_prefix="all\n",
    text_recipient="all",
    block_separator=">>>",
    call_prefix="",
    name_terminator="\n",
    call_suffix="",
    python_recipient="python",
    python_prefix=None,
    stop_tokens_after_text=(EOT, END_OF_TEXT),
    stop_tokens_after_calls=(EOT, END_OF_TEXT),
    parallel_calls=True,
    text_after_calls=True,
)


class V3Llama3Template(Template):
    """The ``>>>recipient`` format (see the module docstring)."""

    version = "v3.llama3"
    models = (
        "meetkai/functionary-medium-v3.0",
        "meetkai/functionary-small-v3.2",
        "meetkai/functionary-medium-v3.2",
    )

    def turn_format(self) -> TurnFormat:
        return _FORMAT

    def _render_system(self, tools: ToolSet) -> str:
        out = llama3_turn("system", SYSTEM_PREAMBLE + functions_to_typescript(tools.function_dicts()))
        if tools.code_interpreter:
            out += llama3_turn("system", CODE_INTERPRETER_SYSTEM_MESSAGE)
        return out

    def _render_message(self, message: Message, tools: ToolSet) -> str:
        if message.role in ("system", "user", "tool"):
            return llama3_turn(message.role, message.content or "")
        return self._assistant_turn(message)
