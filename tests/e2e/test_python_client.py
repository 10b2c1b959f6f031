"""The official PyPI ``convex`` client (0.8.1) against a real ``syncline serve`` process.

``ConvexClient`` is the Rust core (convex-rs) behind pyo3: it speaks the sync
WebSocket at ``/api/sync``. Its blocking ``next(subscription)`` holds the GIL,
so a writer that must run while the test waits is another *process*, and such
waits are guarded by ``faulthandler`` (a watchdog thread that needs no GIL).
"""

from __future__ import annotations

import asyncio
import faulthandler
import math
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from convex import ConvexClient, ConvexError, ConvexInt64

from harness import require_module

pytestmark = pytest.mark.slow

# A second process that writes through its own official client and prints when it is done.
WRITER = """
import sys, time
from convex import ConvexClient
client = ConvexClient(sys.argv[1])
for title in sys.argv[2:]:
    client.mutation("tasks:add", {"title": title})
    print(repr(time.time()), flush=True)
"""

HTTP_WRITER = """
import sys, time
from convex.http_client import ConvexHttpClient
client = ConvexHttpClient(sys.argv[1])
for title in sys.argv[2:]:
    time.sleep(0.2)
    client.mutation("tasks:add", {"title": title})
    print(repr(time.time()), flush=True)
"""


# If the writer never commits, this one does after a delay, so that a blocked
# next(subscription) returns and the test fails with the writer's error instead.
RESCUE_WRITER = """
import sys, time, httpx
time.sleep(float(sys.argv[3]))
httpx.post(sys.argv[1] + "/api/mutation",
           json={"path": "tasks:add", "args": {"title": sys.argv[2]}, "format": "json"})
"""


def start_writer(script: str, url: str, *titles: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, url, *titles],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_writer(proc: subprocess.Popen[str]) -> list[float]:
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, f"writer failed ({proc.returncode}):\n{out}\n{err}"
    return [float(line) for line in out.split()]


@pytest.fixture
def client(server: Any) -> ConvexClient:
    return ConvexClient(server.url)


def titles(docs: list[dict[str, Any]]) -> list[str]:
    return [d["title"] for d in docs]


def test_query_and_mutation(client: ConvexClient, unique: str) -> None:
    doc_id = client.mutation("tasks:add", {"title": unique})
    assert isinstance(doc_id, str) and doc_id

    docs = client.query("tasks:list")
    newest = docs[0]
    assert newest["title"] == unique
    assert newest["_id"] == doc_id
    assert isinstance(newest["_creationTime"], float)
    # Paths as the clients may spell them: ".js" suffix, default export rules.
    assert client.query("tasks.js:list")[0]["_id"] == doc_id
    assert client.query("admin/stats:task_count") >= 1.0  # a module in a subfolder


def test_blocking_subscription_sees_write_from_another_process(
    client: ConvexClient, server: Any, unique: str
) -> None:
    sub = client.subscribe("tasks:list")
    rescue = subprocess.Popen([sys.executable, "-c", RESCUE_WRITER, server.url, "rescue", "10"])
    # next() blocks holding the GIL: if nothing ever arrives, dump stacks and exit.
    faulthandler.dump_traceback_later(30, exit=True)
    try:
        assert unique not in titles(next(sub))
        writer = start_writer(WRITER, server.url, unique)
        seen = next(sub)
        while unique not in titles(seen) and "rescue" not in titles(seen):
            seen = next(sub)
        seen_at = time.time()
    finally:
        faulthandler.cancel_dump_traceback_later()
        rescue.kill()
        rescue.wait()
    (written_at,) = finish_writer(writer)
    assert titles(seen)[0] == unique
    # Pushed within 1 s of the other process's mutation returning (usually before it).
    assert seen_at - written_at < 1.0, f"update arrived {seen_at - written_at:.3f} s late"
    sub.unsubscribe()


