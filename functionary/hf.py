"""Hugging Face ``transformers`` integration: grammar-constrained ``generate``.

:class:`GrammarLogitsProcessor` drives one :class:`grammar.GrammarMatcher` per sequence
(batches and ``num_return_sequences`` included).  It *masks* the logits (disallowed tokens
become ``-inf``) before temperature, top-k and top-p run, so sampling settings keep their
meaning: nothing is ever substituted after sampling.

:func:`generate` renders the Functionary prompt, compiles the tool grammar, generates and
parses the result into OpenAI-style assistant messages.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from grammar import CompiledGrammar, GrammarCompiler, GrammarMatcher, Vocabulary
from grammar.bitmask import apply_token_bitmask_inplace

__all__ = ["GrammarLogitsProcessor", "generate", "generate_text", "vocabulary_for"]

log = logging.getLogger(__name__)

try:  # transformers is optional: the class works with any callable-processor protocol
    from transformers import LogitsProcessor as _Base
except ImportError:  # pragma: no cover
    _Base = object  # type: ignore[assignment,misc]


class GrammarLogitsProcessor(_Base):  # type: ignore[misc,valid-type]
    """A ``transformers`` logits processor enforcing a compiled grammar on every sequence.

    Parameters
    ----------
    compiled:
        The grammar every sequence must follow.
    prompt_length:
        Length of the (padded) prompt rows: tokens after it are the generated ones.
    token_budget:
        Enables budget-aware termination (usually ``max_new_tokens``): sequences finish
        inside the budget instead of being cut mid-structure.

    Notes
    -----
    The matchers are created on the first call, one per row of ``input_ids`` (so
    ``num_return_sequences`` and batched prompts each get their own).  Rows that already
    finished (their matcher terminated) are left unmasked except for end-of-sequence, as
    ``generate`` pads them anyway.
    """

    def __init__(self, compiled: CompiledGrammar, prompt_length: int, *,
                 token_budget: int | None = None) -> None:
        self.compiled = compiled
        self.prompt_length = int(prompt_length)
        self.token_budget = token_budget
        self.matchers: list[GrammarMatcher] = []
        self.rejected: list[int] = []   # rows where a sampled token was rejected (never expected)
        self._bitmask = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        batch = input_ids.shape[0]
        if not self.matchers:
            self.matchers = [GrammarMatcher(self.compiled, token_budget=self.token_budget)
                             for _ in range(batch)]
            self.rejected = [0] * batch
            if scores.shape[-1] != self.compiled.vocab.vocab_size:
                raise ValueError(f"logits width {scores.shape[-1]} != grammar vocabulary size "
                                 f"{self.compiled.vocab.vocab_size}; build the Vocabulary with "
                                 f"vocab_size=model logits width")
        gen = input_ids.shape[1] - self.prompt_length
        if gen > 0:
            last = input_ids[:, -1].tolist()
            for i, m in enumerate(self.matchers):
                if m.is_terminated() or m.num_accepted >= gen:
                    continue
                if not m.accept_token(last[i]):
                    self.rejected[i] += 1
                    log.error("row %d: sampled token %d was rejected by the grammar", i, last[i])
        width = (scores.shape[-1] + 31) // 32
        if self._bitmask is None or self._bitmask.shape != (batch, width):
            self._bitmask = torch.empty((batch, width), dtype=torch.int32)
        bm = self._bitmask.numpy()
        for i, m in enumerate(self.matchers):
            m.fill_next_token_bitmask(bm, i)
        mask = self._bitmask.to(scores.device, non_blocking=True)
        apply_token_bitmask_inplace(scores, mask)
        return scores


def vocabulary_for(model: Any, tokenizer: Any) -> Vocabulary:
    """The :class:`grammar.Vocabulary` of ``tokenizer`` sized to ``model``'s logits."""
    width = None
    try:
        width = int(model.get_output_embeddings().weight.shape[0])
    except Exception:  # noqa: BLE001
        width = getattr(getattr(model, "config", None), "vocab_size", None)
    return Vocabulary.from_tokenizer(tokenizer, vocab_size=width)


def _stop_ids(vocab: Vocabulary, template: Any) -> list[int]:
    ids = []
    for s in getattr(template, "stop_tokens", []) or []:
        try:
            ids.append(vocab.token_id(s))
        except Exception:  # noqa: BLE001 - a stop string that is not one token
            continue
    for e in vocab.eos_token_ids:
        if e not in ids:
            ids.append(e)
    return ids


