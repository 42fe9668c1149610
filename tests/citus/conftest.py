"""Fixtures for the Citus tests: scripts/test-citus.sh starts the cluster and exports PG* for
its coordinator and NNN_CITUS_WORKER_PORTS."""
import os
import pathlib
import sys

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "examples"))


@pytest.fixture(scope="session")
def workers():
    """Ports of the two workers."""
    return [int(p) for p in os.environ["NNN_CITUS_WORKER_PORTS"].split()]


@pytest.fixture
def connect():
    """Opens connections to the coordinator (or a worker's port) and closes them afterwards."""
    opened = []

    def _connect(port=None, **kw):
        kw.setdefault("autocommit", True)
        if port is not None:
            kw["port"] = port
        c = psycopg.connect(**kw)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()