def test_async_subscription_sees_each_write_from_another_process(
    client: ConvexClient, server: Any, unique: str
) -> None:
    wanted = [f"{unique}-{i}" for i in range(3)]
    updates: list[tuple[float, list[str]]] = []  # (arrival time, our titles in the result)

    async def main() -> list[float]:
        sub = client.subscribe("tasks:list")
        first = await asyncio.wait_for(sub.__anext__(), 5)
        assert not set(wanted) & set(titles(first))
        writer = start_writer(HTTP_WRITER, server.url, *wanted)  # 0.2 s between writes
        try:
            while not updates or wanted[-1] not in updates[-1][1]:
                value = await asyncio.wait_for(sub.__anext__(), 5)
                updates.append((time.time(), [t for t in titles(value) if t in wanted]))
        finally:
            written = await asyncio.to_thread(finish_writer, writer)
        sub.unsubscribe()
        return written

    written = asyncio.run(main())
    assert updates[-1][1] == list(reversed(wanted))  # newest first
    for title, written_at in zip(wanted, written):
        first_seen = next(t for t, names in updates if title in names)
        assert first_seen - written_at < 1.0, (
            f"{title} arrived {first_seen - written_at:.3f} s late"
        )


def test_convex_error_data(client: ConvexClient, unique: str) -> None:
    with pytest.raises(ConvexError) as info:
        client.mutation("tasks:add", {"title": "bad"})
    assert info.value.data == {"why": "bad"}

    data = {"code": unique, "n": ConvexInt64(7), "raw": b"\x01\x02", "list": [1.5, None, True]}
    with pytest.raises(ConvexError) as info:
        client.query("failures:convex_error", {"data": data})
    got = info.value.data
    assert got["code"] == unique
    assert type(got["n"]) is ConvexInt64 and got["n"].value == 7
    assert got["raw"] == b"\x01\x02"
    assert got["list"] == [1.5, None, True]

    with pytest.raises(ConvexError) as info:
        client.action("failures:convex_error_action", {"data": "just a string"})
    assert info.value.data == "just a string"

    # A subscription reports its ConvexError, then recovers when the data changes.
    sub = client.subscribe("failures:fails_until_item", {"tag": unique})

    async def recover() -> Any:
        with pytest.raises(ConvexError) as failed:
            await asyncio.wait_for(sub.__anext__(), 5)
        assert failed.value.data == {"missing": unique}
        await asyncio.to_thread(client.mutation, "items:add_one", {"tag": unique, "n": 1})
        return await asyncio.wait_for(sub.__anext__(), 5)

    assert asyncio.run(recover()) == 1.0
    sub.unsubscribe()

    # The client still works after errors (the mutation's Transition arrived).
    assert client.mutation("tasks:add", {"title": unique})
    assert client.query("tasks:list")[0]["title"] == unique


def test_plain_errors_are_redacted_in_production(client: ConvexClient, unique: str) -> None:
    with pytest.raises(Exception) as info:
        client.query("failures:plain_error")
    assert not isinstance(info.value, ConvexError)
    assert "Server Error" in str(info.value)
    assert "secret-detail-1234" not in str(info.value)

    before = titles(client.query("tasks:list"))
    with pytest.raises(Exception) as info:
        client.mutation("failures:plain_mutation_error")
    assert not isinstance(info.value, ConvexError)
    assert "secret-detail-5678" not in str(info.value)
    assert titles(client.query("tasks:list")) == before  # the failed mutation wrote nothing

    with pytest.raises(Exception, match="Could not find public function"):
        client.query("tasks:nope")


