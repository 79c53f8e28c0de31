"""Prompt rendering: the reference goldens, tool_choice handling, message normalisation."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

import functionary
from functionary import RequestError, TemplateError, get_template
from functionary.messages import ToolCall, normalize_messages, new_call_id
from functionary.templates.base import CODE_INTERPRETER_SYSTEM_MESSAGE, DEFAULT_SYSTEM_MESSAGE
from tests.data import REPO_ROOT, shared_data

VERSIONS = ["v1", "v2", "v2.llama3", "v3.llama3", "v3-llama3.1"]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "city"}},
            "required": ["location"],
        },
    },
}
PRICE = {
    "type": "function",
    "function": {
        "name": "get_car_price",
        "description": "Get a car price",
        "parameters": {"type": "object", "properties": {"car_name": {"type": "string"}}},
    },
}
TOOLS = [WEATHER, PRICE, {"type": "code_interpreter"}]
USER = [{"role": "user", "content": "hi"}]


def _golden(version: str) -> tuple[dict, str]:
    case = "test_case_v1.json" if version == "v1" else "test_case.json"
    test_case = json.loads(shared_data("functionary", case).read_text())
    expected = shared_data("functionary", f"prompt_test_{version}.txt").read_text()
    return test_case, expected


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_prompt(version):
    test_case, expected = _golden(version)
    tools = test_case.get("tools", test_case.get("functions"))
    rendered = get_template(version).render(test_case["messages"], tools)
    if version == "v2":  # the reference test's own normalisation
        expected = expected.replace("\n\n<|from|>", "\n<|from|>")
        rendered = rendered.replace("\n\n<|from|>", "\n<|from|>")
    assert rendered.strip() == expected.strip()


def test_v2_has_no_jinja_blank_lines():
    test_case, expected = _golden("v2")
    rendered = get_template("v2").render(test_case["messages"], test_case["tools"])
    assert "\n\n<|from|>" not in rendered
    assert rendered == expected


def test_golden_inputs_are_not_modified():
    test_case, _ = _golden("v3.llama3")
    before = copy.deepcopy(test_case)
    get_template("v3.llama3").render(test_case["messages"], test_case["tools"], add_generation_prompt=True)
    assert test_case == before


# ------------------------------------------------------------- generation prompt


GENERATION = {
    # version: (generation prompt, none, required, named get_weather, named python)
    "v1": ("assistant:", "", "\n<|START_OF_FUNCTION_CALL|>", "\n<|START_OF_FUNCTION_CALL|>get_weather:\n",
           "\n<|START_OF_FUNCTION_CALL|>python:\n"),
    "v2": ("\n<|from|>assistant\n<|recipient|>", "all\n<|content|>", "", "get_weather\n<|content|>",
           "python\n<|content|>"),
    "v2.llama3": ("<|start_header_id|>assistant<|end_header_id|>\n\n", "", "<|reserved_special_token_249|>",
                  "<|reserved_special_token_249|>get_weather\n", "<|reserved_special_token_249|>python\n"),
    "v3.llama3": ("<|start_header_id|>assistant<|end_header_id|>\n\n>>>", "all\n", "", "get_weather\n",
                  "python\n"),
    "v3-llama3.1": ("<|start_header_id|>assistant<|end_header_id|>\n\n", "", "<function=",
                    "<function=get_weather>", "<|python_tag|>"),
}


@pytest.mark.parametrize("version", VERSIONS)
def test_generation_prompt_and_tool_choice_prefixes(version):
    t = get_template(version)
    prompt, none, required, named, python = GENERATION[version]
    base = t.render(USER, TOOLS)
    choices = {
        "auto": "",
        "none": none,
        "required": required,
        "named": named,
        "legacy": named,
        "python": python,
    }
    for key, prefix in choices.items():
        choice = {
            "named": {"type": "function", "function": {"name": "get_weather"}},
            "legacy": {"name": "get_weather"},
            "python": {"type": "function", "function": {"name": "python"}},
        }.get(key, key)
        out = t.render(USER, TOOLS, tool_choice=choice, add_generation_prompt=True)
        assert out.endswith(prompt + prefix), key
        assert t.turn_format().generation_prefix(choice) == prefix
        if key == "auto":
            assert out == base + prompt


@pytest.mark.parametrize("version", VERSIONS)
def test_tool_choice_none_removes_tools_from_prompt(version):
    t = get_template(version)
    out = t.render(USER, TOOLS, tool_choice="none")
    assert "get_weather" not in out and "get_car_price" not in out
    assert CODE_INTERPRETER_SYSTEM_MESSAGE not in out
    assert "Environment: ipython" not in out
    if version in ("v1", "v2", "v2.llama3"):
        assert DEFAULT_SYSTEM_MESSAGE in out


@pytest.mark.parametrize("version", VERSIONS)
def test_named_tool_choice_keeps_only_that_tool(version):
    t = get_template(version)
    out = t.render(USER, TOOLS, tool_choice={"type": "function", "function": {"name": "get_car_price"}})
    assert "get_car_price" in out
    assert "get_weather" not in out
    assert CODE_INTERPRETER_SYSTEM_MESSAGE not in out
    assert "Environment: ipython" not in out


@pytest.mark.parametrize("version", VERSIONS)
def test_code_interpreter_system_message(version):
    t = get_template(version)
    with_ci = t.render(USER, TOOLS)
    without = t.render(USER, TOOLS[:2])
    if version == "v3-llama3.1":
        assert "Environment: ipython\n\n" in with_ci and "Environment: ipython" not in without
        # code_interpreter is not listed as a function
        assert "'python'" not in with_ci
    else:
        assert CODE_INTERPRETER_SYSTEM_MESSAGE in with_ci and CODE_INTERPRETER_SYSTEM_MESSAGE not in without
        if version != "v3.llama3":
            assert DEFAULT_SYSTEM_MESSAGE in without and DEFAULT_SYSTEM_MESSAGE not in with_ci


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_tools_still_render(version):
    t = get_template(version)
    out = t.render(USER, None, add_generation_prompt=True)
    assert out.endswith(GENERATION[version][0])
    if version != "v3-llama3.1":
        assert "namespace functions {\n\n} // namespace functions" in out
    else:
        assert "You have access" not in out


# ------------------------------------------------------------- message handling


def _conversation(reverse_results: bool, with_names: bool) -> list[dict]:
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "A"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_car_price", "arguments": '{"car_name": "B"}'}},
    ]
    results = [
        {"role": "tool", "tool_call_id": "call_a", "content": "RESULT_A"},
        {"role": "tool", "tool_call_id": "call_b", "content": "RESULT_B"},
    ]
    if with_names:
        results[0]["name"], results[1]["name"] = "get_weather", "get_car_price"
    if reverse_results:
        results.reverse()
    return USER + [{"role": "assistant", "content": None, "tool_calls": calls}] + results


@pytest.mark.parametrize("version", VERSIONS)
def test_tool_results_follow_call_order(version):
    t = get_template(version)
    ordered = t.render(_conversation(False, True), TOOLS)
    shuffled = t.render(_conversation(True, True), TOOLS)
    assert shuffled == ordered
    assert ordered.index("RESULT_A") < ordered.index("RESULT_B")


@pytest.mark.parametrize("version", ["v1", "v2", "v2.llama3"])
def test_tool_result_names_come_from_call_ids(version):
    t = get_template(version)
    assert t.render(_conversation(True, False), TOOLS) == t.render(_conversation(False, True), TOOLS)


@pytest.mark.parametrize("version", ["v1", "v2", "v2.llama3"])
def test_tool_result_without_any_name_is_a_request_error(version):
    messages = USER + [{"role": "tool", "content": "x"}]
    with pytest.raises(RequestError, match="function name"):
        get_template(version).render(messages, TOOLS)


@pytest.mark.parametrize("version", ["v3.llama3", "v3-llama3.1"])
def test_nameless_tool_results_are_fine_where_the_format_has_no_name(version):
    out = get_template(version).render(USER + [{"role": "tool", "content": "RES"}], TOOLS)
    assert "RES<|eot_id|>" in out


@pytest.mark.parametrize("version", VERSIONS)
def test_legacy_functions_fields_render_like_tools(version):
    t = get_template(version)
    legacy = USER + [
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
    ]
    modern = USER + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "name": "get_weather", "content": "sunny"},
    ]
    functions = [WEATHER["function"], PRICE["function"]]
    assert t.render(legacy, functions, tool_choice={"name": "get_weather"}, add_generation_prompt=True) == t.render(
        modern, TOOLS[:2], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        add_generation_prompt=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_past_assistant_turn_is_generation_prompt_plus_model_output(version):
    t = get_template(version)
    fmt = t.turn_format()
    msg = {"role": "assistant", "content": "Sure.",
           "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"location": "A"}'}}]}
    out = t.render(USER + [msg], TOOLS)
    turn = fmt.generation_prompt + fmt.format_output("Sure.", [ToolCall("get_weather", '{"location": "A"}')])
    assert turn in out
    assert out.rstrip("\n").endswith(turn)


def test_content_parts_are_joined_and_images_rejected():
    t = get_template("v3.llama3")
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert "ab<|eot_id|>" in t.render(parts)
    with pytest.raises(RequestError, match="image_url"):
        t.render([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])


def test_v1_parallel_calls_become_consecutive_turns():
    t = get_template("v1")
    msg = {"role": "assistant", "content": "Two.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "A"}},
        {"type": "function", "function": {"name": "get_weather", "arguments": "B"}},
    ]}
    out = t.render(USER + [msg], TOOLS)
    assert out.endswith(
        "assistant:\nTwo.\n<|START_OF_FUNCTION_CALL|>get_weather:\nA<|END_OF_FUNCTION_CALL|>\n"
        "assistant:\n<|START_OF_FUNCTION_CALL|>get_weather:\nB<|END_OF_FUNCTION_CALL|>\n"
    )


def test_v3_llama31_lists_functions_with_resolved_refs():
    tool = {"type": "function", "function": {
        "name": "f", "description": "d",
        "parameters": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
                       "$defs": {"A": {"type": "integer"}}}}}
    out = get_template("v3-llama3.1").render(USER, [tool])
    assert "Use the function 'f' to 'd'\n" in out
    assert '"a": {"type": "integer"}' in out


# ------------------------------------------------------------------ turn format


def test_turn_formats_are_honest():
    v31 = get_template("v3-llama3.1").turn_format()
    assert v31.stop_tokens_after_calls == ("<|eom_id|>",)
    assert v31.stop_tokens_after_text[0] == "<|eot_id|>"
    assert v31.format_output("hi", []) == "hi<|eot_id|>"
    assert v31.format_output(None, [("f", "{}")]) == "<function=f>{}</function><|eom_id|>"
    assert v31.format_output(None, [("python", "1+1")]) == "<|python_tag|>1+1<|eom_id|>"
    v2l = get_template("v2.llama3").turn_format()
    assert v2l.call_prefix == "<|reserved_special_token_249|>"
    assert v2l.format_output("x", [("f", "{}"), ("g", "[]")]) == (
        "x<|reserved_special_token_249|>f\n{}<|reserved_special_token_249|>g\n[]<|eot_id|>")
    v2 = get_template("v2").turn_format()
    assert v2.format_output("x", [("f", "{}")]) == (
        "all\n<|content|>x\n<|from|>assistant\n<|recipient|>f\n<|content|>{}<|stop|>")
    v3 = get_template("v3.llama3").turn_format()
    assert v3.format_output("x", [("f", "{}")]) == "all\nx>>>f\n{}<|eot_id|>"
    v1 = get_template("v1").turn_format()
    assert not v1.parallel_calls and v1.stop_tokens_after_calls == ("<|END_OF_FUNCTION_CALL|>",)
    assert all(get_template(v).turn_format().parallel_calls for v in VERSIONS[1:])
    with pytest.raises(dataclasses.FrozenInstanceError):
        v1.parallel_calls = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("version", "stops"),
    [
        ("v1", ["<|END_OF_ASSISTANT|>", "<|END_OF_FUNCTION_CALL|>"]),
        ("v2", ["<|stop|>"]),
        ("v2.llama3", ["<|eot_id|>", "<|end_of_text|>"]),
        ("v3.llama3", ["<|eot_id|>", "<|end_of_text|>"]),
        ("v3-llama3.1", ["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"]),
    ],
)
def test_stop_tokens(version, stops):
    assert get_template(version).stop_tokens == stops


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize("version", VERSIONS)
def test_request_errors(version):
    t = get_template(version)
    with pytest.raises(RequestError, match="Supported values are"):
        t.render(USER, TOOLS, tool_choice="sometimes")
    with pytest.raises(RequestError, match="no function named nope") as info:
        t.render(USER, TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    assert info.value.param == "tool_choice"
    with pytest.raises(RequestError, match="only allowed when 'tools'"):
        t.render(USER, None, tool_choice="required")
    with pytest.raises(RequestError, match="only allowed when 'tools'"):
        t.render(USER, [], tool_choice={"name": "get_weather"})
    with pytest.raises(RequestError, match="Duplicate"):
        t.render(USER, [WEATHER, WEATHER])
    with pytest.raises(RequestError, match="name"):
        t.render(USER, [{"type": "function", "function": {"name": "bad name"}}])
    with pytest.raises(RequestError, match="type"):
        t.render(USER, [{"type": "retrieval"}])
    with pytest.raises(RequestError, match="python"):
        t.render(USER, [{"type": "function", "function": {"name": "python"}}, {"type": "code_interpreter"}])
    with pytest.raises(RequestError, match="role"):
        t.render([{"role": "robot", "content": "x"}])
    with pytest.raises(RequestError, match="content"):
        t.render([{"role": "user", "content": None}])


@pytest.mark.parametrize("version", ["v2", "v3.llama3"])
def test_function_named_all_is_rejected_where_all_means_text(version):
    with pytest.raises(RequestError, match="'all'"):
        get_template(version).render(USER, [{"type": "function", "function": {"name": "all"}}])


def test_function_named_all_is_fine_elsewhere():
    out = get_template("v3-llama3.1").render(USER, [{"type": "function", "function": {"name": "all"}}])
    assert "Use the function 'all'" in out


def test_get_template_errors_and_registry():
    assert functionary.available_versions() == VERSIONS
    assert get_template("v2") is get_template("v2")
    with pytest.raises(TemplateError, match="Unknown template version"):
        get_template("v4")
    assert get_template("meetkai/functionary-small-v3.2") is get_template("v3.llama3")
    assert get_template("functionary-medium-v3.1") is get_template("v3-llama3.1")
    assert get_template("meetkai/functionary-small-v2.5").version == "v2.llama3"
    assert issubclass(RequestError, functionary.FunctionaryError)
    assert issubclass(TemplateError, functionary.FunctionaryError)


def test_public_names():
    for name in ("get_template", "detect_template", "FunctionaryError", "RequestError", "TemplateError"):
        assert name in functionary.__all__
        assert hasattr(functionary, name)


def test_messages_normalisation_helpers():
    msgs = normalize_messages([
        {"role": "developer", "content": "sys"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": None},
    ])
    assert msgs[0].role == "system"
    assert msgs[1].tool_calls[0].arguments == '{"a": 1}'
    assert msgs[2].name == "f" and msgs[2].content == ""
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("call_") and len(i) == 29 and i[5:].isalnum() for i in ids)


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, functionary\n"
        "functionary.get_template('v2').render([{'role': 'user', 'content': 'x'}])\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
