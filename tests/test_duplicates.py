"""Duplicates in SQL (pgvision.duplicate_groups / duplicates_of) on hand-made vectors and hashes,
and on real photos loaded through the loader (re-saved, resized, cropped copies)."""

from __future__ import annotations

import re
from decimal import Decimal

import psycopg
import pytest

from sqlhelpers import add_images

ZERO = "0" * 64
ONES = "1" * 64


def bits(*ones: int) -> str:
    """A 64-bit string with the given bit positions set."""
    return "".join("1" if i in ones else "0" for i in range(64))


def set_hash(conn, image_id: int, phash: str, crops: list[str] | None = None, width: int | None = None) -> None:
    crops = crops or [ONES] * 9
    conn.execute("UPDATE pgvision.images SET phash = %s::bit(64), phash_crops = %s::bit(576), "
                 "width = coalesce(%s, width) WHERE image_id = %s", (phash, "".join(crops), width, image_id))


@pytest.fixture
def tiny(conn):
    """Five images of a 2-d cosine model.

    Cosine distances to a = [1, 0]: b = [1, 0.1] 0.00496, c = [1, 0.1] 0.00496,
    e = [1, 0.05] 0.00125, d = [0, 1] 1.0.
    Hash distances (pgvision._hash_distance) to a (phash 0, crops all ones):
    b 3 (three bits set); c 0 (its crop 5 is a's phash, its own phash has 40 bits set);
    d 0 (a's phash); e 32 (a's all-ones crops against e's 32 set bits).
    b is the largest (64x32 px; the others 32x32), so it keeps its group.
    """
    ids = add_images(conn, "tiny", [("a", "x", [1.0, 0.0]), ("b", "x", [1.0, 0.1]), ("c", "y", [1.0, 0.1]),
                                    ("d", "x", [0.0, 1.0]), ("e", "x", [1.0, 0.05])], metric="cosine")
    set_hash(conn, ids["a"], ZERO)
    set_hash(conn, ids["b"], bits(1, 2, 3), width=64)
    set_hash(conn, ids["c"], bits(*range(40)), crops=[ONES] * 4 + [ZERO] + [ONES] * 4)
    set_hash(conn, ids["d"], ZERO)
    set_hash(conn, ids["e"], bits(*range(0, 64, 2)))
    return ids


def test_hash_distance_takes_the_nearest_crop(conn, tiny):
    """Hand-checked: a-b 3 bits (whole to whole), a-c 0 (a's whole against c's crop 5),
    b-c 3 (b's whole against c's crop 5), a-e 32, NULL when a hash is NULL."""
    rows = conn.execute(
        "SELECT x.uri, y.uri, pgvision._hash_distance(x.phash, x.phash_crops, y.phash, y.phash_crops) "
        "FROM pgvision.images x, pgvision.images y WHERE x.uri = 'file:///a.jpg' AND y.uri <> x.uri "
        "UNION ALL SELECT 'b', 'c', pgvision._hash_distance(x.phash, x.phash_crops, y.phash, y.phash_crops) "
        "FROM pgvision.images x, pgvision.images y WHERE x.uri = 'file:///b.jpg' AND y.uri = 'file:///c.jpg' "
        "ORDER BY 1, 2").fetchall()
    assert rows == [("b", "c", 3), ("file:///a.jpg", "file:///b.jpg", 3), ("file:///a.jpg", "file:///c.jpg", 0),
                    ("file:///a.jpg", "file:///d.jpg", 0), ("file:///a.jpg", "file:///e.jpg", 32)]
    assert conn.execute("SELECT pgvision._hash_distance(NULL, NULL, phash, phash_crops) FROM pgvision.images "
                        "LIMIT 1").fetchone() == (None,)


def test_same_tier_needs_hash_and_embedding(conn, tiny):
    """Same at max_distance 0.01, 10 bits: a, b, c (d's hash agrees but its embedding is 1.0
    away; e's embedding agrees but its hash is 32 bits away). Keeper b (most pixels);
    distances to b: a 0.00496, c 0.0, hash: a 3, c 3."""
    rows = conn.execute("SELECT group_id, image_id, label, is_keeper, round(distance::numeric, 5), hash_distance, "
                        "width FROM pgvision.duplicate_groups('same', max_distance => 0.01)").fetchall()
    a, b, c = tiny["a"], tiny["b"], tiny["c"]
    assert rows == [(b, b, "x", True, 0, 0, 64), (b, c, "y", False, 0, 3, 32),
                    (b, a, "x", False, Decimal("0.00496"), 3, 32)]