def assert_special_values(value: dict[str, Any], unique: str) -> None:
    assert type(value["int"]) is ConvexInt64 and value["int"].value == 2**62 + 1
    assert type(value["neg"]) is ConvexInt64 and value["neg"].value == -(2**63)
    assert value["bytes"] == bytes(range(256)) and isinstance(value["bytes"], bytes)
    assert value["empty"] == b""
    assert math.isnan(value["nan"])
    assert value["inf"] == math.inf and value["ninf"] == -math.inf
    assert value["nzero"] == 0.0 and math.copysign(1.0, value["nzero"]) == -1.0
    assert value["float"] == 2.5 and isinstance(value["float"], float)
    assert value["int_as_float"] == 3.0 and isinstance(value["int_as_float"], float)
    assert value["nested"] == {"list": [ConvexInt64(1), b"x", -1.0], "s": unique}
    assert value["floats"] == {
        "big": 1e300,
        "tiny": 5e-324,
        "max": sys.float_info.max,
        "sum": 0.1 + 0.2,
    }
    assert value["text"] == "héllo ✓ 🚀 \x00 \n end"


def test_values_round_trip(client: ConvexClient, unique: str) -> None:
    value = {
        "int": ConvexInt64(2**62 + 1),
        "neg": ConvexInt64(-(2**63)),
        "bytes": bytes(range(256)),
        "empty": b"",
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "nzero": -0.0,
        "float": 2.5,
        "int_as_float": 3,  # the client sends Python ints as float64
        "nested": {"list": [ConvexInt64(1), b"x", -1.0], "s": unique},
        "floats": {"big": 1e300, "tiny": 5e-324, "max": sys.float_info.max, "sum": 0.1 + 0.2},
        "text": "héllo ✓ 🚀 \x00 \n end",
    }
    stored = client.mutation("values:store", {"value": value})
    assert_special_values(stored["value"], unique)  # through the mutation's result
    assert_special_values(client.query("values:get", {"id": stored["id"]}), unique)  # stored

    kinds = client.query("values:describe", {"value": value})
    assert kinds["int"] == kinds["neg"] == "Int64"
    assert kinds["bytes"] == kinds["empty"] == "bytes"
    assert kinds["nan"] == kinds["nzero"] == kinds["int_as_float"] == "float"

    constants = client.query("values:constants")
    assert type(constants["min"]) is ConvexInt64 and constants["min"].value == -(2**63)
    assert constants["max"].value == 2**63 - 1 and constants["small"].value == -2
    assert constants["bytes"] == bytes(range(256)) and constants["empty"] == b""
    assert math.isnan(constants["nan"]) and constants["inf"] == math.inf
    assert constants["ninf"] == -math.inf and math.copysign(1, constants["nzero"]) == -1


def test_set_auth_identity(server: Any, jwt_issuer: Any, unique: str) -> None:
    client = ConvexClient(server.url)
    assert client.query("users:whoami") is None

    client.set_auth(jwt_issuer.token(f"user-{unique}", email=f"{unique}@example.com"))
    me = client.query("users:whoami")
    assert me["subject"] == f"user-{unique}"
    assert me["issuer"] == "https://issuer.test"
    assert me["tokenIdentifier"] == f"https://issuer.test|user-{unique}"
    assert me["email"] == f"{unique}@example.com"
    assert client.action("users:whoami_action")["subject"] == f"user-{unique}"

    # A live subscription follows identity changes.
    sub = client.subscribe("users:whoami")

    async def logout() -> Any:
        assert (await asyncio.wait_for(sub.__anext__(), 5))["subject"] == f"user-{unique}"
        client.clear_auth()
        return await asyncio.wait_for(sub.__anext__(), 5)

    assert asyncio.run(logout()) is None
    assert client.query("users:whoami") is None


