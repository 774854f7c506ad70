"""Index builds at scale: graph memory estimate, progress from pg_stat_progress_create_index,
ANALYZE after loads and builds, index size in the summaries (issue 13 item 2)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from pgvision.cli import main
from pgvision.index import build_progress
from pgvision.index.ddl import ensure_index
from pgvision.server.connection import connect
from sqlhelpers import add_images


def _copy_vectors(conn, table: str, x: np.ndarray) -> None:
    conn.execute(f"CREATE TABLE {table} (e vector({x.shape[1]}))")
    with conn.cursor().copy(f"COPY {table} (e) FROM STDIN WITH (FORMAT BINARY)") as cp:
        cp.set_types(["vector"])
        for v in x:
            cp.write_row([v])


def test_graph_estimate_matches_pgvectors_notice_and_progress_is_seen(conn, capsys):
    """A build slowed by a 1MB maintenance_work_mem: pgvector's NOTICE says after how many
    tuples the graph outgrew it, which gives its bytes per tuple; the watcher on a second
    connection records the build's phase from pg_stat_progress_create_index."""
    _copy_vectors(conn, "public.t", np.random.default_rng(0).normal(size=(2000, 128)).astype(np.float32))
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    conn.execute("SET maintenance_work_mem = '1MB'")
    conn.execute("SET max_parallel_maintenance_workers = 0")
    seen: list[dict] = []
    with build_progress.ProgressWatcher(conn, show=True, on_progress=seen.append, poll_seconds=0.02,
                                        desc="indexing t", rows=2000) as watcher:
        conn.execute("CREATE INDEX ON public.t USING hnsw (e vector_l2_ops)")
    fits = re.fullmatch(r"hnsw graph no longer fits into maintenance_work_mem after (\d+) tuples", notices[0])
    assert fits, notices
    measured = 1024 * 1024 / int(fits.group(1))
    estimate = build_progress.hnsw_graph_bytes(1, 128, 16)
    assert estimate == 1178  # 112 + (8 + 128 x 4) + (32 + 16/15) x 16 + (1 + 1/15) x 16, by hand
    assert abs(estimate - measured) / measured < 0.10, (estimate, measured)
    assert "building index: loading tuples" in watcher.phases
    loading = [r for r in seen if r["phase"] == "building index: loading tuples"]
    assert all(0 <= r["tuples_done"] <= 2000 and r["blocks_total"] > 0 for r in loading)
    assert loading[-1]["tuples_done"] > 0
    # the bar on stderr: phase, then tuples done / the rows given
    assert re.search(r"indexing t: building index: loading tuples: +\d+%\|.*\| \d+/2000 ", capsys.readouterr().err)


def test_memory_warning_names_the_need_and_the_fix(conn):
    model = {"name": "faces128", "index_method": "hnsw", "dims": 128, "hnsw_m": 16}
    conn.execute("SET maintenance_work_mem = '64MB'")
    # 1M x 1178.13 bytes = 1,178,133,333 bytes = 1123.6 MB
    assert build_progress.memory_warning(conn, model, 1_000_000) == (
        "the HNSW graph of 'faces128' (1000000 x 128, m 16) needs about 1,123.6 MB but maintenance_work_mem is "
        "64MB: the build will be much slower; fix: pgvision db tune (sizes the server to its machine), or "
        "SET maintenance_work_mem = '1124MB' before building"
    )
    conn.execute("SET maintenance_work_mem = '1124MB'")
    assert build_progress.memory_warning(conn, model, 1_000_000) is None
    assert build_progress.memory_warning(conn, {**model, "index_method": "ivfflat"}, 1_000_000) is None


def test_ensure_index_raises_the_build_memory_when_the_server_has_it(conn, caplog):
    """A graph that outgrows the session's maintenance_work_mem is built with the memory it
    needs (pgvector then never falls back to inserting on disk), and the session's value is
    put back after the build."""
    add_images(conn, "tiny", [(f"t{i}", None, [float(i), 1.0]) for i in range(3)])
    add_images(conn, "many", [(f"m{i}", None, [float(i), 1.0]) for i in range(2000)])
    conn.execute("SET maintenance_work_mem = '1MB'")
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    with caplog.at_level("INFO", logger="pgvision.index.build_progress"):
        assert ensure_index(conn, 1) == "image_embeddings_model_1_hnsw"
        assert caplog.messages == []  # 3 x 674 bytes fit in 1MB
        assert ensure_index(conn, 2) == "image_embeddings_model_2_hnsw"
    # 2000 x (112 + 8 + 2 x 4 + 546.13) = 1,348,266 bytes = 1.29 MB, rounded up to 2 MB
    assert caplog.messages == ["maintenance_work_mem raised to 2 MB for this build (graph of 2000 x 2, m 16)"]
    assert not [n for n in notices if "no longer fits" in n], notices
    assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == "1MB"


