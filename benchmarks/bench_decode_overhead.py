"""Decode overhead of grammar sampling: tokens/s with the tool grammar on vs off.

A Llama-3.1-8B-shaped model with random bf16 weights (built from a config: no download) on
a GPU, or the tiny random model on CPU (``--quick``), decodes a fixed number of steps at
batch 1, 8 and 32 after a Functionary ``v3.llama3`` prompt with a realistic tool list, with
``tool_choice`` auto and required.  With grammar sampling on, each step accepts the tokens
sampled at the previous step and fills the next bitmask on the CPU *while the GPU runs the
forward pass* (kernel launches are asynchronous; the loop is written by hand with a KV
cache so this overlap is possible, which ``generate``'s logits-processor hook does not
allow), then applies the mask on the device.  A matcher that finishes its turn is reset,
so every step stays constrained.  Off: the same loop without masking.  Reported: median
step time, tokens/s, and overhead = on/off - 1 (goal on a GPU: <= 2%).

Usage::

    python benchmarks/bench_decode_overhead.py --out results/decode_overhead.json      # GPU
    python benchmarks/bench_decode_overhead.py --quick --out results/decode_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TOOLS_FILE = Path(__file__).resolve().parent / "data" / "create_calendar_event.json"


def build_model(torch: Any, quick: bool, dev: str) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    if quick:
        from functionary.tiny_model import build_tiny_model
        model, _ = build_tiny_model("llama3.1", seed=0)
        return model.to(dev).eval()
    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      max_position_embeddings=8192, rope_theta=500000.0,
                      bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
                      torch_dtype="bfloat16")
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to_empty(device=dev).to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model.eval()


def tools() -> list[dict]:
    import json
    from functionary.demo import DEMO_TOOLS
    extra = json.loads(TOOLS_FILE.read_text()) if TOOLS_FILE.exists() else None
    out = list(DEMO_TOOLS)
    if isinstance(extra, dict) and "name" in extra:
        out.append({"type": "function", "function": extra})
    elif isinstance(extra, dict) and "function" in extra:
        out.append(extra)
    return out


def run(torch: Any, model: Any, prompt_ids: list[int], batch: int, steps: int, compiled: Any,
        dev: str) -> list[float]:
    """Step times (seconds) of one decode run; ``compiled`` None = no grammar."""
    from grammar import GrammarMatcher
    from grammar.bitmask import apply_token_bitmask_inplace

    ids = torch.tensor([prompt_ids] * batch, device=dev)
    matchers = [GrammarMatcher(compiled) for _ in range(batch)] if compiled is not None else []
    width = (model.config.vocab_size + 31) // 32
    bm = torch.empty((batch, width), dtype=torch.int32, pin_memory=(dev == "cuda"))
    bm_np = bm.numpy()
    gen = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1, :].float()
        if matchers:
            for i, m in enumerate(matchers):
                m.fill_next_token_bitmask(bm_np, i)
            apply_token_bitmask_inplace(logits, bm.to(dev, non_blocking=True))
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)   # async on GPU
            toks = nxt[:, 0].tolist()   # the host needs last step's tokens (both modes)
            if matchers:   # overlapped with the forward pass on a GPU
                for i, m in enumerate(matchers):
                    if not m.accept_token(toks[i]) or m.is_terminated():
                        m.reset()
                    m.fill_next_token_bitmask(bm_np, i)
            past = out.past_key_values
            logits = out.logits[:, -1, :].float()
            if matchers:
                apply_token_bitmask_inplace(logits, bm.to(dev, non_blocking=True))
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
            if dev == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="tiny model, few steps (CPU, tests)")
    ap.add_argument("--batches", default=None, help="comma list (default 1,8,32; quick 1,4)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    args = ap.parse_args(argv)

    import torch

    from functionary import get_template
    from functionary.tokenizers import load_tokenizer, load_vocabulary
    from functionary.tool_grammar import compile_tool_grammar
    from grammar import GrammarCompiler

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    batches = [int(x) for x in (args.batches or ("1,4" if args.quick else "1,8,32")).split(",")]
    steps = args.steps or (12 if args.quick else 128)
    env = C.capture_env(argv)
    model = build_model(torch, args.quick, dev)
    tok = load_tokenizer("llama3.1")
    vocab = load_vocabulary("llama3.1", vocab_size=model.config.vocab_size)
    compiler = GrammarCompiler(vocab)
    template = get_template("v3.llama3")
    tl = tools()
    messages = [{"role": "user", "content": "Plan my trip: weather in Paris and a flight."}]
    rows = []
    for choice in ("auto", "required"):
        prompt = template.render(messages, tools=tl, tool_choice=choice, add_generation_prompt=True)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        compiled = compile_tool_grammar(compiler, template, tl, choice)
        for batch in C.progress(batches, desc=f"decode {choice}"):
            run(torch, model, prompt_ids, batch, 3, compiled, dev)   # warm-up both paths
            run(torch, model, prompt_ids, batch, 3, None, dev)
            off = run(torch, model, prompt_ids, batch, steps, None, dev)
            on = run(torch, model, prompt_ids, batch, steps, compiled, dev)
            off_s, on_s = statistics.median(off[2:]), statistics.median(on[2:])
            rows.append({"tool_choice": choice, "batch": batch, "steps": steps,
                         "step_ms_off": round(off_s * 1e3, 3), "step_ms_on": round(on_s * 1e3, 3),
                         "tok_s_off": round(batch / off_s, 1), "tok_s_on": round(batch / on_s, 1),
                         "overhead_pct": round((on_s / off_s - 1) * 100, 2)})
    from bench_apply_bitmask import device_info
    result = C.finish_env({**env, "device": device_info(torch, dev),
                           "model": "tiny (hidden 64, 2 layers)" if args.quick else
                           "Llama-3.1-8B shape, random bf16", "rows": rows})
    C.write_json(args.out, result)
    print(f"device: {result['device'].get('name')} ({dev}); model: {result['model']}")
    print(C.table(["tool_choice", "batch", "ms/step off", "ms/step on", "tok/s off", "tok/s on",
                   "overhead %"],
                  [[r["tool_choice"], r["batch"], r["step_ms_off"], r["step_ms_on"], r["tok_s_off"],
                    r["tok_s_on"], r["overhead_pct"]] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
