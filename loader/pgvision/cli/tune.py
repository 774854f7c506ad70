"""``pgvision db tune``: server settings sized to the machine (:mod:`pgvision.server.tuning`)."""

from __future__ import annotations

import click

from pgvision.cli.common import run_guarded
from pgvision.cli.options import database_url_option


class _Size(click.ParamType):
    name = "SIZE"

    def convert(self, value, param, ctx):
        from pgvision.server.tuning import parse_size

        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _gb(n: int) -> str:
    return f"{n / 1024**3:g}GB"


@click.command("tune")
@click.option("--ram", type=_Size(), help="The server machine's RAM, e.g. 64GB [default: this machine's].")
@click.option("--cores", type=click.IntRange(1, 4096), help="The server machine's CPU cores [default: this machine's].")
@click.option("--disk", type=click.Choice(["ssd", "hdd"]), default="ssd", show_default=True,
              help="The server's storage (random_page_cost).")
@click.option("--dry-run", is_flag=True, help="Print the ALTER SYSTEM lines; change nothing.")
@database_url_option
@run_guarded
def tune(ram: int | None, cores: int | None, disk: str, dry_run: bool, database_url: str | None) -> None:
    """Size the server's memory and parallel workers to its machine.

    The embedded server gets the settings at once (reload, or restart when shared_buffers
    or max_worker_processes change; it says which). For a DATABASE_URL server, whose
    machine pgvision cannot see, the ALTER SYSTEM lines an administrator runs are printed,
    sized from --ram/--cores (default: this machine, as the output says).

    \b
    Example:
      pgvision db tune
      pgvision db tune --dry-run
      DATABASE_URL=postgresql://app@db/app pgvision db tune --ram 64GB --cores 16
    """
    from pgvision.server import embedded, tuning

    here = tuning.this_machine()
    given = ram is not None or cores is not None
    machine = tuning.Machine(ram_bytes=ram or here.ram_bytes, cores=cores or here.cores, disk=disk)
    settings = tuning.settings_for(machine)
    if database_url or dry_run:
        click.echo(tuning.alter_system_lines(machine, settings, measured_here=not given), nl=False)
        if database_url:
            click.echo("not applied: the server at DATABASE_URL is not pgvision's; run these as its administrator",
                       err=True)
        return
    if machine.ram_bytes > here.ram_bytes or machine.cores > here.cores:
        from pgvision.errors import InvalidValue

        over = (f"--ram {_gb(machine.ram_bytes)}" if machine.ram_bytes > here.ram_bytes else f"--cores {machine.cores}")
        raise InvalidValue(
            f"{over} is more than this machine has ({here.describe()}), where the embedded server runs: its settings "
            "would stop it from starting; give at most that, or leave --ram/--cores out (--dry-run prints the lines "
            "for another server)")
    changed, restarted = embedded.tune(machine=machine if given or disk != "ssd" else None)
    if not changed:
        click.echo(f"embedded server already tuned for {machine.describe()}", err=True)
        return
    click.echo(f"tuned the embedded server for {machine.describe()}: "
               + ", ".join(f"{s.name} = {s.value}" for s in settings if s.name in changed)
               + (f"; restarted (needed by {', '.join(restarted)})" if restarted else "; reloaded"),
               err=True)
