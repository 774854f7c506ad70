"""Per-model views (pgvision.vectors_<model>): created and dropped with the model, typed so
that hand-written `ORDER BY embedding <=> $1 LIMIT k` uses the model's partial index."""

from __future__ import annotations

import hashlib

import numpy as np
import psycopg
import pytest

from pgvision import migrate
from pgvision.index.ddl import ensure_index
from pgvision.ingest.pg_copy import ImageRecord, copy_image_embeddings
from pgvision.registry import ModelSpec, register_model
from sqlhelpers import add_images, clustered


def columns(conn, view):
    return conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum", (f"pgvision.{view}",)).fetchall()


def views(conn):
    return [r[0] for r in conn.execute(
        "SELECT viewname FROM pg_views WHERE schemaname = 'pgvision' AND viewname LIKE 'vectors%' ORDER BY 1")]


def test_view_has_the_models_rows_typed_as_its_vector(conn):
    add_images(conn, "EfficientNet-Lite0", [("a", "cat", [1, 0, 0]), ("b", "dog", [0, 1, 0])])
    add_images(conn, "other", [("c", "cow", [0, 0, 1, 0])])
    assert conn.execute("SELECT name, view_name FROM pgvision.models ORDER BY model_id").fetchall() == [
        ("EfficientNet-Lite0", "vectors_efficientnet_lite0"), ("other", "vectors_other")]
    assert columns(conn, "vectors_efficientnet_lite0") == [
        ("image_id", "bigint"), ("uri", "text"), ("label", "text"), ("metadata", "jsonb"),
        ("embedding", "vector(3)")]
    rows = conn.execute("SELECT label, embedding::text FROM pgvision.vectors_efficientnet_lite0 "
                        "ORDER BY embedding <-> '[0.9,0.1,0]' LIMIT 5").fetchall()
    assert rows == [("cat", "[1,0,0]"), ("dog", "[0,1,0]")]
    assert conn.execute(
        "SELECT has_table_privilege('pgvision_reader', 'pgvision.vectors_other', 'SELECT'), "
        "has_table_privilege('pgvision_reader', 'pgvision.vectors_other', 'INSERT')"
    ).fetchone() == (True, False)


def test_view_is_dropped_with_the_model(conn):
    add_images(conn, "m1", [("a", "cat", [1, 0])])
    assert views(conn) == ["vectors_m1"]
    conn.execute("DELETE FROM pgvision.models WHERE name = 'm1'")
    assert views(conn) == []


def test_two_names_mapping_to_one_view_name_get_two_views(conn):
    first = register_model(conn, ModelSpec("clip-vit", "image", 2, "cosine"))
    second = register_model(conn, ModelSpec("CLIP_vit", "image", 2, "cosine"))
    assert conn.execute("SELECT view_name FROM pgvision.models ORDER BY model_id").fetchall() == [
        ("vectors_clip_vit",), (f"vectors_clip_vit_{second}",)]
    assert first != second


def test_face_model_view_and_halfvec_above_2000_dims(conn):
    register_model(conn, ModelSpec("wide", "face", 2048, "cosine"))
    assert columns(conn, "vectors_wide") == [
        ("face_id", "bigint"), ("image_id", "bigint"), ("uri", "text"), ("label", "text"),
        ("identity", "text"), ("metadata", "jsonb"), ("embedding", "halfvec(2048)")]


def test_the_loader_role_registers_a_model_and_gets_its_view(conn):
    conn.execute("SET ROLE pgvision_loader")
    register_model(conn, ModelSpec("by-loader", "image", 2, "l2"))
    assert conn.execute("SELECT count(*) FROM pgvision.vectors_by_loader").fetchone() == (0,)
    conn.execute("RESET ROLE")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SET ROLE pgvision_loader; SELECT pgvision._model_view()")


