"""What one sync connection may hold at a time.

Every resource a client can make the server hold is bounded per connection,
so that one client (careless or hostile) cannot take memory or time from the
others:

* ``max_queries``: queries subscribed at once. A ``ModifyQuerySet`` that
  would go past it is refused as a whole (a FatalError naming the limit).
* ``max_inflight_actions`` / ``max_queued_mutations`` / ``max_request_bytes``:
  requests (and their frame bytes) accepted and not yet answered. At a cap
  the connection stops reading from its socket until one finishes
  (backpressure: the client's sends wait in TCP buffers, not in server
  memory).
* ``max_send_queue_bytes``: encoded responses waiting to be written to the
  client. When the queue is full, finished requests wait for room (keeping
  their slots, so the reader stops too). If the client then takes nothing
  for ``send_stall_timeout_s``, it is dropped with a close reason; an
  official client reconnects and resyncs through the protocol. A client
  that reads, however slowly, is never dropped for a burst. Transitions do
  not queue (each is built when the socket can take it), so they are not
  counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_QUERIES: Final = 1000
DEFAULT_MAX_INFLIGHT_ACTIONS: Final = 32
DEFAULT_MAX_QUEUED_MUTATIONS: Final = 32
DEFAULT_MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_SEND_QUEUE_BYTES: Final = 16 * 1024 * 1024
DEFAULT_SEND_STALL_TIMEOUT_S: Final = 5.0

#: the close reason sent to a client dropped for not reading its messages
CLIENT_TOO_SLOW: Final = "ClientTooSlow"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_queries: int = DEFAULT_MAX_QUERIES
    max_inflight_actions: int = DEFAULT_MAX_INFLIGHT_ACTIONS
    max_queued_mutations: int = DEFAULT_MAX_QUEUED_MUTATIONS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_send_queue_bytes: int = DEFAULT_MAX_SEND_QUEUE_BYTES
    send_stall_timeout_s: float = DEFAULT_SEND_STALL_TIMEOUT_S


__all__ = ["CLIENT_TOO_SLOW", "ConnectionLimits"]
