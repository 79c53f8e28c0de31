#!/usr/bin/env python3
"""Per-token mask cost, compile time and correctness on a realistic function-calling workload.

Cases (see benchmarks/README.md and docs/peer-engines.md section 2):

* ``args``      -- the arguments of ``create_calendar_event`` (benchmarks/data/).
* ``oneof_N``   -- ``{"anyOf": [{"type": "object", "properties": {"name": {"const": NAME},
  "arguments": SCHEMA}, "required": ["name", "arguments"], "additionalProperties": false}, ...]}``
  over N tools for N = 1, 8, 64: N-1 distractors (benchmarks/data/distractor_tools.json) and
  the called tool listed last.

Every engine is fed the same ``json.dumps`` output (default separators, schema key order),
tokenized once by the parent.  Each (engine, case) runs in a fresh subprocess (timeout + RSS
watchdog): cold compiles (median of ``--compile-reps``, cache cleared each time), a *first
pass* on a fresh matcher, correctness (valid output accepted with EOS at the end; invalid
probes rejected), the cached-compile path, then ``--reps`` *steady* passes on fresh matchers
of the same compiled grammar.  The whole measurement is repeated ``--rounds`` times and the
median round (by steady mean mask time) is reported.

Usage::

    .venv-bench/bin/python benchmarks/bench_tool_calls.py --tokenizer llama3 \\
        --engines ours,llguidance,xgrammar --out results/tool_calls.json [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import engines as E  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent / "data"
CASES = ("args", "oneof_1", "oneof_8", "oneof_64")
CALLED_TOOL = "create_calendar_event"
DENSE_FRACTION = 0.5    # a step is "dense" when more than half the vocabulary is allowed
SPARSE_MAX = 1500       # ... and "sparse" when at most this many tokens are allowed


# --------------------------------------------------------------------------------------------
# workload (parent side)
# --------------------------------------------------------------------------------------------


def load_workload() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    with open(DATA_DIR / "create_calendar_event.json", encoding="utf-8") as f:
        cal = json.load(f)
    with open(DATA_DIR / "distractor_tools.json", encoding="utf-8") as f:
        templates = json.load(f)["templates"]
    return cal["tool"], cal["valid_arguments"], templates


def distractor(templates: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Distractor ``k``: template ``k % len(templates)`` with every ``{i}`` replaced by ``k``."""
    text = json.dumps(templates[k % len(templates)]).replace("{i}", str(k))
    return json.loads(text)


def oneof_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"anyOf": [{"type": "object",
                       "properties": {"name": {"const": t["name"]}, "arguments": t["parameters"]},
                       "required": ["name", "arguments"], "additionalProperties": False}
                      for t in tools]}


def dumps(obj: Any, ensure_ascii: bool) -> str:
    """The serialisation every engine is fed: ``json.dumps`` default separators."""
    return json.dumps(obj, ensure_ascii=ensure_ascii)


