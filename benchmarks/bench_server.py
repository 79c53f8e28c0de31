"""Server benchmark: tokens/s and time to first token of tool-calling chat completions.

Three configurations on the same tiny random model (Llama 3 tokenizer), in one run:

``functionary+grammar``
    ``functionary serve --enable-grammar-sampling``: Functionary prompt, our tool grammar
    as a vLLM logits processor (budget-aware termination on ``max_tokens``).
``functionary-nogrammar``
    The same server, with the grammar turned off per request (``grammar_sampling: false``):
    the reference behaviour (prompt prefixes only).  Same process, same weights, same prompt,
    so the difference is the cost of the grammar.
``vllm+xgrammar``
    Stock vLLM's OpenAI server with its own path for ``tool_choice="required"``:
    ``--enable-auto-tool-choice --tool-call-parser llama3_json`` and xgrammar structured
    outputs (``disable_any_whitespace``), a Llama-3-style chat template listing the tools.

Each configuration is run at several concurrency levels (streamed requests, ``n=1``).  Per
level: aggregate completion tokens/s (all tokens / wall time), time to first token (the
first chunk: both servers send the assistant role with the first generated token) p50/p90,
time to the first content or tool-call delta, per-request decode rate, and the share of
responses whose tool calls are all valid against the tools' schemas (and, for ``required``,
present).  Results: one JSON file (git sha, versions, machine, raw per-request numbers) and
a table on stdout.

Run it in the vLLM environment (``VLLM=1 bash scripts/setup.sh`` creates ``.venv-vllm``)::

    .venv-vllm/bin/python benchmarks/bench_server.py --quick      # CPU: ~5 minutes
    .venv-vllm/bin/python benchmarks/bench_server.py --concurrency 1 4 16 32

Only 127.0.0.1 is contacted.  Servers are started and stopped by the script, one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

MESSAGES = [{"role": "user", "content": "What's the weather in Paris, and book me a flight?"}]

#: Llama-3-style chat template for the stock server (the tiny model's tokenizer has none).
STOCK_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if tools %}<|start_header_id|>system<|end_header_id|>\n\n"
    "You have access to the following functions. To call one, respond with JSON "
    "{\"name\": function name, \"parameters\": arguments}.\n\n"
    "{%- for t in tools %}{{ t | tojson }}\n\n{%- endfor %}<|eot_id|>{%- endif %}"
    "{%- for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] if m['content'] is string else '' }}<|eot_id|>{%- endfor %}"
    "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}"
)

COMMON_ENGINE_ARGS = ["--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
                      "--max-num-seqs", "64"]


# ------------------------------------------------------------------------------ servers

class Server:
    """A server subprocess in its own process group, on 127.0.0.1."""

    def __init__(self, name: str, cmd: list[str], port: int, log_path: Path) -> None:
        self.name, self.cmd, self.port, self.log_path = name, cmd, port, log_path
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    def start(self, timeout: float) -> None:
        import httpx

        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); log "
                                   f"{self.log_path}:\n{self.tail()}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    self.startup_s = time.perf_counter() - t0
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"{self.name} not healthy after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        from functionary.demo import stop_process_group
        stop_process_group(self.proc)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ours_server(model_dir: Path, workdir: Path) -> Server:
    port = _free_port()
    cmd = [sys.executable, "-m", "functionary", "serve", "--model", str(model_dir),
           "--served-model-name", "tiny", "--enable-grammar-sampling", "--host", "127.0.0.1",
           "--port", str(port), *COMMON_ENGINE_ARGS]
    return Server("functionary", cmd, port, workdir / "functionary.log")


def stock_server(model_dir: Path, workdir: Path) -> Server:
    port = _free_port()
    template = workdir / "llama3_tools.jinja"
    template.write_text(STOCK_CHAT_TEMPLATE)
    # `vllm serve` is broken in vllm-cpu 0.32 (it looks up the `vllm` distribution): use the module.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
           "--enable-auto-tool-choice", "--tool-call-parser", "llama3_json",
           "--chat-template", str(template),
           "--structured-outputs-config", json.dumps({"backend": "xgrammar",
                                                      "disable_any_whitespace": True}),
           *COMMON_ENGINE_ARGS]
    return Server("vllm", cmd, port, workdir / "vllm.log")


# ----------------------------------------------------------------------------- client

def _valid_calls(calls: list[dict[str, Any]], tools: list[dict[str, Any]], required: bool) -> bool:
    import jsonschema

    if required and not calls:
        return False
    schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
    for c in calls:
        name = c.get("name")
        if name not in schemas:
            return False
        try:
            args = json.loads(c.get("arguments") or "")
            jsonschema.validate(args, schemas[name], format_checker=jsonschema.FormatChecker())
        except (ValueError, jsonschema.ValidationError):
            return False
    return True


async def one_request(client: Any, body: dict[str, Any], tools: list[dict[str, Any]],
                      required: bool) -> dict[str, Any]:
    """Send one streamed request; returns timing, token count, validity or the error."""
    t0 = time.perf_counter()
    first_chunk = first = last = None
    usage = None
    calls: dict[int, dict[str, str]] = {}
    status = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            status = r.status_code
            if status != 200:
                text = (await r.aread()).decode(errors="replace")
                return {"ok": False, "status": status, "error": text[:300]}
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                ev = json.loads(data)
                if "error" in ev:
                    return {"ok": False, "status": status, "error": str(ev["error"])[:300]}
                if ev.get("usage"):
                    usage = ev["usage"]
                if ev.get("choices") and first_chunk is None:
                    first_chunk = time.perf_counter()
                for ch in ev.get("choices") or ():
                    d = ch.get("delta") or {}
                    if d.get("content") or d.get("tool_calls"):
                        now = time.perf_counter()
                        first = first if first is not None else now
                        last = now
                    for tc in d.get("tool_calls") or ():
                        c = calls.setdefault(tc.get("index", 0), {"name": "", "arguments": ""})
                        fn = tc.get("function") or {}
                        if fn.get("name"):
                            c["name"] = fn["name"]
                        c["arguments"] += fn.get("arguments") or ""
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        return {"ok": False, "status": status, "error": C.short_error(e)}
    end = time.perf_counter()
    tokens = int(usage["completion_tokens"]) if usage else None
    call_list = [calls[k] for k in sorted(calls)]
    decode = None
    if tokens and tokens > 1 and first is not None and last is not None and last > first:
        decode = (tokens - 1) / (last - first)
    return {"ok": True, "status": status, "latency_s": end - t0,
            "ttft_s": None if first_chunk is None else first_chunk - t0,
            "first_delta_s": None if first is None else first - t0, "tokens": tokens,
            "decode_tok_s": decode, "calls": len(call_list),
            "valid": _valid_calls(call_list, tools, required)}


async def run_level(base: str, bodies: list[dict[str, Any]], concurrency: int,
                    tools: list[dict[str, Any]], required: bool) -> dict[str, Any]:
    """Run ``bodies`` with at most ``concurrency`` in flight; aggregate."""
    import httpx

    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        async def go(b: dict[str, Any]) -> dict[str, Any]:
            async with sem:
                return await one_request(client, b, tools, required)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(go(b) for b in bodies))
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    tokens = sum(r["tokens"] or 0 for r in ok)
    ttfts = sorted(r["ttft_s"] * 1000 for r in ok if r["ttft_s"] is not None)
    firsts = sorted(r["first_delta_s"] * 1000 for r in ok if r["first_delta_s"] is not None)
    decodes = sorted(r["decode_tok_s"] for r in ok if r["decode_tok_s"])
    return {
        "concurrency": concurrency, "requests": len(bodies), "ok": len(ok),
        "errors": [r.get("error") for r in results if not r["ok"]][:5],
        "wall_s": round(wall, 3), "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
        "ttft_ms_p50": round(C.percentile(ttfts, 50), 1) if ttfts else None,
        "ttft_ms_p90": round(C.percentile(ttfts, 90), 1) if ttfts else None,
        "first_delta_ms_p50": round(C.percentile(firsts, 50), 1) if firsts else None,
        "decode_tok_s_p50": round(C.percentile(decodes, 50), 1) if decodes else None,
        "valid_share": round(sum(r["valid"] for r in ok) / len(ok), 3) if ok else None,
        "mean_tokens": round(tokens / len(ok), 1) if ok else None,
        "per_request": results,
    }


def make_bodies(n: int, tool_choice: Any, max_tokens: int, tools: list[dict[str, Any]],
                extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"model": "tiny", "messages": MESSAGES, "tools": tools, "tool_choice": tool_choice,
             "max_tokens": max_tokens, "temperature": 1.0, "stream": True,
             "stream_options": {"include_usage": True}, **extra} for _ in range(n)]


# ------------------------------------------------------------------------------- main

def _versions() -> dict[str, Any]:
    v = C.package_versions(("vllm-cpu", "vllm", "torch", "transformers", "tokenizers", "xgrammar",
                            "fastapi", "uvicorn", "httpx", "numpy"))
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="CPU-sized run: concurrency 1 and 4, 96 tokens, required only")
    ap.add_argument("--concurrency", type=int, nargs="+", default=None)
    ap.add_argument("--requests-per-level", type=int, default=None,
                    help="requests per concurrency level (default: max(4, 3 x concurrency))")
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--skip-stock", action="store_true", help="do not run stock vLLM")
    ap.add_argument("--model-dir", default=None,
                    help="model folder (default: build the tiny random model in a temp folder)")
    ap.add_argument("--startup-timeout", type=float, default=600)
    ap.add_argument("--out", default=str(C.RESULTS_DIR / "bench_server.json"))
    args = ap.parse_args(argv)
    levels = args.concurrency or ([1, 4] if args.quick else [1, 4, 16])
    max_tokens = args.max_tokens or (96 if args.quick else 128)
    choices = ["required"] if args.quick else ["required", "auto"]

    env = C.capture_env()
    env["versions"] = _versions()
    workdir = Path(tempfile.mkdtemp(prefix="bench-server-"))
    from functionary.demo import DEMO_TOOLS

    tools = DEMO_TOOLS
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        from functionary.tiny_model import build_tiny_model

        model_dir = workdir / "tiny"
        build_tiny_model("llama3.1", out_dir=model_dir)
    C.log(f"model {model_dir}; levels {levels}; max_tokens {max_tokens}; work dir {workdir}")

    runs: list[dict[str, Any]] = []
    servers: dict[str, Any] = {}

    def per_level(base: str, config: str, tool_choice: str, extra: dict[str, Any]) -> None:
        required = tool_choice == "required"
        asyncio.run(run_level(base, make_bodies(2, tool_choice, max_tokens, tools, extra), 2,
                              tools, required))  # warm-up
        for c in levels:
            n = args.requests_per_level or max(4, 3 * c)
            res = asyncio.run(run_level(base, make_bodies(n, tool_choice, max_tokens, tools, extra),
                                        c, tools, required))
            res.update(config=config, tool_choice=tool_choice)
            runs.append(res)
            C.log(f"{config:22s} {tool_choice:8s} c={c:<3d} {res['tokens_per_s']} tok/s  "
                  f"ttft p50 {res['ttft_ms_p50']} ms  valid {res['valid_share']}  ok {res['ok']}/{n}")

    ours = ours_server(model_dir, workdir)
    C.log("starting functionary serve --enable-grammar-sampling ...")
    ours.start(args.startup_timeout)
    servers["functionary"] = {"cmd": ours.cmd, "startup_s": round(ours.startup_s or 0, 1)}
    try:
        for choice in choices:
            per_level(ours.base, "functionary+grammar", choice, {})
            per_level(ours.base, "functionary-nogrammar", choice, {"grammar_sampling": False})
    finally:
        ours.stop()
    if not args.skip_stock:
        stock = stock_server(model_dir, workdir)
        C.log("starting stock vLLM (llama3_json tool parser, xgrammar) ...")
        try:
            stock.start(args.startup_timeout)
            servers["vllm"] = {"cmd": stock.cmd, "startup_s": round(stock.startup_s or 0, 1)}
            per_level(stock.base, "vllm+xgrammar", "required", {})
        except RuntimeError as e:
            servers["vllm"] = {"cmd": stock.cmd, "error": C.short_error(e, 2000)}
            C.log(f"stock vLLM failed: {e}")
        finally:
            stock.stop()

    result = {
        "benchmark": "bench_server",
        **C.finish_env(env),
        "config": {"levels": levels, "max_tokens": max_tokens, "tool_choices": choices,
                   "model": "tiny random Llama (hidden 64, 2 layers, vocab 128256), float32, CPU"
                   if not args.model_dir else str(model_dir),
                   "engine_args": COMMON_ENGINE_ARGS, "quick": args.quick,
                   "notes": ["functionary serve turns chunked prefill off on CPU (a vLLM 0.32 CPU "
                             "bug with seeded requests); stock vLLM keeps it on",
                             "the prompts differ: Functionary v3-llama3.1 vs a short Llama-3 "
                             "tools template for stock vLLM"]},
        "servers": servers,
        "runs": runs,
    }
    path = C.write_json(args.out, C.clean_nan(result))
    headers = ["config", "tool_choice", "conc", "ok", "tok/s", "ttft p50 ms", "ttft p90 ms",
               "1st delta p50 ms", "decode tok/s p50", "mean tokens", "valid"]
    rows = [[r["config"], r["tool_choice"], r["concurrency"], f"{r['ok']}/{r['requests']}",
             r["tokens_per_s"], r["ttft_ms_p50"], r["ttft_ms_p90"], r["first_delta_ms_p50"],
             r["decode_tok_s_p50"], r["mean_tokens"], r["valid_share"]] for r in runs]
    print(C.table(headers, rows))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
