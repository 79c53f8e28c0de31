"""Pydantic models of the OpenAI-compatible API served by :mod:`functionary.server`.

Only the shapes are checked here (types, ranges, required fields); the meaning of
``messages``, ``tools`` and ``tool_choice`` is checked by :mod:`functionary.messages` and
the prompt templates, which give precise messages (``messages[2].role ...``).  Unknown
request fields are ignored, as vLLM's server does.

The models also produce the server's OpenAPI document (``/openapi.json``), which the fuzz
tests read.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "StreamOptions",
    "ChatCompletionRequest",
    "FunctionCall",
    "ToolCallFunction",
    "ToolCall",
    "ChatMessage",
    "Usage",
    "ChatCompletionChoice",
    "ChatCompletionResponse",
    "ChatCompletionChunk",
    "ModelCard",
    "ModelList",
    "ErrorDetail",
    "ErrorResponse",
    "LoadLoRAAdapterRequest",
    "UnloadLoRAAdapterRequest",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Lenient):
    """``stream_options``: ``include_usage`` adds a last chunk with the token counts."""

    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """``POST /v1/chat/completions``.

    Attributes follow OpenAI's API; ``grammar_sampling`` is an extension: ``false`` turns
    the grammar off for one request on a server started with ``--enable-grammar-sampling``
    (it cannot turn it on where the server has it off).
    """

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    functions: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    function_call: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=16)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    grammar_sampling: bool | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list):
            if len(v) > 4:
                raise ValueError("at most 4 stop sequences are allowed")
            if any(not s for s in v):
                raise ValueError("stop sequences must be non-empty strings")
        elif v == "":
            raise ValueError("a stop sequence must be a non-empty string")
        return v


# ------------------------------------------------------------------------- responses

class FunctionCall(BaseModel):
    """A function call (``function_call`` of legacy responses)."""

    name: str
    arguments: str


class ToolCallFunction(BaseModel):
    """The ``function`` of a tool call."""

    name: str
    arguments: str


class ToolCall(BaseModel):
    """One tool call of an assistant message."""

    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    """The assistant message of a choice."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class Usage(BaseModel):
    """Token counts."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionChoice(BaseModel):
    """One of the ``n`` choices."""

    index: int
    message: ChatMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    """``chat.completion``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ChatCompletionChunk(BaseModel):
    """``chat.completion.chunk`` (one server-sent event)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    """An entry of ``/v1/models``: the base model or a LoRA adapter (``parent`` set)."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "functionary"
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {...}}``, the body of every non-2xx answer."""

    error: ErrorDetail


class LoadLoRAAdapterRequest(_Lenient):
    """``POST /v1/load_lora_adapter``."""

    lora_name: str = Field(min_length=1, max_length=256)
    lora_path: str = Field(min_length=1, max_length=4096)


class UnloadLoRAAdapterRequest(_Lenient):
    """``POST /v1/unload_lora_adapter``."""

    lora_name: str = Field(min_length=1, max_length=256)
    lora_int_id: int | None = None
