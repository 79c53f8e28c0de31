"""Shared pytest configuration: marker policy and small fixtures.

Markers (declared in ``pyproject.toml``):

* ``hf`` — needs transformers / torch / tokenizers (the ``[hf]`` extra).  Skipped when they
  are missing, except under CI (``$CI`` set), where a missing dependency is an error.
* ``gpu`` — needs CUDA; skipped without it.
* ``vllm`` — needs vLLM; skipped when it is not installed.
* ``slow``, ``bench`` — informational; select or deselect with ``-m``.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _cuda() -> bool:
    if not _has("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    in_ci = bool(os.environ.get("CI"))
    have_hf = _has("transformers", "torch", "tokenizers")
    have_vllm = _has("vllm")
    cuda: bool | None = None
    for item in items:
        if "hf" in item.keywords and not have_hf and not in_ci:
            item.add_marker(pytest.mark.skip(reason="needs the [hf] extra (transformers, torch)"))
        if "vllm" in item.keywords and not have_vllm:
            item.add_marker(pytest.mark.skip(reason="needs vLLM (the [vllm] extra)"))
        if "gpu" in item.keywords:
            if cuda is None:
                cuda = _cuda()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session")
def byte_vocab():
    """The 257-token byte vocabulary: ids 0-255 are single bytes, 256 is ``<eos>``."""
    from grammar.vocab import Vocabulary

    return Vocabulary.byte_level()