def test_each_identity_sees_its_own_live_results(server: Any, jwt_issuer: Any, unique: str) -> None:
    """A query that reads auth is never shared between callers, also when re-run."""
    alice, bob, anon = (ConvexClient(server.url) for _ in range(3))
    alice.set_auth(jwt_issuer.token(f"alice-{unique}"))
    bob.set_auth(jwt_issuer.token(f"bob-{unique}"))
    subs = {
        name: c.subscribe("users:my_tasks")
        for name, c in [("alice", alice), ("bob", bob), ("anon", anon)]
    }

    async def main() -> dict[str, list[Any]]:
        seen: dict[str, list[Any]] = {}
        for name, sub in subs.items():
            seen[name] = [await asyncio.wait_for(sub.__anext__(), 5)]
        await asyncio.to_thread(alice.mutation, "users:add_mine", {"title": "a1"})
        seen["alice"].append(await asyncio.wait_for(subs["alice"].__anext__(), 5))
        await asyncio.to_thread(bob.mutation, "users:add_mine", {"title": "b1"})
        seen["bob"].append(await asyncio.wait_for(subs["bob"].__anext__(), 5))
        # Bob's write changed nothing for alice and anon: their next values are
        # those of the changes made for them now, not a re-send caused by bob's.
        await asyncio.to_thread(alice.mutation, "users:add_mine", {"title": "a2"})
        seen["alice"].append(await asyncio.wait_for(subs["alice"].__anext__(), 5))
        await asyncio.to_thread(bob.mutation, "users:add_for", {"owner": None, "title": "n1"})
        seen["anon"].append(await asyncio.wait_for(subs["anon"].__anext__(), 5))
        return seen

    seen = asyncio.run(main())
    assert seen == {
        "alice": [[], ["a1"], ["a1", "a2"]],
        "bob": [[], ["b1"]],
        "anon": [[], ["n1"]],
    }
    assert alice.query("users:whoami")["subject"] == f"alice-{unique}"
    assert bob.query("users:whoami")["subject"] == f"bob-{unique}"
    assert anon.query("users:whoami") is None
    with pytest.raises(ConvexError, match="sign in first"):
        anon.mutation("users:add_mine", {"title": "nope"})


def test_action(client: ConvexClient, unique: str) -> None:
    assert client.action("tasks:double", {"x": 21}) == 42.0
    assert client.action("tasks:double", {"x": -0.25}) == -0.5
    result = client.action("tasks:add_via_action", {"title": unique})
    assert result["newest"] == unique
    assert client.query("tasks:list")[0]["_id"] == result["id"]


def test_large_result(client: ConvexClient) -> None:
    """4 MB in one Transition (Syncline never chunks, which the Rust client needs)."""
    assert len(client.query("values:big", {"n": 4_000_000})) == 4000

    async def main() -> Any:
        sub = client.subscribe("values:big", {"n": 4_000_000})
        return await asyncio.wait_for(sub.__anext__(), 10)

    value = asyncio.run(main())
    assert len(value) == 4000 and value[0] == "x" * 1000


def test_subscription_survives_server_restart(project: Any, start_server: Any, unique: str) -> None:
    """The Rust client reconnects, re-adds its queries (as "tasks.js:list") and gets updates."""
    srv = start_server(project())
    client = ConvexClient(srv.url)
    client.mutation("tasks:add", {"title": f"before-{unique}"})
    sub = client.subscribe("tasks:list")

    async def first() -> list[str]:
        return titles(await asyncio.wait_for(sub.__anext__(), 5))

    async def until_after() -> list[str]:
        while True:
            value = titles(await asyncio.wait_for(sub.__anext__(), 15))
            if f"after-{unique}" in value:
                return value

    assert asyncio.run(first()) == [f"before-{unique}"]
    srv.restart()  # from the main thread: see _die_with_parent in conftest.py
    response = httpx.post(
        f"{srv.url}/api/mutation",
        json={"path": "tasks:add", "args": {"title": f"after-{unique}"}, "format": "json"},
    )
    assert response.json()["status"] == "success", response.text
    assert asyncio.run(until_after()) == [f"after-{unique}", f"before-{unique}"]
    assert client.mutation("tasks:add", {"title": "third"})
    assert titles(client.query("tasks:list"))[0] == "third"
    assert "newer than this server" not in srv.log()


