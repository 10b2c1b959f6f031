"""Document ids: opaque, URL-safe strings that embed their table number.

Binary form (Convex's "id v6" layout)::

    varint(table_number) | 16-byte internal id | footer (2 bytes, little-endian)

The varint holds 7 bits per byte, least-significant group first, high bit = "more follows"
(1..5 bytes; 1 <= table_number < 2**32). The footer is Fletcher-16 (mod 256) over the preceding
bytes, XOR the format version (0). The text form is base32, most-significant bit first, in the
lowercase Crockford alphabet ``0123456789abcdefghjkmnpqrstvwxyz``, unpadded: 31 chars for tables
1..127, 32 chars up to 16383, at most 37.

Decoding is strict: alphabet, length, zero padding bits, canonical varint and checksum are all
checked, so a string decodes only if re-encoding its parts gives the same string back.
"""

from __future__ import annotations

import os
import random
import re
from functools import lru_cache
from itertools import accumulate

from syncline.errors import InvalidId

__all__ = [
    "ID_INTERNAL_LENGTH",
    "MAX_TABLE_NUMBER",
    "decode_id",
    "encode_id",
    "is_id",
    "new_id",
    "table_number_of",
    "table_number_of_once",
]

ID_INTERNAL_LENGTH = 16
MAX_TABLE_NUMBER = 2**32 - 1
_VERSION = 0

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Our alphabet <-> RFC 4648 base32 (same bit order, different symbols): lets the C-accelerated
# base64.b32encode do the bit shuffling on the way out.
_FROM_RFC = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode("ascii"))
# Python's int(s, 32) digits, for decoding.
_TO_INT32 = bytes.maketrans(_ALPHABET.encode("ascii"), b"0123456789abcdefghijklmnopqrstuv")
# 19..23 bytes -> 31..37 chars; exact lengths are checked after decoding.
_ID_RE = re.compile("[0-9a-hjkmnp-tv-z]{31,37}")


def _fletcher16(data: bytes) -> int:
    # The running sums (c0 += b; c1 += c0, mod 256): c1 is the sum of the prefix sums.
    # accumulate and sum both loop in C.
    c0 = sum(data) & 0xFF
    c1 = sum(accumulate(data)) & 0xFF
    return (c1 << 8) | c0


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_id(table_number: int, internal: bytes) -> str:
    """The id string for a 16-byte internal id in table ``table_number``."""
    if type(table_number) is not int or not 1 <= table_number <= MAX_TABLE_NUMBER:
        raise ValueError(f"table number must be an int in 1..2**32-1, not {table_number!r}")
    if len(internal) != ID_INTERNAL_LENGTH:
        raise ValueError(f"internal id must be {ID_INTERNAL_LENGTH} bytes, not {len(internal)}")
    body = _varint(table_number) + bytes(internal)
    footer = _fletcher16(body) ^ _VERSION
    return _base32(body + footer.to_bytes(2, "little"))


#: every 10-bit value as its two base32 characters
_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]


def _base32(data: bytes) -> str:
    """Crockford base32 (lowercase, MSB first, no padding) of ``data``.

    Equivalent to ``base64.b32encode`` + translation, which is pure Python on
    3.11 and dominated id creation: this works on one big integer instead.
    """
    n_chars = (len(data) * 8 + 4) // 5
    value = int.from_bytes(data, "big") << (n_chars * 5 - len(data) * 8)
    pairs = []
    for shift in range((n_chars // 2) * 10 + (n_chars % 2) * 5 - 10, -1, -10):
        pairs.append(_PAIRS[(value >> shift) & 1023])
    text = "".join(pairs)
    if n_chars % 2:
        text += _ALPHABET[value & 31]
    return text


def new_id(table_number: int, rng: random.Random | None = None) -> str:
    """A fresh random id in table ``table_number`` (``rng`` for deterministic tests/replays)."""
    internal = os.urandom(ID_INTERNAL_LENGTH) if rng is None else rng.randbytes(ID_INTERNAL_LENGTH)
    return encode_id(table_number, internal)


@lru_cache(maxsize=8192)
def _decode(s: str) -> tuple[int, bytes] | None:
    n_chars = len(s)
    n_bytes = n_chars * 5 // 8
    # A canonical encoding of n bytes has exactly ceil(8n/5) chars.
    if (n_bytes * 8 + 4) // 5 != n_chars:
        return None
    pad = n_chars * 5 - n_bytes * 8
    # bytes.translate is a table lookup in C (str.translate goes through a dict per char).
    n = int(s.encode("ascii").translate(_TO_INT32), 32)
    if n & ((1 << pad) - 1):
        return None
    data = (n >> pad).to_bytes(n_bytes, "big")

    table = 0
    shift = 0
    i = 0
    while True:
        if i >= 5:
            return None
        b = data[i]
        table |= (b & 0x7F) << shift
        shift += 7
        i += 1
        if not b & 0x80:
            break
    # Reject padded varints (e.g. 0x81 0x00 for 1): they would not round-trip.
    if i > 1 and data[i - 1] == 0:
        return None
    if not 1 <= table <= MAX_TABLE_NUMBER:
        return None
    if len(data) != i + ID_INTERNAL_LENGTH + 2:
        return None
    footer = int.from_bytes(data[-2:], "little")
    if footer ^ _VERSION != _fletcher16(data[:-2]):
        return None
    return table, data[i:-2]


def _parse(s: object) -> tuple[int, bytes] | None:
    if type(s) is not str or not _ID_RE.fullmatch(s):
        return None
    return _decode(s)


def decode_id(s: str) -> tuple[int, bytes]:
    """``(table_number, internal_id)`` of an id string; :class:`InvalidId` if it is not one."""
    parsed = _parse(s)
    if parsed is None:
        shown = repr(s) if not isinstance(s, str) or len(s) <= 80 else repr(s[:80]) + "..."
        raise InvalidId(f"{shown} is not a valid document id")
    return parsed


def table_number_of(s: object) -> int | None:
    """The table number embedded in id ``s``, or None when ``s`` is not an id."""
    parsed = _parse(s)
    return None if parsed is None else parsed[0]


def table_number_of_once(s: object) -> int | None:
    """:func:`table_number_of` without the cache, for ids checked once (a bulk import):
    caching them would only evict the ids that are looked up again and again."""
    if type(s) is not str or not _ID_RE.fullmatch(s):
        return None
    parsed = _decode.__wrapped__(s)
    return None if parsed is None else parsed[0]


def is_id(s: object) -> bool:
    """Whether ``s`` is a well-formed id string."""
    return _parse(s) is not None