def build_cases(names: list[str], ensure_ascii: bool = False) -> dict[str, dict[str, Any]]:
    """Schema, valid output text and probe definitions of each case (texts, not tokens).

    ``alt_doc`` is the same output serialised with the other ``ensure_ascii`` setting: it is
    checked once per engine (not timed), since ``\\u00e9``-style escapes and raw UTF-8 exercise
    different paths.
    """
    tool, args, templates = load_workload()
    args_text = dumps(args, ensure_ascii)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == "args":
            schema, doc, n_tools = tool["parameters"], args_text, 1
        elif name.startswith("oneof_"):
            n_tools = int(name.split("_", 1)[1])
            tools = [distractor(templates, k) for k in range(n_tools - 1)] + [tool]
            names_seen = [t["name"] for t in tools]
            assert len(set(names_seen)) == len(names_seen), "tool names must be distinct"
            schema = oneof_schema(tools)
            doc = dumps({"name": CALLED_TOOL, "arguments": args}, ensure_ascii)
        else:
            raise SystemExit(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        alt = json.loads(doc)
        out[name] = {"schema": schema, "doc": doc, "n_tools": n_tools,
                     "alt_doc": dumps(alt, not ensure_ascii), "ensure_ascii": ensure_ascii,
                     "probes": probes_for(doc, args_text, oneof=name != "args")}
    return out


def _upto(doc: str, marker: str, start: int = 0) -> str:
    i = doc.index(marker, start)
    return doc[: i + len(marker)]


def probes_for(doc: str, args_text: str, *, oneof: bool) -> list[dict[str, Any]]:
    """Invalid continuations: ``prefix`` (a prefix of the valid ``doc``) + ``bad``.

    ``complete``: the invalid text is a whole document, so an engine that accepts every token
    must still refuse EOS at the end; otherwise only a refused token counts.
    """
    off = doc.index(args_text)
    p = [
        {"name": "non_object_start", "prefix": "", "bad": '["Q3 roadmap review"]',
         "complete": True},
        {"name": "unknown_key", "prefix": _upto(doc, '"title": "Q3 roadmap review", ', off),
         "bad": '"colour": "blue", ', "complete": False},
        {"name": "out_of_enum_nested", "prefix": _upto(doc, '"timezone": "', off),
         "bad": 'Mars/Olympus_Mons"}', "complete": False},
        {"name": "string_for_integer", "prefix": _upto(doc, '"duration_minutes": ', off),
         "bad": '"90", ', "complete": False},
        {"name": "number_in_string_array", "prefix": _upto(doc, '"attendees": [', off),
         "bad": '42, "x@example.com"], ', "complete": False},
        {"name": "comma_after_end", "prefix": doc, "bad": ", ", "complete": False},
    ]
    if oneof:
        p += [
            {"name": "unknown_tool_name", "prefix": _upto(doc, '{"name": "'),
             "bad": 'delete_all_events", "arguments": {}}', "complete": True},
            {"name": "other_tool_key", "prefix": _upto(doc, '"arguments": {'),
             "bad": '"query": "roadmap"}}', "complete": True},
        ]
    for q in p:
        assert doc.startswith(q["prefix"]), q["name"]
    return p


def tokens_inside(bundle: E.TokenizerBundle, ids: list[int], prefix: str) -> int:
    """How many leading tokens of ``ids`` decode to text lying entirely inside ``prefix``."""
    k = 0
    while k < len(ids):
        text = bundle.tk.decode(ids[: k + 1], skip_special_tokens=False)
        if "\ufffd" in text or not prefix.startswith(text):
            break
        k += 1
    return k


def tokenize_cases(cases: dict[str, dict[str, Any]], bundle: E.TokenizerBundle) -> None:
    for case in cases.values():
        case["doc_ids"] = bundle.encode(case["doc"])
        case["alt_ids"] = bundle.encode(case["alt_doc"])
        for q in case["probes"]:
            text = q["prefix"] + q["bad"]
            q["ids"] = bundle.encode(text)
            q["k"] = tokens_inside(bundle, q["ids"], q["prefix"])
            q["k_valid"] = tokens_inside(bundle, case["doc_ids"], q["prefix"])


# --------------------------------------------------------------------------------------------
# measurement (worker side)
# --------------------------------------------------------------------------------------------


class ToolCallHandler:
    """Worker-side: one engine, one tokenizer; ``run_case`` measures one case."""

    def __init__(self, engine: str, tokenizer: str) -> None:
        self.eng, self.setup = E.make_engine(engine, tokenizer)

    def info(self) -> dict[str, Any]:
        return self.setup

    def _pass(self, m: Any, ids: list[int], bm: np.ndarray, *, density: bool = False
              ) -> dict[str, Any]:
        """Feed ``ids``: fill (timed), check the token's bit, accept (timed); then one more
        fill for EOS.  Stops at the first refused token."""
        eng = self.eng
        fill_ns: list[int] = []
        cpu_ns: list[int] = []
        adv_ns: list[int] = []
        counts: list[int] = []
        rejected_at = None
        mismatches = 0
        now, thr = C.now_ns, C.thread_ns
        with C.gc_disabled():
            for i, tid in enumerate(ids):
                c0 = thr()
                w0 = now()
                eng.fill(m, bm)
                w1 = now()
                c1 = thr()
                fill_ns.append(w1 - w0)
                cpu_ns.append(c1 - c0)
                if density:
                    counts.append(eng.allowed_count(bm))
                allowed = eng.is_allowed(bm, tid)
                a0 = now()
                ok = eng.accept(m, tid)
                adv_ns.append(now() - a0)
                if allowed != ok:
                    mismatches += 1
                if not (allowed and ok):
                    rejected_at = i
                    break
            eos = None
            if rejected_at is None:
                c0 = thr()
                w0 = now()
                eng.fill(m, bm)
                w1 = now()
                c1 = thr()
                fill_ns.append(w1 - w0)
                cpu_ns.append(c1 - c0)
                if density:
                    counts.append(eng.allowed_count(bm))
                eos = eng.is_allowed(bm, eng.eos_id)
        return {"fill_ns": fill_ns, "cpu_ns": cpu_ns, "adv_ns": adv_ns, "counts": counts,
                "rejected_at": rejected_at, "eos_allowed": eos, "mismatches": mismatches,
                "accepted": rejected_at is None and bool(eos)}

    def _probe(self, h: Any, q: dict[str, Any], bm: np.ndarray) -> dict[str, Any]:
        m = self.eng.new_matcher(h)
        r = self._pass(m, q["ids"], bm)
        where: str
        if r["rejected_at"] is not None:
            i = r["rejected_at"]
            ok = i >= q["k"]
            where = f"token {i} {self.eng.bundle.token_text(q['ids'][i])!r}"
            if not ok:
                where += " (inside the valid prefix)"
        elif q["complete"] and not r["eos_allowed"]:
            ok, where = True, "eos"
        else:
            ok, where = False, "accepted"
        return {"rejected": ok, "where": where}

    def run_case(self, case: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        eng = self.eng
        schema, ids = case["schema"], case["doc_ids"]
        out: dict[str, Any] = {"status": "ok", "load_avg_start": C.load_average()}
        # 1. cold compiles, caches cleared
        cold: list[float] = []
        h = None
        for _ in range(params["compile_reps"]):
            eng.clear_cache()
            h = None
            gc.collect()
            try:
                with C.Timer() as t:
                    h = eng.compile(schema)
            except E.CompileError as exc:
                return {"status": "compile_error", "error": str(exc), "kind": exc.kind}
            cold.append(t.wall_ms)
        out["compile_cold_ms"] = round(C.median(cold), 3)
        out["compile_cold_ms_all"] = [round(x, 3) for x in cold]
        # 2. first pass right after the cold compile
        bm = eng.allocate_bitmask()
        with C.Timer() as t:
            m = eng.new_matcher(h)
        first_new_ms = t.wall_ms
        first = self._pass(m, ids, bm, density=True)
        if first["accepted"]:
            out["eos_accepted_by_engine"] = bool(eng.accept(m, eng.eos_id))
        out["valid_accepted"] = first["accepted"]
        out["valid_detail"] = {
            "tokens": len(ids), "rejected_at": first["rejected_at"],
            "rejected_token": (eng.bundle.token_text(ids[first["rejected_at"]])
                               if first["rejected_at"] is not None else None),
            "eos_allowed": first["eos_allowed"], "mask_accept_mismatches": first["mismatches"]}
        accepted_steps = (len(ids) if first["rejected_at"] is None else first["rejected_at"])
        alt = self._pass(eng.new_matcher(h), case["alt_ids"], bm)
        out["alt_serialisation"] = {
            "ensure_ascii": not case["ensure_ascii"], "accepted": alt["accepted"],
            "rejected_at": alt["rejected_at"],
            "rejected_token": (eng.bundle.token_text(case["alt_ids"][alt["rejected_at"]])
                               if alt["rejected_at"] is not None else None)}
        # 3. probes (correctness before timing)
        probes = {}
        for q in case["probes"]:
            r = self._probe(h, q, bm)
            r["valid_allowed"] = (accepted_steps > q["k_valid"] if q["k_valid"] < len(ids)
                                  else first["accepted"])
            probes[q["name"]] = r
        out["probes"] = probes
        out["probes_total"] = len(probes)
        out["probes_rejected"] = sum(1 for r in probes.values() if r["rejected"])
        out["probes_valid_allowed"] = sum(1 for r in probes.values() if r["valid_allowed"])
        # 4. cached compile and new-matcher cost
        cached = []
        for _ in range(params["cached_reps"]):
            with C.Timer() as t:
                eng.compile_cached(schema, h)
            cached.append(t.wall_ms)
        out["compile_cached_ms"] = round(C.median(cached), 4)
        # 5. steady passes on fresh matchers of the same compiled grammar
        steady_fill: list[list[int]] = []
        steady_cpu: list[int] = []
        steady_adv: list[int] = []
        new_ms = [first_new_ms]
        for _ in range(params["reps"]):
            with C.Timer() as t:
                m = eng.new_matcher(h)
            new_ms.append(t.wall_ms)
            r = self._pass(m, ids, bm)
            steady_fill.append(r["fill_ns"])
            steady_cpu += r["cpu_ns"]
            steady_adv += r["adv_ns"]
        flat = [x for row in steady_fill for x in row]
        out["steps_per_pass"] = len(first["fill_ns"])
        out["mask_us"] = C.summarize(flat, scale=1e-3)
        out["mask_cpu_us_mean"] = round(float(np.mean(steady_cpu)) / 1e3, 3) if steady_cpu else None
        out["mask_cpu_us"] = C.summarize(steady_cpu, scale=1e-3)  # thread CPU: no preemption
        out["advance_us"] = C.summarize(steady_adv, scale=1e-3)
        out["new_matcher_ms"] = round(C.median(new_ms), 4)
        out["first_pass"] = {"mask_us": C.summarize(first["fill_ns"], scale=1e-3),
                             "mask_total_ms": round(sum(first["fill_ns"]) / 1e6, 3),
                             "mask_cpu_us": C.summarize(first["cpu_ns"], scale=1e-3),
                             "advance_us_mean": round(float(np.mean(first["adv_ns"])) / 1e3, 3)
                             if first["adv_ns"] else None}
        # 6. density breakdown (allowed-token counts from the first pass; same steps after)
        counts = first["counts"]
        v = eng.vocab_size
        kinds = ["dense" if c > DENSE_FRACTION * v else ("sparse" if c <= SPARSE_MAX else "mid")
                 for c in counts]
        classes: dict[str, list[int]] = {"dense": [], "mid": [], "sparse": []}
        for row in steady_fill:
            for kind, ns in zip(kinds, row):
                classes[kind].append(ns)
        out["density"] = {}
        for kind, vals in classes.items():
            st = C.summarize(vals, scale=1e-3)
            out["density"][kind] = {"steps": kinds.count(kind), "mean": st["mean"],
                                    "p50": st["p50"], "p99": st["p99"]}
        out["allowed_tokens_mean"] = round(float(np.mean(counts)), 1) if counts else None
        out["load_avg_end"] = C.load_average()
        out["peak_rss_mb"] = C.peak_rss_mb()
        return out


# --------------------------------------------------------------------------------------------
# driver (parent side)
# --------------------------------------------------------------------------------------------


def _median_round(rounds: list[dict[str, Any]]) -> int:
    ok = [(r["mask_us"]["mean"], i) for i, r in enumerate(rounds)
          if r.get("status") == "ok" and r.get("mask_us", {}).get("mean") is not None]
    if not ok:
        return 0
    ok.sort()
    return ok[(len(ok) - 1) // 2][1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="llama3", help="llama3 | mistral | PATH")
    ap.add_argument("--engines", default="ours,llguidance,xgrammar")
    ap.add_argument("--out", required=True, help="result JSON file (e.g. results/tool_calls.json)")
    ap.add_argument("--rounds", type=int, default=3, help="repeat the whole measurement")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--reps", type=int, default=5, help="steady passes per case")
    ap.add_argument("--compile-reps", type=int, default=3, help="cold compiles per case")
    ap.add_argument("--cached-reps", type=int, default=5, help="cached compiles per case")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds per (engine, case) subprocess, tokenizer preparation excluded")
    ap.add_argument("--max-rss-mb", type=float, default=16384.0, help="RSS watchdog limit")
    ap.add_argument("--ensure-ascii", action="store_true",
                    help="feed json.dumps(..., ensure_ascii=True) output (non-ASCII as \\uXXXX) "
                         "instead of raw UTF-8; the other form is always checked once")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--print"]:  # re-print the tables of an existing result file
        with open(argv[1], encoding="utf-8") as f:
            print_tables(json.load(f))
        return 0
    args = parse_args(argv)
    engines = E.parse_engines(args.engines)
    case_names = [c.strip() for c in args.cases.split(",") if c.strip()]
    env = C.capture_env()
    bundle = E.load_tokenizer(args.tokenizer)
    cases = build_cases(case_names, args.ensure_ascii)
    tokenize_cases(cases, bundle)
    params = {"reps": args.reps, "compile_reps": args.compile_reps,
              "cached_reps": args.cached_reps}
    result: dict[str, Any] = {
        "benchmark": "bench_tool_calls", **env, "tokenizer": bundle.info(),
        "params": {**params, "rounds": args.rounds, "ensure_ascii": args.ensure_ascii, "timeout_s": args.timeout,
                   "max_rss_mb": args.max_rss_mb, "dense_fraction": DENSE_FRACTION,
                   "sparse_max": SPARSE_MAX},
        "cases": {n: {"n_tools": c["n_tools"], "schema_chars": len(json.dumps(c["schema"])),
                      "output_chars": len(c["doc"]), "output_tokens": len(c["doc_ids"]),
                      "output": c["doc"] if n in ("args", "oneof_1") else None,
                      "probes": [{"name": q["name"], "text": q["prefix"][-40:] + "|" + q["bad"],
                                  "complete": q["complete"]} for q in c["probes"]]}
                  for n, c in cases.items()},
        "engines": {},
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {e: {c: [] for c in cases} for e in engines}
    eng_meta: dict[str, dict[str, Any]] = {e: {"version": None, "setup": None,
                                               "peak_rss_mb": None} for e in engines}
    total = args.rounds * len(cases) * len(engines)
    bar = C.progress(total=total, desc="tool calls")
    for rnd in range(args.rounds):
        for cname, case in cases.items():
            payload = {"schema": case["schema"], "doc_ids": case["doc_ids"],
                       "alt_ids": case["alt_ids"], "ensure_ascii": case["ensure_ascii"],
                       "probes": [{k: q[k] for k in ("name", "ids", "k", "k_valid", "complete")}
                                  for q in case["probes"]]}
            for ename in engines:
                bar.set_postfix_str(f"round {rnd + 1} {cname} {ename}")
                w = C.Worker("bench_tool_calls:ToolCallHandler",
                             {"engine": ename, "tokenizer": args.tokenizer},
                             max_rss_mb=args.max_rss_mb)
                try:
                    init = w.start()
                    if init.status != "ok":
                        rec = {"status": "init_failed", "error": init.error}
                    else:
                        meta = eng_meta[ename]
                        if meta["setup"] is None:
                            meta["setup"] = init.value
                            meta["version"] = init.value.get("version")
                        res = w.call("run_case", payload, params, timeout_s=args.timeout)
                        if res.status == "ok":
                            rec = res.value
                        else:
                            rec = {"status": res.status, "error": res.error}
                        rec["prep_ms"] = init.value.get("prep_ms")
                finally:
                    w.close()
                rec["worker_peak_rss_mb"] = w.peak_rss_mb
                rec["round"] = rnd
                if w.peak_rss_mb is not None:
                    m = eng_meta[ename]
                    m["peak_rss_mb"] = max(m["peak_rss_mb"] or 0.0, w.peak_rss_mb)
                runs[ename][cname].append(rec)
                if rec.get("status") != "ok":
                    bar.write(f"{ename} {cname} round {rnd + 1}: {rec.get('status')}: "
                              f"{rec.get('error')}")
                bar.update(1)
    bar.close()

    for ename in engines:
        ecases = {}
        for cname in cases:
            rounds = runs[ename][cname]
            i = _median_round(rounds)
            chosen = dict(rounds[i])
            chosen["median_round"] = i
            chosen["rounds"] = [{"status": r.get("status"),
                                 "mask_mean_us": (r.get("mask_us") or {}).get("mean"),
                                 "mask_p99_us": (r.get("mask_us") or {}).get("p99"),
                                 "compile_cold_ms": r.get("compile_cold_ms"),
                                 "load_avg_start": r.get("load_avg_start")} for r in rounds]
            ecases[cname] = chosen
        result["engines"][ename] = {**eng_meta[ename], "cases": ecases}
    C.finish_env(result)
    C.write_json(args.out, C.clean_nan(result))
    print_tables(result)
    print(f"\nwrote {args.out}")
    return 0


def print_tables(result: dict[str, Any]) -> None:
    """Main table (one row per engine x case) and every engine's ratio to llguidance."""
    rows = []
    for ename, e in result["engines"].items():
        for cname, c in e["cases"].items():
            if c.get("status") != "ok":
                rows.append([ename, cname, f"{c.get('status')}: {c.get('error')}"[:60]]
                            + ["-"] * 10)
                continue
            mu = c["mask_us"]
            fp = c.get("first_pass", {})
            if fp.get("mask_total_ms") is None and fp.get("mask_us", {}).get("n"):
                fp["mask_total_ms"] = round(fp["mask_us"]["mean"] * fp["mask_us"]["n"] / 1e3, 1)
            rows.append([ename, cname, c["compile_cold_ms"], c["compile_cached_ms"],
                         fp.get("mask_us", {}).get("mean"), fp.get("mask_total_ms"),
                         mu["mean"], mu["p50"], mu["p99"], mu["max"],
                         "yes" if c["valid_accepted"] else
                         f"no@{c['valid_detail']['rejected_at']}",
                         f"{c['probes_rejected']}/{c['probes_total']}",
                         c.get("worker_peak_rss_mb")])
    print(C.table(["engine", "case", "cold ms", "cached ms", "1st-pass mean us", "1st-pass ms",
                   "steady mean us", "p50", "p99", "max", "valid", "probes", "RSS MB"], rows))
    print("cold = median of the cold compiles; 1st-pass = masks of the first request after "
          "the cold compile (mean per step, total); steady = fresh matchers afterwards")
    la = result.get("load_avg_start"), result.get("load_avg_end")
    print(f"load average start {la[0]} end {la[1]}")
    if "llguidance" not in result["engines"]:
        return
    ref = result["engines"]["llguidance"]["cases"]
    rows = []
    for ename, e in result["engines"].items():
        if ename == "llguidance":
            continue
        for cname, c in e["cases"].items():
            r = ref.get(cname, {})
            if c.get("status") != "ok" or r.get("status") != "ok":
                rows.append([f"{ename}/llguidance", cname, "-", "-", "-", "-"])
                continue
            rows.append([f"{ename}/llguidance", cname,
                         _ratio(c["mask_us"]["mean"], r["mask_us"]["mean"]),
                         _ratio(c["mask_us"]["p99"], r["mask_us"]["p99"]),
                         _ratio(c["compile_cold_ms"], r["compile_cold_ms"]),
                         _ratio(c["first_pass"]["mask_us"]["mean"],
                                r["first_pass"]["mask_us"]["mean"])])
    print()
    print(C.table(["ratio", "case", "steady mask mean", "steady mask p99", "cold compile",
                   "1st-pass mask mean"], rows))


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
