"""functionary.runner against a scripted OpenAI-compatible stub (and, with vLLM, the real server).

The stub is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 that answers
``/v1/chat/completions`` with scripted replies (tool calls, then a text answer) and
records every request, so each test can check what the runner sent back.  The runner
talks to it through the real ``openai`` client.
"""

from __future__ import annotations

import asyncio
import enum
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest

pytest.importorskip("openai")

from functionary.code_interpreter import CodeInterpreter  # noqa: E402
from functionary.errors import FunctionaryError  # noqa: E402
from functionary.runner import AsyncRunner, Runner, RunnerError, format_result  # noqa: E402

Call = tuple[str, Any]  # (name, arguments: a dict to JSON-encode, or raw text)
Turn = str | list[Call]


class Stub:
    """A scripted chat-completions endpoint.

    Parameters
    ----------
    script : list, or callable(request_body, index) -> Turn
        Each turn is a text answer (str) or a list of ``(name, arguments)`` calls.
    """

    def __init__(self, script: list[Turn] | Callable[[dict, int], Turn]) -> None:
        self.script = script
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": "stub-model", "object": "model", "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                index = len(stub.requests)
                stub.requests.append(body)
                try:
                    turn = stub.script(body, index) if callable(stub.script) else stub.script[index]
                except IndexError:
                    self._send(500, {"error": {"message": "script exhausted", "type": "server_error"}})
                    return
                self._send(200, completion(turn, index))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def completion(turn: Turn, index: int) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if isinstance(turn, str):
        message["content"] = turn
        finish = "stop"
    else:
        message["tool_calls"] = [
            {"id": f"call_{index}_{k}", "type": "function",
             "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
            for k, (name, args) in enumerate(turn)
        ]
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{index}", "object": "chat.completion", "created": 0, "model": "stub-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture
def stub_factory():
    stubs: list[Stub] = []

    def make(script):
        stub = Stub(script)
        stubs.append(stub)
        return stub

    yield make
    for stub in stubs:
        stub.close()


def tool_messages(request: dict) -> list[dict]:
    return [m for m in request["messages"] if m["role"] == "tool"]


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def get_weather(city: str, unit: Unit = Unit.CELSIUS) -> dict:
    """Current weather of a city.

    Args:
        city: City name.
        unit: Temperature unit.
    """
    assert isinstance(unit, Unit)  # the runner converts the JSON value to the Enum
    return {"city": city, "temperature": 21 if unit is Unit.CELSIUS else 70, "unit": unit}


# --------------------------------------------------------------------------- basic flows


def test_text_answer_in_one_step(stub_factory):
    stub = stub_factory(["Hello!"])
    result = Runner([get_weather], base_url=stub.base_url, model="m").run("hi")
    assert result.content == "Hello!" and result.stop_reason == "answer" and result.steps == 1
    assert result.tool_calls == ()
    request = stub.requests[0]
    assert request["model"] == "m" and request["tool_choice"] == "auto"
    assert request["messages"] == [{"role": "user", "content": "hi"}]
    assert request["tools"][0]["function"]["name"] == "get_weather"
    assert request["tools"][0]["function"]["parameters"]["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]


def test_multi_step_flow_appends_tool_results(stub_factory):
    stub = stub_factory([
        [("get_weather", {"city": "Paris", "unit": "fahrenheit"})],
        [("get_weather", {"city": "Oslo"})],
        "Paris is warmer.",
    ])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Compare."}]
    runner = Runner([get_weather], base_url=stub.base_url)  # model discovered via /v1/models
    result = runner.run(messages)
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Compare."}]
    assert result.content == "Paris is warmer." and result.steps == 3
    assert [r.name for r in result.tool_calls] == ["get_weather", "get_weather"]
    assert all(r.ok for r in result.tool_calls)
    assert stub.requests[0]["model"] == "stub-model"
    # the second request carries the first call and its result, with the right id
    second = stub.requests[1]["messages"]
    assert second[2]["role"] == "assistant" and second[2]["tool_calls"][0]["id"] == "call_0_0"
    assert second[3] == {
        "role": "tool", "tool_call_id": "call_0_0",
        "content": json.dumps({"city": "Paris", "temperature": 70, "unit": "fahrenheit"}),
    }
    third = tool_messages(stub.requests[2])
    assert [m["tool_call_id"] for m in third] == ["call_0_0", "call_1_0"]
    assert json.loads(third[1]["content"])["temperature"] == 21
    assert result.messages[-1] == {"role": "assistant", "content": "Paris is warmer."}
    assert len(result.messages) == 2 + 2 + 2 + 1


def test_parallel_calls_run_concurrently(stub_factory):
    barrier = threading.Barrier(3, timeout=5)  # all three calls must be in flight together

    def lookup(key: str) -> str:
        barrier.wait()  # raises BrokenBarrierError (-> an error result) if run one at a time
        time.sleep(0.5)
        return key.upper()

    stub = stub_factory([[("lookup", {"key": "a"}), ("lookup", {"key": "b"}), ("lookup", {"key": "c"})], "done"])
    start = time.monotonic()
    result = Runner([lookup], base_url=stub.base_url, model="m", call_timeout=10).run("go")
    elapsed = time.monotonic() - start
    assert [r.content for r in result.tool_calls] == ["A", "B", "C"]
    assert all(r.ok for r in result.tool_calls)
    assert elapsed < 1.3, elapsed  # three 0.5 s calls: 1.5 s one after the other
    # results are appended in the order of the calls, each with its own id
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages(stub.requests[1])] == [
        ("call_0_0", "A"), ("call_0_1", "B"), ("call_0_2", "C")]


def test_timeout_exception_and_success_in_one_step(stub_factory):
    def slow(seconds: float) -> str:
        time.sleep(seconds)
        return "finished"

    def explode(message: str) -> str:
        raise ValueError(message)

    stub = stub_factory([
        [("slow", {"seconds": 5}), ("explode", {"message": "bad input"}), ("slow", {"seconds": 0})],
        "recovered",
    ])
    start = time.monotonic()
    result = Runner([slow, explode], base_url=stub.base_url, model="m", call_timeout=0.5).run("go")
    assert time.monotonic() - start < 2.5
    timed_out, failed, fine = result.tool_calls
    assert timed_out.error == "timeout" and "did not finish within 0.5 s" in timed_out.content
    assert failed.error == "exception" and failed.content == "Error: ValueError: bad input"
    assert fine.ok and fine.content == "finished"
    assert result.content == "recovered"  # the loop went on
    sent = tool_messages(stub.requests[1])
    assert sent[1]["content"] == "Error: ValueError: bad input"


def test_invalid_arguments_are_not_executed(stub_factory):
    called: list[Any] = []

    def book(city: str, nights: int, kind: Literal["hotel", "hostel"] = "hotel") -> str:
        called.append((city, nights, kind))
        return "booked"

    stub = stub_factory([
        [
            ("book", {"city": "Rome"}),  # missing required
            ("book", {"city": "Rome", "nights": "two"}),  # wrong type
            ("book", {"city": "Rome", "nights": 2, "kind": "tent"}),  # not in the enum
            ("book", {"city": "Rome", "nights": 2, "pets": True}),  # additional property
            ("book", '{"city": "Rome", '),  # not JSON
            ("fly", {"to": "Rome"}),  # unknown function
            ("book", {"city": "Rome", "nights": 2}),  # valid
        ],
        "ok",
    ])
    result = Runner([book], base_url=stub.base_url, model="m").run("book")
    errors = [r.error for r in result.tool_calls]
    assert errors == ["invalid_arguments"] * 4 + ["invalid_json", "unknown_function", None]
    contents = [r.content for r in result.tool_calls]
    assert "'nights' is a required property" in contents[0]
    assert "'two' is not of type 'integer'" in contents[1] and "at nights" in contents[1]
    assert "'tent' is not one of" in contents[2]
    assert "pets" in contents[3]
    assert "not valid JSON" in contents[4]
    assert "unknown function 'fly'" in contents[5] and "book" in contents[5]
    assert called == [("Rome", 2, "hotel")]
    assert len(tool_messages(stub.requests[1])) == 7


def test_step_limit(stub_factory):
    counter = {"n": 0}

    def tick() -> int:
        counter["n"] += 1
        return counter["n"]

    stub = stub_factory(lambda body, i: [("tick", {})])  # never answers
    runner = Runner([tick], base_url=stub.base_url, model="m", max_steps=3)
    result = runner.run("count")
    assert result.stop_reason == "step_limit" and result.content is None
    assert result.steps == 3 and len(stub.requests) == 3 and counter["n"] == 3
    assert result.messages[-1]["role"] == "tool"
    assert runner.run("again", max_steps=1).steps == 1


def test_code_interpreter_state_persists_within_a_run(stub_factory, tmp_path):
    stub = stub_factory([
        [("python", "import math\nvalues = [1, 2, 3]\nprint('stored')")],
        [("python", json.dumps({"code": "sum(values) * math.pi"}))],  # JSON-wrapped code works too
        [("python", "values[10]")],
        "done",
    ])
    made: list[CodeInterpreter] = []

    def factory() -> CodeInterpreter:
        made.append(CodeInterpreter(workdir=tmp_path / "ci", timeout=10))
        return made[-1]

    result = Runner([], base_url=stub.base_url, model="m", code_interpreter=factory).run("compute")
    first, second, third = result.tool_calls
    assert first.content == "stored" and first.ok
    assert second.content == repr(6 * 3.141592653589793)
    assert third.error == "code_error" and "IndexError" in third.content
    assert stub.requests[0]["tools"] == [{"type": "code_interpreter"}]
    assert len(made) == 1 and made[0]._closed  # one session per run, closed at the end


def test_shared_interpreter_is_left_open(stub_factory, tmp_path):
    stub = stub_factory([[("python", "x = 5")], "a", [("python", "x * 2")], "b"])
    with CodeInterpreter(workdir=tmp_path, timeout=10) as ci:
        runner = Runner(base_url=stub.base_url, model="m", code_interpreter=ci)
        runner.run("first")
        result = runner.run("second")
        assert result.tool_calls[0].content == "10"  # state carried across runs
        assert ci.run("x").value == "5"


def test_configuration_errors(stub_factory):
    def python(code: str) -> str:
        return code

    with pytest.raises(RunnerError, match="python"):
        Runner([python], code_interpreter=True, base_url="http://127.0.0.1:9/v1")

    def f() -> None:
        pass

    with pytest.raises(RunnerError, match="two tools"):
        Runner([f, f], base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError):
        Runner([f], max_steps=0)
    assert issubclass(RunnerError, FunctionaryError)
    # no code interpreter: a `python` call is an unknown function, answered as such
    stub = stub_factory([[("python", "print(1)")], "ok"])
    result = Runner([f], base_url=stub.base_url, model="m").run("x")
    assert result.tool_calls[0].error == "unknown_function"


def test_format_result_and_extra_kwargs(stub_factory):
    import dataclasses

    @dataclasses.dataclass
    class Pt:
        x: int

    assert format_result("text") == "text"
    assert json.loads(format_result({"p": Pt(1), "s": {3}, "u": Unit.CELSIUS, "n": None})) == {
        "p": {"x": 1}, "s": [3], "u": "celsius", "n": None}
    stub = stub_factory(["fine"])
    Runner([get_weather], base_url=stub.base_url, model="m", completion_kwargs={"temperature": 0.2}).run(
        "x", tool_choice="required", max_tokens=7
    )
    assert stub.requests[0]["temperature"] == 0.2 and stub.requests[0]["max_tokens"] == 7
    assert stub.requests[0]["tool_choice"] == "required"


# --------------------------------------------------------------------------- async


def test_async_runner_parallel_timeouts_and_errors(stub_factory):
    cancelled: list[str] = []

    async def fetch(key: str) -> str:
        await asyncio.sleep(0.3)
        return f"async-{key}"

    async def hang() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("hang")
            raise
        return "never"

    def blocking(key: str) -> str:
        time.sleep(0.3)
        return f"sync-{key}"

    def broken() -> str:
        raise RuntimeError("boom")

    stub = stub_factory([
        [("fetch", {"key": "a"}), ("fetch", {"key": "b"}), ("blocking", {"key": "c"}), ("blocking", {"key": "d"}),
         ("hang", {}), ("broken", {}), ("fetch", {"key": 1})],
        "done",
    ])

    async def main():
        runner = AsyncRunner([fetch, hang, blocking, broken], base_url=stub.base_url, call_timeout=1.0)
        start = time.monotonic()
        result = await runner.run("go")
        return result, time.monotonic() - start

    result, elapsed = asyncio.run(main())
    contents = [r.content for r in result.tool_calls]
    assert contents[:4] == ["async-a", "async-b", "sync-c", "sync-d"]
    assert result.tool_calls[4].error == "timeout" and cancelled == ["hang"]
    assert result.tool_calls[5].content == "Error: RuntimeError: boom"
    assert result.tool_calls[6].error == "invalid_arguments"
    assert elapsed < 1.9, elapsed  # 4 x 0.3 s of work and a 1 s timeout, all at once
    assert result.content == "done" and stub.requests[0]["model"] == "stub-model"
    assert [m["tool_call_id"] for m in tool_messages(stub.requests[1])] == [f"call_0_{k}" for k in range(7)]


def test_async_runner_concurrency_barrier_and_code(stub_factory, tmp_path):
    barrier = asyncio.Barrier(2)

    async def meet(who: str) -> str:
        await asyncio.wait_for(barrier.wait(), 5)  # deadlocks (-> timeout) unless concurrent
        return who

    stub = stub_factory([
        [("meet", {"who": "x"}), ("meet", {"who": "y"}), ("python", "z = 21")],
        [("python", "z * 2")],
        "bye",
    ])

    async def main():
        ci = CodeInterpreter(workdir=tmp_path, timeout=10)
        try:
            runner = AsyncRunner([meet], base_url=stub.base_url, model="m", code_interpreter=ci)
            return await runner.run("go")
        finally:
            ci.close()

    result = asyncio.run(main())
    assert [r.content for r in result.tool_calls] == ["x", "y", "(no output)", "42"]
    assert result.steps == 3 and result.stop_reason == "answer"


def test_async_step_limit(stub_factory):
    def noop() -> str:
        return "ok"

    stub = stub_factory(lambda body, i: [("noop", {})])
    result = asyncio.run(AsyncRunner([noop], base_url=stub.base_url, model="m", max_steps=2).run("x"))
    assert result.stop_reason == "step_limit" and len(stub.requests) == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_example_script_against_the_stub(stub_factory, mode):
    stub = stub_factory([
        [("get_weather", {"city": "Oslo", "unit": "fahrenheit"}),
         ("price_trip", {"trip": {"origin": "Oslo", "destination": "Paris", "nights": 3}}),
         ("convert_currency", {"amount": 405, "to": "USD"})],
        "Oslo is 39F; the trip is 437.4 USD.",
    ])
    script = Path(__file__).resolve().parents[2] / "examples" / "run_functions.py"
    argv = [sys.executable, str(script), "--base-url", stub.base_url] + (["--async"] if mode == "async" else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    sent = [json.loads(m["content"]) for m in tool_messages(stub.requests[1])]
    assert sent[0] == {"city": "Oslo", "temperature": 39, "unit": "fahrenheit", "sky": "clear"}
    assert sent[1] == {"trip": {"origin": "Oslo", "destination": "Paris", "nights": 3}, "price_eur": 405}
    assert sent[2] == 437.4
    assert "answer after 2 request(s)" in proc.stdout and "437.4 USD" in proc.stdout


# --------------------------------------------------------------------------- the real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def grammar_server(tmp_path_factory):
    """``python -m functionary serve`` with the tiny llama3.1 model and grammar sampling."""
    from functionary.tiny_model import build_tiny_model

    model_dir = tmp_path_factory.mktemp("tiny-llama31")
    build_tiny_model("llama3.1", out_dir=model_dir)  # saves weights + tokenizer files there
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "functionary", "serve", "--model", str(model_dir),
         "--enable-grammar-sampling", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    import httpx

    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.vllm
@pytest.mark.slow
def test_runner_against_the_grammar_server(grammar_server, tmp_path):
    """Random weights, but grammar sampling: every call the model makes names a real tool
    and carries schema-valid arguments, so none fails validation."""

    def get_weather(city: str, unit: Literal["c", "f"] = "c") -> str:
        """Weather of a city.

        Args:
            city: City name.
            unit: Unit.
        """
        return f"{city}: 20 {unit}"

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    with CodeInterpreter(workdir=tmp_path, timeout=10) as ci:
        runner = Runner([get_weather, add], base_url=grammar_server, code_interpreter=ci, max_steps=3,
                        completion_kwargs={"max_tokens": 64, "temperature": 1.0})
        for choice in ("required", "auto"):
            result = runner.run("What's the weather in Paris?", tool_choice=choice)
            assert result.stop_reason in ("answer", "step_limit")
            if choice == "required":
                assert result.tool_calls, "tool_choice=required must produce a call"
            for record in result.tool_calls:
                assert record.name in ("get_weather", "add", "python")
                assert record.error not in ("unknown_function", "invalid_json", "invalid_arguments"), record
            ids = [m["tool_call_id"] for m in result.messages if m["role"] == "tool"]
            assert ids == [r.id for r in result.tool_calls]
