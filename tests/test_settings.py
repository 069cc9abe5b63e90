"""Configuration from LIAISON_* variables: embedded defaults, and production refusals."""

from __future__ import annotations

import stat

import pytest

from liaison.settings import ConfigError, Settings, redact_url

GOOD_KEY = "k3Y-" + "abcdefghijklmnopqrstuvwxyz0123456789"


def test_embedded_defaults(tmp_path):
    settings = Settings.from_env({"LIAISON_VAR_DIR": str(tmp_path)})
    assert settings.env == "development"
    assert settings.database_url == f"sqlite:///{tmp_path / 'liaison.sqlite3'}"
    assert settings.redis_url is None
    assert settings.cookie_secure is False
    assert settings.sessions_dir == tmp_path / "sessions"


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    settings = Settings.from_env({"LIAISON_VAR_DIR": str(tmp_path)})
    first = settings.resolve_secret_key()
    assert len(first) >= 32
    assert settings.resolve_secret_key() == first
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "LIAISON_SECRET_KEY"),
        ({"LIAISON_SECRET_KEY": "too-short"}, "LIAISON_SECRET_KEY"),
        ({"LIAISON_SECRET_KEY": "a" * 40}, "LIAISON_SECRET_KEY"),
        ({"LIAISON_SECRET_KEY": GOOD_KEY, "LIAISON_COOKIE_SECURE": "false"}, "HTTPS-only cookies"),
        ({"LIAISON_SECRET_KEY": GOOD_KEY, "LIAISON_BASE_URL": "http://crm.example.org"}, "https://"),
        ({"LIAISON_SECRET_KEY": GOOD_KEY, "LIAISON_PASSWORD_HASH": "cheapest"}, "cheapest"),
    ],
)
def test_production_refuses_unsafe_settings(env, message):
    base = {"LIAISON_ENV": "production", "LIAISON_BASE_URL": "https://crm.example.org"}
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**base, **env})


def test_production_with_real_secrets_starts_with_secure_cookies():
    settings = Settings.from_env({
        "LIAISON_ENV": "production",
        "LIAISON_SECRET_KEY": GOOD_KEY,
        "LIAISON_BASE_URL": "https://crm.example.org/",
        "LIAISON_DATABASE_URL": "postgresql://liaison:pw@db.internal:5432/liaison",
        "LIAISON_REDIS_URL": "redis://cache.internal:6379/0",
    })
    assert settings.cookie_secure is True
    assert settings.base_url == "https://crm.example.org"
    assert settings.redis_url == "redis://cache.internal:6379/0"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"LIAISON_ENV": "staging"}, "LIAISON_ENV='staging' is not one of"),
        ({"LIAISON_COOKIE_SECURE": "maybe"}, "LIAISON_COOKIE_SECURE='maybe' is not a boolean"),
        ({"LIAISON_SESSION_IDLE_MINUTES": "ten"}, "LIAISON_SESSION_IDLE_MINUTES='ten' is not a whole number"),
        ({"LIAISON_SESSION_IDLE_MINUTES": "0"}, "must be between 1 and"),
        ({"LIAISON_SESSION_IDLE_MINUTES": "999999999999"}, "must be between 1 and"),
        ({"LIAISON_LOGIN_FAILURE_WINDOW_MINUTES": "2000000000"}, "must be between 1 and"),
        ({"LIAISON_SESSION_IDLE_MINUTES": "\u0663"}, "is not a whole number"),
        ({"LIAISON_DATABASE_URL": "sqlite:///%00x"}, "control characters"),
        ({"LIAISON_DATABASE_URL": "postgresql://u:pw@[::1/db"}, "is not a valid URL"),
        ({"LIAISON_DATABASE_URL": "postgresql://u@h:abc/db"}, "is not a valid URL"),
        ({"LIAISON_REDIS_URL": "nonsense://x"}, "is not a Redis URL"),
        ({"LIAISON_DATABASE_URL": "mysql://root@localhost/liaison"}, "scheme 'mysql' is not supported"),
        ({"LIAISON_DATABASE_URL": "sqlite://"}, "has no file path"),
        ({"LIAISON_DATABASE_URL": "postgresql:///nohost"}, "names no host"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_database_password_is_redacted_in_messages():
    assert redact_url("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_var_dir_must_be_a_folder(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        Settings.from_env({"LIAISON_VAR_DIR": str(a_file)})


def test_an_unreadable_kept_secret_key_is_a_configuration_error(tmp_path):
    (tmp_path / "secret_key").write_bytes("cl\u00e9-pas-ascii".encode() * 4)
    with pytest.raises(ConfigError, match="delete it"):
        Settings.from_env({"LIAISON_VAR_DIR": str(tmp_path)}).resolve_secret_key()


def test_query_string_passwords_are_redacted():
    assert "hunter2" not in redact_url("postgresql://u@127.0.0.1:1/db?password=hunter2")


def _public_key() -> str:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


PRODUCTION = {"LIAISON_ENV": "production", "LIAISON_SECRET_KEY": GOOD_KEY,
              "LIAISON_BASE_URL": "https://crm.example.org"}
SENDGRID = {"LIAISON_EMAIL_BACKEND": "sendgrid", "LIAISON_SENDGRID_API_KEY": "SG.key"}


def test_email_defaults_to_the_outbox_and_an_in_process_worker(tmp_path):
    settings = Settings.from_env({"LIAISON_VAR_DIR": str(tmp_path)})
    assert settings.email_backend == "outbox" and settings.run_worker is True
    assert settings.mail_config().footer_address.startswith("(postal address")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"LIAISON_EMAIL_BACKEND": "smtp"}, "LIAISON_EMAIL_BACKEND"),
        ({"LIAISON_EMAIL_BACKEND": "sendgrid"}, "LIAISON_SENDGRID_API_KEY"),
        ({"LIAISON_FROM_EMAIL": "not-an-address"}, "LIAISON_FROM_EMAIL"),
        ({"LIAISON_FROM_NAME": "two\nlines"}, "LIAISON_FROM_NAME"),
        ({"LIAISON_SENDGRID_HOST": "ftp://api.sendgrid.com"}, "LIAISON_SENDGRID_HOST"),
        ({"LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY": "bm90IGEga2V5"}, "LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY"),
        ({"LIAISON_WEBHOOK_TOLERANCE_SECONDS": "1"}, "LIAISON_WEBHOOK_TOLERANCE_SECONDS"),
        ({"LIAISON_RUN_WORKER": "maybe"}, "LIAISON_RUN_WORKER"),
        ({**PRODUCTION, **SENDGRID, "LIAISON_POSTAL_ADDRESS": "1 Main St"}, "LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY"),
    ],
)
def test_bad_email_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_production_with_sendgrid_needs_the_webhook_key_and_a_postal_address():
    key = _public_key()
    with pytest.raises(ConfigError, match="LIAISON_POSTAL_ADDRESS"):
        Settings.from_env({**PRODUCTION, **SENDGRID, "LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY": key})
    settings = Settings.from_env({**PRODUCTION, **SENDGRID, "LIAISON_SENDGRID_WEBHOOK_PUBLIC_KEY": key,
                                  "LIAISON_POSTAL_ADDRESS": "Cancer Center\\n100 Main St\\nSpringfield, IL 62701"})
    assert settings.postal_address == "Cancer Center\n100 Main St\nSpringfield, IL 62701"
