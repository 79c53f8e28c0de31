"""Tests for grammar.vocab.Vocabulary.

The hf-marked property tests check, on real tokenizers, that the bytes the vocabulary
assigns to the ids of ``tokenizer.encode(text, add_special_tokens=False)`` concatenate to
the UTF-8 of the decoded text:

* byte-level BPE (Llama 3, tekken): ``bytes == decode(ids).encode() == text.encode()``;
* SentencePiece (functionary-v2 = Mistral v1 model): the encoder prepends ``▁`` to a text that
  does not start with a space and the decoder strips exactly one leading space, so
  ``bytes == (" " + decode(ids)).encode()`` for ``ids != []``; equivalently ``bytes`` is
  ``text`` with one space prepended unless it already starts with one (when ``text`` has no
  literal ``▁``, which the encoder turns into a space).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from grammar.errors import VocabularyError
from grammar.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- synthetic vocabularies
def test_byte_level_layout():
    v = Vocabulary.byte_level([b"ab", "é"], specials=("<eos>", "<call>"))
    assert v.vocab_size == 260
    assert [v.token_bytes(i) for i in (0, 65, 255, 256, 257)] == [b"\x00", b"A", b"\xff", b"ab",
                                                                   "é".encode()]
    assert v.eos_token_ids == (258,)
    assert v.special_token_ids == frozenset({258, 259})
    assert v.is_special(259) and not v.is_special(257)
    assert v.token_bytes(259) == b"<call>"
    table = v.token_table()
    assert len(table) == 260 and table[258] is None and table[259] is None and table[256] == b"ab"
    assert v.token_table() is table  # cached
    assert v.token_id("<call>") == 259
    assert v.token_id("ab") == 256
    assert v.token_id("A") == 65
    assert Vocabulary.byte_level(specials=()).eos_token_ids == ()


def test_from_token_bytes_padding_and_truncation():
    base = [b"a", b"b", None, b"cd"]
    wide = Vocabulary.from_token_bytes(base, special={4: "<s>"}, eos_token_ids=[4], vocab_size=40)
    assert wide.vocab_size == 40
    table = wide.token_table()
    assert table[:4] == base and all(t is None for t in table[4:])
    assert wide.token_bytes(2) == b"" and wide.token_bytes(39) == b""  # padding: never allowed
    with pytest.raises(VocabularyError):
        wide.token_bytes(40)
    with pytest.raises(VocabularyError):
        wide.token_bytes(-1)
    narrow = Vocabulary.from_token_bytes(base, special={4: "<s>"}, vocab_size=2)
    assert narrow.token_table() == [b"a", b"b"]
    assert narrow.special_token_ids == frozenset()
    with pytest.raises(VocabularyError):
        narrow.token_id("cd")
    with pytest.raises(VocabularyError):
        narrow.token_id("<s>")
    # default size covers specials beyond the table
    assert Vocabulary.from_token_bytes(base, special={9: "<x>"}).vocab_size == 10


def test_from_token_bytes_validation():
    v = Vocabulary.from_token_bytes([b"a", b"", bytearray(b"z")], special={0: "<s>"})
    assert v.token_table() == [None, None, b"z"]  # special overrides, empty -> never allowed
    assert v.token_bytes(0) == b"<s>"
    with pytest.raises(TypeError):
        Vocabulary.from_token_bytes(["a"])  # type: ignore[list-item]
    with pytest.raises(VocabularyError):
        Vocabulary.from_token_bytes([b"a"], eos_token_ids=[5])
    with pytest.raises(VocabularyError):
        Vocabulary.from_token_bytes([b"a", None], eos_token_ids=[1])  # a hole is no eos
    with pytest.raises(VocabularyError):
        Vocabulary.from_token_bytes([b"a"], special={0: ""})
    with pytest.raises(VocabularyError):
        Vocabulary.from_token_bytes([b"a"], vocab_size=0)
    assert Vocabulary.from_token_bytes([b"a", b"b"], eos_token_ids=[1, 1, 0]).eos_token_ids == (1, 0)


def test_token_id_prefers_special_then_lowest_id():
    v = Vocabulary.from_token_bytes([b"x", b"<e>", b"x"], special={3: "<e>"})
    assert v.token_id("<e>") == 3
    assert v.token_id("x") == 0


def test_immutable_and_picklable():
    v = Vocabulary.byte_level([b"xy"])
    with pytest.raises(AttributeError):
        v.vocab_size = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del v.eos_token_ids
    w = pickle.loads(pickle.dumps(v))
    assert w == v and w.hash == v.hash and hash(w) == hash(v)
    assert w.token_table() == v.token_table() and w.special_token_ids == v.special_token_ids


def test_hash_depends_on_every_part():
    base = Vocabulary.from_token_bytes([b"a", b"b"], special={2: "<e>"}, eos_token_ids=[2])
    variants = [
        Vocabulary.from_token_bytes([b"a", b"c"], special={2: "<e>"}, eos_token_ids=[2]),
        Vocabulary.from_token_bytes([b"a", b"b"], special={2: "<f>"}, eos_token_ids=[2]),
        Vocabulary.from_token_bytes([b"a", b"b"], special={2: "<e>"}, eos_token_ids=[]),
        Vocabulary.from_token_bytes([b"a", b"b"], special={2: "<e>"}, eos_token_ids=[2],
                                    vocab_size=4),
        Vocabulary.from_token_bytes([b"a", b"b", b"<e>"], eos_token_ids=[2]),  # not special
        Vocabulary.from_token_bytes([b"ab", None], special={2: "<e>"}, eos_token_ids=[2]),
    ]
    hashes = {base.hash, *(x.hash for x in variants)}
    assert len(hashes) == 1 + len(variants)
    assert len(base.hash) == 64 and int(base.hash, 16) >= 0
    again = Vocabulary.from_token_bytes([b"a", b"b"], special={2: "<e>"}, eos_token_ids=[2])
    assert again.hash == base.hash and again == base


def test_hash_stable_across_processes():
    v = Vocabulary.byte_level([b"hello", "wörld"], specials=("<eos>", "<x>"))
    code = ("from grammar.vocab import Vocabulary;"
            "print(Vocabulary.byte_level([b'hello', 'wörld'], specials=('<eos>', '<x>')).hash)")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == v.hash


# ---------------------------------------------------------------------- tokenizer.json parsing
def _write(folder: Path, name: str, obj: object) -> Path:
    p = folder / name
    p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return p


def _added(i: int, content: str, special: bool) -> dict:
    return {"id": i, "content": content, "special": special, "single_word": False,
            "lstrip": False, "rstrip": False, "normalized": not special}


def test_from_file_byte_level(tmp_path: Path):
    vocab = {"a": 0, "Ġa": 1, "Ċ": 2, "Ã©": 3, "ĠĠ": 4, "Ā": 5, "!": 6}
    tj = {"model": {"type": "BPE", "vocab": vocab, "merges": []},
          "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
          "added_tokens": [_added(7, "<|end|>", True), _added(8, "<tool>", False),
                           _added(9, "<|eom|>", True)]}
    path = _write(tmp_path, "tokenizer.json", tj)
    _write(tmp_path, "tokenizer_config.json", {"eos_token": {"content": "<|end|>"}})
    _write(tmp_path, "generation_config.json", {"eos_token_id": [9, 7]})
    v = Vocabulary.from_file(path)
    assert v.vocab_size == 10
    assert v.token_table() == [b"a", b" a", b"\n", "é".encode(), b"  ", b"\x00", b"!", None,
                               b"<tool>", None]
    assert v.special_token_ids == frozenset({7, 9})
    assert v.eos_token_ids == (7, 9)
    assert v.token_id("<|eom|>") == 9 and v.token_id("<tool>") == 8 and v.token_id(" a") == 1
    # explicit eos and sizes both ways
    assert Vocabulary.from_file(path, eos_token_ids=[9]).eos_token_ids == (9,)
    small = Vocabulary.from_file(path, vocab_size=8)
    assert small.eos_token_ids == (7,) and small.vocab_size == 8  # 9 does not exist any more
    big = Vocabulary.from_file(path, vocab_size=64)
    assert big.token_table()[10:] == [None] * 54
    with pytest.raises(VocabularyError):
        Vocabulary.from_file(path, vocab_size=8, eos_token_ids=[9])


def test_from_file_sentencepiece_style(tmp_path: Path):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0xC3>": 4, "▁": 5, "▁hi": 6,
             "hi": 7, "▁▁": 8}
    tj = {"normalizer": None,
          "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"},
          "model": {"type": "BPE", "vocab": vocab, "merges": [], "byte_fallback": True,
                    "unk_token": "<unk>"},
          "decoder": {"type": "Sequence", "decoders": [
              {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
              {"type": "ByteFallback"}, {"type": "Fuse"},
              {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "added_tokens": [_added(1, "<s>", True), _added(2, "</s>", True)]}
    path = _write(tmp_path, "tokenizer.json", tj)
    _write(tmp_path, "tokenizer_config.json", {"eos_token": "</s>"})
    v = Vocabulary.from_file(path)
    assert v.token_table() == [None, None, None, b"\n", b"\xc3", b" ", b" hi", b"hi", b"  "]
    assert v.special_token_ids == frozenset({0, 1, 2})  # <unk> is special too
    assert v.eos_token_ids == (2,)
    # Without byte fallback <0x0A> is literal text.
    tj["model"]["byte_fallback"] = False
    v2 = Vocabulary.from_file(_write(tmp_path, "tokenizer.json", tj))
    assert v2.token_bytes(3) == b"<0x0A>"


def test_from_file_errors(tmp_path: Path):
    with pytest.raises(VocabularyError, match="not found"):
        Vocabulary.from_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(VocabularyError):
        Vocabulary.from_file(tmp_path / "bad.json")
    wordpiece = {"model": {"type": "WordPiece", "vocab": {"a": 0, "##b": 1}},
                 "decoder": {"type": "WordPiece"}}
    with pytest.raises(VocabularyError, match="unsupported"):
        Vocabulary.from_file(_write(tmp_path, "wp.json", wordpiece))
    odd = {"model": {"type": "BPE", "vocab": {"a b": 0}}, "decoder": {"type": "ByteLevel"}}
    with pytest.raises(VocabularyError, match="byte alphabet"):
        Vocabulary.from_file(_write(tmp_path, "odd.json", odd))


# ---------------------------------------------------------------------- real tokenizers (hf)
_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_ACCENTS = st.text(st.characters(min_codepoint=0xC0, max_codepoint=0x17F) | st.sampled_from(" ae"),
                   max_size=30)
_CJK = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF) | st.sampled_from(" ，。"),
               max_size=20)
_EMOJI = st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF) | st.just(" "),
                 max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
).map(lambda x: json.dumps(x, ensure_ascii=False))
_JSON_ESCAPED = _JSON.map(lambda s: json.dumps(s))  # quotes, backslashes, \n, \u escapes
_ANY = st.text(max_size=40)  # any unicode except surrogates, incl. controls and whitespace
TEXTS = (_ASCII | _ACCENTS | _CJK | _EMOJI | _JSON | _JSON_ESCAPED | _ANY
         | st.lists(_ASCII | _ACCENTS | _CJK | _EMOJI | _JSON, max_size=4).map("\n".join))
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _concat(vocab: Vocabulary, ids: list[int]) -> bytes:
    return b"".join(vocab.token_bytes(i) for i in ids)


@pytest.fixture(scope="module")
def llama():
    from functionary.tokenizers import load_tokenizer, load_vocabulary

    return load_tokenizer("llama3.1"), load_vocabulary("llama3.1")


@pytest.fixture(scope="module")
def spm():
    from functionary.tokenizers import load_tokenizer, load_vocabulary

    return load_tokenizer("functionary-v2"), load_vocabulary("functionary-v2")


@pytest.fixture(scope="module")
def tekken():
    from functionary.tokenizers import load_tokenizer, load_vocabulary

    return load_tokenizer("mistral-tekken"), load_vocabulary("mistral-tekken")


def _check_byte_level(tok, vocab: Vocabulary, text: str) -> None:
    ids = tok.encode(text, add_special_tokens=False)
    assume(not any(vocab.is_special(i) for i in ids))  # text that spells a special token
    decoded = tok.decode(ids, clean_up_tokenization_spaces=False)
    got = _concat(vocab, ids)
    assert got == decoded.encode("utf-8")
    assert got == text.encode("utf-8")


@pytest.mark.hf
@PROPERTY
@given(text=TEXTS)
def test_llama3_token_bytes_concatenate_to_text(llama, text):
    _check_byte_level(*llama, text)


@pytest.mark.hf
@PROPERTY
@given(text=TEXTS)
def test_tekken_token_bytes_concatenate_to_text(tekken, text):
    _check_byte_level(*tekken, text)


@pytest.mark.hf
@PROPERTY
@given(text=TEXTS)
def test_sentencepiece_token_bytes_follow_leading_space_rule(spm, text):
    tok, vocab = spm
    ids = tok.encode(text, add_special_tokens=False)
    assume(not any(vocab.is_special(i) for i in ids))
    got = _concat(vocab, ids)
    if not ids:
        assert got == b"" and text == ""
        return
    decoded = tok.decode(ids, clean_up_tokenization_spaces=False)
    assert got == (" " + decoded).encode("utf-8")
    if "\u2581" not in text:
        assert got == (text if text.startswith(" ") else " " + text).encode("utf-8")


@pytest.mark.hf
def test_sentencepiece_examples(spm):
    tok, vocab = spm
    assert vocab.token_bytes(13) == b"\n"  # <0x0A> byte fallback
    assert vocab.token_bytes(28705) == b" "  # "▁"
    assert vocab.token_bytes(tok.convert_tokens_to_ids("▁Hello")) == b" Hello"
    assert {0, 1, 2} <= vocab.special_token_ids
    assert _concat(vocab, tok.encode("Hello", add_special_tokens=False)) == b" Hello"
    assert _concat(vocab, tok.encode(" Hello", add_special_tokens=False)) == b" Hello"
    assert _concat(vocab, tok.encode("  Hello", add_special_tokens=False)) == b"  Hello"


@pytest.mark.hf
def test_sentencepiece_paths_agree(spm):
    """The SentencePiece processor path and the tokenizer.json path give the same table."""
    import sentencepiece

    from functionary.tokenizers import _mistral_data

    sp = sentencepiece.SentencePieceProcessor(model_file=str(_mistral_data("tokenizer.model.v1")))
    direct = Vocabulary.from_tokenizer(sp)
    _, vocab = spm
    assert direct.vocab_size == 32000 and direct.eos_token_ids == ()
    assert direct.token_table() == vocab.token_table()[:32000]
    assert direct.special_token_ids == {i for i in vocab.special_token_ids if i < 32000}


@pytest.mark.hf
def test_slow_sentencepiece_tokenizer_agrees(spm):
    """A slow transformers tokenizer (``sp_model`` + added tokens) gives the same vocabulary."""
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    from functionary.tokenizers import FAMILIES, _mistral_data

    slow = SentencePieceBackend(vocab_file=str(_mistral_data("tokenizer.model.v1")),
                                bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    slow.add_special_tokens(
        {"additional_special_tokens": list(FAMILIES["functionary-v2"].added_special_tokens)})
    assert not hasattr(slow, "backend_tokenizer")
    vocab = Vocabulary.from_tokenizer(slow)
    assert vocab.eos_token_ids == (2,)
    assert vocab == spm[1]


@pytest.mark.hf
def test_tekken_paths_agree(tekken):
    """mistral-common's Tekkenizer and the transformers conversion give the same vocabulary."""
    tok, vocab = tekken
    converted = Vocabulary.from_tokenizer(tok)
    assert converted.eos_token_ids == (2,)
    assert converted.hash == vocab.hash
    assert vocab.vocab_size == 131072 and len(vocab.special_token_ids) == 1000
    assert vocab.token_id("</s>") == 2 and vocab.token_id("[INST]") == 3


