"""Determinism guards and log capture around user code (design §1, semantics §2.3, §12)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading

import pytest

from conftest import MakeBackend
from syncline.errors import DeterminismError
from syncline.functions import sandbox
from syncline.functions.outcomes import Outcome
from syncline.testing import TestBackend

# Port 9 ("discard") on loopback: nothing listens there in the test environment, so a
# connection attempt fails fast without touching the network.
CLOSED_PORT = 9

NET = f"""
import socket
import subprocess
import sys

from syncline import mutation, query


@query
def connect(ctx):
    socket.create_connection(("127.0.0.1", {CLOSED_PORT}), timeout=1)


@query
def resolve(ctx):
    return socket.getaddrinfo("localhost", 80)


@query
def raw_socket(ctx):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(("127.0.0.1", {CLOSED_PORT}))
    finally:
        s.close()


@mutation
def connect_in_mutation(ctx):
    ctx.db.insert("t", {{"before": True}})
    socket.create_connection(("127.0.0.1", {CLOSED_PORT}), timeout=1)


@query
def swallowed(ctx):
    try:
        socket.getaddrinfo("localhost", 80)
    except Exception as exc:
        return type(exc).__name__


@query
def fetch(ctx):
    import urllib.request
    urllib.request.urlopen("http://127.0.0.1:{CLOSED_PORT}/", timeout=1)


@query
def hostname(ctx):
    return socket.gethostbyname("localhost")


@query
def spawn(ctx):
    subprocess.run([sys.executable, "-c", "pass"])


@query
def count(ctx):
    return len(ctx.db.query("t").collect())
"""

LOGS = """
import logging
import sys
import threading

from syncline import ConvexError, mutation, query, v

log = logging.getLogger(__name__)
BARRIER = threading.Barrier(2, timeout=5)


@query
def printing(ctx):
    print("hello", "world")
    print("two\\nlines")
    print("partial", end="")
    print(" line", end="")
    return "done"


@query
def logging_levels(ctx):
    log.debug("debugging")
    log.info("informing")
    log.warning("warning %s", "you")
    log.error("failing")
    logging.getLogger("any.library").warning("from a library")
    return None


@query(args={"n": v.number()})
def many(ctx, n):
    for i in range(int(n)):
        print(f"line {i}")


@query
def long_line(ctx):
    print("x" * 10000)


@mutation
def print_then_fail(ctx):
    print("about to fail")
    raise ConvexError("failed")


@query(args={"name": v.string()})
def interleaved(ctx, name):
    for i in range(5):
        print(f"{name} {i}")
        BARRIER.wait()
    return name


@query
def stderr(ctx):
    print("to stderr", file=sys.stderr)
    return "ok"
