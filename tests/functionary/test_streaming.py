"""Streaming parsers: the state machine, chunk shapes, and split-invariance (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functionary import get_template
from functionary.parsing import State, StreamParser, accumulate

VERSIONS = ["v1", "v2", "v2.llama3", "v3.llama3", "v3-llama3.1"]

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_weather_forecast"}},
    {"type": "code_interpreter"},
]
FUNCTIONS = [t["function"] for t in TOOLS[:2]]  # legacy `functions`
NAMED = {"type": "function", "function": {"name": "get_weather"}}
CHOICES = ["auto", "none", "required", NAMED, {"name": "get_weather"}]

# Pieces that exercise every marker, special token, partial token and look-alike.
FRAGMENTS = [
    ">>>", ">", ">>", "<function=", "</function>", "</func", "<|python_tag|>", "<|eot_id|>", "<|eom_id|>",
    "<|end_of_text|>", "<|eo", "<|reserved_special_token_249|>", "<|from|>", "<|from|>assistant\n<|recipient|>",
    "<|recipient|>", "<|content|>", "\n<|content|>", "<|stop|>", "<|START_OF_FUNCTION_CALL|>",
    "<|END_OF_FUNCTION_CALL|>", "<|END_OF_ASSISTANT|>", "all", "python", "get_weather", "get_weather_forecast",
    "unknown_fn", "\n", " ", "  ", "\t", ":", ":\n", "<", "|", "{", "}", '"location"', '": "', "x", "Hello",
    "é", "\n\n", "'", "\\",
]

soup = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=30).map("".join)


@st.composite
def structured(draw, version):
    """A well-formed turn (optionally with garbage appended) for ``version``."""
    fmt = get_template(version).turn_format()
    content = draw(st.one_of(st.none(), soup, st.sampled_from(["Hi there.", "a >>> b <function=x> c"])))
    names = st.sampled_from(["get_weather", "get_weather_forecast", "python", "unknown_fn"])
    args = st.one_of(soup, st.sampled_from(['{"location": "A"}', "print('>>>all')\nx = 1", " {} "]))
    n = draw(st.integers(0, 1 if not fmt.parallel_calls else 3))
    calls = [(draw(names), draw(args)) for _ in range(n)]
    out = fmt.format_output(content, calls)
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]  # truncated (token limit)
    return out


def _outputs(version):
    return st.one_of(soup, structured(version))


def _split(draw, text):
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(text[last:cut])
        last = cut
    pieces.append(text[last:])
    return pieces


def _view(message):
    """The comparable part of a message: content, names, arguments, finish reason (ids aside)."""
    calls = message.get("tool_calls") or []
    return (
        message["content"],
        [(c["function"]["name"], c["function"]["arguments"]) for c in calls],
        message.get("function_call"),
        message["finish_reason"],
    )


def _check_chunk_shapes(chunks):
    assert chunks, "finish() always returns the final chunk"
    assert chunks[0]["delta"].get("role") == "assistant"
    assert all("role" not in c["delta"] for c in chunks[1:])
    assert [c["finish_reason"] is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1]["delta"] == {}
    seen = set()
    for chunk in chunks[:-1]:
        assert chunk["index"] == 0
        delta = chunk["delta"]
        for call in delta.get("tool_calls") or ():
            if call["index"] not in seen:
                seen.add(call["index"])
                assert call["id"].startswith("call_") and call["type"] == "function"
                assert call["function"]["name"] and call["function"]["arguments"] == ""
            else:
                assert set(call) == {"index", "function"} and set(call["function"]) == {"arguments"}
                assert call["function"]["arguments"]
        if "content" in delta and len(chunks) > 2:
            assert delta["content"]


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_split_gives_the_batch_result(version, data):
    template = get_template(version)
    text = data.draw(_outputs(version), label="text")
    tools = data.draw(st.sampled_from([TOOLS, None, FUNCTIONS]), label="tools")
    choice = data.draw(st.sampled_from(CHOICES), label="tool_choice")
    expected = template.parse(text, tool_choice=choice, tools=tools)
    parser = template.stream_parser(tool_choice=choice, tools=tools)
    chunks = []
    for piece in _split(data.draw, text):
        chunks += parser.feed(piece)
    chunks += parser.finish()
    _check_chunk_shapes(chunks)
    assert _view(accumulate(chunks)) == _view(expected)
    # content and arguments are stripped, and content is never blank
    content, calls, function_call, finish = _view(expected)
    assert content is None or (content.strip() == content and content)
    assert all(args == args.strip() for _, args in calls)
    if parser.legacy:
        assert finish == ("function_call" if function_call else "stop")
        calls = [(function_call["name"], function_call["arguments"])] if function_call else []
    else:
        assert finish == ("tool_calls" if calls else "stop")
    # a stop token ends the turn: it never leaks into content or arguments
    for stop in template.stop_tokens:
        assert stop not in (content or "") and all(stop not in args for _, args in calls)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_well_formed_turns_round_trip(version, data):
    """parse(format_output(message)) gives the message back (when the text holds no header)."""
    template = get_template(version)
    fmt = template.turn_format()
    text_chars = st.text(alphabet="ab <>|=:{}\"'\n", max_size=30)
    content = data.draw(st.one_of(st.none(), text_chars.map(str.strip)))
    n = data.draw(st.integers(0, 2 if fmt.parallel_calls else 1))
    names = ["get_weather", "get_weather_forecast", "python"]
    calls = [(data.draw(st.sampled_from(names)), data.draw(text_chars).strip()) for _ in range(n)]
    if fmt.python_prefix:  # code runs to the end of the turn: python only last
        calls = [c for c in calls if c[0] != "python"] + [c for c in calls if c[0] == "python"][:1]
    out = fmt.format_output(content, calls)
    result = template.parse(out, tools=TOOLS)
    assert _view(result) == (content or None, calls, None, "tool_calls" if calls else "stop")
    parser = template.stream_parser(tools=TOOLS)
    chunks = [c for ch in out for c in parser.feed(ch)] + parser.finish()
    assert _view(accumulate(chunks)) == _view(result)


# ------------------------------------------------------------------ the machine


def test_states_of_a_v3_turn():
    parser = get_template("v3.llama3").stream_parser(tools=TOOLS)
    assert isinstance(parser, StreamParser)
    assert parser.state is State.HEADER
    assert parser.feed("get_wea") == []
    assert parser.state is State.HEADER
    chunks = parser.feed("ther\n{\"a\"")
    assert parser.state is State.ARGS
    assert chunks[0]["delta"]["role"] == "assistant"
    assert chunks[0]["delta"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    assert chunks[1]["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}
    parser.feed(">>")  # could be a separator: held back
    assert parser.feed(">all\nDone") == [{"index": 0, "delta": {"content": "Done"}, "finish_reason": None}]
    assert parser.state is State.TEXT
    assert parser.feed("<|eot_id|>") == []
    assert parser.state is State.DONE
    assert parser.finish() == [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]


def test_code_state_of_v31():
    parser = get_template("v3-llama3.1").stream_parser(tools=TOOLS)
    assert parser.state is State.TEXT
    parser.feed("<|python_")
    assert parser.state is State.TEXT
    chunks = parser.feed("tag|>x = '<function=a>'")
    assert parser.state is State.CODE
    assert [c["delta"]["tool_calls"][0]["function"] for c in chunks] == [
        {"name": "python", "arguments": ""}, {"arguments": "x = '<function=a>'"}]


def test_special_tokens_split_across_deltas_never_leak():
    parser = get_template("v3-llama3.1").stream_parser(tools=TOOLS)
    chunks = parser.feed("Hi<|e") + parser.feed("o") + parser.feed("t_id|>")
    assert "".join(c["delta"].get("content", "") for c in chunks) == "Hi"
    assert parser.state is State.DONE
    parser = get_template("v2.llama3").stream_parser(tools=TOOLS)
    text = 'Let me see.<|reserved_special_token_249|>get_weather\n{"location": "A"}<|eot_id|>'
    chunks = [c for ch in text for c in parser.feed(ch)] + parser.finish()
    assert all("<|" not in c["delta"].get("content", "") for c in chunks)
    assert accumulate(chunks)["content"] == "Let me see."


def test_whitespace_is_held_back_not_lost():
    parser = get_template("v3-llama3.1").stream_parser()
    assert parser.feed("  Hello ") == [{"index": 0, "delta": {"role": "assistant", "content": "Hello"},
                                         "finish_reason": None}]
    assert parser.feed(" \n") == []
    assert parser.feed("world  ") == [{"index": 0, "delta": {"content": "  \nworld"}, "finish_reason": None}]
    assert parser.finish() == [{"index": 0, "delta": {}, "finish_reason": "stop"}]


def test_empty_output_still_sends_the_role():
    parser = get_template("v2").stream_parser()
    assert parser.finish() == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ]


def test_named_tool_choice_header_comes_with_the_first_delta():
    parser = get_template("v2").stream_parser(tool_choice=NAMED, tools=TOOLS)
    assert parser.state is State.ARGS
    chunks = parser.feed('{"location"')
    assert chunks[0]["delta"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert chunks[1]["delta"]["tool_calls"][0]["function"]["arguments"] == '{"location"'


def test_legacy_streaming_uses_function_call():
    parser = get_template("v2.llama3").stream_parser(tools=FUNCTIONS)
    text = ("<|reserved_special_token_249|>get_weather\n{\"a\": 1}"
            "<|reserved_special_token_249|>get_weather_forecast\n{}<|eot_id|>")
    chunks = [c for ch in text for c in parser.feed(ch)] + parser.finish()
    assert all("tool_calls" not in c["delta"] for c in chunks)
    assert chunks[0]["delta"] == {"role": "assistant", "function_call": {"name": "get_weather", "arguments": ""}}
    assert chunks[-1] == {"index": 0, "delta": {}, "finish_reason": "function_call"}
    assert accumulate(chunks) == {"role": "assistant", "content": None,
                                  "function_call": {"name": "get_weather", "arguments": '{"a": 1}'},
                                  "finish_reason": "function_call"}


def test_misuse_raises():
    parser = get_template("v1").stream_parser()
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("x")
    with pytest.raises(RuntimeError):
        parser.finish()


@pytest.mark.parametrize("version", VERSIONS)
def test_char_by_char_matches_batch_for_reference_like_turns(version):
    template = get_template(version)
    fmt = template.turn_format()
    calls = [("get_weather", '{"location": "Istanbul"}')]
    if fmt.parallel_calls:
        calls.append(("get_weather_forecast", '{"days": 3}'))
    calls_py = [("python", "import math\nprint(math.pi >>> 1)")]
    for content, cs in (("Sure thing.", calls), (None, calls), ("Code:", calls_py), ("Only text.", [])):
        out = fmt.format_output(content, cs)
        parser = template.stream_parser(tools=TOOLS)
        chunks = [c for ch in out for c in parser.feed(ch)] + parser.finish()
        assert _view(accumulate(chunks)) == _view(template.parse(out, tools=TOOLS)) == (
            content, cs, None, "tool_calls" if cs else "stop")
