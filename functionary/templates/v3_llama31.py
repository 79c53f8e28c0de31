"""v3-llama3.1: functionary-small-v3.1 and medium-v3.1 (Meta's Llama 3.1 tool format).

* System turn: ``Environment: ipython\\n\\n`` when the code interpreter is on
  (else ``\\n``), ``Cutting Knowledge Date: December 2023\\n\\n``, then, if
  there are functions, ``\\nYou have access to the following functions:\\n\\n``
  and per function ``Use the function '{name}' to '{description}'\\n{JSON}\\n\\n``
  (the function object as given, ``json.dumps`` with default separators and
  no ASCII escaping), then Meta's instruction block verbatim (typos included),
  then ``<|eot_id|>``.  No TypeScript.
* Tool results use the ``ipython`` role, without a name.
* Assistant: the text, then ``<function={name}>{args}</function>`` per call or
  ``<|python_tag|>{code}`` for python; the turn ends with ``<|eom_id|>`` when
  it holds a call, else ``<|eot_id|>``.
* Generation prompt: ``<|start_header_id|>assistant<|end_header_id|>\\n\\n``.
  Stops: ``<|eot_id|>``, ``<|end_of_text|>``, ``<|eom_id|>``.

A missing description prints as ``''`` (the reference's Jinja would fail).
Local ``$ref`` pointers in the parameters are resolved before listing, as the
reference did (with jsonref).
"""

from __future__ import annotations

import json

from functionary.messages import Message, ToolSet
from functionary.templates.base import LLAMA3_EOT, Template, TurnFormat, llama3_turn
from functionary.typescript import resolve_refs

__all__ = ["V3Llama31Template", "TOOL_INSTRUCTIONS"]

EOT = LLAMA3_EOT
EOM = "<|eom_id|>"
END_OF_TEXT = "<|end_of_text|>"
PYTHON_TAG = "<|python_tag|>"

#: Meta's instructions, verbatim (including "If a you choose" and the brave_search line).
TOOL_INSTRUCTIONS = (
    "\nThink very carefully before calling functions.\n"
    "If a you choose to call a function ONLY reply in the following format:\n"
    "<{start_tag}={function_name}>{parameters}{end_tag}\n"
    "where\n\n"
    "start_tag => `<function`\n"
    "parameters => a JSON dict with the function argument name as key and function argument value as value.\n"
    "end_tag => `</function>`\n\n"
    "Here is an example,\n"
    '<function=example_function_name>{"example_name": "example_value"}</function>\n\n'
    "Reminder:\n"
    "- If looking for real time information use relevant functions before falling back to brave_search\n"
    "- Function calls MUST follow the specified format, start with <function= and end with </function>\n"
    "- Required parameters MUST be specified\n"
    "- Only call one function at a time\n"
    "- Put the entire function call reply on one line\n\n"
)

_FORMAT = TurnFormat(
    generation_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n",
    turn_prefix="",
    text_prefix="",
    text_recipient=None,
    block_separator="",
    call_prefix="<function=",
    name_terminator=">",
    call_suffix="</function>",
    python_recipient=None,
    python_prefix=PYTHON_TAG,
    stop_tokens_after_text=(EOT, END_OF_TEXT),
    stop_tokens_after_calls=(EOM,),
    parallel_calls=True,
    text_after_calls=False,
)


class V3Llama31Template(Template):
    """Meta Llama 3.1 style format (see the module docstring)."""

    version = "v3-llama3.1"
    models = ("meetkai/functionary-small-v3.1", "meetkai/functionary-medium-v3.1")

    def turn_format(self) -> TurnFormat:
        return _FORMAT

    def _render_system(self, tools: ToolSet) -> str:
        out = "Environment: ipython\n\n" if tools.code_interpreter else "\n"
        out += "Cutting Knowledge Date: December 2023\n\n"
        if tools.functions:
            out += "\nYou have access to the following functions:\n\n"
            for fn in tools.functions:
                raw = dict(fn.raw)
                if isinstance(raw.get("parameters"), dict):
                    raw["parameters"] = resolve_refs(raw["parameters"])
                listing = json.dumps(raw, ensure_ascii=False)
                out += f"Use the function '{fn.name}' to '{fn.description}'\n{listing}\n\n"
            out += TOOL_INSTRUCTIONS
        return llama3_turn("system", out)

    def _render_message(self, message: Message, tools: ToolSet) -> str:
        if message.role in ("system", "user"):
            return llama3_turn(message.role, message.content or "")
        if message.role == "tool":
            return llama3_turn("ipython", message.content or "")
        return self._assistant_turn(message)
