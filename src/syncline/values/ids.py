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

A new internal id is the creation time in milliseconds (6 bytes, big-endian) and 10 random
bytes (80 bits: unguessable, and no collision in practice). A table's new ids therefore sort
after its older ones (within a millisecond, in random order), so inserts land at the end of
the store's id-keyed B-tree instead of on a random page each: a group commit of many
inserts writes a few pages, not one per document. Clients treat ids as opaque; nothing may
rely on their order (Convex's are random).
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from itertools import accumulate
from time import time_ns as _time_ns
from zlib import adler32 as _adler32

from syncline.errors import InvalidId
from syncline.randomness import random_bytes

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
#: leading bytes of a new internal id that hold its creation time (ms since the epoch)
_TIME_BYTES = 6
MAX_TABLE_NUMBER = 2**32 - 1
_VERSION = 0

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Python's int(s, 32) digits, for decoding.
_TO_INT32 = bytes.maketrans(_ALPHABET.encode("ascii"), b"0123456789abcdefghijklmnopqrstuv")
# 19..23 bytes -> 31..37 chars; exact lengths are checked after decoding.
_ID_RE = re.compile("[0-9a-hjkmnp-tv-z]{31,37}")


#: Longest data whose Adler-32 sums never reach its modulus (65521), so they are exact:
#: 21 + 255 * (21 * 22 / 2) = 58926. Id bodies (varint + internal id) are 17..21 bytes.
_ADLER_EXACT = 21


def _fletcher16(data: bytes) -> int:
    """Fletcher-16 (mod 256) of ``data``: running sums ``c0 += b; c1 += c0``.

    Adler-32 keeps the same two sums, starting ``c0`` at 1 and reducing mod 65521; for
    data short enough that no reduction happens, ``c0 = A - 1`` and ``c1 = B - len(data)``,
    in one call into zlib instead of a sum over the prefix sums.
    """
    if len(data) <= _ADLER_EXACT:
        adler = _adler32(data)
        return ((((adler >> 16) - len(data)) & 0xFF) << 8) | ((adler - 1) & 0xFF)
    return ((sum(accumulate(data)) & 0xFF) << 8) | (sum(data) & 0xFF)


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


# Base32 of a 20-byte block by spreading its 160 bits over 32 bytes, 5 bits in the low end
# of each: four steps of (mask, shift, or) on one big integer split each field in two, the
# high half moving up (160 -> 2 x 80 -> 4 x 40 -> 8 x 20 -> 16 x 10 -> 32 x 5 bits), and one
# bytes.translate maps the 32 values to characters. Half the instructions of a loop over
# 10-bit pairs (one shift, mask and lookup each), which dominated id creation.
_BLOCK_BYTES = 20


def _lanes(count: int, lane_bits: int, field_bits: int) -> int:
    """``count`` fields of ``field_bits`` ones, one at the low end of each ``lane_bits`` lane."""
    field = (1 << field_bits) - 1
    return sum(field << (lane_bits * i) for i in range(count))


# (low-half mask, high-half mask, shift of the high half) per step; fields are lane/2 wide.
_SPREAD = tuple(
    (_lanes(count, lane, half), _lanes(count, lane, half) << half, lane // 2 - half)
    for count, lane, half in ((1, 256, 80), (2, 128, 40), (4, 64, 20), (8, 32, 10), (16, 16, 5))
)
_TO_ALPHABET = bytes(_ALPHABET.encode("ascii")[i & 31] for i in range(256))


def _block(data: bytes) -> bytes:
    """The 32 base32 characters (ASCII) of a 20-byte block."""
    x = int.from_bytes(data, "big")
    for low, high, shift in _SPREAD:
        x = (x & low) | ((x & high) << shift)
    return x.to_bytes(32, "big").translate(_TO_ALPHABET)


def _base32(data: bytes) -> str:
    """Crockford base32 (lowercase, MSB first, no padding) of ``data``.

    Equivalent to ``base64.b32encode`` + translation (pure Python on 3.11): the
    data is cut into 20-byte blocks, the last padded with zero bytes, and the
    characters the padding alone makes are dropped.
    """
    n = len(data)
    if n == _BLOCK_BYTES:  # tables 128..16383, where user tables are
        return _block(data).decode("ascii")
    if n < _BLOCK_BYTES:
        return _block(data.ljust(_BLOCK_BYTES, b"\0"))[: (n * 8 + 4) // 5].decode("ascii")
    text = b"".join(
        _block(data[i : i + _BLOCK_BYTES].ljust(_BLOCK_BYTES, b"\0"))
        for i in range(0, n, _BLOCK_BYTES)
    )
    return text[: (n * 8 + 4) // 5].decode("ascii")


@lru_cache(maxsize=1024, typed=True)  # typed: True and 1.0 are no table numbers
def _table_prefix(table_number: int) -> bytes:
    """The varint of ``table_number``, checked once per table."""
    if type(table_number) is not int or not 1 <= table_number <= MAX_TABLE_NUMBER:
        raise ValueError(f"table number must be an int in 1..2**32-1, not {table_number!r}")
    return _varint(table_number)


def new_id(table_number: int, rng: random.Random | None = None) -> str:
    """A fresh id in table ``table_number``: time-prefixed (see above), or all from ``rng``
    (deterministic tests and replays).

    The same string as ``encode_id(table_number, internal)`` for the random ``internal``,
    without checking again what is checked once per table (ids are made on every insert).
    """
    if rng is None:
        internal = (_time_ns() // 1_000_000).to_bytes(_TIME_BYTES, "big") + random_bytes(
            ID_INTERNAL_LENGTH - _TIME_BYTES
        )
    else:
        internal = rng.randbytes(ID_INTERNAL_LENGTH)
    body = _table_prefix(table_number) + internal
    return _base32(body + (_fletcher16(body) ^ _VERSION).to_bytes(2, "little"))


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
