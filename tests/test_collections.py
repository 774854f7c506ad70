"""Collections (tenants) under row-level security: a reader of one collection never sees another's rows.

Two collections on one database, 2-d vectors (L2) whose order is checked by hand:

    acme:  images acme-1 [1, 0] and acme-2 [0, 1] (label acme-label); person acme-person, one face [1, 0]
    bravo: images bravo-secret-1 [0.9, 0.1] and bravo-secret-2 [1, 0.05] (label bravo-secret-label);
           person bravo-secret-person, one face [1, 0.1]

From the query [1, 0]: acme-1 is at 0, bravo-secret-2 at 0.05, bravo-secret-1 at 0.141 and acme-2 at
1.414; so a search that leaked bravo's rows would rank them between acme's two. Every text of bravo's
rows contains "bravo", which no row of acme and no shared row (models) contains.
"""

from __future__ import annotations

import os

import numpy as np
import psycopg
import pytest
from psycopg import sql

from pgvision.ingest.pg_copy import copy_vectors
from pgvision.registry import ModelSpec, register_model
from pgvision.tenancy.collection import CollectionError, grant_collections, use_collection
from sqlhelpers import add_images

IMAGES = {
    "acme": [("acme-1", "acme-label", [1.0, 0.0]), ("acme-2", "acme-label", [0.0, 1.0])],
    "bravo": [
        ("bravo-secret-1", "bravo-secret-label", [0.9, 0.1]),
        ("bravo-secret-2", "bravo-secret-label", [1.0, 0.05]),
    ],
}
FACES = {"acme": ("acme-person", [1.0, 0.0]), "bravo": ("bravo-secret-person", [1.0, 0.1])}
#: The SQL API's public functions this file calls as a collection reader; a new one must be added
#: to test_a_reader_of_one_collection_calls_every_function (and made to respect collections).
PUBLIC_FUNCTIONS = {
    "search_images",
    "similar_images",
    "identify",
    "identify_face",
    "recall_at_k",
    "duplicate_groups",
    "duplicates_of",
}


def _sqlstate(conn, query, *args):
    with pytest.raises(psycopg.Error) as err:
        conn.execute(query, args)
    return err.value.sqlstate, str(err.value).splitlines()[0]


def _load_tenants(conn) -> dict:
    """Both collections' images and galleries, loaded as the schema owner; returns their ids."""
    ids: dict = {"collection": {}, "image": {}, "face": {}, "identity": {}}
    face_model = register_model(conn, ModelSpec("face2", "face", 2, "l2", threshold=0.5))
    for coll in ("acme", "bravo"):
        ids["collection"][coll] = use_collection(conn, coll)
        ids["image"].update(add_images(conn, "img2", IMAGES[coll]))
        name, vector = FACES[coll]
        image_id = conn.execute(
            "INSERT INTO pgvision.images (sha256, uri) VALUES (sha256(%s::bytea), %s) RETURNING image_id",
            (name.encode(), f"file:///{name}.jpg"),
        ).fetchone()[0]
        ids["identity"][coll] = conn.execute(
            "INSERT INTO pgvision.identities (name) VALUES (%s) RETURNING identity_id", (name,)
        ).fetchone()[0]
        ids["face"][coll] = conn.execute(
            "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, identity_id) "
            "VALUES (%s, 'test', 0, 0, 10, 10, %s) RETURNING face_id",
            (image_id, ids["identity"][coll]),
        ).fetchone()[0]
        copy_vectors(
            conn,
            "face_embeddings",
            "face_id",
            face_model,
            np.array([ids["face"][coll]]),
            np.array([vector], dtype=np.float32),
        )
    conn.execute("RESET pgvision.collection_id")
    return ids


@pytest.fixture
def tenants(conn):
    """(ids, reader of acme, loader of acme): login roles in pgvision_reader / pgvision_loader granted acme only."""
    ids = _load_tenants(conn)
    roles = [f"acme_reader_{os.getpid()}", f"acme_loader_{os.getpid()}"]
    for role, group in zip(roles, ("pgvision_reader", "pgvision_loader"), strict=True):
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(role), sql.Identifier(group)))
        grant_collections(conn, role, ["acme"])
    try:
        yield ids, *roles
    finally:
        conn.execute("RESET ROLE")
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _as(conn, role):
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))


