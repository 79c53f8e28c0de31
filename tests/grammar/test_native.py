"""The C extension (grammar/_native.c): the schema fingerprint and the fast key built on it,
and the automaton row fill.

The fingerprint is checked against a pure-Python SipHash-1-3-128 of the encoding the C
file documents, so the buffering (4 KiB flushes, short-string copies, varint lengths) is
tested byte for byte; then for what the compiler relies on: equal values give equal
fingerprints, different values different ones, and what it does not take falls back.
"""

from __future__ import annotations

import collections
import enum
import random
import struct

import pytest

from grammar import grammar as ggrammar
from grammar import native
from grammar.grammar import canonical_key, fast_key

pytestmark = pytest.mark.skipif(
    not native.NATIVE, reason="the C extension is not in use (not built, or GRAMMAR_NO_NATIVE set)")

KEY = bytes(range(16))
M64 = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def _round(v: list[int]) -> None:
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & M64; v1 = _rotl(v1, 13) ^ v0; v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & M64; v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & M64; v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & M64; v1 = _rotl(v1, 17) ^ v2; v2 = _rotl(v2, 32)
    v[:] = [v0, v1, v2, v3]


def siphash_128(key: bytes, data: bytes, c: int = 1, d: int = 3) -> bytes:
    """SipHash-c-d with 128-bit output, written from the SipHash paper."""
    k0, k1 = struct.unpack("<QQ", key)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D ^ 0xEE,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    whole = len(data) // 8 * 8
    tail = int.from_bytes(data[whole:], "little") | ((len(data) & 0xFF) << 56)
    for m in [*struct.unpack(f"<{whole // 8}Q", data[:whole]), tail]:
        v[3] ^= m
        for _ in range(c):
            _round(v)
        v[0] ^= m
    v[2] ^= 0xEE
    for _ in range(d):
        _round(v)
    a = v[0] ^ v[1] ^ v[2] ^ v[3]
    v[1] ^= 0xDD
    for _ in range(d):
        _round(v)
    return struct.pack("<QQ", a, v[0] ^ v[1] ^ v[2] ^ v[3])


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode(v) -> bytes:
    """The byte stream grammar/_native.c documents for a value."""
    if v is None:
        return b"N\x00"
    if v is True or v is False:
        return b"B" + _varint(int(v))
    if type(v) is int:
        return b"i" + struct.pack("<q", v)
    if type(v) is float:
        return b"f" + struct.pack("<d", v)
    if type(v) is str:
        width = 1 if max(map(ord, v), default=0) < 0x100 else 2 if max(map(ord, v)) < 0x10000 else 4
        raw = v.encode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[width])
        return bytes([ord("0") + width]) + _varint(len(v)) + raw
    if type(v) is dict:
        return b"d" + _varint(len(v)) + b"".join(encode(k) + encode(x) for k, x in v.items())
    tag = b"l" if type(v) is list else b"t"
    return tag + _varint(len(v)) + b"".join(encode(x) for x in v)


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, 1, -1, 2**63 - 1, -2**63, rng.randrange(-10**6, 10**6)])
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.0, 1e300, rng.random()])
    if kind in (3, 4, 5):
        alphabet = rng.choice(["ab", "aé", "a\u0100", "a\U0001F600", "xyz\n\"\\"])
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 7, 8, 33, 200, 5000])))
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    return {str(_random_value(rng, depth + 1)): _random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def test_the_reference_siphash_matches_the_published_vectors():
    """SipHash-2-4-128, key 00..0f, messages b"" and b"\\x00" (the authors' vectors.h)."""
    assert siphash_128(KEY, b"", 2, 4).hex() == "a3817f04ba25a8e66df67214c7550293"
    assert siphash_128(KEY, b"\x00", 2, 4).hex() == "da87c1d86b99af44347659119b22fc45"


def test_fingerprint_is_siphash13_of_the_documented_encoding():
    rng = random.Random(7)
    values = [None, True, False, 0, -1, 2**63 - 1, -2**63, 0.5, -0.0, "", "a" * 31, "a" * 32,
              "a" * 33, "é" * 127, "\u0100" * 128, "\U0001F600" * 3, "x" * 16384,
              "y" * 5000, [["z" * 4090]] * 3, {"k": [1, 2.0, None]}, (1, "t")]
    values += [_random_value(rng) for _ in range(300)]
    for v in values:
        assert native.ext.fingerprint(v, KEY) == siphash_128(KEY, encode(v)), repr(v)[:80]


def test_equal_values_share_a_fingerprint_and_different_ones_do_not():
    rng = random.Random(11)
    values = [_random_value(rng) for _ in range(2000)]
    values += [1, 1.0, True, 0, 0.0, -0.0, False, None, "", [], (), {}, [[]], [()], "1", ["1"],
               ["ab"], ["a", "b"], {"a": "b"}, {"ab": ""}, {"a": 1, "b": 2}, {"b": 2, "a": 1},
               2**63 - 1, -2**63, "é", "\xe9\u0100"[0:1] + "x", "éx"]
    by_key: dict[bytes, object] = {}
    for v in values:
        fp = native.ext.fingerprint(v, KEY)
        if fp in by_key:   # equal fingerprints only for values equal in the canonical key
            assert canonical_key(by_key[fp]) == canonical_key(v)
        by_key[fp] = v
        assert native.ext.fingerprint(_rebuild(v), KEY) == fp   # no object in common
    assert len({canonical_key(v) for v in values}) == len(by_key)


def _rebuild(v):
    """An equal value made of new objects."""
    if isinstance(v, str):
        return "".join(list(v + "#"))[:-1]
    if isinstance(v, dict):
        return {_rebuild(k): _rebuild(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_rebuild(x) for x in v)
    return v


def test_the_fingerprint_depends_on_the_key_and_checks_it():
    v = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert native.ext.fingerprint(v, KEY) != native.ext.fingerprint(v, bytes(16))
    with pytest.raises(ValueError, match="16 bytes"):
        native.ext.fingerprint(v, b"short")


class _Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("value", [
    2**64, [-2**63 - 1], collections.OrderedDict(a=1), {"a": _Color.RED}, {1.5j: 1}, {"s": {1, 2}}])
def test_values_outside_the_encoding_give_none(value):
    assert native.ext.fingerprint(value, KEY) is None


def test_deep_and_cyclic_values_give_none_without_crashing():
    nested: list = []
    for _ in range(900):      # deep but within the limit: fingerprinted like any value
        nested = [nested]
    assert native.ext.fingerprint(nested, KEY) == siphash_128(KEY, b"l\x01" * 900 + b"l\x00")
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert native.ext.fingerprint(deep, KEY) is None
    cyclic: list = []
    cyclic.append(cyclic)
    assert native.ext.fingerprint(cyclic, KEY) is None


def test_fast_key_uses_the_fingerprint_and_falls_back_to_marshal(monkeypatch):
    shared = {"type": "integer"}
    a = {"type": "object", "properties": {"x": shared, "y": shared}}
    b = {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}
    fp = native.ext.fingerprint(a, ggrammar._FINGERPRINT_KEY)
    assert fast_key(a) == fast_key(b) == ("sip", fp)
    assert isinstance(fast_key({"n": 2**70}), bytes)            # outside the fingerprint: marshal
    assert fast_key({"s": {1, 2}}) == fast_key({"s": {1, 2}})   # marshal takes sets
    assert fast_key({"c": 1.5j, "x": object()}) is None         # neither takes it
    monkeypatch.setattr(ggrammar, "_native", None)
    assert fast_key(a) != fast_key(b)   # marshal shares `shared`: equal values, different keys


def test_fill_row_matches_the_python_row():
    """The C row fill (an automaton row from its (mask, state) partition) writes the same
    table row and returns the same tuple as the Python fallback, for cells of every width
    (single bytes, the four 64-bit words, the whole range) and large state numbers."""
    import numpy as np
    from grammar.automaton import _fill_row_py
    rng = random.Random(7)
    for _ in range(300):
        owner = [rng.choice([0, 0, 1, 2, 3, 4]) for _ in range(256)]
        states = {1: rng.randint(1, 9), 2: rng.randint(10, 300), 3: 70_000, 4: 2**31 - 1}
        cells = []
        for k, st in states.items():
            m = sum(1 << b for b in range(256) if owner[b] == k)
            if m:
                cells.append((m, st))
        a = np.full((3, 256), -1, dtype=np.int32)
        b = a.copy()
        ta = native.ext.fill_row(a, 1, cells)
        tb = _fill_row_py(b, 1, cells)
        assert ta == tb and (a == b).all() and (a[0] == -1).all() and (a[2] == -1).all()
    full = np.zeros((1, 256), dtype=np.int32)
    assert native.ext.fill_row(full, 0, [((1 << 256) - 1, 5)]) == (5,) * 256
    assert native.ext.fill_row(full, 0, []) == (0,) * 256
    with pytest.raises(ValueError):
        native.ext.fill_row(full, 1, [])             # no row 1
    with pytest.raises(ValueError):
        native.ext.fill_row(np.zeros((1, 256), dtype=np.int64), 0, [])
    with pytest.raises(TypeError):
        native.ext.fill_row(full, 0, [(1, "x")])
