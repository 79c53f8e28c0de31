"""JSON Schema ``format`` values as exact regular languages of JSON string content.

:func:`format_content_term` returns the language of JSON string *contents* (raw text
between the quotes, escapes included: every spelling of a valid value is accepted) whose
decoded value is valid for the format.  The languages follow the RFCs the JSON Schema
specification names, as the JSON-Schema-Test-Suite reads them (which is stricter than
Python ``jsonschema``'s ``FormatChecker`` in places, e.g. ``email`` there only checks for
an ``@``):

============================ ============================================================
format                       language
============================ ============================================================
date                         RFC 3339 ``full-date``; real calendar dates, leap years,
                             years 0001-9999 (year 0000 rejected, like Python ``date``)
time                         RFC 3339 ``full-time``: ``hh:mm:ss(.frac)?`` + ``Z`` or
                             ``±hh:mm``; a leap second ``:60`` only where the UTC time is
                             23:59 (``T``/``Z`` case-insensitive)
date-time                    ``date`` + ``T``/``t`` + ``time``
duration                     RFC 3339 Appendix A ``duration`` (no fractions, no signs)
uuid                         RFC 4122 ``8-4-4-4-12`` hex digits, either case
ipv4                         dotted quad, octets 0-255 without leading zeros
ipv6                         RFC 4291 text forms incl. ``::`` and an embedded IPv4 tail;
                             no zone id
hostname                     RFC 1123 LDH labels (1-63 chars), total <= 253 chars
uri / uri-reference          RFC 3986 ``URI`` / ``URI-reference``
iri / iri-reference          RFC 3987 ``IRI`` / ``IRI-reference``
uri-template                 RFC 6570 (level 4)
json-pointer                 RFC 6901
relative-json-pointer        draft-handrews-relative-json-pointer-01
email                        RFC 5321 ``Mailbox``: dot-atom or quoted local part; a
                             hostname, ``[IPv4]`` or ``[IPv6:...]`` domain
============================ ============================================================

Narrowed formats (sound but not complete: some valid values are rejected; they are listed
in :data:`NARROWED_FORMATS` so callers can report them):

* ``hostname``: labels with ``--`` in positions 3-4 (``xn--`` A-labels and other reserved
  labels) are rejected, because checking Punycode/IDNA validity is not regular.
* ``idn-hostname``: restricted to ``hostname`` (ASCII, same rule).
* ``email``: general address literals (``[tag:...]``) are rejected, and the domain follows
  the ``hostname`` narrowing.  ``idn-email``: restricted to ``email``.

``regex`` is not regular (nested groups) and raises :class:`UnsupportedFormat`.  Every
format above is known in every draft (as with Python ``jsonschema``'s default
``FormatChecker``, which checks all formats it knows whatever the draft); other names are
unknown: :func:`format_content_term` returns ``None`` and the caller treats the keyword as
an annotation.
"""

from __future__ import annotations

import functools

from .ir import Term, alt, both, repeat, seq
from .jsonvalue import json_char_any
from .regex import pattern_full_content_term

__all__ = ["format_content_term", "known_formats", "NARROWED_FORMATS", "UnsupportedFormat",
           "FORMAT_PATTERNS"]


class UnsupportedFormat(ValueError):
    """A known format whose language is not regular (``regex``)."""


NARROWED_FORMATS = frozenset({"hostname", "idn-hostname", "email", "idn-email"})

_DRAFT_FORMATS = {
    4: {"date-time", "email", "hostname", "ipv4", "ipv6", "uri"},
    6: {"uri-reference", "uri-template", "json-pointer"},
    7: {"date", "time", "iri", "iri-reference", "idn-email", "idn-hostname",
        "relative-json-pointer", "regex"},
    2019: {"duration", "uuid"},
}


def known_formats(draft: int) -> frozenset[str]:
    """Formats defined by a draft (4, 6, 7, 2019, 2020)."""
    out: set[str] = set()
    for d, names in _DRAFT_FORMATS.items():
        if d <= draft:
            out |= names
    return frozenset(out)


# ---------------------------------------------------------------- regex sources

_D2 = r"\d\d"
_YEAR = r"(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d\d\d)"
_LEAP = r"(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MD = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
       r"|02-(?:0[1-9]|1\d|2[0-8]))")
DATE = rf"(?:{_YEAR}-{_MD}|{_LEAP}-02-29)"
_HH = r"(?:[01]\d|2[0-3])"
_MM = r"[0-5]\d"
_FRAC = r"(?:\.\d+)?"
_OFFSET = rf"(?:[Zz]|[+-]{_HH}:{_MM})"


