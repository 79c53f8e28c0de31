"""Hugging Face generation speed with grammar sampling on vs off (tiny random model).

Runs ``functionary.hf.generate_text`` on the tiny random-weight Llama (real Llama 3
tokenizer) for a realistic tool list, ``tool_choice`` auto and required, at a few
``num_return_sequences`` values, with grammar sampling on and off, and reports generated
tokens per second and the ratio.  Correctness first: with the grammar on, every output
must parse into valid calls (names in the list, arguments valid against their schemas) and
finish inside the budget.  On a GPU the same script runs the same tiny model on the device.

Usage::

    python benchmarks/bench_generate.py --out results/generate.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--template", default="v3.llama3")
    args = ap.parse_args(argv)

    import jsonschema
    import torch

    from functionary import get_template
    from functionary.demo import DEMO_TOOLS
    from functionary.hf import generate_text, vocabulary_for
    from functionary.tiny_model import build_tiny_model
    from grammar import GrammarCompiler

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    env = C.capture_env(argv)
    family = "llama3.0" if args.template == "v2.llama3" else "llama3.1"
    model, tok = build_tiny_model(family, seed=0)
    model = model.to(dev)
    compiler = GrammarCompiler(vocabulary_for(model, tok))
    template = get_template(args.template)
    max_new = args.max_new_tokens or (32 if args.quick else 96)
    reps = args.reps or (1 if args.quick else 3)
    batches = [1, 4] if args.quick else [1, 8, 32]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in DEMO_TOOLS}
    messages = [{"role": "user", "content": "Weather in Paris and a flight to CDG, please."}]
    rows = []
    for choice in ("auto", "required"):
        for n in C.progress(batches, desc=f"generate {choice}"):
            row = {"tool_choice": choice, "num_return_sequences": n, "max_new_tokens": max_new}
            for on in (True, False):
                times, ntoks, invalid = [], 0, 0
                for r in range(reps):
                    torch.manual_seed(r)
                    t0 = time.perf_counter()
                    _, outs = generate_text(model, tok, messages, DEMO_TOOLS, choice, template=template,
                                            compiler=compiler, grammar_sampling=on, do_sample=True,
                                            max_new_tokens=max_new, num_return_sequences=n)
                    times.append(time.perf_counter() - t0)
                    ntoks += sum(len(o[2]) for o in outs)
                    if on:
                        for text, finished, _ in outs:
                            msg = template.parse(text, tool_choice=choice, tools=DEMO_TOOLS)
                            ok = finished
                            for c in msg.get("tool_calls") or []:
                                try:
                                    jsonschema.validate(json.loads(c["function"]["arguments"]),
                                                        schemas[c["function"]["name"]])
                                except Exception:  # noqa: BLE001 - counted
                                    ok = False
                            if choice == "required" and not msg.get("tool_calls"):
                                ok = False
                            invalid += not ok
                key = "on" if on else "off"
                row[f"tok_s_{key}"] = round(ntoks / sum(times), 1)
                row[f"median_s_{key}"] = round(statistics.median(times), 3)
                if on:
                    row["invalid_on"] = invalid
            row["ratio_on_off"] = round(row["tok_s_on"] / row["tok_s_off"], 3)
            rows.append(row)
    from bench_apply_bitmask import device_info
    result = C.finish_env({**env, "device": device_info(torch, dev), "template": args.template,
                           "model": "tiny random Llama (hidden 64, 2 layers)", "rows": rows})
    C.write_json(args.out, result)
    print(f"device: {result['device'].get('name')} ({dev}); template {args.template}")
    print(C.table(["tool_choice", "n", "tok/s on", "tok/s off", "on/off", "invalid (on)"],
                  [[r["tool_choice"], r["num_return_sequences"], r["tok_s_on"], r["tok_s_off"],
                    r["ratio_on_off"], r["invalid_on"]] for r in rows]))
    return 1 if any(r["invalid_on"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
