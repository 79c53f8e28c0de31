"""vLLM ``AsyncLLM`` wiring: the model, its tokenizer and template, LoRA adapters.

:class:`FunctionaryEngine` owns everything the routes need:

* the model directory, checked at startup (:func:`check_model_dir`), with a clear
  :class:`StartupError` when it, its tokenizer or its template is unusable;
* the tokenizer (``tokenizers`` reading ``tokenizer.json``; prompts are rendered by our
  template and tokenised here, vLLM never sees text or tools);
* the Functionary template (``--template auto`` detects it from the tokenizer);
* with grammar sampling, a frontend :class:`grammar.GrammarCompiler` that compiles every
  request's grammar before admission (so unsupported tool schemas are a 400, never a worker
  failure), and the logits processor registered with the engine
  (:mod:`functionary.vllm_adapter`, the V1 or the V2 adapter to match the model runner);
* the LoRA registry (``--lora-modules`` at startup, load/unload at runtime).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functionary.errors import FunctionaryError, TemplateError

from .errors import APIError, BadRequest, NotFound

__all__ = ["StartupError", "ServerOptions", "ModelTokenizer", "FunctionaryEngine",
           "check_model_dir", "resolve_template", "parse_lora_modules"]

log = logging.getLogger("functionary.server")


class StartupError(FunctionaryError):
    """The server cannot start: the model directory, tokenizer, template or engine
    configuration is unusable.  The message says what to fix."""


@dataclass
class ServerOptions:
    """Options of ``functionary serve`` that are not vLLM engine arguments.

    Attributes
    ----------
    model : str
        The model directory.
    served_model_name : str
        The name clients put in ``model``.
    template : str
        ``"auto"`` or a template version.
    enable_grammar_sampling : bool
        Constrain generation with the tool grammar.
    lora_modules : list of (name, path)
        Adapters loaded at startup.
    memory_flags_given : bool
        ``--gpu-memory-utilization`` or ``--kv-cache-memory-bytes`` was given: on CPU the
        server then leaves vLLM's KV-cache sizing alone (see :func:`_cpu_kv_cache_default`).
    """

    model: str
    served_model_name: str
    template: str = "auto"
    enable_grammar_sampling: bool = False
    lora_modules: list[tuple[str, str]] = field(default_factory=list)
    memory_flags_given: bool = False


def parse_lora_modules(items: Sequence[str] | None) -> list[tuple[str, str]]:
    """``NAME=PATH`` items → ``[(name, path)]``.

    Raises
    ------
    StartupError
        For an item without ``=``, an empty name or path, or a duplicate name.
    """
    out: list[tuple[str, str]] = []
    for item in items or ():
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise StartupError(f"--lora-modules expects NAME=PATH, got {item!r}")
        if any(n == name.strip() for n, _ in out):
            raise StartupError(f"--lora-modules: the name {name.strip()!r} is given twice")
        out.append((name.strip(), path.strip()))
    return out


def check_model_dir(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` is a local model directory the server can use.

    Raises
    ------
    StartupError
        If it does not exist, is not a directory, or lacks ``config.json`` or
        ``tokenizer.json``.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise StartupError(f"model directory {str(p)!r} does not exist (--model must be a local "
                           "directory; nothing is downloaded)")
    if not p.is_dir():
        raise StartupError(f"--model {str(p)!r} is not a directory")
    if not (p / "config.json").is_file():
        raise StartupError(f"{str(p)!r} has no config.json: not a Hugging Face model directory")
    if not (p / "tokenizer.json").is_file():
        raise StartupError(f"{str(p)!r} has no tokenizer.json; the server needs a fast-tokenizer "
                           "file next to the model")
    return p.resolve()


class ModelTokenizer:
    """The model's ``tokenizer.json`` (via ``tokenizers``) plus its chat template.

    Enough for :func:`functionary.detect_template` (``chat_template``, ``get_vocab``) and
    for tokenising rendered prompts.

    Raises
    ------
    StartupError
        If ``tokenizer.json`` or ``tokenizer_config.json`` cannot be read.
    """

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exceptions
            raise StartupError(f"cannot read {model_dir / 'tokenizer.json'}: {e}") from e
        self.chat_template: Any = None
        cfg = model_dir / "tokenizer_config.json"
        if cfg.is_file():
            try:
                self.chat_template = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
            except (ValueError, OSError) as e:
                raise StartupError(f"cannot read {cfg}: {e}") from e
        self._vocab: dict[str, int] | None = None

    def get_vocab(self) -> dict[str, int]:
        """Token text → id, added tokens included."""
        if self._vocab is None:
            self._vocab = self._tok.get_vocab(with_added_tokens=True)
        return self._vocab

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, with the tokenizer's special tokens (BOS) added."""
        return list(self._tok.encode(text, add_special_tokens=True).ids)

    def token_id(self, text: str) -> int | None:
        """The id of a single-token string, or ``None``."""
        return self._tok.token_to_id(text)