def _leap_second_regex() -> str:
    """``hh:mm:60(.frac)?offset`` where local time minus offset is 23:59 UTC."""
    by_local: dict[int, list[str]] = {}
    for v in range(1440):  # offset value in minutes
        for sign in (1, -1):
            local = (1439 + sign * v) % 1440
            s = "+" if sign == 1 else "-"
            by_local.setdefault(local, []).append(f"\\{s}{v // 60:02d}:{v % 60:02d}")
    by_local[1439].append("[Zz]")
    alts = []
    for local, offs in sorted(by_local.items()):
        alts.append(f"{local // 60:02d}:{local % 60:02d}:60{_FRAC}(?:{'|'.join(offs)})")
    return "(?:" + "|".join(alts) + ")"


def _time_regex() -> str:
    return rf"(?:{_HH}:{_MM}:[0-5]\d{_FRAC}{_OFFSET}|{_leap_second_regex()})"


_DUR = (r"P(?:(?:\d+D|\d+M(?:\d+D)?|\d+Y(?:\d+M(?:\d+D)?)?)(?:T(?:\d+H(?:\d+M(?:\d+S)?)?"
        r"|\d+M(?:\d+S)?|\d+S))?|T(?:\d+H(?:\d+M(?:\d+S)?)?|\d+M(?:\d+S)?|\d+S)|\d+W)")
_HEX = "[0-9a-fA-F]"
UUID = rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)"
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H16 = rf"{_HEX}{{1,4}}"
_LS32 = rf"(?:{_H16}:{_H16}|{IPV4})"


def _ipv6() -> str:
    h = _H16
    forms = [rf"(?:{h}:){{6}}{_LS32}", rf"::(?:{h}:){{5}}{_LS32}",
             rf"(?:{h})?::(?:{h}:){{4}}{_LS32}"]
    for n, tail in ((1, rf"(?:{h}:){{3}}{_LS32}"), (2, rf"(?:{h}:){{2}}{_LS32}"),
                    (3, rf"{h}:{_LS32}"), (4, _LS32), (5, h), (6, "")):
        forms.append(rf"(?:(?:{h}:){{0,{n}}}{h})?::{tail}")
    return "(?:" + "|".join(forms) + ")"


IPV6 = _ipv6()
_LA = "[A-Za-z0-9]"
_LB = "[A-Za-z0-9-]"
# 1-63 characters, letters/digits at both ends, never "--" in positions 3-4
_LABEL = (rf"(?:{_LA}|{_LA}{_LA}|{_LA}{_LB}{_LA}|{_LA}{_LB}{_LB}{_LA}|"
          rf"{_LA}{_LB}(?:{_LA}{_LB}|-{_LA}){_LB}{{0,58}}{_LA})")
HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
EMAIL_LOCAL = rf"(?:{_ATEXT}+(?:\.{_ATEXT}+)*|{_QUOTED})"

# RFC 3986
_UNRES = r"A-Za-z0-9\-._~"
_SUBD = r"!$&'()*+,;="
_PCT = rf"%{_HEX}{_HEX}"


def _uri_parts(iri: bool) -> dict[str, str]:
    ucs = (r"\u00A0-\uD7FF\uF900-\uFDCF\uFDF0-\uFFEF\u{10000}-\u{1FFFD}\u{20000}-\u{2FFFD}"
           r"\u{30000}-\u{3FFFD}\u{40000}-\u{4FFFD}\u{50000}-\u{5FFFD}\u{60000}-\u{6FFFD}"
           r"\u{70000}-\u{7FFFD}\u{80000}-\u{8FFFD}\u{90000}-\u{9FFFD}\u{A0000}-\u{AFFFD}"
           r"\u{B0000}-\u{BFFFD}\u{C0000}-\u{CFFFD}\u{D0000}-\u{DFFFD}\u{E1000}-\u{EFFFD}"
           if iri else "")
    priv = r"\uE000-\uF8FF\u{F0000}-\u{FFFFD}\u{100000}-\u{10FFFD}" if iri else ""
    pchar = f"(?:[{_UNRES}{ucs}{_SUBD}:@]|{_PCT})"
    seg = f"{pchar}*"
    segnz = f"{pchar}+"
    segnznc = f"(?:[{_UNRES}{ucs}{_SUBD}@]|{_PCT})+"
    userinfo = f"(?:[{_UNRES}{ucs}{_SUBD}:]|{_PCT})*"
    ipfuture = rf"[vV]{_HEX}+\.[{_UNRES}{_SUBD}:]+"
    host = rf"(?:\[(?:{IPV6}|{ipfuture})\]|(?:[{_UNRES}{ucs}{_SUBD}]|{_PCT})*)"
    authority = rf"(?:{userinfo}@)?{host}(?::\d*)?"
    abempty = f"(?:/{seg})*"
    absolute = f"/(?:{segnz}(?:/{seg})*)?"
    rootless = f"{segnz}(?:/{seg})*"
    noscheme = f"{segnznc}(?:/{seg})*"
    query = f"(?:{pchar}|[/?{priv}])*"
    frag = f"(?:{pchar}|[/?])*"
    scheme = r"[A-Za-z][A-Za-z0-9+\-.]*"
    hier = f"(?://{authority}{abempty}|{absolute}|{rootless}|)"
    rel = f"(?://{authority}{abempty}|{absolute}|{noscheme}|)"
    tail = f"(?:\\?{query})?(?:#{frag})?"
    uri = f"{scheme}:{hier}{tail}"
    return {"uri": uri, "ref": f"(?:{uri}|{rel}{tail})"}


