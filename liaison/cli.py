"""The ``liaison`` command line.

Exit codes: 0 all went well; 1 the input or the database refused the work as a whole; 2 a usage or
configuration error; 3 some input rows were rejected (and reported) but the rest were applied.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Coroutine, Mapping

import click

from liaison import db
from liaison.settings import ConfigError, Settings, redact_url

DEMO_PASSWORDS = {
    "admin": "liaison-demo-admin",
    "manager": "liaison-demo-manager",
    "marketer": "liaison-demo-marketer",
    "liaison": "liaison-demo-liaison",
}
DEMO_DOMAIN = "demo.liaison.test"


class Refused(click.ClickException):
    """The work was refused as a whole (exit 1)."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"liaison: {self.format_message()}", err=True)


class BadConfiguration(Refused):
    """A configuration or usage error (exit 2)."""

    exit_code = 2


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    try:
        return Settings.from_env(env)
    except ConfigError as error:
        raise BadConfiguration(f"configuration error: {error}") from None


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    from crm.db import DatabaseBusy

    try:
        return asyncio.run(coroutine)
    except (db.DatabaseUnavailable, DatabaseBusy) as error:
        raise Refused(str(error)) from None


def connected(settings: Settings, *, create: bool = False) -> None:
    """Check the database answers, then bind the engine for the rest of the command."""
    run(db.check_connection(settings, create=create))
    db.activate(db.engine_for(settings))


@click.group()
@click.version_option(package_name="liaison")
def main() -> None:
    """Liaison: clinician outreach CRM and campaign scheduler for oncology referral programs."""


# ---------------------------------------------------------------------------------------------
@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("migrate")
def db_migrate() -> None:
    """Apply every pending migration (safe to run again)."""
    settings = load_settings()
    connected(settings, create=True)
    applied = run(db.migrate())
    where = redact_url(settings.database_url)
    if applied:
        click.echo(f"Applied {len(applied)} migration(s) to {where}:")
        for item in applied:
            click.echo(f"  {item.app_name}: {item.migration_id}")
    else:
        click.echo(f"The database at {where} is up to date.")


@db_group.command("status")
def db_status() -> None:
    """List migrations not yet applied; exit 1 if there are any."""
    settings = load_settings()
    connected(settings)
    pending = run(db.pending_migrations())
    if not pending:
        click.echo("The database is up to date.")
        return
    for item in pending:
        click.echo(f"pending  {item.app_name}: {item.migration_id}")
    raise Refused(f"{len(pending)} migration(s) pending: run `liaison db migrate`")


# ---------------------------------------------------------------------------------------------
@main.group("users")
def users_group() -> None:
    """People who sign in."""


def read_password() -> str:
    """From the terminal (asked twice, not echoed) or, when piped, the first line of stdin."""
    if sys.stdin is None:
        raise Refused("no password given: type it at the prompt or pipe it on stdin")
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        line = sys.stdin.buffer.readline().decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the password on stdin is not UTF-8 text") from None
    password = line.rstrip("\r\n")
    if not password:
        raise Refused("no password given: pipe it on stdin, for example: echo '…' | liaison users create …")
    return password


@users_group.command("create")
@click.argument("email")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["liaison", "marketer", "manager", "admin"], case_sensitive=False),
    help="What the user may do.",
)
@click.option("--name", default="", help="Display name.")
def users_create(email: str, role: str, name: str) -> None:
    """Create a user. The password is read from the terminal or stdin, never from arguments."""
    from crm import passwords, users
    from crm.audit import Actor

    settings = load_settings()
    passwords.use_profile(settings.password_hash_profile)
    connected(settings)
    _require_migrated()
    password = read_password()
    try:
        user = run(users.create_user(email, role=role, password=password, name=name, actor=Actor.cli()))
    except users.UserError as error:
        raise Refused(f"{error.field}: {error.message}") from None
    click.echo(f"Created {user.role} {user.email} (id {user.id}).")


