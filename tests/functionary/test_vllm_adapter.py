"""Unit tests of the vLLM adapters' bookkeeping, without an engine.

The V1 adapter is driven with hand-built ``BatchUpdate`` s (removed / added / moved rows,
preemption, async-scheduling ``-1`` placeholders, discarded tokens) and the Model Runner V2
adapter with a hand-built ``LogitsContext`` and ``LogitsProcRequestState`` over CPU
tensors.  The reference for every masked row is a fresh :class:`grammar.GrammarMatcher` fed
the same tokens: the adapters must agree with it exactly, leave unconstrained rows
untouched, and never raise into the engine for one bad request.
"""

from __future__ import annotations

import json
import random
import types

import numpy as np
import pytest

pytestmark = pytest.mark.vllm

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")

from grammar import GrammarMatcher  # noqa: E402
from functionary.vllm_adapter import (  # noqa: E402
    EXTRA_ARGS_KEY,
    FunctionaryLogitsProcessor,
    FunctionaryLogitsProcessorV2,
    GrammarSpec,
    GrammarSpecError,
    UnsupportedEngineConfigError,
    V1_FQCN,
    V2_FQCN,
    bind_engine_config,
    processor_class_for,
)

VOCAB = 128256

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                         "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"], "additionalProperties": False}}},
]


@pytest.fixture(scope="module")
def vllm_config():
    from functionary.tokenizers import tokenizer_dir

    return types.SimpleNamespace(
        model_config=types.SimpleNamespace(tokenizer=str(tokenizer_dir("llama3.1")), model="tiny",
                                           get_vocab_size=lambda: VOCAB),
        scheduler_config=types.SimpleNamespace(max_num_seqs=4),
        speculative_config=None,
        use_v2_model_runner=False)


@pytest.fixture()
def v1(vllm_config):
    return FunctionaryLogitsProcessor(vllm_config, torch.device("cpu"), False)


def params(choice="required", *, max_tokens=64, parallel=True, template="v3-llama3.1",
           tools=TOOLS, budget=True):
    from vllm import SamplingParams

    spec = GrammarSpec(template, tools, choice, parallel, budget_aware=budget)
    return SamplingParams(max_tokens=max_tokens, extra_args=spec.extra_args())


def plain_params():
    from vllm import SamplingParams

    return SamplingParams(max_tokens=16)


def batch(removed=(), added=(), moved=(), size=0):
    from vllm.v1.sample.logits_processor import BatchUpdate

    return BatchUpdate(batch_size=size, removed=list(removed), added=list(added), moved=list(moved))


def reference(proc, sp, tokens):
    """The mask words a fresh matcher gives after ``tokens``."""
    spec = GrammarSpec.from_sampling_params(sp)
    m = GrammarMatcher(proc.core.compile(spec), token_budget=sp.max_tokens)
    for t in tokens:
        assert m.accept_token(t)
    return m


def allowed(row: torch.Tensor) -> np.ndarray:
    return torch.isfinite(row).nonzero().flatten().numpy()


def allowed_ref(m: GrammarMatcher) -> np.ndarray:
    return m.allowed_token_ids()


def logits(rows: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, VOCAB, generator=g)


def sample_allowed(row: torch.Tensor, rng: random.Random) -> int:
    ids = allowed(row)
    assert len(ids), "a constrained row must always allow some token"
    return int(ids[rng.randrange(len(ids))])


# ------------------------------------------------------------------------------ spec

def test_spec_roundtrip_and_canonical_json():
    spec = GrammarSpec("v3-llama3.1", TOOLS, {"type": "function", "function": {"name": "add"}}, False)
    again = GrammarSpec.from_json(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert json.loads(spec.extra_args()[EXTRA_ARGS_KEY])["parallel_tool_calls"] is False


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"template": "v9"}), "template must be one of"),
    (json.dumps({"template": "v2", "tools": {"a": 1}}), "tools must be a list"),
    (json.dumps({"template": "v2", "tool_choice": 3}), "tool_choice must be"),
    (json.dumps({"template": "v2", "parallel_tool_calls": "yes"}), "must be a boolean"),
    (json.dumps({"template": "v2", "surprise": 1}), "unknown field"),
])
def test_validate_params_rejects_malformed_specs(text, needle):
    from vllm import SamplingParams

    sp = SamplingParams(extra_args={EXTRA_ARGS_KEY: text})
    with pytest.raises(GrammarSpecError, match=needle):
        FunctionaryLogitsProcessor.validate_params(sp)
    with pytest.raises(ValueError):
        FunctionaryLogitsProcessorV2.validate_params(sp)


