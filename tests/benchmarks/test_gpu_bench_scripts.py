"""The GPU benchmark scripts run (and check correctness) on CPU with --quick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.hf]
ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, out: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--device", "cpu",
                        "--out", str(out), *extra], capture_output=True, text=True, timeout=900,
                       env={"BENCH_PROGRESS": "0", "HF_HUB_OFFLINE": "1",
                            **{k: v for k, v in __import__("os").environ.items()}})
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(out.read_text())


def test_bench_apply_bitmask_quick(tmp_path):
    res = _run("bench_apply_bitmask.py", tmp_path / "apply.json", "--reps", "3")
    assert res["device"]["type"] == "cpu" and res["device"]["torch"]
    assert res["bandwidth_gbps"] > 0
    ours = [r for r in res["rows"] if r["kernel"] == "ours"]
    assert ours and all(r["ok"] for r in ours)
    assert all(r["x_floor"] > 0 for r in ours)
    assert {r["indices"] for r in ours} == {True, False}


def test_bench_decode_overhead_quick(tmp_path):
    res = _run("bench_decode_overhead.py", tmp_path / "decode.json", "--batches", "1,2", "--steps", "4")
    assert res["device"]["type"] == "cpu"
    assert {r["tool_choice"] for r in res["rows"]} == {"auto", "required"}
    for r in res["rows"]:
        assert r["step_ms_on"] > 0 and r["step_ms_off"] > 0 and r["tok_s_on"] > 0


def test_bench_generate_quick(tmp_path):
    out = tmp_path / "gen.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_generate.py"), "--quick",
                        "--max-new-tokens", "16", "--out", str(out)], capture_output=True, text=True,
                       timeout=900, env={**__import__("os").environ, "BENCH_PROGRESS": "0"})
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert {row["tool_choice"] for row in res["rows"]} == {"auto", "required"}
    assert all(row["invalid_on"] == 0 and row["tok_s_on"] > 0 for row in res["rows"])