@users_group.command("list")
def users_list() -> None:
    """List users: email, role, status."""
    from crm import users

    settings = load_settings()
    connected(settings)
    _require_migrated()

    async def everyone():
        found, after = [], None
        while page := await users.list_users(after_email=after, limit=500):
            found += page
            after = page[-1].email
        return found

    for user in run(everyone()):
        status = "active" if user.active else "disabled"
        click.echo(f"{user.email:<40} {user.role:<9} {status:<8} {user.name}")


@users_group.command("set-password")
@click.argument("email")
def users_set_password(email: str) -> None:
    """Give a user a new password (read like `users create`); ends their sessions and revokes
    their API tokens. The way back in for an administrator who forgot theirs."""
    from crm import passwords, users
    from crm.audit import Actor

    settings = load_settings()
    passwords.use_profile(settings.password_hash_profile)
    connected(settings)
    _require_migrated()
    user = run(users.get_user_by_email(email))
    if user is None:
        raise Refused(f"no user with the email {email.strip().lower()}")
    password = read_password()
    try:
        run(users.set_password(user.id, password, actor=Actor.cli(), revoke_tokens=True))
    except users.UserError as error:
        raise Refused(f"{error.field}: {error.message}") from None
    click.echo(f"New password set for {user.email}; their sessions and API tokens have ended.")


@users_group.command("update")
@click.argument("email")
@click.option("--role", type=click.Choice(["liaison", "marketer", "manager", "admin"], case_sensitive=False))
@click.option("--name")
@click.option("--enable/--disable", "active", default=None, help="Allow or stop sign-in.")
def users_update(email: str, role: str | None, name: str | None, active: bool | None) -> None:
    """Change a user's role, name or status."""
    from crm import users
    from crm.audit import Actor

    settings = load_settings()
    connected(settings)
    _require_migrated()
    user = run(users.get_user_by_email(email))
    if user is None:
        raise Refused(f"no user with the email {email.strip().lower()}")
    try:
        user = run(users.update_user(
            user.id, name=user.name if name is None else name, role=role or user.role,
            active=user.active if active is None else active, actor=Actor.cli(),
        ))
    except users.UserError as error:
        raise Refused(f"{error.field}: {error.message}") from None
    click.echo(f"{user.email}: {user.role}, {'active' if user.active else 'disabled'}.")


def _require_migrated() -> None:
    pending = run(db.pending_migrations())
    if pending:
        apps = sorted({item.app_name for item in pending})
        raise Refused(
            f"the database is not up to date ({len(pending)} migration(s) pending in "
            f"{', '.join(apps)}): run `liaison db migrate` first"
        )


# ---------------------------------------------------------------------------------------------
@main.group("import")
def import_group() -> None:
    """Load data files: the NUCC taxonomy, clinicians (NPPES or CSV)."""


def _finish_import(report, errors_path: Path | None) -> None:
    from crm.audit import Actor
    from crm.import_report import record_import

    run(record_import(report, Actor.cli()))
    for line in report.summary_lines():
        click.echo(line)
    if errors_path is not None:
        report.write_errors(errors_path)
        click.echo(f"  rejected rows written to {errors_path}")
    sys.exit(report.exit_code)


def _run_import(coroutine_factory, path: Path, with_progress: bool, errors_path: Path | None = None):
    """Run an import with a progress bar on a terminal; InputRefused exits 1."""
    from crm.csv_input import InputRefused

    if errors_path is not None:
        try:
            errors_path.open("a").close()  # find out now, not after the import is committed
        except OSError as error:
            raise BadConfiguration(f"--errors {errors_path}: cannot write there ({error.strerror})") from None

    settings = load_settings()
    connected(settings)
    _require_migrated()
    size = path.stat().st_size if path.exists() else 0
    try:
        if with_progress and sys.stderr.isatty() and size:
            with click.progressbar(length=size, label=f"Importing {path.name}", file=sys.stderr) as bar:
                done = [0]

                def progress(position: int) -> None:
                    bar.update(max(0, position - done[0]))
                    done[0] = max(done[0], position)

                return run(coroutine_factory(progress))
        return run(coroutine_factory(None))
    except InputRefused as error:
        raise Refused(f"refused: {error}") from None


