"""The ``liaison`` command line.

Exit codes: 0 all went well; 1 the input or the database refused the work as a whole; 2 a usage or
configuration error; 3 some input rows were rejected (and reported) but the rest were applied.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
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
    try:
        return asyncio.run(coroutine)
    except db.DatabaseUnavailable as error:
        raise Refused(str(error)) from None


def connected(settings: Settings) -> None:
    """Check the database answers, then bind the engine for the rest of the command."""
    run(db.check_connection(settings))
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
    connected(settings)
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
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


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


def _require_migrated() -> None:
    pending = run(db.pending_migrations())
    if pending:
        apps = sorted({item.app_name for item in pending})
        raise Refused(
            f"the database is not up to date ({len(pending)} migration(s) pending in "
            f"{', '.join(apps)}): run `liaison db migrate` first"
        )


# ---------------------------------------------------------------------------------------------
def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from liaison.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
def serve(host: str, port: int) -> None:
    """Serve the web app. Refuses a database with unapplied migrations."""
    settings = load_settings()
    connected(settings)
    _require_migrated()
    _serve(settings, host, port)


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
    settings = load_settings(env)
    passwords.use_profile(settings.password_hash_profile)
    connected(settings)
    run(db.migrate())
    logins = run(_demo_users())
    url = f"http://{host}:{port}/"
    click.echo("")
    click.echo(f"Liaison demo on {redact_url(settings.database_url)}")
    click.echo(f"Open {url} and sign in with one of:")
    for role, email, password in logins:
        click.echo(f"  {role:<9} {email:<32} {password}")
    click.echo("")
    if not no_serve:
        _serve(settings, host, port)


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
