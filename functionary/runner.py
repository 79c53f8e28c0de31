"""Run a tool-calling conversation against any OpenAI-compatible endpoint.

:class:`Runner` (and :class:`AsyncRunner`) send the messages and the tool definitions of
Python callables to ``/v1/chat/completions`` with the real ``openai`` client, execute
every tool call the model returns, append the results as ``tool`` messages, and repeat
until the model answers with text or ``max_steps`` requests were made::

    from functionary.runner import Runner

    def get_weather(city: str) -> dict:
        '''Current weather.

        Args:
            city: City name.
        '''
        return {"city": city, "temperature": 21}

    runner = Runner([get_weather], base_url="http://127.0.0.1:8000/v1", code_interpreter=True)
    result = runner.run("What's the weather in Paris?")
    print(result.content)

Executing a call
----------------
For each call of a step, in order:

1. the name is looked up (an unknown name is an error result);
2. the arguments are decoded as JSON and validated against the tool's schema with
   ``jsonschema`` (an error result names the failing path; the function is not called);
3. the values are converted to the annotated Python types
   (:func:`functionary.tools.coerce_arguments`) and the function is called.

All the calls of one step run concurrently (threads for plain functions, tasks for
``async def`` functions), each with ``call_timeout`` seconds.  A function's exception
or timeout becomes the text of its ``tool`` message (``"Error: ValueError: ..."``): the
loop never crashes because of a tool.  Results that are not strings are sent as JSON
(dataclasses, pydantic models, enums, dates and sets are converted).

Calls to ``python`` (the ``{"type": "code_interpreter"}`` tool, whose arguments are raw
code) run in a :class:`~functionary.code_interpreter.CodeInterpreter`; one session per
:meth:`Runner.run`, so variables persist across the calls of a conversation.

A sync function that times out cannot be stopped (Python threads cannot be killed): it
goes on in a daemon thread and its result is discarded.  ``async def`` functions are
cancelled.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as _dt
import enum
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

from functionary.code_interpreter import CodeInterpreter
from functionary.errors import FunctionaryError
from functionary.messages import new_call_id
from functionary.tools import Tool

if TYPE_CHECKING:  # pragma: no cover
    import openai

__all__ = [
    "PYTHON",
    "Runner",
    "AsyncRunner",
    "RunResult",
    "ToolCallRecord",
    "RunnerError",
    "format_result",
]

log = logging.getLogger("functionary.runner")

#: Name of code-interpreter calls.
PYTHON = "python"

CallError = Literal["unknown_function", "invalid_json", "invalid_arguments", "exception", "timeout", "code_error"]
StopReason = Literal["answer", "step_limit"]


class RunnerError(FunctionaryError):
    """The runner was misconfigured, or the endpoint's reply cannot be used.

    Raised for duplicate tool names, a function named ``python`` next to the code
    interpreter, a tool schema that is not valid JSON Schema, a reply without choices,
    or no model to use.  Never raised for what a tool does.
    """


@dataclass(frozen=True)
class ToolCallRecord:
    """One executed tool call.

    Attributes
    ----------
    step : int
        The request (1-based) whose reply contained the call.
    id : str
        The ``tool_call_id`` answered.
    name : str
        The function name (``python`` for code).
    arguments : str
        The arguments exactly as the model produced them.
    content : str
        The ``tool`` message content sent back.
    error : str or None
        ``None`` on success; otherwise ``"unknown_function"``, ``"invalid_json"``,
        ``"invalid_arguments"``, ``"exception"``, ``"timeout"`` or (python) ``"code_error"``.
    duration : float
        Seconds from the start of the step's calls to this call's end.
    """

    step: int
    id: str
    name: str
    arguments: str
    content: str
    error: CallError | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.error is None


@dataclass(frozen=True)
class RunResult:
    """The outcome of :meth:`Runner.run`.

    Attributes
    ----------
    content : str or None
        The final text answer (``None`` when the step limit was reached).
    messages : list of dict
        The whole conversation: the input messages, each assistant message (with its
        ``tool_calls``) and each ``tool`` message.
    tool_calls : tuple of ToolCallRecord
        Every executed call, in order.
    steps : int
        Number of chat-completion requests made.
    stop_reason : {"answer", "step_limit"}
    """

    content: str | None
    messages: list[dict[str, Any]]
    tool_calls: tuple[ToolCallRecord, ...]
    steps: int
    stop_reason: StopReason


# --------------------------------------------------------------------------- helpers


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def format_result(value: Any) -> str:
    """The ``tool`` message content of a function's return value.

    Strings are sent as they are; anything else as JSON (non-JSON objects converted:
    enums to values, dataclasses and pydantic models to objects, dates to ISO text,
    sets and tuples to arrays, other objects to ``str``).
    """
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_to_jsonable, ensure_ascii=False)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Call:
    """A call after parsing: either ready to run or already answered with an error."""

    step: int
    id: str
    name: str
    arguments: str
    tool: Tool | None = None
    bound: inspect.BoundArguments | None = None
    code: str | None = None
    record: ToolCallRecord | None = None

    def done(self, content: str, error: CallError | None, duration: float) -> ToolCallRecord:
        return ToolCallRecord(self.step, self.id, self.name, self.arguments, content, error, duration)


class _Base:
    def __init__(
        self,
        tools: Iterable[Callable[..., Any] | Tool] = (),
        *,
        client: Any = None,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        code_interpreter: bool | CodeInterpreter | Callable[[], CodeInterpreter] = False,
        max_steps: int = 10,
        call_timeout: float | None = 60.0,
        tool_choice: Any = "auto",
        completion_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.tools: dict[str, Tool] = {}
        for item in tools:
            tool = item if isinstance(item, Tool) else Tool.from_function(item)
            if tool.name in self.tools:
                raise RunnerError(f"two tools are named {tool.name!r}")
            self.tools[tool.name] = tool
        self.code_interpreter = code_interpreter
        if code_interpreter is not False and code_interpreter is not None and PYTHON in self.tools:
            raise RunnerError("a function named 'python' cannot be combined with the code interpreter")
        self._validators = {name: self._validator(tool) for name, tool in self.tools.items()}
        self.model = model
        self.max_steps = int(max_steps)
        self.call_timeout = call_timeout
        self.tool_choice = tool_choice
        self.completion_kwargs = dict(completion_kwargs or {})
        self._client = client
        self._base_url = base_url
        self._api_key = api_key

    @staticmethod
    def _validator(tool: Tool) -> Any:
        import jsonschema

        schema = tool.parameters
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise RunnerError(f"the parameters of {tool.name!r} are not a valid JSON Schema: {exc.message}") from exc
        return cls(schema)

    @property
    def definitions(self) -> list[dict[str, Any]]:
        """The ``tools`` list sent with each request."""
        defs = [copy.deepcopy(t.definition) for t in self.tools.values()]
        if self.code_interpreter is not False and self.code_interpreter is not None:
            defs.append({"type": "code_interpreter"})
        return defs

    @staticmethod
    def _messages(messages: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if isinstance(messages, str):
            return [{"role": "user", "content": messages}]
        return [copy.deepcopy(dict(m)) for m in messages]

    def _request(self, model: str, messages: list[dict[str, Any]], tool_choice: Any, extra: Mapping[str, Any]) -> dict:
        kwargs: dict[str, Any] = {"model": model, "messages": messages}
        defs = self.definitions
        if defs:
            kwargs["tools"] = defs
            if tool_choice is not None:
                kwargs["tool_choice"] = tool_choice
        kwargs.update(self.completion_kwargs)
        kwargs.update(extra)
        return kwargs

    @staticmethod
    def _assistant(response: Any) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
        choices = getattr(response, "choices", None)
        if not choices:
            raise RunnerError(f"the endpoint returned no choices: {response!r}")
        msg = choices[0].message
        out: dict[str, Any] = {"role": "assistant", "content": msg.content}
        calls: list[tuple[str, str, str]] = []
        for call in msg.tool_calls or ():
            fn = getattr(call, "function", None)
            if fn is None:
                continue
            call_id = call.id or new_call_id()
            calls.append((call_id, fn.name, fn.arguments or ""))
        if calls:
            out["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, name, args in calls
            ]
        return out, calls

    def _prepare(self, step: int, call_id: str, name: str, arguments: str) -> _Call:
        call = _Call(step, call_id, name, arguments)
        if name == PYTHON and self.code_interpreter not in (False, None):
            call.code = arguments
            try:
                decoded = json.loads(arguments)
                if isinstance(decoded, dict) and set(decoded) == {"code"} and isinstance(decoded["code"], str):
                    call.code = decoded["code"]
            except ValueError:
                pass
            return call
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            call.record = call.done(f"Error: unknown function {name!r}; available functions: {known}.",
                                    "unknown_function", 0.0)
            return call
        try:
            decoded = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            call.record = call.done(f"Error: the arguments of {name!r} are not valid JSON ({exc}).",
                                    "invalid_json", 0.0)
            return call
        errors = sorted(self._validators[name].iter_errors(decoded), key=lambda e: list(e.absolute_path))
        if errors:
            shown = "; ".join(
                f"{e.message} (at {'/'.join(map(str, e.absolute_path)) or 'the top level'})" for e in errors[:5]
            )
            more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            call.record = call.done(f"Error: invalid arguments for {name!r}: {shown}{more}.",
                                    "invalid_arguments", 0.0)
            return call
        try:
            call.bound = tool.bind(decoded)
        except (TypeError, ValueError, KeyError) as exc:
            call.record = call.done(f"Error: invalid arguments for {name!r}: {_error_text(exc)}.",
                                    "invalid_arguments", 0.0)
            return call
        call.tool = tool
        return call

    def _timeout_record(self, call: _Call, duration: float) -> ToolCallRecord:
        return call.done(
            f"Error: TimeoutError: {call.name!r} did not finish within {self.call_timeout:g} s.", "timeout", duration
        )

    @staticmethod
    def _code_record(call: _Call, result: Any, duration: float) -> ToolCallRecord:
        return call.done(str(result), None if result.ok else "code_error", duration)

    @staticmethod
    def _tool_message(record: ToolCallRecord) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": record.id, "content": record.content}

    def _interpreter(self) -> tuple[CodeInterpreter | None, bool]:
        ci = self.code_interpreter
        if ci is False or ci is None:
            return None, False
        if isinstance(ci, CodeInterpreter):
            return ci, False
        if ci is True:
            return CodeInterpreter(), True
        return ci(), True


# --------------------------------------------------------------------------- sync


def _run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the model as the result
            box["error"] = exc
        box["end"] = time.monotonic()

    thread = threading.Thread(target=work, daemon=True, name="functionary-tool")
    thread.start()
    return thread, box


class Runner(_Base):
    """Synchronous tool-calling loop on an ``openai.OpenAI`` client.

    Parameters
    ----------
    tools : iterable of callable or Tool, optional
        The functions offered to the model (described with
        :func:`functionary.tools.function_to_tool`).
    client : openai.OpenAI, optional
        A ready client; otherwise one is made from ``base_url`` and ``api_key``.
    model : str, optional
        The model name; by default the first model the endpoint lists.
    base_url : str, optional
        E.g. ``"http://127.0.0.1:8000/v1"`` (``openai`` reads ``$OPENAI_BASE_URL`` when
        ``None``).
    api_key : str, optional
        Defaults to ``$OPENAI_API_KEY``, or ``"functionary"`` when that is unset (local
        servers do not check it).
    code_interpreter : bool, CodeInterpreter or callable, default False
        ``True`` offers ``{"type": "code_interpreter"}`` and runs ``python`` calls in a
        fresh :class:`CodeInterpreter` per :meth:`run` (closed at its end); an instance
        is used as is (state shared across runs, the caller closes it); a callable is a
        factory called once per run (the runner closes what it returns).
    max_steps : int, default 10
        The most chat-completion requests per :meth:`run`.
    call_timeout : float or None, default 60
        Seconds per function call (``None``: no limit).  Code-interpreter calls use the
        interpreter's own timeout.
    tool_choice : str or dict, default "auto"
        Sent with every request that has tools.
    completion_kwargs : Mapping, optional
        Extra arguments of ``chat.completions.create`` (``temperature``,
        ``extra_body``...).

    Raises
    ------
    RunnerError
        For duplicate tool names, ``python`` next to the code interpreter, or an invalid
        parameters schema.
    functionary.tools.ToolSchemaError
        When a callable cannot be described.
    """

    @property
    def client(self) -> openai.OpenAI:
        """The ``openai.OpenAI`` client (created on first use)."""
        if self._client is None:
            import os

            import openai

            self._client = openai.OpenAI(
                base_url=self._base_url,
                api_key=self._api_key or os.environ.get("OPENAI_API_KEY") or "functionary",
            )
        return self._client

    def _model(self) -> str:
        if self.model is None:
            models = self.client.models.list().data
            if not models:
                raise RunnerError("the endpoint lists no model; pass model=...")
            self.model = models[0].id
        return self.model

    def run(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        max_steps: int | None = None,
        tool_choice: Any = None,
        **create_kwargs: Any,
    ) -> RunResult:
        """Converse until the model answers with text or the step limit is reached.

        Parameters
        ----------
        messages : str or sequence of dict
            A user prompt, or the OpenAI messages to start from (not modified).
        max_steps : int, optional
            Overrides the runner's ``max_steps``.
        tool_choice : str or dict, optional
            Overrides the runner's ``tool_choice`` for this run.
        **create_kwargs
            Extra arguments of ``chat.completions.create`` for this run.

        Returns
        -------
        RunResult

        Raises
        ------
        openai.OpenAIError
            Errors of the endpoint (connection, HTTP status) propagate.
        RunnerError
            For a reply without choices, or no model to use.
        """
        history = self._messages(messages)
        limit = self.max_steps if max_steps is None else int(max_steps)
        choice = self.tool_choice if tool_choice is None else tool_choice
        records: list[ToolCallRecord] = []
        interpreter: CodeInterpreter | None = None
        owned = False
        try:
            for step in range(1, limit + 1):
                request = self._request(self._model(), history, choice, create_kwargs)
                log.debug("step %d: %d messages", step, len(history))
                response = self.client.chat.completions.create(**request)
                assistant, calls = self._assistant(response)
                history.append(assistant)
                if not calls:
                    return RunResult(assistant.get("content") or "", history, tuple(records), step, "answer")
                prepared = [self._prepare(step, *c) for c in calls]
                if interpreter is None and any(c.code is not None for c in prepared):
                    interpreter, owned = self._interpreter()
                done = self._execute(prepared, interpreter)
                records.extend(done)
                history.extend(self._tool_message(r) for r in done)
            return RunResult(None, history, tuple(records), limit, "step_limit")
        finally:
            if owned and interpreter is not None:
                interpreter.close()

    def _execute(self, calls: list[_Call], interpreter: CodeInterpreter | None) -> list[ToolCallRecord]:
        start = time.monotonic()
        running: list[tuple[_Call, threading.Thread, dict[str, Any], float | None]] = []
        for call in calls:
            if call.record is not None:
                continue
            if call.code is not None:
                assert interpreter is not None
                code = call.code
                thread, box = _run_in_thread(lambda code=code: interpreter.run(code))
                running.append((call, thread, box, None))
            else:
                thread, box = _run_in_thread(self._invoker(call))
                running.append((call, thread, box, self.call_timeout))
        results: dict[int, ToolCallRecord] = {}
        for call, thread, box, timeout in running:
            remaining = None if timeout is None else max(0.0, start + timeout - time.monotonic())
            thread.join(remaining)
            end = box.get("end", time.monotonic()) - start
            if thread.is_alive():
                results[id(call)] = self._timeout_record(call, end)
                log.warning("tool %s (%s) timed out after %.3g s", call.name, call.id, end)
            elif "error" in box:
                exc = box["error"]
                log.info("tool %s raised %s", call.name, _error_text(exc), exc_info=exc)
                results[id(call)] = call.done(f"Error: {_error_text(exc)}", "exception", end)
            elif call.code is not None:
                results[id(call)] = self._code_record(call, box["value"], end)
            else:
                results[id(call)] = call.done(format_result(box["value"]), None, end)
        return [call.record if call.record is not None else results[id(call)] for call in calls]

    def _invoker(self, call: _Call) -> Callable[[], Any]:
        tool, bound = call.tool, call.bound
        assert tool is not None and bound is not None
        if tool.is_async:
            timeout = self.call_timeout

            async def run_async() -> Any:
                return await asyncio.wait_for(tool.fn(*bound.args, **bound.kwargs), timeout)

            return lambda: asyncio.run(run_async())
        return lambda: tool.fn(*bound.args, **bound.kwargs)


# --------------------------------------------------------------------------- async


class AsyncRunner(_Base):
    """Asynchronous tool-calling loop on an ``openai.AsyncOpenAI`` client.

    Takes the same parameters as :class:`Runner` (``client`` is an
    ``openai.AsyncOpenAI``).  ``async def`` tools run as tasks (cancelled on timeout);
    plain functions and code-interpreter calls run in daemon threads, so they never block
    the event loop.
    """

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The ``openai.AsyncOpenAI`` client (created on first use)."""
        if self._client is None:
            import os

            import openai

            self._client = openai.AsyncOpenAI(
                base_url=self._base_url,
                api_key=self._api_key or os.environ.get("OPENAI_API_KEY") or "functionary",
            )
        return self._client

    async def _model(self) -> str:
        if self.model is None:
            models = (await self.client.models.list()).data
            if not models:
                raise RunnerError("the endpoint lists no model; pass model=...")
            self.model = models[0].id
        return self.model

    async def run(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        max_steps: int | None = None,
        tool_choice: Any = None,
        **create_kwargs: Any,
    ) -> RunResult:
        """Converse until the model answers with text or the step limit is reached.

        See :meth:`Runner.run`; this is its coroutine form.
        """
        history = self._messages(messages)
        limit = self.max_steps if max_steps is None else int(max_steps)
        choice = self.tool_choice if tool_choice is None else tool_choice
        records: list[ToolCallRecord] = []
        interpreter: CodeInterpreter | None = None
        owned = False
        try:
            for step in range(1, limit + 1):
                request = self._request(await self._model(), history, choice, create_kwargs)
                response = await self.client.chat.completions.create(**request)
                assistant, calls = self._assistant(response)
                history.append(assistant)
                if not calls:
                    return RunResult(assistant.get("content") or "", history, tuple(records), step, "answer")
                prepared = [self._prepare(step, *c) for c in calls]
                if interpreter is None and any(c.code is not None for c in prepared):
                    interpreter, owned = self._interpreter()
                start = time.monotonic()
                done = await asyncio.gather(*(self._execute_one(c, interpreter, start) for c in prepared))
                records.extend(done)
                history.extend(self._tool_message(r) for r in done)
            return RunResult(None, history, tuple(records), limit, "step_limit")
        finally:
            if owned and interpreter is not None:
                await asyncio.to_thread(interpreter.close)

    async def _execute_one(self, call: _Call, interpreter: CodeInterpreter | None, start: float) -> ToolCallRecord:
        if call.record is not None:
            return call.record
        if call.code is not None:
            assert interpreter is not None
            code = call.code
            result = await _in_thread(lambda: interpreter.run(code))
            return self._code_record(call, result, time.monotonic() - start)
        tool, bound = call.tool, call.bound
        assert tool is not None and bound is not None
        try:
            if tool.is_async:
                value = await asyncio.wait_for(tool.fn(*bound.args, **bound.kwargs), self.call_timeout)
            else:
                value = await asyncio.wait_for(
                    _in_thread(lambda: tool.fn(*bound.args, **bound.kwargs)), self.call_timeout
                )
        except asyncio.TimeoutError:
            log.warning("tool %s (%s) timed out", call.name, call.id)
            return self._timeout_record(call, time.monotonic() - start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the model as the result
            log.info("tool %s raised %s", call.name, _error_text(exc), exc_info=exc)
            return call.done(f"Error: {_error_text(exc)}", "exception", time.monotonic() - start)
        return call.done(format_result(value), None, time.monotonic() - start)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a daemon thread; awaiting it can be cancelled (the thread goes on)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, payload: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(payload)

    def work() -> None:
        try:
            outcome = (True, fn())
        except BaseException as exc:  # noqa: BLE001
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits for this result any more
            pass

    threading.Thread(target=work, daemon=True, name="functionary-tool").start()
    return await future
