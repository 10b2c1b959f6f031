"""Frames written straight to the socket: sizes, fan-out, and the order of responses."""

from __future__ import annotations

import asyncio
from typing import Any

from server.conftest import AsyncWs, LiveServer, add
from syncline.sync.protocol import decode_ts


async def _subscriber(url: str, query_id: int, version_jump: int) -> AsyncWs:
    ws = await AsyncWs.open(url)
    await ws.connect()
    # Versions may jump: each client keeps its own chain, so frames differ per client.
    ws.query_set = 1 + version_jump
    await ws.send(
        {
            "type": "ModifyQuerySet",
            "baseVersion": 0,
            "newVersion": ws.query_set,
            "modifications": [add(query_id, "messages:list", {"channel": "fan"})],
        }
    )
    await ws.until(lambda m: m["type"] == "Transition" and bool(m["modifications"]))
    return ws


async def _wait_for(ws: AsyncWs, query_id: int, expected: list[str]) -> dict[str, Any]:
    return await ws.until(
        lambda m: m["type"] == "Transition" and ws.state.results.get(query_id) == ("ok", expected),
        timeout=20,
    )


def test_every_subscriber_gets_each_frame_size_exactly(live_server: LiveServer) -> None:
    """Short, 16-bit and 64-bit length frames reach many subscribers intact, in a valid chain."""

    async def scenario() -> None:
        subs = [
            await _subscriber(live_server.ws_url, query_id=i % 3, version_jump=i % 4)
            for i in range(60)
        ]
        writer = await AsyncWs.open(live_server.ws_url)
        await writer.connect()
        bodies: list[str] = []
        for body in ("short", "m" * 1_000, "l" * 70_000):
            bodies.append(body)
            await writer.mutation("messages:send", {"channel": "fan", "body": body})
            await writer.until(lambda m: m["type"] == "MutationResponse")
            ends = await asyncio.gather(
                *(_wait_for(ws, i % 3, bodies) for i, ws in enumerate(subs))
            )
            for i, (ws, end) in enumerate(zip(subs, ends, strict=True)):
                assert end["endVersion"]["querySet"] == 1 + i % 4
                assert end["endVersion"]["identity"] == 0
                assert ws.state.results == {i % 3: ("ok", bodies)}
        await asyncio.gather(writer.close(), *(ws.close() for ws in subs))

    asyncio.run(scenario())


def test_a_subscriber_joining_between_writes_starts_from_the_current_result(
    live_server: LiveServer,
) -> None:
    async def scenario() -> None:
        first = await _subscriber(live_server.ws_url, 0, 0)
        writer = await AsyncWs.open(live_server.ws_url)
        await writer.connect()
        await writer.mutation("messages:send", {"channel": "fan", "body": "one"})
        joined = await _subscriber(live_server.ws_url, 5, 0)
        await writer.mutation("messages:send", {"channel": "fan", "body": "two"})
        await _wait_for(first, 0, ["one", "two"])
        await _wait_for(joined, 5, ["one", "two"])
        await asyncio.gather(first.close(), joined.close(), writer.close())

    asyncio.run(scenario())


def test_mutation_response_then_a_transition_reflecting_it(live_server: LiveServer) -> None:
    """Over the direct writer too, each MutationResponse precedes a Transition at its ts."""

    async def scenario() -> None:
        ws = await _subscriber(live_server.ws_url, 0, 0)
        expected: list[str] = []
        for n in range(20):
            expected.append(f"b{n}")
            request = await ws.mutation("messages:send", {"channel": "fan", "body": f"b{n}"})
            response = await ws.until(lambda m: m["type"] != "Transition")
            assert response["type"] == "MutationResponse"
            assert response["requestId"] == request and response["success"]
            transition = await ws.until(lambda m: m["type"] == "Transition")
            assert decode_ts(transition["endVersion"]["ts"]) >= decode_ts(response["ts"])
            assert ws.state.results[0] == ("ok", expected)
        await ws.close()

    asyncio.run(scenario())