def test_the_owner_sees_both_collections_and_each_row_has_its_own(conn, tenants):
    ids, _, _ = tenants
    rows = conn.execute(
        "SELECT c.name, count(*) FROM pgvision.images i JOIN pgvision.collections c USING (collection_id) "
        "GROUP BY c.name ORDER BY c.name"
    ).fetchall()
    assert rows == [("acme", 3), ("bravo", 3)]
    # embeddings, faces and templates follow their parent's collection
    assert conn.execute(
        "SELECT count(*) FROM pgvision.image_embeddings e JOIN pgvision.images i USING (image_id) "
        "WHERE e.collection_id <> i.collection_id"
    ).fetchone() == (0,)
    assert conn.execute("SELECT identity_id, collection_id FROM pgvision.identity_templates ORDER BY 1").fetchall() == [
        (ids["identity"]["acme"], ids["collection"]["acme"]),
        (ids["identity"]["bravo"], ids["collection"]["bravo"]),
    ]


def test_a_reader_of_one_collection_reads_every_table_and_view_without_the_others_rows(conn, tenants):
    ids, reader, _ = tenants
    relations = [
        r[0]
        for r in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'pgvision'::regnamespace "
            "AND c.relkind IN ('r', 'v', 'm', 'p') AND has_table_privilege(%s, c.oid, 'SELECT') ORDER BY 1",
            (reader,),
        )
    ]
    assert {
        "pgvision.images",
        "pgvision.faces",
        "pgvision.identities",
        "pgvision.image_embeddings",
        "pgvision.face_embeddings",
        "pgvision.identity_templates",
        "pgvision.calibrations",
        "pgvision.face_scans",
        "pgvision.collections",
        "pgvision.collection_grants",
        "pgvision.labels",
        "pgvision.gallery",
        "pgvision.model_stats",
        "pgvision.vectors_img2",
        "pgvision.vectors_face2",
    } <= set(relations)
    _as(conn, reader)
    seen = {}
    for rel in relations:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {}").format(sql.SQL(rel)))
            columns = [d.name for d in cur.description]
            rows = cur.fetchall()
        assert "bravo" not in repr(rows), rel
        if "collection_id" in columns:
            assert {r[columns.index("collection_id")] for r in rows} <= {ids["collection"]["acme"]}, rel
        seen[rel] = rows
    assert [r[1] for r in seen["pgvision.collections"]] == ["acme"]
    assert len(seen["pgvision.images"]) == 3 and len(seen["pgvision.vectors_img2"]) == 2
    assert conn.execute("SELECT label, images FROM pgvision.labels ORDER BY label NULLS LAST").fetchall() == [
        ("acme-label", 2),
        (None, 1),
    ]
    assert conn.execute("SELECT name, faces FROM pgvision.gallery").fetchall() == [("acme-person", 1)]
    assert conn.execute("SELECT model, embeddings FROM pgvision.model_stats ORDER BY model").fetchall() == [
        ("face2", 1),
        ("img2", 2),
    ]


