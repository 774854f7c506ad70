"""Server settings sized to the machine: RAM and cores in, PostgreSQL parameters out.

:func:`settings_for` is a pure function; :func:`this_machine` measures the machine it runs
on. The embedded server applies the result when it is created and whenever the machine or
:data:`FORMULA_VERSION` changes (``server.start``); ``pgvision db tune`` applies it on
demand, or prints the ``ALTER SYSTEM`` lines for a server pgvision does not own.

Sources of the rules:

- PostgreSQL docs, "Resource Consumption" and "Query Planning" (what each parameter
  holds, which need a restart: ``shared_buffers`` and ``max_worker_processes``).
- pgtune (github.com/le0pard/pgtune, ``src/features/configuration``), its "data
  warehouse" profile: shared_buffers = RAM/4, effective_cache_size = 3/4 RAM,
  max_worker_processes = max_parallel_workers = cores, max_parallel_workers_per_gather =
  cores/2 up to 4, work_mem = (RAM - shared_buffers) / (3 x max_connections) / workers
  per gather, random_page_cost 1.1 on SSD and 4 on HDD.
- pgvector README, "Index Build Time": HNSW builds fast only while the graph fits
  ``maintenance_work_mem``, and use ``max_parallel_maintenance_workers`` (the leader
  takes part, so cores - 1 workers keep every core busy).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgvision.errors import InvalidValue

#: Bump when a formula below changes: an embedded server applied with an older version
#: is re-tuned on its next start.
FORMULA_VERSION = 1

MB = 1024 * 1024
GB = 1024 * MB

#: PostgreSQL's default ``max_connections``; work_mem is sized for it (pgtune).
MAX_CONNECTIONS = 100

#: ``maintenance_work_mem`` ceiling. pgtune caps it at 2 GB (vacuum could not use more
#: before PostgreSQL 17); an HNSW build uses all of it for the graph. 1M x 128 with m 16
#: is a 794 MB index (../shared/ENVIRONMENT.md), 1M x 512 about 2.3 GB, 10M x 128 about
#: 8 GB: 16 GB holds all three, and at RAM/8 it is reached only from 128 GB of RAM up.
MAINTENANCE_WORK_MEM_CAP = 16 * GB

@dataclass(frozen=True)
class Machine:
    """What the settings are sized from.

    Attributes:
        ram_bytes: memory the server may use, bytes.
        cores: CPU cores the server may use.
        disk: ``ssd`` (default) or ``hdd``.
    """

    ram_bytes: int
    cores: int
    disk: str = "ssd"

    def describe(self) -> str:
        """E.g. ``24 GB RAM, 2 cores, ssd``."""
        return f"{_size(self.ram_bytes // MB)} RAM, {self.cores} cores, {self.disk}"


@dataclass(frozen=True)
class Setting:
    """One parameter: its value as PostgreSQL reads it and why."""

    name: str
    value: str
    reason: str


def this_machine() -> Machine:
    """The RAM and cores of this machine, within its cgroup limits when set.

    Cores: ``os.sched_getaffinity`` (CPUs this process may run on), then a cgroup v2
    ``cpu.max`` quota. RAM: physical pages x page size, then a cgroup v2 ``memory.max``.
    """
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cgroup_ram = _read_cgroup("memory.max")
    if cgroup_ram and cgroup_ram[0].isdigit():
        ram = min(ram, int(cgroup_ram[0]))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _read_cgroup("cpu.max")
    if quota and quota[0].isdigit() and len(quota) == 2:
        cores = min(cores, max(1, int(quota[0]) // int(quota[1])))
    return Machine(ram_bytes=ram, cores=cores)


def _read_cgroup(name: str) -> list[str] | None:
    try:
        with open(f"/sys/fs/cgroup/{name}") as f:
            return f.read().split()
    except OSError:
        return None


def settings_for(machine: Machine) -> list[Setting]:
    """PostgreSQL parameters for a server that has ``machine`` to itself.

    Args:
        machine: RAM (bytes), cores and disk kind.

    Returns:
        Settings in a fixed order; memory values in PostgreSQL units (``6GB``, ``61MB``),
        rounded down to whole MB.

    Raises:
        ValueError: under 256 MB of RAM, cores < 1, or a disk kind other than ssd/hdd.

    Example: 24 GB and 2 cores give shared_buffers 6GB, effective_cache_size 18GB,
    maintenance_work_mem 3GB, 1 parallel maintenance worker, work_mem 61MB.
    """
    if machine.ram_bytes < 256 * MB:
        raise InvalidValue(f"RAM {machine.ram_bytes} bytes is under 256 MB: give the machine's RAM in bytes")
    if machine.cores < 1:
        raise InvalidValue(f"cores {machine.cores} is under 1: give the number of CPU cores")
    if machine.disk not in ("ssd", "hdd"):
        raise InvalidValue(f"disk kind {machine.disk!r} is unknown: use ssd or hdd")
    ram_mb, cores = machine.ram_bytes // MB, machine.cores
    shared_buffers = ram_mb // 4
    maintenance = max(64, min(ram_mb // 8, MAINTENANCE_WORK_MEM_CAP // MB))
    per_gather = min(4, cores // 2)
    work_mem = max(4, (ram_mb - shared_buffers) // (3 * MAX_CONNECTIONS) // max(1, per_gather))
    workers = max(8, cores)
    return [
        Setting(
            "shared_buffers",
            _size(shared_buffers),
            "RAM/4: PostgreSQL's own cache; the OS page cache holds the rest (pgtune; docs 'Resource Consumption')",
        ),
        Setting(
            "effective_cache_size",
            _size(ram_mb * 3 // 4),
            "3/4 of RAM: what the planner may assume is cached, shared_buffers included (pgtune)",
        ),
        Setting(
            "maintenance_work_mem",
            _size(maintenance),
            f"RAM/8, at least 64MB, at most {_size(MAINTENANCE_WORK_MEM_CAP // MB)}: an HNSW build is fast "
            "only while the graph fits (pgvector README 'Index Build Time'); pgtune's 2GB cap is for vacuum",
        ),
        Setting(
            "autovacuum_work_mem",
            _size(min(maintenance, 1024)),
            "min(maintenance_work_mem, 1GB): each of the 3 autovacuum workers would otherwise take "
            "maintenance_work_mem (docs 'Resource Consumption')",
        ),
        Setting(
            "max_worker_processes",
            str(workers),
            "cores, at least PostgreSQL's default 8: the pool every parallel worker comes from (pgtune)",
        ),
        Setting("max_parallel_workers", str(cores), "cores: parallel workers of all queries together (pgtune)"),
        Setting(
            "max_parallel_maintenance_workers",
            str(cores - 1),
            "cores - 1: CREATE INDEX workers; the leader builds too (pgvector README 'Index Build Time')",
        ),
        Setting(
            "max_parallel_workers_per_gather",
            str(per_gather),
            "cores/2, at most 4: leaves cores for other sessions (pgtune)",
        ),
        Setting(
            "work_mem",
            _size(work_mem),
            f"(RAM - shared_buffers) / (3 x {MAX_CONNECTIONS} connections) / workers per gather, "
            "at least 4MB: per sort or hash node (pgtune)",
        ),
        Setting("max_wal_size", "4GB", "fewer checkpoints during bulk loads (docs 'WAL Configuration')"),
        Setting(
            "random_page_cost",
            "1.1" if machine.disk == "ssd" else "4",
            f"{machine.disk}: random reads cost about a sequential one on SSD (pgtune)",
        ),
    ]


def _size(mb: int) -> str:
    return f"{mb // 1024}GB" if mb >= 1024 and mb % 1024 == 0 else f"{mb}MB"


def marker_text(machine: Machine, settings: list[Setting], *, given: bool = False) -> str:
    """Content of the embedded server's ``pgvision.settings`` file: formula version,
    machine and values; a server whose marker differs is re-tuned.

    Args:
        given: the machine was given by hand (``db tune --ram/--cores``): kept on later
            starts as long as the formula version is the same.
    """
    lines = [f"# pgvision settings formula {FORMULA_VERSION}: {machine.describe()}{GIVEN if given else ''}"]
    lines += [f"{s.name} = {s.value}" for s in settings]
    return "\n".join(lines) + "\n"


#: Marker header suffix of settings computed for a machine given by hand.
GIVEN = " (given with pgvision db tune)"


def marker_is_current(text: str, machine: Machine) -> bool:
    """True when a marker's settings need no re-tuning on ``machine``: written by this
    formula version for this machine, or for a machine given by hand."""
    header = text.split("\n", 1)[0]
    if header.endswith(GIVEN):
        return header.startswith(f"# pgvision settings formula {FORMULA_VERSION}: ")
    return text == marker_text(machine, settings_for(machine))


def parse_size(text: str) -> int:
    """``24GB``, ``512MB``, ``1TB`` or plain bytes -> bytes (1024-based, as PostgreSQL).

    Raises:
        ValueError: anything else, with the accepted forms.
    """
    units = {"": 1, "B": 1, "KB": 1024, "MB": MB, "GB": GB, "TB": 1024 * GB}
    t = text.strip().upper().replace(" ", "")
    num = t.rstrip("KMGTB")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = None
    if value is None or unit not in units or value <= 0:
        raise InvalidValue(f"size {text!r} is not a size: write e.g. 24GB, 512MB or a number of bytes")
    return int(value * units[unit])


#: A plain (unquoted) PostgreSQL parameter name, e.g. ``shared_buffers`` or ``hnsw.ef_search``.
_PARAMETER = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")


def alter_system_lines(machine: Machine, settings: list[Setting], *, measured_here: bool) -> str:
    """``ALTER SYSTEM`` script an administrator runs on a server pgvision does not own.

    Composed with :mod:`psycopg.sql` as :func:`apply` executes it: each value a
    ``sql.Literal`` (quoted and escaped by psycopg). The parameter name is written bare, as
    PostgreSQL's documentation writes it, because the names are this module's constants
    (:func:`settings_for`), never user text, and each is checked to be a plain lowercase
    name (:data:`_PARAMETER`), for which ``sql.Identifier``'s double quotes change nothing.

    Raises:
        ValueError: a setting name that is not a plain parameter name.
    """
    origin = ("this machine's (pass --ram/--cores for the server's own)" if measured_here
              else "given with --ram/--cores")
    out = [f"-- pgvision settings for {machine.describe()}: {origin}",
           "-- run as a superuser, then SELECT pg_reload_conf(); shared_buffers and",
           "-- max_worker_processes take effect only after a restart."]
    for s in settings:
        out.append(f"-- {s.reason}")
        if not _PARAMETER.fullmatch(s.name):
            raise InvalidValue(f"setting name {s.name!r} is not a PostgreSQL parameter name")
        out.append(sql.SQL("ALTER SYSTEM SET {} = {};").format(sql.SQL(s.name), sql.Literal(s.value)).as_string())
    return "\n".join(out) + "\n"


def apply(conn: psycopg.Connection, settings: list[Setting]) -> tuple[list[str], list[str]]:
    """``ALTER SYSTEM SET`` each setting, then ``pg_reload_conf()``.

    Args:
        conn: superuser psycopg connection in autocommit mode.

    Returns:
        (names whose value changed, names now waiting for a restart, from
        ``pg_settings.pending_restart``).
    """
    before = dict(conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", ([s.name for s in settings],)
    ).fetchall())
    for s in settings:
        conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(s.name), sql.Literal(s.value)))
    conn.execute("SELECT pg_reload_conf()")
    # the reload is asynchronous: this backend sees the new values once it has processed it
    for _ in range(50):
        rows = conn.execute(
            "SELECT name, setting, pending_restart FROM pg_settings WHERE name = ANY(%s)",
            ([s.name for s in settings],),
        ).fetchall()
        changed = [n for n, v, _ in rows if before.get(n) != v]
        pending = [n for n, _, p in rows if p]
        if changed or pending:
            break
        time.sleep(0.05)
    return sorted(set(changed) | set(pending)), sorted(pending)
