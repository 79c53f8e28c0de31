"""Run model-style Python code in the sandboxed, stateful code interpreter.

Standalone: no server and no model.  Each ``run`` is one code-interpreter tool call;
``str(result)`` is exactly what a runner sends back to the model.

    python examples/code_interpreter.py [--workdir DIR] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from functionary.code_interpreter import CodeInterpreter  # noqa: E402

CELLS = [
    ("state is kept between calls", "import math\nradius = 5\nprint('radius set')"),
    ("the last expression is the value", "math.pi * radius ** 2"),
    ("errors come back as tracebacks", "radius / 0"),
    ("files go to the working directory", "open('circle.txt', 'w').write(str(radius))\nimport os\nos.listdir('.')"),
    ("nothing else is writable", "open('/tmp/escape.txt', 'w')"),
    ("no network, not even loopback", "import socket\nsocket.create_connection(('127.0.0.1', 80), timeout=2)"),
    ("an endless loop times out (the session restarts)", "while True:\n    pass"),
    ("a fresh session after the timeout", "'radius' in globals()"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="the session's working directory (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per run (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with CodeInterpreter(workdir=args.workdir, timeout=args.timeout) as ci:
        info = ci.start()
        print(f"sandbox (working directory {ci.workdir}):")
        for line in info.enforced:
            print(f"  + {line}")
        for line in info.degraded:
            print(f"  ! {line}")
        for title, code in CELLS:
            result = ci.run(code)
            print(f"\n# {title}  [{result.status}, {result.duration:.2f} s]")
            print("\n".join(">>> " + line for line in code.splitlines()))
            print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
