"""A load's last step runs one at a time (ANALYZE beside another load's concurrent index
build on the same table deadlocks in PostgreSQL): it waits while the maintenance lock is
held elsewhere, then runs."""

from __future__ import annotations

import threading

import psycopg

from pgvision.after_load import LoadReport, finish_load
from pgvision.index import ddl


def test_the_last_step_waits_for_another_loads_last_step(database_url):
    with psycopg.connect(database_url, autocommit=True) as other, psycopg.connect(database_url, autocommit=True) as c:
        assert other.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (ddl.INDEX_LOCK_CLASS, ddl.MAINTENANCE_KEY)
        ).fetchone()[0]
        done = threading.Event()

        def last_step():
            finish_load(c, LoadReport(), 1, tables=("images",), changed=True, build_index=False,
                        progress=False, loaded=0)
            done.set()

        worker = threading.Thread(target=last_step)
        worker.start()
        assert not done.wait(1.0), "the last step ran while another load's last step held the lock"
        other.execute("SELECT pg_advisory_unlock(%s, %s)", (ddl.INDEX_LOCK_CLASS, ddl.MAINTENANCE_KEY))
        assert done.wait(30), "the last step did not run once the lock was free"
        worker.join()
        # and it gave the lock back
        assert other.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (ddl.INDEX_LOCK_CLASS, ddl.MAINTENANCE_KEY)
        ).fetchone()[0]