def test_a_reader_of_one_collection_calls_every_function(conn, tenants):
    ids, reader, _ = tenants
    public = {
        r[0]
        for r in conn.execute(
            "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'pgvision'::regnamespace AND p.proname !~ '^_' "
            "AND has_function_privilege(%s, p.oid, 'EXECUTE')",
            (reader,),
        )
    }
    assert public == PUBLIC_FUNCTIONS, "a new public function: call it below as a collection reader"
    a1, a2 = ids["image"]["acme-1"], ids["image"]["acme-2"]
    b1 = ids["image"]["bravo-secret-1"]
    _as(conn, reader)
    assert conn.execute(
        "SELECT image_id, round(distance::numeric, 3)::float8 FROM pgvision.search_images('[1,0]', 10, 'img2')"
    ).fetchall() == [(a1, 0), (a2, 1.414)]
    assert (
        conn.execute(
            "SELECT image_id FROM pgvision.search_images('[1,0]', 10, 'img2', label => 'bravo-secret-label')"
        ).fetchall()
        == []
    )
    assert conn.execute("SELECT image_id FROM pgvision.similar_images(%s, 5, 'img2')", (a1,)).fetchall() == [(a2,)]
    # another collection's image is answered as a missing one: same code, same text
    assert _sqlstate(conn, "SELECT * FROM pgvision.similar_images(%s, 5, 'img2')", b1) == (
        "P0002",
        f"no image with image_id {b1}",
    )
    assert _sqlstate(conn, "SELECT * FROM pgvision.similar_images(%s, 5, 'img2')", 10**12) == (
        "P0002",
        f"no image with image_id {10**12}",
    )
    assert conn.execute(
        "SELECT name, round(distance::numeric, 3)::float8, is_match FROM pgvision.identify('[1,0.1]', 'face2')"
    ).fetchall() == [("acme-person", 0.1, True)]
    # the enrolled face itself is left out of its own search: acme's gallery is then empty
    assert conn.execute("SELECT name FROM pgvision.identify_face(%s, 'face2')", (ids["face"]["acme"],)).fetchall() == []
    b_face = ids["face"]["bravo"]
    assert _sqlstate(conn, "SELECT * FROM pgvision.identify_face(%s, 'face2')", b_face) == (
        "P0002",
        f"no face with face_id {b_face}",
    )
    # recall over the collection's own 2 vectors only
    assert conn.execute("SELECT queries FROM pgvision.recall_at_k('img2', 1, 100)").fetchone() == (2,)
    # duplicates: bravo-secret-2 is 0.05 from acme-1, bravo-secret-1 0.141 (the owner sees that group)
    assert conn.execute("SELECT image_id FROM pgvision.duplicate_groups('similar', 'img2', 0.2)").fetchall() == []
    assert (
        conn.execute("SELECT image_id FROM pgvision.duplicates_of(%s, 'similar', 'img2', 0.2)", (a1,)).fetchall() == []
    )
    assert _sqlstate(conn, "SELECT * FROM pgvision.duplicates_of(%s, 'similar', 'img2', 0.2)", b1) == (
        "P0002",
        f"no image with image_id {b1}",
    )
    # the engine functions under them run with the caller's rights too
    assert conn.execute(
        "SELECT item_id FROM pgvision._nearest((SELECT m FROM pgvision.models m WHERE name = 'img2'), "
        "'[1,0]', 10, exact => true)"
    ).fetchall() == [(a1,), (a2,)]


def test_no_security_definer_function_is_a_way_around(conn, tenants):
    """Every SECURITY DEFINER function of the schema is a trigger function nobody may call."""
    _, reader, loader = tenants
    definers = conn.execute(
        "SELECT p.oid::regprocedure::text, p.prorettype = 'trigger'::regtype, "
        "has_function_privilege(%s, p.oid, 'EXECUTE'), has_function_privilege(%s, p.oid, 'EXECUTE') FROM pg_proc p "
        "WHERE p.pronamespace = 'pgvision'::regnamespace AND p.prosecdef ORDER BY 1",
        (reader, loader),
    ).fetchall()
    assert [d[0] for d in definers] == ["pgvision._model_ann()", "pgvision._model_view()", "pgvision._sync_templates()"]
    _as(conn, reader)
    for name, is_trigger, reader_may, loader_may in definers:
        assert (is_trigger, reader_may, loader_may) == (True, False, False), name
        assert _sqlstate(conn, f"SELECT {name.removesuffix('()')}()") == (
            "42501",
            f"permission denied for function {name.removeprefix('pgvision.').removesuffix('()')}",
        )


@pytest.mark.parametrize(
    "statement,state,line",
    [
        ("CREATE TABLE pgvision.t (x int)", "42501", "permission denied for schema pgvision"),
        ("CREATE VIEW pgvision.v AS SELECT * FROM pgvision.images", "42501", "permission denied for schema pgvision"),
        (
            "CREATE FUNCTION pgvision.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "42501",
            "permission denied for schema pgvision",
        ),
        ("CREATE POLICY everything ON pgvision.images USING (true)", "42501", "must be owner of table images"),
        ("DROP POLICY collection_member ON pgvision.images", "42501", "must be owner of relation images"),
        ("ALTER TABLE pgvision.images DISABLE ROW LEVEL SECURITY", "42501", "must be owner of table images"),
        ("ALTER VIEW pgvision.labels RESET (security_invoker)", "42501", "must be owner of view labels"),
        (
            "INSERT INTO pgvision.collection_grants VALUES (current_user::regrole, 1)",
            "42501",
            "permission denied for table collection_grants",
        ),
        ("INSERT INTO pgvision.collections (name) VALUES ('mine')", "42501", "permission denied for table collections"),
        ("UPDATE pgvision.images SET collection_id = 1", "42501", "permission denied for table images"),
    ],
)
def test_a_reader_cannot_create_objects_or_change_policies(conn, tenants, statement, state, line):
    _, reader, _ = tenants
    _as(conn, reader)
    assert _sqlstate(conn, statement) == (state, line)


