"""Top-k within a collection: k rows whenever k exist, through the model's index, and a large
collection's own partial index.

Data: one 8-d L2 image model with an HNSW index; collection "other" holds 6,000 clustered
vectors and "mine" 2,500 (above the 2,000 rows that _nearest answers by an exact scan, so the
ANN path is what is tested). A reader granted "mine" only is the tenant; its exact top-k is
computed in numpy over mine's rows.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import psycopg
import pytest
from psycopg import sql

from pgvision.index import collection_index
from pgvision.index.ddl import ensure_index
from pgvision.ingest.pg_copy import ImageRecord, copy_image_embeddings
from pgvision.registry import ModelSpec, register_model
from pgvision.tenancy.collection import grant_collections, use_collection
from sqlhelpers import clustered

SIZES = {"other": 6000, "mine": 2500}


def _load(conn) -> dict:
    model_id = register_model(conn, ModelSpec("v8", "image", 8, "l2"))
    x = clustered(sum(SIZES.values()), 8, 20, seed=3)
    out, start = {}, 0
    for coll, n in SIZES.items():
        cid = use_collection(conn, coll)
        part = x[start : start + n]
        records = [
            ImageRecord(hashlib.sha256(f"{coll}{i}".encode()).digest(), f"file:///{coll}/{i}.jpg") for i in range(n)
        ]
        copy_image_embeddings(conn, model_id, records, part)
        ids = dict(
            conn.execute("SELECT uri, image_id FROM pgvision.images WHERE collection_id = %s", (cid,)).fetchall()
        )
        out[coll] = (cid, np.array([ids[r.uri] for r in records]), part)
        start += n
    conn.execute("RESET pgvision.collection_id")
    conn.execute("ANALYZE pgvision.image_embeddings")
    ensure_index(conn, model_id)
    return {"model_id": model_id, **out}


@pytest.fixture
def two(conn):
    data = _load(conn)
    role = f"mine_reader_{os.getpid()}"
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pgvision_reader").format(sql.Identifier(role)))
    grant_collections(conn, role, ["mine"])
    try:
        yield data, role
    finally:
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _exact(ids, x, q, k):
    d = np.linalg.norm(x - q, axis=1)
    return set(ids[np.argsort(d, kind="stable")[:k]].tolist())


def _recall(conn, data, queries, k, statement, *args):
    _, ids, x = data["mine"]
    found = 0
    for q in queries:
        rows = [r[0] for r in conn.execute(statement, (str(q.tolist()), k, *args))]
        assert len(rows) == k
        assert set(rows) <= set(ids.tolist())
        found += len(set(rows) & _exact(ids, x, q, k))
    return found / (k * len(queries))


def test_a_minority_collection_gets_k_of_its_own_rows(conn, two):
    data, role = two
    queries = clustered(20, 8, 20, seed=3)[:20] + 0.01
    # the unscoped search (the owner) mostly returns the other collection's rows: a filter after
    # the index scan alone would leave the tenant with fewer than k
    owner_rows = [
        r[0]
        for r in conn.execute("SELECT image_id FROM pgvision.search_images(%s, 50, 'v8')", (str(queries[0].tolist()),))
    ]
    assert len(set(owner_rows) & set(data["other"][1].tolist())) > 25
    # the owner, naming the collection
    queries = clustered(10, 8, 20, seed=4) + 0.01
    recall = _recall(
        conn, data, queries, 20, "SELECT image_id FROM pgvision.search_images(%s, %s, 'v8', collection => %s)", "mine"
    )
    assert recall >= 0.95
    probe = int(data["mine"][1][0])
    rows = [
        r[0]
        for r in conn.execute(
            "SELECT image_id FROM pgvision.similar_images(%s, 30, 'v8', collection => 'mine')", (probe,)
        )
    ]
    assert len(rows) == 30 and set(rows) <= set(data["mine"][1].tolist()) and probe not in rows
    assert conn.execute("SELECT queries FROM pgvision.recall_at_k('v8', 10, 5, collection => 'mine')").fetchone() == (
        5,
    )
    # the tenant, under row-level security, naming nothing
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    queries = clustered(20, 8, 20, seed=3)[:20] + 0.01
    recall = _recall(conn, data, queries, 50, "SELECT image_id FROM pgvision.search_images(%s, %s, 'v8')")
    assert recall >= 0.95
    # a collection not granted reads as one that does not exist
    for name in ("other", "nowhere"):
        with pytest.raises(psycopg.errors.UndefinedObject) as err:
            conn.execute(
                "SELECT * FROM pgvision.search_images('[1,0,0,0,0,0,0,0]', 5, 'v8', collection => %s)", (name,)
            )
        assert str(err.value).splitlines()[0] == f"collection '{name}' does not exist or is not granted to role {role}"


def test_a_large_collection_gets_its_own_index_and_the_search_uses_it(conn, two, monkeypatch):
    data, _ = two
    monkeypatch.setattr(collection_index, "MIN_ROWS", 2000)
    # mine (2,500 of 8,500 rows) is due; other (6,000) is more than half of the model
    built = collection_index.ensure_collection_indexes(conn, data["model_id"])
    mine = data["mine"][0]
    name = f"image_embeddings_model_{data['model_id']}_collection_{mine}_hnsw"
    assert built == [name]
    assert collection_index.ensure_collection_indexes(conn, data["model_id"]) == []  # built once
    q = "'[1,0,0,0,0,0,0,0]'::vector(8)"
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            f"EXPLAIN SELECT e.image_id FROM pgvision.image_embeddings e WHERE e.model_id = {data['model_id']} "
            f"AND e.collection_id = {mine} ORDER BY e.embedding::vector(8) <-> {q} LIMIT 10"
        )
    )
    assert f"Index Scan using {name}" in plan
    queries = clustered(10, 8, 20, seed=5) + 0.01
    assert (
        _recall(
            conn,
            data,
            queries,
            20,
            "SELECT image_id FROM pgvision.search_images(%s, %s, 'v8', collection => %s)",
            "mine",
        )
        >= 0.95
    )
