"""A tiny random-weight Llama with a real tokenizer, for tests and CPU demos.

The model is a ``transformers.LlamaForCausalLM`` with random weights (seeded), tied input and
output embeddings and a logits width equal to the family's model vocabulary
(:attr:`functionary.tokenizers.TokenizerFamily.vocab_size`: 128256 for Llama 3, although the
Llama 3.2-named tokenizer has 128257 entries; ``<|image|>`` has no logit).  Its outputs are
noise, which is what constrained-decoding tests want: only the grammar makes them valid.

Saved with :func:`build_tiny_model` (``out_dir=...``) the folder holds ``config.json``,
``generation_config.json``, ``model.safetensors`` and the tokenizer files, and loads in vLLM
(``LLM(model=out_dir)``) and transformers without any hub access.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tokenizers import FAMILIES, load_tokenizer, tokenizer_dir

if TYPE_CHECKING:  # pragma: no cover
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

__all__ = ["tiny_llama_config", "build_tiny_model"]


def tiny_llama_config(family: str = "llama3.1", *, hidden_size: int = 64, num_layers: int = 2,
                      vocab_size: int | None = None) -> Any:
    """The ``LlamaConfig`` of the tiny model (see :func:`build_tiny_model` for the sizes).

    Raises
    ------
    VocabularyError
        For an unknown family.
    ValueError
        If ``hidden_size`` is not a positive multiple of 2 (two attention heads).
    """
    from grammar.errors import VocabularyError

    if family not in FAMILIES:
        raise VocabularyError(f"unknown tokenizer family {family!r}; known: {', '.join(FAMILIES)}")
    if hidden_size <= 0 or hidden_size % 2:
        raise ValueError(f"hidden_size must be a positive even number, got {hidden_size}")
    if num_layers <= 0:
        raise ValueError(f"num_layers must be positive, got {num_layers}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import LlamaConfig

    fam = FAMILIES[family]
    vocab = fam.vocab_size if vocab_size is None else vocab_size
    tok = load_tokenizer(family)
    eos = list(fam.eos_token_ids)
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden_size,
        intermediate_size=min(256, max(128, 4 * hidden_size)),
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,  # CPU attention kernels (vLLM) want a usual head size
        max_position_embeddings=4096,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=eos[0] if len(eos) == 1 else eos,
        pad_token_id=None,
        dtype="float32",
    )


def build_tiny_model(
    family: str = "llama3.1",
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    vocab_size: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> tuple["LlamaForCausalLM", "PreTrainedTokenizerBase"]:
    """Build a random-weight ``LlamaForCausalLM`` with the tokenizer of ``family``.

    Architecture: ``num_layers`` decoder layers of width ``hidden_size``, 2 attention heads of
    dimension 64, 1 key/value head, MLP width ``clamp(4 * hidden_size, 128, 256)``, 4096
    positions, RoPE theta 5e5, tied embeddings, float32.  The default (64 wide, 2 layers,
    128256 logits) has about 8.4 M parameters, almost all in the embedding.

    Parameters
    ----------
    family : str
        A key of :data:`functionary.tokenizers.FAMILIES`.
    hidden_size, num_layers : int
        Model width and depth.
    seed : int
        Seed of the random weights (``torch.manual_seed``); equal seeds give equal weights.
    vocab_size : int, optional
        Logits width; default the family's model vocabulary size.
    out_dir : path, optional
        If given, ``save_pretrained`` (safetensors) writes the model there, together with
        the family's ``tokenizer.json`` and ``tokenizer_config.json``.

    Returns
    -------
    (model, tokenizer)
        The model in eval mode on the CPU, and the (cached, shared) tokenizer.

    Raises
    ------
    VocabularyError
        For an unknown family or missing tokenizer files.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    config = tiny_llama_config(family, hidden_size=hidden_size, num_layers=num_layers,
                               vocab_size=vocab_size)
    tok = load_tokenizer(family)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), safe_serialization=True)
        src = tokenizer_dir(family)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(src / name, out / name)
    return model, tok
