"""Triton kernel: apply a token bitmask to CUDA logits in place.

Imported only when ``triton`` is installed and CUDA is available (see
:func:`grammar.kernels.triton_available`); importing this module without triton raises
``ImportError``.  One program handles ``BLOCK`` consecutive vocabulary columns of one row.
Rows whose logits are not unit-stride along the vocabulary fall back to the torch kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import triton
import triton.language as tl

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = ["apply_token_bitmask_triton"]

_BLOCK = 4096


@triton.jit
def _apply_bitmask_kernel(logits_ptr, bitmask_ptr, rows_ptr, logits_row_stride,
                          bitmask_row_stride, vocab_size, BLOCK: tl.constexpr):
    row = tl.load(rows_ptr + tl.program_id(0)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < vocab_size
    words = tl.load(bitmask_ptr + row * bitmask_row_stride + cols // 32, mask=inside, other=-1)
    blocked = ((words >> (cols % 32)) & 1) == 0
    tl.store(logits_ptr + row * logits_row_stride + cols, float("-inf"), mask=inside & blocked)


def apply_token_bitmask_triton(logits: "torch.Tensor", bitmask: "torch.Tensor",
                               vocab_size: int, indices: "np.ndarray | None") -> None:
    """Set ``logits[i, j] = -inf`` where bit ``j`` of ``bitmask[i]`` is 0 (validated input)."""
    import torch

    if vocab_size == 0 or (indices is not None and indices.size == 0):
        return
    if logits.stride(1) != 1:
        from .torch_kernels import apply_token_bitmask_torch

        apply_token_bitmask_torch(logits, bitmask, vocab_size, indices)
        return
    bitmask = bitmask.contiguous()
    if indices is None:
        rows = torch.arange(logits.shape[0], device=logits.device, dtype=torch.int64)
    else:
        rows = torch.from_numpy(indices).to(device=logits.device, dtype=torch.int64)
    grid = (rows.shape[0], triton.cdiv(vocab_size, _BLOCK))
    _apply_bitmask_kernel[grid](logits, bitmask, rows, logits.stride(0), bitmask.stride(0),
                                vocab_size, BLOCK=_BLOCK)
