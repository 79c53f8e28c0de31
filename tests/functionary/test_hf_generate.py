"""End to end with Hugging Face generate: tiny random-weight models under grammar sampling.

A random model knows nothing about tools; under the grammar, 100% of its outputs must still
be valid turns.  For every prompt version: >= 200 sampled generations (temperature and
top_p on) spread over tool_choice x parallel_tool_calls, tools converted from BFCL, with
budget-aware termination on: no generation is cut by the token limit, every name is in the
list, every arguments string validates, tool_choice semantics hold, streaming parse equals
the batch parse.  With budget-aware termination off, generations cut by the limit are
counted separately and every finished one must be valid.
"""

from __future__ import annotations

import os

import pytest

from functionary import get_template
from functionary.hf import generate_text, vocabulary_for
from grammar import GrammarCompiler
from tests.functionary.test_tool_grammar import (FAMILY, TOOL_LISTS, _check_output,
                                                 _stream_equals_batch)

pytestmark = pytest.mark.hf

FULL_PER_CELL = int(os.environ.get("HF_GEN_PER_CELL", "26"))   # 8 cells x 26 = 208 per version
MAX_NEW = int(os.environ.get("HF_GEN_MAX_NEW", "56"))

_models: dict = {}


def _model(family):
    if family not in _models:
        import torch
        from functionary.tiny_model import build_tiny_model
        torch.manual_seed(0)
        model, tok = build_tiny_model(family, seed=0)
        _models[family] = (model, tok, GrammarCompiler(vocabulary_for(model, tok)))
    return _models[family]


def _cells(tools):
    named = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
    for choice in ("auto", "none", "required", named):
        for parallel in (True, False):
            yield choice, parallel


def _run_matrix(version, per_cell):
    import random

    import torch

    model, tok, compiler = _model(FAMILY[version])
    template = get_template(version)
    rng = random.Random(7)
    messages = [{"role": "user", "content": "Please help me with my request."}]
    total = 0
    for ci, (choice, parallel) in enumerate(_cells(TOOL_LISTS[0][1])):
        tools = TOOL_LISTS[ci % len(TOOL_LISTS)][1]
        if isinstance(choice, dict):
            choice = {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        if ci % 3 == 1:
            tools = tools + [{"type": "code_interpreter"}]
        sampling = {"temperature": 1.0} if ci % 2 else {"temperature": 0.8, "top_p": 0.95}
        torch.manual_seed(1000 + ci)
        _, outs = generate_text(model, tok, messages, tools, choice, template=template,
                                compiler=compiler, parallel_tool_calls=parallel, do_sample=True,
                                max_new_tokens=MAX_NEW, num_return_sequences=per_cell, **sampling)
        for text, finished, toks in outs:
            assert finished, f"cut by the token limit despite budget-aware termination: {text!r}"
            assert len(toks) <= MAX_NEW
            msg = _check_output(template, text, tools, choice, parallel)
            _stream_equals_batch(template, text, tools, choice, rng, msg)
            total += 1
    assert total == 8 * per_cell
    return total


@pytest.mark.parametrize("version", list(FAMILY))
def test_tiny_model_required_parallel_quick(version):
    """Default-suite smoke: one batched generate per version (the matrix runs in CI)."""
    import random

    import torch

    model, tok, compiler = _model(FAMILY[version])
    template = get_template(version)
    tools = TOOL_LISTS[2][1]
    torch.manual_seed(11)
    _, outs = generate_text(model, tok, [{"role": "user", "content": "go"}], tools, "required",
                            template=template, compiler=compiler, do_sample=True,
                            temperature=1.0, max_new_tokens=40, num_return_sequences=4)
    rng = random.Random(1)
    for text, finished, _ in outs:
        assert finished, text
        msg = _check_output(template, text, tools, "required", True)
        _stream_equals_batch(template, text, tools, "required", rng, msg)


@pytest.mark.slow
@pytest.mark.parametrize("version", list(FAMILY))
def test_tiny_model_always_valid_with_budget_full(version):
    """The CI run: >= 200 sampled generations per version."""
    assert _run_matrix(version, FULL_PER_CELL) >= 200


@pytest.mark.slow
@pytest.mark.parametrize("version", ["v3.llama3", "v2"])
def test_tiny_model_without_budget_counts_cut_outputs(version):
    import random

    import torch

    model, tok, compiler = _model(FAMILY[version])
    template = get_template(version)
    rng = random.Random(3)
    tools = TOOL_LISTS[1][1]
    messages = [{"role": "user", "content": "Call a tool."}]
    finished_n = cut_n = 0
    for choice in ("required", "auto"):
        torch.manual_seed(5)
        _, outs = generate_text(model, tok, messages, tools, choice, template=template,
                                compiler=compiler, budget_aware=False, do_sample=True,
                                max_new_tokens=40, num_return_sequences=16)
        for text, finished, _ in outs:
            if not finished:
                cut_n += 1
                continue
            finished_n += 1
            msg = _check_output(template, text, tools, choice, True)
            _stream_equals_batch(template, text, tools, choice, rng, msg)
    assert finished_n + cut_n == 32
    # a random model without a budget runs long: some are cut (reported, not hidden)
    print(f"{version}: {finished_n} finished (all valid), {cut_n} cut by max_new_tokens")


def test_generate_returns_openai_messages():
    from functionary.hf import generate

    model, tok, compiler = _model("llama3.1")
    tools = TOOL_LISTS[0][1]
    msg = generate(model, tok, [{"role": "user", "content": "hi"}], tools, "required",
                   template="v3.llama3", compiler=compiler, do_sample=True, max_new_tokens=64)
    assert msg["role"] == "assistant"
    assert msg["finish_reason"] == "tool_calls"
    assert msg["tool_calls"] and msg["tool_calls"][0]["id"].startswith("call_")
    many = generate(model, tok, [{"role": "user", "content": "hi"}], tools, "none",
                    template="v3.llama3", compiler=compiler, do_sample=True, max_new_tokens=16,
                    num_return_sequences=3)
    assert isinstance(many, list) and len(many) == 3
    assert all(m["tool_calls"] is None for m in many)