def test_validate_params_accepts_plain_and_valid_requests():
    FunctionaryLogitsProcessor.validate_params(plain_params())
    FunctionaryLogitsProcessor.validate_params(params())


def test_validate_params_rejects_speculative_decoding_at_admission():
    try:
        bind_engine_config(types.SimpleNamespace(speculative_config=object()))
        with pytest.raises(UnsupportedEngineConfigError, match="speculative decoding"):
            FunctionaryLogitsProcessor.validate_params(params())
        FunctionaryLogitsProcessor.validate_params(plain_params())   # unconstrained: fine
    finally:
        bind_engine_config(None)


def test_constructors_reject_speculative_decoding(vllm_config):
    spec_cfg = types.SimpleNamespace(**{**vars(vllm_config), "speculative_config": object()})
    with pytest.raises(UnsupportedEngineConfigError):
        FunctionaryLogitsProcessor(spec_cfg, torch.device("cpu"), False)
    with pytest.raises(UnsupportedEngineConfigError):
        FunctionaryLogitsProcessorV2(spec_cfg, _req_states())


def test_processor_class_for_follows_the_model_runner():
    assert processor_class_for(types.SimpleNamespace(use_v2_model_runner=True)) == V2_FQCN
    assert processor_class_for(types.SimpleNamespace(use_v2_model_runner=False)) == V1_FQCN


# ------------------------------------------------------------------------ V1 adapter

def test_v1_masks_constrained_rows_and_leaves_others_untouched(v1):
    sp = params()
    out0: list[int] = []
    v1.update_state(batch(added=[(0, sp, [1], out0), (1, plain_params(), [1], [])], size=2))
    assert not v1.is_argmax_invariant()
    x = logits(2)
    before = x.clone()
    y = v1.apply(x)
    assert y is x
    assert torch.equal(y[1], before[1])
    np.testing.assert_array_equal(allowed(y[0]), allowed_ref(reference(v1, sp, [])))
    kept = torch.isfinite(y[0])
    assert torch.equal(y[0][kept], before[0][kept])


def test_v1_generates_valid_calls_step_by_step(v1):
    """Sample from the masked logits until the grammar ends: the text must parse into
    calls whose arguments are valid JSON (tool_choice=required, n=2 → own matchers)."""
    from functionary import get_template

    rng = random.Random(7)
    sp = params(max_tokens=60)
    outs: list[list[int]] = [[], []]
    v1.update_state(batch(added=[(0, sp, [1], outs[0]), (1, sp, [1], outs[1])], size=2))
    vocab = v1.core.compiler.vocab
    eos = set(vocab.eos_token_ids)
    done = [False, False]
    for step in range(60):
        x = v1.apply(logits(2, seed=step))
        v1.update_state(None)
        for i in range(2):
            if done[i]:
                continue
            tok = sample_allowed(x[i], rng)
            outs[i].append(tok)
            done[i] = tok in eos
        if all(done):
            break
    assert all(done), "budget-aware termination must end the turn within max_tokens"
    assert outs[0] != outs[1]
    tpl = get_template("v3-llama3.1")
    for out in outs:
        text = b"".join(vocab.token_bytes(t) for t in out).decode("utf-8")
        msg = tpl.parse(text, "required", TOOLS)
        assert msg["tool_calls"], text
        for call in msg["tool_calls"]:
            json.loads(call["function"]["arguments"])