@pytest.mark.hf
def test_llama3_from_tokenizer_matches_from_file(llama):
    from functionary.tokenizers import tokenizer_dir

    tok, vocab = llama
    via_tok = Vocabulary.from_tokenizer(tok, vocab_size=128256)
    assert via_tok.eos_token_ids == (128001, 128008, 128009)  # tokenizer + generation_config
    assert via_tok.hash == vocab.hash
    assert via_tok == Vocabulary.from_file(tokenizer_dir("llama3.1") / "tokenizer.json",
                                           vocab_size=128256)
    # a bare tokenizers.Tokenizer knows no eos
    bare = Vocabulary.from_tokenizer(tok.backend_tokenizer, vocab_size=128256)
    assert bare.eos_token_ids == () and bare.token_table() == vocab.token_table()


@pytest.mark.hf
def test_llama3_vocab_sizes_both_ways():
    from functionary.tokenizers import tokenizer_dir

    path = tokenizer_dir("llama3.1") / "tokenizer.json"
    full = Vocabulary.from_file(path)
    assert full.vocab_size == 128257 and full.token_id("<|image|>") == 128256
    model = Vocabulary.from_file(path, vocab_size=128256)
    with pytest.raises(VocabularyError):
        model.token_id("<|image|>")
    padded = Vocabulary.from_file(path, vocab_size=128320)
    assert padded.token_table()[128257:] == [None] * 63 and padded.token_bytes(128300) == b""
    small = Vocabulary.from_file(path, vocab_size=128000)
    assert small.special_token_ids == frozenset() and small.eos_token_ids == ()
    assert small.token_table() == full.token_table()[:128000]


@pytest.mark.hf
def test_llama3_special_flags(llama):
    _, vocab = llama
    assert vocab.special_token_ids == frozenset(range(128000, 128256))
    assert vocab.token_id("<|eot_id|>") == 128009 and vocab.is_special(128009)
    assert vocab.token_bytes(128009) == b"<|eot_id|>" and vocab.token_table()[128009] is None
    assert vocab.token_id("<|begin_of_text|>") == 128000
    assert not vocab.is_special(vocab.token_id("{\""))


def test_llama3_build_is_fast():
    from functionary.tokenizers import llama3_tokenizer_json

    path = llama3_tokenizer_json()
    t0 = time.perf_counter()
    v = Vocabulary.from_file(path, vocab_size=128256)
    _ = v.hash
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"building the Llama 3 vocabulary took {elapsed:.2f}s"