def test_build_budget_by_hand():
    gb = 1024**3
    # 24 GB declared, shared_buffers 6 GB: a quarter of the 18 GB beside them
    assert build_progress.build_budget(24 * gb, 6 * gb, declared=True) == int(4.5 * gb)
    # PostgreSQL's built-in effective_cache_size says nothing of the machine: never raise
    assert build_progress.build_budget(24 * gb, 6 * gb, declared=False) == 0
    assert build_progress.build_budget(1 * gb, 6 * gb, declared=True) == 0


def test_ensure_index_warns_before_a_graph_that_does_not_fit(conn, caplog):
    """When the server's memory (effective_cache_size x 4/3, less shared_buffers) has no room
    for the graph, the build keeps the setting and says so, with the fix."""
    add_images(conn, "many", [(f"m{i}", None, [float(i), 1.0]) for i in range(2000)])
    conn.execute("SET maintenance_work_mem = '1MB'")
    conn.execute("SET effective_cache_size = '8kB'")  # a server with no memory to spare
    with caplog.at_level("INFO", logger="pgvision.index.build_progress"):
        assert ensure_index(conn, 1) == "image_embeddings_model_1_hnsw"
    assert caplog.messages == [
        "the HNSW graph of 'many' (2000 x 2, m 16) needs about 1.3 MB but maintenance_work_mem is 1MB: the build "
        "will be much slower; fix: pgvision db tune (sizes the server to its machine), or SET maintenance_work_mem "
        "= '2MB' before building"
    ]


def _analyzed(conn, table: str):
    return conn.execute("SELECT last_analyze FROM pg_stat_user_tables WHERE schemaname = 'pgvision' AND relname = %s",
                        (table,)).fetchone()[0]


def test_load_vectors_analyzes_and_reports_the_index_size(database_url, tmp_path):
    np.save(tmp_path / "feats.npy", np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32))
    with connect(database_url, autocommit=True) as conn:
        assert _analyzed(conn, "image_embeddings") is None and _analyzed(conn, "images") is None
        out = CliRunner().invoke(main, ["load-vectors", str(tmp_path / "feats.npy"), "--model", "f8", "--metric", "l2",
                                        "--quiet"], env={"DATABASE_URL": database_url}, catch_exceptions=False)
        assert out.exit_code == 0, out.output
        assert out.stdout.startswith("loaded 300, already present 0")
        size = build_progress.index_mb(conn, "image_embeddings_model_1_hnsw")
        assert size > 0
        assert out.stdout.rstrip().endswith(f"; index {size:.1f} MB")
        assert _analyzed(conn, "image_embeddings") is not None and _analyzed(conn, "images") is not None


def test_db_index_reports_size_and_seconds_and_analyzes(database_url, conn):
    add_images(conn, "tiny", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    assert _analyzed(conn, "image_embeddings") is None
    out = CliRunner().invoke(main, ["db", "index", "tiny", "--m", "8", "--quiet", "--database-url", database_url])
    assert out.exit_code == 0, out.output
    size = build_progress.index_mb(conn, "image_embeddings_model_1_hnsw")
    assert re.fullmatch(rf"tiny: image_embeddings_model_1_hnsw, {size:.1f} MB, built in \d+\.\d s\n", out.output)
    assert _analyzed(conn, "image_embeddings") is not None


@pytest.mark.parametrize("dims, halfvec, per_vector", [(512, False, 2714), (3000, True, 6666)])
def test_graph_estimate_by_hand(dims, halfvec, per_vector):
    # 112 + 8 + dims x (4 or 2) + 546.13 neighbour bytes (m 16), truncated once for all rows
    assert build_progress.hnsw_graph_bytes(1, dims, 16, halfvec=halfvec) == per_vector
    assert build_progress.hnsw_graph_bytes(1000, dims, 16, halfvec=halfvec) == int(
        1000 * (120 + dims * (2 if halfvec else 4) + 546.1333333)
    )
