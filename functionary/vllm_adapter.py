"""vLLM integration: Functionary tool grammars as vLLM logits processors.

One engine-agnostic core, :class:`GrammarCore`, and two thin adapters over it:

* :class:`FunctionaryLogitsProcessor` implements the V1 model runner's interface
  (``vllm.v1.sample.logits_processor.LogitsProcessor``): the runner used on CPU, and on GPU
  with ``VLLM_USE_V2_MODEL_RUNNER=0``.  State is keyed by persistent-batch row and follows
  the ``removed`` / ``added`` / ``moved`` records of each ``BatchUpdate``.
* :class:`FunctionaryLogitsProcessorV2` implements Model Runner V2's interface
  (``vllm.v1.worker.gpu.sample.logits_processor.LogitsProcessor``), the GPU default since
  vLLM 0.32.  State is keyed by request slot (``add_request`` reinitialises a slot) and the
  committed tokens are read from the runner's token buffer.

Register one of them with the engine (``logits_processors=[...]`` or
``--logits-processors functionary.vllm_adapter:FunctionaryLogitsProcessor``); the server
(:mod:`functionary.server`) does this when ``--enable-grammar-sampling`` is given and picks
the class that matches the engine's model runner (:func:`processor_class_for`).

A request is constrained when its ``SamplingParams.extra_args`` hold a grammar spec under
:data:`EXTRA_ARGS_KEY`: a JSON string (``vllm_xargs`` on vLLM's own server only carries flat
values) describing ``(template version, tools, tool_choice, parallel_tool_calls)``; see
:class:`GrammarSpec`.  The worker compiles it with its own :class:`grammar.GrammarCompiler`,
built from the model's ``tokenizer.json`` and the model's logits width; compiled grammars
are cached per spec and in the compiler's LRU, so each distinct tool set is compiled once.
Every constrained sequence (each of the ``n`` sequences of a request included) gets its own
:class:`grammar.GrammarMatcher`, with budget-aware termination on ``max_tokens`` unless the
spec turns it off.  Each step the rows' bitmasks are filled into one preallocated ``int32``
buffer, copied to the logits' device once and applied in one operation; rows of
unconstrained requests are not touched.

Failure policy: nothing a single request does may take the engine down.  A spec that fails
to compile in the worker (the server validates specs before admission, so this is not
expected), or a sampled token the grammar rejects (another component forced it), is logged
and that sequence is ended: its mask then allows only end-of-sequence tokens.

Speculative decoding is not supported (the V1 runner already refuses custom logits
processors with it; the V2 adapter refuses it at construction, and
:meth:`FunctionaryLogitsProcessor.validate_params` refuses constrained requests at admission
when the engine configuration bound with :func:`bind_engine_config` uses it).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grammar import CompiledGrammar, GrammarCompiler, GrammarMatcher, Vocabulary
from grammar.bitmask import apply_token_bitmask_inplace, bitmask_width

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "EXTRA_ARGS_KEY",
    "GrammarSpec",
    "GrammarSpecError",
    "UnsupportedEngineConfigError",
    "GrammarCore",
    "FunctionaryLogitsProcessor",
    "FunctionaryLogitsProcessorV2",
    "bind_engine_config",
    "compiler_for_model",
    "processor_class_for",
    "V1_FQCN",
    "V2_FQCN",
]

log = logging.getLogger(__name__)

#: The ``SamplingParams.extra_args`` key that carries a request's grammar spec (JSON text).
EXTRA_ARGS_KEY = "functionary_grammar"

#: Fully qualified class names, as vLLM's ``--logits-processors`` takes them.
V1_FQCN = "functionary.vllm_adapter:FunctionaryLogitsProcessor"
V2_FQCN = "functionary.vllm_adapter:FunctionaryLogitsProcessorV2"

_SPEC_DECODING_MESSAGE = (
    "Functionary grammar sampling cannot be combined with speculative decoding: draft tokens "
    "bypass the grammar.  Start the engine without a speculative config, or send the request "
    f"without the {EXTRA_ARGS_KEY!r} extra argument.")


class GrammarSpecError(ValueError):
    """A grammar spec in ``SamplingParams.extra_args`` is malformed.

    A ``ValueError`` so that vLLM's admission check turns it into HTTP 400.
    """


class UnsupportedEngineConfigError(ValueError):
    """The engine is configured in a way the grammar processors cannot serve
    (speculative decoding)."""


# ------------------------------------------------------------------------------ spec

_TEMPLATE_VERSIONS = ("v1", "v2", "v2.llama3", "v3.llama3", "v3-llama3.1")


@dataclass(frozen=True)
class GrammarSpec:
    """What a worker needs to compile a request's grammar.

    Attributes
    ----------
    template : str
        The Functionary template version (``"v3-llama3.1"``...).
    tools : list or None
        The request's ``tools`` (or legacy ``functions``), as given.
    tool_choice : str, dict or None
        ``"auto" | "none" | "required"``, a named choice, or the legacy ``{"name": N}``.
    parallel_tool_calls : bool
        ``False`` allows at most one call.
    budget_aware : bool
        Budget-aware termination with ``token_budget = max_tokens`` (default on).
    """

    template: str
    tools: list[Any] | None = None
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    budget_aware: bool = True
    _json: str | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        """The canonical JSON text (sorted keys): the transport form and the cache key."""
        if self._json is not None:
            return self._json
        return json.dumps({"template": self.template, "tools": self.tools,
                           "tool_choice": self.tool_choice,
                           "parallel_tool_calls": self.parallel_tool_calls,
                           "budget_aware": self.budget_aware},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def extra_args(self) -> dict[str, str]:
        """``{EXTRA_ARGS_KEY: json}``, to merge into ``SamplingParams.extra_args``."""
        return {EXTRA_ARGS_KEY: self.to_json()}

    @classmethod
    def from_json(cls, text: Any) -> "GrammarSpec":
        """Parse and check a spec.

        Raises
        ------
        GrammarSpecError
            If ``text`` is not a JSON object with a known ``template`` and well-typed fields.
        """
        if isinstance(text, Mapping):
            obj: Any = dict(text)
        elif isinstance(text, (str, bytes)):
            try:
                obj = json.loads(text)
            except ValueError as e:
                raise GrammarSpecError(f"extra_args[{EXTRA_ARGS_KEY!r}] is not valid JSON: {e}") from None
        else:
            raise GrammarSpecError(f"extra_args[{EXTRA_ARGS_KEY!r}] must be a JSON string, got "
                                   f"{type(text).__name__}")
        if not isinstance(obj, dict):
            raise GrammarSpecError(f"extra_args[{EXTRA_ARGS_KEY!r}] must be a JSON object")
        unknown = set(obj) - {"template", "tools", "tool_choice", "parallel_tool_calls", "budget_aware"}
        if unknown:
            raise GrammarSpecError(f"extra_args[{EXTRA_ARGS_KEY!r}]: unknown field(s) {sorted(unknown)}")
        template = obj.get("template")
        if template not in _TEMPLATE_VERSIONS:
            raise GrammarSpecError(f"extra_args[{EXTRA_ARGS_KEY!r}].template must be one of "
                                   f"{', '.join(_TEMPLATE_VERSIONS)}; got {template!r}")
        tools = obj.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise GrammarSpecError(f"extra_args[{EXTRA_ARGS_KEY!r}].tools must be a list or null")
        choice = obj.get("tool_choice", "auto")
        if choice is not None and not isinstance(choice, (str, dict)):
            raise GrammarSpecError(f"extra_args[{EXTRA_ARGS_KEY!r}].tool_choice must be a string, "
                                   "an object or null")
        for flag in ("parallel_tool_calls", "budget_aware"):
            if not isinstance(obj.get(flag, True), bool):
                raise GrammarSpecError(f"extra_args[{EXTRA_ARGS_KEY!r}].{flag} must be a boolean")
        spec = cls(template, tools, choice, obj.get("parallel_tool_calls", True),
                   obj.get("budget_aware", True))
        object.__setattr__(spec, "_json", spec.to_json())
        return spec

    @classmethod
    def from_sampling_params(cls, sampling_params: Any) -> "GrammarSpec | None":
        """The spec carried by ``sampling_params.extra_args``, or ``None`` if there is none.

        Raises
        ------
        GrammarSpecError
            If a spec is present but malformed.
        """
        extra = getattr(sampling_params, "extra_args", None)
        if not extra or EXTRA_ARGS_KEY not in extra:
            return None
        return cls.from_json(extra[EXTRA_ARGS_KEY])


# --------------------------------------------------------------------------- compiler

@functools.lru_cache(maxsize=8)
def _compiler(tokenizer_json: str, vocab_size: int) -> GrammarCompiler:
    vocab = Vocabulary.from_file(tokenizer_json, vocab_size=vocab_size)
    return GrammarCompiler(vocab)


def compiler_for_model(tokenizer: str | Path, vocab_size: int) -> GrammarCompiler:
    """The (process-wide, cached) grammar compiler of a model.

    Parameters
    ----------
    tokenizer : str or Path
        The model (or tokenizer) directory holding ``tokenizer.json`` (end-of-sequence ids
        are read from its ``generation_config.json`` / ``config.json``), or the path of
        ``tokenizer.json`` itself.
    vocab_size : int
        The model's logits width (``ModelConfig.get_vocab_size()``), which may differ from
        the tokenizer's length.

    Raises
    ------
    FileNotFoundError
        If there is no ``tokenizer.json`` there.
    grammar.errors.VocabularyError
        If the tokenizer cannot be read.
    """
    path = Path(tokenizer)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"grammar sampling needs the model's tokenizer.json; not found at {path}")
    return _compiler(str(path.resolve()), int(vocab_size))


# ------------------------------------------------------------------------------- core

@dataclass
class _Sequence:
    """Grammar state of one constrained sequence."""

    matcher: GrammarMatcher | None   # None: ended (compile failure / rejected token)
    consumed: int = 0                # output tokens fed to the matcher so far


class GrammarCore:
    """Per-sequence grammar state plus the batched mask: the engine-agnostic part.

    Sequences are keyed by an integer chosen by the adapter (a persistent-batch row for
    the V1 runner, a request slot for Model Runner V2).

    Parameters
    ----------
    compiler : GrammarCompiler or callable
        The model's compiler, or a zero-argument function returning it (called once, on
        the first constrained request, so unconstrained engines pay nothing).
    max_rows : int
        Initial number of bitmask rows (the engine's ``max_num_seqs``); grows if needed.
    vocab_size : int
        The model's logits width.
    device : torch.device or str, optional
        Where the logits live (default CPU).
    pin_memory : bool, optional
        Use pinned host buffers for the host-to-device copy (CUDA).

    Notes
    -----
    Not thread-safe: an engine calls its logits processors from one thread.
    """

    def __init__(self, compiler: GrammarCompiler | Callable[[], GrammarCompiler], max_rows: int,
                 vocab_size: int, device: Any = "cpu", pin_memory: bool = False) -> None:
        import torch

        self._compiler_or_factory = compiler
        self._compiler: GrammarCompiler | None = compiler if isinstance(compiler, GrammarCompiler) else None
        self._lock = threading.Lock()
        self.vocab_size = int(vocab_size)
        self.device = torch.device(device)
        self._pin = bool(pin_memory) and self.device.type == "cuda"
        self._width = bitmask_width(self.vocab_size)
        self._seqs: dict[int, _Sequence] = {}
        self._compiled: dict[str, CompiledGrammar] = {}
        self._eos_words: np.ndarray | None = None
        self._rows = 0
        self._host: list[torch.Tensor] = []
        self._dev: list[torch.Tensor] = []
        self._events: list[Any] = []
        self._turn = 0
        self._allocate(max(1, int(max_rows)))

    # ------------------------------------------------------------------ buffers
    def _allocate(self, rows: int) -> None:
        import torch

        self._rows = rows
        shape = (rows, self._width)
        if self.device.type == "cpu":
            self._host = [torch.zeros(shape, dtype=torch.int32)]
            self._dev = self._host
            self._events = [None]
        else:  # two host buffers: never refill one whose copy may still be in flight
            self._host = [torch.zeros(shape, dtype=torch.int32, pin_memory=self._pin) for _ in range(2)]
            self._dev = [torch.zeros(shape, dtype=torch.int32, device=self.device) for _ in range(2)]
            self._events = [None, None]

    @property
    def bitmask_rows(self) -> int:
        """Rows of the preallocated bitmask buffer."""
        return self._rows

    @property
    def compiler(self) -> GrammarCompiler:
        """The grammar compiler (built on first use)."""
        if self._compiler is None:
            with self._lock:
                if self._compiler is None:
                    factory = self._compiler_or_factory
                    self._compiler = factory()  # type: ignore[operator]
                    if self._compiler.vocab.vocab_size > self._width * 32:
                        raise ValueError(
                            f"the grammar vocabulary ({self._compiler.vocab.vocab_size} tokens) is "
                            f"wider than the logits ({self.vocab_size})")
        return self._compiler

    # -------------------------------------------------------------- compilation
    def compile(self, spec: GrammarSpec) -> CompiledGrammar:
        """The compiled grammar of ``spec`` (cached per spec and in the compiler's LRU).

        Raises
        ------
        functionary.errors.RequestError
            For tools / tool_choice the grammar cannot serve.
        """
        key = spec.to_json()
        hit = self._compiled.get(key)
        if hit is not None:
            return hit
        from functionary.tool_grammar import compile_tool_grammar

        compiled = compile_tool_grammar(self.compiler, spec.template, spec.tools, spec.tool_choice,
                                        spec.parallel_tool_calls)
        if len(self._compiled) >= 512:
            self._compiled.pop(next(iter(self._compiled)))
        self._compiled[key] = compiled
        return compiled

    # ---------------------------------------------------------- sequence table
    def __contains__(self, key: int) -> bool:
        return key in self._seqs

    def __len__(self) -> int:
        return len(self._seqs)

    def keys(self) -> list[int]:
        """Keys of the constrained sequences."""
        return list(self._seqs)

    def add(self, key: int, sampling_params: Any) -> bool:
        """Start tracking a sequence; replaces whatever ``key`` held.

        Returns ``False`` (and forgets ``key``) when the params carry no grammar spec.  A
        spec that is malformed or fails to compile is logged and the sequence is ended (its
        mask allows only end-of-sequence): one bad request never raises into the engine.
        """
        self._seqs.pop(key, None)
        try:
            spec = GrammarSpec.from_sampling_params(sampling_params)
        except GrammarSpecError as e:
            log.error("functionary grammar: malformed spec, ending the sequence: %s", e)
            self._seqs[key] = _Sequence(None)
            return True
        if spec is None:
            return False
        try:
            compiled = self.compile(spec)
            budget = getattr(sampling_params, "max_tokens", None) if spec.budget_aware else None
            matcher = GrammarMatcher(compiled, token_budget=budget if budget and budget > 0 else None)
        except Exception as e:  # noqa: BLE001 - must not take the engine down
            log.error("functionary grammar: cannot compile the request's grammar, ending the "
                      "sequence: %s: %s", type(e).__name__, e)
            self._seqs[key] = _Sequence(None)
            return True
        self._seqs[key] = _Sequence(matcher)
        return True

    def remove(self, key: int) -> None:
        """Forget ``key`` (no-op if unknown)."""
        self._seqs.pop(key, None)

    def move(self, src: int, dst: int) -> None:
        """One-way move: ``src``'s state goes to ``dst`` (replacing it); ``src`` is emptied."""
        a = self._seqs.pop(src, None)
        self._seqs.pop(dst, None)
        if a is not None:
            self._seqs[dst] = a

    def swap(self, i: int, j: int) -> None:
        """Exchange the states of ``i`` and ``j``."""
        a, b = self._seqs.pop(i, None), self._seqs.pop(j, None)
        if a is not None:
            self._seqs[j] = a
        if b is not None:
            self._seqs[i] = b

    def clear(self) -> None:
        """Forget every sequence."""
        self._seqs.clear()

    def consumed(self, key: int) -> int:
        """Output tokens already fed to ``key``'s matcher."""
        return self._seqs[key].consumed

    def matcher(self, key: int) -> GrammarMatcher | None:
        """``key``'s matcher (``None`` once the sequence was ended)."""
        return self._seqs[key].matcher

    # -------------------------------------------------------------- advancing
    def advance(self, key: int, output_ids: Sequence[int], start: int | None = None) -> None:
        """Feed ``key``'s matcher the output tokens it has not seen yet.

        Parameters
        ----------
        key : int
            The sequence.
        output_ids : sequence of int
            Either the sequence's whole output so far (``start=None``; the live list of the
            V1 runner) or, with ``start``, the output tokens from position ``start`` on.
            A ``-1`` (an async-scheduling placeholder not yet replaced by the sampled id)
            stops the feed; the rest is read on the next call.  A list shorter than what was
            consumed (tokens discarded by the engine) rolls the matcher back.
        start : int, optional
            Position in the output of ``output_ids[0]``.
        """
        seq = self._seqs[key]
        base = 0 if start is None else int(start)
        total = base + len(output_ids)
        if total < seq.consumed:
            self._rollback(seq, seq.consumed - total)
        i = seq.consumed - base
        if i < 0:
            raise ValueError(f"advance() got tokens from position {base} but sequence {key} has "
                             f"only consumed {seq.consumed}")
        n = len(output_ids)
        while i < n:
            tok = int(output_ids[i])
            if tok < 0:     # async-scheduling placeholder
                break
            seq.consumed += 1
            i += 1
            m = seq.matcher
            if m is None:
                continue
            if m.is_terminated():
                continue    # tokens after the grammar's end (the engine stops on them)
            if not m.accept_token(tok):
                log.error("functionary grammar: sampled token %d rejected by the grammar "
                          "(sequence %d, after %d tokens); ending the sequence", tok, key,
                          seq.consumed - 1)
                seq.matcher = None

    @staticmethod
    def _rollback(seq: _Sequence, n: int) -> None:
        """Forget the last ``n`` consumed tokens (the matcher accepted at most that many:
        tokens after its end were consumed but not accepted)."""
        seq.consumed -= n
        m = seq.matcher
        if m is not None and m.num_accepted > seq.consumed:
            m.rollback(m.num_accepted - seq.consumed)

    # ----------------------------------------------------------------- masking
    def _end_words(self) -> np.ndarray:
        if self._eos_words is None:
            compiler = self.compiler
            eos = [e for e in compiler.vocab.eos_token_ids if 0 <= e < compiler.vocab.vocab_size]
            self._eos_words = np.asarray(compiler.index.ids_to_words(np.array(eos, dtype=np.int64)),
                                         dtype=np.int32)
        return self._eos_words

    def mask(self, logits: "torch.Tensor", rows: Sequence[tuple[int, int]]) -> "torch.Tensor":
        """Mask ``logits`` rows in place: ``rows`` pairs a logits row with a sequence key.

        Every listed row's allowed tokens are written into the preallocated bitmask (row for
        row), copied to the logits' device in one transfer and applied with one
        :func:`grammar.bitmask.apply_token_bitmask_inplace` call.  Rows not listed are left
        untouched.

        Returns
        -------
        torch.Tensor
            ``logits``.
        """
        if not rows:
            return logits
        import torch

        n_rows = int(logits.shape[0])
        if n_rows > self._rows:
            self._allocate(max(n_rows, 2 * self._rows))
        turn = self._turn
        self._turn = (self._turn + 1) % len(self._host)
        event = self._events[turn]
        if event is not None:
            event.synchronize()
        host = self._host[turn]
        arr = host.numpy()
        indices = np.empty(len(rows), dtype=np.int64)
        for k, (row, key) in enumerate(rows):
            seq = self._seqs[key]
            out = arr[row]
            m = seq.matcher
            words = self._end_words() if m is None else m.next_token_words()
            out[: len(words)] = words
            out[len(words):] = 0
            indices[k] = row
        if self.device.type == "cpu":
            dev = host
        else:
            lo = int(indices.min())
            hi = int(indices.max()) + 1
            dev = self._dev[turn]
            dev[lo:hi].copy_(host[lo:hi], non_blocking=True)
            ev = torch.cuda.Event() if self.device.type == "cuda" else None
            if ev is not None:
                ev.record()
            self._events[turn] = ev
        if logits.device != dev.device:
            raise ValueError(f"logits are on {logits.device} but the processor was built for "
                             f"{self.device}")
        width = int(logits.shape[-1])
        apply_token_bitmask_inplace(logits, dev[:n_rows], indices,
                                    vocab_size=min(width, self._width * 32))
        if width > self._width * 32:    # padded logits beyond the vocabulary: never valid
            idx = torch.from_numpy(indices).to(logits.device)
            logits[idx, self._width * 32:] = float("-inf")
        return logits


# ---------------------------------------------------------------- engine config

_BOUND_CONFIG: Any = None


def bind_engine_config(vllm_config: Any) -> None:
    """Tell :meth:`FunctionaryLogitsProcessor.validate_params` (which runs in the frontend,
    where no processor instance exists) how the engine is configured, so constrained
    requests are refused at admission when the engine uses speculative decoding.  The
    server calls it; other frontends may."""
    global _BOUND_CONFIG
    _BOUND_CONFIG = vllm_config


def _speculative(vllm_config: Any) -> bool:
    return getattr(vllm_config, "speculative_config", None) is not None


def _validate(sampling_params: Any) -> None:
    spec = GrammarSpec.from_sampling_params(sampling_params)  # raises GrammarSpecError
    if spec is None:
        return
    config = _BOUND_CONFIG
    if config is None:
        try:
            from vllm.config import get_current_vllm_config_or_none

            config = get_current_vllm_config_or_none()
        except Exception:  # noqa: BLE001 - older/newer vLLM without it
            config = None
    if config is not None and _speculative(config):
        raise UnsupportedEngineConfigError(_SPEC_DECODING_MESSAGE)


def _model_facts(vllm_config: Any) -> tuple[str, int, int]:
    """``(tokenizer dir, logits width, max_num_seqs)`` of an engine configuration."""
    mc = vllm_config.model_config
    tokenizer = getattr(mc, "tokenizer", None) or mc.model
    vocab_size = int(mc.get_vocab_size())
    sched = getattr(vllm_config, "scheduler_config", None)
    max_seqs = int(getattr(sched, "max_num_seqs", 0) or 256)
    return str(tokenizer), vocab_size, max_seqs


def _core_for(vllm_config: Any, device: Any, pin_memory: bool, max_rows: int | None = None,
              vocab_size: int | None = None) -> GrammarCore:
    tokenizer, width, max_seqs = _model_facts(vllm_config)
    width = int(vocab_size or width)
    core = GrammarCore(lambda: compiler_for_model(tokenizer, width), max_rows or max_seqs, width,
                       device=device, pin_memory=pin_memory)
    core.compiler  # build now: startup, not the first request, pays for the vocabulary
    return core


# ----------------------------------------------------------------------- V1 adapter

try:  # vLLM is optional: the module imports (and GrammarCore works) without it
    from vllm.v1.sample.logits_processor import LogitsProcessor as _V1Base
    from vllm.v1.sample.logits_processor import MoveDirectionality as _MoveDirectionality
    _HAVE_V1 = True
except Exception:  # noqa: BLE001 - ImportError, or a broken vLLM install
    _V1Base = object  # type: ignore[assignment,misc]
    _MoveDirectionality = None  # type: ignore[assignment]
    _HAVE_V1 = False

try:
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as _V2Base
    _HAVE_V2 = True
except Exception:  # noqa: BLE001
    _V2Base = object  # type: ignore[assignment,misc]
    _HAVE_V2 = False


def _require(flag: bool, what: str) -> None:
    if not flag:
        raise ImportError(f"{what} needs vLLM (pip install '.[vllm]'); it could not be imported")


class FunctionaryLogitsProcessor(_V1Base):  # type: ignore[misc,valid-type]
    """Functionary tool grammars for vLLM's V1 model runner (CPU; GPU with
    ``VLLM_USE_V2_MODEL_RUNNER=0``).

    Parameters
    ----------
    vllm_config : vllm.config.VllmConfig
        The engine configuration: the tokenizer directory, the logits width and
        ``max_num_seqs`` are read from it.
    device : torch.device
        The logits' device.
    is_pin_memory : bool
        Whether pinned host memory is available.

    Notes
    -----
    Batch rows are tracked through each ``BatchUpdate`` (removed, then added, then moved;
    an added or moved request may replace a row).  A resumed (preempted) request arrives
    as an ``added`` entry whose live output list already holds tokens: its new matcher
    replays them on the next :meth:`apply`.  Tokens are read in :meth:`apply`, not in
    :meth:`update_state`, because under async scheduling the newest one may still be a
    ``-1`` placeholder at update time.
    """

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        _require(_HAVE_V1, "FunctionaryLogitsProcessor")
        if _speculative(vllm_config):
            raise UnsupportedEngineConfigError(_SPEC_DECODING_MESSAGE)
        self._core = _core_for(vllm_config, device, is_pin_memory)
        self._outputs: dict[int, list[int]] = {}

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Admission check (frontend): a present spec must be well formed, and the engine
        must not use speculative decoding.

        Raises
        ------
        GrammarSpecError, UnsupportedEngineConfigError
            Both ``ValueError`` s: vLLM answers HTTP 400.
        """
        _validate(sampling_params)

    def is_argmax_invariant(self) -> bool:
        """``False``: the mask changes greedy decoding too."""
        return False

    @property
    def core(self) -> GrammarCore:
        """The shared grammar core (for tests and introspection)."""
        return self._core

    def update_state(self, batch_update: Any) -> None:
        """Apply the persistent batch's changes of this step (``None``: none)."""
        if batch_update is None:
            return
        core, outs = self._core, self._outputs
        for index in batch_update.removed:
            core.remove(index)
            outs.pop(index, None)
        for index, params, _prompt_ids, output_ids in batch_update.added:
            if core.add(index, params):
                outs[index] = output_ids
            else:
                outs.pop(index, None)
        for a, b, direction in batch_update.moved:
            if direction == _MoveDirectionality.SWAP:
                core.swap(a, b)
                oa, ob = outs.pop(a, None), outs.pop(b, None)
                if oa is not None:
                    outs[b] = oa
                if ob is not None:
                    outs[a] = ob
            else:
                core.move(a, b)
                oa = outs.pop(a, None)
                outs.pop(b, None)
                if oa is not None:
                    outs[b] = oa

    def apply(self, logits: "torch.Tensor") -> "torch.Tensor":
        """Advance every constrained row with its new output tokens and mask its logits."""
        if not self._outputs:
            return logits
        core = self._core
        rows = []
        n = int(logits.shape[0])
        for index, out in self._outputs.items():
            if index >= n:      # not in this step's batch
                continue
            core.advance(index, out)
            rows.append((index, index))
        return core.mask(logits, rows)


# ----------------------------------------------------------------------- V2 adapter

class FunctionaryLogitsProcessorV2(_V2Base):  # type: ignore[misc,valid-type]
    """Functionary tool grammars for vLLM's Model Runner V2 (the GPU default since 0.32).

    Parameters
    ----------
    vllm_config : vllm.config.VllmConfig
        The engine configuration (tokenizer directory).
    req_states : LogitsProcRequestState
        The runner's per-slot buffers: ``all_token_ids`` (committed tokens, on device),
        ``prompt_len`` (host copy in ``.np``), ``max_num_reqs``, ``vocab_size``, ``device``.

    Notes
    -----
    State is keyed by request slot; :meth:`add_request` reinitialises a slot (a resumed
    request re-enters through it and replays its committed output on the next
    :meth:`apply`).  Each step, the number of committed output tokens of a row is
    ``seq_lens_upper_bound_np[row] - prompt_len[slot]`` (exact without speculative
    decoding), and the tokens not yet consumed are gathered from ``all_token_ids`` in one
    device-to-host copy.

    Raises
    ------
    UnsupportedEngineConfigError
        If the engine uses speculative decoding.
    """

    def __init__(self, vllm_config: Any, req_states: Any) -> None:
        _require(_HAVE_V2, "FunctionaryLogitsProcessorV2")
        if _speculative(vllm_config):
            raise UnsupportedEngineConfigError(_SPEC_DECODING_MESSAGE)
        self._req_states = req_states
        device = getattr(req_states, "device", "cpu")
        import torch

        pin = torch.device(device).type == "cuda"
        self._core = _core_for(vllm_config, device, pin, max_rows=int(req_states.max_num_reqs),
                               vocab_size=int(req_states.vocab_size))

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Admission check; see :meth:`FunctionaryLogitsProcessor.validate_params`."""
        _validate(sampling_params)

    @property
    def core(self) -> GrammarCore:
        """The shared grammar core (for tests and introspection)."""
        return self._core

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        """(Re)initialise slot ``req_idx``; returns whether the request is constrained."""
        return self._core.add(int(req_idx), sampling_params)

    def apply(self, logits: "torch.Tensor", ctx: Any) -> "torch.Tensor":
        """Advance the constrained rows with their committed tokens and mask their logits."""
        core = self._core
        if not len(core):
            return logits
        slots = np.asarray(ctx.idx_mapping_np)
        if int(logits.shape[0]) != len(slots):
            raise UnsupportedEngineConfigError(
                f"{logits.shape[0]} logits rows for {len(slots)} requests: "
                + _SPEC_DECODING_MESSAGE)
        rows: list[tuple[int, int]] = []
        prompt_len = np.asarray(self._req_states.prompt_len.np)
        seq_lens = np.asarray(ctx.seq_lens_upper_bound_np)
        fetch: list[tuple[int, int, int]] = []     # (slot, first position, count)
        for row, slot in enumerate(slots.tolist()):
            if slot not in core:
                continue
            rows.append((row, slot))
            n_out = max(0, int(seq_lens[row]) - int(prompt_len[slot]))
            have = core.consumed(slot)
            if n_out < have:
                core.advance(slot, [], start=n_out)      # rolls back
            elif n_out > have:
                fetch.append((slot, int(prompt_len[slot]) + have, n_out - have))
        if fetch:
            import torch

            buf = self._req_states.all_token_ids.gpu
            r_idx = torch.tensor([s for s, _, c in fetch for _ in range(c)], dtype=torch.long)
            c_idx = torch.tensor([p + k for _, p, c in fetch for k in range(c)], dtype=torch.long)
            values = buf[r_idx.to(buf.device), c_idx.to(buf.device)].tolist()
            pos = 0
            for slot, first, count in fetch:
                core.advance(slot, values[pos:pos + count], start=core.consumed(slot))
                pos += count
        return core.mask(logits, rows)


def processor_class_for(vllm_config: Any = None) -> str:
    """The FQCN of the adapter matching the engine's model runner.

    Parameters
    ----------
    vllm_config : VllmConfig, optional
        With ``use_v2_model_runner`` set (vLLM >= 0.32) the V2 adapter is chosen; without a
        config the environment decides (``VLLM_USE_V2_MODEL_RUNNER=1`` → V2), else V1.
    """
    if vllm_config is not None and getattr(vllm_config, "use_v2_model_runner", False):
        return V2_FQCN
    if vllm_config is None:
        import os

        if os.environ.get("VLLM_USE_V2_MODEL_RUNNER") == "1":
            return V2_FQCN
    return V1_FQCN
