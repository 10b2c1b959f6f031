from __future__ import annotations

import base64
import random
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncline.errors import InvalidId
from syncline.values.ids import (
    MAX_TABLE_NUMBER,
    _base32,
    _fletcher16,
    decode_id,
    encode_id,
    is_id,
    new_id,
    table_number_of,
)

PROPS = settings(max_examples=300, deadline=None)
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

table_numbers = st.one_of(
    st.integers(1, MAX_TABLE_NUMBER),
    st.sampled_from([1, 127, 128, 10000, 10001, 16383, 16384, 2**21, 2**28, MAX_TABLE_NUMBER]),
)
internals = st.binary(min_size=16, max_size=16)


def fletcher16(data: bytes) -> int:
    c0 = c1 = 0
    for b in data:
        c0 = (c0 + b) % 256
        c1 = (c1 + c0) % 256
    return (c1 << 8) | c0


def to_text(data: bytes) -> str:
    """Reference base32 (MSB first, Crockford lowercase, no padding), bit by bit."""
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(ALPHABET[int(bits[i : i + 5], 2)] for i in range(0, len(bits), 5))


def with_footer(body: bytes) -> bytes:
    return body + fletcher16(body).to_bytes(2, "little")


def test_vectors() -> None:
    assert encode_id(1, bytes(16)) == "0400000000000000000000000000248"
    assert encode_id(10001, bytes(16)) == "j5700000000000000000000000001qv0"
    assert decode_id("0400000000000000000000000000248") == (1, bytes(16))
    assert decode_id("j5700000000000000000000000001qv0") == (10001, bytes(16))


@pytest.mark.parametrize(
    ("table", "length"),
    [(1, 31), (127, 31), (128, 32), (16383, 32), (16384, 34), (2**21, 36), (2**28, 37)],
)
def test_lengths(table: int, length: int) -> None:
    assert len(encode_id(table, bytes(16))) == length
    assert len(encode_id(MAX_TABLE_NUMBER, bytes(16))) == 37


@PROPS
@given(table_numbers, internals)
def test_round_trip(table: int, internal: bytes) -> None:
    s = encode_id(table, internal)
    assert decode_id(s) == (table, internal)
    assert table_number_of(s) == table
    assert is_id(s)
    assert set(s) <= set(ALPHABET)


@PROPS
@given(table_numbers, internals)
def test_matches_reference_encoding(table: int, internal: bytes) -> None:
    varint = bytearray()
    n = table
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    assert encode_id(table, internal) == to_text(with_footer(bytes(varint) + internal))


@PROPS
@given(table_numbers, internals, st.integers(0, 36), st.sampled_from(ALPHABET))
def test_any_single_character_change_is_detected(
    table: int, internal: bytes, pos: int, char: str
) -> None:
    s = encode_id(table, internal)
    pos %= len(s)
    if s[pos] == char:
        return
    changed = s[:pos] + char + s[pos + 1 :]
    assert not is_id(changed)
    assert table_number_of(changed) is None


@PROPS
@given(table_numbers, internals, internals)
def test_text_order_follows_internal_order_within_a_table(table: int, x: bytes, y: bytes) -> None:
    a, b = encode_id(table, x), encode_id(table, y)
    assert (a < b) == (x < y)
    assert (a == b) == (x == y)


def test_new_id() -> None:
    rng = random.Random(42)
    a = new_id(10001, rng)
    assert new_id(10001, random.Random(42)) == a
    assert table_number_of(a) == 10001
    ids = {new_id(5) for _ in range(100)}
    assert len(ids) == 100
    assert all(table_number_of(x) == 5 for x in ids)


@pytest.mark.parametrize(
    "s",
    [
        "",
        "abc",
        "0400000000000000000000000000248 ",
        " 0400000000000000000000000000248",
        "0400000000000000000000000000249",  # checksum
        "0400000000000000000000000000247",
        "0400000000000000000000000000240",
        "O4OOOOOOOOOOOOOOOOOOOOOOOOOO248",  # letter O for zero
        "J5700000000000000000000000001QV0",  # upper case
        "i400000000000000000000000000248",  # letters outside the alphabet
        "0400000000000000000000000000l48",
        "04000000000000000000000000o0248",
        "0400000000000000000000000u00248",
        "04000000000000000000000000000248",  # wrong length (32 chars, 20 bytes)
        "040000000000000000000000000248",  # too short
        "0" * 31,  # table 0
        "j57_0000000000000000000000001qv0",
        "j5700000000000000000000000001qv0" * 2,
        "tasks",
    ],
)
def test_rejects_malformed(s: str) -> None:
    assert not is_id(s)
    assert table_number_of(s) is None
    with pytest.raises(InvalidId, match="is not a valid document id"):
        decode_id(s)


