"""Batch parsing of model output, for every template and every request-handling case."""

from __future__ import annotations

import logging
import re

import pytest

from functionary import RequestError, get_template
from functionary.messages import to_legacy_function_call

VERSIONS = ["v1", "v2", "v2.llama3", "v3.llama3", "v3-llama3.1"]

FUNCTIONS = [
    {"name": "get_weather", "description": "Get the weather",
     "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}},
    {"name": "get_weather_forecast", "description": "Forecast",
     "parameters": {"type": "object", "properties": {"days": {"type": "integer"}}}},
]
TOOLS = [{"type": "function", "function": f} for f in FUNCTIONS]
TOOLS_CI = TOOLS + [{"type": "code_interpreter"}]
USER = [{"role": "user", "content": "How are you?"}]
TEXT = "Normal text generation"
ARGS = ['{"location": "Istanbul"}', '{"location": "Singapore"}']
CODE = "from datetime import date\n# Find today's date\ntoday = date.today()\ntoday"
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def _message(content, calls):
    msg = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]
    return msg


def model_output(version, content, calls, tools, tool_choice):
    """What the model generates after the prompt, derived from the rendered conversation."""
    t = get_template(version)
    prompt = t.render(USER, tools, tool_choice=tool_choice, add_generation_prompt=True)
    full = t.render(USER + [_message(content, calls)], tools, tool_choice=tool_choice)
    assert full.startswith(prompt)
    out = full[len(prompt):]
    return out[:-1] if version == "v1" else out  # v1 ends every message with "\n"


# (name, tools, tool_choice, content, calls generated, expected content, expected calls, finish)
CASES = [
    ("text", TOOLS, "auto", TEXT, [], TEXT, [], "stop"),
    ("one call", TOOLS, "auto", None, [("get_weather", ARGS[0])], None, [("get_weather", ARGS[0])], "tool_calls"),
    ("parallel", TOOLS, "auto", None, [("get_weather", ARGS[0]), ("get_weather", ARGS[1])], None,
     [("get_weather", ARGS[0]), ("get_weather", ARGS[1])], "tool_calls"),
    ("text then call", TOOLS, "auto", TEXT, [("get_weather", ARGS[0])], TEXT, [("get_weather", ARGS[0])],
     "tool_calls"),
    ("none", TOOLS, "none", TEXT, [], TEXT, [], "stop"),
    ("named", TOOLS, NAMED, None, [("get_weather", ARGS[0])], None, [("get_weather", ARGS[0])], "tool_calls"),
    ("required parallel", TOOLS, "required", None, [("get_weather", ARGS[0]), ("get_weather_forecast", "{}")],
     None, [("get_weather", ARGS[0]), ("get_weather_forecast", "{}")], "tool_calls"),
    ("python", TOOLS_CI, "auto", None, [("python", CODE)], None, [("python", CODE)], "tool_calls"),
    ("text then python", TOOLS_CI, "auto", TEXT, [("python", CODE)], TEXT, [("python", CODE)], "tool_calls"),
]


def _case(version, case):
    name, tools, choice, content, calls, exp_content, exp_calls, finish = case
    if version == "v1" and len(calls) > 1:  # one call per turn: the model stops after the first
        calls, exp_calls = calls[:1], exp_calls[:1]
    return name, tools, choice, content, calls, exp_content, exp_calls, finish


def _calls(result):
    return [(c["function"]["name"], c["function"]["arguments"]) for c in result["tool_calls"] or []]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("version", VERSIONS)
