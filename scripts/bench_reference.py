"""The reference package nnn-retrieval 1.0.1 (torch, CPU) on the engine bench's shapes, in the
same run (scripts/bench.sh runs it when the venv with torch exists): NNNRanker construction
(its bias build, `alignment_means`) and its search. Reads the engine's RESULT lines (argv[1])."""
import sys

import torch
from nnn import NNNRanker, NNNRetriever

from bench_compare import THREADS, best_of, engine_results, print_table, shapes, unit_rows

torch.set_num_threads(THREADS)


def main():
    engine = engine_results(sys.argv[1])
    n, m, q = shapes()
    cand, ref = unit_rows(n, 384, 11), unit_rows(m, 384, 12)
    retriever = NNNRetriever(384)
    ranker = [None]

    def build():
        ranker[0] = NNNRanker(retriever, cand, ref, alternate_ks=128, batch_size=128, alternate_weight=0.75)

    build_s = best_of(1, build)
    small = NNNRanker(retriever, cand, ref[:n], alternate_ks=128, batch_size=128, alternate_weight=0.75)
    queries = unit_rows(q, 384, 13)
    search_s = best_of(3, lambda: small.search(queries, 10))
    print_table([
        ("synthetic bias: nnn-retrieval NNNRanker", build_s, engine.get("synthetic.engine_bias")),
        ("batch search: nnn-retrieval NNNRanker", search_s, engine.get("search.batch")),
    ])


if __name__ == "__main__":
    main()
