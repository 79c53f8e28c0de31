"""``python -m functionary <command>`` (also the ``functionary`` console script):
``demo`` (embedded demo) and ``serve`` (the OpenAI-compatible server, needs vLLM)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m functionary {demo,serve} [options]\n"
              "  demo   grammar-constrained tool calls from a tiny random model (CPU, offline)\n"
              "  serve  OpenAI-compatible server (vLLM): functionary serve --model DIR "
              "[--enable-grammar-sampling] ...")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "demo":
        from .demo import main as demo
        return demo(rest)
    if cmd == "serve":
        from .cli import serve
        return serve(rest)
    print(f"unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