@import_group.command("taxonomy")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would change without writing.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rejected rows (row, column, reason) to this CSV file.")
def import_taxonomy(file: Path, dry_run: bool, errors_path: Path | None) -> None:
    """Load a NUCC taxonomy code set CSV (current or older layout); safe to re-run."""
    from crm.taxonomy_import import import_taxonomy as run_import

    report = _run_import(lambda progress: run_import(file, dry_run=dry_run), file, False, errors_path)
    _finish_import(report, errors_path)


@import_group.command("clinicians")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--state", "states", multiple=True, metavar="XX",
              help="NPPES: keep practice locations in this state (repeatable).")
@click.option("--taxonomy", "taxonomies", multiple=True, metavar="CODE_OR_PREFIX",
              help="NPPES: keep primary taxonomy codes starting with this (repeatable).")
@click.option("--dry-run", is_flag=True, help="Report what would change without writing.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rejected rows (row, column, reason) to this CSV file.")
def import_clinicians(file: Path, states: tuple[str, ...], taxonomies: tuple[str, ...],
                      dry_run: bool, errors_path: Path | None) -> None:
    """Import clinicians and practices from an NPPES bulk file or a plain CSV.

    Re-importing updates in place (matched by NPI, then email); rows whose email belongs to a
    different NPI go to the review list."""
    from crm.clinician_import import Filters
    from crm.clinician_import import import_clinicians as run_import

    for state in states:
        if len(state) != 2 or not state.isalpha():
            raise click.BadParameter(f"{state!r} is not a two-letter state code", param_hint="--state")
    filters = Filters(
        states=frozenset(s.upper() for s in states),
        taxonomy_prefixes=tuple(t.strip().upper() for t in taxonomies if t.strip()),
    )
    report = _run_import(
        lambda progress: run_import(file, filters=filters, dry_run=dry_run, progress=progress),
        file, True, errors_path,
    )
    _finish_import(report, errors_path)


# ---------------------------------------------------------------------------------------------
def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from liaison.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("piccolo").setLevel(logging.WARNING)
    try:
        app = create_app(settings)
    except ConfigError as error:
        raise BadConfiguration(f"configuration error: {error}") from None
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_level="info",
    )


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--worker/--no-worker", default=None,
    help="Run the campaign scheduler and dispatcher in this process (default: LIAISON_RUN_WORKER, true).",
)
def serve(host: str, port: int, worker: bool | None) -> None:
    """Serve the web app. Refuses a database with unapplied migrations."""
    settings = load_settings()
    if worker is not None:
        settings = replace(settings, run_worker=worker)
    connected(settings)
    _require_migrated()
    _serve(settings, host, port)


