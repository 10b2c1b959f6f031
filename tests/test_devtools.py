"""The sync frame helpers the benchmarks share (syncline._devtools)."""

from __future__ import annotations

import json
import uuid

from syncline._devtools import add_query_message, connect_frame
from syncline.sync.protocol import (
    Connect,
    ModifyQuerySet,
    QueryAdd,
    parse_client_message,
)


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


def test_add_query_message_moves_the_query_set_one_version_and_adds_one_query() -> None:
    message = parse_client_message(
        json.dumps(add_query_message("messages:list", {"channel": "a"}, query_id=3, version=2))
    )
    assert isinstance(message, ModifyQuerySet)
    assert (message.base_version, message.new_version) == (1, 2)
    assert message.modifications == [QueryAdd(3, "messages:list", [{"channel": "a"}])]
