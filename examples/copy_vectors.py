"""Fast bulk load of embeddings with psycopg: COPY in PostgreSQL's binary format, built with
numpy (no per-float Python work). Used by the demo and the tests; copy it into your loader.

    copy_vectors(conn, "images", ids, matrix)           # table columns (id bigint, emb real[])
    copy_vectors(conn, "captions", None, matrix)        # table column  (emb real[])
"""
import struct

import numpy as np


def copy_vectors(conn, table, ids, vectors, columns=None):
    """COPY `vectors` (n x d float32) into `table`, with bigint `ids` first when given."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    cols = columns or (["id", "emb"] if ids is not None else ["emb"])
    row = [("nfields", ">i2")]
    if ids is not None:
        row += [("idlen", ">i4"), ("id", ">i8")]
    # real[] in binary: ndim, has-nulls, element type (float4 = 700), length, lower bound,
    # then a (length, value) pair per element
    row += [("alen", ">i4"), ("ndim", ">i4"), ("nulls", ">i4"), ("elem", ">u4"), ("dim", ">i4"),
            ("lb", ">i4"), ("vals", [("len", ">i4"), ("v", ">f4")], (d,))]
    buf = np.zeros(n, dtype=np.dtype(row))
    buf["nfields"] = len(cols)
    if ids is not None:
        buf["idlen"], buf["id"] = 8, np.asarray(ids, dtype=np.int64)
    buf["alen"], buf["ndim"], buf["elem"], buf["dim"], buf["lb"] = 20 + 8 * d, 1, 700, d, 1
    buf["vals"]["len"], buf["vals"]["v"] = 4, vectors
    data = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + buf.tobytes() + struct.pack(">h", -1)
    with conn.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT binary)") as cp:
        cp.write(data)
