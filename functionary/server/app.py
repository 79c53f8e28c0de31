"""FastAPI routes of the OpenAI-compatible server.

========================  ======  ==================================================
route                     method  answer
========================  ======  ==================================================
``/health``               GET     200 ``{}`` while the engine is alive, else 503
``/v1/models``            GET     the base model and every loaded LoRA adapter
``/v1/chat/completions``  POST    ``chat.completion`` or server-sent chunks
``/v1/load_lora_adapter``  POST   load a PEFT adapter (``--enable-lora``)
``/v1/unload_lora_adapter`` POST  unload it
========================  ======  ==================================================

Errors are OpenAI error bodies (:mod:`functionary.server.errors`).  Request bodies are
parsed by hand rather than by FastAPI's body injection so that a malformed body (not JSON,
too deep, not an object) is a 400 with a precise message, never a 422 or a 500; the
OpenAPI document still describes the bodies (``openapi_extra``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from .chat import complete, prepare, stream
from .errors import APIError, BadRequest, install_handlers
from .protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorResponse,
    LoadLoRAAdapterRequest,
    ModelList,
    UnloadLoRAAdapterRequest,
)

__all__ = ["create_app", "MAX_BODY_BYTES"]

log = logging.getLogger("functionary.server")

#: Largest accepted request body.
MAX_BODY_BYTES = 8 * 1024 * 1024
_MAX_DEPTH = 64


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping at ``limit + 1`` (iterative: no recursion)."""
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        cur, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(cur, dict):
            stack.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)
    return deepest


async def _json_body(request: Any) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says why not."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise APIError(f"The request body is larger than {MAX_BODY_BYTES} bytes.", status=413)
    if not raw.strip():
        raise BadRequest("The request body is empty; expected a JSON object.")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"The request body is nested more than {_MAX_DEPTH} levels deep.") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"The request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"The request body must be a JSON object, got {type(body).__name__}.")
    if _depth(body, _MAX_DEPTH) > _MAX_DEPTH:
        raise BadRequest(f"The request body is nested more than {_MAX_DEPTH} levels deep.")
    return body


_REF = "#/components/schemas/{model}"


def _schema_ref(model: Any) -> dict[str, Any]:
    """``openapi_extra`` documenting a hand-parsed JSON body of type ``model``."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": _REF.format(model=model.__name__)}}}}}


def _openapi(app: Any, bodies: list[Any]) -> Any:
    """``app.openapi`` with the hand-parsed request bodies' schemas in ``components``."""
    from fastapi.openapi.utils import get_openapi

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in bodies:
            schema = model.model_json_schema(ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        app.openapi_schema = doc
        return doc

    return build


_ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
           500: {"model": ErrorResponse}}


def create_app(engine: Any) -> Any:
    """The FastAPI application serving ``engine``
    (a :class:`~functionary.server.engine.FunctionaryEngine`)."""
    app = FastAPI(title="functionary-grammar", version="0.1.0",
                  description="OpenAI-compatible chat completions with Functionary prompts and "
                              "grammar-constrained tool calls.")
    install_handlers(app)
    app.state.engine = engine

    @app.get("/health")
    async def health() -> Any:
        try:
            await engine.check_health()
        except Exception as e:  # noqa: BLE001
            return JSONResponse({"error": {"message": f"engine unhealthy: {e}",
                                           "type": "server_error", "param": None,
                                           "code": "engine_dead"}}, status_code=503)
        return JSONResponse({})

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> Any:
        return {"object": "list", "data": engine.model_cards()}

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses=_ERRORS,
              openapi_extra=_schema_ref(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Any:
        body = await _json_body(request)
        req = ChatCompletionRequest.model_validate(body)
        chat = prepare(engine, req)
        if not req.stream:
            return JSONResponse(await complete(engine, chat))
        events = stream(engine, chat)
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            first = "data: [DONE]\n\n"

        async def body_iter() -> Any:
            yield first
            async for ev in events:
                yield ev

        return StreamingResponse(body_iter(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.post("/v1/load_lora_adapter", response_class=PlainTextResponse, responses=_ERRORS,
              openapi_extra=_schema_ref(LoadLoRAAdapterRequest))
    async def load_lora_adapter(request: Request) -> Any:
        req = LoadLoRAAdapterRequest.model_validate(await _json_body(request))
        return PlainTextResponse(await engine.add_lora(req.lora_name, req.lora_path))

    @app.post("/v1/unload_lora_adapter", response_class=PlainTextResponse, responses=_ERRORS,
              openapi_extra=_schema_ref(UnloadLoRAAdapterRequest))
    async def unload_lora_adapter(request: Request) -> Any:
        req = UnloadLoRAAdapterRequest.model_validate(await _json_body(request))
        return PlainTextResponse(await engine.remove_lora(req.lora_name))

    app.openapi = _openapi(app, [ChatCompletionRequest, LoadLoRAAdapterRequest,
                                 UnloadLoRAAdapterRequest])
    return app
