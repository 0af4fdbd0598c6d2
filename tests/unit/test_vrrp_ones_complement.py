"""The codec's RFC 1071 sum, computed modulo 0xFFFF, against the word-by-word definition."""

from __future__ import annotations

import random

from vrrp.packet import _ones_complement_sum


def reference(data: bytes) -> int:
    """RFC 1071 §4.1 as written: add 16-bit words, fold the carries."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_matches_the_word_by_word_sum() -> None:
    rng = random.Random(5798)
    cases = [b"", b"\x00", b"\x00\x00", b"\xff\xff", b"\xff\xff\xff\xff", b"\x01", b"\xff"]
    cases += [bytes([0xFF]) * n for n in range(1, 40)]
    cases += [rng.randbytes(rng.randrange(0, 1100)) for _ in range(2000)]
    for data in cases:
        assert _ones_complement_sum(data) == reference(data), data.hex()


def test_a_sum_of_zero_modulo_0xffff_is_0xffff_not_0() -> None:
    # 0x0001 + 0xFFFE = 0xFFFF: "negative zero", which a valid packet's sum must be.
    assert _ones_complement_sum(b"\x00\x01\xff\xfe") == 0xFFFF
    assert _ones_complement_sum(b"\x00\x00\x00\x00") == 0
