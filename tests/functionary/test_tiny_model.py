"""Tests for functionary.tiny_model: the random-weight Llama used by CPU tests and demos."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.hf


@pytest.fixture(scope="module")
def tiny():
    from functionary.tiny_model import build_tiny_model

    return build_tiny_model()


def test_forward_logits_width_is_model_vocab(tiny):
    import torch

    model, tok = tiny
    assert model.config.vocab_size == 128256 and len(tok) == 128257
    ids = torch.tensor([tok.encode("Hello, world!")])
    with torch.no_grad():
        logits = model(ids).logits
    assert tuple(logits.shape) == (1, ids.shape[1], 128256)
    assert torch.isfinite(logits).all()


def test_architecture(tiny):
    model, _ = tiny
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.head_dim) == (64, 2, 2, 1, 64)
    assert 128 <= cfg.intermediate_size <= 256 and cfg.max_position_embeddings == 4096
    assert cfg.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert list(cfg.eos_token_id) == [128001, 128008, 128009] and cfg.bos_token_id == 128000


def test_seeded_weights(tiny):
    import torch

    from functionary.tiny_model import build_tiny_model

    model, _ = tiny
    same, _ = build_tiny_model(seed=0)
    other, _ = build_tiny_model(seed=1)
    w = model.model.embed_tokens.weight
    assert torch.equal(w, same.model.embed_tokens.weight)
    assert not torch.equal(w, other.model.embed_tokens.weight)


def test_save_and_reload(tmp_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from functionary.tiny_model import build_tiny_model

    model, tok = build_tiny_model("functionary-v2", hidden_size=32, num_layers=1, seed=3,
                                  out_dir=tmp_path)
    assert model.config.vocab_size == 32004
    for name in ("config.json", "generation_config.json", "model.safetensors",
                 "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).is_file(), name
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path), local_files_only=True)
    tok2 = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    ids = torch.tensor([tok2.encode("<|from|>assistant")])
    assert ids[0, 1].item() == 32000
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, again(ids).logits)
    assert again(ids).logits.shape[-1] == 32004


def test_vocab_size_override_and_errors():
    from functionary.tiny_model import build_tiny_model
    from grammar.errors import VocabularyError

    model, _ = build_tiny_model(vocab_size=128320, hidden_size=32, num_layers=1)
    assert model.lm_head.weight.shape[0] == 128320
    with pytest.raises(VocabularyError):
        build_tiny_model("llama-2")
    with pytest.raises(ValueError):
        build_tiny_model(hidden_size=33)
