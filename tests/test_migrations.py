"""Migrations on the real server: upgrade -> downgrade -> upgrade, a deployment's own
migration adding a model's index, roles, and hostile strings that must change nothing."""

from __future__ import annotations

import textwrap

import psycopg
import pytest

from pgvision import migrate
from sqlhelpers import add_images, grant_default

TABLES = {
    "calibrations",
    "face_embeddings",
    "face_scans",
    "faces",
    "identities",
    "identity_templates",
    "image_embeddings",
    "images",
    "models",
}
TABLES |= {"cluster_passes", "cluster_edges", "cluster_deferred", "people_audit"}  # people
TABLES |= {"collections", "collection_grants"}  # collections
FUNCTIONS = {"search_images", "similar_images", "identify", "identify_face", "recall_at_k"}


def schema_objects(url):
    with psycopg.connect(url) as c:
        tables = {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'pgvision'")}
        funcs = {
            r[0]
            for r in c.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'pgvision'"
            )
        }
        views = {r[0] for r in c.execute("SELECT viewname FROM pg_views WHERE schemaname = 'pgvision'")}
    return tables, funcs, views


def test_upgrade_downgrade_upgrade(empty_database_url):
    url = empty_database_url
    migrate.upgrade(url)
    tables, funcs, views = schema_objects(url)
    assert tables == TABLES
    assert FUNCTIONS <= funcs
    assert views == {"labels", "gallery", "model_stats"} | {"people", "unassigned_faces"}
    migrate.downgrade(url, "base")
    assert schema_objects(url) == (set(), set(), set())
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM pgvision_alembic_version").fetchone()[0] == 0
    migrate.upgrade(url)
    assert schema_objects(url)[0] == TABLES


def test_functions_fix_their_search_path(database_url):
    with psycopg.connect(database_url) as c:
        configs = c.execute(
            "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'pgvision' AND p.prokind = 'f' AND p.proname <> '_similarity'").fetchall()
    assert configs
    # the search_path rule is exact; search_images (v4) also fixes its plan cache mode
    # (sql/functions/search_images.v4.sql's header), and nothing else sets anything
    extra = {"search_images": ["plan_cache_mode=force_generic_plan"]}
    for name, config in configs:
        assert config == ["search_path=pg_catalog, pgvision, pg_temp", *extra.get(name, [])], name


