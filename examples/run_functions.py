"""Let a model call real Python functions (and the code interpreter) through any
OpenAI-compatible endpoint: our server (``python -m functionary serve``) by default.

    python examples/run_functions.py [--base-url URL] [--model NAME] [--prompt TEXT]
                                     [--code-interpreter] [--max-steps N]

The base URL comes from ``--base-url``, else ``$FUNCTIONARY_BASE_URL``, else
``$OPENAI_BASE_URL``, else ``http://127.0.0.1:8000/v1``.  The model defaults to the
first one the endpoint lists.  The API key is ``$OPENAI_API_KEY`` (local servers ignore it).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from functionary.runner import AsyncRunner, Runner, RunResult  # noqa: E402
from functionary.tools import function_to_tool  # noqa: E402

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@dataclass
class Trip:
    """A planned trip.

    Attributes
    ----------
    origin : str
        Departure city.
    destination : str
        Arrival city.
    nights : int
        Length of the stay.
    """

    origin: str
    destination: str
    nights: int = 1


def get_weather(city: str, unit: Unit = Unit.CELSIUS) -> dict:
    """Get the current weather in a city.

    Args:
        city: The city name, e.g. "Paris".
        unit: The temperature unit.
    """
    celsius = {"paris": 18, "oslo": 4, "cairo": 31}.get(city.lower(), 20)
    value = celsius if unit is Unit.CELSIUS else round(celsius * 9 / 5 + 32)
    return {"city": city, "temperature": value, "unit": unit.value, "sky": "clear"}


def price_trip(trip: Trip, travel_class: Literal["economy", "business"] = "economy") -> dict:
    """Estimate the price of a trip.

    Parameters
    ----------
    trip : Trip
        Where and for how long.
    travel_class : {"economy", "business"}
        Seat class.
    """
    base = 120 if travel_class == "economy" else 480
    return {"trip": trip, "price_eur": base + 95 * trip.nights}


async def convert_currency(amount: float, to: Literal["USD", "GBP", "JPY"]) -> float:
    """Convert an amount in euros.

    :param amount: Amount in EUR.
    :param to: Target currency.
    """
    await asyncio.sleep(0)  # an async tool: awaited by AsyncRunner, run in a loop by Runner
    return round(amount * {"USD": 1.08, "GBP": 0.85, "JPY": 162.0}[to], 2)


TOOLS = [get_weather, price_trip, convert_currency]


def show(result: RunResult) -> None:
    for record in result.tool_calls:
        status = "ok" if record.ok else record.error
        print(f"[step {record.step}] {record.name}({record.arguments}) -> [{status}] {record.content}")
    print(f"\n{result.stop_reason} after {result.steps} request(s):")
    print(result.content if result.content is not None else "(no answer: step limit reached)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("FUNCTIONARY_BASE_URL")
                        or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)
    parser.add_argument("--model", default=None, help="model name (default: the endpoint's first model)")
    parser.add_argument("--prompt", default="What's the weather in Paris and Oslo, in fahrenheit? "
                                            "And how much is 3 nights from Oslo to Paris, in USD?")
    parser.add_argument("--code-interpreter", action="store_true", help="also offer the sandboxed Python tool")
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--async", dest="use_async", action="store_true", help="use AsyncRunner")
    parser.add_argument("--show-tools", action="store_true", help="print the tool definitions and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.show_tools:
        print(json.dumps([function_to_tool(fn) for fn in TOOLS], indent=2))
        return 0
    options = dict(base_url=args.base_url, model=args.model, code_interpreter=args.code_interpreter,
                   max_steps=args.max_steps, call_timeout=30)
    messages = [{"role": "user", "content": args.prompt}]
    if args.use_async:
        result = asyncio.run(AsyncRunner(TOOLS, **options).run(messages))
    else:
        result = Runner(TOOLS, **options).run(messages)
    show(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
