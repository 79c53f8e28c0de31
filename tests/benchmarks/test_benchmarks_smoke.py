"""Smoke tests of the benchmark scripts: each runs end to end on the ``ours`` engine with tiny
limits, in the main test environment, and writes JSON of the documented shape.

The numbers are not checked (they are meaningless at this size); the shapes are, plus the
correctness verdicts on inputs small enough to know the answer.  Skipped while ``import
grammar`` lacks the names the ``ours`` adapter uses or the Llama 3 tokenizer is unavailable.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def _skip_reason() -> str | None:
    sys.path.insert(0, str(BENCH))
    try:
        import engines  # noqa: PLC0415
    finally:
        sys.path.remove(str(BENCH))
    why = engines.ours_api_available()
    if why:
        return f"our engine's API is not available: {why}"
    try:
        engines.load_tokenizer("llama3")
    except Exception as exc:  # noqa: BLE001
        return f"llama3 tokenizer unavailable: {exc}"
    return None


@pytest.fixture(scope="module")
def ready() -> None:
    why = _skip_reason()
    if why:
        pytest.skip(why)


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENCH_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=850)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


ENV_KEYS = {"git_sha", "machine", "versions", "load_avg_start", "load_avg_end", "argv"}


def _check_env(res: dict) -> None:
    assert ENV_KEYS <= res.keys()
    assert {"cpu_model", "cpu_count", "python"} <= res["machine"].keys()
    assert res["tokenizer"]["vocab_size"] == 128256


OBJ = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0},
                                        "tag": {"enum": ["a", "b"]}},
       "required": ["n"], "additionalProperties": False}


def test_maskbench_smoke(ready: None, tmp_path: Path) -> None:
    items = [
        {"file": "Tiny---obj.json", "subset": "Tiny", "description": "", "schema": OBJ,
         "tests": [{"description": "ok", "valid": True, "data": {"n": 3, "tag": "a"}},
                   {"description": "negative", "valid": False, "data": {"n": -1}},
                   {"description": "extra key", "valid": False, "data": {"n": 1, "x": 2}}]},
        {"file": "Tiny---notests.json", "subset": "Tiny", "description": "",
         "schema": {"type": "string"}, "tests": []},
        {"file": "Tiny---arr.json", "subset": "Tiny", "description": "",
         "schema": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
         "tests": [{"description": "ok", "valid": True, "data": [True, False]},
                   {"description": "too long", "valid": False, "data": [True, True, True]}]},
    ]
    data = tmp_path / "data"
    data.mkdir()
    with gzip.open(data / "Tiny.jsonl.gz", "wt", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")
    out = tmp_path / "mb.json"
    proc = run_script("maskbench.py", "--data", str(data), "--tokenizer", "llama3",
                      "--engines", "ours", "--limit", "3", "--seed", "0", "--out", str(out))
    assert "ours" in proc.stdout
    res = json.loads(out.read_text())
    _check_env(res)
    e = res["engines"]["ours"]
    assert {"version", "totals", "per_subset", "ttfm_ms", "mask_us"} <= e.keys()
    t = e["totals"]
    assert {"schemas", "passing", "compile_error", "validation_error", "invalidation_error",
            "timeout"} <= t.keys()
    assert t["schemas"] == 3 and t["no_tests"] == 1
    assert sum(t[k] for k in ("passing", "compile_error", "validation_error",
                              "invalidation_error", "timeout", "oom", "crash")) == 3
    assert set(e["ttfm_ms"]) >= {"p50", "p90", "p99"}
    assert set(e["mask_us"]) >= {"mean", "p50", "p99", "p999", "max"}
    assert e["per_subset"]["Tiny"]["schemas"] == 3


def test_schema_test_suite_smoke(ready: None, tmp_path: Path) -> None:
    d = tmp_path / "suite"
    (d / "tests" / "draft2020-12" / "optional" / "format").mkdir(parents=True)
    (d / "remotes").mkdir()
    (d / "remotes" / "integer.json").write_text(json.dumps({"type": "integer"}))
    core = [
        {"description": "integer", "schema": {"type": "integer"},
         "tests": [{"description": "int", "data": 1, "valid": True},
                   {"description": "str", "data": "1", "valid": False}]},
        {"description": "remote ref", "schema": {"$ref": "http://localhost:1234/integer.json"},
         "tests": [{"description": "int", "data": 7, "valid": True},
                   {"description": "null", "data": None, "valid": False}]},
    ]
    fmt = [{"description": "date", "schema": {"format": "date"},
            "tests": [{"description": "ok", "data": "2024-02-29", "valid": True}]}]
    (d / "tests" / "draft2020-12" / "type.json").write_text(json.dumps(core))
    (d / "tests" / "draft2020-12" / "optional" / "format" / "date.json").write_text(
        json.dumps(fmt))
    out = tmp_path / "sts.json"
    run_script("schema_test_suite.py", "--data", str(d), "--out", str(out))
    res = json.loads(out.read_text())
    _check_env(res)
    keys = {"compiled", "unsupported", "valid_accepted", "valid_total", "invalid_rejected",
            "invalid_total"}
    assert keys <= res["totals"].keys()
    assert set(res["per_file"]) == {"tests/draft2020-12/type.json",
                                    "tests/draft2020-12/optional/format/date.json"}
    for v in res["per_file"].values():
        assert keys <= v.keys()
    t = res["totals"]
    assert t["groups"] == 3
    assert res["engine"]["setup"]["remotes"] == 1  # DIR/remotes was loaded ...
    assert not any("remote" in u["group"] for u in res["unsupported"])  # ... and resolved
    assert t["valid_total"] + t["invalid_total"] <= 5
    assert t["valid_accepted"] <= t["valid_total"] and t["invalid_rejected"] <= t["invalid_total"]


def test_bench_tool_calls_smoke(ready: None, tmp_path: Path) -> None:
    out = tmp_path / "tc.json"
    proc = run_script("bench_tool_calls.py", "--tokenizer", "llama3", "--engines", "ours",
                      "--out", str(out), "--rounds", "1", "--cases", "args,oneof_8",
                      "--reps", "1", "--compile-reps", "1", "--cached-reps", "1")
    assert "args" in proc.stdout
    res = json.loads(out.read_text())
    _check_env(res)
    e = res["engines"]["ours"]
    assert "peak_rss_mb" in e
    assert set(e["cases"]) == {"args", "oneof_8"}
    for c in e["cases"].values():
        if c["status"] != "ok":  # an engine failure is recorded, never replaced by numbers
            assert c.get("error")
            continue
        assert {"compile_cold_ms", "compile_cached_ms", "mask_us", "valid_accepted",
                "probes_rejected", "probes_total"} <= c.keys()
        assert {"mean", "p50", "p99", "max"} <= c["mask_us"].keys()
        assert c["probes_total"] == (6 if c is e["cases"]["args"] else 8)
    assert res["cases"]["oneof_8"]["n_tools"] == 8


def test_same_schema_comparison_uses_the_schemas_both_engines_pass() -> None:
    import numpy as np
    sys.path.insert(0, str(BENCH))
    try:
        import maskbench  # noqa: PLC0415
    finally:
        sys.path.remove(str(BENCH))

    def ns(*us: float) -> np.ndarray:
        return np.asarray([int(u * 1000) for u in us], dtype=np.int64)

    by_schema = {
        "ours": {0: ("passing", ns(10, 30)), 1: ("passing", ns(1000)), 2: ("passing", ns(5)),
                 3: ("validation_error", ns(7))},
        "peer": {0: ("passing", ns(20, 20)), 1: ("compile_error", ns()),
                 2: ("passing", ns(5)), 3: ("passing", ns(9))},
    }
    res = maskbench.same_schema_comparison(by_schema, "ours")
    c = res["peer"]
    assert set(res) == {"peer"} and c["schemas"] == 2          # schemas 0 and 2 only
    assert c["ours"]["n"] == 3 and c["peer"]["n"] == 3
    assert c["ours"]["mean"] == pytest.approx(15.0) and c["peer"]["mean"] == pytest.approx(15.0)
    assert c["ratio"]["mean"] == pytest.approx(1.0)
    assert c["ratio"]["max"] == pytest.approx(30 / 20)
    empty = maskbench.same_schema_comparison({"ours": {0: ("passing", ns(1))},
                                              "peer": {0: ("timeout", ns())}}, "ours")
    assert empty["peer"]["schemas"] == 0 and empty["peer"]["ratio"]["mean"] is None