def test_v1_remove_add_move_swap_follow_the_rows(v1):
    sp_req, sp_named = params("required"), params({"type": "function", "function": {"name": "add"}})
    o0, o2 = [], []
    v1.update_state(batch(added=[(0, sp_req, None, o0), (1, plain_params(), None, []),
                                 (2, sp_named, None, o2)], size=3))
    v1.apply(logits(3))
    # remove row 1, move 2 -> 1 (one-way): row 1 now holds the named request
    v1.update_state(batch(removed=[1], moved=[(2, 1, _unidirectional())], size=2))
    x = logits(2)
    v1.apply(x)
    np.testing.assert_array_equal(allowed(x[1]), allowed_ref(reference(v1, sp_named, [])))
    np.testing.assert_array_equal(allowed(x[0]), allowed_ref(reference(v1, sp_req, [])))
    assert sorted(v1.core.keys()) == [0, 1]
    # swap 0 <-> 1
    v1.update_state(batch(moved=[(0, 1, _swap())], size=2))
    x = logits(2)
    v1.apply(x)
    np.testing.assert_array_equal(allowed(x[0]), allowed_ref(reference(v1, sp_named, [])))
    np.testing.assert_array_equal(allowed(x[1]), allowed_ref(reference(v1, sp_req, [])))
    # an added unconstrained request replaces row 0: it must be left untouched
    v1.update_state(batch(added=[(0, plain_params(), None, [])], size=2))
    x = logits(2)
    before = x.clone()
    v1.apply(x)
    assert torch.equal(x[0], before[0])
    assert v1.core.keys() == [1]


def _unidirectional():
    from vllm.v1.sample.logits_processor import MoveDirectionality

    return MoveDirectionality.UNIDIRECTIONAL


def _swap():
    from vllm.v1.sample.logits_processor import MoveDirectionality

    return MoveDirectionality.SWAP


def _walk(proc, sp, n, seed=0):
    """``n`` tokens a grammar allows (sampled), via a reference matcher."""
    rng = random.Random(seed)
    m = reference(proc, sp, [])
    toks = []
    for _ in range(n):
        ids = m.allowed_token_ids()
        t = int(ids[rng.randrange(len(ids))])
        assert m.accept_token(t)
        toks.append(t)
    return toks


def test_v1_preempted_request_replays_its_output(v1):
    sp = params()
    toks = _walk(v1, sp, 6)
    out = list(toks[:3])
    v1.update_state(batch(added=[(0, sp, None, out)], size=1))
    v1.apply(logits(1))
    assert v1.core.consumed(0) == 3
    # preempted: removed; resumed later at another row with its output so far
    v1.update_state(batch(removed=[0], size=0))
    assert 0 not in v1.core
    resumed = list(toks[:5])
    v1.update_state(batch(added=[(1, sp, None, resumed)], size=2))
    x = logits(2)
    v1.apply(x)
    assert v1.core.consumed(1) == 5
    np.testing.assert_array_equal(allowed(x[1]), allowed_ref(reference(v1, sp, toks[:5])))


def test_v1_async_placeholder_is_read_later(v1):
    sp = params()
    toks = _walk(v1, sp, 3, seed=3)
    out = [toks[0], -1]
    v1.update_state(batch(added=[(0, sp, None, out)], size=1))
    x = logits(1)
    v1.apply(x)
    assert v1.core.consumed(0) == 1       # the placeholder is not consumed
    out[1] = toks[1]                      # the runner patches the live list
    out.append(toks[2])
    x = logits(1)
    v1.apply(x)
    assert v1.core.consumed(0) == 3
    np.testing.assert_array_equal(allowed(x[0]), allowed_ref(reference(v1, sp, toks)))


def test_v1_discarded_tokens_roll_back(v1):
    sp = params()
    toks = _walk(v1, sp, 5, seed=5)
    out = list(toks)
    v1.update_state(batch(added=[(0, sp, None, out)], size=1))
    v1.apply(logits(1))
    del out[3:]                           # e.g. tokens discarded after a KV-load failure
    x = logits(1)
    v1.apply(x)
    assert v1.core.consumed(0) == 3
    np.testing.assert_array_equal(allowed(x[0]), allowed_ref(reference(v1, sp, toks[:3])))


def test_v1_bad_requests_are_ended_not_raised(v1, caplog):
    from vllm import SamplingParams

    vocab = v1.core.compiler.vocab
    eos = set(int(e) for e in vocab.eos_token_ids)
    unknown_tool = params({"type": "function", "function": {"name": "nope"}})
    garbage = SamplingParams(extra_args={EXTRA_ARGS_KEY: "{oops"})
    good = params()
    o_good: list[int] = []
    o_rej: list[int] = []
    v1.update_state(batch(added=[(0, unknown_tool, None, []), (1, garbage, None, []),
                                 (2, good, None, o_good), (3, params(), None, o_rej)], size=4))
    x = logits(4)
    v1.apply(x)
    assert set(allowed(x[0]).tolist()) == eos
    assert set(allowed(x[1]).tolist()) == eos
    np.testing.assert_array_equal(allowed(x[2]), allowed_ref(reference(v1, good, [])))
    # a token the grammar rejects (forced by something else) ends that sequence only
    o_rej.append(vocab.token_id("<|python_tag|>"))
    x = logits(4)
    v1.apply(x)
    assert set(allowed(x[3]).tolist()) == eos
    np.testing.assert_array_equal(allowed(x[2]), allowed_ref(reference(v1, good, [])))
    assert "rejected by the grammar" in caplog.text


