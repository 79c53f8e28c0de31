"""Registry of the Functionary prompt formats.

=================  ==================================================
version            models
=================  ==================================================
``v1``             functionary-7b-v1.4
``v2``             functionary-7b-v2 ... small/medium-v2.4
``v2.llama3``      functionary-small-v2.5
``v3.llama3``      functionary-medium-v3.0, small-v3.2, medium-v3.2
``v3-llama3.1``    functionary-small-v3.1, medium-v3.1
=================  ==================================================

One module per format (``v1.py``, ``v2.py``, ``v2_llama3.py``,
``v3_llama3.py``, ``v3_llama31.py``); each defines a
:class:`~functionary.templates.base.Template` subclass, listed once in
:data:`_TEMPLATES` below.  :func:`get_template` returns a shared, stateless
instance by version name; :func:`detect_template` finds the version of a
tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from functionary.errors import TemplateError
from functionary.templates.base import Template, TurnFormat
from functionary.templates.v1 import V1Template
from functionary.templates.v2 import V2Template
from functionary.templates.v2_llama3 import FUNCTION_SEPARATOR, V2Llama3Template
from functionary.templates.v3_llama3 import V3Llama3Template
from functionary.templates.v3_llama31 import V3Llama31Template

__all__ = ["Template", "TurnFormat", "available_versions", "get_template", "detect_template"]

_TEMPLATES: dict[str, type[Template]] = {
    cls.version: cls for cls in (V1Template, V2Template, V2Llama3Template, V3Llama3Template, V3Llama31Template)
}
_INSTANCES: dict[str, Template] = {}

_VERSION_COMMENT = re.compile(r"\{#-?\s*version\s*=\s*(?P<version>[^\s#]+?)\s*-?#\}")

# Token ids that identify the Llama-3 families (as in the reference's detection).
_LLAMA31_EOM = ("<|eom_id|>", 128008)
_LLAMA3_SEPARATOR = (FUNCTION_SEPARATOR, 128254)


def available_versions() -> list[str]:
    """Return the registered version names.

    Returns
    -------
    list of str
        ``["v1", "v2", "v2.llama3", "v3.llama3", "v3-llama3.1"]``.
    """
    return list(_TEMPLATES)


def get_template(version: str) -> Template:
    """Return the template of a Functionary format.

    Parameters
    ----------
    version : str
        One of :func:`available_versions` (the reference's names), or a
        Functionary model name such as ``"meetkai/functionary-small-v3.2"``
        (with or without the ``meetkai/`` owner).

    Returns
    -------
    Template
        A shared, stateless instance with ``render``, ``parse``,
        ``stream_parser``, ``stop_tokens`` and ``turn_format``.

    Raises
    ------
    TemplateError
        If the version is unknown.
    """
    cls = _TEMPLATES.get(version)
    if cls is None:
        model = version.lower().rsplit("/", 1)[-1]
        for candidate in _TEMPLATES.values():
            if any(m.rsplit("/", 1)[-1] == model for m in candidate.models):
                cls = candidate
                version = candidate.version
    if cls is None:
        raise TemplateError(f"Unknown template version {version!r}; available: {', '.join(_TEMPLATES)}.")
    if version not in _INSTANCES:
        _INSTANCES[version] = cls()
    return _INSTANCES[version]


def _chat_template_text(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, Mapping):  # named templates: {"default": ..., "tool_use": ...}
        template = template.get("default") or next(iter(template.values()), None)
    elif isinstance(template, list):  # [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else ""


def _vocab(tokenizer: Any) -> Mapping[str, int]:
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if callable(get_vocab):
        vocab = get_vocab()
        if isinstance(vocab, Mapping):
            return vocab
    vocab = getattr(tokenizer, "vocab", None)
    return vocab if isinstance(vocab, Mapping) else {}


def detect_template(tokenizer: Any) -> Template:
    """Find the Functionary format of a tokenizer.

    Checks, in order:

    1. the ``{# version=X #}`` comment of ``tokenizer.chat_template`` (every
       Functionary chat template starts with one; it is the only reliable way
       to recognise v3.2, whose tokenizer is Llama 3.1's);
    2. ``<|eom_id|>`` with id 128008 (Llama 3.1 tokenizer) → ``v3-llama3.1``,
       unless the chat template writes ``>>>`` blocks and no ``<function=``,
       which is a v3.2 template without its comment → ``v3.llama3`` (the
       reference picked v3-llama3.1 here, its issue #264);
    3. ``<|reserved_special_token_249|>`` with id 128254 (Llama 3.0) →
       ``v2.llama3`` if the chat template uses it, else ``v3.llama3``;
    4. ``<|from|>`` in the vocabulary → ``v2``;
    5. ``<|START_OF_FUNCTION_CALL|>`` in the vocabulary → ``v1``.

    Parameters
    ----------
    tokenizer : object
        A transformers tokenizer, or anything with a ``chat_template``
        attribute and/or a ``get_vocab()`` method (or ``vocab`` mapping).

    Returns
    -------
    Template

    Raises
    ------
    TemplateError
        If the version comment names an unsupported format, or nothing
        matches.
    """
    chat_template = _chat_template_text(tokenizer)
    match = _VERSION_COMMENT.search(chat_template)
    if match:
        version = match.group("version")
        if version not in _TEMPLATES:
            raise TemplateError(
                f"The chat template declares version {version!r}, which is not supported; "
                f"supported: {', '.join(_TEMPLATES)}."
            )
        return get_template(version)
    vocab = _vocab(tokenizer)
    token, token_id = _LLAMA31_EOM
    if vocab.get(token) == token_id:
        if ">>>" in chat_template and "<function=" not in chat_template:
            return get_template("v3.llama3")
        return get_template("v3-llama3.1")
    token, token_id = _LLAMA3_SEPARATOR
    if vocab.get(token) == token_id:
        return get_template("v2.llama3" if token in chat_template else "v3.llama3")
    if "<|from|>" in vocab:
        return get_template("v2")
    if "<|START_OF_FUNCTION_CALL|>" in vocab:
        return get_template("v1")
    raise TemplateError("Cannot detect the Functionary template of this tokenizer.")
