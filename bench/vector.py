"""Vector search: query time exact and approximate, recall@10, and build time.

    python bench/vector.py [--n 100000] [--dims 384,1536] [--queries 50]

For each dimension, ``n`` documents are made on the fly (in batches of 1,000,
as a rebuild reads them) and loaded into one in-memory vector index in
``approximate`` mode: the load is the exact index's build time (from
documents: checking each vector, normalising, storing), and the graph build
(HNSW, int8, 2 threads) is timed apart. Reading the documents from SQLite is
not included.

The data is embedding-like: 1,000 random cluster centres, each document a
centre plus Gaussian noise; queries are fresh draws from the same
distribution. (On structureless Gaussian noise every HNSW library's recall
collapses; real embeddings have structure.) Recall@10 compares the
approximate results with the exact ones. Prints medians over the queries:
p50 per query, exact and approximate, unfiltered and with a filter matching
a quarter of the documents.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from syncline.values.keys import encode_value
from syncline.vectors.index import VectorIndex
from syncline.vectors.settings import IndexSpec, MemoryBudget, VectorSettings
from syncline.vectors.store import unit_vector

BATCH = 1000
CLUSTERS = 1000
KINDS = ("a", "b", "c", "d")


def _points(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    picks = centres[rng.integers(0, len(centres), count)]
    noise = rng.standard_normal(picks.shape).astype(np.float32) * 0.5
    result: np.ndarray = picks + noise
    return result


def _build(n: int, dims: int, rng: np.random.Generator, centres: np.ndarray) -> Any:
    spec = IndexSpec("docs", "by_embedding", "embedding", dims, ("kind",))
    # exact_below=0: every non-exact search goes through the graph, whatever the filter
    settings = VectorSettings(mode="approximate", exact_below=0, max_memory_bytes=1 << 40)
    index = VectorIndex(spec, settings, MemoryBudget(settings.max_memory_bytes))
    loading = 0.0
    for start in range(0, n, BATCH):
        rows = _points(rng, centres, min(BATCH, n - start))
        docs = [
            (f"doc{start + i:08d}", {"embedding": row, "kind": KINDS[(start + i) % 4]})
            for i, row in enumerate(rows.tolist())
        ]
        began = time.perf_counter()
        index.load(docs)
        loading += time.perf_counter() - began
    began = time.perf_counter()
    index.settle()  # builds the graph
    graph_s = time.perf_counter() - began
    return index, loading, graph_s


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run(n: int, dims: int, queries: int) -> None:
    rng = np.random.default_rng(dims)
    centres = rng.standard_normal((CLUSTERS, dims)).astype(np.float32)
    index, load_s, graph_s = _build(n, dims, rng, centres)
    terms = [("kind", encode_value("c"))]
    exact_t, approx_t, exact_f_t, approx_f_t, recalls, recalls_f = [], [], [], [], [], []
    for row in _points(rng, centres, queries):
        query = unit_vector(row.tolist(), dims)
        assert query is not None
        for filt, exact_times, approx_times, recall in (
            (None, exact_t, approx_t, recalls),
            (terms, exact_f_t, approx_f_t, recalls_f),
        ):
            began = time.perf_counter()
            want = index.search(query, 10, filt, exact=True)
            exact_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            got = index.search(query, 10, filt)
            approx_times.append(time.perf_counter() - began)
            recall.append(len({d for _, d in got} & {d for _, d in want}) / len(want))
    mib = index.memory_bytes / 2**20
    print(
        f"{n:,} x {dims}: build exact {load_s:.1f} s ({n / load_s:,.0f} docs/s), "
        f"graph {graph_s:.1f} s ({n / graph_s:,.0f} vectors/s); memory {mib:,.0f} MiB"
    )
    print(
        f"  p50/query  exact {_p50_ms(exact_t):.1f} ms   approximate {_p50_ms(approx_t):.2f} ms"
        f"   recall@10 {statistics.mean(recalls):.3f}"
    )
    print(
        f"  filter 1/4 exact {_p50_ms(exact_f_t):.1f} ms   approximate "
        f"{_p50_ms(approx_f_t):.2f} ms   recall@10 {statistics.mean(recalls_f):.3f}"
    )
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dims", default="384,1536")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    for dims in (int(d) for d in args.dims.split(",")):
        run(args.n, dims, args.queries)


if __name__ == "__main__":
    main()
