"""``/v1/chat/completions``: request → prompt → vLLM → parsed assistant messages.

:func:`prepare` turns a validated request into a :class:`PreparedChat` (or raises an
:class:`~functionary.server.errors.APIError`): it checks the model name, the legacy
``functions`` fields, ``tool_choice``, renders the prompt with the Functionary template,
compiles the tool grammar (grammar sampling), tokenises, checks the context length and
builds vLLM's ``SamplingParams``.  Everything that can be wrong with a request is found
here, before the engine sees it, so a bad request never reaches the engine.

:func:`complete` and :func:`stream` run the request.  Output text is parsed with the
template's own parser (``stream_parser``; one per choice, so ``n > 1`` streams each choice
independently).  ``finish_reason`` is the parser's (``tool_calls`` when a call was parsed,
``stop`` otherwise, ``function_call`` for legacy requests), turned into ``length`` when
``max_tokens`` cut the output.  With grammar sampling, a non-streamed call whose arguments
were cut (by ``max_tokens`` or a ``stop`` string: budget-aware termination makes the
former rare) is dropped, so every returned tool call is complete and valid.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from functionary.errors import RequestError

from .errors import BadRequest, classify
from .protocol import ChatCompletionRequest

__all__ = ["PreparedChat", "prepare", "complete", "stream", "DEFAULT_TEMPERATURE"]

log = logging.getLogger("functionary.server")

#: OpenAI's default sampling temperature.
DEFAULT_TEMPERATURE = 1.0


@dataclass
class PreparedChat:
    """A request ready for the engine.

    Attributes
    ----------
    request_id : str
        ``chatcmpl-...``; also vLLM's request id.
    model : str
        The name to report (the base model or the LoRA adapter).
    lora_request : LoRARequest or None
    tools : list or None
        ``tools``, or the legacy ``functions`` list.
    tool_choice : Any
        ``tool_choice``, or the legacy ``function_call``.
    grammar : bool
        Whether the tool grammar constrains generation.
    prompt_ids : list of int
    sampling_params : vllm.SamplingParams
    n : int
    include_usage : bool
    created : int
    """

    request_id: str
    model: str
    lora_request: Any
    tools: list[Any] | None
    tool_choice: Any
    grammar: bool
    prompt_ids: list[int]
    sampling_params: Any
    n: int
    include_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))


def _check_request_fields(req: ChatCompletionRequest) -> tuple[list[Any] | None, Any]:
    """Legacy/new field combinations; returns ``(tools, tool_choice)`` to use."""
    if req.tools is not None and req.functions is not None:
        raise BadRequest("'functions' and 'tools' cannot both be given; 'functions' is "
                         "deprecated, use 'tools'.", param="functions")
    if req.tool_choice is not None and req.function_call is not None:
        raise BadRequest("'function_call' and 'tool_choice' cannot both be given; "
                         "'function_call' is deprecated, use 'tool_choice'.", param="function_call")
    if req.functions is not None:
        if req.tool_choice is not None:
            raise BadRequest("'tool_choice' is only allowed when 'tools' are specified.",
                             param="tool_choice")
        return req.functions, req.function_call
    if req.function_call is not None:
        raise BadRequest("'function_call' is only allowed when 'functions' are specified.",
                         param="function_call")
    if req.tool_choice is not None and req.tools is None:
        raise BadRequest("'tool_choice' is only allowed when 'tools' are specified.",
                         param="tool_choice")
    if req.logprobs or req.top_logprobs:
        raise BadRequest("'logprobs' is not supported by this server.", param="logprobs")
    if req.response_format is not None and req.response_format.get("type", "text") != "text":
        raise BadRequest("'response_format' other than {'type': 'text'} is not supported: tool "
                         "calls are constrained by the tool grammar.", param="response_format")
    return req.tools, req.tool_choice


def prepare(engine: Any, req: ChatCompletionRequest) -> PreparedChat:
    """Validate ``req`` and build what the engine needs.

    Raises
    ------
    APIError
        400 for any problem with the request (a precise message and ``param``), 404 for an
        unknown model.
    """
    lora = engine.lora_request_for(req.model)
    tools, tool_choice = _check_request_fields(req)
    template = engine.template
    parallel = True if req.parallel_tool_calls is None else bool(req.parallel_tool_calls)
    try:
        prompt = template.render(req.messages, tools, tool_choice, add_generation_prompt=True)
    except RequestError as e:
        raise BadRequest(e.message, param=e.param) from None
    except (RecursionError, MemoryError):
        raise BadRequest("The request is nested too deeply or is too large.") from None
    except Exception as e:  # noqa: BLE001 - input-dependent failure of the renderer
        log.exception("rendering failed")
        raise BadRequest(f"The messages or tools could not be rendered: {type(e).__name__}: {e}",
                         param="messages") from None
    grammar = bool(engine.compiler is not None and req.grammar_sampling is not False)
    extra_args = None
    if grammar:
        from functionary.tool_grammar import compile_tool_grammar
        from functionary.vllm_adapter import GrammarSpec

        try:
            compile_tool_grammar(engine.compiler, template, tools, tool_choice, parallel)
        except RequestError as e:
            raise BadRequest(e.message, param=e.param or "tools") from None
        except (RecursionError, MemoryError):
            raise BadRequest("A tool schema is nested too deeply or is too large to be "
                             "enforced.", param="tools") from None
        except Exception as e:  # noqa: BLE001 - GrammarError and friends: the schema's fault
            log.info("grammar compilation refused the request: %s: %s", type(e).__name__, e)
            raise BadRequest(f"The tools cannot be enforced by the grammar: {e}",
                             param="tools") from None
        spec = GrammarSpec(template.version, tools, tool_choice, parallel, budget_aware=True)
        extra_args = spec.extra_args()
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(f"The messages or tools contain text that is not valid Unicode "
                         f"({e.reason}: {e.object[e.start:e.end]!r}); lone surrogates such as "
                         "'\\ud800' cannot be tokenised.", param="messages") from None
    try:
        prompt_ids = engine.tokenizer.encode(prompt)
    except Exception as e:  # noqa: BLE001 - the tokenizer's errors are about the input text
        raise BadRequest(f"The prompt could not be tokenised: {type(e).__name__}: {e}",
                         param="messages") from None
    n_prompt = len(prompt_ids)
    limit = engine.max_model_len
    requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if n_prompt >= limit:
        raise BadRequest(
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {n_prompt} tokens. Please reduce the length of the messages.",
            param="messages", code="context_length_exceeded")
    max_tokens = requested if requested is not None else limit - n_prompt
    if n_prompt + max_tokens > limit:
        raise BadRequest(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{n_prompt + max_tokens} tokens ({n_prompt} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion.",
            param="max_tokens", code="context_length_exceeded")
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    try:
        sp = SamplingParams(
            n=req.n,
            temperature=DEFAULT_TEMPERATURE if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=0 if req.top_k is None or req.top_k == -1 else req.top_k,
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            max_tokens=max_tokens,
            stop=req.stop,
            seed=req.seed,
            stop_token_ids=list(engine.stop_token_ids),
            skip_special_tokens=False,
            spaces_between_special_tokens=False,
            output_kind=RequestOutputKind.DELTA,
            extra_args=extra_args,
        )
    except Exception as e:  # noqa: BLE001 - vLLM's own parameter validation
        raise BadRequest(f"Invalid sampling parameters: {e}",
                         param=getattr(e, "parameter", None)) from None
    include_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
    return PreparedChat(request_id=f"chatcmpl-{uuid.uuid4().hex}", model=req.model,
                        lora_request=lora, tools=tools, tool_choice=tool_choice, grammar=grammar,
                        prompt_ids=prompt_ids, sampling_params=sp, n=req.n,
                        include_usage=include_usage)


# ---------------------------------------------------------------------------- output

def _complete_json(arguments: str) -> bool:
    try:
        json.loads(arguments)
    except ValueError:
        return False
    return True


def _finish_reason(parser_reason: str | None, engine_reason: str | None) -> str | None:
    if engine_reason == "length":
        return "length"
    return parser_reason


def _message(engine: Any, chat: PreparedChat, text: str, engine_reason: str | None,
             cut_by_stop_string: bool) -> dict[str, Any]:
    from functionary.parsing import accumulate

    parser = engine.template.stream_parser(chat.tool_choice, chat.tools)
    chunks = parser.feed(text) + parser.finish()
    msg = accumulate(chunks, legacy=parser.legacy)
    cut = engine_reason == "length" or cut_by_stop_string
    if chat.grammar and cut:
        # the grammar guarantees complete calls only when the turn ended on its own
        if msg.get("tool_calls"):
            calls = msg["tool_calls"]
            while calls and calls[-1]["function"]["name"] != "python" \
                    and not _complete_json(calls[-1]["function"]["arguments"]):
                dropped = calls.pop()
                log.info("%s: dropped a call cut by %s: %s", chat.request_id,
                         engine_reason, dropped["function"]["name"])
            msg["tool_calls"] = calls or None
            if not calls and msg.get("finish_reason") == "tool_calls":
                msg["finish_reason"] = "stop"
        fc = msg.get("function_call")
        if fc and fc.get("name") != "python" and not _complete_json(fc.get("arguments", "")):
            msg["function_call"] = None
            if msg.get("finish_reason") == "function_call":
                msg["finish_reason"] = "stop"
    reason = _finish_reason(msg.pop("finish_reason", None), engine_reason)
    msg = {k: v for k, v in msg.items() if v is not None or k == "content"}
    return {"message": msg, "finish_reason": reason}


async def complete(engine: Any, chat: PreparedChat) -> dict[str, Any]:
    """Run a non-streamed request; returns the ``chat.completion`` body."""
    texts = [""] * chat.n
    counts = [0] * chat.n
    reasons: list[str | None] = [None] * chat.n
    stop_strings: list[bool] = [False] * chat.n
    async for out in engine.generate(chat.prompt_ids, chat.sampling_params, chat.request_id,
                                     chat.lora_request):
        for c in out.outputs:
            i = c.index
            texts[i] += c.text
            counts[i] += len(c.token_ids)
            if c.finish_reason is not None:
                reasons[i] = c.finish_reason
                stop_strings[i] = isinstance(c.stop_reason, str)
    choices = []
    for i in range(chat.n):
        m = _message(engine, chat, texts[i], reasons[i], stop_strings[i])
        choices.append({"index": i, "message": m["message"], "finish_reason": m["finish_reason"],
                        "logprobs": None})
    n_prompt = len(chat.prompt_ids)
    return {"id": chat.request_id, "object": "chat.completion", "created": chat.created,
            "model": chat.model, "choices": choices,
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": sum(counts),
                      "total_tokens": n_prompt + sum(counts)}}


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def stream(engine: Any, chat: PreparedChat) -> AsyncIterator[str]:
    """Run a streamed request; yields server-sent events, ``data: [DONE]`` last.

    Each choice has its own parser.  An error before the first event propagates (the
    route pulls the first event before answering, so admission errors keep their HTTP
    status); after it, an error is reported as an ``{"error": ...}`` event, since the
    status line was already sent.
    """
    started = False
    parsers = [engine.template.stream_parser(chat.tool_choice, chat.tools) for _ in range(chat.n)]
    counts = [0] * chat.n
    done = [False] * chat.n
    role_sent = [False] * chat.n
    base = {"id": chat.request_id, "object": "chat.completion.chunk", "created": chat.created,
            "model": chat.model}

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        return _sse({**base, "choices": choices, **extra})

    def events(i: int, pieces: list[dict[str, Any]]) -> list[str]:
        """One event per parser piece; the role was already sent with the first token."""
        out = []
        for p in pieces:
            p["index"] = i
            delta = p.get("delta") or {}
            if role_sent[i] and "role" in delta:
                delta = {k: v for k, v in delta.items() if k != "role"}
                p["delta"] = delta
                if not delta and p.get("finish_reason") is None:
                    continue
            role_sent[i] = True
            out.append(chunk([p]))
        return out

    try:
        async for out in engine.generate(chat.prompt_ids, chat.sampling_params, chat.request_id,
                                         chat.lora_request):
            for c in out.outputs:
                i = c.index
                if done[i]:
                    continue
                counts[i] += len(c.token_ids)
                if not role_sent[i]:
                    # first token: answer at once (the parser may hold text back for a while)
                    role_sent[i] = started = True
                    yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                                  "finish_reason": None}])
                parser = parsers[i]
                pieces = parser.feed(c.text) if c.text else []
                if c.finish_reason is not None:
                    pieces += parser.finish()
                    done[i] = True
                    last = pieces[-1]
                    last["finish_reason"] = _finish_reason(last.get("finish_reason"),
                                                           c.finish_reason)
                for ev in events(i, pieces):
                    started = True
                    yield ev
    except Exception as e:  # noqa: BLE001 - the response has started: report in-band
        if not started:
            raise
        err = classify(e)
        log.warning("%s: stream failed: %s", chat.request_id, err.message)
        yield _sse(err.body())
        yield "data: [DONE]\n\n"
        return
    for i, parser in enumerate(parsers):   # engine ended without a finish reason (abort)
        if not done[i]:
            for ev in events(i, parser.finish()):
                yield ev
    if chat.include_usage:
        n_prompt = len(chat.prompt_ids)
        yield chunk([], usage={"prompt_tokens": n_prompt, "completion_tokens": sum(counts),
                               "total_tokens": n_prompt + sum(counts)})
    yield "data: [DONE]\n\n"
