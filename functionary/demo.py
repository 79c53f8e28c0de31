"""The embedded demo: grammar-constrained tool calls from a tiny random model.

Builds a random-weight Llama (hidden size 64, 2 layers) with the real Llama 3 tokenizer,
compiles a tool list with each tool_choice into one automaton, samples with Hugging Face
``generate`` under the grammar, prints every tool call as JSON and checks its arguments
against the tool's schema.  A random model under grammar sampling still writes only valid
calls; without the grammar it writes noise.  Exit status 1 if any call is invalid.

Run: ``python -m functionary demo`` (no GPU, no download).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

__all__ = ["DEMO_TOOLS", "main"]

DEMO_TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {
            "location": {"type": "string", "description": "City name, e.g. Paris", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location"]}}},
    {"type": "function", "function": {
        "name": "get_weather_forecast",
        "description": "Forecast for the next days (its name shares a prefix with get_weather)",
        "parameters": {"type": "object", "properties": {
            "location": {"type": "string", "maxLength": 40},
            "days": {"type": "integer", "minimum": 1, "maximum": 14}},
            "required": ["location", "days"]}}},
    {"type": "function", "function": {
        "name": "book_flight",
        "description": "Book a flight",
        "parameters": {"type": "object", "properties": {
            "origin": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "date": {"type": "string", "format": "date"},
            "passengers": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                "type": "object", "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120}},
                "required": ["name"], "additionalProperties": False}}},
            "required": ["origin", "destination", "date", "passengers"]}}},
]

MESSAGES = [{"role": "user", "content": "What's the weather in Paris, and book me a flight SFO→CDG?"}]


def _check(call: dict, tools: list[dict]) -> str | None:
    import jsonschema
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    name = call["function"]["name"]
    if name not in by_name:
        return f"unknown function {name!r}"
    try:
        args = json.loads(call["function"]["arguments"])
    except ValueError as e:
        return f"arguments are not JSON: {e}"
    try:
        jsonschema.validate(args, by_name[name], format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as e:
        return f"arguments invalid: {e.message}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="functionary demo", description=__doc__.splitlines()[0])
    ap.add_argument("--template", default="v3.llama3",
                    help="prompt version (v3.llama3, v3-llama3.1, v2.llama3; default v3.llama3)")
    ap.add_argument("--samples", type=int, default=2, help="sequences per tool_choice")
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from grammar import GrammarCompiler

    from .hf import generate, vocabulary_for
    from .tiny_model import build_tiny_model

    family = "llama3.0" if args.template == "v2.llama3" else "llama3.1"
    t0 = time.perf_counter()
    model, tok = build_tiny_model(family, seed=args.seed)
    compiler = GrammarCompiler(vocabulary_for(model, tok))
    print(f"tiny random model ({family} tokenizer, vocab {compiler.vocab.vocab_size}) built in "
          f"{time.perf_counter() - t0:.1f}s; template {args.template}")
    torch.manual_seed(args.seed)
    bad = 0
    total = 0
    choices = ["auto", "required", {"type": "function", "function": {"name": "book_flight"}}]
    for choice in choices:
        for parallel in (True, False):
            t1 = time.perf_counter()
            msgs = generate(model, tok, MESSAGES, DEMO_TOOLS, choice, template=args.template,
                            compiler=compiler, parallel_tool_calls=parallel, do_sample=True,
                            temperature=1.0, max_new_tokens=args.max_new_tokens,
                            num_return_sequences=args.samples)
            dt = time.perf_counter() - t1
            label = choice if isinstance(choice, str) else f"named:{choice['function']['name']}"
            print(f"\n== tool_choice={label} parallel_tool_calls={parallel} ({dt:.1f}s)")
            for i, m in enumerate(msgs):
                calls = m.get("tool_calls") or []
                if choice != "auto" and not calls:
                    print(f"  [{i}] INVALID: no tool call under tool_choice={label}")
                    bad += 1
                if not parallel and len(calls) > 1:
                    print(f"  [{i}] INVALID: {len(calls)} calls with parallel_tool_calls=false")
                    bad += 1
                if m.get("content"):
                    print(f"  [{i}] content: {m['content'][:70]!r}")
                for c in calls:
                    total += 1
                    err = _check(c, DEMO_TOOLS)
                    status = "valid" if err is None else f"INVALID: {err}"
                    bad += err is not None
                    print(f"  [{i}] {json.dumps(c['function'], ensure_ascii=False)}  -> {status}")
    print(f"\n{total} tool calls, {bad} invalid")
    # the contrast: the same model without grammar sampling
    raw = generate(model, tok, MESSAGES, DEMO_TOOLS, "required", template=args.template,
                   compiler=compiler, grammar_sampling=False, do_sample=True,
                   max_new_tokens=30)
    print(f"\nwithout grammar sampling the same model writes: {json.dumps(raw)[:160]}")
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