def test_admin_auth_reaches_internal_functions(server: Any, unique: str) -> None:
    client = ConvexClient(server.url)
    with pytest.raises(Exception, match="Could not find public function"):
        client.query("tasks:count")
    client.set_admin_auth(server.admin_key)
    count = client.query("tasks:count")
    assert type(count) is ConvexInt64 and count.value >= 0


def test_legacy_http_client(server: Any, jwt_issuer: Any, unique: str) -> None:
    http_client = require_module("convex.http_client", "pip install -e '.[dev]' (.ci/run does)")
    client = http_client.ConvexHttpClient(server.url)

    doc_id = client.mutation("tasks:add", {"title": unique})
    assert isinstance(doc_id, str)
    assert client.query("tasks:list")[0]["_id"] == doc_id
    assert client.action("tasks:double", {"x": 4}) == 8.0

    with pytest.raises(ConvexError) as info:
        client.mutation("tasks:add", {"title": "bad"})
    assert info.value.data == {"why": "bad"}  # raw JSON data, as that client documents
    with pytest.raises(ConvexError) as info:
        client.action("failures:convex_error_action", {"data": unique})
    assert info.value.data == unique
    with pytest.raises(http_client.ConvexExecutionError, match="Server Error"):
        client.query("failures:plain_error")

    stored = client.mutation(
        "values:store",
        {"value": {"i": ConvexInt64(-5), "b": b"\x00\xff", "nan": math.nan, "nz": -0.0}},
    )
    back = client.query("values:get", {"id": stored["id"]})
    assert type(back["i"]) is ConvexInt64 and back["i"].value == -5
    assert back["b"] == b"\x00\xff"
    assert math.isnan(back["nan"]) and math.copysign(1, back["nz"]) == -1

    assert client.query("users:whoami") is None
    client.set_auth(jwt_issuer.token(f"http-{unique}"))
    assert client.query("users:whoami")["subject"] == f"http-{unique}"
    client.set_auth("not-a-jwt")
    with pytest.raises(Exception, match=r"^40[01] "):
        client.query("users:whoami")
    client.set_auth(jwt_issuer.token("x", audience="someone-else"))
    with pytest.raises(Exception, match=r"^40[01] "):
        client.query("users:whoami")
    client.set_admin_auth(server.admin_key)
    assert client.query("tasks:count").value >= 1


def test_dev_server_returns_full_error_messages(project: Any, start_server: Any) -> None:
    dev = start_server(project(), mode="dev")
    client = ConvexClient(dev.url)
    with pytest.raises(Exception, match="secret-detail-1234") as info:
        client.query("failures:plain_error")
    assert not isinstance(info.value, ConvexError)
    with pytest.raises(Exception, match="secret-detail-5678"):
        client.mutation("failures:plain_mutation_error")
    with pytest.raises(ConvexError) as convex_info:
        client.mutation("tasks:add", {"title": "bad"})
    assert convex_info.value.data == {"why": "bad"}
    assert client.mutation("tasks:add", {"title": "dev ok"})
    assert titles(client.query("tasks:list")) == ["dev ok"]


@pytest.mark.parametrize(
    "sig",
    [
        signal.SIGINT,
        signal.SIGTERM,
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_signal_stops_the_server_cleanly(
    project: Any, start_server: Any, sig: signal.Signals
) -> None:
    """Ctrl-C and SIGTERM (docker stop, systemd, Kubernetes) both shut down gracefully."""
    srv = start_server(project())
    client = ConvexClient(srv.url)
    client.mutation("tasks:add", {"title": "written"})
    data_dir = srv.project / ".syncline"
    assert (data_dir / "server.json").exists()
    srv.proc.send_signal(sig)
    assert srv.proc.wait(10) == 0, srv.log()
    assert not (data_dir / "server.json").exists(), "the discovery record was left behind"
    wal = data_dir / "data.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "SQLite was not closed"
