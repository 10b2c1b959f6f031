"""File storage benchmark: a large file up and down through a real server, memory watched.

    python bench/files.py [--size-mb 200] [--runs 1] [--files LOCATION | --moto] [--json]

Starts ``python -m syncline serve`` on a throwaway project and free ports
(with ``--files LOCATION`` if given: a folder or ``s3://bucket/prefix``, with
the ``AWS_*`` variables of this environment; ``--moto`` starts a moto S3
server and uses a new bucket on it: moto is an emulator, so its figures say
how Syncline streams, not how S3 performs),
writes a file of SIZE MiB to disk, asks a mutation for an upload URL, POSTs
the file streamed from disk (httpx, ``Content-Length`` set), downloads it back
streamed (hashing on the fly, nothing kept) and compares SHA-256 digests.
Meanwhile it samples the server's ``VmRSS`` (``/proc/<pid>/status``) every
10 ms. Prints throughput and how far the server's memory rose above its idle
baseline (after a 1 MiB warm-up round trip): the sampled peak ``VmRSS``, and
the kernel's ``VmHWM`` (peak since start, so an upper bound) minus that
baseline. Linux only. ``--json`` prints one JSON line instead.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from syncline._devtools import ServerProcess, free_port, launch

MiB = 1024 * 1024

FUNCTIONS = """
from syncline import mutation


@mutation
def upload_url(ctx):
    return ctx.storage.generate_upload_url()
"""


def proc_status(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class RssSampler(threading.Thread):
    """Samples a process's VmRSS until stopped; keeps the maximum."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))
            self.samples += 1
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def write_file(path: Path, size: int) -> str:
    """``size`` bytes of incompressible data (a random MiB, varied per block); its SHA-256."""
    block = bytearray(os.urandom(MiB))
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // MiB):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)
            digest.update(block)
        rest = os.urandom(size % MiB)
        f.write(rest)
        digest.update(rest)
    return digest.hexdigest()


def start_server(root: Path, files: str | None) -> ServerProcess:
    functions = root / "functions"
    functions.mkdir(parents=True)
    (functions / "files.py").write_text(textwrap.dedent(FUNCTIONS))
    return launch(root, timeout=30, args=() if files is None else ("--files", files))


@contextlib.contextmanager
def moto_bucket() -> Iterator[str]:
    """A bucket on a moto S3 server of its own (``pip install 'moto[server]'``), as a URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                httpx.put(f"{endpoint}/bench").raise_for_status()  # moto checks no signature
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the moto server did not start")
        for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
            os.environ.setdefault(name, value)  # the server inherits them
        yield f"s3://bench/files?endpoint={endpoint}"
    finally:
        server.terminate()
        server.wait()


def upload_url(http: httpx.Client, url: str) -> str:
    body = http.post(
        f"{url}/api/mutation", json={"path": "files:upload_url", "args": {}, "format": "json"}
    ).json()
    assert body["status"] == "success", body
    return str(body["value"])


def transfer(http: httpx.Client, url: str, path: Path) -> tuple[str, float, str, float]:
    """Upload ``path``, download it back: (storage id, upload s, downloaded sha256, download s)."""
    target = upload_url(http, url)
    started = time.perf_counter()
    with open(path, "rb") as f:
        response = http.post(target, content=f, headers={"content-type": "application/x-bench"})
    upload_s = time.perf_counter() - started
    response.raise_for_status()
    storage_id = str(response.json()["storageId"])

    digest = hashlib.sha256()
    started = time.perf_counter()
    with http.stream("GET", f"{url}/api/storage/{storage_id}") as download:
        download.raise_for_status()
        for chunk in download.iter_raw(MiB):
            digest.update(chunk)
    return storage_id, upload_s, digest.hexdigest(), time.perf_counter() - started


def run(size_mb: int, files: str | None = None, runs: int = 1) -> dict[str, Any]:
    """Figures of ``runs`` round trips of ``size_mb`` MiB: median throughput, peak memory."""
    size = size_mb * MiB
    uploads: list[float] = []
    downloads: list[float] = []
    identical = True
    with tempfile.TemporaryDirectory(prefix="syncline-bench-files-") as tmp:
        root = Path(tmp)
        big = root / "big.bin"
        expected = write_file(big, size)
        small = root / "small.bin"
        write_file(small, MiB)
        server = start_server(root / "project", files)
        url = server.url
        try:
            with httpx.Client(timeout=120) as http:
                # Warm up every code path (and the worker threads) before the baseline.
                transfer(http, url, small)
                time.sleep(0.2)
                assert server.proc is not None
                pid = server.proc.pid
                baseline_rss = proc_status(pid, "VmRSS")
                baseline_hwm = proc_status(pid, "VmHWM")
                sampler = RssSampler(pid)
                sampler.start()
                try:
                    for _ in range(runs):
                        _, upload_s, got, download_s = transfer(http, url, big)
                        uploads.append(upload_s)
                        downloads.append(download_s)
                        identical = identical and got == expected
                finally:
                    sampler.stop()
                hwm = proc_status(pid, "VmHWM")
        except BaseException:
            sys.stderr.write(server.log())
            raise
        finally:
            server.stop()
    upload_s, download_s = statistics.median(uploads), statistics.median(downloads)
    return {
        "files": files or "local folder (default)",
        "runs": runs,
        "size_bytes": size,
        "identical": identical,
        "upload_s": round(upload_s, 3),
        "download_s": round(download_s, 3),
        "upload_mib_s": round(size / MiB / upload_s, 1),
        "download_mib_s": round(size / MiB / download_s, 1),
        "baseline_rss_mb": round(baseline_rss / MiB, 1),
        "peak_rss_mb": round(sampler.peak / MiB, 1),
        "rss_growth_mb": round(max(0, sampler.peak - baseline_rss) / MiB, 1),
        "hwm_growth_mb": round(max(0, hwm - baseline_rss) / MiB, 1),
        "baseline_hwm_mb": round(baseline_hwm / MiB, 1),
        "rss_samples": sampler.samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200, help="file size in MiB")
    parser.add_argument("--runs", type=int, default=1, help="round trips (medians are shown)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--files", help="the server's --files: a folder or s3://bucket/prefix")
    where.add_argument("--moto", action="store_true", help="files in a bucket on a moto server")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        sys.exit("bench/files.py reads /proc/<pid>/status: Linux only")
    with contextlib.ExitStack() as stack:
        files = stack.enter_context(moto_bucket()) if args.moto else args.files
        figures = run(args.size_mb, files, args.runs)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"files: {figures['files']}")
    print(f"file: {args.size_mb} MiB x {args.runs}, round trips identical: {figures['identical']}")
    print(f"upload:   {figures['upload_mib_s']:8.1f} MiB/s (median {figures['upload_s']} s)")
    print(f"download: {figures['download_mib_s']:8.1f} MiB/s (median {figures['download_s']} s)")
    print(
        f"server RSS: idle {figures['baseline_rss_mb']} MiB, peak {figures['peak_rss_mb']} MiB "
        f"(+{figures['rss_growth_mb']} MiB over {figures['rss_samples']} samples); "
        f"VmHWM +{figures['hwm_growth_mb']} MiB"
    )


if __name__ == "__main__":
    main()
