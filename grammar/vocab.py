"""The vocabulary seen by the grammar engine: for every token id, the bytes it adds to the output.

A :class:`Vocabulary` is immutable and built once per tokenizer.  It is the only tokenizer
knowledge the engine has: the compile-time token walk matches ``token_bytes(id)`` against
byte-level automata, and special tokens (``<|eot_id|>`` ...) are separate symbols that only
match where a grammar names them by id.

Token kinds
-----------
* **Normal tokens** contribute raw bytes.  Byte-level BPE strings (GPT-2 alphabet, ``Ġ`` for
  space ...) are mapped back to bytes; SentencePiece pieces have ``▁`` (U+2581) replaced by a
  space and ``<0xNN>`` byte-fallback pieces become the single byte ``0xNN``.  Bytes need not be
  valid UTF-8 on their own (a token may hold half of a multi-byte character).
* **Special tokens** are added tokens flagged ``special`` (plus SentencePiece control and
  unknown pieces, and the model's unknown token).  :meth:`Vocabulary.token_bytes` returns their
  literal text, but :meth:`Vocabulary.token_table` hides them (``None``) so that byte-level
  grammars never match them by accident.
* **Non-special added tokens** contribute their content text, encoded UTF-8.
* **Nonexistent ids**: ids in ``[tokenizer size, vocab_size)`` are padding of the model's
  logits and never allowed; ids at or above ``vocab_size`` do not exist (``<|image|>`` = 128256
  of the Llama 3.2 tokenizer when the model has 128256 logits).  Tokens whose bytes would be
  empty are treated the same way: allowing them could let a model loop forever.

The SentencePiece leading-space rule
------------------------------------
SentencePiece (and its Hugging Face port, ``Metaspace`` with ``prepend_scheme="first"``) turns
spaces into ``▁`` and *prepends* one ``▁`` to a text that does not already start with a
space; its decoder removes exactly one leading space from the decoded text.  This module maps
``▁`` to a space everywhere, so for ``ids = tok.encode(text, add_special_tokens=False)``::

    b"".join(vocab.token_bytes(i) for i in ids) == (" " + tok.decode(ids)).encode()   # ids != []

i.e. the bytes are ``text`` with one space prepended unless ``text`` already starts with a
space.  The engine therefore sees the *raw* output: a SentencePiece model that writes ``▁{``
as its first generated token produces the bytes ``" {"``; grammars for such models must allow
(or the prompt must end so that the model does not need) that leading space.  Byte-level BPE
(Llama 3, tekken) has no such rule: the bytes are exactly ``text.encode()``.

Example
-------
>>> v = Vocabulary.byte_level([b"ab"], specials=("<eos>",))
>>> v.vocab_size, v.token_bytes(256), v.eos_token_ids, v.token_table()[257]
(258, b'ab', (257,), None)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import VocabularyError

__all__ = ["Vocabulary"]

_SPACE_MARK = "\u2581"  # SentencePiece's "▁"
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_HASH_TAG = b"functionary-grammar/vocabulary/v1\x00"


def _gpt2_byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character mapping (``bytes_to_unicode``).

    Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, DEL ...)
    map to ``chr(256 + n)`` in increasing byte order, so space (0x20) becomes ``Ġ``.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    mapping = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + n)
            n += 1
    return mapping


_BYTE_TO_CHAR = _gpt2_byte_alphabet()
_CHAR_TO_LATIN1 = {ord(c): chr(b) for b, c in _BYTE_TO_CHAR.items()}  # for str.translate
_GPT2_ALPHABET = frozenset(_BYTE_TO_CHAR.values())


def _byte_level_to_bytes(pieces: Sequence[str]) -> list[bytes]:
    """Map GPT-2 byte-alphabet strings to the bytes they stand for (all at once, fast)."""
    strange = set("".join(pieces)) - _GPT2_ALPHABET
    if strange:
        bad = next(p for p in pieces if not set(p) <= _GPT2_ALPHABET)
        raise VocabularyError(
            f"byte-level BPE token {bad!r} holds characters outside the GPT-2 byte alphabet "
            f"({''.join(sorted(strange))[:20]!r}); the tokenizer is not a byte-level tokenizer"
        )
    table = _CHAR_TO_LATIN1
    return [p.translate(table).encode("latin-1") for p in pieces]


def _sentencepiece_to_bytes(piece: str, byte_fallback: bool) -> bytes:
    if byte_fallback:
        m = _BYTE_PIECE.match(piece)
        if m:
            return bytes((int(m.group(1), 16),))
    return piece.replace(_SPACE_MARK, " ").encode("utf-8")


def _check_vocab_size(vocab_size: Any) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size <= 0:
        raise VocabularyError(f"vocab_size must be positive, got {vocab_size}")
    return vocab_size


class Vocabulary:
    """An immutable vocabulary: for every token id the exact bytes it contributes.

    Build it with one of the ``from_*`` constructors or :meth:`byte_level`; do not call the
    constructor directly.  Instances are hashable and compare equal when their content
    :attr:`hash` is equal; they pickle cheaply enough to ship to worker processes.

    Attributes
    ----------
    vocab_size : int
        Width of the model's logits.  It may exceed the tokenizer's size (the extra ids are
        padding and never allowed) or fall short of it (ids ``>= vocab_size`` do not exist).
    eos_token_ids : tuple[int, ...]
        End-of-sequence token ids, in order, without duplicates; all ``< vocab_size``.
    special_token_ids : frozenset[int]
        Ids of special tokens.  They match only where a grammar names them by id.
    hash : str
        SHA-256 hex digest of the content (vocab_size, eos ids, every token's kind and bytes).
        Stable across processes and platforms; use it as a cache key.

    Raises
    ------
    VocabularyError
        From the constructors, when a tokenizer cannot be read or is inconsistent.
    """

    __slots__ = ("vocab_size", "eos_token_ids", "special_token_ids", "_tokens", "_special",
                 "_hash", "_table", "_by_text")

    vocab_size: int
    eos_token_ids: tuple[int, ...]
    special_token_ids: frozenset[int]

    def __init__(
        self,
        tokens: Sequence[bytes | None],
        special: Mapping[int, str],
        eos_token_ids: Iterable[int],
        vocab_size: int,
        *,
        _trusted: bool = False,
    ) -> None:
        vocab_size = _check_vocab_size(vocab_size)
        table: list[bytes | None] = list(tokens[:vocab_size])
        if len(table) < vocab_size:
            table.extend([None] * (vocab_size - len(table)))
        if not _trusted:
            for i, t in enumerate(table):
                if t is None:
                    continue
                if isinstance(t, bytearray):
                    t = table[i] = bytes(t)
                elif not isinstance(t, bytes):
                    raise TypeError(f"token {i} must be bytes or None, got {type(t).__name__}")
                if not t:
                    table[i] = None
        specials: dict[int, str] = {}
        for tid, text in special.items():
            if isinstance(tid, bool) or not isinstance(tid, int) or tid < 0:
                raise VocabularyError(f"special token id must be a non-negative int, got {tid!r}")
            if not isinstance(text, str) or not text:
                raise VocabularyError(f"special token {tid} needs a non-empty text, got {text!r}")
            if tid < vocab_size:
                specials[tid] = text
                table[tid] = None
        eos: list[int] = []
        for e in eos_token_ids:
            if isinstance(e, bool) or not isinstance(e, int):
                raise VocabularyError(f"eos token id must be an int, got {e!r}")
            if not 0 <= e < vocab_size or (table[e] is None and e not in specials):
                raise VocabularyError(f"eos token id {e} is not a token of this vocabulary "
                                      f"(vocab_size={vocab_size})")
            if e not in eos:
                eos.append(e)
        s = object.__setattr__
        s(self, "vocab_size", vocab_size)
        s(self, "eos_token_ids", tuple(eos))
        s(self, "special_token_ids", frozenset(specials))
        s(self, "_tokens", tuple(table))
        s(self, "_special", specials)
        s(self, "_hash", None)
        s(self, "_table", None)
        s(self, "_by_text", None)

    # ------------------------------------------------------------------ immutability, identity
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Vocabulary is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Vocabulary is immutable (cannot delete {name!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._tokens, self._special, self.eos_token_ids, self.vocab_size))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self is other or self.hash == other.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        n = sum(t is not None for t in self._tokens)
        return (f"Vocabulary(vocab_size={self.vocab_size}, normal={n}, "
                f"special={len(self._special)}, eos={list(self.eos_token_ids)}, "
                f"hash={self.hash[:12]})")

    @property
    def hash(self) -> str:
        """SHA-256 hex digest of the vocabulary content (computed once)."""
        h = self._hash
        if h is None:
            parts: list[bytes] = [_HASH_TAG, struct.pack("<qq", self.vocab_size,
                                                         len(self.eos_token_ids))]
            parts.extend(struct.pack("<q", e) for e in self.eos_token_ids)
            pack = struct.Struct("<cq").pack
            special = self._special
            for i, t in enumerate(self._tokens):
                if t is not None:
                    parts.append(pack(b"T", len(t)))
                    parts.append(t)
                elif i in special:
                    st = special[i].encode("utf-8")
                    parts.append(pack(b"S", len(st)))
                    parts.append(st)
                else:
                    parts.append(b"N")
            h = hashlib.sha256(b"".join(parts)).hexdigest()
            object.__setattr__(self, "_hash", h)
        return h

    # ------------------------------------------------------------------ queries
    def token_bytes(self, token_id: int) -> bytes:
        """The bytes token ``token_id`` contributes to the output.

        Parameters
        ----------
        token_id : int
            A token id in ``[0, vocab_size)``.

        Returns
        -------
        bytes
            The raw bytes; for a special token its literal text encoded UTF-8; ``b""`` for a
            padding id (an id that exists in the logits but not in the tokenizer, or an empty
            token): such ids are never allowed.

        Raises
        ------
        VocabularyError
            If the id is outside ``[0, vocab_size)``.
        """
        if 0 <= token_id < self.vocab_size:
            t = self._tokens[token_id]
            if t is not None:
                return t
            text = self._special.get(token_id)
            return b"" if text is None else text.encode("utf-8")
        raise VocabularyError(f"token id {token_id} out of range [0, {self.vocab_size})")

    def is_special(self, token_id: int) -> bool:
        """Whether ``token_id`` is a special token (matched only where a grammar names it)."""
        return token_id in self._special

    def special_tokens(self) -> dict[int, str]:
        """A fresh ``{id: text}`` dict of the special tokens."""
        return dict(self._special)

    def token_table(self) -> list[bytes | None]:
        """The byte table the grammar engine walks: ``len == vocab_size``.

        Entry ``i`` is ``token_bytes(i)`` for normal tokens and ``None`` for special tokens,
        padding and empty tokens.  The list is built once and shared: do not mutate it.
        """
        table = self._table
        if table is None:
            table = list(self._tokens)
            object.__setattr__(self, "_table", table)
        return table

    def token_id(self, text: str) -> int:
        """The id of the token whose string form is exactly ``text``.

        Special tokens are looked up by their text first (``"<|eot_id|>"``); otherwise the
        normal token whose bytes equal ``text.encode("utf-8")`` (lowest id if several do).
        The tokenizer's internal spelling (``"Ġthe"``, ``"▁the"``, ``"<0x41>"``) is *not*
        a string form: ask for ``" the"`` / ``"A"``.

        Raises
        ------
        VocabularyError
            If no token has that string form.
        """
        by_text = self._by_text
        if by_text is None:
            by_text = {}
            for i, t in enumerate(self._tokens):
                if t is not None and t not in by_text:
                    by_text[t] = i
            for i in sorted(self._special, reverse=True):
                by_text[self._special[i]] = i  # str keys never collide with bytes keys
            object.__setattr__(self, "_by_text", by_text)
        tid = by_text.get(text)
        if tid is None:
            tid = by_text.get(text.encode("utf-8"))
        if tid is None:
            raise VocabularyError(f"no token with string form {text!r} in this vocabulary")
        return tid

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_token_bytes(
        cls,
        tokens: Sequence[bytes | None],
        *,
        special: Mapping[int, str] | None = None,
        eos_token_ids: Iterable[int] = (),
        vocab_size: int | None = None,
    ) -> "Vocabulary":
        """Build a vocabulary from an explicit id -> bytes table.

        Parameters
        ----------
        tokens : Sequence[bytes | None]
            ``tokens[i]`` is the byte string of token ``i``, or ``None`` if the id is unused.
            Empty byte strings are treated as ``None``.
        special : Mapping[int, str], optional
            Special token ids and their texts.  They override ``tokens[i]`` and may lie beyond
            ``len(tokens)``.
        eos_token_ids : Iterable[int]
            End-of-sequence ids; each must be a token of the vocabulary.
        vocab_size : int, optional
            Logits width; default ``max(len(tokens), max special id + 1)``.

        Raises
        ------
        VocabularyError
            On invalid special tokens or eos ids.
        TypeError
            If a token is neither bytes nor None.
        """
        special = dict(special or {})
        if vocab_size is None:
            vocab_size = max([len(tokens), *(i + 1 for i in special if isinstance(i, int))])
        return cls(tokens, special, eos_token_ids, vocab_size)

    @classmethod
    def byte_level(
        cls, extra_tokens: Iterable[bytes | str] = (), *, specials: Sequence[str] = ("<eos>",)
    ) -> "Vocabulary":
        """A tiny test vocabulary: ids 0-255 are the single bytes, then ``extra_tokens``
        (multi-byte tokens, ``str`` encoded UTF-8), then ``specials``.  The eos token is the
        first special (none if ``specials`` is empty).
        """
        tokens: list[bytes | None] = [bytes((b,)) for b in range(256)]
        for t in extra_tokens:
            tokens.append(t.encode("utf-8") if isinstance(t, str) else bytes(t))
        special = {len(tokens) + k: s for k, s in enumerate(specials)}
        eos = (len(tokens),) if specials else ()
        return cls(tokens, special, eos, len(tokens) + len(specials))

    @classmethod
    def from_file(
        cls,
        tokenizer_json_path: str | os.PathLike[str],
        *,
        vocab_size: int | None = None,
        eos_token_ids: Iterable[int] | None = None,
    ) -> "Vocabulary":
        """Read a Hugging Face ``tokenizer.json``.

        Byte-level BPE (GPT-2 alphabet) and SentencePiece-style (``Metaspace`` / ``▁``,
        optional byte fallback) models are supported; the kind is detected from the decoder,
        pre-tokenizer and normalizer.

        Parameters
        ----------
        tokenizer_json_path : path
            The ``tokenizer.json`` file.
        vocab_size : int, optional
            Logits width; default: highest token id + 1.
        eos_token_ids : Iterable[int], optional
            Override.  Default: ``eos_token`` of a ``tokenizer_config.json`` beside the file,
            followed by ``eos_token_id`` (int or list) of a ``generation_config.json`` beside
            it; ids that do not exist for ``vocab_size`` are dropped.

        Raises
        ------
        VocabularyError
            If the file is missing, not JSON, or of an unsupported kind.
        """
        path = Path(tokenizer_json_path)
        try:
            with open(path, encoding="utf-8") as f:
                tj = json.load(f)
        except FileNotFoundError as e:
            raise VocabularyError(f"tokenizer file not found: {path}") from e
        except (OSError, ValueError) as e:
            raise VocabularyError(f"cannot read tokenizer file {path}: {e}") from e
        tokens, special, by_content = _parse_tokenizer_json(tj, str(path))
        eos: list[int] | tuple[int, ...]
        strict = eos_token_ids is not None
        if strict:
            eos = tuple(eos_token_ids)  # type: ignore[arg-type]
        else:
            eos = _eos_from_configs(path.parent, by_content)
        return _build(cls, tokens, special, eos, vocab_size, strict_eos=strict)

    @classmethod
    def from_tokenizer(
        cls,
        tok: Any,
        *,
        vocab_size: int | None = None,
        eos_token_ids: Iterable[int] | None = None,
    ) -> "Vocabulary":
        """Build from a live tokenizer object.

        Accepted: ``tokenizers.Tokenizer``; transformers tokenizers (fast / ``TokenizersBackend``,
        slow SentencePiece ones with an ``sp_model``, ``MistralCommonBackend``);
        ``sentencepiece.SentencePieceProcessor``; mistral-common ``Tekkenizer``,
        ``SentencePieceTokenizer`` and ``MistralTokenizer``.

        Parameters
        ----------
        tok : tokenizer object
        vocab_size : int, optional
            Logits width; default: highest token id + 1 (``len(tokenizer)``).
        eos_token_ids : Iterable[int], optional
            Override.  Default: the tokenizer's ``eos_token_id``, followed by the
            ``eos_token_id`` of a ``generation_config.json`` in the directory the tokenizer was
            loaded from (transformers ``name_or_path``).  A bare ``tokenizers.Tokenizer`` or
            ``SentencePieceProcessor`` knows no eos: pass it explicitly.

        Raises
        ------
        VocabularyError
            If the tokenizer kind is not supported or its vocabulary cannot be mapped to bytes.
        """
        tokens, special, eos = _read_tokenizer_object(tok)
        strict = eos_token_ids is not None
        if strict:
            eos = list(eos_token_ids)  # type: ignore[arg-type]
        return _build(cls, tokens, special, eos, vocab_size, strict_eos=strict)


def _restore(tokens: tuple[bytes | None, ...], special: dict[int, str],
             eos: tuple[int, ...], vocab_size: int) -> Vocabulary:
    return Vocabulary(tokens, special, eos, vocab_size, _trusted=True)


def _build(cls: type[Vocabulary], tokens: list[bytes | None], special: dict[int, str],
           eos: Sequence[int], vocab_size: int | None, *, strict_eos: bool) -> Vocabulary:
    if vocab_size is None:
        vocab_size = max(len(tokens), max(special, default=-1) + 1)
    vocab_size = _check_vocab_size(vocab_size)
    if not strict_eos:
        eos = [e for e in eos if 0 <= e < vocab_size
               and (e in special or (e < len(tokens) and tokens[e] is not None))]
    return cls(tokens, special, eos, vocab_size, _trusted=True)


# ---------------------------------------------------------------------- tokenizer.json
def _find(node: Any, type_name: str) -> list[dict[str, Any]]:
    """All components of ``type_name`` in a (possibly nested ``Sequence``) component."""
    if not isinstance(node, dict):
        return []
    found = [node] if node.get("type") == type_name else []
    for key in ("decoders", "pretokenizers", "normalizers", "processors"):
        for child in node.get(key) or ():
            found.extend(_find(child, type_name))
    return found


def _tokenizer_kind(tj: dict[str, Any]) -> str:
    dec, pre, norm = tj.get("decoder"), tj.get("pre_tokenizer"), tj.get("normalizer")
    if _find(dec, "ByteLevel") or _find(pre, "ByteLevel"):
        return "byte_level"
    if (_find(dec, "Metaspace") or _find(pre, "Metaspace") or _find(dec, "ByteFallback")
            or any(r.get("pattern", {}).get("String") == _SPACE_MARK for r in _find(dec, "Replace"))
            or any(r.get("content") == _SPACE_MARK for r in _find(norm, "Replace"))
            or tj.get("model", {}).get("byte_fallback")):
        return "sentencepiece"
    raise VocabularyError(
        "unsupported tokenizer.json: neither byte-level BPE nor SentencePiece-style "
        f"(model {tj.get('model', {}).get('type')!r}, decoder {(dec or {}).get('type')!r})")


def _parse_tokenizer_json(
    tj: dict[str, Any], where: str
) -> tuple[list[bytes | None], dict[int, str], dict[str, int]]:
    """Return (tokens by id, special {id: text}, {added token content or piece: id})."""
    model = tj.get("model")
    if not isinstance(model, dict):
        raise VocabularyError(f"{where}: no 'model' section")
    kind = _tokenizer_kind(tj)
    raw = model.get("vocab")
    if isinstance(raw, dict):
        pieces_by_id = {int(i): p for p, i in raw.items()}
    elif isinstance(raw, list):  # Unigram: [[piece, score], ...]
        pieces_by_id = {i: e[0] for i, e in enumerate(raw)}
    else:
        raise VocabularyError(f"{where}: model has no vocab")
    added = tj.get("added_tokens") or []
    size = max([max(pieces_by_id, default=-1), *(int(a["id"]) for a in added)]) + 1
    ids = sorted(pieces_by_id)
    pieces = [pieces_by_id[i] for i in ids]
    if kind == "byte_level":
        converted = _byte_level_to_bytes(pieces)
    else:
        fb = bool(model.get("byte_fallback", False))
        converted = [_sentencepiece_to_bytes(p, fb) for p in pieces]
    tokens: list[bytes | None] = [None] * size
    for i, b in zip(ids, converted):
        tokens[i] = b or None
    by_content: dict[str, int] = {p: i for i, p in pieces_by_id.items()}
    special: dict[int, str] = {}
    unk = model.get("unk_token")
    if model.get("type") == "Unigram" and model.get("unk_id") is not None:
        special[int(model["unk_id"])] = pieces_by_id[int(model["unk_id"])]
    elif isinstance(unk, str) and unk in by_content:
        special[by_content[unk]] = unk
    for a in added:
        i, content = int(a["id"]), a["content"]
        by_content[content] = i
        if a.get("special", False):
            special[i] = content
        else:
            special.pop(i, None)
            tokens[i] = content.encode("utf-8") or None
    for i in special:
        tokens[i] = None
    return tokens, special, by_content


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _ids_from_generation_config(folder: Path) -> list[int]:
    gen = folder / "generation_config.json"
    if not gen.is_file():
        return []
    try:
        value = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError) as e:
        raise VocabularyError(f"cannot read {gen}: {e}") from e
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


def _eos_from_configs(folder: Path, by_content: Mapping[str, int]) -> list[int]:
    eos: list[int] = []
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            conf = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise VocabularyError(f"cannot read {cfg}: {e}") from e
        text = _token_text(conf.get("eos_token"))
        if text is not None and text in by_content:
            eos.append(by_content[text])
    eos.extend(_ids_from_generation_config(folder))
    return eos


# ---------------------------------------------------------------------- live tokenizer objects
def _read_tokenizer_object(tok: Any) -> tuple[list[bytes | None], dict[int, str], list[int]]:
    # mistral-common wrappers: MistralCommonBackend.tokenizer -> MistralTokenizer
    inner = getattr(tok, "tokenizer", None)
    if inner is not None and hasattr(inner, "instruct_tokenizer"):
        tok = inner
    if hasattr(tok, "instruct_tokenizer"):  # MistralTokenizer
        tok = tok.instruct_tokenizer.tokenizer
    if hasattr(tok, "id_to_byte_piece") and hasattr(tok, "num_special_tokens"):
        return _read_tekkenizer(tok)
    if type(tok).__module__.startswith("mistral_common") and hasattr(tok, "_model"):
        t, s = _read_sentencepiece(tok._model)
        return t, s, [int(tok.eos_id)]
    if type(tok).__name__ == "SentencePieceProcessor":
        t, s = _read_sentencepiece(tok)
        return t, s, []
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None and hasattr(tok, "to_str") and hasattr(tok, "get_vocab_size"):
        backend = tok  # a bare tokenizers.Tokenizer
    eos = _transformers_eos(tok)
    if backend is not None:
        tokens, special, _ = _parse_tokenizer_json(json.loads(backend.to_str()), repr(tok))
    elif getattr(tok, "sp_model", None) is not None:
        tokens, special = _read_sentencepiece(tok.sp_model)
    else:
        raise VocabularyError(f"unsupported tokenizer object of type {type(tok).__qualname__}")
    # transformers may know added tokens the backend lists differently: its flags win.
    decoder = getattr(tok, "added_tokens_decoder", None)
    if isinstance(decoder, dict):
        for i, at in decoder.items():
            content = getattr(at, "content", None)
            if not isinstance(content, str):
                continue
            if i >= len(tokens):
                tokens.extend([None] * (i + 1 - len(tokens)))
            if getattr(at, "special", False):
                special[i] = content
                tokens[i] = None
            elif i not in special:
                tokens[i] = content.encode("utf-8") or None
    return tokens, special, eos


def _transformers_eos(tok: Any) -> list[int]:
    eos: list[int] = []
    e = getattr(tok, "eos_token_id", None)
    if isinstance(e, int):
        eos.append(e)
    src = getattr(tok, "name_or_path", None)
    if isinstance(src, str) and src and os.path.isdir(src):
        eos.extend(_ids_from_generation_config(Path(src)))
    return eos


def _read_sentencepiece(sp: Any) -> tuple[list[bytes | None], dict[int, str]]:
    tokens: list[bytes | None] = []
    special: dict[int, str] = {}
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if sp.is_control(i) or sp.is_unknown(i):
            special[i] = piece
            tokens.append(None)
        elif sp.is_unused(i):
            tokens.append(None)
        elif sp.is_byte(i):
            m = _BYTE_PIECE.match(piece)
            if m is None:
                raise VocabularyError(f"sentencepiece byte piece {piece!r} is not <0xNN>")
            tokens.append(bytes((int(m.group(1), 16),)))
        else:
            tokens.append(piece.replace(_SPACE_MARK, " ").encode("utf-8") or None)
    return tokens, special


def _read_tekkenizer(tk: Any) -> tuple[list[bytes | None], dict[int, str], list[int]]:
    from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

    n_special = int(tk.num_special_tokens)
    n = int(tk.n_words)
    special = {i: tk.id_to_piece(i) for i in range(n_special)}
    tokens: list[bytes | None] = [None] * n_special
    keep = SpecialTokenPolicy.KEEP
    tokens.extend(tk.id_to_byte_piece(i, keep) or None for i in range(n_special, n))
    return tokens, special, [int(tk.eos_id)]