def resolve_template(name: str, tokenizer: ModelTokenizer) -> Any:
    """The template named ``name``, or the tokenizer's when ``name == "auto"``.

    Raises
    ------
    StartupError
        For an unknown version, or when detection fails.
    """
    from functionary import detect_template, get_template

    try:
        if name in ("auto", "", None):
            return detect_template(tokenizer)
        return get_template(name)
    except TemplateError as e:
        hint = "" if name not in ("auto", "", None) else " Pass --template VERSION."
        raise StartupError(f"template: {e}{hint}") from e


def _is_cpu(vllm_config: Any) -> bool:
    device = getattr(getattr(vllm_config, "device_config", None), "device_type", None)
    if device is not None:
        return str(device) == "cpu"
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _avoid_cpu_chunked_prefill(vllm_config: Any) -> None:
    """Turn chunked prefill off on the CPU platform.

    vLLM 0.32's V1 runner rewinds the per-request ``torch.Generator`` of a seeded request
    whose sampled token is discarded (a partially prefilled prompt) with ``set_offset``,
    which CPU generators do not implement: ``RuntimeError: CPU Generator does not use
    offset`` kills the engine (``gpu_model_runner.py``, ``_bookkeeping_sync``).  Any client
    sending ``seed`` with a long prompt, or under load, would trigger it.  Without chunked
    prefill no prompt is ever split (vLLM's CPU platform makes the same change for MLA
    models), so the path is never taken.
    """
    sched = getattr(vllm_config, "scheduler_config", None)
    if sched is None or not _is_cpu(vllm_config) or not getattr(sched, "enable_chunked_prefill", False):
        return
    sched.enable_chunked_prefill = False
    default = int(getattr(sched, "DEFAULT_MAX_NUM_BATCHED_TOKENS", 2048) or 2048)
    sched.max_num_batched_tokens = max(int(vllm_config.model_config.max_model_len), default,
                                       int(sched.max_num_batched_tokens or 0))
    log.info("CPU: chunked prefill off (seeded requests would crash vLLM %s's CPU runner "
             "on a split prompt); max_num_batched_tokens=%d", _vllm_version(),
             sched.max_num_batched_tokens)


#: KV-cache budget of ``functionary serve`` on CPU when nothing sets one.
CPU_KV_CACHE_DEFAULT_BYTES = 4 * 2**30


