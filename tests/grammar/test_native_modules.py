"""grammar.native's choice between the Cython builds of grammar.ir / automaton / schema and
their sources: a stale build never runs, ``GRAMMAR_NO_NATIVE=1`` turns the builds off, and
the builds give the same masks as the sources and fail as cleanly on deep schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import grammar
from grammar import automaton, ir, native, schema

ROOT = Path(__file__).resolve().parents[2]
COMPILED = all(v == "compiled" for v in native.MODULES.values())


def _run(code: str, *argv: str, cwd: Path = ROOT, timeout: int = 240,
         **env: str | None) -> subprocess.CompletedProcess:
    """``python -W always -c code argv...`` in a fresh process; ``env`` entries set to None
    are removed from the environment."""
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-W", "always", "-c", textwrap.dedent(code), *argv],
                          cwd=cwd, env={k: v for k, v in full.items() if v is not None},
                          capture_output=True, text=True, timeout=timeout)


def test_module_choice_follows_the_files(tmp_path):
    src, so = tmp_path / "m.py", tmp_path / "m.so"
    src.write_text("x = 1\n")
    so.write_bytes(b"")
    os.utime(src, (1000, 1000))
    os.utime(so, (2000, 2000))
    assert native.module_choice(str(src), None) == "source"
    assert native.module_choice(str(src), str(so)) == "compiled"
    assert native.module_choice(str(src), str(so), off=True) == "source"
    os.utime(src, (2001, 2001))       # written with the build (a wheel's install)
    assert native.module_choice(str(src), str(so)) == "compiled"
    os.utime(src, (3000, 3000))       # the source was edited after the build
    assert native.module_choice(str(src), str(so)) == "stale"


def test_module_choice_counts_the_declarations_file(tmp_path):
    """A build of ``ir.py`` also depends on ``ir.pxd`` (its C types): an edit of the
    ``.pxd`` alone makes the build stale too; a missing ``.pxd`` is no source."""
    src, pxd, so = tmp_path / "m.py", tmp_path / "m.pxd", tmp_path / "m.so"
    for f in (src, pxd, so):
        f.write_text("")
    os.utime(src, (1000, 1000))
    os.utime(pxd, (1000, 1000))
    os.utime(so, (2000, 2000))
    assert native.module_choice(str(src), str(so), declarations=str(pxd)) == "compiled"
    os.utime(pxd, (3000, 3000))
    assert native.module_choice(str(src), str(so), declarations=str(pxd)) == "stale"
    assert native.module_choice(str(src), str(so)) == "compiled"
    missing = str(tmp_path / "none.pxd")
    assert native.module_choice(str(src), str(so), declarations=missing) == "compiled"


def test_the_compiled_term_is_an_extension_type():
    """With the build, ``ir.pxd`` makes :class:`grammar.ir.Term` an extension type (its
    fields in a C struct); terms still hash and compare by identity, take weak references
    (the intern table) and have no order."""
    heap_type = bool(ir.Term.__flags__ & (1 << 9))      # Py_TPFLAGS_HEAPTYPE
    assert heap_type == (native.MODULES["ir"] != "compiled")
    a, b = ir.lit("ab"), ir.lit("ab")
    assert a is b and hash(a) == hash(b) and a == b and a != ir.lit("ac")
    with pytest.raises(TypeError):
        sorted([ir.lit("x"), ir.lit("y")])


def test_every_module_runs_what_was_chosen():
    assert tuple(native.MODULES) == native.COMPILED_MODULES
    for name, mod in (("ir", ir), ("automaton", automaton), ("schema", schema)):
        assert getattr(grammar, name) is mod is sys.modules[f"grammar.{name}"]
        from_source = mod.__file__.endswith(".py")
        assert from_source == (native.MODULES[name] != "compiled"), (name, mod.__file__)


@pytest.mark.skipif(not COMPILED, reason="the Cython builds are not in use (not built, stale, "
                    "or GRAMMAR_NO_NATIVE set)")
def test_a_stale_build_is_replaced_by_its_source(tmp_path):
    """A copy of the package whose ir.py was edited after the build: the edited source
    runs, with a warning, and the fresh builds of the other modules still do."""
    import shutil
    pkg = tmp_path / "grammar"
    shutil.copytree(ROOT / "grammar", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    src = pkg / "ir.py"
    src.write_text(src.read_text() + "\nEDITED = True\n")
    later = os.path.getmtime(src) + 60
    os.utime(src, (later, later))
    r = _run("import grammar, grammar.native as n; "
             "print(n.MODULES, grammar.ir.__file__, grammar.ir.EDITED)",
             cwd=tmp_path, PYTHONPATH=None, GRAMMAR_NO_NATIVE=None)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "'ir': 'stale'" in r.stdout and "'schema': 'compiled'" in r.stdout
    assert str(pkg / "ir.py") in r.stdout and r.stdout.strip().endswith("True")
    assert "older than their sources" in r.stderr


def test_no_native_runs_the_sources():
    r = _run("""
        import grammar, grammar.ir, grammar.native as n
        print(grammar.ir.__file__, n.MODULES, n.NATIVE)
    """, GRAMMAR_NO_NATIVE="1")
    assert r.returncode == 0, r.stderr
    assert "ir.py" in r.stdout and "'compiled'" not in r.stdout and r.stdout.endswith("False\n")


_DIGESTS = r"""
import hashlib, json, sys
from functionary.tokenizers import load_tokenizer, load_vocabulary
from grammar import GrammarCompiler, GrammarMatcher, allocate_token_bitmask
vocab, tok = load_vocabulary("llama3.1"), load_tokenizer("llama3.1")
comp = GrammarCompiler(vocab)
out = {}
for name, (kind, spec, doc) in json.loads(open(sys.argv[1]).read()).items():
    cg = comp.compile_json_schema(spec) if kind == "schema" else comp.compile_regex(spec)
    m = GrammarMatcher(cg)
    bm = allocate_token_bitmask(1, vocab.vocab_size)
    h = hashlib.sha256()
    ok = True
    for tid in tok(doc, add_special_tokens=False)["input_ids"] + [vocab.eos_token_ids[0]]:
        m.fill_next_token_bitmask(bm)
        h.update(bm.tobytes())
        ok = ok and m.accept_token(tid)
    out[name] = [h.hexdigest(), ok, m.is_terminated()]