"""


@pytest.fixture
def net(make_backend: MakeBackend) -> TestBackend:
    return make_backend({"net.py": NET})


@pytest.fixture
def logs(make_backend: MakeBackend) -> TestBackend:
    return make_backend({"logs.py": LOGS})


def run_query(t: TestBackend, path: str, args: dict | None = None) -> Outcome:
    return t.app.executor.query_sync(path, args or {})


# ---------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "path", ["net:connect", "net:resolve", "net:raw_socket", "net:fetch", "net:hostname"]
)
def test_network_access_in_a_query_is_a_determinism_error(net: TestBackend, path: str) -> None:
    outcome = run_query(net, path)
    assert isinstance(outcome.error, DeterminismError)
    message = outcome.error.message
    assert message.startswith("Can't use network access")
    assert "in a query:" in message
    assert "queries and mutations" in message
    assert "action" in message


def test_network_access_in_a_mutation_aborts_it(net: TestBackend) -> None:
    outcome = net.app.executor.mutation_sync("net:connect_in_mutation", {})
    assert isinstance(outcome.error, DeterminismError)
    assert "in a mutation:" in outcome.error.message
    assert net.query("net:count") == 0


def test_determinism_errors_are_not_os_errors(net: TestBackend) -> None:
    # Code that catches OSError around a connection attempt must not swallow it.
    assert not issubclass(DeterminismError, OSError)
    assert net.query("net:swallowed") == "DeterminismError"


def test_subprocesses_are_blocked(net: TestBackend) -> None:
    outcome = run_query(net, "net:spawn")
    assert isinstance(outcome.error, DeterminismError)
    assert "subprocess" in outcome.error.message


def test_the_same_calls_work_outside_functions(net: TestBackend) -> None:
    run_query(net, "net:connect")  # the audit hook is installed by now
    with pytest.raises(OSError) as info:
        socket.create_connection(("127.0.0.1", CLOSED_PORT), timeout=1)
    assert not isinstance(info.value, DeterminismError)
    assert socket.getaddrinfo("127.0.0.1", 80)
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{CLOSED_PORT}/", timeout=1)


def test_the_guard_is_per_thread(net: TestBackend) -> None:
    # While a query is blocked on another thread, this thread may still use the network.
    inside = threading.Event()
    release = threading.Event()
    results: list[BaseException | None] = []

    def hold(tx: object) -> None:
        with sandbox.running("query", sandbox.LogCollector()):
            inside.set()
            release.wait(5)
            try:
                socket.getaddrinfo("127.0.0.1", 80)
            except BaseException as exc:
                results.append(exc)

    thread = threading.Thread(target=lambda: net.database.run_read(hold))
    thread.start()
    assert inside.wait(5)
    assert socket.getaddrinfo("127.0.0.1", 80)
    release.set()
    thread.join(5)
    assert len(results) == 1 and isinstance(results[0], DeterminismError)


def test_actions_context_is_not_guarded() -> None:
    collector = sandbox.LogCollector()
    with sandbox.running(None, collector):
        assert socket.getaddrinfo("127.0.0.1", 80)


# ---------------------------------------------------------------------- logs


def test_print_becomes_log_lines(logs: TestBackend) -> None:
    outcome = run_query(logs, "logs:printing")
    assert outcome.value == "done"
    assert outcome.log_lines == [
        "[LOG] hello world",
        "[LOG] two",
        "[LOG] lines",
        "[LOG] partial line",
    ]


def test_logging_becomes_log_lines_with_levels(logs: TestBackend) -> None:
    outcome = run_query(logs, "logs:logging_levels")
    assert outcome.log_lines == [
        "[DEBUG] debugging",
        "[INFO] informing",
        "[WARN] warning you",
        "[ERROR] failing",
        "[WARN] from a library",
    ]


def test_log_lines_of_failed_calls_are_kept(logs: TestBackend) -> None:
    outcome = logs.app.executor.mutation_sync("logs:print_then_fail", {})
    assert outcome.error is not None
    assert outcome.log_lines == ["[LOG] about to fail"]


def test_log_overflow(logs: TestBackend) -> None:
    outcome = run_query(logs, "logs:many", {"n": 300})
    assert len(outcome.log_lines) == 257
    assert outcome.log_lines[0] == "[LOG] line 0"
    assert outcome.log_lines[255] == "[LOG] line 255"
    assert outcome.log_lines[256] == (
        "[WARN] Log overflow (maximum 256). Remaining log lines omitted."
    )
    exactly = run_query(logs, "logs:many", {"n": 256})
    assert len(exactly.log_lines) == 256
    assert "overflow" not in exactly.log_lines[-1]


def test_long_lines_are_truncated(logs: TestBackend) -> None:
    (line,) = run_query(logs, "logs:long_line").log_lines
    assert line.startswith("[LOG] xxx")
    assert len(line) < 4200


def test_each_call_gets_its_own_lines(logs: TestBackend) -> None:
    first = run_query(logs, "logs:printing")
    second = run_query(logs, "logs:logging_levels")
    assert all(line.startswith("[LOG]") for line in first.log_lines)
    assert not any(line.startswith("[LOG]") for line in second.log_lines)


def test_concurrent_queries_on_threads_keep_their_own_logs(logs: TestBackend) -> None:
    outcomes: dict[str, Outcome] = {}

    def call(name: str) -> None:
        outcomes[name] = run_query(logs, "logs:interleaved", {"name": name})

    threads = [threading.Thread(target=call, args=(name,)) for name in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for name in ("alpha", "beta"):
        assert outcomes[name].value == name
        assert outcomes[name].log_lines == [f"[LOG] {name} {i}" for i in range(5)]


def test_concurrent_async_queries_keep_their_own_logs(logs: TestBackend) -> None:
    async def main() -> list[Outcome]:
        return list(
            await asyncio.gather(
                logs.app.query("logs:interleaved", {"name": "one"}),
                logs.app.query("logs:interleaved", {"name": "two"}),
            )
        )

    one, two = asyncio.run(main())
    assert one.log_lines == [f"[LOG] one {i}" for i in range(5)]
    assert two.log_lines == [f"[LOG] two {i}" for i in range(5)]


def test_output_outside_functions_is_untouched(
    logs: TestBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    run_query(logs, "logs:printing")
    print("plain print")
    outcome = run_query(logs, "logs:stderr")
    captured = capsys.readouterr()
    assert "plain print" in captured.out
    assert "hello" not in captured.out
    assert "to stderr" in captured.err
    assert outcome.log_lines == []


def test_log_echo_sees_every_line(logs: TestBackend) -> None:
    echoed: list[tuple[str, str]] = []
    executor = logs.app.executor
    executor._log_echo = lambda path, line: echoed.append((path, line))
    try:
        outcome = run_query(logs, "logs:many", {"n": 3})
    finally:
        executor._log_echo = None
    assert [line for _, line in echoed] == outcome.log_lines
    assert {path for path, _ in echoed} == {"logs:many"}


def test_log_overflow_warns_again_after_the_lines_are_cleared() -> None:
    # A retried mutation clears its collector's lines before each attempt: the
    # final attempt's log must end with its own overflow warning.
    collector = sandbox.LogCollector()
    for attempt in range(2):
        collector.lines.clear()
        for i in range(300):
            collector.add("LOG", f"attempt {attempt} line {i}")
        assert len(collector.lines) == sandbox.MAX_LOG_LINES + 1
        assert collector.lines[0] == f"[LOG] attempt {attempt} line 0"
        assert collector.lines[-1] == (
            "[WARN] Log overflow (maximum 256). Remaining log lines omitted."
        )
