"""A ``by_id`` index served from the documents table itself.

Documents are stored keyed by (table number, id), so a table's documents in id
order are exactly the entries of its ``by_id`` index: storing those entries
again would double every insert. This module maps between the index's keys
and ids.

A ``by_id`` key is ``encode_key((id,))``: the string tag 07, the id, then 00.
Ids are ASCII text with no 00 byte (``syncline.values.ids``), so a key's order
is its id's order, and every key bound maps to an id bound that selects the
same documents (:func:`id_bound`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from syncline.persistence.base import BY_ID_INDEX
from syncline.values.keys import TAG_STRING

__all__ = ["IndexKinds", "id_bound", "key_of_id"]

_TAG = bytes([TAG_STRING])
#: sorts after every id: ids are ASCII, and SQLite compares text as UTF-8 bytes
_PAST_IDS = "\x80"
#: the first byte of a key body that no id contains
_NOT_IN_IDS = re.compile(b"[\x00\x80-\xff]")


def key_of_id(doc_id: str) -> bytes:
    """The ``by_id`` key of a document id."""
    return _TAG + doc_id.encode("ascii") + b"\x00"


def id_bound(key: bytes) -> str:
    """The text ``b`` such that, for every id ``s``, ``key_of_id(s) >= key`` iff ``s >= b``.

    So the keys in ``[start, end)`` are the ids in ``[id_bound(start), id_bound(end))``.
    """
    if not key or key[0] < TAG_STRING:
        return ""
    if key[0] > TAG_STRING:
        return _PAST_IDS
    body = key[1:]
    match = _NOT_IN_IDS.search(body)
    if match is None:
        # s + 00 >= body (no 00 in body) exactly when s >= body.
        return body.decode("ascii")
    at = match.start()
    prefix = body[:at].decode("ascii")
    if body[at] == 0:
        # s + 00 >= prefix + 00 + tail: s > prefix, or s == prefix with an empty tail.
        # The least text above prefix is prefix + NUL.
        return prefix if at + 1 == len(body) else prefix + "\x00"
    # A byte no id holds: ids extending prefix sort below it, the others as prefix does.
    return prefix + _PAST_IDS


class IndexKinds:
    """Which index ids are ``by_id`` indexes (served from the documents table).

    Shared by every connection of a database. Index ids are never reused and an
    index never changes its name, so an answer read once stays true.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, bool] = {}

    def note(self, index_id: int, name: str) -> None:
        self._by_id[index_id] = name == BY_ID_INDEX

    def is_by_id(self, index_id: int, name_of: Callable[[int], str | None]) -> bool:
        """Whether ``index_id`` is a ``by_id`` index; ``name_of`` reads its name if unknown."""
        known = self._by_id.get(index_id)
        if known is not None:
            return known
        name = name_of(index_id)
        if name is None:
            return False  # not (yet) visible here: nothing to read either way
        self.note(index_id, name)
        return name == BY_ID_INDEX
