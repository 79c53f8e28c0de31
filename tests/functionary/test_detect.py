"""Template detection from a tokenizer (fake tokenizers, plus the real ones behind ``hf``)."""

from __future__ import annotations

import pytest

from functionary import TemplateError, detect_template, get_template


class FakeTokenizer:
    """Just what detect_template may use: ``chat_template`` and ``get_vocab()``."""

    def __init__(self, vocab=None, chat_template=None):
        self._vocab = dict(vocab or {})
        self.chat_template = chat_template

    def get_vocab(self):
        return dict(self._vocab)


LLAMA31 = {"<|eom_id|>": 128008, "<|eot_id|>": 128009, "<|python_tag|>": 128010}
LLAMA30 = {"<|eot_id|>": 128009, "<|reserved_special_token_249|>": 128254, "<|reserved_special_token_4|>": 128008}
V2 = {"<|from|>": 32000, "<|recipient|>": 32001, "<|content|>": 32002, "<|stop|>": 32003}
V1 = {"<|START_OF_FUNCTION_CALL|>": 32000, "<|END_OF_SYSTEM|>": 32001}


@pytest.mark.parametrize("version", ["v1", "v2", "v2.llama3", "v3.llama3", "v3-llama3.1"])
def test_version_comment_wins_over_the_vocabulary(version):
    template = "{# version=" + version + " #}{%- if not tools -%}...{%- endif -%}"
    for vocab in (LLAMA31, LLAMA30, V2, V1, {}):
        assert detect_template(FakeTokenizer(vocab, template)) is get_template(version)


def test_v32_is_found_by_its_comment_despite_the_llama31_tokenizer():
    tok = FakeTokenizer(LLAMA31, "{# version=v3.llama3 #}...<|eot_id|>...>>>...")
    assert detect_template(tok).version == "v3.llama3"


def test_unsupported_version_comment_is_an_error():
    with pytest.raises(TemplateError, match="'r1'"):
        detect_template(FakeTokenizer(LLAMA31, "{# version=r1 #}"))


@pytest.mark.parametrize(
    ("vocab", "chat_template", "version"),
    [
        (LLAMA31, None, "v3-llama3.1"),
        (LLAMA31, "...<function=...</function>...", "v3-llama3.1"),
        (LLAMA31, "{{ '>>>' + tool_call['function']['name'] }}", "v3.llama3"),  # v3.2 without its comment
        (LLAMA30, "{{ '<|reserved_special_token_249|>' + name }}", "v2.llama3"),
        (LLAMA30, "{{ '>>>' + name }}", "v3.llama3"),
        (LLAMA30, None, "v3.llama3"),
        (V2, None, "v2"),
        (V1, "", "v1"),
    ],
)
def test_token_heuristics(vocab, chat_template, version):
    assert detect_template(FakeTokenizer(vocab, chat_template)).version == version


def test_ids_must_match_not_just_names():
    # a tokenizer that happens to have these strings at other ids is not Llama 3
    with pytest.raises(TemplateError, match="Cannot detect"):
        detect_template(FakeTokenizer({"<|eom_id|>": 5, "<|reserved_special_token_249|>": 7}))


def test_nothing_matches():
    with pytest.raises(TemplateError):
        detect_template(FakeTokenizer({"hello": 1}, "{{ messages }}"))
    with pytest.raises(TemplateError):
        detect_template(object())


def test_duck_typing_variants():
    class OnlyTemplate:
        chat_template = {"default": "{# version=v2 #}...", "tool_use": "{# version=v1 #}"}

    class ListTemplates:
        chat_template = [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{# version=v1 #}"}]

    class VocabAttribute:
        chat_template = None
        vocab = V2

    assert detect_template(OnlyTemplate()).version == "v2"
    assert detect_template(ListTemplates()).version == "v1"
    assert detect_template(VocabAttribute()).version == "v2"


@pytest.mark.hf
@pytest.mark.parametrize(
    ("family", "version"),
    [("llama3.1", "v3-llama3.1"), ("llama3.0", "v3.llama3"), ("functionary-v2", "v2"), ("functionary-v1", "v1")],
)
def test_real_tokenizers(family, version):
    tokenizers = pytest.importorskip("functionary.tokenizers")
    tokenizer = tokenizers.load_tokenizer(family)
    assert detect_template(tokenizer).version == version


@pytest.mark.hf
def test_real_llama31_tokenizer_with_a_functionary_chat_template():
    tokenizers = pytest.importorskip("functionary.tokenizers")
    tokenizer = tokenizers.load_tokenizer("llama3.1")

    class WithTemplate:
        chat_template = "{# version=v3.llama3 #}{{ bos_token }}"

        def get_vocab(self):
            return tokenizer.get_vocab()

    assert detect_template(WithTemplate()).version == "v3.llama3"
    # and the stop tokens of the detected template are single special tokens of that vocabulary
    vocab = tokenizer.get_vocab()
    assert all(stop in vocab for stop in detect_template(tokenizer).stop_tokens)
