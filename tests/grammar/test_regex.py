"""grammar.regex: the ECMA-262 subset against Python ``re`` on ASCII, search vs full
match, JSON-string spellings, and the rejected constructs."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from grammar.errors import RegexError
from grammar.ir import matches
from grammar.regex import parse_regex, pattern_string_term, regex_term

# ECMA patterns whose meaning on ASCII text equals Python's once "$" is read as "\Z"
PATTERNS = [
    r"^a+$", r"a|b", r"^(ab|cd)*e?$", r"[a-c]{2,3}", r"^\d{3}-\w+$", r"x.y", r"^[^abc]*$",
    r"(?:ab){2}", r"^[\s]+", r"colou?r$", r"^(?<n>a)b", r"[-a]", r"[a\-z]", r"a{2}", r"\.",
    r"^$", r"", r"(^a|b$)", r"^[\w.-]+@[\w-]+\.\w{2,}$", r"a+?b*?c??", r"^(a|ab)(c|bcd)$",
    r"[\d\s]{1,}", r"\x41\u0042", r"[^\W\d]+", r"^\S+$", r"(a|)+b", r"[.]", r"\(\)",
    r"a{0}", r"^.{2,4}$", r"a{1,}b{,2}",
]
ALPHA = "abcdexy-.@ 1_2\n\t{},AB()]"


def _py(p: str) -> re.Pattern:
    p = p.replace("(?<n>", "(?P<n>").replace("$", r"\Z").replace("{,2}", r"\{,2\}")
    return re.compile(p)


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=150, deadline=None, derandomize=True)
@given(s=st.text(alphabet=ALPHA, max_size=7))
def test_search_and_fullmatch_agree_with_python(pattern, s):
    pr = _py(pattern)
    content = json.dumps(s)[1:-1].encode()
    assert matches(pattern_string_term(pattern), content) == (pr.search(s) is not None)
    assert matches(regex_term(pattern), s.encode()) == (pr.fullmatch(s) is not None)
    assert matches(regex_term(pattern, anchored=False), s.encode()) == \
        (pr.search(s) is not None)


def test_json_spellings_and_code_points():
    t = pattern_string_term("^é.$")
    for spelling in ['é😀', '\\u00e9\\ud83d\\ude00', '\\u00E9x']:
        assert matches(t, spelling.encode()), spelling
    assert not matches(t, "é\\n".encode())          # '.' excludes line terminators
    assert matches(pattern_string_term(r'^\\"$'), b'\\\\\\"')  # a backslash then a quote
    assert matches(pattern_string_term(r"^\u{1F600}$"), "😀".encode())
    assert matches(pattern_string_term(r"^\s$"), b"\\u00a0")   # ECMA \s is Unicode
    assert not matches(pattern_string_term(r"^\d$"), "٣".encode())  # \d is ASCII


def test_unicode_general_categories():
    t = pattern_string_term(r"^\p{Lu}\P{L}$")
    assert matches(t, "É1".encode()) and not matches(t, "éa".encode())


def test_empty_classes():
    assert not matches(regex_term("[]"), b"a")
    assert matches(regex_term("[^]"), b"\n")


@pytest.mark.parametrize("bad", [
    "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", r"(a)\1", r"\k<x>(?<x>a)", r"\bword", r"a\B",
    r"\p{Script=Greek}", "(?i)a", "(?P<n>a)", "(?#c)", "a^b", "a$b", "(", ")", "[a", "a**",
    "*a", "a{2,1}",
    "x{1}{2}", "\\",
])
def test_rejected(bad):
    with pytest.raises(RegexError) as e:
        pattern_string_term(bad)
    assert e.value.pattern == bad


def test_annex_b_leniency():
    assert matches(regex_term("a{,2}"), b"a{,2}")
    assert matches(regex_term("a}"), b"a}")
    assert matches(regex_term("]"), b"]")
    assert parse_regex("x{2}")[0] == "rep"
