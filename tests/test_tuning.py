"""Server settings sized to the machine (issue 13 item 1): the formula on given machines,
the ALTER SYSTEM script for a DATABASE_URL server, `db tune` and the upgrade of an old
embedded data directory on a real embedded server."""

from __future__ import annotations

import shutil

import psycopg
import pytest
from click.testing import CliRunner

from conftest import server_dir
from pgvision.cli import main
from pgvision.server import embedded, tuning
from pgvision.server.tuning import GB, MB, Machine

NAMES = ["shared_buffers", "effective_cache_size", "maintenance_work_mem", "autovacuum_work_mem",
         "max_worker_processes", "max_parallel_workers", "max_parallel_maintenance_workers",
         "max_parallel_workers_per_gather", "work_mem", "max_wal_size", "random_page_cost"]


@pytest.mark.parametrize("ram, cores, values", [
    # 24 GB = 24576 MB: /4 = 6144, x3/4 = 18432, /8 = 3072; work_mem (24576 - 6144) / 300 / 1 = 61.4
    (24 * GB, 2, ["6GB", "18GB", "3GB", "1GB", "8", "2", "1", "1", "61MB", "4GB", "1.1"]),
    # 128 GB: /8 = 16 GB = the cap; per gather min(4, 8) = 4; work_mem (131072 - 32768) / 300 / 4 = 81.9
    (128 * GB, 16, ["32GB", "96GB", "16GB", "1GB", "16", "16", "15", "4", "81MB", "4GB", "1.1"]),
    # 1 GB: /8 = 128MB; 1 core: no parallel workers; work_mem 768 / 300 = 2.56 -> the 4MB floor
    (1 * GB, 1, ["256MB", "768MB", "128MB", "128MB", "8", "1", "0", "0", "4MB", "4GB", "1.1"]),
    # 512 MB: maintenance_work_mem at its 64MB floor
    (512 * MB, 4, ["128MB", "384MB", "64MB", "64MB", "8", "4", "3", "2", "4MB", "4GB", "1.1"]),
])
def test_settings_for_given_machines(ram, cores, values):
    settings = tuning.settings_for(Machine(ram, cores))
    assert [s.name for s in settings] == NAMES
    assert [s.value for s in settings] == values
    assert all(s.reason for s in settings)


def test_hdd_and_bad_inputs():
    assert {s.name: s.value for s in tuning.settings_for(Machine(8 * GB, 2, "hdd"))}["random_page_cost"] == "4"
    with pytest.raises(ValueError, match=r"^RAM 1000 bytes is under 256 MB: give the machine's RAM in bytes$"):
        tuning.settings_for(Machine(1000, 2))
    with pytest.raises(ValueError, match=r"^cores 0 is under 1: give the number of CPU cores$"):
        tuning.settings_for(Machine(GB, 0))
    with pytest.raises(ValueError, match=r"^disk kind 'nvme' is unknown: use ssd or hdd$"):
        tuning.settings_for(Machine(GB, 1, "nvme"))


def test_parse_size():
    assert tuning.parse_size("24GB") == 24 * GB
    assert tuning.parse_size("512mb") == 512 * MB
    assert tuning.parse_size("1.5 TB") == 1536 * GB
    assert tuning.parse_size("1048576") == MB
    with pytest.raises(ValueError, match=r"^size '12XB' is not a size: write e.g. 24GB, 512MB or a number of bytes$"):
        tuning.parse_size("12XB")


def test_this_machine_is_measured():
    here = tuning.this_machine()
    assert here.cores >= 1 and here.ram_bytes >= 256 * MB


