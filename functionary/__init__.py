"""Functionary prompt formats, output parsers and (elsewhere) constrained decoding.

Public entry points::

    import functionary

    template = functionary.get_template("v3.llama3")   # or detect_template(tokenizer)
    prompt = template.render(messages, tools, tool_choice="auto", add_generation_prompt=True)
    message = template.parse(generated_text, tool_choice="auto", tools=tools)

Importing this package is cheap: it pulls in no torch/transformers/jinja2
(tokenizer objects are only duck-typed).
"""

from __future__ import annotations

from functionary.errors import FunctionaryError, RequestError, TemplateError
from functionary.templates import Template, TurnFormat, available_versions, detect_template, get_template

# Other modules (constraints, server, ...) add their exports below; keep every
# import here light (no torch/transformers at import time).

__all__ = [
    "FunctionaryError",
    "RequestError",
    "TemplateError",
    "Template",
    "TurnFormat",
    "available_versions",
    "detect_template",
    "get_template",
]
