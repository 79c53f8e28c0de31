"""Kernels that apply a token bitmask to logits (see :mod:`grammar.bitmask` for the contract).

* :mod:`grammar.kernels.numpy_ref` — numpy; the reference the others are tested against.
* :mod:`grammar.kernels.torch_kernels` — torch, vectorised by unpacking the bits; CPU and CUDA.
* :mod:`grammar.kernels.triton_kernel` — a Triton kernel for CUDA, used only when ``triton``
  imports and the logits are on a CUDA device.

Everything here is imported lazily by :func:`grammar.bitmask.apply_token_bitmask_inplace`;
none of it is part of the public API, and arguments are assumed validated (2-D logits and
bitmask, ``vocab_size <= min(logits width, 32 * bitmask width)``, valid row indices).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = ["apply_torch", "triton_available"]


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Whether the Triton kernel can be used (``triton`` imports and CUDA is available)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        from . import triton_kernel  # noqa: F401  (imports triton)
    except Exception:  # ImportError, or a broken triton install
        return False
    return True


def apply_torch(logits: "torch.Tensor", bitmask: "torch.Tensor", vocab_size: int,
                indices: "np.ndarray | None") -> None:
    """Dispatch a validated torch application to Triton (CUDA) or the torch kernel."""
    if logits.is_cuda and triton_available():
        from .triton_kernel import apply_token_bitmask_triton

        apply_token_bitmask_triton(logits, bitmask, vocab_size, indices)
        return
    from .torch_kernels import apply_token_bitmask_torch

    apply_token_bitmask_torch(logits, bitmask, vocab_size, indices)
