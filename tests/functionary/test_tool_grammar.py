"""Tool-call grammars: every output under the mask is a valid turn (no model needed).

Random walks pick uniformly among the allowed tokens (what random logits do under the
mask), with budget-aware termination on, over real vocabularies and tool lists converted
from BFCL.  Each finished output must parse into calls whose names are in the tool list,
whose arguments validate against their schema, that respect tool_choice and
parallel_tool_calls, and whose streaming parse equals the batch parse.
"""

from __future__ import annotations

import json
import os
import random

import jsonschema
import numpy as np
import pytest

from functionary import get_template
from functionary.bfcl import iter_bfcl_tool_lists
from functionary.errors import RequestError
from functionary.tool_grammar import compile_tool_grammar, parse_tools
from grammar import GrammarCompiler, GrammarMatcher
from tests.data import shared_data

pytestmark = pytest.mark.hf

FAMILY = {"v1": "functionary-v1", "v2": "functionary-v2", "v2.llama3": "llama3.0",
          "v3.llama3": "llama3.1", "v3-llama3.1": "llama3.1"}
CHOICES = ["auto", "none", "required", "named"]
RUNS = int(os.environ.get("TOOL_GRAMMAR_RUNS", "8"))   # per (version, choice, parallel) cell


def _compilers():
    from functionary.tokenizers import load_vocabulary
    cache = {}

    def get(version):
        fam = FAMILY[version]
        if fam not in cache:
            cache[fam] = GrammarCompiler(load_vocabulary(fam))
        return cache[fam]
    return get


_compiler_for = _compilers()


def _tool_lists(n=4, seed=0):
    rng = random.Random(seed)
    entries = [e for e in iter_bfcl_tool_lists(shared_data("bfcl", "data"),
                                               ("multiple", "parallel_multiple", "live_multiple",
                                                "simple_python", "simple_java"))]
    rng.shuffle(entries)
    out = []
    for cat, eid, tools, _ in entries:
        if not tools or len(tools) > 6:
            continue
        try:
            for t in tools:
                jsonschema.Draft202012Validator.check_schema(t["function"]["parameters"])
        except jsonschema.SchemaError:
            continue
        out.append((f"{cat}:{eid}", tools))
        if len(out) == n:
            break
    return out


TOOL_LISTS = _tool_lists()


def _walk(matcher: GrammarMatcher, rng: random.Random, max_steps: int) -> list[int]:
    toks = []
    for _ in range(max_steps):
        if matcher.is_terminated():
            break
        ids = matcher.allowed_token_ids()
        assert len(ids), "dead end: a live state allowed no token"
        tid = int(ids[rng.randrange(len(ids))])
        assert matcher.accept_token(tid)
        toks.append(tid)
    return toks


def _check_output(template, text, tools, choice, parallel):
    msg = template.parse(text, tool_choice=choice, tools=tools)
    calls = msg.get("tool_calls") or []
    schemas = {t["function"]["name"]: t["function"]["parameters"]
               for t in tools if t.get("type", "function") == "function"}
    for c in calls:
        name = c["function"]["name"]
        if name == "python":
            assert any(t.get("type") == "code_interpreter" for t in tools)
            continue
        assert name in schemas, (name, text)
        args = json.loads(c["function"]["arguments"])
        jsonschema.validate(args, schemas[name], format_checker=jsonschema.FormatChecker())
    if choice == "none":
        assert not calls, text
    elif choice == "required":
        assert len(calls) >= 1, text
    elif isinstance(choice, dict):
        assert len(calls) == 1 and calls[0]["function"]["name"] == choice["function"]["name"], text
    if not parallel:
        assert len(calls) <= 1, text
    assert msg["finish_reason"] == ("tool_calls" if calls else "stop")
    return msg


