"""Typed errors of the :mod:`functionary` package.

Every exception raised on purpose by this package derives from
:class:`FunctionaryError`, so callers can catch the whole family at once and a
server can map each subclass to an HTTP status (``RequestError`` → 400,
``TemplateError`` → 500 or a startup failure) without string matching.

Parsers of model output never raise these for malformed *output*: they degrade
to plain text and log the problem (see :mod:`functionary.parsing`).  Errors are
raised for malformed *input* (a bad tool list, tool_choice or message list), as
early as possible.
"""

from __future__ import annotations

__all__ = ["FunctionaryError", "RequestError", "TemplateError"]


class FunctionaryError(Exception):
    """Base class of every error raised on purpose by :mod:`functionary`."""


class RequestError(FunctionaryError):
    """The request (messages, tools, tool_choice) is invalid.

    Raised, for example, for an unknown named tool in ``tool_choice``, a
    ``tool_choice`` other than ``"auto"``/``"none"`` without any tools, a tool
    without a valid name, duplicate tool names, or a message with an unknown
    role.  A server should answer it with HTTP 400.

    Parameters
    ----------
    message : str
        Human-readable explanation, in the style of OpenAI's error messages.
    param : str or None, optional
        The request field at fault (``"tools"``, ``"tool_choice"``,
        ``"messages"``...), reported as OpenAI's ``error.param``.

    Attributes
    ----------
    message : str
        The explanation given at construction.
    param : str or None
        The request field at fault, if known.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class TemplateError(FunctionaryError):
    """A prompt template cannot be found, detected or used.

    Raised by :func:`functionary.get_template` for an unknown version name and
    by :func:`functionary.detect_template` when a tokenizer matches no known
    Functionary format.
    """
