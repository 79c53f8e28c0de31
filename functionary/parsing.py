"""Output parsing for every Functionary format: one explicit state machine.

:class:`StreamParser` reads the text a model generates after the prompt, in
deltas of any size, and returns OpenAI ``chat.completion.chunk`` choices.  It
is driven by a template's :class:`~functionary.templates.base.TurnFormat`, so
the five formats share one implementation; ``Template.parse`` is this machine
fed with the whole text, followed by :func:`accumulate`.  Streaming and batch
results are therefore the same for any split of the text.

States (:class:`State`)
-----------------------
``TEXT``
    Inside a text block.  Looks for the call marker (``>>>``,
    ``<|from|>assistant\\n<|recipient|>``, ``<|reserved_special_token_249|>``,
    ``<function=``, ``<|START_OF_FUNCTION_CALL|>``), the python prefix
    (``<|python_tag|>``) and the stop tokens.
``HEADER``
    After a call marker (or at the start of v2/v3.llama3 output, whose
    generation prompt ends where the first recipient goes): reading a
    recipient name up to the name terminator.  Nothing is emitted here.
``ARGS``
    Inside a call's arguments (JSON, or raw code for ``python``).  Ends at
    the call suffix (``</function>``) where the format has one, else at the
    next call marker; and at a stop token.
``CODE``
    Raw code after ``<|python_tag|>`` (v3-llama3.1); runs to the stop token.
``DONE``
    A stop token was seen; anything after it is ignored (and logged).

Rules
-----
* **What starts a block.**  A marker followed by a *valid recipient* and the
  name terminator.  With ``tools`` given, the valid recipients are the tool
  names (only the named one for a named ``tool_choice``), the text recipient
  (``all``) in v2/v3.llama3, and ``python`` when the code interpreter (or a
  function named ``python``) is among the tools.  With ``tools=None``, any
  name matching :data:`functionary.messages.NAME_PATTERN` (letters, digits,
  ``_ - .``, at most 64) is accepted.  Up to four spaces or tabs around the
  name are tolerated.  Anything else is not a header: the marker is kept as
  literal text of the block it appeared in, so ``>>>`` or ``<function=`` in
  text or code do not break the parse, and names that share a prefix
  (``get_weather`` / ``get_weather_forecast``) are told apart by the
  terminator.
* **tool_choice.**  The generation prefix of the tool_choice is replayed
  first.  With ``none`` no call can be parsed at all (markers are plain text;
  the prompt did not show any tool).  ``required`` does not force anything at
  parse time: text without calls is returned as text.
* **Stripping.**  Each text block and each call's arguments are stripped of
  surrounding whitespace, in streaming too (whitespace is held back until
  something follows it).  Several text blocks are joined with ``"\\n"``.
  Whitespace-only content is ``None``.
* **Calls.**  A call exists as soon as its header is complete; an
  unterminated call (no ``</function>`` before the end) keeps the arguments
  generated so far.  ``finish_reason`` is ``"tool_calls"`` when at least one
  call was parsed, else ``"stop"`` (legacy ``functions``: ``"function_call"``).
* **Errors.**  Malformed output never raises; it becomes text and a message
  is logged on the ``functionary.parsing`` logger.
* **v1** allows one call per turn: after it, the call marker is literal.

Chunks
------
``feed``/``finish`` return choices ``{"index": 0, "delta": {...},
"finish_reason": None}``.  The first carries ``"role": "assistant"``.  Text:
``{"content": "..."}``.  A call opens with ``{"tool_calls": [{"index": i,
"id": "call_...", "type": "function", "function": {"name": N, "arguments":
""}}]}`` and continues with ``{"tool_calls": [{"index": i, "function":
{"arguments": "..."}}]}``.  ``finish`` ends with ``{"delta": {},
"finish_reason": ...}``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from functionary.messages import NAME_PATTERN, PYTHON, ToolChoice, ToolSet, new_call_id, to_legacy_function_call

if TYPE_CHECKING:  # pragma: no cover
    from functionary.templates.base import TurnFormat

__all__ = ["State", "StreamParser", "accumulate"]

logger = logging.getLogger(__name__)

_MAX_PAD = 4  # spaces/tabs tolerated on each side of a recipient name
_PAD = " \t"


class State(enum.Enum):
    """States of :class:`StreamParser` (see the module docstring)."""

    TEXT = "text"
    HEADER = "header"
    ARGS = "args"
    CODE = "code"
    DONE = "done"


class StreamParser:
    """Incremental parser of one assistant turn.

    Parameters
    ----------
    fmt : TurnFormat
        The template's turn description.
    tool_choice : ToolChoice
        The normalised tool_choice of the request.
    tools : ToolSet or None
        The normalised tools, or ``None`` to accept any well-formed name.

    Notes
    -----
    Use :meth:`functionary.templates.base.Template.stream_parser` rather than
    this constructor; it validates the request first.
    """

    def __init__(self, fmt: TurnFormat, *, tool_choice: ToolChoice, tools: ToolSet | None) -> None:
        self._fmt = fmt
        self._legacy = tool_choice.legacy or (tools is not None and tools.legacy)
        self._calls_enabled = tool_choice.mode != "none"
        if tool_choice.mode == "named":
            self._names: frozenset[str] | None = frozenset({tool_choice.name or ""})
            self._python = tool_choice.name == PYTHON
        elif tools is None:
            self._names = None
            self._python = True
        else:
            self._names = frozenset(tools.names)
            self._python = tools.allows_python
        recipients = set(self._names or ())
        if fmt.text_recipient:
            recipients.add(fmt.text_recipient)
        if self._python and fmt.python_recipient:
            recipients.add(fmt.python_recipient)
        self._recipients = frozenset(recipients)
        self._stops = fmt.stop_tokens
        self._call_marker = fmt.call_marker
        self._name_end = fmt.name_terminator.rstrip() or fmt.name_terminator
        self._python_prefix = fmt.python_prefix if (self._python and self._calls_enabled) else None

        self._state = State.HEADER if fmt.recipient_first else State.TEXT
        self._return_state = State.TEXT  # where a failed header goes back to
        self._marker = ""  # the marker text that opened the current header
        self._buf = ""
        self._finished = False
        # current block: None for text, else the call index
        self._block: int | None = None
        self._started = False  # something non-blank emitted in the current block
        self._pending = ""  # whitespace held back inside the current block
        self._content_emitted = False
        self._n_calls = 0
        self._role_sent = False
        self._events: list[dict[str, Any]] = []
        self._trailing_logged = False

        prefix = fmt.generation_prefix(tool_choice)
        if prefix:
            self._buf = prefix
            self._run(final=False)

    # ------------------------------------------------------------------ API

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def legacy(self) -> bool:
        """Whether chunks use the legacy ``function_call`` shape (legacy ``functions``
        tools or a ``{"name": N}`` tool_choice)."""
        return self._legacy

    def feed(self, delta: str) -> list[dict[str, Any]]:
        """Consume the next piece of generated text.

        Parameters
        ----------
        delta : str
            Any slice of the output; special tokens may be split across
            deltas.

        Returns
        -------
        list of dict
            Chunk choices that became certain (possibly none).

        Raises
        ------
        RuntimeError
            If called after :meth:`finish`.
        """
        if self._finished:
            raise RuntimeError("StreamParser.feed() called after finish()")
        if delta:
            self._buf += delta
            self._run(final=False)
        return self._take()

    def finish(self) -> list[dict[str, Any]]:
        """Flush held-back text and return the last chunks, finish reason included.

        Returns
        -------
        list of dict
            Remaining chunk choices; the last one has an empty delta and
            ``finish_reason`` ``"tool_calls"`` (``"function_call"`` for legacy
            functions) if a call was parsed, else ``"stop"``.

        Raises
        ------
        RuntimeError
            If called twice.
        """
        if self._finished:
            raise RuntimeError("StreamParser.finish() called twice")
        self._run(final=True)
        self._close_block()
        self._finished = True
        if not self._role_sent and not self._events:
            self._events.append({"content": ""})
        chunks = self._take()
        reason = "tool_calls" if self._n_calls else "stop"
        final = {"index": 0, "delta": {}, "finish_reason": reason}
        chunks.append(to_legacy_function_call(final) if self._legacy else final)  # type: ignore[arg-type]
        return chunks

    # ------------------------------------------------------------ machinery

    def _markers(self) -> tuple[str, ...]:
        """Markers that are active in the current state."""
        calls_open = self._calls_enabled and (self._fmt.parallel_calls or self._n_calls == 0)
        openers: tuple[str, ...] = ()
        if calls_open:
            openers = (self._call_marker,) + ((self._python_prefix,) if self._python_prefix else ())
        if self._state == State.TEXT:
            return self._stops + openers
        if self._state == State.ARGS:
            if self._fmt.call_suffix:
                return self._stops + (self._fmt.call_suffix,)
            return self._stops + openers
        return self._stops  # CODE

    def _run(self, *, final: bool) -> None:
        while True:
            if self._state == State.DONE:
                if self._buf.strip() and not self._trailing_logged:
                    logger.warning("Ignoring text generated after the stop token: %r", self._buf[:80])
                    self._trailing_logged = True
                self._buf = ""
                return
            if self._state == State.HEADER:
                if not self._header(final=final):
                    return
                continue
            markers = self._markers()
            pos, marker = _find_first(self._buf, markers)
            if marker is None:
                keep = 0 if final else _partial_suffix(self._buf, markers)
                self._push(self._buf[: len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep :]
                return
            self._push(self._buf[:pos])
            self._buf = self._buf[pos + len(marker) :]
            if marker in self._stops:
                self._close_block()
                self._state = State.DONE
            elif marker == self._fmt.call_suffix and self._state == State.ARGS:
                self._close_block()
                self._open_text()
            elif marker == self._python_prefix:
                self._start_call(PYTHON)
                self._state = State.CODE
            else:  # call marker
                self._return_state = self._state
                self._marker = marker
                self._state = State.HEADER

    def _header(self, *, final: bool) -> bool:
        """Try to read a recipient; return False when more input is needed."""
        text = self._buf
        i = 0
        while i < len(text) and i < _MAX_PAD and text[i] in _PAD:
            i += 1
        j = i
        while j < len(text) and self._name_prefix_ok(text[i : j + 1]):
            j += 1
        name = text[i:j]
        k = j
        while k < len(text) and k - j < _MAX_PAD and text[k] in _PAD:
            k += 1
        rest = text[k:]
        if rest.startswith(self._name_end) and self._name_ok(name):
            self._buf = text[k + len(self._name_end) :]
            self._marker = ""
            self._close_block()
            if name == self._fmt.text_recipient:
                self._open_text()
            else:
                self._start_call(name)
                self._state = State.ARGS
            return True
        incomplete = k == len(text) or (len(rest) < len(self._name_end) and self._name_end.startswith(rest))
        if incomplete and not final:
            return False
        # Not a header: the marker is literal text of the block it interrupted.
        literal = self._marker + text
        # A special-token marker or a missing first recipient is a real malformation;
        # a plain ">>>" or "<function=" inside text is ordinary content.
        malformed = self._marker.startswith("<|") or not self._marker
        ends_turn = any(text[i:].startswith(s) or s.startswith(text[i:]) for s in self._stops)
        if literal and not (ends_turn and not self._marker):  # an empty turn is not an error
            (logger.warning if malformed else logger.debug)("Not a call header, kept as text: %r", literal[:80])
        self._state = self._return_state
        if self._marker:
            # Emit the marker's first character and rescan the rest, so that an overlapping
            # real marker (">>>>name") or a stop token inside the text is still found.
            self._push(self._marker[0])
            self._buf = literal[1:]
        else:
            # The opening header of a v2/v3.llama3 turn: rescan everything as text.
            self._buf = literal
        self._marker = ""
        return True

    def _name_prefix_ok(self, prefix: str) -> bool:
        if self._names is None and NAME_PATTERN.fullmatch(prefix):
            return True
        return any(r.startswith(prefix) for r in self._recipients)

    def _name_ok(self, name: str) -> bool:
        if not name:
            return False
        if name in self._recipients:
            return True
        if self._names is None and NAME_PATTERN.fullmatch(name):
            return name != PYTHON or self._python
        return False

    # --------------------------------------------------------------- blocks

    def _open_text(self) -> None:
        self._state = State.TEXT
        self._block = None
        self._started = False
        self._pending = ""

    def _close_block(self) -> None:
        self._pending = ""
        self._started = False

    def _start_call(self, name: str) -> None:
        index = self._n_calls
        self._n_calls += 1
        self._block = index
        self._started = False
        self._pending = ""
        self._emit(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": new_call_id(),
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        )

    def _push(self, text: str) -> None:
        """Add text to the current block, stripping it on the fly."""
        if not text:
            return
        if not self._started:
            text = text.lstrip()
            if not text:
                return
        body = text.rstrip()
        tail = text[len(body) :]
        if not body:
            self._pending += tail
            return
        if not self._started:
            self._started = True
            if self._block is None and self._content_emitted:
                body = "\n" + body
        out = self._pending + body
        self._pending = tail
        if self._block is None:
            self._content_emitted = True
            self._emit({"content": out})
        else:
            self._emit({"tool_calls": [{"index": self._block, "function": {"arguments": out}}]})

    def _emit(self, delta: dict[str, Any]) -> None:
        last = self._events[-1] if self._events else None
        if last is not None:
            if "content" in delta and "content" in last:
                last["content"] += delta["content"]
                return
            if _is_args(delta) and _is_args(last) and last["tool_calls"][0]["index"] == delta["tool_calls"][0]["index"]:
                last["tool_calls"][0]["function"]["arguments"] += delta["tool_calls"][0]["function"]["arguments"]
                return
        self._events.append(delta)

    def _take(self) -> list[dict[str, Any]]:
        chunks = []
        for delta in self._events:
            if not self._role_sent:
                delta = {"role": "assistant", **delta}
                self._role_sent = True
            chunk: dict[str, Any] | None = {"index": 0, "delta": delta, "finish_reason": None}
            if self._legacy:
                chunk = to_legacy_function_call(chunk)  # type: ignore[arg-type]
            if chunk is not None:
                chunks.append(chunk)
        self._events = []
        return chunks


def _is_args(delta: Mapping[str, Any]) -> bool:
    calls = delta.get("tool_calls")
    return bool(calls) and "id" not in calls[0]


def _find_first(text: str, markers: Iterable[str]) -> tuple[int, str | None]:
    """Leftmost occurrence of any marker (the longest one on ties)."""
    best_pos, best = -1, None
    for marker in markers:
        pos = text.find(marker)
        if pos < 0:
            continue
        if best is None or pos < best_pos or (pos == best_pos and len(marker) > len(best)):
            best_pos, best = pos, marker
    return best_pos, best


def _partial_suffix(text: str, markers: Iterable[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a marker."""
    best = 0
    for marker in markers:
        for n in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:n]):
                best = n
                break
    return best