def test_search_works_with_a_hostile_search_path(conn):
    add_images(conn, "tiny", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    conn.execute("CREATE SCHEMA evil")
    conn.execute("CREATE TABLE evil.images (image_id bigint, uri text, label text)")
    conn.execute("SET search_path = evil, public")
    rows = conn.execute("SELECT uri FROM pgvision.search_images('[1,0]', 1)").fetchall()
    assert rows == [("file:///a.jpg",)]


DEPLOYMENT_MIGRATION = '''
"""Deployment: add the CLIP model and its HNSW index."""
from alembic import op

from pgvision.migrate import add_model, drop_model
from pgvision.registry import ModelSpec

revision = "deploy_0001"
down_revision = None
branch_labels = ("deployment",)
depends_on = "0001"


def upgrade():
    add_model(op, ModelSpec("clip-vit-b32", "image", 512, "cosine", normalized=True), m=24, ef_construction=100)


def downgrade():
    drop_model(op, "clip-vit-b32")
'''


def test_deployment_migration_adds_a_models_index(empty_database_url, tmp_path):
    (tmp_path / "deploy_0001.py").write_text(textwrap.dedent(DEPLOYMENT_MIGRATION))
    url = empty_database_url
    migrate.upgrade(url, "heads", [tmp_path])
    with psycopg.connect(url) as c:
        indexdef = c.execute(
            "SELECT index_definition FROM pgvision.model_stats WHERE model = 'clip-vit-b32'"
        ).fetchone()[0]
    assert indexdef == (
        "CREATE INDEX image_embeddings_model_1_hnsw ON pgvision.image_embeddings USING hnsw "
        "(((embedding)::vector(512)) vector_cosine_ops) WITH (m='24', ef_construction='100') WHERE (model_id = 1)")
    migrate.downgrade(url, "deployment@base", [tmp_path])
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM pgvision.models").fetchone()[0] == 0
        assert (
            c.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'image_embeddings_model_%'").fetchone()[0]
            == 0
        )


def test_reader_role_can_search_but_not_write(conn):
    ids = add_images(conn, "tiny", [("a", "cat", [1.0, 0.0]), ("b", "dog", [0.0, 1.0])])
    grant_default(conn, "pgvision_reader")
    conn.execute("SET ROLE pgvision_reader")
    assert len(conn.execute("SELECT * FROM pgvision.search_images('[1,0]', 2)").fetchall()) == 2
    assert len(conn.execute("SELECT * FROM pgvision.similar_images(%s, 1)", (ids["a"],)).fetchall()) == 1
    assert conn.execute("SELECT count(*) FROM pgvision.labels").fetchone()[0] == 2
    for stmt in ("INSERT INTO pgvision.images (sha256, uri) VALUES (sha256('x'), 'x')",
                 "UPDATE pgvision.images SET label = 'x'",
                 "DELETE FROM pgvision.image_embeddings",
                 "UPDATE pgvision.models SET threshold = 1"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(stmt)
    conn.execute("RESET ROLE")


def test_loader_role_can_load(conn):
    grant_default(conn, "pgvision_loader")
    conn.execute("SET ROLE pgvision_loader")
    add_images(conn, "tiny", [("a", "cat", [1.0, 0.0])])
    conn.execute("RESET ROLE")
    assert conn.execute("SELECT count(*) FROM pgvision.image_embeddings").fetchone()[0] == 1


HOSTILE = [
    "' OR 1=1 --",
    "x'); DROP TABLE pgvision.images; --",
    "cat' UNION SELECT 1,'a','b',0,0 --",
    '"; DELETE FROM pgvision.images; --',
]


@pytest.mark.parametrize("evil", HOSTILE)
def test_injection_strings_change_nothing(conn, evil):
    add_images(conn, "tiny", [("a", "cat", [1.0, 0.0], {"k": "v"}), ("b", "dog", [0.0, 1.0])])
    before = conn.execute("SELECT count(*) FROM pgvision.images").fetchone()[0]
    assert conn.execute("SELECT * FROM pgvision.search_images('[1,0]', 10, label => %s)", (evil,)).fetchall() == []
    assert (
        conn.execute(
            "SELECT * FROM pgvision.search_images('[1,0]', 10, filter => jsonb_build_object('k', %s::text))", (evil,)
        ).fetchall()
        == []
    )
    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute("SELECT * FROM pgvision.search_images('[1,0]', 10, model => %s)", (evil,))
    assert conn.execute("SELECT count(*) FROM pgvision.images").fetchone()[0] == before
    assert conn.execute("SELECT count(*) FROM pgvision.image_embeddings").fetchone()[0] == before


def test_db_index_command_switches_method(database_url, conn):
    from click.testing import CliRunner

    from pgvision.cli import main

    add_images(conn, "tiny", [("a", None, [1.0, 0.0]), ("b", None, [0.0, 1.0])])
    runner = CliRunner()
    out = runner.invoke(
        main, ["db", "index", "tiny", "--method", "ivfflat", "--lists", "1", "--database-url", database_url]
    )
    assert out.exit_code == 0, out.output
    assert conn.execute("SELECT index_method, index_name, probes FROM pgvision.model_stats").fetchone() == (
        "ivfflat", "image_embeddings_model_1_ivfflat", 1)
    out = runner.invoke(main, ["db", "index", "tiny", "--method", "none", "--database-url", database_url])
    assert out.exit_code == 0, out.output
    assert conn.execute("SELECT index_method, index_name FROM pgvision.model_stats").fetchone() == ("none", None)
    assert len(conn.execute("SELECT * FROM pgvision.search_images('[1,0]', 2)").fetchall()) == 2
    out = runner.invoke(main, ["db", "index", "nope", "--database-url", database_url])
    assert out.exit_code == 1
    assert out.output == "Error: unknown model 'nope': the registered models are tiny\n"
