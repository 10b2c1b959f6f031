"""The sync frame helper the benchmarks share (syncline._devtools)."""

from __future__ import annotations

import uuid

from syncline._devtools import connect_frame
from syncline.sync.protocol import Connect, parse_client_message


def test_connect_frame_opens_a_fresh_session_the_server_accepts() -> None:
    message = parse_client_message(connect_frame())
    assert isinstance(message, Connect)
    assert uuid.UUID(message.session_id)
    assert message.connection_count == 0
    assert message.last_close_reason == "InitialConnect"


def test_each_connect_frame_has_its_own_session_unless_one_is_given() -> None:
    first = parse_client_message(connect_frame())
    second = parse_client_message(connect_frame())
    assert isinstance(first, Connect) and isinstance(second, Connect)
    assert first.session_id != second.session_id
    given = str(uuid.uuid4())
    chosen = parse_client_message(connect_frame(given))
    assert isinstance(chosen, Connect) and chosen.session_id == given