def _stream_equals_batch(template, text, tools, choice, rng, batch):
    from functionary.parsing import accumulate
    sp = template.stream_parser(tool_choice=choice, tools=tools)
    events = []
    i = 0
    while i < len(text):
        j = min(len(text), i + rng.randint(1, 7))
        events.extend(sp.feed(text[i:j]))
        i = j
    events.extend(sp.finish())
    streamed = accumulate(events)
    assert (streamed.get("content") or None) == (batch.get("content") or None)
    got = [(c["function"]["name"], c["function"]["arguments"]) for c in streamed.get("tool_calls") or []]
    want = [(c["function"]["name"], c["function"]["arguments"]) for c in batch.get("tool_calls") or []]
    assert got == want


@pytest.mark.parametrize("version", list(FAMILY))
@pytest.mark.parametrize("parallel", [True, False])
def test_random_walks_give_valid_turns(version, parallel):
    _random_walks(version, parallel, RUNS)


@pytest.mark.slow
@pytest.mark.parametrize("version", list(FAMILY))
@pytest.mark.parametrize("parallel", [True, False])
def test_random_walks_give_valid_turns_many(version, parallel):
    """The CI run: 10 x 320 = 3,200 random walks."""
    assert _random_walks(version, parallel, 40) >= 320


def _random_walks(version, parallel, runs):
    compiler = _compiler_for(version)
    template = get_template(version)
    rng = random.Random(hash((version, parallel)) & 0xFFFF)
    done = 0
    for li, (label, tools) in enumerate(TOOL_LISTS):
        with_code = tools + ([{"type": "code_interpreter"}] if li % 2 else [])
        for choice_name in CHOICES:
            choice = ({"type": "function", "function": {"name": tools[0]["function"]["name"]}}
                      if choice_name == "named" else choice_name)
            cg = compile_tool_grammar(compiler, template, with_code, choice, parallel)
            start_min = cg.automaton.minlen(cg.automaton.start)
            for run in range(max(1, runs // len(TOOL_LISTS) * 2)):
                budget = start_min + 2 + rng.randint(0, 90)
                m = GrammarMatcher(cg, token_budget=budget)
                toks = _walk(m, rng, budget)
                assert m.is_terminated(), f"{label} {choice_name}: not finished within budget {budget}"
                assert len(toks) <= budget
                text = b"".join(compiler.vocab.token_bytes(t) for t in toks).decode("utf-8")
                batch = _check_output(template, text, with_code, choice, parallel)
                _stream_equals_batch(template, text, with_code, choice, rng, batch)
                done += 1
    assert done >= len(TOOL_LISTS) * len(CHOICES)
    return done


def _feed(m, vocab, text):
    """Accept ``text``, where ``<|...|>`` spans are special tokens (by id)."""
    import re
    for part in re.split(r"(<\|[A-Za-z0-9_]+\|>)", text):
        if not part:
            continue
        if part.startswith("<|") and part.endswith("|>"):
            if not m.accept_token(vocab.token_id(part)):
                return False
        elif not m.accept_bytes(part):
            return False
    return True


@pytest.mark.parametrize("version", list(FAMILY))
def test_prefix_sharing_names(version):
    compiler = _compiler_for(version)
    vocab = compiler.vocab
    template = get_template(version)
    fmt = template.turn_format()
    names = ("get", "get_weather", "get_weather_v2")
    tools = [{"type": "function", "function": {"name": n, "parameters": {
        "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}
        for n in names]
    cg = compile_tool_grammar(compiler, template, tools, "required", True)
    stop = vocab.token_id(fmt.stop_tokens_after_calls[0])
    for name in names:
        m = GrammarMatcher(cg)
        assert _feed(m, vocab, name + fmt.name_terminator + '{"x": 7}' + fmt.call_suffix), name
        assert m.is_token_allowed(stop), name
        assert m.accept_token(stop) and m.is_terminated()
        text = name + fmt.name_terminator + '{"x": 7}' + fmt.call_suffix + fmt.stop_tokens_after_calls[0]
        msg = template.parse(text, tool_choice="required", tools=tools)
        assert [c["function"]["name"] for c in msg["tool_calls"]] == [name]
    for bad in ("get_weatherX", "gex", "get_weather_v2_"):
        assert not _feed(GrammarMatcher(cg), vocab, bad + fmt.name_terminator), bad
    # the automaton never stops inside a name: after "get_wea" no terminator is allowed
    m = GrammarMatcher(cg)
    assert m.accept_bytes("get_wea")
    assert not m.fork().accept_bytes(fmt.name_terminator.split("<|")[0] or "\n")


def test_unknown_named_tool_and_choice_without_tools_are_errors():
    compiler = _compiler_for("v3.llama3")
    tools = [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}]
    with pytest.raises(RequestError):
        compile_tool_grammar(compiler, "v3.llama3", tools, {"type": "function", "function": {"name": "b"}})
    with pytest.raises(RequestError):
        compile_tool_grammar(compiler, "v3.llama3", None, "required")
    with pytest.raises(RequestError):
        compile_tool_grammar(compiler, "v3.llama3", tools, "sometimes")
    with pytest.raises(RequestError):
        parse_tools([{"type": "function", "function": {"name": "all"}}], "v3.llama3")


def test_unsupported_tool_schema_is_a_request_error():
    compiler = _compiler_for("v3.llama3")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"xs": {"type": "array", "uniqueItems": True}}}}}]
    with pytest.raises(RequestError) as e:
        compile_tool_grammar(compiler, "v3.llama3", tools, "auto")
    assert "uniqueItems" in str(e.value)


