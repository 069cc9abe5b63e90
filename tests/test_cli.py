"""The ``liaison`` command line: migrations, users, refusals with clear one-line errors."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from liaison.cli import main

LIAISON = str(Path(sys.executable).with_name("liaison"))


def cli_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    env.update(
        LIAISON_DATABASE_URL=url,
        LIAISON_VAR_DIR=str(tmp_path / "var"),
        LIAISON_PASSWORD_HASH="cheapest",
        **extra,
    )
    return env


def run_liaison(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [LIAISON, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def use_database(url: str) -> None:
    """Bind the tables in this process to ``url`` (the CLI ran in a subprocess)."""
    from liaison import db
    from liaison.settings import Settings

    db.activate(db.engine_for(Settings(database_url=url)))


def invoke(args: list[str], env: dict[str, str], stdin: str | None = None):
    return CliRunner().invoke(main, args, env=env, input=stdin, catch_exceptions=False)


def test_migrate_applies_everything_and_is_idempotent(fresh_database, tmp_path):
    env = cli_env(fresh_database.url, tmp_path)
    first = run_liaison(["db", "migrate"], env)
    assert first.returncode == 0, first.stderr
    assert "Applied" in first.stdout and "crm:" in first.stdout
    second = run_liaison(["db", "migrate"], env)
    assert second.returncode == 0, second.stderr
    assert "is up to date" in second.stdout
    status = run_liaison(["db", "status"], env)
    assert status.returncode == 0 and "up to date" in status.stdout


def test_serve_refuses_an_unmigrated_database_and_names_the_fix(fresh_database, tmp_path):
    result = run_liaison(["serve", "--port", "8999"], cli_env(fresh_database.url, tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()
    ], "one line"
    assert "run `liaison db migrate`" in result.stderr


def test_a_database_at_an_older_migration_is_reported_and_refused(fresh_database, tmp_path):
    from piccolo.apps.migrations.tables import Migration

    env = cli_env(fresh_database.url, tmp_path)
    assert invoke(["db", "migrate"], env).exit_code == 0
    # The code is now one migration ahead of the database.
    Migration.delete().where(Migration.app_name == "crm").run_sync()
    status = invoke(["db", "status"], env)
    assert status.exit_code == 1
    assert "pending  crm:" in status.stdout
    refused = invoke(["serve"], env)
    assert refused.exit_code == 1
    assert "not up to date" in refused.stderr and "liaison db migrate" in refused.stderr


def test_users_create_reads_the_password_from_stdin(fresh_database, tmp_path):
    env = cli_env(fresh_database.url, tmp_path)
    assert run_liaison(["db", "migrate"], env).returncode == 0
    created = run_liaison(
        ["users", "create", "Chief@Example.org", "--role", "admin", "--name", "Ana D'Souza"],
        env, stdin="correct horse battery staple\n",
    )
    assert created.returncode == 0, created.stderr
    assert "Created admin chief@example.org" in created.stdout
    assert "correct horse" not in created.stdout + created.stderr

    from crm.passwords import verify_password
    from crm.tables import AuditEvent, User

    use_database(fresh_database.url)
    user = User.objects().get(User.email == "chief@example.org").run_sync()
    assert user.name == "Ana D'Souza"
    import asyncio

    assert asyncio.run(verify_password(user.password_hash, "correct horse battery staple"))
    event = AuditEvent.objects().get(AuditEvent.action == "user.create").run_sync()
    assert event.actor is None and event.actor_label.startswith("cli:")


def test_users_create_refusals(fresh_database, tmp_path):
    env = cli_env(fresh_database.url, tmp_path)
    before = invoke(["users", "create", "a@example.org", "--role", "admin"], env, "long enough password\n")
    assert before.exit_code == 1 and "liaison db migrate" in before.stderr

    assert invoke(["db", "migrate"], env).exit_code == 0
    ok = invoke(["users", "create", "a@example.org", "--role", "admin"], env, "long enough password\n")
    assert ok.exit_code == 0
    duplicate = invoke(["users", "create", "A@example.org", "--role", "liaison"], env, "long enough password\n")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    short = invoke(["users", "create", "b@example.org", "--role", "liaison"], env, "short\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.stderr
    bad_email = invoke(["users", "create", "not-an-email", "--role", "liaison"], env, "long enough password\n")
    assert bad_email.exit_code == 1 and "email" in bad_email.stderr
    bad_role = invoke(["users", "create", "c@example.org", "--role", "boss"], env, "long enough password\n")
    assert bad_role.exit_code == 2
    # There is no way to pass a password as an argument.
    argv = invoke(["users", "create", "d@example.org", "--role", "liaison", "--password", "x" * 20], env)
    assert argv.exit_code == 2


@pytest.mark.parametrize(
    "url, code, message",
    [
        ("mysql://root@localhost/liaison", 2, "configuration error: LIAISON_DATABASE_URL scheme 'mysql'"),
        ("postgresql://nobody:pw@127.0.0.1:1/none", 1, "cannot reach the database at postgresql://nobody:***@"),
        ("sqlite:////proc/no/such/dir/x.sqlite3", 1, "the folder /proc/no/such/dir does not exist"),
        ("postgresql://u:pw@[::1/db", 2, "is not a valid URL"),
        ("postgresql://u@127.0.0.1:1/db?password=hunter2", 1, "password=***"),
    ],
)
def test_bad_database_url_gets_a_one_line_error(tmp_path, url, code, message):
    result = run_liaison(["db", "migrate"], cli_env(url, tmp_path))
    assert result.returncode == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and ":pw@" not in result.stderr
    assert "hunter2" not in result.stderr


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    env = cli_env(f"sqlite:///{tmp_path / 'x.sqlite3'}", tmp_path,
                  LIAISON_ENV="production", LIAISON_BASE_URL="https://crm.example.org")
    env["LIAISON_PASSWORD_HASH"] = "rfc9106_low_memory"
    result = run_liaison(["serve"], env)
    assert result.returncode == 2
    assert "LIAISON_SECRET_KEY" in result.stderr


def test_status_and_serve_do_not_create_a_mistyped_sqlite_database(tmp_path):
    missing = tmp_path / "typo.sqlite3"
    env = cli_env(f"sqlite:///{missing}", tmp_path)
    for args in (["db", "status"], ["serve"], ["users", "list"]):
        result = run_liaison(args, env)
        assert result.returncode == 1, args
        assert "there is no SQLite database" in result.stderr
    assert not missing.exists()


def test_an_administrator_locked_out_gets_back_in_from_the_command_line(fresh_database, tmp_path):
    env = cli_env(fresh_database.url, tmp_path)
    assert invoke(["db", "migrate"], env).exit_code == 0
    assert invoke(["users", "create", "boss@example.org", "--role", "admin"], env, "first long password\n").exit_code == 0
    disabled = invoke(["users", "update", "boss@example.org", "--disable", "--role", "manager"], env)
    assert disabled.exit_code == 0 and "manager, disabled" in disabled.stdout
    listed = invoke(["users", "list"], env)
    assert "boss@example.org" in listed.stdout and "disabled" in listed.stdout
    again = invoke(["users", "update", "BOSS@example.org", "--enable", "--role", "admin"], env)
    assert again.exit_code == 0 and "admin, active" in again.stdout
    reset = invoke(["users", "set-password", "boss@example.org"], env, "second long password\n")
    assert reset.exit_code == 0 and "sessions and API tokens have ended" in reset.stdout
    unknown = invoke(["users", "set-password", "nobody@example.org"], env, "second long password\n")
    assert unknown.exit_code == 1 and "no user with the email" in unknown.stderr

    import asyncio

    from crm import signin

    result = asyncio.run(signin.sign_in("boss@example.org", "second long password",
                                        client_address="cli-test", policy=signin.ThrottlePolicy()))
    assert result.outcome == "ok"


def test_users_create_refuses_missing_or_undecodable_stdin(fresh_database, tmp_path):
    env = cli_env(fresh_database.url, tmp_path)
    assert run_liaison(["db", "migrate"], env).returncode == 0
    closed = subprocess.run([LIAISON, "users", "create", "a@example.org", "--role", "liaison"],
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert closed.returncode == 1 and "no password given" in closed.stderr
    binary = subprocess.run([LIAISON, "users", "create", "a@example.org", "--role", "liaison"],
                            env=env, input=b"\xff\xfe not utf-8 at all\n", capture_output=True, timeout=60)
    assert binary.returncode == 1 and b"not UTF-8" in binary.stderr and b"Traceback" not in binary.stderr


def test_import_commands_exit_codes_errors_file_and_dry_run(fresh_database, tmp_path):
    from tests.crm.importing import npi, write_csv, write_nucc

    env = cli_env(fresh_database.url, tmp_path)
    assert run_liaison(["db", "migrate"], env).returncode == 0
    nucc = write_nucc(tmp_path / "nucc.csv")
    taxonomy = run_liaison(["import", "taxonomy", str(nucc)], env)
    assert taxonomy.returncode == 0 and "created:          8" in taxonomy.stdout

    roster = write_csv(tmp_path / "roster.csv", ["NPI", "Last Name", "Taxonomy"],
                       [[npi(1), "Lee", "207Q00000X"], ["1234567890", "Bad", ""], [npi(2), "Kim", "0000"]])
    dry = run_liaison(["import", "clinicians", str(roster), "--dry-run"], env)
    assert dry.returncode == 3 and "dry run, nothing written" in dry.stdout
    errors = tmp_path / "errors.csv"
    real = run_liaison(["import", "clinicians", str(roster), "--errors", str(errors)], env)
    assert real.returncode == 3, real.stderr
    assert "created:          1" in real.stdout and "row 3, column NPI" in real.stdout
    assert errors.read_text().splitlines() == [
        "row,column,reason",
        "3,NPI,NPI 1234567890 has a wrong check digit",
        "4,Taxonomy,unknown taxonomy code 0000",
    ]
    clean = write_csv(tmp_path / "clean.csv", ["NPI", "Last Name"], [[npi(1), "Lee"]])
    assert run_liaison(["import", "clinicians", str(clean)], env).returncode == 0
    from crm.tables import AuditEvent

    use_database(fresh_database.url)
    imports = AuditEvent.select(AuditEvent.object_id).where(AuditEvent.action == "import.clinician").run_sync()
    assert [row["object_id"] for row in imports] == ["roster.csv", "clean.csv"]

    unwritable = run_liaison(["import", "clinicians", str(clean), "--errors", "/proc/nope/errors.csv"], env)
    assert unwritable.returncode == 2 and "cannot write there" in unwritable.stderr
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    refused = run_liaison(["import", "clinicians", str(empty)], env)
    assert refused.returncode == 1 and "the file is empty" in refused.stderr
    usage = run_liaison(["import", "clinicians", str(clean), "--state", "Virginia"], env)
    assert usage.returncode == 2
    csv_filters = run_liaison(["import", "clinicians", str(clean), "--state", "VA"], env)
    assert csv_filters.returncode == 1 and "NPPES files only" in csv_filters.stderr


def test_demo_prepares_a_database_with_logins_and_a_roster(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    env.update(LIAISON_VAR_DIR=str(tmp_path / "var"), LIAISON_PASSWORD_HASH="cheapest")
    first = run_liaison(["demo", "--no-serve"], env)
    assert first.returncode == 0, first.stderr
    assert "admin@demo.liaison.test" in first.stdout and "liaison-demo-admin" in first.stdout
    assert "Imported 19" in first.stdout and "300 practices" in first.stdout
    assert "4 segments and 1 scheduled campaign" in first.stdout
    assert (tmp_path / "var" / "demo.sqlite3").exists()
    again = run_liaison(["demo", "--no-serve"], env)
    assert again.returncode == 0 and "Imported" not in again.stdout
    # Most clinicians have an email (the liaison team's contacts file), so the campaign has an audience.
    database = sqlite3.connect(tmp_path / "var" / "demo.sqlite3")
    emails = database.execute("SELECT COUNT(*) FROM clinician WHERE email IS NOT NULL").fetchone()[0]
    status = database.execute("SELECT status FROM campaign").fetchall()
    assert emails > 1500 and status == [("scheduled",)]


@pytest.mark.backend("sqlite")
def test_a_locked_database_is_a_clear_refusal_not_a_hang(fresh_database, tmp_path):
    import sqlite3 as sqlite

    from tests.crm.importing import npi, write_csv

    env = cli_env(fresh_database.url, tmp_path, LIAISON_SQLITE_BUSY_TIMEOUT_SECONDS="1")
    assert run_liaison(["db", "migrate"], env).returncode == 0
    roster = write_csv(tmp_path / "r.csv", ["NPI", "Last Name"], [[npi(1), "Lee"]])
    holder = sqlite.connect(fresh_database.url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = run_liaison(["import", "clinicians", str(roster)], env)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1
    assert "the database is busy" in result.stderr and "Traceback" not in result.stderr
