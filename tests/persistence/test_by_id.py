"""The by_id index served from the documents table: key bounds map to id bounds exactly."""

from __future__ import annotations

import random

from syncline.persistence.by_id import id_bound, key_of_id
from syncline.values.ids import new_id
from syncline.values.keys import after, encode_key, prefix_end


def _ids() -> list[str]:
    rng = random.Random(7)
    ids = sorted({new_id(number, rng) for number in (1, 2, 10001, 10002, 20000) for _ in range(40)})
    # Ids that are prefixes of one another and differ in their last character.
    return sorted({*ids, ids[0][:-1] + "0", ids[0][:-1] + "z", ids[1][:-2] + "00"})


def _bounds(ids: list[str]) -> list[bytes]:
    keys = [key_of_id(i) for i in ids]
    bounds = [b"", b"\x00", b"\x06\xff", b"\x07", b"\x07\x00", b"\x08", b"\xff", b"\x07\xff"]
    for key in keys[::5]:
        body = key[1:-1]
        bounds += [
            key,
            key + b"\x00",  # the next position after a key (ascending pagination)
            after(key),
            prefix_end(key),
            key[:-1],  # the id without its terminator
            key[:8],
            key[:8] + b"\x00",
            key[:8] + b"\x00\xff",  # an escaped NUL inside a longer string
            key[:8] + b"\x80",
            b"\x07" + body[:-1] + bytes([body[-1] + 1]),
            b"\x07" + body[:-1] + bytes([body[-1] - 1]) + b"\x00",
        ]
    return bounds


def test_key_of_id_is_the_index_key() -> None:
    for doc_id in _ids():
        assert key_of_id(doc_id) == encode_key((doc_id,))


def test_an_id_bound_selects_exactly_the_keys_at_or_after_the_key() -> None:
    ids = _ids()
    for bound in _bounds(ids):
        by_key = [i for i in ids if key_of_id(i) >= bound]
        # Python compares str by code point, as SQLite compares text (UTF-8 bytes).
        by_id = [i for i in ids if i >= id_bound(bound)]
        assert by_id == by_key, bound


def test_ranges_of_keys_are_ranges_of_ids() -> None:
    ids = _ids()
    bounds = _bounds(ids)
    for start in bounds[::3]:
        for end in bounds[1::4]:
            expected = [i for i in ids if start <= key_of_id(i) < end]
            lo, hi = id_bound(start), id_bound(end)
            assert [i for i in ids if lo <= i < hi] == expected, (start, end)
