"""Helpers for tests: convert between boolean allow-arrays and token bitmasks.

The bitmask format is the one of :mod:`grammar.bitmask` (``int32`` words, bit ``j`` of word
``w`` = token ``32 * w + j``, set = allowed).  These helpers are written for clarity, not
speed, and accept numpy arrays (and torch tensors, converted through numpy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bool_to_bitmask", "bitmask_to_bool", "allowed_ids"]


def _to_numpy(x: Any) -> tuple[np.ndarray, bool]:
    if type(x).__module__.startswith("torch") and hasattr(x, "device"):
        return x.detach().cpu().numpy(), True
    return np.asarray(x), False


def bool_to_bitmask(bool_array: Any) -> Any:
    """Pack a boolean allow-array into a bitmask.

    Parameters
    ----------
    bool_array : array-like of bool
        Shape ``(vocab_size,)`` or ``(batch, vocab_size)``; ``True`` = allowed.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``int32`` of shape ``(ceil(vocab_size / 32),)`` or ``(batch, ceil(vocab_size / 32))``;
        a torch tensor if the input was one.  Bits past ``vocab_size`` are 0.

    Raises
    ------
    ValueError
        If the input is not 1-D or 2-D.
    """
    arr, was_torch = _to_numpy(bool_array)
    if arr.ndim not in (1, 2):
        raise ValueError(f"expected a 1-D or 2-D array, got {arr.ndim}-D")
    arr = arr.astype(bool)
    words = (arr.shape[-1] + 31) // 32
    padded = np.zeros(arr.shape[:-1] + (words * 32,), dtype=bool)
    padded[..., : arr.shape[-1]] = arr
    packed = np.packbits(padded, axis=-1, bitorder="little")
    out = np.ascontiguousarray(packed).view("<i4").astype(np.int32)
    if was_torch:
        import torch

        return torch.from_numpy(out)
    return out


def bitmask_to_bool(bitmask: Any, vocab_size: int) -> np.ndarray:
    """Unpack a bitmask (1-D row or 2-D) into a boolean array of width ``vocab_size``.

    Raises
    ------
    TypeError
        If the bitmask is not ``int32``.
    ValueError
        If it is too narrow for ``vocab_size`` or not 1-D / 2-D.
    """
    arr, _ = _to_numpy(bitmask)
    if arr.dtype != np.int32:
        raise TypeError(f"bitmask must be int32, got {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"expected a 1-D or 2-D bitmask, got {arr.ndim}-D")
    if arr.shape[-1] * 32 < vocab_size:
        raise ValueError(f"bitmask of {arr.shape[-1]} words cannot hold {vocab_size} tokens")
    words = np.ascontiguousarray(arr).astype("<i4", copy=False)
    bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :vocab_size].astype(bool)


def allowed_ids(bitmask_row: Any, vocab_size: int) -> list[int]:
    """The token ids allowed by one bitmask row, ascending."""
    row, _ = _to_numpy(bitmask_row)
    if row.ndim != 1:
        raise ValueError(f"expected one bitmask row (1-D), got shape {row.shape}")
    return [int(i) for i in np.flatnonzero(bitmask_to_bool(row, vocab_size))]
