"""Torch kernel: apply a token bitmask to logits in place, vectorised by unpacking the bits.

Works on any device torch supports (CPU, CUDA).  Memory: one ``int32`` and one ``bool``
temporary of shape ``(rows, 32 * words)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = ["unpack_bitmask_torch", "apply_token_bitmask_torch"]


def unpack_bitmask_torch(bitmask: "torch.Tensor", vocab_size: int) -> "torch.Tensor":
    """Boolean ``(rows, vocab_size)`` tensor on ``bitmask.device``: ``True`` = allowed."""
    import torch

    words = (vocab_size + 31) // 32
    bm = bitmask[:, :words]
    if bm.device.type == "cpu":
        # numpy's unpackbits is ~100x faster than shifting on CPU (same little-endian meaning)
        import numpy as np
        raw = np.ascontiguousarray(bm.numpy()).view(np.uint8)
        bits = np.unpackbits(raw, axis=1, bitorder="little")[:, :vocab_size]
        return torch.from_numpy(bits.view(np.bool_))
    shifts = torch.arange(32, device=bm.device, dtype=torch.int32)
    # Arithmetic right shift of a negative word only fills bits above 31: bit j is intact.
    bits = (bm.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(bm.shape[0], words * 32)[:, :vocab_size] != 0


def apply_token_bitmask_torch(logits: "torch.Tensor", bitmask: "torch.Tensor", vocab_size: int,
                              indices: "np.ndarray | None") -> None:
    """Set ``logits[i, j] = -inf`` where bit ``j`` of ``bitmask[i]`` is 0 (validated input)."""
    import torch

    if vocab_size == 0:
        return
    if (logits.device.type == "cpu" and bitmask.device.type == "cpu"
            and logits.dtype in (torch.float32, torch.float64) and logits.is_contiguous()
            and logits.shape[-1] == vocab_size):
        # CPU fast path: invert the packed words (32x fewer elements), unpack with numpy and
        # write -inf with putmask (several times faster than torch's masked_fill_ on CPU).
        import numpy as np
        words = (vocab_size + 31) // 32
        bm_np = bitmask[:, :words].numpy()
        out = logits.numpy()
        if indices is None:
            inv = np.invert(np.ascontiguousarray(bm_np)).view(np.uint8)
            blocked_np = np.unpackbits(inv, axis=1, bitorder="little", count=vocab_size)
            np.putmask(out, blocked_np.view(np.bool_), -np.inf)
        else:
            for r in np.asarray(indices).tolist():
                inv = np.invert(bm_np[r]).view(np.uint8)
                blocked_np = np.unpackbits(inv, bitorder="little", count=vocab_size)
                np.putmask(out[r], blocked_np.view(np.bool_), -np.inf)
        return
    if indices is None:
        blocked = ~unpack_bitmask_torch(bitmask, vocab_size)
        logits[:, :vocab_size].masked_fill_(blocked, float("-inf"))
        return
    if indices.size == 0:
        return
    idx = torch.from_numpy(indices).to(logits.device)
    blocked = ~unpack_bitmask_torch(bitmask.index_select(0, idx.to(bitmask.device)), vocab_size)
    rows = logits.index_select(0, idx)[:, :vocab_size]
    logits[idx, :vocab_size] = rows.masked_fill(blocked, float("-inf"))
