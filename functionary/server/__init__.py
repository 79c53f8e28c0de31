"""The OpenAI-compatible server: Functionary prompts, grammar-constrained tool calls, vLLM.

Modules: :mod:`~functionary.server.app` (FastAPI routes), :mod:`~functionary.server.chat`
(the chat-completions pipeline), :mod:`~functionary.server.protocol` (pydantic models),
:mod:`~functionary.server.engine` (vLLM ``AsyncLLM`` wiring, LoRA), and
:mod:`~functionary.server.errors` (exceptions → OpenAI error JSON).  Start it with
``functionary serve --model DIR [--enable-grammar-sampling]`` (:mod:`functionary.cli`).

Importing this package is cheap; vLLM and FastAPI are imported when the server is built.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(engine):  # noqa: ANN001, ANN201 - thin lazy re-export
    """See :func:`functionary.server.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(engine)