def test_hand_written_knn_on_the_view_uses_the_models_index(conn):
    """10,000 x 64-d rows, default planner settings: the view's query is an index scan, the
    same query on the raw table (untyped `vector` column) is not."""
    n, dims = 10_000, 64
    x = clustered(n, dims, clusters=20, seed=3)
    model_id = register_model(conn, ModelSpec("bench-model", "image", dims, "cosine"))
    records = [ImageRecord(hashlib.sha256(str(i).encode()).digest(), f"mem://{i}", "l") for i in range(n)]
    copy_image_embeddings(conn, model_id, records, x)
    ensure_index(conn, model_id)
    conn.execute("ANALYZE")
    q = np.array2string(x[0], separator=",", threshold=10_000).replace("\n", "")
    view_plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT image_id, label FROM pgvision.vectors_bench_model ORDER BY embedding <=> %s::vector LIMIT 20",
        (q,)))
    raw_plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT image_id FROM pgvision.image_embeddings ORDER BY embedding <=> %s::vector LIMIT 20", (q,)))
    assert f"Index Scan using image_embeddings_model_{model_id}_hnsw" in view_plan, view_plan
    assert "hnsw" not in raw_plan, raw_plan
    top = conn.execute("SELECT image_id FROM pgvision.vectors_bench_model ORDER BY embedding <=> %s::vector LIMIT 1",
                       (q,)).fetchone()[0]
    assert top == conn.execute("SELECT min(image_id) FROM pgvision.images").fetchone()[0]


def test_migration_creates_views_of_registered_models_and_downgrade_drops_them(database_url):
    from pgvision.server.connection import connect

    migrate.downgrade(database_url, "0002")
    with connect(database_url, autocommit=True) as c:
        c.execute("INSERT INTO pgvision.models (name, kind, dims, metric) VALUES ('old one', 'image', 3, 'l2')")
        assert views(c) == []
    migrate.upgrade(database_url)
    with connect(database_url, autocommit=True) as c:
        assert views(c) == ["vectors_old_one"]
        assert c.execute("SELECT view_name FROM pgvision.models").fetchone() == ("vectors_old_one",)
    migrate.downgrade(database_url, "0002")
    with connect(database_url, autocommit=True) as c:
        assert views(c) == []
        assert c.execute("SELECT count(*) FROM pg_proc WHERE proname = '_model_view'").fetchone() == (0,)


def explain(conn, query: str, params=()) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params))


def test_the_view_follows_the_models_index_through_every_quantization_and_method(conn):
    """10,000 x 64-d rows; `db index` (set_index) changes the index: the view is rebuilt
    (same name, grants) typed as the new index's expression, so hand-written k-NN uses it."""
    from pgvision.index.ddl import set_index

    n, dims = 10_000, 64
    x = clustered(n, dims, clusters=20, seed=3)
    model_id = register_model(conn, ModelSpec("follow", "image", dims, "cosine"))
    records = [ImageRecord(hashlib.sha256(str(i).encode()).digest(), f"mem://{i}", "l") for i in range(n)]
    copy_image_embeddings(conn, model_id, records, x)
    conn.execute("ANALYZE")
    q = np.array2string(x[0], separator=",", threshold=10_000).replace("\n", "")
    first = conn.execute("SELECT min(image_id) FROM pgvision.images").fetchone()[0]
    knn = "SELECT image_id FROM pgvision.vectors_follow ORDER BY embedding <=> %s::vector LIMIT 20"
    binary_knn = ("SELECT c.image_id FROM (SELECT image_id, embedding FROM pgvision.vectors_follow "
                  "ORDER BY embedding_binary <~> binary_quantize(%s::vector(64))::bit(64) LIMIT 100) c "
                  "ORDER BY c.embedding <=> %s::vector LIMIT 20")
    seen = {}
    for quantization, method, typ in [("none", "hnsw", "vector(64)"), ("halfvec", "hnsw", "halfvec(64)"),
                                      ("halfvec", "ivfflat", "halfvec(64)"), ("binary", "hnsw", "vector(64)"),
                                      ("none", "ivfflat", "vector(64)")]:
        index = set_index(conn, "follow", method=method, quantization=quantization)
        assert index == f"image_embeddings_model_{model_id}_{method}"
        cols = columns(conn, "vectors_follow")
        assert cols[-1 if quantization != "binary" else -2] == ("embedding", typ)
        assert (cols[-1] == ("embedding_binary", "bit(64)")) == (quantization == "binary")
        query, params = (binary_knn, (q, q)) if quantization == "binary" else (knn, (q,))
        plan = explain(conn, query, params)
        assert f"Index Scan using {index}" in plan, (quantization, method, plan)
        assert conn.execute(query, params).fetchone()[0] == first
        seen[quantization, method] = conn.execute(
            "SELECT obj_description('pgvision.vectors_follow'::regclass), "
            "has_table_privilege('pgvision_reader', 'pgvision.vectors_follow', 'SELECT')").fetchone()
    assert conn.execute("SELECT view_name FROM pgvision.models").fetchall() == [("vectors_follow",)]
    assert seen["halfvec", "hnsw"] == (
        ("Vectors of model 'follow' (image, 64 dims, cosine, hnsw index, quantization halfvec): "
         "ORDER BY embedding <=> $1 LIMIT k uses its index."), True)
    assert seen["binary", "hnsw"] == (
        ("Vectors of model 'follow' (image, 64 dims, cosine, hnsw index, quantization binary): its index is binary: "
         "SELECT * FROM (SELECT * FROM pgvision.vectors_follow ORDER BY embedding_binary <~> "
         "binary_quantize($1::vector(64))::bit(64) LIMIT 100) c ORDER BY c.embedding <=> $1 LIMIT k uses it "
         "(candidates re-ranked at full precision)."), True)


