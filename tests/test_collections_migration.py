"""Migration 0017 (collections) with data present: upgrade -> downgrade -> upgrade, and the refusal."""

from __future__ import annotations

import os

import numpy as np
import psycopg
import pytest
from psycopg import sql

from pgvision import migrate
from pgvision.ingest.pg_copy import copy_vectors
from pgvision.registry import ModelSpec, register_model
from sqlhelpers import add_images


def _gallery(conn) -> None:
    """One image model (2 images), one face model, person ann with one face enrolled (a template)."""
    # raw SQL: the loader's own statements are written for the schema at head
    image_model = register_model(conn, ModelSpec("img2", "image", 2, "l2"))
    images = [
        conn.execute(
            "INSERT INTO pgvision.images (sha256, uri, label) VALUES (sha256(%s::bytea), %s, %s) RETURNING image_id",
            (n.encode(), f"file:///{n}.jpg", label),
        ).fetchone()[0]
        for n, label in (("a", "cat"), ("b", "dog"))
    ]
    copy_vectors(
        conn,
        "image_embeddings",
        "image_id",
        image_model,
        np.array(images),
        np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
    )
    face_model = register_model(conn, ModelSpec("face2", "face", 2, "l2", threshold=0.5))
    ann = conn.execute("INSERT INTO pgvision.identities (name) VALUES ('ann') RETURNING identity_id").fetchone()[0]
    image = conn.execute(
        "INSERT INTO pgvision.images (sha256, uri) VALUES (sha256('ann'), 'ann.jpg') RETURNING image_id"
    ).fetchone()[0]
    face = conn.execute(
        "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, "
        "identity_id) VALUES (%s, 'test', 0, 0, 10, 10, %s) RETURNING face_id",
        (image, ann),
    ).fetchone()[0]
    copy_vectors(conn, "face_embeddings", "face_id", face_model, np.array([face]), np.array([[1.0, 0.0]], np.float32))


def _counts(conn):
    return [
        conn.execute(sql.SQL("SELECT count(*) FROM pgvision.{}").format(sql.Identifier(t))).fetchone()[0]
        for t in ("images", "image_embeddings", "identities", "faces", "face_embeddings", "identity_templates")
    ]


@pytest.fixture
def bi_role(empty_database_url):
    role = f"bi_migration_{os.getpid()}"
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_existing_rows_go_to_default_and_existing_readers_keep_them(empty_database_url, bi_role):
    url = empty_database_url
    migrate.upgrade(url, "0016")
    with psycopg.connect(url, autocommit=True) as c:
        _gallery(c)
        c.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pgvision_reader").format(sql.Identifier(bi_role)))
        before = _counts(c)
    assert before == [3, 2, 1, 1, 1, 1]
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT collection_id, name FROM pgvision.collections").fetchall() == [(1, "default")]
        assert c.execute(
            "SELECT DISTINCT collection_id FROM pgvision.images UNION "
            "SELECT DISTINCT collection_id FROM pgvision.identity_templates"
        ).fetchall() == [(1,)]
        # the login that was a reader before is granted default; the privilege roles are not
        # (other tests' roles of this cluster may be members too: only these three are asked about)
        assert c.execute(
            "SELECT role::text, collection_id FROM pgvision.collection_grants "
            "WHERE role::text IN (%s, 'pgvision_reader', 'pgvision_loader')",
            (bi_role,),
        ).fetchall() == [(bi_role, 1)]
        c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(bi_role)))
        assert _counts(c) == before
        assert [r[0] for r in c.execute("SELECT uri FROM pgvision.search_images('[1,0]', 2, 'img2')")] == [
            "file:///a.jpg",
            "file:///b.jpg",
        ]
        c.execute("RESET ROLE")
        c.execute("INSERT INTO pgvision.collections (name) VALUES ('acme')")  # empty: no clash on the way down
    migrate.downgrade(url, "0016")
    with psycopg.connect(url, autocommit=True) as c:
        assert _counts(c) == before
        assert c.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgvision' "
            "AND column_name = 'collection_id'"
        ).fetchone() == (0,)
        assert c.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'pgvision.images'::regclass").fetchone() == (
            False,
        )
        assert c.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'pgvision'::regnamespace AND relkind = 'v' "
            "AND reloptions IS NOT NULL"
        ).fetchone() == (0,)
        c.execute("INSERT INTO pgvision.images (sha256, uri) VALUES (sha256('c'), 'c')")  # the old keys work again
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("INSERT INTO pgvision.identities (name) VALUES ('ann')")
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True) as c:
        assert _counts(c) == [4, 2, 1, 1, 1, 1]
        assert c.execute("SELECT count(*) FROM pgvision.images WHERE collection_id = 1").fetchone() == (4,)
        assert c.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'pgvision.vectors_img2'::regclass"
        ).fetchone() == (["security_invoker=true"],)


def test_downgrade_refuses_when_two_collections_hold_the_same_photo(database_url):
    from pgvision.tenancy.collection import use_collection

    with psycopg.connect(database_url, autocommit=True) as c:
        for coll in ("acme", "bravo"):
            use_collection(c, coll)
            add_images(c, "img2", [("same", None, [1.0, 0.0])])
    with pytest.raises(psycopg.errors.UniqueViolation) as err:
        migrate.downgrade(database_url, "0016")
    with psycopg.connect(database_url) as c:
        digest = c.execute("SELECT encode(sha256, 'hex') FROM pgvision.images LIMIT 1").fetchone()[0]
    assert str(err.value).splitlines()[0] == (
        f"cannot remove collections: image sha256 {digest} is in more than one collection, and without collections "
        "it must be unique"
    )
    with psycopg.connect(database_url) as c:  # nothing changed
        assert c.execute("SELECT count(*) FROM pgvision.collections").fetchone() == (3,)