def test_v1_one_preallocated_buffer_and_one_apply_per_step(v1, monkeypatch):
    import functionary.vllm_adapter as mod

    calls = []
    real = mod.apply_token_bitmask_inplace
    monkeypatch.setattr(mod, "apply_token_bitmask_inplace",
                        lambda *a, **k: (calls.append(a[2]), real(*a, **k))[1])
    sp = params()
    v1.update_state(batch(added=[(0, sp, None, []), (1, plain_params(), None, []),
                                 (2, sp, None, [])], size=3))
    ptr = v1.core._host[0].data_ptr()
    rows_before = v1.core.bitmask_rows
    for step in range(3):
        v1.apply(logits(3, seed=step))
    assert len(calls) == 3
    assert all(list(c) == [0, 2] for c in calls)
    assert v1.core._host[0].data_ptr() == ptr and v1.core.bitmask_rows == rows_before


def test_v1_grammars_are_compiled_once_per_spec(v1):
    sp1, sp2 = params(), params()
    v1.update_state(batch(added=[(0, sp1, None, []), (1, sp2, None, [])], size=2))
    m0, m1 = v1.core.matcher(0), v1.core.matcher(1)
    assert m0 is not m1 and m0.compiled is m1.compiled
    assert len(v1.core._compiled) == 1


def test_v1_budget_aware_termination_uses_max_tokens(v1):
    short, long = params(max_tokens=40), params(max_tokens=400)
    v1.update_state(batch(added=[(0, short, None, []), (1, long, None, [])], size=2))
    x = logits(2)
    v1.apply(x)
    assert v1.core.matcher(0).token_budget == 40
    assert len(allowed(x[0])) <= len(allowed(x[1]))


# ------------------------------------------------------------------------ V2 adapter

MAX_REQS, MAX_LEN = 4, 64


def _req_states(all_tokens=None, prompt_len=None):
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsProcRequestState

    return LogitsProcRequestState(
        device=torch.device("cpu"), max_num_reqs=MAX_REQS, vocab_size=VOCAB,
        all_token_ids=types.SimpleNamespace(
            gpu=all_tokens if all_tokens is not None else torch.zeros(MAX_REQS, MAX_LEN, dtype=torch.int32)),
        prompt_len=types.SimpleNamespace(
            np=prompt_len if prompt_len is not None else np.zeros(MAX_REQS, dtype=np.int32)),
        prefill_len=types.SimpleNamespace(np=np.zeros(MAX_REQS, dtype=np.int32)),
        total_len=types.SimpleNamespace(gpu=torch.zeros(MAX_REQS, dtype=torch.int32)))


class _Runner:
    """The few buffers of Model Runner V2 that the adapter reads."""

    def __init__(self):
        self.tokens = torch.zeros(MAX_REQS, MAX_LEN, dtype=torch.int32)
        self.prompt_len = np.zeros(MAX_REQS, dtype=np.int32)
        self.total = np.zeros(MAX_REQS, dtype=np.int64)
        self.states = _req_states(self.tokens, self.prompt_len)

    def admit(self, slot, prompt, output=()):
        seq = list(prompt) + list(output)
        self.tokens[slot].zero_()
        self.tokens[slot, :len(seq)] = torch.tensor(seq, dtype=torch.int32)
        self.prompt_len[slot] = len(prompt)
        self.total[slot] = len(seq)

    def append(self, slot, tok):
        self.tokens[slot, self.total[slot]] = tok
        self.total[slot] += 1

    def ctx(self, slots):
        from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext

        idx = np.asarray(slots, dtype=np.int32)
        t = torch.from_numpy(idx.astype(np.int64))
        return LogitsContext(expanded_idx_mapping=t, idx_mapping=t, idx_mapping_np=idx,
                             expanded_local_pos=torch.zeros(len(slots), dtype=torch.int64),
                             input_ids=torch.zeros(len(slots), dtype=torch.int64),
                             pos=torch.from_numpy(self.total[idx] - 1),
                             seq_lens_upper_bound_np=self.total[idx].copy())


