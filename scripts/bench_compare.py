"""Baselines for the engine benchmark, on the same shapes, in the same run (scripts/bench.sh):
faiss-cpu IndexFlatIP and numpy matmul + argpartition, 2 threads each. Reads the engine's
RESULT lines (file given as argv[1]) and prints the side-by-side ratios.

Ratios, not absolute times, are the claim: the machines are noisy.
"""
import os
import pathlib
import re
import sys
import time

import numpy as np

THREADS = int(os.environ.get("NNN_BENCH_THREADS", "2"))
QUICK = os.environ.get("NNN_BENCH_QUICK") == "1"
DEV = pathlib.Path(__file__).resolve().parents[1] / "data" / "wordnet-dev"


def unit_rows(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def best_of(reps, f):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def engine_results(path):
    """The engine bench's RESULT lines: name -> seconds."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        m = re.match(r"RESULT (\S+)\s+([\d.]+) s", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def print_table(rows):
    """rows: (baseline name, baseline seconds, nnn seconds)."""
    print(f"\n{'baseline (' + str(THREADS) + ' threads)':<44} {'baseline s':>10} {'nnn s':>8} {'nnn faster by':>14}")
    for name, secs, e in rows:
        ratio = secs / e if e else float("nan")
        print(f"{name:<44} {secs:>10.3f} {e if e else float('nan'):>8.3f} {ratio:>13.2f}x")


def faiss_bias(cand, ref, k):
    import faiss

    faiss.omp_set_num_threads(THREADS)
    index = faiss.IndexFlatIP(ref.shape[1])
    index.add(ref)
    sims, _ = index.search(cand, k)
    return sims.mean(axis=1)


def numpy_bias(cand, ref, k, block=512):
    out = np.empty(len(cand), dtype=np.float32)
    for i in range(0, len(cand), block):
        s = cand[i:i + block] @ ref.T
        out[i:i + block] = np.partition(s, -k, axis=1)[:, -k:].mean(axis=1)
    return out


def numpy_search(cand, bias, queries, k, alpha=0.75, block=512):
    for i in range(0, len(queries), block):
        s = queries[i:i + block] @ cand.T - alpha * bias
        part = np.argpartition(s, -k, axis=1)[:, -k:]
        np.take_along_axis(s, part, axis=1).argsort(axis=1)


def faiss_search(cand, bias, queries, k, alpha=0.75):
    import faiss

    faiss.omp_set_num_threads(THREADS)
    index = faiss.IndexFlatIP(cand.shape[1] + 1)
    index.add(np.hstack([cand, bias[:, None]]))
    index.search(np.hstack([queries, np.full((len(queries), 1), -alpha, dtype=np.float32)]), k)


def shapes():
    """(n candidates, m reference, q queries) of the engine bench's synthetic case."""
    return (2_000, 20_000, 2_000) if QUICK else (10_000, 100_000, 10_000)


def main():
    engine = engine_results(sys.argv[1])
    rows = []

    def compare(name, engine_key, secs):
        rows.append((name, secs, engine.get(engine_key)))

    cases = []
    if (DEV / "candidates.f16").exists():
        f16 = lambda n: np.fromfile(DEV / n, dtype="<f2").astype(np.float32).reshape(-1, 384)
        cases.append(("wordnet_dev", f16("candidates.f16"), f16("reference.f16"), 5))
    n, m, q = shapes()
    cand, ref = unit_rows(n, 384, 11), unit_rows(m, 384, 12)
    cases.append(("synthetic", cand, ref, 2 if QUICK else 3))
    for name, c, r, reps in cases:
        compare(f"{name} bias: faiss-cpu IndexFlatIP", f"{name}.engine_bias", best_of(reps, lambda: faiss_bias(c, r, 128)))
        compare(f"{name} bias: numpy matmul+partition", f"{name}.engine_bias", best_of(reps, lambda: numpy_bias(c, r, 128)))
    bias = numpy_bias(cand, ref[:n], 128)
    queries = unit_rows(q, 384, 13)
    compare("batch search: numpy matmul+partition", "search.batch", best_of(3, lambda: numpy_search(cand, bias, queries, 10)))
    compare("batch search: faiss-cpu [q,-a].[r,b]", "search.batch", best_of(3, lambda: faiss_search(cand, bias, queries, 10)))
    print_table(rows)


if __name__ == "__main__":
    main()
