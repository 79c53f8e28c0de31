"""``functionary serve``: the OpenAI-compatible server with Functionary prompts.

::

    functionary serve --model DIR [--template auto|VERSION] [--enable-grammar-sampling]
                      [--enable-lora --lora-modules NAME=PATH ...] [--host H] [--port P]
                      [any vLLM engine argument: --dtype, --max-model-len, ...]

The same as ``python -m functionary serve ...``.  Unknown options are vLLM engine
arguments (``vllm.engine.arg_utils.AsyncEngineArgs``) and are passed through unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "serve", "build_parser"]

log = logging.getLogger("functionary.server")

_OURS = "functionary server"


def build_parser() -> Any:
    """The ``serve`` argument parser: vLLM's engine arguments plus the server's own.

    Raises
    ------
    ImportError
        If vLLM is not installed.
    """
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(
        prog="functionary serve",
        description="OpenAI-compatible server: Functionary prompt templates, optional "
                    "grammar-constrained tool calls, vLLM engine.")
    parser = AsyncEngineArgs.add_cli_args(parser)
    ours = parser.add_argument_group(_OURS)
    if "--model" not in parser._option_string_actions:  # vLLM hides it under `serve --help`
        ours.add_argument("--model", required=True, help="model directory")
    ours.add_argument("--template", default="auto",
                      help="Functionary template version (v1, v2, v2.llama3, v3.llama3, "
                           "v3-llama3.1), or 'auto' to detect it from the tokenizer (default)")
    ours.add_argument("--enable-grammar-sampling", action="store_true",
                      help="constrain generation with the tool grammar: required and named "
                           "tool_choice are enforced, every tool call is valid")
    ours.add_argument("--lora-modules", nargs="+", default=[], metavar="NAME=PATH",
                      help="LoRA adapters to load at startup (needs --enable-lora)")
    ours.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ours.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    ours.add_argument("--uvicorn-log-level", default="warning",
                      choices=["critical", "error", "warning", "info", "debug", "trace"])
    return parser


def _served_name(args: argparse.Namespace) -> str:
    name = getattr(args, "served_model_name", None)
    if isinstance(name, (list, tuple)):
        name = name[0] if name else None
    return name or Path(args.model).name


async def _run(engine: Any, host: str, port: int, log_level: str) -> None:
    import uvicorn

    from .server.app import create_app

    await engine.load_startup_loras()
    app = create_app(engine)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_keep_alive=30, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    print(f"functionary server: http://{host}:{port}  model={engine.model_name}  "
          f"template={engine.template.version}  grammar_sampling="
          f"{'on' if engine.compiler is not None else 'off'}", flush=True)
    await server.serve()


def serve(argv: list[str]) -> int:
    """Run the server until interrupted.  Returns the exit status (1 on a startup error)."""
    logging.basicConfig(level=os.environ.get("FUNCTIONARY_LOG_LEVEL", "INFO"),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError or a broken install
        print(f"error: functionary serve needs vLLM, which cannot be imported ({type(e).__name__}: "
              f"{e}).  Install it with: pip install '.[vllm]' (CPU: see scripts/setup.sh, "
              "VLLM=1).", file=sys.stderr)
        return 1
    from vllm.engine.arg_utils import AsyncEngineArgs

    from .server.engine import (
        FunctionaryEngine,
        ServerOptions,
        StartupError,
        check_model_dir,
        parse_lora_modules,
    )

    args = build_parser().parse_args(argv)
    try:
        check_model_dir(args.model)
        loras = parse_lora_modules(args.lora_modules)
        if loras and not getattr(args, "enable_lora", False):
            raise StartupError("--lora-modules needs --enable-lora")
        options = ServerOptions(model=args.model, served_model_name=_served_name(args),
                                template=args.template,
                                enable_grammar_sampling=args.enable_grammar_sampling,
                                lora_modules=loras,
                                memory_flags_given=any(
                                    a.split("=", 1)[0] in ("--gpu-memory-utilization",
                                                           "--kv-cache-memory-bytes",
                                                           "--kv-cache-memory")
                                    for a in argv))
        engine_args = AsyncEngineArgs.from_cli_args(args)
        engine = FunctionaryEngine.create(engine_args, options)
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_run(engine, args.host, args.port, args.uvicorn_log_level))
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        engine.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``functionary`` console script: ``serve`` and ``demo`` commands."""
    from .__main__ import main as dispatch

    return dispatch(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve(sys.argv[1:]))
