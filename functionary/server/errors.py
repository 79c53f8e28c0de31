"""Exceptions → OpenAI error JSON.

Every non-2xx answer of the server has OpenAI's shape::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "tools", "code": null}}

:class:`APIError` is what the server raises on purpose; :func:`classify` maps everything
else (request errors of :mod:`functionary`, pydantic validation errors, vLLM's client and
server errors) to ``(status, detail)``; :func:`install_handlers` wires both into FastAPI.
Bad input is always a 4xx: only a failure of the engine itself is a 5xx.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

__all__ = [
    "APIError",
    "BadRequest",
    "NotFound",
    "error_body",
    "classify",
    "install_handlers",
    "validation_message",
]

log = logging.getLogger("functionary.server")


class APIError(Exception):
    """An error answered with an OpenAI error body.

    Parameters
    ----------
    message : str
        What went wrong, precisely.
    status : int
        HTTP status (400 by default).
    type : str
        OpenAI's ``error.type`` (``invalid_request_error``, ``not_found_error``...).
    param : str or None
        The request field at fault.
    code : str or None
        A machine-readable code (``model_not_found``, ``context_length_exceeded``...).
    """

    def __init__(self, message: str, *, status: int = 400, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = int(status)
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return error_body(self.message, self.type, self.param, self.code)


class BadRequest(APIError):
    """HTTP 400, ``invalid_request_error``."""


class NotFound(APIError):
    """HTTP 404 (OpenAI answers an unknown model with 404 ``model_not_found``)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, status=404, type="invalid_request_error", param=param, code=code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _loc(loc: Any) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """A readable message and the top-level ``param`` from pydantic/FastAPI errors."""
    if not errors:
        return "Invalid request body.", None
    first = errors[0]
    kind = first.get("type", "")
    if kind in ("json_invalid", "json_type"):
        ctx = first.get("ctx") or {}
        detail = ctx.get("error") or first.get("msg", "")
        return f"The request body is not valid JSON: {detail}", None
    loc = list(first.get("loc") or ())
    where = _loc(loc)
    param = next((str(p) for p in loc if p != "body"), None)
    msg = first.get("msg", "invalid value")
    if kind == "missing":
        text = f"Missing required parameter: '{where}'." if where else "Missing request body."
    elif not where:
        text = f"Invalid request body: {msg}."
    else:
        got = first.get("input")
        shown = json.dumps(got, default=str)[:80] if got is not None and kind != "missing" else None
        text = f"Invalid value for '{where}': {msg}" + (f" (got {shown})." if shown else ".")
    more = len(errors) - 1
    if more > 0:
        text += f" ({more} more error{'s' if more > 1 else ''})"
    return text, param


def classify(exc: BaseException) -> APIError:
    """Map any exception to the :class:`APIError` the client receives.

    ``functionary.errors.RequestError`` → 400; pydantic ``ValidationError`` → 400; vLLM's
    ``VLLMValidationError`` / client errors → 400 (404 for "not found");
    ``GracefulHTTPError`` → its status (e.g. 503 for a full queue); a dead engine → 503;
    anything else → 500 ``internal_error`` (and a logged traceback).
    """
    if isinstance(exc, APIError):
        return exc
    from functionary.errors import RequestError

    if isinstance(exc, RequestError):
        return BadRequest(exc.message, param=exc.param)
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore[assignment,misc]
    if isinstance(exc, ValidationError):
        msg, param = validation_message(exc.errors())  # type: ignore[union-attr]
        return BadRequest(msg, param=param)
    name = type(exc).__name__
    mro = {c.__name__ for c in type(exc).__mro__}
    if "GracefulHTTPError" in mro:
        status = int(getattr(exc, "http_status", HTTPStatus.SERVICE_UNAVAILABLE))
        return APIError(str(getattr(exc, "message", exc)), status=status,
                        type="invalid_request_error" if status < 500 else "server_error")
    if "EngineDeadError" in mro:
        return APIError("The inference engine has stopped; the server must be restarted.",
                        status=503, type="server_error", code="engine_dead")
    if "VLLMNotFoundError" in mro:
        return NotFound(str(exc))
    if "VLLMClientError" in mro:
        return BadRequest(str(exc), param=getattr(exc, "parameter", None))
    if "VLLMServerError" in mro:
        cause = exc.__cause__
        log.error("engine error: %s", cause or exc)
        return APIError(f"The inference engine failed on this request ({name}).", status=500,
                        type="server_error", code="engine_error")
    log.exception("unhandled %s", name, exc_info=exc)
    return APIError(f"Internal server error ({name}).", status=500, type="server_error",
                    code="internal_error")


def install_handlers(app: Any) -> None:
    """Answer every error raised in ``app`` (a FastAPI app) with an OpenAI error body."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def respond(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(APIError)
    async def _api_error(request: Any, exc: APIError) -> JSONResponse:  # noqa: ARG001
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Any, exc: RequestValidationError) -> JSONResponse:  # noqa: ARG001
        msg, param = validation_message(list(exc.errors()))
        return respond(BadRequest(msg, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Any, exc: StarletteHTTPException) -> JSONResponse:  # noqa: ARG001
        status = int(exc.status_code)
        if status == 404:
            return respond(APIError(f"Unknown endpoint {request.method} {request.url.path}.",
                                    status=404, type="invalid_request_error", code="unknown_url"))
        if status == 405:
            return respond(APIError(f"Method {request.method} is not allowed on "
                                    f"{request.url.path}.", status=405,
                                    type="invalid_request_error", code="method_not_allowed"))
        return respond(APIError(str(exc.detail), status=status,
                                type="invalid_request_error" if status < 500 else "server_error"))

    from pydantic import ValidationError

    from functionary.errors import RequestError

    @app.exception_handler(ValidationError)
    async def _pydantic(request: Any, exc: ValidationError) -> JSONResponse:  # noqa: ARG001
        return respond(classify(exc))

    @app.exception_handler(RequestError)
    async def _request_error(request: Any, exc: RequestError) -> JSONResponse:  # noqa: ARG001
        return respond(classify(exc))

    @app.exception_handler(Exception)
    async def _other(request: Any, exc: Exception) -> JSONResponse:  # noqa: ARG001
        return respond(classify(exc))
