"""The error hierarchy's own behaviour (codes are checked against the docs in test_docs)."""

from __future__ import annotations

from syncline.errors import ConvexError
from syncline.values.types import Int64


def test_convex_error_message_describes_its_data() -> None:
    assert ConvexError("plain words").message == "plain words"
    assert ConvexError({"code": "NOT_FOUND", "ids": [1.0, None]}).message == (
        '{"code":"NOT_FOUND","ids":[1.0,null]}'
    )
    assert ConvexError({"name": "Zoë"}).message == '{"name":"Zoë"}'
    assert ConvexError(Int64(5)).message == "5"
    # What JSON cannot hold is still described, and the data itself is kept exactly.
    error = ConvexError({"blob": b"\x00"})
    assert error.message == "{'blob': b'\\x00'}" and error.data == {"blob": b"\x00"}
    assert ConvexError(None).message == "null"