def test_request_handling_cases(version, case):
    name, tools, choice, content, calls, exp_content, exp_calls, finish = _case(version, case)
    t = get_template(version)
    out = model_output(version, content, calls, tools, choice)
    stop = next(s for s in t.stop_tokens if out.endswith(s))
    for text in (out, out[: -len(stop)]):  # with and without the stop token
        for tool_list in (tools, None):
            result = t.parse(text, tool_choice=choice, tools=tool_list)
            assert set(result) == {"role", "content", "tool_calls", "finish_reason"}
            assert result["role"] == "assistant"
            assert result["content"] == exp_content
            assert _calls(result) == exp_calls
            assert result["finish_reason"] == finish
            for call in result["tool_calls"] or []:
                assert re.fullmatch(r"call_[A-Za-z0-9]{24}", call["id"])
                assert call["type"] == "function"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("n_calls", [1, 2])
def test_legacy_functions_mode(version, n_calls):
    t = get_template(version)
    calls = [("get_weather", a) for a in ARGS[:n_calls]]
    if version == "v1":
        calls = calls[:1]
    for choice in ("auto", {"name": "get_weather"}):
        out = model_output(version, None, calls, FUNCTIONS, choice)
        result = t.parse(out, tool_choice=choice, tools=FUNCTIONS)
        assert result == {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "get_weather", "arguments": ARGS[0]},
            "finish_reason": "function_call",
        }
    text = t.parse(model_output(version, TEXT, [], FUNCTIONS, "auto"), tools=FUNCTIONS)
    assert text == {"role": "assistant", "content": TEXT, "function_call": None, "finish_reason": "stop"}