print(json.dumps(out))
"""


def _cases() -> dict:
    import gzip
    import random

    from tests.data import shared_data

    cases = {"regex": ["regex", r"(ab|a[0-9]{2,4})+c?\.json", "aba12ab.json"],
             "escapes": ["schema", {"type": "object", "properties": {
                 "s": {"type": "string", "maxLength": 30}, "n": {"type": "integer",
                                                                 "minimum": -5}},
                 "required": ["s"]}, json.dumps({"s": "a\"b\\u00e9 \u00e9\U0001F600", "n": 7})]}
    rng = random.Random(7)
    for sub in ("Github_easy", "Github_medium", "Kubernetes", "Glaiveai2K"):
        with gzip.open(shared_data("jsonschemabench", f"{sub}.jsonl.gz"), "rt") as f:
            items = [json.loads(line) for line in f]
        rng.shuffle(items)
        picked = 0
        for it in items:
            valid = [t["data"] for t in it["tests"] if t["valid"]]
            if valid and picked < 3:
                cases[f"{sub}-{picked}"] = ["schema", it["schema"], json.dumps(valid[0])]
                picked += 1
    return cases


@pytest.mark.hf
@pytest.mark.skipif(not COMPILED, reason="the Cython builds are not in use (not built, stale, "
                    "or GRAMMAR_NO_NATIVE set): nothing to compare the sources with")
def test_builds_give_the_masks_of_the_sources(tmp_path):
    """Cython keeps Python semantics only where it cannot prove C types safe: the masks
    along valid documents (compiled modules and the C walk against pure Python and numpy)
    must be bit for bit the same."""
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(_cases()))
    runs = []
    for env in ({}, {"GRAMMAR_NO_NATIVE": "1"}):
        r = _run(_DIGESTS, str(cases), timeout=600, **env)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    compiled, source = runs
    assert compiled == source
    schemas_ok = [k for k, v in source.items() if v[1] and v[2]]
    assert len(schemas_ok) >= len(source) - 2, source   # the walks reached their ends


@pytest.mark.parametrize("env", [{}, {"GRAMMAR_NO_NATIVE": "1"}], ids=["as-built", "sources"])
def test_too_deep_schemas_raise_typed_errors_instead_of_crashing(env):
    """Deep nesting ends in a typed error (never a RecursionError, never a segmentation
    fault): compiled code nests C frames per call, so its recursion limit is lower."""
    r = _run("""
        import sys
        from grammar import GrammarCompiler, GrammarError, GrammarMatcher, Vocabulary
        sys.setrecursionlimit(200000)   # an application's own high limit changes nothing
        comp = GrammarCompiler(Vocabulary.byte_level())
        for depth in (300, 2500, 8000, 40000):
            s = {"type": "string"}
            for i in range(depth):
                s = ({"type": "object", "properties": {"a": s}, "required": ["a"]} if i % 3
                     else {"type": "array", "items": {"anyOf": [s, {"type": "null"}]}})
            try:
                m = GrammarMatcher(comp.compile_json_schema(s))
                print(depth, any(m.accept_token(ord(c)) for c in "[{"))
            except GrammarError as e:
                print(depth, type(e).__name__)
    """, **env)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    lines = r.stdout.splitlines()
    assert lines[0] == "300 True"
    assert lines[-1] == "40000 SchemaError"
    assert len(lines) == 4