def test_neither_a_setting_nor_the_privilege_role_widens_what_a_reader_sees(conn, tenants):
    ids, reader, _ = tenants
    _as(conn, reader)
    conn.execute("SELECT set_config('pgvision.collection_id', %s, false)", (str(ids["collection"]["bravo"]),))
    assert conn.execute("SELECT count(*) FROM pgvision.images").fetchone() == (3,)
    # pgvision_reader itself is granted no collection: SET ROLE to it shows nothing
    conn.execute("SET ROLE pgvision_reader")
    assert conn.execute("SELECT count(*) FROM pgvision.images").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM pgvision.collections").fetchone() == (0,)


def test_a_loader_of_one_collection_writes_only_there(conn, tenants):
    ids, _, loader = tenants
    _as(conn, loader)
    assert use_collection(conn, "acme") == ids["collection"]["acme"]
    with pytest.raises(CollectionError) as err:
        use_collection(conn, "bravo")
    assert str(err.value) == (
        f"collection 'bravo' does not exist or is not granted to role {loader}: check the name, "
        "or ask the database owner to grant it (pgvision db user create NAME --collection 'bravo')"
    )
    with pytest.raises(CollectionError) as missing:
        use_collection(conn, "nowhere")
    assert str(missing.value).startswith(f"collection 'nowhere' does not exist or is not granted to role {loader}")
    add_images(conn, "img2", [("acme-3", None, [0.5, 0.5])])  # the same photo bravo may hold: no conflict
    conn.execute("SELECT set_config('pgvision.collection_id', %s, false)", (str(ids["collection"]["bravo"]),))
    assert _sqlstate(conn, "INSERT INTO pgvision.images (sha256, uri) VALUES (sha256('x'), 'x')") == (
        "42501",
        'new row violates row-level security policy for table "images"',
    )
    conn.execute("RESET pgvision.collection_id")
    # enrolling acme's face as bravo's person: refused as if that person did not exist
    state, line = _sqlstate(
        conn,
        "UPDATE pgvision.faces SET identity_id = %s WHERE face_id = %s",
        ids["identity"]["bravo"],
        ids["face"]["acme"],
    )
    assert (state, line) == (
        "23503",
        'insert or update on table "faces" violates foreign key constraint "faces_identity_id_collection_fkey"',
    )
    # bravo's rows cannot be touched: invisible to UPDATE
    assert (
        conn.execute(
            "UPDATE pgvision.faces SET identity_id = NULL WHERE face_id = %s", (ids["face"]["bravo"],)
        ).rowcount
        == 0
    )
    conn.execute("RESET ROLE")
    assert conn.execute(
        "SELECT count(*) FROM pgvision.images WHERE collection_id = %s", (ids["collection"]["acme"],)
    ).fetchone() == (4,)


def test_the_same_photo_and_name_in_two_collections_are_two_rows(conn):
    for coll in ("acme", "bravo"):
        use_collection(conn, coll)
        add_images(conn, "img2", [("same", "x", [1.0, 0.0])])
        conn.execute("INSERT INTO pgvision.identities (name) VALUES ('Ann')")
    assert conn.execute("SELECT count(DISTINCT sha256), count(*) FROM pgvision.images").fetchone() == (1, 2)
    assert conn.execute("SELECT count(*) FROM pgvision.identities WHERE name = 'Ann'").fetchone() == (2,)


def test_a_collection_name_is_checked(conn):
    with pytest.raises(CollectionError) as err:
        use_collection(conn, " ")
    assert str(err.value) == (
        "a collection name must be 1 to 200 characters and not blank, got 1 (' '): "
        "pass --collection with a name such as default or acme"
    )


