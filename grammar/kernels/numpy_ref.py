"""Numpy kernel: apply a token bitmask to logits in place (the reference implementation)."""

from __future__ import annotations

import numpy as np

__all__ = ["unpack_bitmask", "apply_token_bitmask_numpy"]


def unpack_bitmask(bitmask: np.ndarray, vocab_size: int) -> np.ndarray:
    """Boolean ``(rows, vocab_size)`` array: ``True`` where the token is allowed.

    Bit ``j`` of word ``w`` is token ``32 * w + j`` (little-endian bit order).
    """
    words = (vocab_size + 31) // 32
    bm = np.ascontiguousarray(bitmask[:, :words]).astype("<i4", copy=False)
    bits = np.unpackbits(bm.view(np.uint8), axis=-1, bitorder="little")
    return bits[:, :vocab_size].view(np.bool_)


def apply_token_bitmask_numpy(logits: np.ndarray, bitmask: np.ndarray, vocab_size: int,
                              indices: np.ndarray | None) -> None:
    """Set ``logits[i, j] = -inf`` where bit ``j`` of ``bitmask[i]`` is 0, for ``j < vocab_size``
    and ``i`` in ``indices`` (every row when ``None``).  Arguments are assumed validated."""
    if vocab_size == 0:
        return
    if indices is None:
        blocked = ~unpack_bitmask(bitmask, vocab_size)
        np.copyto(logits[:, :vocab_size], -np.inf, where=blocked)
        return
    if indices.size == 0:
        return
    blocked = ~unpack_bitmask(bitmask[indices], vocab_size)
    rows = logits[indices, :vocab_size]
    np.copyto(rows, -np.inf, where=blocked)
    logits[indices, :vocab_size] = rows