@pytest.fixture()
def v2(vllm_config):
    runner = _Runner()
    return FunctionaryLogitsProcessorV2(vllm_config, runner.states), runner


def test_v2_rows_follow_slots_and_committed_tokens(v2):
    proc, runner = v2
    sp_a, sp_b = params(), params({"type": "function", "function": {"name": "add"}})
    assert proc.add_request(2, sp_a) is True
    assert proc.add_request(0, plain_params()) is False
    assert proc.add_request(3, sp_b) is True
    runner.admit(2, [1, 2, 3])
    runner.admit(0, [1])
    runner.admit(3, [1, 2])
    toks_a, toks_b = _walk(proc, sp_a, 3, seed=1), _walk(proc, sp_b, 3, seed=2)
    for step in range(3):
        order = [3, 0, 2] if step % 2 else [0, 2, 3]      # rows are reordered every step
        x = logits(3, seed=step)
        before = x.clone()
        proc.apply(x, runner.ctx(order))
        for row, slot in enumerate(order):
            if slot == 0:
                assert torch.equal(x[row], before[row])
            else:
                sp, toks = (sp_a, toks_a) if slot == 2 else (sp_b, toks_b)
                np.testing.assert_array_equal(allowed(x[row]),
                                              allowed_ref(reference(proc, sp, toks[:step])))
        runner.append(2, toks_a[step])
        runner.append(3, toks_b[step])
        runner.append(0, 5)


def test_v2_slot_reuse_and_resumed_request(v2):
    proc, runner = v2
    sp = params()
    toks = _walk(proc, sp, 6, seed=4)
    proc.add_request(1, sp)
    runner.admit(1, [1, 2], toks[:2])
    proc.apply(logits(1), runner.ctx([1]))
    assert proc.core.consumed(1) == 2
    # slot 1 recycled for an unconstrained request: state must be gone
    assert proc.add_request(1, plain_params()) is False
    runner.admit(1, [9])
    x = logits(1)
    before = x.clone()
    proc.apply(x, runner.ctx([1]))
    assert torch.equal(x, before)
    # a preempted request resumes in slot 0 with 5 committed output tokens (prefill)
    proc.add_request(0, sp)
    runner.admit(0, [1, 2, 3], toks[:5])
    x = logits(1)
    proc.apply(x, runner.ctx([0]))
    assert proc.core.consumed(0) == 5
    np.testing.assert_array_equal(allowed(x[0]), allowed_ref(reference(proc, sp, toks[:5])))


def test_v2_chunked_prefill_row_consumes_nothing(v2):
    proc, runner = v2
    sp = params()
    proc.add_request(0, sp)
    runner.admit(0, [1, 2, 3, 4])
    ctx = runner.ctx([0])
    ctx = type(ctx)(**{**ctx.__dict__, "seq_lens_upper_bound_np": np.array([2])})  # mid-prompt
    x = logits(1)
    proc.apply(x, ctx)
    assert proc.core.consumed(0) == 0
    np.testing.assert_array_equal(allowed(x[0]), allowed_ref(reference(proc, sp, [])))


def test_v2_refuses_draft_rows(v2):
    proc, runner = v2
    proc.add_request(0, params())
    runner.admit(0, [1])
    with pytest.raises(UnsupportedEngineConfigError):
        proc.apply(logits(3), runner.ctx([0]))     # 3 rows for 1 request: draft positions


def test_v2_validate_params_is_the_same_admission_check():
    FunctionaryLogitsProcessorV2.validate_params(params())
    FunctionaryLogitsProcessorV2.validate_params(plain_params())


def test_padded_logits_beyond_the_vocabulary_are_masked(v1):
    sp = params()
    v1.update_state(batch(added=[(0, sp, None, []), (1, plain_params(), None, [])], size=2))
    x = torch.randn(2, VOCAB + 64)
    before = x.clone()
    v1.apply(x)
    assert torch.isinf(x[0, VOCAB:]).all()
    assert torch.equal(x[1], before[1])
    np.testing.assert_array_equal(allowed(x[0]), allowed_ref(reference(v1, sp, [])))
