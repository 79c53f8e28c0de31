"""Bitmask application kernels: ours vs xgrammar's vs a plain masked_fill, against the
memory-bandwidth floor.

Correctness first: every kernel's output is compared bit-exactly with the plain-Python
semantics (the numpy reference of :mod:`grammar.kernels.numpy_ref`).  Then each kernel is
timed (CUDA events on a GPU, ``perf_counter`` on CPU; median of many after warm-up) for
batch x vocab x dtype, with and without a row-index subset, and reported as a multiple of
the floor: (bytes of logits read + written + bitmask read) / copy bandwidth measured in the
same run (``dst.copy_(src)`` of a 256 MiB buffer).

Usage::

    python benchmarks/bench_apply_bitmask.py --out results/apply_bitmask.json          # GPU
    python benchmarks/bench_apply_bitmask.py --quick --out results/apply_bitmask_cpu.json

Output: JSON ``{"device": {...}, "bandwidth_gbps": ..., "rows": [{"kernel", "batch",
"vocab", "dtype", "indices", "ok", "median_us", "floor_us", "x_floor"}]}`` and a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402


def device_info(torch: Any, dev: str) -> dict[str, Any]:
    info: dict[str, Any] = {"type": dev, "torch": torch.__version__, "git": C.git_info()}
    if dev == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, total_memory_gb=round(p.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, capability=f"{p.major}.{p.minor}")
        try:
            import subprocess
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                             "--format=csv,noheader"], capture_output=True,
                                            text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            info["driver"] = None
    else:
        info.update(name=C.cpu_model(), driver=None)
    return info


def timer(torch: Any, dev: str, fn: Callable[[], None], reps: int, warmup: int = 5) -> float:
    """Median microseconds of ``fn``."""
    for _ in range(warmup):
        fn()
    times = []
    if dev == "cuda":
        torch.cuda.synchronize()
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
    else:
        for _ in range(reps):
            t = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - t) / 1e3)
    return statistics.median(times)


def copy_bandwidth(torch: Any, dev: str) -> float:
    """Bytes per second of a device-to-device copy (read + write counted)."""
    n = (64 << 20) if dev == "cuda" else (16 << 20)   # float32 elements: 256 MiB / 64 MiB
    src = torch.randn(n, device=dev)
    dst = torch.empty_like(src)
    us = timer(torch, dev, lambda: dst.copy_(src), reps=20)
    return 2 * n * 4 / (us / 1e6)


def kernels(torch: Any) -> dict[str, Callable[..., None]]:
    from grammar.bitmask import apply_token_bitmask_inplace

    ks: dict[str, Callable[..., None]] = {
        "ours": lambda logits, bm, idx: apply_token_bitmask_inplace(logits, bm, indices=idx)}

    def masked_fill(logits: Any, bm: Any, idx: Any) -> None:
        vocab = logits.shape[-1]
        shifts = torch.arange(32, device=bm.device, dtype=torch.int32)
        rows = bm if idx is None else bm[torch.as_tensor(idx, device=bm.device)]
        bits = ((rows.unsqueeze(-1) >> shifts) & 1).reshape(rows.shape[0], -1)[:, :vocab] == 0
        if idx is None:
            logits.masked_fill_(bits, float("-inf"))
        else:
            t = torch.as_tensor(idx, device=logits.device)
            logits[t] = logits[t].masked_fill(bits, float("-inf"))
    ks["masked_fill"] = masked_fill
    try:
        import xgrammar as xgr

        def xg(logits: Any, bm: Any, idx: Any) -> None:
            xgr.apply_token_bitmask_inplace(logits, bm, indices=None if idx is None else list(idx))
        ks["xgrammar"] = xg
    except Exception:  # noqa: BLE001 - not installed in this environment
        pass
    return ks


def reference(logits: np.ndarray, bm: np.ndarray, idx: list[int] | None) -> np.ndarray:
    from grammar.kernels.numpy_ref import apply_token_bitmask_numpy
    out = logits.copy()
    apply_token_bitmask_numpy(out, bm, out.shape[-1], None if idx is None else np.asarray(idx))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="small sizes (CPU, tests)")
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args(argv)

    import torch

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.quick:
        batches, vocabs, dtypes = [1, 16], [32000, 128256], ["float32"]
        reps = args.reps or 10
    else:
        batches, vocabs = [1, 16, 64, 256, 1024], [128256, 32000]
        dtypes = ["float32", "bfloat16"]
        reps = args.reps or 100
    env = C.capture_env(argv)
    bw = copy_bandwidth(torch, dev)
    ks = kernels(torch)
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    grid = [(b, v, d, sub) for v in vocabs for b in batches for d in dtypes for sub in (False, True)]
    for batch, vocab, dtype, sub in C.progress(grid, desc="apply kernels"):
        words = (vocab + 31) // 32
        base = rng.standard_normal((batch, vocab), dtype=np.float32)
        bm_np = rng.integers(-2**31, 2**31 - 1, size=(batch, words), dtype=np.int64).astype(np.int32)
        idx = sorted(rng.choice(batch, size=max(1, batch // 2), replace=False).tolist()) if sub else None
        tdt = getattr(torch, dtype)
        ref = reference(torch.from_numpy(base).to(tdt).float().numpy(), bm_np, idx)
        bm = torch.from_numpy(bm_np).to(dev)
        rows_touched = batch if idx is None else len(idx)
        el = 2 if dtype == "bfloat16" else 4
        floor_us = (rows_touched * vocab * el * 2 + rows_touched * words * 4) / bw * 1e6
        for name, fn in ks.items():
            logits = torch.from_numpy(base).to(tdt).to(dev)
            try:
                fn(logits, bm, idx)
                got = logits.float().cpu().numpy()
                ok = bool(np.array_equal(np.isneginf(got), np.isneginf(ref))
                          and np.array_equal(got[~np.isneginf(ref)], ref[~np.isneginf(ref)]))
            except Exception as e:  # noqa: BLE001 - recorded, not hidden
                rows.append({"kernel": name, "batch": batch, "vocab": vocab, "dtype": dtype,
                             "indices": sub, "ok": False, "error": C.short_error(e)})
                continue
            work = torch.from_numpy(base).to(tdt).to(dev)
            us = timer(torch, dev, lambda: fn(work, bm, idx), reps)
            rows.append({"kernel": name, "batch": batch, "vocab": vocab, "dtype": dtype,
                         "indices": sub, "ok": ok, "median_us": round(us, 2),
                         "floor_us": round(floor_us, 2), "x_floor": round(us / floor_us, 2)})
    result = C.finish_env({**env, "device": device_info(torch, dev),
                           "bandwidth_gbps": round(bw / 1e9, 1), "rows": rows})
    C.write_json(args.out, result)
    print(f"device: {result['device'].get('name')} ({dev}); copy bandwidth {bw / 1e9:.1f} GB/s")
    print(C.table(["kernel", "batch", "vocab", "dtype", "idx", "ok", "median us", "x floor"],
                  [[r["kernel"], r["batch"], r["vocab"], r["dtype"], "yes" if r["indices"] else "no",
                    "yes" if r["ok"] else "NO", r.get("median_us", r.get("error")), r.get("x_floor")]
                   for r in rows]))
    bad = [r for r in rows if not r["ok"] and r["kernel"] == "ours"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
