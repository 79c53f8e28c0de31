"""grammar.formats against Python jsonschema's FormatChecker (where both implement the
same RFC) and against the documented deliberate differences."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st
from jsonschema import FormatChecker

from grammar.formats import NARROWED_FORMATS, UnsupportedFormat, format_content_term
from grammar.ir import matches

CHECKER = FormatChecker()


def ok(fmt: str, s: str) -> bool:
    return matches(format_content_term(fmt), json.dumps(s)[1:-1].encode())


SEEDS = {
    "date": ["2020-02-29", "1999-12-31", "0001-01-01", "2100-02-28", "2023-04-30"],
    "date-time": ["1963-06-19T08:30:06.283185Z", "1990-12-31T15:59:50.123-08:00",
                  "2020-02-29t00:00:00+23:59"],
    "ipv4": ["192.168.0.1", "0.0.0.0", "255.255.255.255", "10.0.10.1"],
    "ipv6": ["::1", "1:2:3:4:5:6:7:8", "fe80::1:2", "::ffff:192.168.0.1", "1::", "a:b::c:d"],
    "uuid": ["2eb8aa08-aa98-11ea-b4aa-73b441d16380", "00000000-0000-0000-0000-000000000000"],
    "json-pointer": ["/a/b~0c~1", "", "/", "/0/x y"],
    "uri": ["http://x.org/a?b=c#d", "urn:isbn:0451450523", "mailto:a@b.c",
            "http://[::1]:80/", "ftp://u:p@h/%20"],
    "uri-reference": ["/a/b?c", "../x", "#frag", "//host/p", "a:b"],
}
MUTATE_ALPHABET = "0123456789:-.T/Z+aAfF%[]#?@ ~xz"


@st.composite
def mutated(draw, fmt):
    s = draw(st.sampled_from(SEEDS[fmt]))
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(s)))
        op = draw(st.sampled_from(["ins", "del", "rep"]))
        c = draw(st.sampled_from(MUTATE_ALPHABET))
        if op == "ins":
            s = s[:i] + c + s[i:]
        elif op == "del" and i < len(s):
            s = s[:i] + s[i + 1:]
        elif i < len(s):
            s = s[:i] + c + s[i + 1:]
    return s


def _checker(fmt: str, s: str) -> bool:
    return CHECKER.conforms(s, fmt)


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@settings(max_examples=120, deadline=None, derandomize=True)
@given(data=st.data())
def test_agrees_with_format_checker(fmt, data):
    s = data.draw(mutated(fmt))
    if fmt == "uuid" and (s.count("-") != 4 or set(s) - set("0123456789abcdefABCDEF-")):
        return  # Python's UUID() strips dashes, braces, "urn:uuid:" and accepts "0x"
    if fmt in ("uri", "uri-reference") and "%" in s:
        return  # rfc3986-validator accepts a lone '%' in places the RFC does not
    if fmt == "date-time" and ":60" in s:
        return  # leap seconds: RFC 3339 allows them, rfc3339-validator does not
    assert ok(fmt, s) == _checker(fmt, s), (fmt, s)


@pytest.mark.parametrize("fmt,valid,invalid", [
    ("date", ["2020-02-29", "2000-02-29"], ["2021-02-29", "1900-02-29", "0000-01-01",
                                             "2020-1-01", "2020-01-01Z", "٢٠٢٠-01-01"]),
    ("time", ["23:59:60Z", "15:59:60-08:00", "08:30:06.2+01:00", "00:00:00z"],
     ["23:58:60Z", "24:00:00Z", "12:00:00", "12:00:00+01", "22:59:60Z"]),
    ("date-time", ["1998-12-31T23:59:60Z"], ["1998-12-31 23:59:59Z", "1998-12-31T23:59:59"]),
    ("duration", ["P4DT12H30M5S", "P2W", "PT0S", "P1Y2M"],
     ["P", "PT", "P1Y2D", "PT1H2S", "P1W1D", "PT0.5S", "-P1D"]),
    ("hostname", ["a", "a-b.c", "a--b.com", "x" * 63 + ".com"],
     ["", "-a", "a-", "a..b", "a.", "x" * 64, "a_b", "xn--nxasmq6b", ("a." * 127) + "ab"]),
    ("email", ["a.b@c.d", "\"x y\"@h", "a@[1.2.3.4]", "a@[IPv6:::1]"],
     [".a@b", "a.@b", "a..b@c", "a@b@c", "a b@c", "a@"]),
    ("ipv6", ["::", "1::8", "1:2:3:4:5:6:1.2.3.4"], ["1:2:3:4:5:6:7:8:9", "::1%eth0",
                                                     "1:::2", "12345::"]),
    ("relative-json-pointer", ["0", "1/a", "2#"], ["01", "-1", "#", "a/b"]),
    ("uri-template", ["http://x/{a}{?b,c*}{/d:3}", "a'b"], ["{", "{a b}", "}"]),
    ("iri", ["http://ƒøø.ßår/?∂éœ=πîx#πîüx"], ["//x", "http://x/ /"]),
])
def test_rfc_cases(fmt, valid, invalid):
    for s in valid:
        assert ok(fmt, s), (fmt, s)
    for s in invalid:
        assert not ok(fmt, s), (fmt, s)


def test_spellings_of_a_valid_value_are_accepted():
    t = format_content_term("date")
    assert matches(t, b"\\u0032020-02-29")


def test_unknown_and_unsupported():
    assert format_content_term("no-such-format") is None
    with pytest.raises(UnsupportedFormat):
        format_content_term("regex")
    assert {"hostname", "email"} <= NARROWED_FORMATS