def _cpu_kv_cache_default(vllm_config: Any) -> None:
    """Give the CPU platform a bounded KV cache unless the user sized it.

    vLLM's CPU worker otherwise reserves ``--gpu-memory-utilization`` (0.92) of the node's
    memory and refuses to start when that much is not free, so a second server (or a busy
    machine) fails at startup.  Without ``VLLM_CPU_KVCACHE_SPACE``,
    ``--kv-cache-memory-bytes`` or ``--gpu-memory-utilization`` the server uses
    ``min(4 GiB, a quarter of the available memory)`` (at least 512 MiB).
    """
    cache = getattr(vllm_config, "cache_config", None)
    if cache is None or not _is_cpu(vllm_config):
        return
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE") or getattr(cache, "kv_cache_memory_bytes", None):
        return
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    budget = CPU_KV_CACHE_DEFAULT_BYTES
    if available:
        budget = max(512 * 2**20, min(budget, available // 4))
    cache.kv_cache_memory_bytes = int(budget)
    log.info("CPU: KV cache %.1f GiB (set VLLM_CPU_KVCACHE_SPACE, --kv-cache-memory-bytes or "
             "--gpu-memory-utilization to change it)", budget / 2**30)


def _vllm_version() -> str:
    try:
        import vllm

        return str(vllm.__version__)
    except Exception:  # noqa: BLE001
        return "?"


_PROBE_TOOLS = [{"type": "function", "function": {"name": "probe", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer"}}}}}]


class FunctionaryEngine:
    """The model server's engine side.

    Build it with :meth:`create` (blocking: starts vLLM's engine processes).

    Attributes
    ----------
    options : ServerOptions
    model_dir : Path
    tokenizer : ModelTokenizer
    template : functionary.templates.base.Template
    compiler : grammar.GrammarCompiler or None
        The frontend compiler (grammar sampling only).
    vllm_config : vllm.config.VllmConfig
    engine : vllm.v1.engine.async_llm.AsyncLLM
    max_model_len : int
    stop_token_ids : list of int
        The template's stop tokens that exist in the vocabulary.
    """

    def __init__(self, options: ServerOptions, model_dir: Path, tokenizer: ModelTokenizer,
                 template: Any, vllm_config: Any, engine: Any, compiler: Any) -> None:
        self.options = options
        self.model_dir = model_dir
        self.tokenizer = tokenizer
        self.template = template
        self.vllm_config = vllm_config
        self.engine = engine
        self.compiler = compiler
        self.max_model_len = int(vllm_config.model_config.max_model_len)
        self.stop_token_ids = [i for i in (tokenizer.token_id(s) for s in template.stop_tokens)
                               if i is not None]
        self.lora_enabled = getattr(vllm_config, "lora_config", None) is not None
        self.max_lora_rank = int(getattr(vllm_config.lora_config, "max_lora_rank", 0) or 0) \
            if self.lora_enabled else 0
        self._loras: dict[str, Any] = {}
        self._lora_paths: dict[str, str] = {}
        self._next_lora_id = 1
        self._lora_lock = asyncio.Lock()

    # ------------------------------------------------------------------ startup
    @classmethod
    def create(cls, engine_args: Any, options: ServerOptions) -> "FunctionaryEngine":
        """Check the model, build the vLLM engine, register the grammar processor.

        Parameters
        ----------
        engine_args : vllm.engine.arg_utils.AsyncEngineArgs
            vLLM's engine arguments (``--model`` included).
        options : ServerOptions

        Raises
        ------
        StartupError
            With a message naming what is unusable.
        """
        model_dir = check_model_dir(options.model)
        tokenizer = ModelTokenizer(model_dir)
        template = resolve_template(options.template, tokenizer)
        log.info("template %s (%s)", template.version,
                 "detected" if options.template in ("auto", "", None) else "given")
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        from functionary import vllm_adapter

        engine_args.model = str(model_dir)
        if engine_args.tokenizer in (None, ""):
            engine_args.tokenizer = str(model_dir)
        if options.enable_grammar_sampling:
            existing = list(engine_args.logits_processors or [])
            engine_args.logits_processors = existing + [vllm_adapter.V1_FQCN]
        try:
            vllm_config = engine_args.create_engine_config(UsageContext.OPENAI_API_SERVER)
        except Exception as e:  # noqa: BLE001 - vLLM raises many types for bad configs
            raise StartupError(f"vLLM rejected the engine configuration: {type(e).__name__}: {e}") from e
        _avoid_cpu_chunked_prefill(vllm_config)
        if not options.memory_flags_given:
            _cpu_kv_cache_default(vllm_config)
        compiler = None
        if options.enable_grammar_sampling:
            if vllm_config.speculative_config is not None:
                raise StartupError("--enable-grammar-sampling cannot be combined with speculative "
                                   "decoding (draft tokens bypass the grammar)")
            fqcn = vllm_adapter.processor_class_for(vllm_config)
            procs = [p for p in (vllm_config.model_config.logits_processors or [])
                     if p != vllm_adapter.V1_FQCN]
            vllm_config.model_config.logits_processors = procs + [fqcn]
            log.info("grammar sampling on: logits processor %s", fqcn)
            vllm_adapter.bind_engine_config(vllm_config)
            try:
                compiler = vllm_adapter.compiler_for_model(
                    model_dir, vllm_config.model_config.get_vocab_size())
                from functionary.tool_grammar import compile_tool_grammar

                compile_tool_grammar(compiler, template, _PROBE_TOOLS, "auto")
            except Exception as e:  # noqa: BLE001
                raise StartupError(f"grammar sampling cannot use this model's tokenizer with the "
                                   f"{template.version} template: {type(e).__name__}: {e}") from e
        try:
            engine = AsyncLLM.from_vllm_config(vllm_config,
                                               usage_context=UsageContext.OPENAI_API_SERVER,
                                               enable_log_requests=bool(
                                                   getattr(engine_args, "enable_log_requests", False)),
                                               disable_log_stats=bool(
                                                   getattr(engine_args, "disable_log_stats", False)))
        except Exception as e:  # noqa: BLE001
            raise StartupError(f"the vLLM engine failed to start: {type(e).__name__}: {e}") from e
        return cls(options, model_dir, tokenizer, template, vllm_config, engine, compiler)

    async def load_startup_loras(self) -> None:
        """Load the ``--lora-modules`` adapters.

        Raises
        ------
        StartupError
            If LoRA is off or an adapter cannot be loaded.
        """
        for name, path in self.options.lora_modules:
            try:
                await self.add_lora(name, path)
            except APIError as e:
                raise StartupError(f"--lora-modules {name}={path}: {e.message}") from e

    def shutdown(self) -> None:
        """Stop vLLM's engine processes."""
        try:
            self.engine.shutdown()
        except Exception as e:  # noqa: BLE001
            log.warning("engine shutdown: %s", e)

    # ------------------------------------------------------------------ models
    @property
    def model_name(self) -> str:
        return self.options.served_model_name

    def model_cards(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries: the base model, then the LoRA adapters."""
        cards = [{"id": self.model_name, "root": str(self.model_dir), "parent": None,
                  "max_model_len": self.max_model_len}]
        for name in self._loras:
            cards.append({"id": name, "root": self._lora_paths[name], "parent": self.model_name,
                          "max_model_len": self.max_model_len})
        return cards

    def lora_request_for(self, model: str) -> Any:
        """``None`` for the base model, the adapter's ``LoRARequest`` for a LoRA name.

        Raises
        ------
        NotFound
            For any other name (OpenAI's 404 ``model_not_found``).
        """
        if model in (self.model_name, str(self.model_dir), self.options.model):
            return None
        lora = self._loras.get(model)
        if lora is not None:
            return lora
        raise NotFound(f"The model `{model}` does not exist.", param="model", code="model_not_found")

    async def add_lora(self, name: str, path: str) -> str:
        """Load a PEFT LoRA adapter under ``name``.

        Raises
        ------
        BadRequest
            LoRA is off, the name is taken, or the folder is not a usable adapter.
        """
        if not self.lora_enabled:
            raise BadRequest("LoRA adapters are not enabled on this server; start it with "
                             "--enable-lora.", param="lora_name")
        if name == self.model_name:
            raise BadRequest(f"The name {name!r} is the base model's.", param="lora_name")
        p = Path(path).expanduser()
        if not p.is_dir():
            raise BadRequest(f"The LoRA path {path!r} is not a directory on the server.",
                             param="lora_path")
        cfg_path = p / "adapter_config.json"
        if not cfg_path.is_file():
            raise BadRequest(f"{path!r} has no adapter_config.json: not a PEFT LoRA adapter.",
                             param="lora_path")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise BadRequest(f"{cfg_path} cannot be read: {e}", param="lora_path") from None
        if not isinstance(cfg, dict):
            raise BadRequest(f"{cfg_path} must hold a JSON object.", param="lora_path")
        rank = cfg.get("r")
        if not isinstance(rank, int) or rank < 1:
            raise BadRequest(f"{cfg_path}: 'r' must be a positive integer.", param="lora_path")
        if rank > self.max_lora_rank:
            raise BadRequest(f"The adapter's rank {rank} exceeds --max-lora-rank "
                             f"{self.max_lora_rank}.", param="lora_path")
        if not any((p / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
            raise BadRequest(f"{path!r} has no adapter_model.safetensors.", param="lora_path")
        from vllm.lora.request import LoRARequest

        async with self._lora_lock:
            if name in self._loras:
                raise BadRequest(f"The lora adapter '{name}' has already been loaded.",
                                 param="lora_name")
            req = LoRARequest(lora_name=name, lora_int_id=self._next_lora_id, lora_path=str(p))
            try:
                await self.engine.add_lora(req)
            except Exception as e:  # noqa: BLE001 - the engine reports load failures as-is
                raise BadRequest(f"The LoRA adapter {name!r} could not be loaded: "
                                 f"{type(e).__name__}: {e}", param="lora_path") from None
            self._next_lora_id += 1
            self._loras[name] = req
            self._lora_paths[name] = str(p)
        log.info("loaded LoRA adapter %s from %s", name, p)
        return f"Success: LoRA adapter '{name}' added successfully."

    async def remove_lora(self, name: str) -> str:
        """Unload the adapter ``name``.

        Raises
        ------
        BadRequest
            LoRA is off.
        NotFound
            No adapter has that name.
        """
        if not self.lora_enabled:
            raise BadRequest("LoRA adapters are not enabled on this server; start it with "
                             "--enable-lora.", param="lora_name")
        async with self._lora_lock:
            req = self._loras.get(name)
            if req is None:
                raise NotFound(f"The lora adapter '{name}' cannot be found.", param="lora_name")
            try:
                await self.engine.remove_lora(req.lora_int_id)
            except Exception as e:  # noqa: BLE001
                log.warning("remove_lora(%s): %s", name, e)
            del self._loras[name]
            del self._lora_paths[name]
        log.info("unloaded LoRA adapter %s", name)
        return f"Success: LoRA adapter '{name}' removed successfully."

    # --------------------------------------------------------------- generation
    def generate(self, prompt_ids: list[int], sampling_params: Any, request_id: str,
                 lora_request: Any = None) -> AsyncIterator[Any]:
        """vLLM's output stream for a tokenised prompt."""
        from vllm.inputs import TokensPrompt

        return self.engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), sampling_params,
                                    request_id, lora_request=lora_request)

    async def abort(self, request_id: str) -> None:
        """Abort a request (and its ``n`` children)."""
        try:
            await self.engine.abort(request_id)
        except Exception as e:  # noqa: BLE001
            log.debug("abort(%s): %s", request_id, e)

    async def check_health(self) -> None:
        """Raise if the engine is dead."""
        await self.engine.check_health()