def test_similar_tier_is_embedding_only(conn, tiny):
    """Similar at 0.01: a, b, c and e (e is 0.00125 from a and 0.00373 from b); d is alone.
    e's hash distance to b is 32: whole to whole 33 (31 of e's even bits plus b's bits 1 and
    3), b's all-ones crops against e's whole 32."""
    rows = conn.execute("SELECT group_id, image_id, is_keeper, hash_distance "
                        "FROM pgvision.duplicate_groups('similar', max_distance => 0.01)").fetchall()
    a, b, c, e = tiny["a"], tiny["b"], tiny["c"], tiny["e"]
    assert [r[:3] for r in rows] == [(b, b, True), (b, c, False), (b, e, False), (b, a, False)]
    assert dict((r[1], r[3]) for r in rows) == {b: 0, c: 3, e: 32, a: 3}


def test_duplicates_of_one_image(conn, tiny):
    """a's direct duplicates in tier same: b (3 bits, 0.00496) and c (0 bits, 0.00496), keeper b."""
    rows = conn.execute("SELECT group_id, image_id, is_keeper FROM pgvision.duplicates_of(%s, max_distance => 0.01)",
                        (tiny["a"],)).fetchall()
    assert rows == [(tiny["b"], tiny["b"], True), (tiny["b"], tiny["c"], False), (tiny["b"], tiny["a"], False)]
    assert conn.execute("SELECT * FROM pgvision.duplicates_of(%s, max_distance => 0.01)", (tiny["d"],)).fetchall() == []


@pytest.mark.parametrize(("call", "code", "message"), [
    ("duplicate_groups('other')", "22023", "tier must be 'same' or 'similar', got 'other'"),
    ("duplicate_groups(NULL)", "22004", "tier must not be NULL: pass 'same' or 'similar'"),
    ("duplicate_groups(max_distance => -1)", "22023", "max_distance must be a finite number >= 0, got -1"),
    ("duplicate_groups(max_distance => 'NaN')", "22023", "max_distance must be a finite number >= 0, got NaN"),
    ("duplicate_groups(max_hash_distance => 65)", "22023", "max_hash_distance must be between 0 and 64 bits, got 65"),
    ("duplicate_groups(model => 'nope')", "42704", "unknown model 'nope': the image models are 'tiny'"),
    ("duplicates_of(NULL)", "22004", "image_id must not be NULL: pass an image_id from pgvision.images"),
    ("duplicates_of(999999)", "P0002", "no image with image_id 999999"),
])
def test_bad_arguments_raise_one_line(conn, tiny, call, code, message):
    with pytest.raises(psycopg.Error) as info:
        conn.execute(f"SELECT * FROM pgvision.{call}")
    assert (info.value.sqlstate, info.value.diag.message_primary) == (code, message)


def test_default_thresholds_refuse_a_non_cosine_model(conn):
    add_images(conn, "l2model", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])], metric="l2")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="model 'l2model' uses l2 distance and the default "
                       "thresholds are cosine distances: pass max_distance"):
        conn.execute("SELECT * FROM pgvision.duplicate_groups()")
    rows = conn.execute("SELECT count(*) FROM pgvision.duplicate_groups('similar', max_distance => 2)").fetchall()
    assert rows == [(2,)]


