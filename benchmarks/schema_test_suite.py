#!/usr/bin/env python3
"""Our engine against the official JSON-Schema-Test-Suite, at token level.

For every test group (one schema and its instances) of every file under ``DIR/tests``: compile
the schema with our engine (``format`` is an annotation in core files and asserted under
``optional/format/``; ``$ref``s to ``http://localhost:1234/...`` resolve to ``DIR/remotes``),
then for each instance serialise ``json.dumps(grammar.schema.canonical_instance(schema,
data))``, tokenize it without special tokens and feed it token by token with EOS at the end.
A valid instance must be accepted, an invalid one rejected somewhere.  Counts cover the
compiled schemas only.  Each group runs in a worker process with a timeout and RSS watchdog.

Usage::

    .venv-bench/bin/python benchmarks/schema_test_suite.py \\
        --data /work/shared/data/json-schema-test-suite --out results/schema_test_suite.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import engines as E  # noqa: E402

REMOTE_BASE = "http://localhost:1234/"
DRAFT_URIS = {"draft7": "http://json-schema.org/draft-07/schema#",
              "draft2020-12": "https://json-schema.org/draft/2020-12/schema"}
KEYS = ("groups", "compiled", "unsupported", "failed", "valid_accepted", "valid_total",
        "invalid_rejected", "invalid_total")


def load_remotes(root: Path) -> dict[str, Any]:
    """``{"http://localhost:1234/<path>": document}`` for every JSON file under ``root``
    (the suite's ``remotes/`` folder)."""
    out = {}
    for p in sorted(root.rglob("*.json")):
        with open(p, encoding="utf-8") as f:
            out[REMOTE_BASE + p.relative_to(root).as_posix()] = json.load(f)
    return out


class SuiteHandler:
    """Worker-side: our engine, the remotes mapping, and ``grammar.schema.canonical_instance``."""

    def __init__(self, tokenizer: str, remotes_dir: str | None) -> None:
        self.eng, self.setup = E.make_engine("ours", tokenizer)
        from grammar.schema import canonical_instance  # noqa: PLC0415
        self.canonical_instance = canonical_instance
        self.remotes = load_remotes(Path(remotes_dir)) if remotes_dir else {}

    def info(self) -> dict[str, Any]:
        return {**self.setup, "remotes": len(self.remotes)}

    def run_group(self, schema: Any, tests: list[tuple[bool, Any]], format_assertion: bool
                  ) -> dict[str, Any]:
        eng = self.eng
        eng.clear_cache()
        try:
            h = eng.compile(schema, format_assertion=format_assertion, remotes=self.remotes)
        except E.CompileError as exc:
            return {"compiled": False, "kind": exc.kind, "error": str(exc)}
        bm = eng.allocate_bitmask()
        results = []
        for valid, data in tests:
            try:
                text = json.dumps(self.canonical_instance(schema, data, remotes=self.remotes))
                canon_error = None
            except Exception as exc:  # noqa: BLE001 - reported; the raw data is used instead
                text = json.dumps(data)
                canon_error = C.short_error(exc, 200)
            ids = eng.bundle.encode(text)
            accepted, why = self._feed(eng.new_matcher(h), ids, bm)
            results.append({"valid": valid, "accepted": accepted, "why": why,
                            "canonical_error": canon_error, "text": text[:200]})
        return {"compiled": True, "tests": results}

    def _feed(self, m: Any, ids: list[int], bm: Any) -> tuple[bool, str]:
        eng = self.eng
        try:
            for i, tid in enumerate(ids):
                eng.fill(m, bm)
                allowed = eng.is_allowed(bm, tid)
                ok = eng.accept(m, tid)
                if not (allowed and ok):
                    return False, (f"token {i} {eng.bundle.token_text(tid)!r} "
                                   f"{'refused by accept' if allowed else 'masked out'}")
            eng.fill(m, bm)
            if not eng.is_allowed(bm, eng.eos_id):
                return False, "EOS not allowed at the end"
        except Exception as exc:  # noqa: BLE001 - counted as a rejection, reported
            return False, f"exception: {C.short_error(exc, 200)}"
        return True, ""


def _zero() -> dict[str, int]:
    return {k: 0 for k in KEYS}


def part_of(rel: str) -> str:
    """``draft7/core``, ``draft7/optional``, ``draft7/format`` ... for the summary table."""
    parts = rel.split("/")
    draft = parts[1] if len(parts) > 2 else "?"
    if "/optional/format/" in rel:
        return f"{draft}/format"
    if "/optional/" in rel:
        return f"{draft}/optional"
    return f"{draft}/core"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path,
                    help="folder holding tests/ and remotes/ (JSON-Schema-Test-Suite layout)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--tokenizer", default="llama3", help="llama3 | mistral | PATH")
    ap.add_argument("--timeout-per-schema", type=float, default=60.0)
    ap.add_argument("--max-rss-mb", type=float, default=8192.0)
    ap.add_argument("--limit-files", type=int, default=None,
                    help="only the first N files (in path order), for quick checks")
    ap.add_argument("--no-draft-hint", action="store_true",
                    help="do not add the folder's draft as \"$schema\" to root schemas "
                         "that declare none")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = C.capture_env()
    tests_dir = args.data / "tests"
    files = sorted(tests_dir.rglob("*.json"))
    if args.limit_files is not None:
        files = files[: args.limit_files]
    if not files:
        raise SystemExit(f"no test files under {tests_dir}")
    bundle = E.load_tokenizer(args.tokenizer)
    remotes_dir = args.data / "remotes"
    worker = C.Worker("schema_test_suite:SuiteHandler",
                      {"tokenizer": args.tokenizer,
                       "remotes_dir": str(remotes_dir) if remotes_dir.is_dir() else None},
                      max_rss_mb=args.max_rss_mb)
    totals = _zero()
    per_file: dict[str, dict[str, int]] = {}
    per_part: dict[str, dict[str, int]] = {}
    failures: list[dict[str, Any]] = []
    unsupported: list[dict[str, Any]] = []
    canon_errors = 0
    n_groups = 0
    loaded = []
    for p in files:
        with open(p, encoding="utf-8") as f:
            loaded.append((p, json.load(f)))
        n_groups += len(loaded[-1][1])
    bar = C.progress(total=n_groups, desc="schema test suite")
    init_error = None
    try:
        for path, groups in loaded:
            rel = path.relative_to(args.data).as_posix()
            draft = path.relative_to(tests_dir).parts[0]
            fmt_assert = "/optional/format/" in f"/{rel}"
            fstats = per_file.setdefault(rel, _zero())
            pstats = per_part.setdefault(part_of(rel), _zero())
            for gi, group in enumerate(groups):
                schema = group["schema"]
                if (not args.no_draft_hint and isinstance(schema, dict)
                        and "$schema" not in schema and draft in DRAFT_URIS):
                    schema = {"$schema": DRAFT_URIS[draft], **schema}
                tests = [(bool(t["valid"]), t["data"]) for t in group["tests"]]
                res = worker.call("run_group", schema, tests, fmt_assert,
                                  timeout_s=args.timeout_per_schema)
                bar.update(1)
                for d in (totals, fstats, pstats):
                    d["groups"] += 1
                where = f"{rel}#{gi} {group['description']}"
                if res.status == "init_failed":
                    init_error = res.error
                    raise SystemExit(f"our engine could not start: {res.error}")
                if res.status != "ok":
                    for d in (totals, fstats, pstats):
                        d["failed"] += 1
                    failures.append({"group": where, "status": res.status,
                                     "detail": C.short_error(res.error or "", 300)})
                    continue
                r = res.value
                if not r["compiled"]:
                    for d in (totals, fstats, pstats):
                        d["unsupported"] += 1
                    unsupported.append({"group": where, "kind": r["kind"],
                                        "error": C.short_error(r["error"], 300)})
                    continue
                for d in (totals, fstats, pstats):
                    d["compiled"] += 1
                for t, desc in zip(r["tests"], group["tests"]):
                    canon_errors += t["canonical_error"] is not None
                    good = t["accepted"] == t["valid"]
                    key_ok, key_tot = (("valid_accepted", "valid_total") if t["valid"]
                                       else ("invalid_rejected", "invalid_total"))
                    for d in (totals, fstats, pstats):
                        d[key_tot] += 1
                        d[key_ok] += good
                    if not good:
                        failures.append({
                            "group": where, "test": desc["description"],
                            "status": "valid_rejected" if t["valid"] else "invalid_accepted",
                            "detail": t["why"] or "accepted", "instance": t["text"],
                            "canonical_error": t["canonical_error"]})
    finally:
        bar.close()
        worker.close()

    result: dict[str, Any] = {
        "benchmark": "schema_test_suite", **env, "tokenizer": bundle.info(),
        "engine": {"name": "ours", "setup": worker.init_info, "init_error": init_error,
                   "peak_rss_mb": worker.peak_rss_mb, "worker_starts": worker.starts},
        "params": {"data": str(args.data), "files": len(files), "groups": n_groups,
                   "timeout_per_schema_s": args.timeout_per_schema,
                   "draft_hint": not args.no_draft_hint,
                   "format_assertion": "on under optional/format/, off elsewhere",
                   "canonicalisation_errors": canon_errors},
        "totals": totals,
        "per_part": dict(sorted(per_part.items())),
        "per_file": per_file,
        "unsupported": unsupported,
        "failures": failures,
    }
    C.finish_env(result)
    C.write_json(args.out, C.clean_nan(result))
    rows = [[part, *[s[k] for k in KEYS]] for part, s in sorted(per_part.items())]
    rows.append(["total", *[totals[k] for k in KEYS]])
    print(C.table(["part", *KEYS], rows))
    print(f"canonicalisation errors: {canon_errors}; load average start "
          f"{result['load_avg_start']} end {result['load_avg_end']}")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