@main.command("worker")
@click.option("--no-schedule", is_flag=True, help="Only dispatch; never take the scheduler lease.")
def worker_command(no_schedule: bool) -> None:
    """Run the campaign scheduler (one at a time, by lease) and the dispatcher until stopped."""
    import time

    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("piccolo").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # A worker is a long-running service: started while the database restarts, it waits for it
    # (a database that answers but lacks migrations is still refused at once).
    delay = 1.0
    while True:
        try:
            connected(settings)
            break
        except Refused as error:
            if settings.database_url.startswith("sqlite"):
                raise
            logging.getLogger("liaison.worker").warning(
                "the database does not answer (%s); trying again in %.0f s", error.format_message(), delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
    _require_migrated()
    run(_work(settings, schedule=not no_schedule))


async def _work(settings: Settings, *, schedule: bool) -> None:
    import signal

    import asyncpg

    from campaigns.scheduler import Worker
    from liaison.mail import make_backend

    engine = db.activate(db.engine_for(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # A worker that starts while the database restarts waits for it instead of exiting.
    delay = 1.0
    while True:
        try:
            await db.open_pool(engine, settings)
            break
        except (OSError, asyncpg.PostgresError) as error:
            logging.getLogger("liaison.worker").warning(
                "the database does not answer (%s); trying again in %.0f s", error, delay
            )
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except asyncio.TimeoutError:
                delay = min(delay * 2, 15.0)
    worker = Worker(settings.mail_config(), make_backend(settings), schedule=schedule)
    await worker.start()
    click.echo(f"liaison worker {worker.worker_id} running (Ctrl-C stops it)")
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await db.close_pool(engine)


@main.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-serve", is_flag=True, help="Prepare the demo database and exit.")
def demo(host: str, port: int, no_serve: bool) -> None:
    """Set up the demo (database in var/demo.sqlite3, one login per role) and serve it."""
    from crm import passwords

    env = dict(os.environ)
    if not env.get("LIAISON_DATABASE_URL"):
        var_dir = load_settings(env).var_dir
        env["LIAISON_DATABASE_URL"] = f"sqlite:///{var_dir / 'demo.sqlite3'}"
    if not env.get("LIAISON_BASE_URL"):
        # Links in the demo's emails (unsubscribe) point at the port it serves on.
        env["LIAISON_BASE_URL"] = f"http://{host}:{port}"
    settings = load_settings(env)
    passwords.use_profile(settings.password_hash_profile)
    connected(settings, create=True)
    run(db.migrate())
    logins = run(_demo_users())
    roster = run(_demo_roster(settings))
    if roster:
        click.echo(roster)
    url = f"http://{host}:{port}/"
    click.echo("")
    click.echo(f"Liaison demo on {redact_url(settings.database_url)}")
    if no_serve:
        click.echo("Ready. Start it with `liaison demo` (or `liaison serve` with the same database),")
        click.echo("then sign in with one of:")
    else:
        click.echo(f"Open {url} and sign in with one of:")
    for role, email, password in logins:
        click.echo(f"  {role:<9} {email:<32} {password}")
    click.echo("")
    if not no_serve:
        _serve(settings, host, port)


async def _demo_roster(settings: Settings) -> str | None:
    """On an empty roster, write a synthetic NPPES-format extract (2,000 clinicians in 300
    practices of Virginia) and a taxonomy for its codes, and load both through the importers."""
    from crm.clinician_import import import_clinicians
    from crm.tables import Clinician
    from crm.taxonomy_import import import_taxonomy
    from liaison.synthetic_nppes import write_extract, write_taxonomy

    if await Clinician.count().run():
        return None
    folder = settings.var_dir / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    nucc = write_taxonomy(folder / "nucc-demo.csv")
    extract = write_extract(folder / "npidata_pfile_demo.csv", clinicians=2000, practices=300, state="VA",
                            deactivated_share=0.01)
    await import_taxonomy(nucc)
    report = await import_clinicians(extract.path)
    contacts = await import_clinicians(await _write_demo_contacts(folder / "liaison-contacts.csv"))
    outreach = await _demo_outreach(settings)
    return (f"Imported {report.created} clinicians and {report.practices_created} practices from "
            f"the NPPES-format extract {extract.path},\nthen the liaison team's contacts "
            f"({contacts.updated} emails and owners) from {folder / 'liaison-contacts.csv'}; {outreach}")


async def _write_demo_contacts(path: Path) -> Path:
    """What a liaison team keeps beside NPPES (which has no emails): a plain CSV of NPI, email,
    owner and tier for most active clinicians, loaded through the same importer."""
    import csv
    import random
    import re

    from crm.tables import Clinician

    rows = await Clinician.select(
        Clinician.npi, Clinician.first_name, Clinician.last_name, Clinician.practice.name.as_alias("practice")
    ).where(Clinician.active == True, Clinician.npi.is_not_null()).order_by(Clinician.npi).run()  # noqa: E712
    chance = random.Random(7)
    used: set[str] = set()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["NPI", "Email Address", "Owner", "Tier"])
        for row in rows:
            if chance.random() > 0.85:
                continue
            local = re.sub(r"[^a-z]", "", f"{row['first_name'][:1]}{row['last_name']}".lower()) or "clinician"
            domain = re.sub(r"[^a-z0-9]", "", (row["practice"] or "clinic").lower())[:30] or "clinic"
            email = f"{local}@{domain}.example"
            if email in used:
                email = f"{local}.{row['npi'][-4:]}@{domain}.example"
            used.add(email)
            owner = f"liaison@{DEMO_DOMAIN}" if chance.random() < 0.4 else ""
            writer.writerow([row["npi"], email, owner, chance.choice("AABBC")])
    return path


DEMO_SEGMENTS = {
    "Primary care in Virginia": {"role": ["primary_care"], "state": "VA"},
    "Surgeons in Virginia": {"role": ["surgeon"], "state": "VA"},
    "Radiology in Virginia": {"role": ["radiology"], "state": "VA"},
    "Hospitalists in Virginia": {"role": ["hospitalist"], "state": "VA"},
}


async def _demo_outreach(settings: Settings) -> str:
    """The demo's segments and a scheduled monthly campaign, made through the same services as
    the pages."""
    from datetime import datetime, timezone

    from campaigns import service
    from crm.audit import Actor
    from crm.segments import save_segment

    actor = Actor.cli()
    now = datetime.now(timezone.utc)
    ids = {}
    for name, filters in DEMO_SEGMENTS.items():
        ids[name] = (await save_segment(name=name, filters=filters, actor=actor)).id
    campaign = await service.save_campaign(
        {
            "name": "Monthly referral pathway update", "kind": "recurring",
            "goal": "Keep primary care aware of the rapid-consult pathway for suspected cancer",
            "segment": str(ids["Primary care in Virginia"]), "time_zone": "America/New_York",
            "cadence": {"kind": "monthly_weekday", "ordinal": 1, "weekday": 2, "time": "09:00"},
            "holdout_percent": "10", "service_line": "medical oncology",
        },
        actor=actor, now=now,
    )
    config = settings.mail_config()
    await service.save_step(
        campaign.id,
        {
            "subject": "Rapid-consult pathway for your patients, {{ salutation }}",
            "html_body": (
                "<p>Dear {{ salutation }},</p>\n<p>Patients you refer to our {{ service_line }} team with a "
                "suspected cancer are seen within 5 working days. Fax or e-refer with the latest imaging and "
                "pathology, and we call you back within one day.</p>\n<p>Questions? {{ owner_name }} is your "
                "liaison: <a href=\"mailto:{{ owner_email }}\">{{ owner_email }}</a>.</p>\n"
            ),
        },
        actor=actor, config=config, now=now,
    )
    await service.transition(campaign.id, "schedule", actor=actor, now=now, config=config)
    return f"{len(ids)} segments and 1 scheduled campaign."


async def _demo_users() -> list[tuple[str, str, str]]:
    """One user per role with a known password (reset on every run: these are demo accounts)."""
    from crm import users
    from crm.audit import Actor

    actor = Actor.cli()
    logins = []
    for role, password in DEMO_PASSWORDS.items():
        email = f"{role}@{DEMO_DOMAIN}"
        existing = await users.get_user_by_email(email)
        if existing is None:
            await users.create_user(
                email, role=role, password=password, name=f"Demo {role.title()}", actor=actor
            )
        else:
            await users.set_password(existing.id, password, actor=actor)
        logins.append((role, email, password))
    return logins


if __name__ == "__main__":  # pragma: no cover
    main()