@pytest.mark.parametrize("obj", [None, 5, b"0400000000000000000000000000248", ["x"]])
def test_non_strings(obj: Any) -> None:
    assert not is_id(obj)
    assert table_number_of(obj) is None
    with pytest.raises(InvalidId):
        decode_id(obj)


def test_error_message() -> None:
    with pytest.raises(InvalidId) as exc:
        decode_id("abc")
    assert str(exc.value) == "'abc' is not a valid document id"
    assert exc.value.code == "InvalidId"
    with pytest.raises(InvalidId) as exc:
        decode_id("x" * 1000)
    assert len(str(exc.value)) < 150


def test_rejects_non_canonical_forms() -> None:
    # Table 1 as a padded varint (0x81 0x00) with a valid checksum.
    padded = to_text(with_footer(b"\x81\x00" + bytes(16)))
    assert not is_id(padded)
    # Table 0 with a valid checksum.
    assert not is_id(to_text(with_footer(b"\x00" + bytes(16))))
    # Table number >= 2**32 (5-byte varint) with a valid checksum.
    assert not is_id(to_text(with_footer(b"\x80\x80\x80\x80\x10" + bytes(16))))
    # A 6-byte varint.
    assert not is_id(to_text(with_footer(b"\x81\x80\x80\x80\x80\x00" + bytes(16))))
    # Internal id of the wrong length with a valid checksum.
    assert not is_id(to_text(with_footer(b"\x01" + bytes(15))))
    assert not is_id(to_text(with_footer(b"\x01" + bytes(17))))
    # Non-zero padding bits: the last char of a 31-char id carries 2 data bits + 3 padding.
    good = encode_id(1, bytes(16))
    assert good[-1] == "8"
    assert not is_id(good[:-1] + "9")


def test_text_uses_base32_bit_order() -> None:
    data = with_footer(b"\x01" + bytes(16))
    rfc = base64.b32encode(data).decode().rstrip("=")
    table = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET)
    assert encode_id(1, bytes(16)) == rfc.translate(table)


@pytest.mark.parametrize(
    ("table", "internal"),
    [(0, bytes(16)), (-1, bytes(16)), (2**32, bytes(16)), (1, bytes(15)), (1, bytes(17))],
)
def test_encode_rejects_bad_input(table: int, internal: bytes) -> None:
    with pytest.raises(ValueError):
        encode_id(table, internal)


@PROPS
@given(table_numbers, st.integers(0, 2**64))
def test_new_id_is_encode_id_of_its_random_bytes(table: int, seed: int) -> None:
    # new_id computes the table's part of the checksum once; the text must not change.
    internal = random.Random(seed).randbytes(16)
    assert new_id(table, random.Random(seed)) == encode_id(table, internal)


@pytest.mark.parametrize("table", [0, -1, 2**32, True, 1.0])
def test_new_id_rejects_bad_table_numbers(table: Any) -> None:
    with pytest.raises(ValueError):
        new_id(table)


@PROPS
@given(st.binary(max_size=64))
def test_base32_matches_the_bitwise_reference(data: bytes) -> None:
    # Ids use 19..23 bytes; any length exercises the block padding.
    assert _base32(data) == to_text(data)


@PROPS
@given(st.one_of(st.binary(max_size=64), st.binary(min_size=15, max_size=23).map(bytes)))
def test_checksum_matches_the_reference(data: bytes) -> None:
    assert _fletcher16(data) == fletcher16(data)


@pytest.mark.parametrize("length", range(0, 30))
def test_checksum_of_all_ff_bytes(length: int) -> None:
    # The largest sums for each length: where a reduction mod 65521 would show first.
    assert _fletcher16(b"\xff" * length) == fletcher16(b"\xff" * length)


def test_new_ids_lead_with_their_creation_millisecond_and_sort_by_it() -> None:
    before_ms = time.time_ns() // 1_000_000
    first = [new_id(7) for _ in range(50)]
    time.sleep(0.002)
    later = [new_id(7) for _ in range(50)]
    after_ms = time.time_ns() // 1_000_000
    for doc_id in first + later:
        number, internal = decode_id(doc_id)
        assert number == 7
        assert before_ms <= int.from_bytes(internal[:6], "big") <= after_ms
    # Every id made in a later millisecond sorts after every earlier one (text and bytes).
    assert max(first) < min(later)
    # Ten random bytes each: no two alike, also within one millisecond.
    assert len({decode_id(i)[1][6:] for i in first + later}) == 100