def test_db_tune_prints_alter_system_for_a_database_url_server():
    out = CliRunner().invoke(main, ["db", "tune", "--ram", "24GB", "--cores", "2",
                                    "--database-url", "postgresql://admin@db.example/app"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[:3] == [
        "-- pgvision settings for 24GB RAM, 2 cores, ssd: given with --ram/--cores",
        "-- run as a superuser, then SELECT pg_reload_conf(); shared_buffers and",
        "-- max_worker_processes take effect only after a restart.",
    ]
    assert [line for line in lines if not line.startswith("--")] == [
        "ALTER SYSTEM SET shared_buffers = '6GB';",
        "ALTER SYSTEM SET effective_cache_size = '18GB';",
        "ALTER SYSTEM SET maintenance_work_mem = '3GB';",
        "ALTER SYSTEM SET autovacuum_work_mem = '1GB';",
        "ALTER SYSTEM SET max_worker_processes = '8';",
        "ALTER SYSTEM SET max_parallel_workers = '2';",
        "ALTER SYSTEM SET max_parallel_maintenance_workers = '1';",
        "ALTER SYSTEM SET max_parallel_workers_per_gather = '1';",
        "ALTER SYSTEM SET work_mem = '61MB';",
        "ALTER SYSTEM SET max_wal_size = '4GB';",
        "ALTER SYSTEM SET random_page_cost = '1.1';",
    ]
    assert lines[3] == ("-- RAM/4: PostgreSQL's own cache; the OS page cache holds the rest "
                        "(pgtune; docs 'Resource Consumption')")
    assert out.stderr == "not applied: the server at DATABASE_URL is not pgvision's; run these as its administrator\n"
    # no --ram/--cores: this machine's, and the output says so
    here = CliRunner().invoke(main, ["db", "tune", "--database-url", "postgresql://admin@db.example/app"])
    assert here.stdout.splitlines()[0] == (f"-- pgvision settings for {tuning.this_machine().describe()}: "
                                           "this machine's (pass --ram/--cores for the server's own)")
    bad = CliRunner().invoke(main, ["db", "tune", "--ram", "100", "--database-url", "postgresql://a@b/c"])
    assert bad.exit_code == 1 and bad.output.endswith(
        "Error: RAM 100 bytes is under 256 MB: give the machine's RAM in bytes\n"
    )


def _settings(url: str) -> dict[str, str]:
    with psycopg.connect(url) as c:
        return {n: c.execute(f"SHOW {n}").fetchone()[0] for n in NAMES}


def test_old_data_dir_is_upgraded_and_db_tune_applies_on_the_embedded_server():
    top = server_dir()
    data = top / "pg"
    env = {"PGVISION_DATA_DIR": str(data)}
    runner = CliRunner()
    here = {s.name: s.value for s in tuning.settings_for(tuning.this_machine())}
    try:
        url = embedded.start(data)
        assert _settings(url) == here
        # a data directory from before tuning: fixed settings, marker of the old form
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE kept (x int)")
            c.execute("INSERT INTO kept VALUES (42)")
            c.execute("ALTER SYSTEM SET shared_buffers = '512MB'")
            c.execute("ALTER SYSTEM SET maintenance_work_mem = '1GB'")
            c.execute("ALTER SYSTEM SET max_parallel_maintenance_workers = 2")
        (data / "pgvision.settings").write_text("shared_buffers = 512MB\nmaintenance_work_mem = 1GB")
        embedded.stop(data)
        url = embedded.start(data)  # re-tuned in place, not recreated
        assert _settings(url) == here
        with psycopg.connect(url) as c:
            assert c.execute("SELECT x FROM kept").fetchall() == [(42,)]
        assert (data / "pgvision.settings").read_text().startswith(
            f"# pgvision settings formula {tuning.FORMULA_VERSION}: {tuning.this_machine().describe()}\n")

        out = runner.invoke(main, ["db", "tune", "--ram", "2GB", "--cores", "2"], env=env)
        assert out.exit_code == 0, out.output
        assert out.output == (
            "tuned the embedded server for 2GB RAM, 2 cores, ssd: shared_buffers = 512MB, effective_cache_size = "
            "1536MB, maintenance_work_mem = 256MB, autovacuum_work_mem = 256MB, work_mem = 5MB; "
            "restarted (needed by shared_buffers)\n")
        small = _settings(url)
        assert (small["shared_buffers"], small["maintenance_work_mem"], small["work_mem"]) == ("512MB", "256MB", "5MB")
        again = runner.invoke(main, ["db", "tune", "--ram", "2GB", "--cores", "2"], env=env)
        assert again.output == "embedded server already tuned for 2GB RAM, 2 cores, ssd\n"
        hdd = runner.invoke(main, ["db", "tune", "--ram", "2GB", "--cores", "2", "--disk", "hdd"], env=env)
        assert hdd.output == "tuned the embedded server for 2GB RAM, 2 cores, hdd: random_page_cost = 4; reloaded\n"
        assert _settings(url)["random_page_cost"] == "4"
        embedded.start(data)  # settings given by hand are kept by later starts
        assert _settings(url)["shared_buffers"] == "512MB"
        dry = runner.invoke(main, ["db", "tune", "--dry-run"], env=env)
        assert "ALTER SYSTEM SET shared_buffers = " f"'{here['shared_buffers']}';" in dry.stdout
        assert _settings(url)["shared_buffers"] == "512MB"
        back = runner.invoke(main, ["db", "tune"], env=env)
        assert back.exit_code == 0 and back.output.endswith("; restarted (needed by shared_buffers)\n")
        assert _settings(url) == here
    finally:
        embedded.stop(data)
        shutil.rmtree(top, ignore_errors=True)


def test_alter_system_script_quotes_values_and_refuses_odd_names():
    # The script is composed with psycopg.sql: a value is a quoted, escaped literal; a name
    # that is not a plain parameter name never reaches the text.
    machine = Machine(8 * GB, 2)
    odd_value = [tuning.Setting("application_name", "it's", "test")]
    assert "ALTER SYSTEM SET application_name = 'it''s';" in tuning.alter_system_lines(
        machine, odd_value, measured_here=False).splitlines()
    with pytest.raises(ValueError, match="not a PostgreSQL parameter name"):
        tuning.alter_system_lines(machine, [tuning.Setting("work_mem = '1GB'; DROP TABLE x; --", "1", "test")],
                                  measured_here=False)
