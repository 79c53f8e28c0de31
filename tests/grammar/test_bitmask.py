"""Tests for the bitmask contract (grammar.bitmask), its kernels and grammar.testing helpers.

Every kernel is compared with ``reference_apply``, the plain-Python double loop of the
contract, on random logits, bitmasks, shapes and row subsets.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from grammar.bitmask import (
    allocate_token_bitmask,
    apply_token_bitmask_inplace,
    bitmask_shape,
    bitmask_width,
    reset_token_bitmask,
)
from grammar.testing import allowed_ids, bitmask_to_bool, bool_to_bitmask

NEG_INF = float("-inf")


def reference_apply(logits: list[list[float]], bitmask: list[list[int]], indices, vocab_size):
    """The contract as a double loop over Python lists (returns a new list of rows)."""
    out = [list(row) for row in logits]
    rows = range(len(out)) if indices is None else indices
    for i in rows:
        for j in range(vocab_size):
            word = bitmask[i][j // 32] & 0xFFFFFFFF
            if not (word >> (j % 32)) & 1:
                out[i][j] = NEG_INF
    return out


def random_case(rng: np.random.Generator, batch: int, vocab: int, logits_width: int,
                density: float):
    words = bitmask_width(vocab)
    allowed = rng.random((batch, words * 32)) < density
    bitmask = bool_to_bitmask(allowed)
    logits = rng.standard_normal((batch, logits_width))
    return logits, bitmask


CASES = [
    # batch, vocab (bitmask bits), logits width, density
    (1, 1, 1, 0.5),
    (3, 31, 31, 0.5),
    (2, 32, 32, 0.1),
    (4, 33, 33, 0.9),
    (5, 100, 100, 0.5),
    (2, 257, 300, 0.5),  # logits wider than the bitmask's bits: extra columns untouched
    (2, 300, 257, 0.5),  # logits narrower: extra bits ignored
    (3, 64, 64, 0.0),
    (3, 64, 64, 1.0),
]


def _expected(logits: np.ndarray, bitmask: np.ndarray, indices, vocab_size=None):
    v = vocab_size if vocab_size is not None else min(logits.shape[1], bitmask.shape[1] * 32)
    return np.array(reference_apply(logits.tolist(), bitmask.tolist(), indices, v))


@pytest.mark.parametrize("batch,vocab,width,density", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_numpy_matches_reference(batch, vocab, width, density, dtype):
    rng = np.random.default_rng(batch * 1000 + vocab + width)
    logits, bitmask = random_case(rng, batch, vocab, width, density)
    logits = logits.astype(dtype)
    want = _expected(logits.astype(np.float64), bitmask, None)
    apply_token_bitmask_inplace(logits, bitmask)
    np.testing.assert_array_equal(logits.astype(np.float64), want.astype(dtype).astype(np.float64))


@pytest.mark.parametrize("seed", range(6))
def test_numpy_indices_subset(seed):
    rng = np.random.default_rng(seed)
    batch = int(rng.integers(2, 7))
    logits, bitmask = random_case(rng, batch, 130, 130, 0.4)
    indices = sorted(random.Random(seed).sample(range(batch), k=batch // 2), reverse=True)
    want = _expected(logits, bitmask, indices)
    apply_token_bitmask_inplace(logits, bitmask, indices)
    np.testing.assert_array_equal(logits, want)
    untouched = [i for i in range(batch) if i not in indices]
    assert np.isfinite(logits[untouched]).all()


def test_indices_with_different_batch_sizes():
    rng = np.random.default_rng(7)
    logits, _ = random_case(rng, 3, 96, 96, 0.5)
    _, bitmask = random_case(rng, 5, 96, 96, 0.5)
    want = _expected(logits, bitmask, [2, 0])
    apply_token_bitmask_inplace(logits, bitmask, indices=np.array([2, 0]))
    np.testing.assert_array_equal(logits, want)
    apply_token_bitmask_inplace(logits, bitmask, indices=[])  # no-op
    np.testing.assert_array_equal(logits, want)


def test_explicit_vocab_size_and_1d():
    rng = np.random.default_rng(3)
    logits, bitmask = random_case(rng, 2, 96, 96, 0.3)
    want = _expected(logits, bitmask, None, vocab_size=40)
    apply_token_bitmask_inplace(logits, bitmask, vocab_size=40)
    np.testing.assert_array_equal(logits, want)
    assert np.isfinite(logits[:, 40:]).all()
    row, mask_row = rng.standard_normal(70), bool_to_bitmask(rng.random(70) < 0.5)
    want_row = _expected(row[None, :], mask_row[None, :], None)[0]
    apply_token_bitmask_inplace(row, mask_row)
    np.testing.assert_array_equal(row, want_row)


def test_bit_order_is_little_endian_within_words():
    """Same layout as xgrammar/llguidance: bit j of word w is token 32*w + j."""
    bitmask = np.zeros((1, 2), dtype=np.int32)
    bitmask[0, 0] = 0b101  # tokens 0 and 2
    bitmask[0, 1] = np.int32(-(2**31))  # bit 31 of word 1: token 63
    assert allowed_ids(bitmask[0], 64) == [0, 2, 63]
    logits = np.zeros((1, 64), dtype=np.float32)
    apply_token_bitmask_inplace(logits, bitmask)
    assert np.flatnonzero(np.isfinite(logits[0])).tolist() == [0, 2, 63]


def test_allocate_reset_and_width():
    assert [bitmask_width(v) for v in (0, 1, 31, 32, 33, 128256, 128257)] == \
        [0, 1, 1, 1, 2, 4008, 4009]
    assert bitmask_shape(3, 65) == (3, 3)
    m = allocate_token_bitmask(4, 100)
    assert m.shape == (4, 4) and m.dtype == np.int32 and (m == -1).all()
    m[:] = 0
    reset_token_bitmask(m)
    assert (m == -1).all()
    assert allowed_ids(m[0], 100) == list(range(100))
    with pytest.raises(ValueError):
        bitmask_width(-1)
    with pytest.raises(TypeError):
        bitmask_width(3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        allocate_token_bitmask(1, 10, backend="jax")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reset_token_bitmask(np.zeros((1, 1), dtype=np.int64))


def test_numpy_errors():
    logits = np.zeros((2, 64), dtype=np.float32)
    good = allocate_token_bitmask(2, 64)
    with pytest.raises(TypeError, match="int32"):
        apply_token_bitmask_inplace(logits, good.astype(np.int64))
    with pytest.raises(TypeError, match="int32"):
        apply_token_bitmask_inplace(logits, good.astype(np.uint32))
    with pytest.raises(TypeError, match="floating"):
        apply_token_bitmask_inplace(np.zeros((2, 64), dtype=np.int32), good)
    with pytest.raises(ValueError, match="rows"):
        apply_token_bitmask_inplace(logits, allocate_token_bitmask(3, 64))
    with pytest.raises(ValueError, match="2-D"):
        apply_token_bitmask_inplace(np.zeros((1, 2, 64), dtype=np.float32), good)
    with pytest.raises(ValueError, match="indices"):
        apply_token_bitmask_inplace(logits, good, indices=[2])
    with pytest.raises(ValueError, match="indices"):
        apply_token_bitmask_inplace(logits, good, indices=[-1])
    with pytest.raises(TypeError, match="integers"):
        apply_token_bitmask_inplace(logits, good, indices=[0.5])
    with pytest.raises(ValueError, match="vocab_size"):
        apply_token_bitmask_inplace(logits, good, vocab_size=65)
    with pytest.raises(TypeError):
        apply_token_bitmask_inplace([[0.0]], good)  # type: ignore[arg-type]
    frozen = np.zeros((2, 64), dtype=np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        apply_token_bitmask_inplace(frozen, good)


def test_testing_helpers_roundtrip():
    rng = np.random.default_rng(11)
    for v in (1, 31, 32, 33, 200):
        allowed = rng.random((3, v)) < 0.5
        packed = bool_to_bitmask(allowed)
        assert packed.dtype == np.int32 and packed.shape == (3, math.ceil(v / 32))
        np.testing.assert_array_equal(bitmask_to_bool(packed, v), allowed)
        assert allowed_ids(packed[1], v) == np.flatnonzero(allowed[1]).tolist()
    with pytest.raises(ValueError):
        bitmask_to_bool(np.zeros(1, dtype=np.int32), 33)
    with pytest.raises(TypeError):
        bitmask_to_bool(np.zeros(2, dtype=np.int64), 33)


# ---------------------------------------------------------------------- torch
@pytest.mark.hf
@pytest.mark.parametrize("batch,vocab,width,density", CASES)
def test_torch_cpu_matches_reference(batch, vocab, width, density):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(batch * 7 + vocab + width)
    logits_np, bitmask_np = random_case(rng, batch, vocab, width, density)
    want = _expected(logits_np, bitmask_np, None)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        logits = torch.from_numpy(logits_np).to(dtype)
        expected = torch.from_numpy(want).to(dtype)
        apply_token_bitmask_inplace(logits, torch.from_numpy(bitmask_np))
        assert torch.equal(logits, expected), dtype


@pytest.mark.hf
@pytest.mark.parametrize("seed", range(4))
def test_torch_indices_and_numpy_bitmask(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + seed)
    logits_np, bitmask_np = random_case(rng, 6, 200, 210, 0.3)
    indices = random.Random(seed).sample(range(6), k=3)
    want = torch.from_numpy(_expected(logits_np, bitmask_np, indices))
    logits = torch.from_numpy(logits_np.copy())
    apply_token_bitmask_inplace(logits, bitmask_np, torch.tensor(indices))  # numpy bitmask ok
    assert torch.equal(logits, want)
    # a non-contiguous view is masked in place too
    big = torch.from_numpy(np.repeat(logits_np, 2, axis=1))
    view = big[:, ::2]
    apply_token_bitmask_inplace(view, torch.from_numpy(bitmask_np), indices)
    assert torch.equal(big[:, ::2], want)


@pytest.mark.hf
def test_torch_allocate_and_errors():
    torch = pytest.importorskip("torch")
    m = allocate_token_bitmask(2, 70, backend="torch")
    assert isinstance(m, torch.Tensor) and m.dtype == torch.int32 and tuple(m.shape) == (2, 3)
    assert bool((m == -1).all())
    m.zero_()
    reset_token_bitmask(m)
    assert bool((m == -1).all())
    logits = torch.zeros(2, 70)
    with pytest.raises(TypeError, match="int32"):
        apply_token_bitmask_inplace(logits, m.to(torch.int64))
    with pytest.raises(TypeError, match="floating"):
        apply_token_bitmask_inplace(torch.zeros(2, 70, dtype=torch.int32), m)
    with pytest.raises(ValueError, match="rows"):
        apply_token_bitmask_inplace(torch.zeros(3, 70), m)
    with pytest.raises(ValueError, match="indices"):
        apply_token_bitmask_inplace(logits, m, [5])
    # numpy logits accept a CPU torch bitmask
    arr = np.zeros((2, 70), dtype=np.float32)
    m[0, 0] = 0
    apply_token_bitmask_inplace(arr, m)
    assert np.isinf(arr[0, :32]).all() and np.isfinite(arr[0, 32:]).all()


@pytest.mark.gpu
@pytest.mark.parametrize("batch,vocab,width,density", CASES)
def test_cuda_matches_reference(batch, vocab, width, density):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(batch + vocab * 3 + width)
    logits_np, bitmask_np = random_case(rng, batch, vocab, width, density)
    want = torch.from_numpy(_expected(logits_np, bitmask_np, None)).float()
    logits = torch.from_numpy(logits_np).float().cuda()
    apply_token_bitmask_inplace(logits, torch.from_numpy(bitmask_np).cuda())
    assert torch.equal(logits.cpu(), want)
    want_idx = torch.from_numpy(_expected(logits_np, bitmask_np, [batch - 1])).float()
    logits = torch.from_numpy(logits_np).float().cuda()
    apply_token_bitmask_inplace(logits, bitmask_np, [batch - 1])
    assert torch.equal(logits.cpu(), want_idx)
    with pytest.raises(ValueError, match="device"):
        apply_token_bitmask_inplace(logits, torch.from_numpy(bitmask_np))


_TRITON_CHECK = """
import numpy as np, torch
from grammar.kernels.numpy_ref import apply_token_bitmask_numpy
from grammar.kernels.triton_kernel import apply_token_bitmask_triton
from grammar.testing import bool_to_bitmask
rng = np.random.default_rng(0)
for batch, vocab, width in [(1, 1, 1), (3, 33, 33), (2, 5000, 5000), (2, 257, 300), (4, 300, 257)]:
    for dtype in (torch.float32, torch.bfloat16):
        bm = bool_to_bitmask(rng.random((batch, ((vocab + 31) // 32) * 32)) < 0.5)
        lg = rng.standard_normal((batch, width)).astype(np.float32)
        v = min(width, bm.shape[1] * 32)
        for idx in (None, np.array([batch - 1])):
            ref = lg.copy()
            apply_token_bitmask_numpy(ref, bm, v, idx)
            t = torch.from_numpy(lg).to(dtype)
            apply_token_bitmask_triton(t, torch.from_numpy(bm), v, idx)
            assert torch.equal(t, torch.from_numpy(ref).to(dtype)), (batch, vocab, width, idx)
print("ok")
"""


@pytest.mark.slow
def test_triton_kernel_in_interpreter_mode():
    """The Triton kernel's semantics, run on the CPU by Triton's interpreter (no GPU needed)."""
    pytest.importorskip("triton")
    pytest.importorskip("torch")
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, "-c", _TRITON_CHECK], env=env, cwd=repo,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