def test_none_cannot_produce_tool_syntax():
    compiler = _compiler_for("v3.llama3")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    cg = compile_tool_grammar(compiler, "v3.llama3", tools, "none")
    m = GrammarMatcher(cg)
    assert m.accept_bytes("hello ")
    assert not m.accept_bytes(">>>f\n")
    ids = m.allowed_token_ids()
    texts = [compiler.vocab.token_bytes(int(i)) for i in ids]
    assert not any(b">>>" in t for t in texts)


def test_budget_too_small_is_best_effort_not_a_crash():
    compiler = _compiler_for("v3.llama3")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "minLength": 40}}, "required": ["a"]}}}]
    cg = compile_tool_grammar(compiler, "v3.llama3", tools, "required")
    m = GrammarMatcher(cg, token_budget=3)
    rng = random.Random(0)
    toks = _walk(m, rng, 3)
    assert len(toks) == 3 and not m.is_terminated()
    assert np.all(m.allowed_token_ids() >= 0)


def test_tool_grammar_cache_hits_on_an_equal_tool_list(monkeypatch):
    """A request with an equal tool list (a fresh copy, as a server parses each request)
    reuses the compiled turn without lowering anything; other tool_choice values reuse
    the lowered schemas; a changed schema is a miss."""
    import copy

    import functionary.tool_grammar as tg
    compiler = GrammarCompiler(_compiler_for("v3.llama3").vocab)
    tools = TOOL_LISTS[0][1]
    first = compile_tool_grammar(compiler, "v3.llama3", tools, "auto")
    lowered = []
    real = tg.Grammar.json_schema
    monkeypatch.setattr(tg.Grammar, "json_schema",
                        staticmethod(lambda *a, **k: lowered.append(1) or real(*a, **k)))
    import grammar.compiler as gc
    monkeypatch.setattr(gc.Grammar, "json_schema", tg.Grammar.json_schema)
    assert compile_tool_grammar(compiler, "v3.llama3", copy.deepcopy(tools), "auto") is first
    other = compile_tool_grammar(compiler, "v3.llama3", copy.deepcopy(tools), "required")
    assert other is not first and lowered == []
    changed = copy.deepcopy(tools)
    fn = next(t for t in changed if t.get("type") == "function")["function"]
    fn["description"] = "changed"
    fn["parameters"] = {"type": "object", "properties": {"zz": {"type": "integer"}}}
    assert compile_tool_grammar(compiler, "v3.llama3", changed, "auto") is not first
    assert lowered, "a changed schema must be lowered again"