_URI = _uri_parts(False)
_IRI = _uri_parts(True)

_UCS_PRIV = (r"\u00A0-\uD7FF\uF900-\uFDCF\uFDF0-\uFFEF\u{10000}-\u{EFFFD}"
             r"\uE000-\uF8FF\u{F0000}-\u{10FFFD}")
_UT_LIT = rf"(?:[\x21\x23\x24\x26-\x3B\x3D\x3F-\x5B\x5D\x5F\x61-\x7A\x7E{_UCS_PRIV}]|{_PCT})"
_VARCHAR = rf"(?:[A-Za-z0-9_]|{_PCT})"
_VARSPEC = rf"{_VARCHAR}(?:\.?{_VARCHAR})*(?::[1-9]\d{{0,3}}|\*)?"
URI_TEMPLATE = rf"(?:{_UT_LIT}|\{{[+#./;?&=,!@|]?{_VARSPEC}(?:,{_VARSPEC})*\}})*"
JSON_POINTER = r"(?:/(?:[^/~]|~[01])*)*"
REL_JSON_POINTER = rf"(?:0|[1-9]\d*)(?:#|{JSON_POINTER})"

FORMAT_PATTERNS: dict[str, str] = {
    "date": DATE,
    "duration": _DUR,
    "uuid": UUID,
    "ipv4": IPV4,
    "ipv6": IPV6,
    "uri": _URI["uri"],
    "uri-reference": _URI["ref"],
    "iri": _IRI["uri"],
    "iri-reference": _IRI["ref"],
    "uri-template": URI_TEMPLATE,
    "json-pointer": JSON_POINTER,
    "relative-json-pointer": REL_JSON_POINTER,
}
"""Full-match ECMA-262 patterns for the formats that are plain regexes."""


@functools.lru_cache(maxsize=None)
def _hostname_term() -> Term:
    return both(pattern_full_content_term(HOSTNAME), repeat(json_char_any(), 1, 253))


@functools.lru_cache(maxsize=None)
def _time_term() -> Term:
    return pattern_full_content_term(_time_regex())


@functools.lru_cache(maxsize=None)
def _email_term() -> Term:
    local = pattern_full_content_term(EMAIL_LOCAL)
    at = pattern_full_content_term("@")
    domain = alt(_hostname_term(), pattern_full_content_term(rf"\[{IPV4}\]"),
                 pattern_full_content_term(rf"\[[iI][pP][vV]6:{IPV6}\]"))
    return seq(local, at, domain)


@functools.lru_cache(maxsize=None)
def _format_term(name: str) -> Term:
    if name in FORMAT_PATTERNS:
        return pattern_full_content_term(FORMAT_PATTERNS[name])
    if name in ("hostname", "idn-hostname"):
        return _hostname_term()
    if name == "time":
        return _time_term()
    if name == "date-time":
        return seq(pattern_full_content_term(DATE), pattern_full_content_term("[Tt]"),
                   _time_term())
    if name in ("email", "idn-email"):
        return _email_term()
    raise KeyError(name)


def format_content_term(name: str, draft: int = 2020) -> Term | None:
    """The JSON string contents valid for ``format: name`` under ``draft``.

    Returns
    -------
    Term or None
        ``None`` when the format is not defined for the draft (an annotation only).

    Raises
    ------
    UnsupportedFormat
        For ``regex`` (not a regular language).
    """
    if name not in known_formats(max(draft, 2020)):
        return None
    if name == "regex":
        raise UnsupportedFormat("format 'regex' is not a regular language")
    return _format_term(name)