def test_legacy_helper_on_messages_and_chunks():
    msg = {"role": "assistant", "content": "x", "finish_reason": "tool_calls", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "1"}},
        {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "2"}},
    ]}
    assert to_legacy_function_call(msg) == {
        "role": "assistant", "content": "x", "function_call": {"name": "a", "arguments": "1"},
        "finish_reason": "function_call"}
    later = {"index": 0, "finish_reason": None,
             "delta": {"tool_calls": [{"index": 1, "function": {"arguments": "2"}}]}}
    assert to_legacy_function_call(later) is None
    first = {"index": 0, "finish_reason": None, "delta": {"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "a", "arguments": ""}}]}}
    assert to_legacy_function_call(first)["delta"] == {"role": "assistant",
                                                       "function_call": {"name": "a", "arguments": ""}}


# --------------------------------------------------------------- reference flaws


def test_v3_literal_separators_in_text_and_code_do_not_break_the_parse():
    t = get_template("v3.llama3")
    out = ("all\nIn Python's REPL the prompt is >>> and a >>>b\nc too."
           ">>>python\nprint('>>>all')\nx = '>>>get_weather'\n>>>y\n"
           ">>>get_weather\n{\"location\": \">>>all\"}<|eot_id|>")
    result = t.parse(out, tools=TOOLS_CI)
    assert result["content"] == "In Python's REPL the prompt is >>> and a >>>b\nc too."
    assert _calls(result) == [
        ("python", "print('>>>all')\nx = '>>>get_weather'\n>>>y"),
        ("get_weather", '{"location": ">>>all"}'),
    ]


@pytest.mark.parametrize(
    ("version", "out", "content"),
    [
        ("v3.llama3", "all\nx>>>>get_weather\n{}", "x>"),
        ("v3-llama3.1", "<function=<function=get_weather>{}</function>", "<function="),
        ("v2.llama3", "a<|reserved_special_token_249|><|reserved_special_token_249|>get_weather\n{}",
         "a<|reserved_special_token_249|>"),
    ],
)
def test_overlapping_markers_still_find_the_real_call(version, out, content):
    for tools in (TOOLS, None):
        result = get_template(version).parse(out, tools=tools)
        assert result["content"] == content
        assert _calls(result) == [("get_weather", "{}")]


def test_v3_rule_without_tools():
    """With tools=None any well-formed name followed by a newline opens a block."""
    t = get_template("v3.llama3")
    out = "all\nsee >>>foo bar and >>>x.y-z\n{}"
    assert _calls(t.parse(out)) == [("x.y-z", "{}")]
    assert t.parse(out)["content"] == "see >>>foo bar and"
    assert t.parse(out, tools=TOOLS) == {"role": "assistant", "content": out[4:], "tool_calls": None,
                                         "finish_reason": "stop"}


def test_v3_python_is_a_call_only_with_the_code_interpreter():
    t = get_template("v3.llama3")
    out = "all\nhi>>>python\n1+1"
    assert _calls(t.parse(out, tools=TOOLS_CI)) == [("python", "1+1")]
    assert _calls(t.parse(out)) == [("python", "1+1")]
    assert t.parse(out, tools=TOOLS)["content"] == "hi>>>python\n1+1"


def test_v31_literal_function_tag_in_text():
    t = get_template("v3-llama3.1")
    out = 'Write <function=name>{...}</function> to call.<function=get_weather>{"location": "A"}</function>'
    result = t.parse(out, tools=TOOLS)
    assert result["content"] == "Write <function=name>{...}</function> to call."
    assert _calls(result) == [("get_weather", '{"location": "A"}')]
    code = "<|python_tag|>s = '<function=get_weather>{}</function>'<|eom_id|>"
    assert _calls(t.parse(code, tools=TOOLS_CI)) == [("python", "s = '<function=get_weather>{}</function>'")]


@pytest.mark.parametrize("version", VERSIONS)
def test_prefix_sharing_tool_names(version):
    t = get_template(version)
    for first, second in (("get_weather", "get_weather_forecast"), ("get_weather_forecast", "get_weather")):
        calls = [(first, "{}")] if version == "v1" else [(first, "{}"), (second, '{"days": 2}')]
        out = model_output(version, None, calls, TOOLS, "auto")
        for tools in (TOOLS, None):
            assert _calls(t.parse(out, tools=tools)) == calls


@pytest.mark.parametrize(
    ("version", "out"),
    [
        ("v2.llama3", ' \n <|reserved_special_token_249|>get_weather\n{"location": "A"}<|eot_id|>'),
        ("v3-llama3.1", ' \n<function=get_weather>{"location": "A"}</function><|eom_id|>'),
        ("v3.llama3", 'all\n \n>>>get_weather\n{"location": "A"}<|eot_id|>'),
        ("v2", 'all\n<|content|> \n\n<|from|>assistant\n<|recipient|>get_weather\n<|content|>{"location": "A"}'),
        ("v1", '\n  \n<|START_OF_FUNCTION_CALL|>get_weather:\n{"location": "A"}<|END_OF_FUNCTION_CALL|>'),
    ],
)
def test_whitespace_only_preamble(version, out):
    result = get_template(version).parse(out, tools=TOOLS)
    assert result["content"] is None
    assert _calls(result) == [("get_weather", '{"location": "A"}')]


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_function_names_stay_text(version, caplog):
    t = get_template(version)
    out = model_output(version, None, [("delete_everything", "{}")], [{"name": "delete_everything"}], "auto")
    with caplog.at_level(logging.DEBUG, logger="functionary.parsing"):
        result = t.parse(out, tools=TOOLS)
    assert result["tool_calls"] is None and result["finish_reason"] == "stop"
    assert "delete_everything" in result["content"]
    assert any("kept as text" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("version", ["v2", "v3.llama3"])
def test_missing_first_recipient_is_text_and_logged(version, caplog):
    with caplog.at_level(logging.WARNING, logger="functionary.parsing"):
        result = get_template(version).parse("Hello there, how can I help?", tools=TOOLS)
    assert result["content"] == "Hello there, how can I help?"
    assert result["tool_calls"] is None
    assert any(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "garbage",
    ["", "   ", ">>>", "<function=", "<function=get_weather", "<|reserved_special_token_249|>",
     "<|START_OF_FUNCTION_CALL|>:", "<|from|>user\n", "get_weather", "all\n<|content|>", "<|python_tag|>",
     "<|eot_id|>trailing", "\x00\udcff", "}{" * 50],
)
def test_malformed_output_never_raises(version, garbage):
    t = get_template(version)
    for tools in (TOOLS_CI, None):
        for choice in ("auto", "none", "required", NAMED):
            result = t.parse(garbage, tool_choice=choice, tools=tools)
            assert result["role"] == "assistant"
            assert result["finish_reason"] in ("stop", "tool_calls")
            assert result["content"] is None or result["content"] == result["content"].strip()


def test_tool_choice_none_never_yields_calls():
    t = get_template("v3-llama3.1")
    out = 'Sure <function=get_weather>{"location": "A"}</function><|eot_id|>'
    assert t.parse(out, tool_choice="none", tools=TOOLS) == {
        "role": "assistant", "content": 'Sure <function=get_weather>{"location": "A"}</function>',
        "tool_calls": None, "finish_reason": "stop"}


def test_named_tool_choice_finish_reason_is_tool_calls():
    t = get_template("v3-llama3.1")
    result = t.parse('{"location": "A"}</function>', tool_choice=NAMED, tools=TOOLS)
    assert result["finish_reason"] == "tool_calls"
    assert _calls(result) == [("get_weather", '{"location": "A"}')]


def test_required_without_a_call_is_text():
    result = get_template("v3.llama3").parse("all\nI cannot.", tool_choice="required", tools=TOOLS)
    assert result["content"] == "I cannot." and result["finish_reason"] == "stop"


def test_unterminated_v31_call_keeps_partial_arguments():
    result = get_template("v3-llama3.1").parse('<function=get_weather>{"location": "Ist', tools=TOOLS)
    assert _calls(result) == [("get_weather", '{"location": "Ist')]
    assert result["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("version", VERSIONS)
def test_stop_token_right_away_is_an_empty_turn(version):
    t = get_template(version)
    for stop in t.stop_tokens:
        for tools in (TOOLS, None):
            assert t.parse(stop, tools=tools) == {"role": "assistant", "content": None, "tool_calls": None,
                                                  "finish_reason": "stop"}


def test_text_after_stop_token_is_ignored():
    result = get_template("v2.llama3").parse("Hi<|eot_id|><|start_header_id|>user", tools=TOOLS)
    assert result["content"] == "Hi"


def test_text_blocks_are_joined_with_newline():
    out = "all\nFirst.>>>get_weather\n{}>>>all\nSecond.<|eot_id|>"
    result = get_template("v3.llama3").parse(out, tools=TOOLS)
    assert result["content"] == "First.\nSecond."
    assert _calls(result) == [("get_weather", "{}")]


def test_v1_allows_one_call_per_turn():
    out = "\n<|START_OF_FUNCTION_CALL|>get_weather:\n{}\n<|START_OF_FUNCTION_CALL|>get_weather:\n{}"
    result = get_template("v1").parse(out, tools=TOOLS)
    assert _calls(result) == [("get_weather", "{}\n<|START_OF_FUNCTION_CALL|>get_weather:\n{}")]


def test_arguments_are_never_reserialised():
    args = '{ "location" :\n  "A",   "x": 1.50 }'
    result = get_template("v3-llama3.1").parse(f"<function=get_weather> {args} </function>", tools=TOOLS)
    assert _calls(result) == [("get_weather", args)]


def test_parser_request_errors():
    t = get_template("v2")
    with pytest.raises(RequestError):
        t.parse("x", tool_choice={"type": "function", "function": {"name": "nope"}}, tools=TOOLS)
    with pytest.raises(RequestError):
        t.parse("x", tool_choice="maybe")
    with pytest.raises(RequestError, match="'all'"):
        t.parse("x", tools=[{"name": "all"}])
    # tools are optional for parsers, even with a named tool_choice
    assert _calls(t.parse("{}", tool_choice={"type": "function", "function": {"name": "lookup"}})) == [
        ("lookup", "{}")]
    # the legacy function_call={"name": N} form selects the legacy output shape
    assert t.parse("{}", tool_choice={"name": "lookup"})["function_call"] == {"name": "lookup", "arguments": "{}"}