def accumulate(chunks: Iterable[Mapping[str, Any]], *, legacy: bool | None = None) -> dict[str, Any]:
    """Merge chunk choices into the message they describe.

    Parameters
    ----------
    chunks : iterable of mapping
        Choices as returned by :class:`StreamParser` (``tool_calls`` or legacy
        ``function_call`` deltas).
    legacy : bool or None, optional
        Return the legacy shape; by default inferred from the chunks (a
        ``function_call`` delta or finish reason).

    Returns
    -------
    dict
        ``{"role", "content", "tool_calls", "finish_reason"}``, or
        ``{"role", "content", "function_call", "finish_reason"}`` when the
        chunks used ``function_call``.  Empty content is ``None``.
    """
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    function_call: dict[str, str] | None = None
    inferred = False
    finish = None
    for chunk in chunks:
        delta = chunk.get("delta") or {}
        if delta.get("content"):
            content.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            entry = calls.setdefault(
                call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if call.get("id"):
                entry["id"] = call["id"]
            fn = call.get("function") or {}
            if fn.get("name"):
                entry["function"]["name"] = fn["name"]
            entry["function"]["arguments"] += fn.get("arguments") or ""
        if "function_call" in delta:
            inferred = True
            fn = delta["function_call"] or {}
            if function_call is None:
                function_call = {"name": "", "arguments": ""}
            if fn.get("name"):
                function_call["name"] = fn["name"]
            function_call["arguments"] += fn.get("arguments") or ""
        if chunk.get("finish_reason"):
            finish = chunk["finish_reason"]
            inferred = inferred or finish == "function_call"
    text = "".join(content) or None
    if legacy if legacy is not None else inferred:
        return {"role": "assistant", "content": text, "function_call": function_call, "finish_reason": finish}
    return {
        "role": "assistant",
        "content": text,
        "tool_calls": [calls[i] for i in sorted(calls)] or None,
        "finish_reason": finish,
    }