def generate_text(model: Any, tokenizer: Any, messages: Sequence[Mapping[str, Any]],
                  tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = "auto", *,
                  template: Any = None, grammar_sampling: bool = True,
                  parallel_tool_calls: bool = True, budget_aware: bool = True,
                  compiler: GrammarCompiler | None = None,
                  **generation_kwargs: Any) -> tuple[Any, list[tuple[str, bool, list[int]]]]:
    """Like :func:`generate`, but return ``(template, [(text, finished, token_ids), ...])``:
    the exact generated text of each sequence (special tokens written out), whether it
    ended with a stop token, and its token ids."""
    import torch

    from . import detect_template, get_template
    from .tool_grammar import compile_tool_grammar

    if template is None:
        template = detect_template(tokenizer)
    elif isinstance(template, str):
        template = get_template(template)
    prompt = template.render(list(messages), tools=tools, tool_choice=tool_choice,
                             add_generation_prompt=True)
    enc = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    input_ids = enc["input_ids"].to(model.device)
    attn = enc.get("attention_mask")
    kwargs = dict(generation_kwargs)
    kwargs.setdefault("max_new_tokens", 256)
    if compiler is None:
        compiler = GrammarCompiler(vocabulary_for(model, tokenizer))
    vocab = compiler.vocab
    stops = _stop_ids(vocab, template)
    kwargs.setdefault("eos_token_id", stops)
    if getattr(tokenizer, "pad_token_id", None) is None:
        kwargs.setdefault("pad_token_id", stops[0])
    proc = None
    if grammar_sampling:
        compiled = compile_tool_grammar(compiler, template, tools, tool_choice, parallel_tool_calls)
        proc = GrammarLogitsProcessor(compiled, input_ids.shape[1],
                                      token_budget=kwargs["max_new_tokens"] if budget_aware else None)
        from transformers import LogitsProcessorList
        lp = kwargs.pop("logits_processor", None) or LogitsProcessorList()
        lp.append(proc)
        kwargs["logits_processor"] = lp
    with torch.no_grad():
        out = model.generate(input_ids=input_ids,
                             attention_mask=attn.to(model.device) if attn is not None else None,
                             **kwargs)
    results = []
    for row in out[:, input_ids.shape[1]:].tolist():
        toks: list[int] = []
        finished = False
        for t in row:
            toks.append(t)
            if t in stops:
                finished = True
                break
        text = b"".join(vocab.token_bytes(t) for t in toks).decode("utf-8", errors="replace")
        results.append((text, finished, toks))
    if proc is not None and any(proc.rejected):
        log.error("grammar rejected sampled tokens in rows %s",
                  [i for i, r in enumerate(proc.rejected) if r])
    return template, results


def generate(model: Any, tokenizer: Any, messages: Sequence[Mapping[str, Any]],
             tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = "auto", *,
             template: Any = None, grammar_sampling: bool = True, parallel_tool_calls: bool = True,
             budget_aware: bool = True, compiler: GrammarCompiler | None = None,
             **generation_kwargs: Any) -> dict | list[dict]:
    """Generate an assistant turn with a Hugging Face model, constrained by the tool grammar.

    Parameters
    ----------
    model, tokenizer:
        A ``transformers`` causal LM and its tokenizer.
    messages, tools, tool_choice:
        OpenAI chat-completions fields.
    template:
        A template object or version name; detected from the tokenizer when omitted.
    grammar_sampling:
        Mask the logits with the tool grammar (default).  With ``False`` the model samples
        freely (the prompt still carries the reference's tool_choice prefixes).
    parallel_tool_calls:
        ``False`` allows at most one call.
    budget_aware:
        With grammar sampling, keep every output completable within ``max_new_tokens``.
    compiler:
        A :class:`grammar.GrammarCompiler` to reuse (its cache) across calls.
    **generation_kwargs:
        Passed to ``model.generate`` (``max_new_tokens``, ``do_sample``, ``temperature``,
        ``top_p``, ``num_return_sequences`` ...).

    Returns
    -------
    dict or list of dict
        The parsed assistant message (``role``, ``content``, ``tool_calls``,
        ``finish_reason``); a list when ``num_return_sequences > 1``.  ``finish_reason`` is
        ``"length"`` when a sequence hit ``max_new_tokens`` without finishing.
    """
    n = int(generation_kwargs.get("num_return_sequences", 1) or 1)
    template, outs = generate_text(model, tokenizer, messages, tools, tool_choice,
                                   template=template, grammar_sampling=grammar_sampling,
                                   parallel_tool_calls=parallel_tool_calls,
                                   budget_aware=budget_aware, compiler=compiler,
                                   **generation_kwargs)
    results = []
    for text, finished, _ in outs:
        msg = template.parse(text, tool_choice=tool_choice, tools=tools)
        if not finished:
            msg["finish_reason"] = "length"
        results.append(msg)
    return results if n > 1 else results[0]