def test_a_view_with_dependents_refuses_to_follow_and_nothing_changes(conn):
    from pgvision.index.ddl import set_index

    add_images(conn, "dep", [("a", "cat", [1, 0, 0]), ("b", "dog", [0, 1, 0])])
    model_id = conn.execute("SELECT model_id FROM pgvision.models WHERE name = 'dep'").fetchone()[0]
    assert ensure_index(conn, model_id) == f"image_embeddings_model_{model_id}_hnsw"
    conn.execute("CREATE VIEW public.my_cats AS SELECT * FROM pgvision.vectors_dep WHERE label = 'cat'")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist) as info:
        set_index(conn, "dep", quantization="halfvec")
    assert (info.value.diag.message_primary, info.value.diag.message_hint) == (
        "view pgvision.vectors_dep has objects that depend on it, so it cannot follow the new index of model 'dep'",
        "drop the objects built on the view, change the index, then recreate them")
    assert conn.execute("SELECT quantization FROM pgvision.models WHERE name = 'dep'").fetchone() == ("none",)
    assert columns(conn, "vectors_dep")[-1] == ("embedding", "vector(3)")
    assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s",
                        (f"image_embeddings_model_{model_id}_hnsw",)).fetchone() == (1,)  # the old index stays


def test_migration_0013_rebuilds_views_both_ways(database_url):
    from pgvision.server.connection import connect

    with connect(database_url, autocommit=True) as c:
        register_model(c, ModelSpec("half", "image", 3, "l2"))
        c.execute("UPDATE pgvision.models SET quantization = 'halfvec' WHERE name = 'half'")
        assert columns(c, "vectors_half")[-1] == ("embedding", "halfvec(3)")
    migrate.downgrade(database_url, "0012")
    with connect(database_url, autocommit=True) as c:
        assert columns(c, "vectors_half")[-1] == ("embedding", "vector(3)")  # as the registration trigger made it
        assert c.execute("SELECT view_name FROM pgvision.models").fetchall() == [("vectors_half",)]
        assert c.execute("SELECT has_table_privilege('pgvision_reader', 'pgvision.vectors_half', 'SELECT')"
                         ).fetchone() == (True,)
    migrate.upgrade(database_url)
    with connect(database_url, autocommit=True) as c:
        assert columns(c, "vectors_half")[-1] == ("embedding", "halfvec(3)")
