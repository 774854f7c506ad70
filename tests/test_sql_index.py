"""The ANN index is used, its recall meets a floor, and filtered searches return k rows.

20,000 clustered 64-d vectors (50 clusters): HNSW recall@10 >= 0.95 against an exact scan,
measured in SQL by recall_at_k; a rare label (12 images) and an uncommon one (2,500
images) each return k rows, all of that label, equal (or nearly) to the exact answer.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pgvision.index.ddl import ensure_index, set_index
from pgvision.ingest.pg_copy import ImageRecord, copy_image_embeddings
from pgvision.registry import ModelSpec, register_model
from sqlhelpers import clustered

N, DIMS = 20_000, 64


@pytest.fixture(scope="module")
def big_db(server_conninfo, template_db):
    """One database for the module: 20k clustered vectors under model 'clustered', with
    label 'rare' on 12 images, 'uncommon' on 2,500, 'common' on the rest."""
    from psycopg.conninfo import make_conninfo

    from conftest import _drop, _fresh_database
    from pgvision.server.connection import connect

    name = _fresh_database(server_conninfo, template_db)
    url = make_conninfo(server_conninfo, dbname=name)
    x = clustered(N, DIMS, clusters=50, seed=1)
    labels = np.array(["common"] * N, dtype=object)
    rng = np.random.default_rng(2)
    order = rng.permutation(N)
    labels[order[:12]] = "rare"
    labels[order[12:2512]] = "uncommon"
    with connect(url, autocommit=True) as conn:
        model_id = register_model(conn, ModelSpec("clustered", "image", DIMS, "cosine"))
        records = [ImageRecord(hashlib.sha256(str(i).encode()).digest(), f"mem://{i}", labels[i]) for i in range(N)]
        for s in range(0, N, 5000):
            copy_image_embeddings(conn, model_id, records[s:s + 5000], x[s:s + 5000])
        ensure_index(conn, model_id)
        conn.execute("ANALYZE")
    yield url, x, labels
    _drop(server_conninfo, name)


@pytest.fixture
def big(big_db):
    from pgvision.server.connection import connect

    url, x, labels = big_db
    with connect(url, autocommit=True) as conn:
        yield conn, x, labels


def exact_ids(conn, query, k, label=None):
    return [r[0] for r in conn.execute(
        "SELECT e.image_id FROM pgvision.image_embeddings e JOIN pgvision.images i USING (image_id) "
        "WHERE (%s::text IS NULL OR i.label = %s) ORDER BY e.embedding <=> %s::vector LIMIT %s",
        (label, label, query, k))]


def test_search_images_uses_the_hnsw_index(big):
    conn, x, _ = big
    plans: list[str] = []
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET auto_explain.log_level = notice")
    conn.execute("SELECT * FROM pgvision.search_images(%s, 10)", (x[0],)).fetchall()
    conn.execute("SET auto_explain.log_min_duration = -1")
    knn = [p for p in plans if "ORDER BY" in p and "LIMIT" in p]
    assert knn, f"no nested k-NN statement seen in {plans}"
    assert any("image_embeddings_model_1_hnsw" in p for p in knn), knn


def test_recall_at_k_hnsw_meets_floor(big):
    conn, _, _ = big
    method, k, queries, recall, ef, probes, ann_ms, exact_ms = conn.execute(
        "SELECT * FROM pgvision.recall_at_k('clustered', 10, 100)").fetchone()
    assert (method, k, queries, ef, probes) == ("hnsw", 10, 100, 40, None)
    assert recall >= 0.95
    assert 0 < ann_ms and 0 < exact_ms


def test_recall_drops_with_tiny_ef_search(big):
    """recall_at_k measures the index, it does not echo a constant: ef_search 11 vs 200."""
    conn, _, _ = big
    low = conn.execute("SELECT recall, ef_search_used FROM pgvision.recall_at_k('clustered', 10, 100, 11)").fetchone()
    high = conn.execute("SELECT recall FROM pgvision.recall_at_k('clustered', 10, 100, 200)").fetchone()[0]
    assert low[1] == 11
    assert low[0] <= high
    assert high >= 0.99


@pytest.mark.parametrize("label", ["rare", "uncommon"])
def test_filtered_search_returns_k_rows_of_that_label(big, label):
    conn, x, labels = big
    query = x[int(np.flatnonzero(labels != label)[0])]  # a probe from another label
    rows = conn.execute("SELECT image_id, label FROM pgvision.search_images(%s, 10, label => %s)",
                        (query, label)).fetchall()
    assert len(rows) == 10
    assert {r[1] for r in rows} == {label}
    truth = exact_ids(conn, query, 10, label)
    assert len(set(r[0] for r in rows) & set(truth)) >= 9


def test_filtered_search_with_fewer_matches_than_k(big):
    conn, x, _ = big
    rows = conn.execute("SELECT label FROM pgvision.search_images(%s, 50, label => 'rare')", (x[0],)).fetchall()
    assert rows == [("rare",)] * 12


def test_ivfflat_recall(big):
    conn, _, _ = big
    set_index(conn, "clustered", method="ivfflat", lists=100, probes=10)
    try:
        row = conn.execute("SELECT * FROM pgvision.recall_at_k('clustered', 10, 100)").fetchone()
        assert (row[0], row[4], row[5]) == ("ivfflat", None, 10)
        assert row[3] >= 0.95
        stats = conn.execute("SELECT index_name, index_bytes > 0 FROM pgvision.model_stats").fetchone()
        assert stats == ("image_embeddings_model_1_ivfflat", True)
    finally:
        set_index(conn, "clustered", method="hnsw")


def test_models_over_2000_dims_are_indexed_as_halfvec(conn):
    """2,048-d (resnet50 features): 8 KB rows load (stored out of line), the index is halfvec."""
    x = clustered(300, 2048, clusters=5, seed=3)
    model_id = register_model(conn, ModelSpec("wide", "image", 2048, "l2"))
    records = [ImageRecord(hashlib.sha256(f"w{i}".encode()).digest(), f"mem://w{i}") for i in range(len(x))]
    copy_image_embeddings(conn, model_id, records, x)
    assert ensure_index(conn, model_id) == "image_embeddings_model_1_hnsw"
    indexdef = conn.execute("SELECT index_definition FROM pgvision.model_stats").fetchone()[0]
    assert "((embedding)::halfvec(2048)) halfvec_l2_ops" in indexdef
    rows = conn.execute("SELECT uri, distance FROM pgvision.search_images(%s, 3, 'wide')", (x[7],)).fetchall()
    assert rows[0][0] == "mem://w7" and rows[0][1] < 0.05  # itself, up to half-precision rounding
    truth = [r[0] for r in conn.execute(
        "SELECT i.uri FROM pgvision.image_embeddings e JOIN pgvision.images i USING (image_id) "
        "ORDER BY e.embedding <-> %s LIMIT 3", (x[7],))]
    assert [r[0] for r in rows] == truth


def test_two_concurrent_index_builds_end_with_one_valid_index(database_url):
    """Two loaders finishing together both call ensure_index: they take turns, neither
    drops the other's CONCURRENTLY build (which is INVALID while it runs)."""
    import threading

    from pgvision.server.connection import connect

    with connect(database_url, autocommit=True) as conn:
        model_id = register_model(conn, ModelSpec("race", "image", DIMS, "cosine"))
        x = clustered(15_000, DIMS, clusters=20, seed=5)
        records = [ImageRecord(hashlib.sha256(f"r{i}".encode()).digest(), f"mem://r{i}") for i in range(len(x))]
        copy_image_embeddings(conn, model_id, records, x)
    results, errors = [], []

    def build():
        try:
            with connect(database_url, autocommit=True) as c:
                results.append(ensure_index(c, model_id))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == ["image_embeddings_model_1_hnsw"] * 2
    with connect(database_url) as conn:
        valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                             "'pgvision.image_embeddings_model_1_hnsw'::regclass").fetchone()
    assert valid == (True,)