def test_a_reader_sees_the_duplicates_of_its_collections_only(conn, tiny):
    """SECURITY INVOKER: row-level security applies inside the functions. A login in
    pgvision_reader granted the 'default' collection (where tiny's images are) sees the
    group; pgvision_reader itself, granted none, sees no row."""
    import os

    from psycopg import sql

    from pgvision.tenancy.collection import grant_collections

    role = f"dups_reader_{os.getpid()}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pgvision_reader").format(sql.Identifier(role)))
    try:
        grant_collections(conn, role, ["default"])
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        rows = conn.execute("SELECT image_id FROM pgvision.duplicate_groups('same', max_distance => 0.01)").fetchall()
        assert sorted(r[0] for r in rows) == sorted([tiny["a"], tiny["b"], tiny["c"]])
        conn.execute("SET ROLE pgvision_reader")
        assert conn.execute("SELECT * FROM pgvision.duplicate_groups('same', max_distance => 0.01)").fetchall() == []
    finally:
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_pairs_come_through_the_indexes(conn, tiny):
    """EXPLAIN of the candidate queries: the model's HNSW index and images_phash (B-tree)."""
    from pgvision.index.ddl import ensure_index

    model_id = conn.execute("SELECT model_id FROM pgvision.models WHERE name = 'tiny'").fetchone()[0]
    ensure_index(conn, model_id)
    conn.execute("SET enable_seqscan = off")  # five rows: the planner would rather scan them
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET client_min_messages = log")
    conn.execute("SET auto_explain.log_level = notice")
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("SELECT * FROM pgvision.duplicate_groups('same', max_distance => 0.01)").fetchall()
    plans = "\n".join(notices)
    assert "Index Scan using image_embeddings_model_1_hnsw" in plans, plans
    assert re.search(r"Index (Only )?Scan using images_phash on images b", plans), plans


def _add_two(c) -> None:
    """Two images of a 2-d cosine model, by plain SQL (the schema of revision 0015)."""
    c.execute("INSERT INTO pgvision.models (name, kind, dims, metric, index_method) "
              "VALUES ('tiny', 'image', 2, 'cosine', 'none')")
    c.execute("INSERT INTO pgvision.images (sha256, uri) VALUES (sha256('a'), 'file:///a.jpg'), "
              "(sha256('b'), 'file:///b.jpg')")
    c.execute("INSERT INTO pgvision.image_embeddings SELECT 1, image_id, "
              "CASE uri WHEN 'file:///a.jpg' THEN '[1,0]'::vector ELSE '[1,0.1]'::vector END FROM pgvision.images")


def _hash_both(c) -> None:
    c.execute("UPDATE pgvision.images SET phash = %s::bit(64), phash_crops = %s::bit(576)", (ZERO, ONES * 9))


def test_migration_0015_round_trip_with_data(empty_database_url):
    """upgrade to 0015 -> downgrade to 0014 -> upgrade with images present: the hash columns,
    their index, the type and the functions go and come back; images and embeddings stay
    (their hashes go with the columns: ``pgvision duplicates --fill-hashes`` computes them again)."""
    from pgvision import migrate

    url = empty_database_url
    migrate.upgrade(url, "0015")
    with psycopg.connect(url, autocommit=True) as c:
        _add_two(c)
        _hash_both(c)
        assert len(c.execute("SELECT * FROM pgvision.duplicate_groups()").fetchall()) == 2
    migrate.downgrade(url, "0014")
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pgvision.image_embeddings").fetchone() == (2,)
        assert c.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgvision' "
                         "AND column_name LIKE 'phash%'").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE '%duplicate%' OR proname = "
                         "'_hash_distance'").fetchone() == (0,)
        assert c.execute("SELECT to_regtype('pgvision.duplicate_hit')").fetchone() == (None,)
    migrate.upgrade(url, "0015")
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pgvision.images WHERE phash IS NULL").fetchone() == (2,)
        assert c.execute("SELECT * FROM pgvision.duplicate_groups()").fetchall() == []
        _hash_both(c)
        assert len(c.execute("SELECT * FROM pgvision.duplicate_groups()").fetchall()) == 2
        indexdef = c.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'images_phash'").fetchone()[0]
        assert indexdef.endswith("USING btree (phash, image_id) WHERE (phash IS NOT NULL)")


def test_a_hostile_search_path_changes_nothing(conn, tiny):
    """The functions fix their search_path (pg_catalog, pgvision, pg_temp): a caller's schema
    with its own images table and bit_count function is never used."""
    conn.execute("CREATE SCHEMA evil")
    conn.execute("CREATE TABLE evil.images (image_id bigint, uri text, phash bit(64))")
    conn.execute("CREATE FUNCTION evil.bit_count(bit) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'")
    conn.execute("SET search_path = evil, public")
    rows = conn.execute("SELECT image_id FROM pgvision.duplicate_groups('same', max_distance => 0.01)").fetchall()
    assert [r[0] for r in rows] == [tiny["b"], tiny["c"], tiny["a"]]
