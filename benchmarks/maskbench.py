#!/usr/bin/env python3
"""MaskBench-style correctness and speed over JSONSchemaBench schemas, engines side by side.

For every sampled schema and every engine (each in its own worker process, same tokenizer,
same token ids): compile cold (cache cleared) and compute the first mask -- *TTFM* -- then
feed each test instance token by token, filling a full-vocabulary bitmask before every token
and once more at the end for EOS.  A valid instance must be accepted (every token's bit set
and ``accept`` true, EOS allowed at the end); an invalid one must be rejected somewhere.

Each (engine, schema) is classified as in MaskBench: ``passing``, ``compile_error``,
``validation_error`` (a valid instance rejected; takes precedence), ``invalidation_error`` (an
invalid instance accepted) or ``timeout`` (the worker was killed after
``--timeout-per-schema`` seconds); a worker killed by the RSS watchdog counts as ``oom`` and one
that died by itself as ``crash``.  A schema without tests that compiles counts as passing (it
is also counted under ``no_tests``).

Instances are serialised with ``json.dumps(data)`` (default separators, the instance's own key
order, ``ensure_ascii=True``) and tokenized without special tokens, once, by the parent.

Usage::

    .venv-bench/bin/python benchmarks/maskbench.py --data /work/shared/data/jsonschemabench \\
        --tokenizer llama3 --engines ours,llguidance,xgrammar --limit 200 --seed 0 \\
        --out results/maskbench.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import engines as E  # noqa: E402

STATUSES = ("passing", "compile_error", "validation_error", "invalidation_error", "timeout",
            "oom", "crash")
MAX_FAILURES_LISTED = 5000


# --------------------------------------------------------------------------------------------
# data (parent side)
# --------------------------------------------------------------------------------------------


def data_files(data_dir: Path) -> list[Path]:
    files = sorted(data_dir.glob("*.jsonl.gz"))
    if not files:
        raise SystemExit(f"no *.jsonl.gz under {data_dir}")
    return files


def index_lines(files: list[Path]) -> list[tuple[int, int]]:
    """``(file index, line number)`` of every schema, in file-name then line order."""
    out = []
    for fi, path in enumerate(files):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for li, line in enumerate(f):
                if line.strip():
                    out.append((fi, li))
    return out


def sample(index: list[tuple[int, int]], limit: int | None, seed: int) -> list[tuple[int, int]]:
    """The same deterministic sample for every engine and every run with this seed."""
    if limit is None or limit >= len(index):
        return list(index)
    picked = sorted(random.Random(seed).sample(range(len(index)), limit))
    return [index[i] for i in picked]


def read_items(files: list[Path], wanted: list[tuple[int, int]]) -> Iterator[dict[str, Any]]:
    by_file: dict[int, set[int]] = {}
    for fi, li in wanted:
        by_file.setdefault(fi, set()).add(li)
    for fi in sorted(by_file):
        lines = by_file[fi]
        with gzip.open(files[fi], "rt", encoding="utf-8") as f:
            for li, line in enumerate(f):
                if li in lines:
                    yield json.loads(line)


def serialise(data: Any, ensure_ascii: bool = True) -> str:
    return json.dumps(data, ensure_ascii=ensure_ascii)


# --------------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------------


class MaskBenchHandler:
    """Worker-side: one engine; ``run_schema`` evaluates one schema with its tests."""

    def __init__(self, engine: str, tokenizer: str) -> None:
        self.eng, self.setup = E.make_engine(engine, tokenizer)

    def info(self) -> dict[str, Any]:
        return self.setup

    def run_schema(self, schema: Any, tests: list[tuple[bool, list[int]]]) -> dict[str, Any]:
        eng = self.eng
        now = C.now_ns
        fills: list[int] = []
        eng.clear_cache()
        bm = eng.allocate_bitmask()
        with C.gc_disabled():
            t0 = now()
            try:
                h = eng.compile(schema)
                t1 = now()
                m = eng.new_matcher(h)
                eng.fill(m, bm)
                t2 = now()
            except E.CompileError as exc:
                return {"status": "compile_error", "error": str(exc), "kind": exc.kind}
            except Exception as exc:  # noqa: BLE001 - an engine bug at compile/first mask
                return {"status": "compile_error", "error": C.short_error(exc),
                        "kind": "exception"}
        out: dict[str, Any] = {"compile_ms": (t1 - t0) / 1e6, "ttfm_ms": (t2 - t0) / 1e6}
        fills.append(t2 - t1)  # the first mask is a mask too (new_matcher included, as TTFM)
        valid_bad: list[str] = []
        invalid_bad: list[str] = []
        errors: list[str] = []
        mismatches = 0
        first = True
        for ti, (valid, ids) in enumerate(tests):
            if not first:
                m = eng.new_matcher(h)
            r = self._feed(m, ids, bm, fills, skip_first_fill=first)
            first = False
            mismatches += r["mismatches"]
            if r["error"]:
                errors.append(f"test {ti}: {r['error']}")
            if valid and not r["accepted"]:
                valid_bad.append(f"test {ti}: {r['why']}")
            elif not valid and r["accepted"]:
                invalid_bad.append(f"test {ti}")
        if valid_bad:
            status = "validation_error"
        elif invalid_bad:
            status = "invalidation_error"
        else:
            status = "passing"
        out.update(status=status, mask_ns=np.asarray(fills, dtype=np.int64).tobytes(),
                   valid_rejected=valid_bad[:5], invalid_accepted=invalid_bad[:5],
                   errors=errors[:5], mask_accept_mismatches=mismatches,
                   n_valid=sum(1 for v, _ in tests if v),
                   n_invalid=sum(1 for v, _ in tests if not v))
        return out

    def _feed(self, m: Any, ids: list[int], bm: np.ndarray, fills: list[int], *,
              skip_first_fill: bool) -> dict[str, Any]:
        """Feed one instance; the mask for step 0 is already in ``bm`` when
        ``skip_first_fill`` (TTFM computed it)."""
        eng = self.eng
        now = C.now_ns
        mismatches = 0
        try:
            with C.gc_disabled():
                for i, tid in enumerate(ids):
                    if i or not skip_first_fill:
                        t0 = now()
                        eng.fill(m, bm)
                        fills.append(now() - t0)
                    allowed = eng.is_allowed(bm, tid)
                    ok = eng.accept(m, tid)
                    if allowed != ok:
                        mismatches += 1
                    if not (allowed and ok):
                        return {"accepted": False, "mismatches": mismatches, "error": None,
                                "why": f"token {i} {eng.bundle.token_text(tid)!r} "
                                       f"{'refused by accept' if allowed else 'masked out'}"}
                if ids or not skip_first_fill:
                    t0 = now()
                    eng.fill(m, bm)
                    fills.append(now() - t0)
                if not eng.is_allowed(bm, eng.eos_id):
                    return {"accepted": False, "mismatches": mismatches, "error": None,
                            "why": "EOS not allowed at the end"}
        except Exception as exc:  # noqa: BLE001 - counted as a rejection, reported
            return {"accepted": False, "mismatches": mismatches, "error": C.short_error(exc),
                    "why": f"exception: {C.short_error(exc, 120)}"}
        return {"accepted": True, "mismatches": mismatches, "error": None, "why": ""}


# --------------------------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------------------------


def _zero() -> dict[str, int]:
    return {"schemas": 0, **{s: 0 for s in STATUSES}, "no_tests": 0}


class EngineStats:
    def __init__(self, name: str) -> None:
        self.name = name
        self.totals = _zero()
        self.per_subset: dict[str, dict[str, int]] = {}
        self.ttfm: list[float] = []
        self.compile_ms: list[float] = []
        self.mask_chunks: list[np.ndarray] = []
        self.failures: list[dict[str, Any]] = []
        self.compile_error_kinds: Counter[str] = Counter()
        self.mismatches = 0
        self.validation_error_u_escape = 0
        self.setup: dict[str, Any] | None = None
        self.version: str | None = None
        self.init_error: str | None = None
        # per sampled schema (its position in the sample): status and mask timings (ns)
        self.by_schema: dict[int, tuple[str, np.ndarray]] = {}

    def add(self, item: dict[str, Any], rec: dict[str, Any], n_tests: int,
            u_escape: bool = False, position: int | None = None) -> None:
        status = rec["status"]
        if position is not None:
            self.by_schema[position] = (status, np.frombuffer(rec.get("mask_ns") or b"",
                                                              dtype=np.int64))
        if u_escape and status == "validation_error":
            self.validation_error_u_escape += 1
        sub = self.per_subset.setdefault(item["subset"], _zero())
        for d in (self.totals, sub):
            d["schemas"] += 1
            d[status] += 1
            if n_tests == 0:
                d["no_tests"] += 1
        if "ttfm_ms" in rec:
            self.ttfm.append(rec["ttfm_ms"])
            self.compile_ms.append(rec["compile_ms"])
        if rec.get("mask_ns"):
            self.mask_chunks.append(np.frombuffer(rec["mask_ns"], dtype=np.int64))
        self.mismatches += rec.get("mask_accept_mismatches", 0)
        if status == "compile_error":
            self.compile_error_kinds[rec.get("kind", "error")] += 1
        if status != "passing" and len(self.failures) < MAX_FAILURES_LISTED:
            detail = (rec.get("error") or "; ".join(rec.get("valid_rejected") or [])
                      or "; ".join(rec.get("invalid_accepted") or []))
            self.failures.append({"subset": item["subset"], "file": item.get("file"),
                                  "status": status, "detail": C.short_error(detail or "", 300)})

    def result(self) -> dict[str, Any]:
        masks = (np.concatenate(self.mask_chunks) if self.mask_chunks
                 else np.zeros(0, dtype=np.int64))
        ms = C.summarize(masks, scale=1e-3, percentiles=(50, 99, 99.9))
        tt = C.summarize(self.ttfm, percentiles=(50, 90, 99))
        return {
            "version": self.version,
            "setup": self.setup,
            "init_error": self.init_error,
            "totals": self.totals,
            "per_subset": dict(sorted(self.per_subset.items())),
            "ttfm_ms": {k: tt[k] for k in ("p50", "p90", "p99")} | {"n": tt["n"],
                                                                    "mean": tt["mean"],
                                                                    "max": tt["max"]},
            "compile_ms": {k: v for k, v in C.summarize(self.compile_ms,
                                                         percentiles=(50, 90, 99)).items()
                           if k in ("n", "mean", "p50", "p90", "p99", "max")},
            "mask_us": {k: ms[k] for k in ("mean", "p50", "p99", "p999", "max")}
                       | {"n": ms["n"]},
            "compile_error_kinds": dict(self.compile_error_kinds),
            "mask_accept_mismatches": self.mismatches,
            "validation_errors_with_u_escape": self.validation_error_u_escape,
            "failures": self.failures,
        }


def same_schema_comparison(by_schema: dict[str, dict[int, tuple[str, np.ndarray]]],
                           ref: str) -> dict[str, Any]:
    """Mask times of ``ref`` against each other engine on the same work: the schemas that
    both engines pass, so that both fed the same instances and the same tokens (a valid
    instance to its end, an invalid one until its rejection).  The per-engine ``mask_us``
    cover every schema an engine compiled, which differ between engines (an engine that
    fails to compile a hard schema also skips its masks).

    Returns ``{OTHER: {"schemas", REF: {mask stats}, OTHER: {mask stats}, "ratio": {stat:
    REF / OTHER}}}``, mask stats in µs."""
    out: dict[str, Any] = {}
    mine = by_schema.get(ref, {})
    for other, theirs in by_schema.items():
        if other == ref:
            continue
        common = sorted(i for i, (st, _m) in mine.items()
                        if st == "passing" and theirs.get(i, ("",))[0] == "passing")
        entry: dict[str, Any] = {"schemas": len(common)}
        for name, table in ((ref, mine), (other, theirs)):
            arr = (np.concatenate([table[i][1] for i in common]) if common
                   else np.zeros(0, dtype=np.int64))
            ms = C.summarize(arr, scale=1e-3, percentiles=(50, 99, 99.9))
            entry[name] = {k: ms[k] for k in ("n", "mean", "p50", "p99", "p999", "max")}
        entry["ratio"] = {k: (entry[ref][k] / entry[other][k]
                              if entry[ref][k] is not None and entry[other][k] else None)
                          for k in ("mean", "p50", "p99", "p999", "max")}
        out[other] = entry
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="folder of *.jsonl.gz")
    ap.add_argument("--tokenizer", default="llama3", help="llama3 | mistral | PATH")
    ap.add_argument("--engines", default="ours,llguidance,xgrammar")
    ap.add_argument("--limit", type=int, default=None, help="evaluate a sample of N schemas")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    ap.add_argument("--timeout-per-schema", type=float, default=30.0,
                    help="seconds per (engine, schema); the worker is killed past it")
    ap.add_argument("--max-rss-mb", type=float, default=8192.0, help="RSS watchdog limit")
    ap.add_argument("--out", required=True, type=Path)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engines = E.parse_engines(args.engines)
    env = C.capture_env()
    files = data_files(args.data)
    index = index_lines(files)
    wanted = sample(index, args.limit, args.seed)
    bundle = E.load_tokenizer(args.tokenizer)
    C.log(f"maskbench: {len(wanted)} of {len(index)} schemas, engines {', '.join(engines)}")

    stats = {e: EngineStats(e) for e in engines}
    workers = {e: C.Worker("maskbench:MaskBenchHandler",
                           {"engine": e, "tokenizer": args.tokenizer},
                           max_rss_mb=args.max_rss_mb) for e in engines}
    dead: set[str] = set()
    n_instances = n_tokens = 0
    bar = C.progress(total=len(wanted), desc="maskbench")
    try:
        for position, item in enumerate(read_items(files, wanted)):
            tests = []
            u_escape = False
            for t in item.get("tests") or []:
                text = serialise(t["data"])
                u_escape = u_escape or (bool(t["valid"]) and "\\u" in text)
                ids = bundle.encode(text)
                tests.append((bool(t["valid"]), ids))
                n_instances += 1
                n_tokens += len(ids)
            for e in engines:
                if e in dead:
                    continue
                w = workers[e]
                res = w.call("run_schema", item["schema"], tests,
                             timeout_s=args.timeout_per_schema)
                if res.status == "init_failed":
                    stats[e].init_error = res.error
                    dead.add(e)
                    bar.write(f"{e}: worker could not start: {res.error}")
                    continue
                if stats[e].setup is None and w.init_info:
                    stats[e].setup = w.init_info
                    stats[e].version = w.init_info.get("version")
                if res.status == "ok":
                    rec = res.value
                elif res.status == "error":  # the harness itself raised: report, count crash
                    rec = {"status": "crash", "error": res.error}
                else:
                    rec = {"status": res.status, "error": res.error}
                stats[e].add(item, rec, len(tests), u_escape, position)
            bar.update(1)
            bar.set_postfix_str(" ".join(f"{e[:4]}:{stats[e].totals['passing']}"
                                         for e in engines))
    finally:
        bar.close()
        for w in workers.values():
            w.close()

    result: dict[str, Any] = {
        "benchmark": "maskbench", **env, "tokenizer": bundle.info(),
        "params": {"data": str(args.data), "limit": args.limit, "seed": args.seed,
                   "timeout_per_schema_s": args.timeout_per_schema,
                   "max_rss_mb": args.max_rss_mb, "schemas_available": len(index),
                   "schemas_evaluated": len(wanted), "instances": n_instances,
                   "instance_tokens": n_tokens, "serialisation": "json.dumps(data)",
                   "no_tests_policy": "a schema without tests that compiles counts as passing"},
        "engines": {},
    }
    for e in engines:
        r = stats[e].result()
        r["peak_rss_mb"] = workers[e].peak_rss_mb
        r["worker_starts"] = workers[e].starts
        result["engines"][e] = r
    result["same_schemas"] = same_schema_comparison(
        {e: stats[e].by_schema for e in engines}, engines[0])
    C.finish_env(result)
    C.write_json(args.out, C.clean_nan(result))
    print_table(result)
    print(f"\nwrote {args.out}")
    return 0


def print_table(result: dict[str, Any]) -> None:
    rows = []
    for e, r in result["engines"].items():
        t = r["totals"]
        tt, mu = r["ttfm_ms"], r["mask_us"]
        rows.append([e, r["version"] or "-", t["schemas"], t["passing"], t["compile_error"],
                     t["validation_error"], t["invalidation_error"], t["timeout"],
                     t["oom"] + t["crash"], tt["p50"], tt["p90"], tt["p99"], mu["mean"],
                     mu["p50"], mu["p99"], mu["p999"], mu["max"]])
    print(C.table(["engine", "version", "schemas", "pass", "compile_err", "valid_err",
                   "invalid_err", "timeout", "oom/crash", "ttfm p50 ms", "p90", "p99",
                   "mask mean us", "p50", "p99", "p99.9", "max"], rows))
    same = result.get("same_schemas") or {}
    ref = next(iter(result["engines"]), None)
    if same:
        rows = []
        for other, c in same.items():
            r = c["ratio"]
            rows.append([f"{ref} / {other}", c["schemas"], c[ref]["n"], c[other]["n"],
                         r["mean"], r["p50"], r["p99"], r["p999"]])
        print("\nmask time on the schemas both engines pass (same instances, same tokens):")
        print(C.table(["engines", "schemas", "masks", "masks (other)", "mean ratio", "p50",
                       "p99", "p99.9"], rows))
    p = result["params"]
    print(f"{p['schemas_evaluated']} schemas, {p['instances']} instances, "
          f"{p['instance_tokens']} tokens; load average start {result.get('load_avg_start')} "
          f"end {result.get('load_avg_end')}")


if __name__ == "__main__":
    sys.exit(main())