def test_db_user_create_grants_the_collections_named(conn, database_url):
    from pgvision.server.users import create_user, drop_user
    from pgvision.tenancy.collection import granted_collections

    name = f"bi_{os.getpid()}"
    tcp = "postgresql://x@127.0.0.1:5999/pgvision"  # where a BI tool would connect (only printed here)
    create_user(conn, tcp, name, "reader", collections=["acme", "bravo"])
    try:
        assert granted_collections(conn, name) == ["acme", "bravo"]
        other = f"{name}_default"
        create_user(conn, tcp, other, "loader")
        assert granted_collections(conn, other) == ["default"]
        drop_user(conn, other)
        assert conn.execute(
            "SELECT count(*) FROM pgvision.collection_grants WHERE role::oid NOT IN (SELECT oid FROM pg_roles)"
        ).fetchone() == (0,)
    finally:
        drop_user(conn, name)


def test_load_vectors_into_a_collection_from_the_cli(database_url, tmp_path):
    from click.testing import CliRunner

    from pgvision.cli import main

    np.save(tmp_path / "v.npy", np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    for coll in ("acme", "acme", "bravo"):  # the rerun adds nothing; another collection gets its own rows
        result = CliRunner().invoke(
            main,
            [
                "load-vectors",
                str(tmp_path / "v.npy"),
                "--model",
                "ext",
                "--metric",
                "l2",
                "--collection",
                coll,
                "-q",
                "--database-url",
                database_url,
            ],
        )
        assert result.exit_code == 0, result.output
    with psycopg.connect(database_url) as c:
        assert c.execute(
            "SELECT c.name, count(*) FROM pgvision.image_embeddings e JOIN pgvision.collections c "
            "USING (collection_id) GROUP BY c.name ORDER BY c.name"
        ).fetchall() == [("acme", 2), ("bravo", 2)]


def test_the_owner_sees_the_group_a_reader_does_not(conn, tenants):
    ids, _, _ = tenants
    assert sorted(
        r[0] for r in conn.execute("SELECT image_id FROM pgvision.duplicate_groups('similar', 'img2', 0.2)")
    ) == sorted([ids["image"]["acme-1"], ids["image"]["bravo-secret-1"], ids["image"]["bravo-secret-2"]])


def test_the_owner_identifies_within_a_named_collection(conn, tenants):
    # from [1, 0.1]: bravo-secret-person's face is at 0, acme-person's at 0.1
    assert conn.execute("SELECT name FROM pgvision.identify('[1,0.1]', 'face2', candidates => 1)").fetchall() == [
        ("bravo-secret-person",)
    ]
    assert conn.execute(
        "SELECT name, is_match FROM pgvision.identify('[1,0.1]', 'face2', collection => 'acme')"
    ).fetchall() == [("acme-person", True)]


def test_a_scoped_loader_loads_vectors_from_the_cli(conn, tenants, database_url, tmp_path):
    """Through `pgvision load-vectors` as the acme loader: COPY under row-level security goes through a
    temporary table; a collection not granted is one line naming the role, and nothing is written."""
    from click.testing import CliRunner
    from psycopg.conninfo import make_conninfo

    from pgvision.cli import main

    ids, _, loader = tenants
    url = make_conninfo(database_url, user=loader)
    np.save(tmp_path / "v.npy", np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32))
    args = ["load-vectors", str(tmp_path / "v.npy"), "--model", "img2", "--metric", "l2", "-q", "--no-index"]
    args += ["--database-url", url]  # the index is the owner's to build
    ok = CliRunner().invoke(main, [*args, "--collection", "acme"])
    assert ok.exit_code == 0, ok.output
    refused = CliRunner().invoke(main, [*args, "--collection", "bravo"])
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: collection 'bravo' does not exist or is not granted to role {loader}: check the name, or ask the "
        "database owner to grant it (pgvision db user create NAME --collection 'bravo')\n"
    )
    assert conn.execute(
        "SELECT collection_id, count(*) FROM pgvision.image_embeddings GROUP BY 1 ORDER BY 1"
    ).fetchall() == [(ids["collection"]["acme"], 5), (ids["collection"]["bravo"], 2)]
