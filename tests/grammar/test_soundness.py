"""Token-level soundness on the real Llama 3 vocabulary.

* random walks under the mask (uniform over allowed tokens = random logits), with a token
  budget, always end in text that ``jsonschema`` (format checking on) validates, and a
  live state always allows a token (no dead ends);
* canonical tokenisations of valid instances are accepted token by token with EOS at the
  end (merged tokens such as ``.",`` and multi-level closers such as ``}]}`` included), and
  invalid instances are rejected somewhere.
"""

from __future__ import annotations

import gzip
import json
import random

import jsonschema
import pytest

from grammar import GrammarCompiler, GrammarMatcher
from grammar.errors import GrammarError
from grammar.schema import canonical_instance
from tests.data import shared_data

pytestmark = pytest.mark.hf


@pytest.fixture(scope="module")
def env():
    from functionary.tokenizers import load_tokenizer, load_vocabulary
    vocab = load_vocabulary("llama3.1")
    return vocab, load_tokenizer("llama3.1"), GrammarCompiler(vocab)


def _bench_sample(n, seed, subsets=("Glaiveai2K", "Github_easy", "Kubernetes", "Snowplow", "JsonSchemaStore")):
    rng = random.Random(seed)
    out = []
    for sub in subsets:
        with gzip.open(shared_data("jsonschemabench", f"{sub}.jsonl.gz"), "rt") as f:
            items = [json.loads(line) for line in f]
        rng.shuffle(items)
        out += items[:n]
    return out


def _validator(schema):
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_random_walks_validate(env):
    vocab, tok, compiler = env
    rng = random.Random(0)
    eos = vocab.eos_token_ids[0]
    done = 0
    for item in _bench_sample(4, 1):
        try:
            cg = compiler.compile_json_schema(item["schema"], whitespace=2)
        except GrammarError:
            continue
        if cg.is_empty:
            continue
        v = _validator(item["schema"])
        start = cg.automaton.minlen(cg.automaton.start)
        for _ in range(2):
            budget = start + 2 + rng.randint(0, 60)
            m = GrammarMatcher(cg, token_budget=budget)
            toks = []
            while not m.is_terminated() and len(toks) < budget:
                ids = m.allowed_token_ids()
                assert len(ids), "dead end"
                t = int(ids[rng.randrange(len(ids))])
                assert m.accept_token(t)
                toks.append(t)
            assert m.is_terminated(), item["file"]
            text = b"".join(vocab.token_bytes(t) for t in toks if t != eos).decode("utf-8")
            v.validate(json.loads(text))
            done += 1
    assert done >= 20


def _accepts(compiler, vocab, tok, cg, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    m = GrammarMatcher(cg)
    for t in ids:
        if not m.is_token_allowed(t) or not m.accept_token(t):
            return False
    return m.is_token_allowed(vocab.eos_token_ids[0])


def test_canonical_tokenizations_accepted_and_invalid_rejected(env):
    vocab, tok, compiler = env
    checked = valid_n = invalid_n = 0
    for item in _bench_sample(6, 2):
        try:
            cg = compiler.compile_json_schema(item["schema"])
        except GrammarError:
            continue
        v = _validator(item["schema"])
        for t in item["tests"]:
            ok = v.is_valid(t["data"])
            if ok != t["valid"]:
                continue  # upstream label disagrees with jsonschema: skip
            data = canonical_instance(item["schema"], t["data"]) if ok else t["data"]
            got = _accepts(compiler, vocab, tok, cg, json.dumps(data))
            if ok:
                assert got, (item["file"], json.dumps(data)[:200])
                valid_n += 1
            else:
                assert not got, (item["file"], json.dumps(data)[:200])
                invalid_n += 1
            checked += 1
    assert valid_n >= 10 and invalid_n >= 10


def test_merged_and_multi_level_closing_tokens(env):
    vocab, tok, compiler = env
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {
        "type": "object", "properties": {"b": {"type": "object", "properties": {
            "c": {"type": "string"}}}}}}, "note": {"type": "string"}}}
    cg = compiler.compile_json_schema(schema)
    for text in ['{"a": [{"b": {"c": "x"}}]}', '{"a": [], "note": "Done."}',
                 '{"note": "He said \\"hi\\"."}', '{"a": [{"b": {}}]}']:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        pieces = [tok.decode([i]) for i in ids]
        assert _accepts(compiler, vocab, tok, cg, text), pieces
    # the texts above really contain merged multi-level closers in their canonical tokenization
    assert any(len(tok.decode([i])) > 1 and set(tok.decode([i])) <= set('"}]')
               for i in tok('{"a": [{"b": {"c": "x"}}]}', add_special_tokens=False)["input_ids"])


def test_schema_test_suite_token_level_sample(env):
    vocab, tok, compiler = env
    root = shared_data("json-schema-test-suite")
    remotes = {}
    for p in (root / "remotes").rglob("*.json"):
        remotes["http://localhost:1234/" + p.relative_to(root / "remotes").as_posix()] = json.loads(p.read_text())
    rng = random.Random(5)
    files = sorted((root / "tests" / "draft2020-12").glob("*.json"))
    rng.shuffle(files)
    checked = 0
    for f in files[:12]:
        for group in json.loads(f.read_text()):
            try:
                cg = compiler.compile_json_schema(group["schema"], format_assertion=False, remotes=remotes)
            except GrammarError:
                continue
            for t in group["tests"]:
                data = canonical_instance(group["schema"], t["data"], remotes=remotes) if t["valid"] else t["data"]
                got = _accepts(compiler, vocab, tok, cg, json.dumps(data))
                assert got == t["valid"], (f.name, group["description"], t["description"])
                checked += 1
    assert checked >= 50
