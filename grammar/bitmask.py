"""The token bitmask contract, in one place.

A *token bitmask* says which tokens may come next.  It is a 2-D array of ``int32`` words of
shape ``(batch, ceil(vocab_size / 32))``; a set bit means *allowed*.  Bit ``j`` (least
significant first) of word ``w`` stands for token ``32 * w + j``::

    def allowed(bitmask, row, token_id):
        word = int(bitmask[row, token_id // 32]) & 0xFFFFFFFF
        return (word >> (token_id % 32)) & 1 == 1

This is exactly the format of xgrammar and llguidance (``int32``, little-endian bit order
inside each word), so masks are interchangeable between the three engines and with vLLM's
``apply_grammar_bitmask``.  ``int32`` rather than ``uint32`` because old torch builds lack
``uint32``; a word with every bit set is ``-1``.  Bits of ids ``>= vocab_size`` in the last
word carry no meaning.

Applying a bitmask sets the logits of the disallowed tokens to ``-inf``.  The reference
semantics of :func:`apply_token_bitmask_inplace`, as a plain double loop::

    for i in (range(batch) if indices is None else indices):
        for j in range(vocab_size):
            if not allowed(bitmask, i, j):
                logits[i, j] = -inf

Filling happens on the CPU (numpy, or a torch CPU tensor); applying runs where the logits
are (numpy, torch CPU, torch CUDA), through the kernels of :mod:`grammar.kernels`, imported
lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "BITS_PER_WORD",
    "bitmask_width",
    "bitmask_shape",
    "allocate_token_bitmask",
    "reset_token_bitmask",
    "apply_token_bitmask_inplace",
]

BITS_PER_WORD = 32
"""Tokens per bitmask word."""


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def bitmask_width(vocab_size: int) -> int:
    """Number of ``int32`` words per bitmask row: ``ceil(vocab_size / 32)``.

    Raises
    ------
    TypeError
        If ``vocab_size`` is not an int.
    ValueError
        If it is negative.
    """
    return (_check_count("vocab_size", vocab_size) + BITS_PER_WORD - 1) // BITS_PER_WORD


def bitmask_shape(batch: int, vocab_size: int) -> tuple[int, int]:
    """``(batch, ceil(vocab_size / 32))``: the shape of a bitmask."""
    return (_check_count("batch", batch), bitmask_width(vocab_size))


def allocate_token_bitmask(
    batch: int, vocab_size: int, *, backend: Literal["numpy", "torch"] = "numpy"
) -> Any:
    """Allocate a bitmask with every token allowed (all words ``-1``).

    Parameters
    ----------
    batch : int
        Number of rows (sequences).
    vocab_size : int
        The model's logits width.
    backend : {"numpy", "torch"}
        ``"numpy"`` gives an ``np.ndarray``; ``"torch"`` a CPU ``torch.Tensor``.  Copy it to the
        GPU yourself after filling (``bitmask.to(logits.device, non_blocking=True)``).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``int32`` array of shape ``(batch, ceil(vocab_size / 32))``.

    Raises
    ------
    ValueError
        On a negative size or an unknown backend.
    """
    shape = bitmask_shape(batch, vocab_size)
    if backend == "numpy":
        return np.full(shape, -1, dtype=np.int32)
    if backend == "torch":
        import torch

        return torch.full(shape, -1, dtype=torch.int32)
    raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def reset_token_bitmask(bitmask: Any) -> None:
    """Set every bit (allow every token), in place.

    Raises
    ------
    TypeError
        If ``bitmask`` is not an ``int32`` numpy array or torch tensor.
    """
    if isinstance(bitmask, np.ndarray):
        if bitmask.dtype != np.int32:
            raise TypeError(f"bitmask must be int32, got {bitmask.dtype}")
        bitmask.fill(-1)
    elif _is_torch(bitmask):
        import torch

        if bitmask.dtype != torch.int32:
            raise TypeError(f"bitmask must be torch.int32, got {bitmask.dtype}")
        bitmask.fill_(-1)
    else:
        raise TypeError(f"bitmask must be a numpy array or torch tensor, got {type(bitmask)!r}")


def _normalise_indices(indices: Any, rows_logits: int, rows_mask: int) -> np.ndarray:
    if _is_torch(indices):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= rows_logits or hi >= rows_mask:
        raise ValueError(
            f"indices must lie in [0, {min(rows_logits, rows_mask)}) (logits rows {rows_logits}, "
            f"bitmask rows {rows_mask}); got min {lo}, max {hi}")
    return arr.astype(np.int64, copy=False)


def _check_shapes(logits_shape: Sequence[int], mask_shape: Sequence[int], has_indices: bool,
                  vocab_size: int | None) -> int:
    if len(logits_shape) != 2:
        raise ValueError(f"logits must be 1-D or 2-D, got {len(logits_shape)}-D")
    if len(mask_shape) != 2:
        raise ValueError(f"bitmask must be 1-D or 2-D, got {len(mask_shape)}-D")
    if not has_indices and logits_shape[0] != mask_shape[0]:
        raise ValueError(
            f"logits have {logits_shape[0]} rows but the bitmask has {mask_shape[0]}; "
            "pass indices= to mask a subset of rows")
    limit = min(int(logits_shape[1]), int(mask_shape[1]) * BITS_PER_WORD)
    if vocab_size is None:
        return limit
    vocab_size = _check_count("vocab_size", vocab_size)
    if vocab_size > limit:
        raise ValueError(
            f"vocab_size {vocab_size} exceeds min(logits width {logits_shape[1]}, "
            f"32 * bitmask width {mask_shape[1]}) = {limit}")
    return vocab_size


def apply_token_bitmask_inplace(
    logits: Any,
    bitmask: Any,
    indices: Sequence[int] | np.ndarray | "torch.Tensor" | None = None,
    *,
    vocab_size: int | None = None,
) -> None:
    """Set the logits of disallowed tokens to ``-inf``, in place.

    Semantics (the reference loop of the module docstring)::

        for i in (range(batch) if indices is None else indices):
            for j in range(vocab_size):
                if bit j of bitmask row i is 0:
                    logits[i, j] = -inf

    Parameters
    ----------
    logits : numpy.ndarray or torch.Tensor
        Floating logits of shape ``(batch, V)`` or ``(V,)``; numpy, torch CPU or torch CUDA.
    bitmask : numpy.ndarray or torch.Tensor
        ``int32`` of shape ``(batch', W)`` or ``(W,)``.  With torch logits a numpy bitmask is
        copied to the logits' device; a torch bitmask must already be on that device.  With
        numpy logits the bitmask must be on the CPU.
    indices : sequence of int, optional
        As in xgrammar: only rows ``i in indices`` are masked, each by bitmask row ``i``; the
        other logits rows are left untouched.  Without ``indices`` logits and bitmask must
        have the same number of rows; with it they may differ as long as every index is valid
        for both.
    vocab_size : int, optional
        Number of leading columns to process.  Default, as in xgrammar:
        ``min(V, 32 * W)``.  So if the logits are *narrower* than the bitmask's bits the extra
        bits are ignored, and if they are *wider* (a model whose logits are padded beyond the
        bitmask's vocabulary) the columns ``>= 32 * W`` are **left unmasked**: allocate the
        bitmask with the logits width (``Vocabulary.vocab_size``) to mask them too.

    Raises
    ------
    TypeError
        If the bitmask is not ``int32``, the logits are not floating point, or the array
        types cannot be combined.
    ValueError
        On a shape mismatch, invalid indices, a device mismatch or a ``vocab_size`` larger
        than the default.
    """
    if isinstance(logits, np.ndarray):
        _apply_numpy(logits, bitmask, indices, vocab_size)
    elif _is_torch(logits):
        _apply_torch(logits, bitmask, indices, vocab_size)
    else:
        raise TypeError(f"logits must be a numpy array or torch tensor, got {type(logits)!r}")


def _apply_numpy(logits: np.ndarray, bitmask: Any, indices: Any, vocab_size: int | None) -> None:
    if _is_torch(bitmask):
        if bitmask.device.type != "cpu":
            raise ValueError("numpy logits need a CPU bitmask; got one on "
                             f"{bitmask.device}")
        bitmask = bitmask.numpy()
    if not isinstance(bitmask, np.ndarray):
        raise TypeError(f"bitmask must be a numpy array or torch tensor, got {type(bitmask)!r}")
    if bitmask.dtype != np.int32:
        raise TypeError(f"bitmask must be int32, got {bitmask.dtype}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    if not logits.flags.writeable:
        raise ValueError("logits array is read-only")
    lg = logits.reshape(1, -1) if logits.ndim == 1 else logits
    bm = bitmask.reshape(1, -1) if bitmask.ndim == 1 else bitmask
    v = _check_shapes(lg.shape, bm.shape, indices is not None, vocab_size)
    idx = None if indices is None else _normalise_indices(indices, lg.shape[0], bm.shape[0])
    from .kernels.numpy_ref import apply_token_bitmask_numpy

    apply_token_bitmask_numpy(lg, bm, v, idx)


def _apply_torch(logits: "torch.Tensor", bitmask: Any, indices: Any,
                 vocab_size: int | None) -> None:
    import torch

    if isinstance(bitmask, np.ndarray):
        if bitmask.dtype != np.int32:
            raise TypeError(f"bitmask must be int32, got {bitmask.dtype}")
        bitmask = torch.from_numpy(bitmask).to(logits.device)
    if not _is_torch(bitmask):
        raise TypeError(f"bitmask must be a numpy array or torch tensor, got {type(bitmask)!r}")
    if bitmask.dtype != torch.int32:
        raise TypeError(f"bitmask must be torch.int32, got {bitmask.dtype}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    if bitmask.device != logits.device:
        raise ValueError(f"logits are on {logits.device} but the bitmask is on {bitmask.device}; "
                         "copy the bitmask first")
    lg = logits.unsqueeze(0) if logits.dim() == 1 else logits
    bm = bitmask.unsqueeze(0) if bitmask.dim() == 1 else bitmask
    v = _check_shapes(tuple(lg.shape), tuple(bm.shape), indices is not None, vocab_size)
    idx = None if indices is None else _normalise_indices(indices, lg.shape[0], bm.shape[0])
    if idx is not None and idx.size == 0:
        return
    from . import kernels

    kernels.apply_torch(lg, bm, v, idx)
